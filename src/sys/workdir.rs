//! Work directories for composes under `<cachedir>/work`.
//!
//! Each compose builds its root filesystem in its own directory, locked while in use. A
//! compose that was killed leaves its directory behind; the next one removes every directory
//! whose lock is free, unless something is still mounted below it (then it says so and
//! leaves it).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::sys::lock::{self, LockGuard, Wait};

/// A locked work directory, removed when dropped.
pub struct WorkDir {
    dir: PathBuf,
    _lock: LockGuard,
}

impl WorkDir {
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.dir) {
            crate::sys::ui::warn(format!(
                "could not remove work directory {}: {e:#}",
                self.dir.display()
            ));
        }
    }
}

// From linux/fs.h.
const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
const FS_IMMUTABLE_FL: libc::c_long = 0x10;

/// Clear the immutable attribute libostree puts on deployment directories.
fn clear_immutable(dir: &Path) {
    let Ok(f) = std::fs::File::open(dir) else {
        return;
    };
    use std::os::fd::AsRawFd;
    let mut flags: libc::c_long = 0;
    // SAFETY: the fd is open for the duration of the calls and `flags` outlives them.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) == 0
            && flags & FS_IMMUTABLE_FL != 0
        {
            flags &= !FS_IMMUTABLE_FL;
            libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS, &flags);
        }
    }
}

/// Remove a directory tree that may hold OSTree deployments (whose directories libostree
/// marks immutable). Refuses when something is mounted below it.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mounts = mounts_below(dir);
    if !mounts.is_empty() {
        anyhow::bail!("{} has mounts below it: {mounts:?}", dir.display());
    }
    if std::fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        clear_immutable(&d);
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
        }
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

/// Create a fresh work directory below `<cachedir>/work`, cleaning up stale ones first.
pub fn create(cachedir: &Path, prefix: &str) -> Result<WorkDir> {
    let base = cachedir.join("work");
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let _global = lock::exclusive(&base.join(".lock"), "the work directory", Wait::Block)?;
    clean_stale(&base);
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .with_context(|| format!("creating a work directory in {}", base.display()))?
        .keep();
    let guard = lock::exclusive(&dir.join(".lock"), "a work directory", Wait::NoWait)?;
    Ok(WorkDir { dir, _lock: guard })
}

fn clean_stale(base: &Path) {
    let Ok(rd) = std::fs::read_dir(base) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if !p.is_dir() || !lock::is_free(&p.join(".lock")) {
            continue;
        }
        let mounts = mounts_below(&p);
        if !mounts.is_empty() {
            crate::sys::ui::warn(format!(
                "leaving stale work directory {}: still mounted below it: {}",
                p.display(),
                mounts
                    .iter()
                    .map(|m| m.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        }
        crate::sys::ui::info(format!("removing stale work directory {}", p.display()));
        if let Err(err) = remove_tree(&p) {
            crate::sys::ui::warn(format!("could not remove {}: {err}", p.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_directories_are_removed_live_ones_kept() {
        let cache = tempfile::tempdir().unwrap();
        let live = create(cache.path(), "compose-").unwrap();
        let stale = cache.path().join("work/compose-stale");
        std::fs::create_dir_all(stale.join("rootfs/usr")).unwrap();
        std::fs::write(stale.join(".lock"), "").unwrap();
        let second = create(cache.path(), "compose-").unwrap();
        assert!(!stale.exists());
        assert!(live.path().exists());
        let p = second.path().to_path_buf();
        drop(second);
        assert!(!p.exists());
    }

    #[test]
    fn immutable_directories_are_removed() {
        let cache = tempfile::tempdir().unwrap();
        let w = create(cache.path(), "image-").unwrap();
        let dep = w.path().join("sysroot/ostree/deploy/debian/deploy/abc.0");
        std::fs::create_dir_all(dep.join("usr")).unwrap();
        std::fs::write(dep.join("usr/f"), "x").unwrap();
        use crate::sys::cmd::CommandRunExt;
        std::process::Command::new("chattr")
            .arg("+i")
            .arg(&dep)
            .run()
            .expect("chattr (e2fsprogs) sets the immutable flag");
        let p = w.path().to_path_buf();
        drop(w);
        assert!(
            !p.exists(),
            "work directory with an immutable deployment left behind"
        );
    }
}
