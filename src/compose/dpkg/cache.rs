//! The package cache: every `.deb` unpacked once, kept beside the `.deb` cache.
//!
//! ```text
//! <cachedir>/packages/
//!   lock                          shared by composes, exclusive while pruning
//!   entries/<name>_<version>_<arch>.<key>/
//!     data/                       the package's files, /usr merged (bin -> usr/bin ...)
//!     control/                    its control members (control, conffiles, md5sums, scripts)
//!     list                        its paths as the archive lists them (dpkg's .list)
//!   trees/<key>/                  a configured root (the fast path of `super::install`)
//!   .tmp-*                        entries and trees being written
//! ```
//!
//! An entry's key is a SHA-256 over the cache's format, slipway's own sources and the .deb's
//! SHA-256 (which names the package, version and architecture). An entry is written under a
//! temporary name and renamed into place whole, so a compose killed at any point leaves either
//! a complete entry or a temporary directory that the next prune removes; two composes that
//! unpack the same package at once both finish and one rename wins. Nothing ever writes into
//! an entry in place: trees are assembled by copying out of it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::deb::{self, Control};
use crate::compose::apt::ResolvedPackage;
use crate::sys::lock::LockGuard;
use crate::sys::tree::Tree;

/// The layout of an entry; a change makes every key new.
const FORMAT: &str = "slipway-pkgcache-1";

/// The top-level directories a merged-/usr root links into `/usr`.
pub const MERGED: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// A `.deb` of the package set, with the SHA-256 of its content.
#[derive(Debug, Clone)]
pub struct DebFile {
    pub pkg: ResolvedPackage,
    pub path: PathBuf,
    pub sha256: String,
}

/// The package cache directory, held open (shared) for one compose.
pub struct PackageCache {
    root: PathBuf,
    _lock: LockGuard,
    /// Entries written by this process (reported).
    pub imported: std::sync::atomic::AtomicUsize,
}

/// One unpacked package.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
    pub name: String,
    pub arch: String,
    pub control: Control,
    pub members: BTreeMap<String, Vec<u8>>,
    /// The package's paths as dpkg records them (`/.` first, archive order).
    pub list: Vec<String>,
}

impl Entry {
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The name dpkg's database files carry: `name:arch` for `Multi-Arch: same`.
    pub fn db_name(&self) -> String {
        if self.control.get("Multi-Arch") == Some("same") {
            format!("{}:{}", self.name, self.arch)
        } else {
            self.name.clone()
        }
    }

    /// Conffiles dpkg manages (not the `remove-on-upgrade` ones).
    pub fn conffiles(&self) -> Vec<String> {
        let text = self
            .members
            .get("conffiles")
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("remove-on-upgrade"))
            .map(str::to_string)
            .collect()
    }

    /// Maintainer scripts, triggers or debconf questions: what makes installing it more than
    /// putting its files in place.
    pub fn acts_when_installed(&self) -> bool {
        [
            "preinst",
            "postinst",
            "prerm",
            "postrm",
            "config",
            "triggers",
            "templates",
        ]
        .iter()
        .any(|m| self.members.contains_key(*m))
    }
}

