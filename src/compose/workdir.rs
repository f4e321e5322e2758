//! Work directories for composes under `<cachedir>/work`.
//!
//! Each compose builds its root filesystem in its own directory, locked while in use. A
//! compose that was killed leaves its directory behind; the next one removes every directory
//! whose lock is free, unless something is still mounted below it (then it says so and
//! leaves it).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::lock::{self, LockGuard, Wait};

/// A locked work directory, removed when dropped.
pub struct WorkDir {
    dir: Option<tempfile::TempDir>,
    _lock: LockGuard,
}

impl WorkDir {
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }

    /// Keep the directory (for debugging).
    pub fn keep(mut self) -> PathBuf {
        self.dir.take().expect("present until drop").keep()
    }
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
        .with_context(|| format!("creating a work directory in {}", base.display()))?;
    let guard = lock::exclusive(&dir.path().join(".lock"), "a work directory", Wait::NoWait)?;
    Ok(WorkDir {
        dir: Some(dir),
        _lock: guard,
    })
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
            crate::ui::warn(format!(
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
        crate::ui::info(format!("removing stale work directory {}", p.display()));
        if let Err(err) = std::fs::remove_dir_all(&p) {
            crate::ui::warn(format!("could not remove {}: {err}", p.display()));
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
}
