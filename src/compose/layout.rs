//! Conversion of a Debian root filesystem to the layout an OSTree host boots.
//!
//! - the kernel moves to `/usr/lib/modules/KVER/vmlinuz` (next to the initramfs built there),
//!   `/boot` is left empty and the `/vmlinuz*`, `/initrd.img*` links go;
//! - the dpkg database moves to `/usr/share/dpkg/database`, `/var/lib/dpkg` becomes a tmpfiles
//!   link to it;
//! - `/var` is emptied: each of its directories and symlinks becomes a line in a generated
//!   tmpfiles.d file (with the directories a container host needs: `/var/lib/docker`,
//!   `/var/lib/containerd`, `/var/log`, `/var/home`, `/var/roothome`...), because an OSTree host
//!   never sees a commit's `/var`;
//! - `/usr/local` points into `/var/usrlocal`; `home`, `root`, `opt`, `srv`, `mnt`, `media`,
//!   `ostree` become links and `/sysroot` is created;
//! - `/etc` becomes `/usr/etc` (the machine id emptied, the build host's hostname and resolver
//!   and the `passwd-`-style backup files removed, so equal inputs give an equal tree), and the system accounts are also declared for systemd-sysusers;
//! - `dev`, `proc`, `sys`, `run`, `tmp` are emptied (no device nodes in a commit).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::sysroot::userdb::UserDb;

/// Where the dpkg database lives in a commit.
pub const DPKG_DATABASE: &str = "usr/share/dpkg/database";
/// The generated tmpfiles.d file.
pub const TMPFILES_CONF: &str = "usr/lib/tmpfiles.d/slipway-var.conf";
/// The generated sysusers.d file.
pub const SYSUSERS_CONF: &str = "usr/lib/sysusers.d/slipway-compose.conf";

/// Directories every container host needs under /var: (path, mode, user, group).
const REQUIRED_VAR_DIRS: &[(&str, u32, &str, &str)] = &[
    ("/var/cache", 0o755, "root", "root"),
    ("/var/home", 0o755, "root", "root"),
    ("/var/lib", 0o755, "root", "root"),
    ("/var/lib/containerd", 0o711, "root", "root"),
    ("/var/lib/docker", 0o710, "root", "root"),
    ("/var/log", 0o755, "root", "root"),
    ("/var/mnt", 0o755, "root", "root"),
    ("/var/opt", 0o755, "root", "root"),
    ("/var/roothome", 0o700, "root", "root"),
    ("/var/spool", 0o755, "root", "root"),
    ("/var/srv", 0o755, "root", "root"),
    ("/var/tmp", 0o1777, "root", "root"),
    ("/var/usrlocal", 0o755, "root", "root"),
];

/// Links at the top of the tree: (name, target).
const TOPLEVEL_LINKS: &[(&str, &str)] = &[
    ("home", "var/home"),
    ("mnt", "var/mnt"),
    ("opt", "var/opt"),
    ("root", "var/roothome"),
    ("srv", "var/srv"),
    ("media", "run/media"),
    ("ostree", "sysroot/ostree"),
];

/// What the conversion did, for logs and tests.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LayoutReport {
    pub kernel_version: String,
    pub tmpfiles_entries: usize,
    pub var_files_dropped: usize,
}

/// One tmpfiles.d line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TmpfilesEntry {
    Dir {
        path: String,
        mode: u32,
        user: String,
        group: String,
    },
    Link {
        path: String,
        target: String,
    },
}

impl TmpfilesEntry {
    fn path(&self) -> &str {
        match self {
            TmpfilesEntry::Dir { path, .. } | TmpfilesEntry::Link { path, .. } => path,
        }
    }

    fn render(&self) -> String {
        match self {
            TmpfilesEntry::Dir {
                path,
                mode,
                user,
                group,
            } => format!("d {} {:04o} {} {} - -", escape(path), mode, user, group),
            TmpfilesEntry::Link { path, target } => {
                format!("L {} - - - - {}", escape(path), target)
            }
        }
    }
}