/// `/usr/bin/x` from `/bin/x`: where a path of a package lands in a merged-/usr root,
/// relative to the root.
pub fn merged_rel(path: &str) -> String {
    let rel = path.trim_start_matches('/');
    let (first, rest) = match rel.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (rel, None),
    };
    if MERGED.contains(&first) {
        match rest {
            Some(r) => format!("usr/{first}/{r}"),
            None => format!("usr/{first}"),
        }
    } else {
        rel.to_string()
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl PackageCache {
    /// Open (creating) the cache in `dir`, shared with other composes.
    pub fn open(dir: &Path) -> Result<Self> {
        for sub in ["entries", "trees"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let lock = crate::sys::lock::shared(&dir.join("lock"), "the package cache")?;
        Ok(Self {
            root: dir.to_path_buf(),
            _lock: lock,
            imported: Default::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn key(sha256: &str) -> String {
        let mut h = Sha256::new();
        h.update(FORMAT.as_bytes());
        h.update(b"\0");
        h.update(crate::compose::inputhash::SOURCE_HASH.as_bytes());
        h.update(b"\0");
        h.update(sha256.as_bytes());
        hex::encode(h.finalize())[..24].to_string()
    }

    fn entry_dir(&self, deb: &DebFile) -> PathBuf {
        let stem = crate::compose::rootfs::deb_filename(&deb.pkg);
        let stem = stem.trim_end_matches(".deb");
        self.root
            .join("entries")
            .join(format!("{stem}.{}", Self::key(&deb.sha256)))
    }

    /// A fresh temporary directory in the cache (renamed into place when complete).
    pub fn temp_dir(&self, what: &str) -> Result<PathBuf> {
        let t = tempfile::Builder::new()
            .prefix(&format!(".tmp-{what}-"))
            .tempdir_in(&self.root)
            .with_context(|| {
                format!("creating a temporary directory in {}", self.root.display())
            })?;
        Ok(t.keep())
    }

    /// The entry of every .deb, unpacking the missing ones (`jobs` at a time).
    pub fn entries(&self, debs: &[DebFile], jobs: usize) -> Result<Vec<Entry>> {
        let missing: Vec<&DebFile> = debs
            .iter()
            .filter(|d| !self.entry_dir(d).is_dir())
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed: std::sync::Mutex<Option<anyhow::Error>> = Default::default();
        std::thread::scope(|s| {
            for _ in 0..jobs.max(1) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(d) = missing.get(i) else { break };
                        if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                            break;
                        }
                        if let Err(e) = self.import(d) {
                            if let Ok(mut f) = failed.lock() {
                                f.get_or_insert(e);
                            }
                            break;
                        }
                        self.imported
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().ok().flatten() {
            return Err(e);
        }
        debs.iter()
            .map(|d| {
                let dir = self.entry_dir(d);
                touch(&dir);
                load(&dir, &d.pkg)
            })
            .collect()
    }

    /// Unpack one .deb into a temporary entry and rename it into place.
    fn import(&self, deb: &DebFile) -> Result<()> {
        let dest = self.entry_dir(deb);
        let tmp = self.temp_dir("entry")?;
        let result = write_entry(&deb.path, &tmp);
        if let Err(e) = result {
            let _ = crate::sys::workdir::remove_tree(&tmp);
            return Err(e);
        }
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => Ok(()),
            // Another compose unpacked the same package first.
            Err(_) if dest.is_dir() => crate::sys::workdir::remove_tree(&tmp),
            Err(e) => {
                let _ = crate::sys::workdir::remove_tree(&tmp);
                Err(e).with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))
            }
        }
    }

    /// Remove entries and trees unused for longer than `max_age`, then the oldest until the
    /// cache holds at most `max_bytes`, and every temporary directory. Only when no compose
    /// uses the cache (it takes the lock exclusively, without waiting): otherwise it says so
    /// and removes nothing.
    pub fn prune(
        dir: &Path,
        max_age: Duration,
        max_bytes: Option<u64>,
        trees_kept: usize,
    ) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        if !dir.join("lock").exists() {
            return Ok(report);
        }
        let _lock = match crate::sys::lock::exclusive(
            &dir.join("lock"),
            "the package cache",
            crate::sys::lock::Wait::NoWait,
        ) {
            Ok(l) => l,
            Err(_) => {
                report.busy = true;
                return Ok(report);
            }
        };
        let mut items: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e?.path();
            if p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".tmp-"))
            {
                crate::sys::workdir::remove_tree(&p)?;
                report.removed += 1;
            }
        }
        for sub in ["entries", "trees"] {
            let d = dir.join(sub);
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            let mut here = Vec::new();
            for e in rd {
                let p = e?.path();
                let m = std::fs::symlink_metadata(&p)?;
                here.push((m.modified()?, p));
            }
            if sub == "trees" {
                // Newest first: all but the newest few go whatever their age.
                here.sort_by(|a, b| b.cmp(a));
                for (_, p) in here.split_off(trees_kept.min(here.len())) {
                    let size = du(&p)?;
                    crate::sys::workdir::remove_tree(&p)?;
                    report.removed += 1;
                    report.bytes_freed += size;
                }
            }
            for (when, p) in here {
                // Sizes only when a size limit asks for them (a walk of every entry).
                let size = if max_bytes.is_some() { du(&p)? } else { 0 };
                items.push((when, size, p));
            }
        }
        items.sort();
        let now = SystemTime::now();
        let mut total: u64 = items.iter().map(|i| i.1).sum();
        for (when, size, p) in items {
            let old = now.duration_since(when).unwrap_or_default() > max_age;
            let over = max_bytes.is_some_and(|m| total > m);
            if old || over {
                let size = if size == 0 { du(&p)? } else { size };
                crate::sys::workdir::remove_tree(&p)?;
                total = total.saturating_sub(size);
                report.removed += 1;
                report.bytes_freed += size;
            }
        }
        report.bytes_kept = max_bytes.map(|_| total);
        Ok(report)
    }
}

/// What [`PackageCache::prune`] did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PruneReport {
    pub busy: bool,
    pub removed: usize,
    pub bytes_freed: u64,
    /// With a size limit: what the cache holds afterwards.
    pub bytes_kept: Option<u64>,
}

/// Mark `p` used now (pruning by age goes by its modification time).
pub fn touch(p: &Path) {
    let now = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: rustix::fs::UTIME_NOW,
    };
    let _ = rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: now,
            last_modification: now,
        },
        rustix::fs::AtFlags::empty(),
    );
}

/// Bytes of the regular files below `p` (each inode once).
fn du(p: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d)?;
        if m.is_dir() {
            for e in std::fs::read_dir(&d)? {
                stack.push(e?.path());
            }
        } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
            total += m.blocks() * 512;
        }
    }
    Ok(total)
}

