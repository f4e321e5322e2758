//! Advisory file locks (flock) held for the lifetime of a guard.
//!
//! Used so that two composes into one repository, or two users of one work directory, never
//! interleave: the second one waits (saying so) or fails with a clear message.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};

/// An exclusive lock on a file; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct LockGuard {
    _lock: Flock<File>,
    path: PathBuf,
}

impl LockGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What to do when someone else holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block until it is released, after saying who we wait for.
    Block,
    /// Fail at once.
    NoWait,
}

fn open(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))
}

/// Take an exclusive lock on `path` (created if missing). `what` names the protected
/// resource in messages.
pub fn exclusive(path: &Path, what: &str, wait: Wait) -> Result<LockGuard> {
    let f = open(path)?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(LockGuard {
            _lock: lock,
            path: path.to_path_buf(),
        }),
        Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
            if wait == Wait::NoWait {
                bail!(
                    "{what} is in use by another slipway process (lock {})",
                    path.display()
                );
            }
            crate::sys::ui::info(format!(
                "waiting for another slipway process to release {what} (lock {})",
                path.display()
            ));
            let lock = Flock::lock(f, FlockArg::LockExclusive)
                .map_err(|(_, e)| e)
                .with_context(|| format!("locking {}", path.display()))?;
            Ok(LockGuard {
                _lock: lock,
                path: path.to_path_buf(),
            })
        }
        Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// True if nobody holds the lock on `path` right now (the file may not exist).
pub fn is_free(path: &Path) -> bool {
    let Ok(f) = File::options().read(true).write(true).open(path) else {
        return true;
    };
    let _ = f.as_fd();
    Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_nonblocking_lock_fails_then_succeeds_after_release() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let g = exclusive(&p, "the test repo", Wait::NoWait).unwrap();
        let err = exclusive(&p, "the test repo", Wait::NoWait).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        assert!(!is_free(&p));
        drop(g);
        assert!(is_free(&p));
        exclusive(&p, "the test repo", Wait::NoWait).unwrap();
    }
}