fn escape(p: &str) -> String {
    p.chars()
        .map(|c| {
            if c.is_whitespace() || c == '\\' {
                format!("\\x{:02x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Paths already declared by the tree's own tmpfiles.d files (so ours do not duplicate them).
fn declared_tmpfiles_paths(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in ["usr/lib/tmpfiles.d", "etc/tmpfiles.d"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            for line in text.lines() {
                let mut f = line.split_whitespace();
                let (Some(t), Some(p)) = (f.next(), f.next()) else {
                    continue;
                };
                if !t.starts_with('#') {
                    out.insert(p.to_string());
                }
            }
        }
    }
    out
}

fn remove_contents(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        let meta = std::fs::symlink_metadata(&p)?;
        if meta.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        }
        .with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

fn ensure_dir(p: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode of {}", p.display()))
}

/// Replace `root/name` (a directory or link) by a symlink to `target`.
fn make_link(root: &Path, name: &str, target: &str) -> Result<()> {
    let p = root.join(name);
    if let Ok(meta) = std::fs::symlink_metadata(&p) {
        if meta.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        }
        .with_context(|| format!("removing {}", p.display()))?;
    }
    symlink(target, &p).with_context(|| format!("linking {} -> {target}", p.display()))
}

/// Move the kernel into `/usr/lib/modules/KVER` and empty `/boot`.
fn move_kernel(root: &Path, kver: &str) -> Result<()> {
    let moddir = root.join("usr/lib/modules").join(kver);
    let boot = root.join("boot");
    let vmlinuz = boot.join(format!("vmlinuz-{kver}"));
    let dest = moddir.join("vmlinuz");
    if vmlinuz.exists() {
        std::fs::rename(&vmlinuz, &dest)
            .with_context(|| format!("moving {} to {}", vmlinuz.display(), dest.display()))?;
    }
    if !dest.is_file() {
        bail!("no kernel image for {kver} (expected /boot/vmlinuz-{kver})");
    }
    let config = boot.join(format!("config-{kver}"));
    if config.exists() {
        std::fs::rename(&config, moddir.join("config"))?;
    }
    remove_contents(&boot)?;
    for link in ["vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"] {
        let p = root.join(link);
        if std::fs::symlink_metadata(&p).is_ok() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

/// Walk `root/var` and describe its directories and symlinks as tmpfiles entries.
fn var_entries(
    root: &Path,
    db: &UserDb,
    skip: &BTreeSet<String>,
    report: &mut LayoutReport,
) -> Result<Vec<TmpfilesEntry>> {
    let uids = db.uid_names();
    let gids = db.gid_names();
    let mut out = Vec::new();
    let mut stack = vec![root.join("var")];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = format!("/{}", p.strip_prefix(root).unwrap().display());
            if skip.contains(&rel) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p)?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p)?;
                out.push(TmpfilesEntry::Link {
                    path: rel,
                    target: target.display().to_string(),
                });
            } else if meta.is_dir() {
                out.push(TmpfilesEntry::Dir {
                    path: rel,
                    mode: meta.mode() & 0o7777,
                    user: uids
                        .get(&meta.uid())
                        .cloned()
                        .unwrap_or_else(|| meta.uid().to_string()),
                    group: gids
                        .get(&meta.gid())
                        .cloned()
                        .unwrap_or_else(|| meta.gid().to_string()),
                });
                stack.push(p);
            } else {
                report.var_files_dropped += 1;
            }
        }
    }
    Ok(out)
}

/// Convert `root` in place. `kver` is the kernel version found before the initramfs was built
/// (`None` for a tree without a kernel, which makes a commit that is not bootable).
pub fn convert(
    root: &Path,
    kver: Option<&str>,
    etc_group_members: &[String],
) -> Result<LayoutReport> {
    let mut report = LayoutReport {
        kernel_version: kver.unwrap_or_default().to_string(),
        ..Default::default()
    };
    if root.join("usr/etc").exists() {
        bail!(
            "{} already has usr/etc: is it converted already?",
            root.display()
        );
    }
    let etc = root.join("etc");
    let db = UserDb::load(&etc)?;
    for g in etc_group_members {
        if db.group(g).is_none() {
            bail!(
                "etc-group-members: group `{g}` does not exist in the composed tree (which package should create it?)"
            );
        }
    }

    match kver {
        Some(k) => move_kernel(root, k)?,
        None => remove_contents(&root.join("boot"))?,
    }

    move_dpkg_database(root)?;
    let usrlocal_dirs = usr_local_to_var(root)?;
    var_to_tmpfiles(root, &db, &usrlocal_dirs, &mut report)?;
    etc_to_usr_etc(root, &db)?;
    enable_tmp_mount(root)?;
    toplevel(root)?;
    Ok(report)
}