/// Read a complete entry.
fn load(dir: &Path, pkg: &ResolvedPackage) -> Result<Entry> {
    let mut members = BTreeMap::new();
    let cdir = dir.join("control");
    for e in std::fs::read_dir(&cdir).with_context(|| format!("reading {}", cdir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        members.insert(
            name,
            std::fs::read(e.path()).with_context(|| format!("reading {}", e.path().display()))?,
        );
    }
    let control_text =
        String::from_utf8_lossy(members.get("control").map(|v| &v[..]).unwrap_or(b"")).into_owned();
    let control = Control::parse(&control_text, &cdir.join("control").display().to_string())?;
    let list_path = dir.join("list");
    let list = std::fs::read_to_string(&list_path)
        .with_context(|| format!("reading {}", list_path.display()))?
        .lines()
        .map(str::to_string)
        .collect();
    Ok(Entry {
        dir: dir.to_path_buf(),
        name: pkg.name.clone(),
        arch: control.get("Architecture").unwrap_or(&pkg.arch).to_string(),
        control,
        members,
        list,
    })
}

/// A tar member's name as dpkg records it: `/usr/bin/x`, `/.` for the root; `None` for a
/// name that leaves the root or is empty.
fn archive_path(raw: &str) -> Option<String> {
    let mut parts = Vec::new();
    for p in raw.split('/') {
        match p {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        Some("/.".to_string())
    } else {
        Some(format!("/{}", parts.join("/")))
    }
}

/// Unpack `deb` into `dir` (`data/`, `control/`, `list`).
fn write_entry(deb: &Path, dir: &Path) -> Result<()> {
    let members = deb::control_members(deb)?;
    let cdir = dir.join("control");
    std::fs::create_dir_all(&cdir)?;
    for (name, data) in &members {
        if name.contains('/') || name.starts_with('.') {
            bail!(
                "{}: control member `{name}` is not a plain name",
                deb.display()
            );
        }
        std::fs::write(cdir.join(name), data)
            .with_context(|| format!("writing {}", cdir.join(name).display()))?;
    }
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir)?;
    let tree = Tree::open(&data_dir)?;
    let list = deb::with_data(deb, |archive| {
        let mut list = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = entry.path_bytes();
            let raw = String::from_utf8(raw.into_owned())
                .map_err(|_| anyhow::anyhow!("a file name that is not UTF-8"))?;
            let Some(path) = archive_path(&raw) else {
                bail!("member `{raw}` leaves the root");
            };
            list.push(path.clone());
            if path == "/." {
                continue;
            }
            let rel = merged_rel(&path);
            let h = entry.header();
            let mode = h.mode()?;
            let uid = h.uid()? as u32;
            let gid = h.gid()? as u32;
            let kind = h.entry_type();
            let mtime = h.mtime()? as i64;
            match kind {
                tar::EntryType::Directory => {
                    tree.create_dir_all(&rel)?;
                    set_meta(&tree, &rel, uid, gid, mode)?;
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    tree.write_file(&rel, &mut entry, mode)?;
                    set_meta(&tree, &rel, uid, gid, mode)?;
                    // As dpkg does: the archive's times (dracut --reproducible and Python's
                    // bytecode go by them).
                    tree.set_mtime(&rel, mtime)?;
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()?
                        .context("a symbolic link without a target")?
                        .to_string_lossy()
                        .into_owned();
                    tree.symlink(&rel, &target)?;
                    if (uid, gid) != (0, 0) {
                        tree.set_owner(&rel, uid, gid)?;
                    }
                    tree.set_mtime(&rel, mtime)?;
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name()?
                        .context("a hard link without a target")?
                        .to_string_lossy()
                        .into_owned();
                    let Some(t) = archive_path(&target) else {
                        bail!("hard link `{raw}` to `{target}` leaves the root");
                    };
                    tree.hard_link(&merged_rel(&t), &rel)?;
                }
                other => bail!("member `{raw}` is of a kind dpkg packages do not hold ({other:?})"),
            }
        }
        Ok(list)
    })?;
    std::fs::write(dir.join("list"), list.join("\n") + "\n")?;
    Ok(())
}

/// Owner, then mode (a change of owner clears set-id bits).
fn set_meta(tree: &Tree, rel: &str, uid: u32, gid: u32, mode: u32) -> Result<()> {
    if (uid, gid) != (0, 0) {
        tree.set_owner(rel, uid, gid)?;
    }
    tree.set_mode(rel, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_land_in_usr() {
        assert_eq!(merged_rel("/bin/bash"), "usr/bin/bash");
        assert_eq!(merged_rel("/lib"), "usr/lib");
        assert_eq!(
            merged_rel("/lib64/ld-linux-x86-64.so.2"),
            "usr/lib64/ld-linux-x86-64.so.2"
        );
        assert_eq!(merged_rel("/usr/bin/x"), "usr/bin/x");
        assert_eq!(merged_rel("/libexec/x"), "libexec/x");
        assert_eq!(merged_rel("/etc/x"), "etc/x");
    }

    #[test]
    fn archive_names_are_normalised_and_checked() {
        assert_eq!(archive_path("./").as_deref(), Some("/."));
        assert_eq!(archive_path("./usr/bin/").as_deref(), Some("/usr/bin"));
        assert_eq!(archive_path("usr//x").as_deref(), Some("/usr/x"));
        assert_eq!(archive_path("./usr/../../etc"), None);
    }
}
