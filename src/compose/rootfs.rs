//! Building the root filesystem with mmdebstrap.
//!
//! mmdebstrap runs in private mount and PID namespaces (`unshare`), so the mounts it makes in
//! the chroot vanish with it and a killed compose leaves no mount behind; it dies with slipway.
//! Packages are installed pinned to the versions the resolver chose. The `.deb` cache is
//! seeded into the chroot by hardlink and synced back, so a recompose downloads nothing it
//! already has. The kernel package's hook would build an initramfs that is thrown away (the
//! OSTree one is built later, generically, with the ostree module): `dracut` is diverted away
//! while packages install, so the hook finds no dracut and does nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::compose::apt::ResolvedPackage;
use crate::sys::cmd::{CommandRunExt, shell_quote};

/// Where dracut hides while packages install (here and in `compose::dpkg`).
pub const DRACUT_DIVERSION: &str = "/usr/bin/dracut.slipway-diverted";

/// Everything mmdebstrap needs.
pub struct RootfsPlan<'a> {
    pub suite: &'a str,
    pub sources_file: &'a Path,
    pub preferences_file: &'a Path,
    pub packages: &'a [ResolvedPackage],
    pub deb_cache: &'a Path,
    /// passwd, group, shadow, gshadow of the previous commit, to keep ids stable.
    pub seed_userdb: Option<&'a Path>,
    pub target: &'a Path,
    pub source_date_epoch: Option<u64>,
    /// dpkg `path-exclude`/`path-include` options (the treefile's `documentation` and
    /// `install-langs`), for every package, the essential ones too.
    pub dpkg_path_filters: &'a [String],
}

/// The .deb file name apt stores a package under.
pub fn deb_filename(p: &ResolvedPackage) -> String {
    format!(
        "{}_{}_{}.deb",
        p.name,
        p.version.replace(':', "%3a"),
        p.arch
    )
}

/// Build the shell hooks and the command line.
pub fn command(plan: &RootfsPlan) -> Result<Command> {
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let cache = q(plan.deb_cache);
    let list_file = plan
        .target
        .parent()
        .context("target has no parent")?
        .join("wanted-debs.txt");
    let wanted: Vec<String> = plan.packages.iter().map(deb_filename).collect();
    std::fs::write(&list_file, wanted.join("\n") + "\n")
        .with_context(|| format!("writing {}", list_file.display()))?;

    let mut setup = vec![
        // Seed only the .debs this compose needs from the cache (hardlinks, copy across devices).
        format!(
            "mkdir -p \"$1/var/cache/apt/archives\" && while read -r f; do if [ -e {cache}/\"$f\" ]; then ln {cache}/\"$f\" \"$1/var/cache/apt/archives/\" 2>/dev/null || cp {cache}/\"$f\" \"$1/var/cache/apt/archives/\"; fi; done < {}",
            q(&list_file)
        ),
        format!(
            "mkdir -p \"$1/etc/apt/preferences.d\" && cp {} \"$1/etc/apt/preferences.d/slipway-exclude.pref\"",
            q(plan.preferences_file)
        ),
    ];
    if let Some(seed) = plan.seed_userdb {
        let s = q(seed);
        setup.push(format!(
            "mkdir -p \"$1/etc\" && for f in passwd group shadow gshadow; do if [ -e {s}/$f ]; then cp -p {s}/$f \"$1/etc/$f\"; fi; done"
        ));
    }
    let essential = vec![format!(
        "chroot \"$1\" dpkg-divert --quiet --local --rename --divert {DRACUT_DIVERSION} --add /usr/bin/dracut"
    )];
    let customize = vec![
        "chroot \"$1\" dpkg-divert --quiet --local --rename --remove /usr/bin/dracut".to_string(),
        format!(
            "for f in \"$1\"/var/cache/apt/archives/*.deb; do [ -e \"$f\" ] || continue; b=$(basename \"$f\"); [ -e {cache}/\"$b\" ] || ln \"$f\" {cache}/ 2>/dev/null || cp \"$f\" {cache}/; done"
        ),
        "rm -f \"$1/etc/apt/preferences.d/slipway-exclude.pref\"".to_string(),
    ];

    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--propagation",
        "private",
        "--",
        "mmdebstrap",
        "--variant=minbase",
        "--mode=root",
        "--format=directory",
        "--skip=download/empty",
        "--skip=essential/unlink",
        "--aptopt=Acquire::Languages \"none\"",
    ]);
    for f in plan.dpkg_path_filters {
        cmd.arg(format!("--dpkgopt={f}"));
    }
    cmd.arg(format!(
        "--include={}",
        crate::compose::apt::pinned_includes(plan.packages).join(",")
    ));
    for h in &setup {
        cmd.arg(format!("--setup-hook={h}"));
    }
    for h in &essential {
        cmd.arg(format!("--essential-hook={h}"));
    }
    for h in &customize {
        cmd.arg(format!("--customize-hook={h}"));
    }
    cmd.arg(plan.suite).arg(plan.target).arg(plan.sources_file);
    cmd.env("LC_ALL", "C.UTF-8");
    if let Some(t) = plan.source_date_epoch {
        cmd.env("SOURCE_DATE_EPOCH", t.to_string());
    }
    Ok(cmd)
}