/// The dpkg database moves under /usr (`/var/lib/dpkg` becomes a link to it at boot),
/// without dpkg's backups of its own files (`status-old`, `diversions-old`...): a commit
/// carries no backup, and each upgrade would ship the whole old status again.
fn move_dpkg_database(root: &Path) -> Result<()> {
    let dpkg = root.join("var/lib/dpkg");
    let dpkg_dest = root.join(DPKG_DATABASE);
    if dpkg.is_dir() {
        std::fs::create_dir_all(dpkg_dest.parent().unwrap())?;
        std::fs::rename(&dpkg, &dpkg_dest)
            .with_context(|| format!("moving {} to {}", dpkg.display(), dpkg_dest.display()))?;
        for e in std::fs::read_dir(&dpkg_dest)
            .with_context(|| format!("reading {}", dpkg_dest.display()))?
        {
            let e = e?;
            let backup = e.file_name().to_string_lossy().ends_with("-old");
            if backup && e.file_type()?.is_file() {
                std::fs::remove_file(e.path())
                    .with_context(|| format!("removing {}", e.path().display()))?;
            }
        }
    }
    Ok(())
}

/// `/usr/local` lives in `/var/usrlocal` on an OSTree host: the link, and the names of the
/// directories the packages put there (recreated under `/var/usrlocal` at boot).
fn usr_local_to_var(root: &Path) -> Result<Vec<String>> {
    let usrlocal = root.join("usr/local");
    let mut usrlocal_dirs = Vec::new();
    if usrlocal.is_dir() && !usrlocal.is_symlink() {
        let mut names: Vec<String> = std::fs::read_dir(&usrlocal)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        usrlocal_dirs = names;
    }
    make_link(root, "usr/local", "../var/usrlocal")?;
    Ok(usrlocal_dirs)
}

/// `/var` becomes tmpfiles.d lines (what the packages shipped there, the directories every
/// host needs, `/var/usrlocal`'s), then is emptied.
fn var_to_tmpfiles(
    root: &Path,
    db: &UserDb,
    usrlocal_dirs: &[String],
    report: &mut LayoutReport,
) -> Result<()> {
    let declared = declared_tmpfiles_paths(root);
    let mut entries = var_entries(root, db, &BTreeSet::new(), report)?;
    let mut by_path: BTreeMap<String, TmpfilesEntry> = BTreeMap::new();
    for (path, mode, user, group) in REQUIRED_VAR_DIRS {
        by_path.insert(
            path.to_string(),
            TmpfilesEntry::Dir {
                path: path.to_string(),
                mode: *mode,
                user: user.to_string(),
                group: group.to_string(),
            },
        );
    }
    for d in usrlocal_dirs {
        let path = format!("/var/usrlocal/{d}");
        by_path.insert(
            path.clone(),
            TmpfilesEntry::Dir {
                path,
                mode: 0o755,
                user: "root".into(),
                group: "root".into(),
            },
        );
    }
    // What the tree itself had wins over the defaults above (its modes and owners are the
    // packages' own), except the docker/containerd state directories whose modes we set.
    for e in entries.drain(..) {
        let keep_ours = matches!(e.path(), "/var/lib/docker" | "/var/lib/containerd");
        if !keep_ours {
            by_path.insert(e.path().to_string(), e);
        }
    }
    by_path.insert(
        "/var/lib/dpkg".into(),
        TmpfilesEntry::Link {
            path: "/var/lib/dpkg".into(),
            target: format!("/{DPKG_DATABASE}"),
        },
    );
    let lines: Vec<String> = by_path
        .values()
        .filter(|e| !declared.contains(e.path()))
        .map(TmpfilesEntry::render)
        .collect();
    report.tmpfiles_entries = lines.len();
    let conf = root.join(TMPFILES_CONF);
    std::fs::create_dir_all(conf.parent().unwrap())?;
    let mut text = String::from(
        "# Generated by slipway compose: /var as the packages shipped it, recreated at boot.\n",
    );
    // The root account's shell start-up files, which Debian keeps in /root.
    for f in ["bashrc", "profile"] {
        if root.join(format!("usr/share/base-files/dot.{f}")).exists() {
            text.push_str(&format!(
                "C /var/roothome/.{f} - - - - /usr/share/base-files/dot.{f}\n"
            ));
        }
    }
    text.push_str(&lines.join("\n"));
    text.push('\n');
    std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
    remove_contents(&root.join("var"))?;
    ensure_dir(&root.join("var"), 0o755)?;
    Ok(())
}

