//! Treefile customisations applied to the built root, before the OSTree layout conversion:
//! `add-files`, `remove-files`, postprocess scripts, `units`, `default-target`, and the
//! generic initramfs.
//!
//! Everything that executes code of the tree runs inside it with bubblewrap: a private mount
//! namespace with its own /proc, /dev and /tmp, no network, its own PID namespace, and killed
//! with slipway. Nothing mounted can leak onto the host.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};

use crate::sys::cmd::CommandRunExt;
use crate::sys::sandbox::Sandbox;
use crate::sys::tree::{self, Tree};
use crate::treefile::Treefile;

/// A command that runs `argv` inside `root` with no network.
pub fn in_root(root: &Path, argv: &[&str]) -> Command {
    Sandbox::new(root).command(argv)
}

/// Copy `add-files` into the tree (parents created, mode kept). Destinations resolve inside
/// the tree: a link on the way (`/var/run -> /run`) is followed as the booted host would,
/// never onto the build machine, and a link at the destination is replaced.
pub fn add_files(root: &Path, tf: &Treefile) -> Result<()> {
    let tree = Tree::open(root)?;
    for (i, f) in tf.add_files.iter().enumerate() {
        let key = format!("add-files[{i}]");
        let rel = tree::check_path(&key, &f.dest)?;
        let mut src = std::fs::File::open(&f.source.path)
            .with_context(|| format!("{key}: opening {}", f.source.display))?;
        let mode = src
            .metadata()
            .with_context(|| format!("{key}: reading {}", f.source.display))?
            .permissions()
            .mode();
        tree.write_file(&rel, &mut src, mode)
            .with_context(|| format!("{key}: copying {} to {}", f.source.display, f.dest))?;
    }
    Ok(())
}

/// Delete `remove-files` entries (files, links or whole directories), resolved inside the
/// tree; a missing path is an error, so a typo does not pass silently.
pub fn remove_files(root: &Path, tf: &Treefile) -> Result<()> {
    let tree = Tree::open(root)?;
    for (i, f) in tf.remove_files.iter().enumerate() {
        let key = format!("remove-files[{i}]");
        let rel = tree::check_path(&key, f)?;
        if !tree.remove(&rel).with_context(|| format!("{key}: `{f}`"))? {
            bail!("{key}: `{f}` does not exist in the tree");
        }
    }
    Ok(())
}

/// One script to run, with the name errors use.
struct ScriptRun {
    name: String,
    text: String,
}

/// Run the inline `postprocess` scripts, then `postprocess-script`, each inside the tree
/// without network. A failure names the script and shows the end of its output.
pub fn run_scripts(root: &Path, tf: &Treefile, on_line: &mut dyn FnMut(&str)) -> Result<()> {
    let mut scripts: Vec<ScriptRun> = tf
        .postprocess
        .iter()
        .map(|s| ScriptRun {
            name: s.origin.clone(),
            text: s.text.clone(),
        })
        .collect();
    if let Some(f) = &tf.postprocess_script {
        let text = std::fs::read_to_string(&f.path)
            .with_context(|| format!("postprocess-script: reading {}", f.display))?;
        scripts.push(ScriptRun {
            name: format!("postprocess-script {}", f.display),
            text,
        });
    }
    if scripts.is_empty() {
        return Ok(());
    }
    // The script lives in a private directory bound into the sandbox's /tmp; nothing is left
    // in the tree.
    let dir = tempfile::tempdir().context("creating a directory for postprocess scripts")?;
    for (i, s) in scripts.iter().enumerate() {
        let path: PathBuf = dir.path().join(format!("script-{i}"));
        let text = if s.text.starts_with("#!") {
            s.text.clone()
        } else {
            format!("#!/bin/sh\nset -e\n{}", s.text)
        };
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Sandbox::new(root)
            .ro_bind(&path, "/tmp/slipway-postprocess")
            .command(&["/tmp/slipway-postprocess"])
            .run_streaming(on_line)
            .map_err(|e| anyhow!("postprocess script failed ({}): {e:#}", s.name))?;
    }
    Ok(())
}

/// Enable `units` and set `default-target` with the tree's own systemctl.
pub fn systemd_units(root: &Path, tf: &Treefile) -> Result<()> {
    for u in &tf.units {
        in_root(root, &["systemctl", "enable", u])
            .run()
            .map_err(|e| anyhow!("units: enabling `{u}` failed: {e:#}"))?;
    }
    if let Some(t) = &tf.default_target {
        in_root(root, &["systemctl", "set-default", t])
            .run()
            .map_err(|e| anyhow!("default-target: setting `{t}` failed: {e:#}"))?;
    }
    Ok(())
}

/// Does the user's argument list already choose a compression?
fn chooses_compression(args: &[String]) -> bool {
    const FLAGS: &[&str] = &[
        "--gzip",
        "--bzip2",
        "--lzma",
        "--xz",
        "--lzo",
        "--lz4",
        "--zstd",
        "--compress",
        "--no-compress",
    ];
    args.iter().any(|a| {
        FLAGS
            .iter()
            .any(|f| a == f || a.starts_with(&format!("{f}=")))
    })
}