/// Run mmdebstrap; `on_line` sees its output as it runs.
pub fn build(plan: &RootfsPlan, on_line: &mut dyn FnMut(&str)) -> Result<()> {
    let mut cmd = command(plan)?;
    cmd.run_streaming(on_line)
        .context("building the root filesystem with mmdebstrap")?;
    if plan
        .dpkg_path_filters
        .iter()
        .any(|f| f == crate::treefile::INFO_EXCLUDED)
    {
        // install-info's trigger writes the index of the manuals dpkg left out.
        let t = crate::sys::tree::Tree::open(plan.target)?;
        for f in ["usr/share/info/dir", "usr/share/info/dir.old"] {
            t.remove(f)?;
        }
    }
    Ok(())
}

/// The one kernel version installed in `root` (from `/usr/lib/modules` with a kernel image);
/// `None` when the tree has no kernel (a commit that is not bootable).
pub fn kernel_version(root: &Path) -> Result<Option<String>> {
    let moddir = root.join("usr/lib/modules");
    let mut found = Vec::new();
    if !moddir.is_dir() {
        return Ok(None);
    }
    for e in std::fs::read_dir(&moddir).with_context(|| format!("reading {}", moddir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let has_image =
            root.join(format!("boot/vmlinuz-{name}")).exists() || e.path().join("vmlinuz").exists();
        if has_image {
            found.push(name);
        }
    }
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found.remove(0))),
        _ => anyhow::bail!(
            "more than one kernel in the tree ({}); an OSTree commit carries exactly one",
            found.join(", ")
        ),
    }
}

/// The work directory layout of one compose.
pub fn target_dir(workdir: &Path) -> PathBuf {
    workdir.join("rootfs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_names_escape_epochs() {
        let p = ResolvedPackage {
            name: "libx".into(),
            version: "1:2.0-1".into(),
            arch: "amd64".into(),
            hash: String::new(),
        };
        assert_eq!(deb_filename(&p), "libx_1%3a2.0-1_amd64.deb");
    }

    #[test]
    fn command_pins_versions_and_diverts_dracut() {
        let d = tempfile::tempdir().unwrap();
        let pkgs = vec![ResolvedPackage {
            name: "systemd".into(),
            version: "252.1-1".into(),
            arch: "amd64".into(),
            hash: String::new(),
        }];
        let target = d.path().join("rootfs");
        let plan = RootfsPlan {
            suite: "bookworm",
            sources_file: Path::new("/x.sources"),
            preferences_file: Path::new("/x.pref"),
            packages: &pkgs,
            deb_cache: Path::new("/cache"),
            seed_userdb: None,
            target: &target,
            source_date_epoch: Some(1),
            dpkg_path_filters: &["path-exclude=/usr/share/man/*".to_string()],
        };
        let cmd = command(&plan).unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"--include=systemd=252.1-1".to_string()));
        assert!(
            args.iter()
                .any(|a| a.starts_with("--essential-hook=") && a.contains("dpkg-divert"))
        );
        assert!(
            args.iter()
                .any(|a| a.starts_with("--customize-hook=")
                    && a.contains("--remove /usr/bin/dracut"))
        );
        assert!(args.contains(&"--dpkgopt=path-exclude=/usr/share/man/*".to_string()));
        assert_eq!(args.last().unwrap(), "/x.sources");
    }
}