/// `/etc` becomes `/usr/etc`: an empty machine id, without the build host's names and the
/// account files' backups, with the sysusers.d file for the accounts.
fn etc_to_usr_etc(root: &Path, db: &UserDb) -> Result<()> {
    let etc = root.join("etc");
    let machine_id = etc.join("machine-id");
    if machine_id.exists() || machine_id.is_symlink() {
        std::fs::remove_file(&machine_id)?;
    }
    std::fs::write(&machine_id, "")?;
    // The build host's names, and the backup copies shadow's tools leave of the account files
    // (their content depends on the order packages created accounts in, and on nothing a
    // booted host reads): same inputs, same tree.
    for f in [
        "hostname",
        "resolv.conf",
        "passwd-",
        "group-",
        "shadow-",
        "gshadow-",
        "subuid-",
        "subgid-",
        // systemd-resolved's maintainer script keeps the build host's resolver here.
        ".resolv.conf.systemd-resolved.bak",
        // mmdebstrap's --dpkgopt and --aptopt settings are for the build, not the host.
        "dpkg/dpkg.cfg.d/99mmdebstrap",
        "apt/apt.conf.d/99mmdebstrap",
    ] {
        let p = etc.join(f);
        if std::fs::symlink_metadata(&p).is_ok() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    let sysusers = root.join(SYSUSERS_CONF);
    std::fs::create_dir_all(sysusers.parent().unwrap())?;
    std::fs::write(&sysusers, db.sysusers_conf())
        .with_context(|| format!("writing {}", sysusers.display()))?;
    std::fs::rename(&etc, root.join("usr/etc")).context("moving etc to usr/etc")?;
    Ok(())
}

/// A tmpfs `/tmp` (Debian ships the unit but does not enable it).
fn enable_tmp_mount(root: &Path) -> Result<()> {
    let tmp_mount = root.join("usr/lib/systemd/system/tmp.mount");
    let shipped = root.join("usr/share/systemd/tmp.mount");
    if !tmp_mount.exists() && shipped.exists() {
        std::fs::copy(&shipped, &tmp_mount)?;
    }
    if tmp_mount.exists() {
        let wants = root.join("usr/lib/systemd/system/local-fs.target.wants");
        std::fs::create_dir_all(&wants)?;
        let link = wants.join("tmp.mount");
        if std::fs::symlink_metadata(&link).is_err() {
            symlink("../tmp.mount", &link)?;
        }
    }
    Ok(())
}

/// The API file systems' mount points empty, `/boot` and `/sysroot`, and the top-level links.
fn toplevel(root: &Path) -> Result<()> {
    for d in ["dev", "proc", "sys", "run", "tmp"] {
        remove_contents(&root.join(d))?;
    }
    for (d, mode) in [
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("boot", 0o755),
        ("sysroot", 0o755),
    ] {
        ensure_dir(&root.join(d), mode)?;
    }
    for (name, target) in TOPLEVEL_LINKS {
        make_link(root, name, target)?;
    }
    Ok(())
}

/// Parse our generated tmpfiles file back (for tests and checks).
pub fn tmpfiles_paths(text: &str) -> Vec<(char, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let t = f.next()?.chars().next()?;
            Some((t, f.next()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A miniature Debian tree with the parts the conversion touches.
    pub fn synthetic_tree(root: &Path) {
        let w = |p: &str, c: &str| {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        };
        w(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n",
        );
        w(
            "etc/group",
            "root:x:0:\ndocker:x:998:\nsystemd-journal:x:999:\n",
        );
        w("etc/os-release", "ID=debian\n");
        w("etc/passwd-", "root:x:0:0:root:/root:/bin/bash\n");
        w("etc/group-", "root:x:0:\n");
        w("etc/shadow-", "root:*:19000:0:99999:7:::\n");
        w("etc/gshadow-", "root:*::\n");
        w("etc/hostname", "buildhost\n");
        w(
            "etc/.resolv.conf.systemd-resolved.bak",
            "nameserver 10.0.0.1\n",
        );
        w("etc/machine-id", "0123456789abcdef\n");
        w("boot/vmlinuz-6.1.0-9-amd64", "kernel");
        w("boot/config-6.1.0-9-amd64", "config");
        w("boot/System.map-6.1.0-9-amd64", "map");
        w("usr/lib/modules/6.1.0-9-amd64/initramfs.img", "initramfs");
        w("var/lib/dpkg/status", "Package: x\n");
        w("var/lib/dpkg/status-old", "Package: w\n");
        w("var/lib/dpkg/diversions-old", "");
        w("var/log/apt/history.log", "log");
        w("var/cache/ldconfig/aux-cache", "x");
        w(
            "usr/lib/tmpfiles.d/systemd.conf",
            "d /var/log/journal 2755 root systemd-journal - -\n",
        );
        w("usr/share/base-files/dot.bashrc", "# bashrc\n");
        w("root/.bashrc", "# bashrc\n");
        w("dev/null-placeholder", "");
        std::fs::create_dir_all(root.join("var/log/journal")).unwrap();
        std::fs::create_dir_all(root.join("var/lib/docker")).unwrap();
        std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
        std::fs::create_dir_all(root.join("home")).unwrap();
        symlink("/run/lock", root.join("var/lock")).unwrap();
        symlink("boot/vmlinuz-6.1.0-9-amd64", root.join("vmlinuz")).unwrap();
    }

    #[test]
    fn converts_a_debian_tree() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        synthetic_tree(root);
        let rep = convert(root, Some("6.1.0-9-amd64"), &["docker".into()]).unwrap();
        assert!(root.join("usr/lib/modules/6.1.0-9-amd64/vmlinuz").is_file());
        assert!(root.join("usr/lib/modules/6.1.0-9-amd64/config").is_file());
        assert_eq!(std::fs::read_dir(root.join("boot")).unwrap().count(), 0);
        assert!(std::fs::symlink_metadata(root.join("vmlinuz")).is_err());
        assert!(root.join("usr/share/dpkg/database/status").is_file());
        for backup in ["status-old", "diversions-old"] {
            assert!(!root.join("usr/share/dpkg/database").join(backup).exists());
        }
        assert_eq!(std::fs::read_dir(root.join("var")).unwrap().count(), 0);
        assert!(!root.join("etc").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("usr/etc/machine-id")).unwrap(),
            ""
        );
        assert!(!root.join("usr/etc/hostname").exists());
        for backup in [
            "passwd-",
            "group-",
            "shadow-",
            "gshadow-",
            ".resolv.conf.systemd-resolved.bak",
            "dpkg/dpkg.cfg.d/99mmdebstrap",
            "apt/apt.conf.d/99mmdebstrap",
        ] {
            assert!(!root.join("usr/etc").join(backup).exists(), "{backup}");
        }
        assert_eq!(
            std::fs::read_link(root.join("root")).unwrap(),
            Path::new("var/roothome")
        );
        assert_eq!(
            std::fs::read_link(root.join("ostree")).unwrap(),
            Path::new("sysroot/ostree")
        );
        assert_eq!(
            std::fs::read_link(root.join("usr/local")).unwrap(),
            Path::new("../var/usrlocal")
        );
        assert!(root.join("sysroot").is_dir());
        assert_eq!(std::fs::read_dir(root.join("dev")).unwrap().count(), 0);

        let t = std::fs::read_to_string(root.join(TMPFILES_CONF)).unwrap();
        let paths = tmpfiles_paths(&t);
        let has = |k: char, p: &str| paths.iter().any(|(t, q)| *t == k && q == p);
        assert!(has('d', "/var/lib/docker"), "{t}");
        assert!(has('d', "/var/lib/containerd"), "{t}");
        assert!(has('d', "/var/home"));
        assert!(has('d', "/var/roothome"));
        assert!(has('d', "/var/usrlocal/bin"));
        assert!(has('d', "/var/log/apt"));
        assert!(has('L', "/var/lib/dpkg"));
        assert!(has('L', "/var/lock"));
        assert!(has('C', "/var/roothome/.bashrc"));
        // Declared by the tree's own tmpfiles.d already: not repeated.
        assert!(!has('d', "/var/log/journal"), "{t}");
        assert!(t.contains("d /var/lib/docker 0710 root root"));
        assert_eq!(rep.var_files_dropped, 2);
        let sysusers = std::fs::read_to_string(root.join(SYSUSERS_CONF)).unwrap();
        assert!(sysusers.contains("g docker 998"));
    }

    #[test]
    fn missing_group_member_group_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        synthetic_tree(d.path());
        let err = convert(d.path(), Some("6.1.0-9-amd64"), &["wheel".into()]).unwrap_err();
        assert!(err.to_string().contains("wheel"), "{err}");
        // Nothing was moved before the check failed.
        assert!(d.path().join("etc/passwd").exists());
    }
}