/// dracut arguments for the generic OSTree initramfs.
pub fn dracut_args(
    kver: &str,
    extra: &[String],
    have_zstd: bool,
    reproducible: bool,
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "dracut".into(),
        "--force".into(),
        "--no-hostonly".into(),
        "--add".into(),
        "ostree".into(),
    ];
    if reproducible {
        a.push("--reproducible".into());
    }
    if !chooses_compression(extra) && have_zstd {
        // zstd at a moderate level compresses a generic initramfs about as well as gzip -9
        // in a few percent of the time (measured: 1.4 s against 34 s).
        a.push("--compress".into());
        a.push("zstd -9 -T0".into());
    }
    a.extend(extra.iter().cloned());
    a.push(format!("/usr/lib/modules/{kver}/initramfs.img"));
    a.push(kver.to_string());
    a
}

/// Build `/usr/lib/modules/KVER/initramfs.img` inside the tree.
pub fn build_initramfs(
    root: &Path,
    kver: &str,
    extra: &[String],
    on_line: &mut dyn FnMut(&str),
) -> Result<()> {
    let have_zstd = root.join("usr/bin/zstd").exists();
    if !have_zstd && !chooses_compression(extra) {
        crate::sys::ui::warn(
            "zstd is not in the tree; dracut falls back to gzip, which is much slower (add zstd to packages)",
        );
    }
    let args = dracut_args(kver, extra, have_zstd, true);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = in_root(root, &argv);
    if let Ok(t) = std::env::var("SOURCE_DATE_EPOCH") {
        c.env("SOURCE_DATE_EPOCH", t);
    }
    c.run_streaming(on_line)
        .map_err(|e| anyhow!("building the initramfs with dracut failed: {e:#}"))?;
    let img = root.join(format!("usr/lib/modules/{kver}/initramfs.img"));
    if !img.is_file() {
        bail!("dracut reported success but wrote no {}", img.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dracut_defaults_to_zstd_unless_user_chooses() {
        let a = dracut_args("6.1.0-1-amd64", &[], true, true);
        assert!(a.windows(2).any(|w| w == ["--add", "ostree"]));
        assert!(a.contains(&"zstd -9 -T0".to_string()));
        assert_eq!(a.last().unwrap(), "6.1.0-1-amd64");
        let b = dracut_args("k", &["--xz".into()], true, false);
        assert!(!b.iter().any(|x| x.contains("zstd")));
        assert!(!b.contains(&"--reproducible".to_string()));
        let c = dracut_args("k", &[], false, true);
        assert!(!c.iter().any(|x| x.contains("zstd")));
    }

    #[test]
    fn remove_files_reports_missing_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("usr/share/doc/x")).unwrap();
        std::fs::write(d.path().join("usr/share/doc/x/f"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tfp = dir.path().join("t.json");
        std::fs::write(
            &tfp,
            r#"{"ref": "r", "packages": ["aa"], "remove-files": ["usr/share/doc/x"]}"#,
        )
        .unwrap();
        let tf = Treefile::load(&tfp).unwrap();
        remove_files(d.path(), &tf).unwrap();
        assert!(!d.path().join("usr/share/doc/x").exists());
        let err = remove_files(d.path(), &tf).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn treefile_paths_never_reach_the_build_machine() {
        // The "build machine": a directory an absolute link in the tree points at.
        let host = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(host.path().join("sshd")).unwrap();
        std::fs::write(host.path().join("sshd/pid"), "host").unwrap();
        std::fs::write(host.path().join("motd"), "host").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("var")).unwrap();
        std::os::unix::fs::symlink(host.path(), root.path().join("var/run")).unwrap();
        std::os::unix::fs::symlink(host.path().join("motd"), root.path().join("motd")).unwrap();
        let inner = root.path().join(host.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(inner.join("sshd")).unwrap();

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("motd"), "tree").unwrap();
        let tfp = dir.path().join("t.json");
        std::fs::write(
            &tfp,
            r#"{"ref": "r", "packages": ["aa"], "remove-files": ["var/run/sshd"],
                "add-files": [["motd", "/motd"], ["motd", "/var/run/added"]]}"#,
        )
        .unwrap();
        // /var destinations are refused when the treefile loads (see treefile's tests).
        assert!(Treefile::load(&tfp).is_err());
        std::fs::write(
            &tfp,
            r#"{"ref": "r", "packages": ["aa"], "remove-files": ["var/run/sshd"],
                "add-files": [["motd", "/motd"]]}"#,
        )
        .unwrap();
        let tf = Treefile::load(&tfp).unwrap();
        remove_files(root.path(), &tf).unwrap();
        add_files(root.path(), &tf).unwrap();
        assert_eq!(
            std::fs::read_to_string(host.path().join("sshd/pid")).unwrap(),
            "host"
        );
        assert_eq!(
            std::fs::read_to_string(host.path().join("motd")).unwrap(),
            "host"
        );
        assert!(
            !inner.join("sshd").exists(),
            "the tree's own /run/sshd is removed"
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join("motd")).unwrap(),
            "tree"
        );
    }
}
