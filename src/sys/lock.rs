//! Advisory file locks held for the lifetime of a guard: flock on files of slipway's own,
//! and libostree's lock on a sysroot.
//!
//! Used so that two composes into one repository, or two users of one work directory, never
//! interleave: the second one waits (saying so) or fails with a clear message. An OSTree
//! sysroot is guarded by libostree's own lock ([`ostree_sysroot`]), so slipway, `ostree admin`
//! and rpm-ostree exclude each other.

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

/// Take a shared lock on `path` (created if missing): any number of shared holders, but none
/// while someone holds it exclusively (which waits for them all). Blocks; says so first.
pub fn shared(path: &Path, what: &str) -> Result<LockGuard> {
    let f = open(path)?;
    let lock = match Flock::lock(f, FlockArg::LockSharedNonblock) {
        Ok(lock) => lock,
        Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
            crate::sys::ui::info(format!(
                "waiting for another slipway process to release {what} (lock {})",
                path.display()
            ));
            Flock::lock(f, FlockArg::LockShared)
                .map_err(|(_, e)| e)
                .with_context(|| format!("locking {}", path.display()))?
        }
        Err((_, e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    };
    Ok(LockGuard {
        _lock: lock,
        path: path.to_path_buf(),
    })
}

/// libostree's lock on a sysroot (an open file description lock on `<sysroot>/ostree/lock`,
/// the one `ostree admin` and rpm-ostree take), released when dropped. On a booted host whose /sysroot is mounted
/// read-only, libostree makes it writable in this process's mount namespace while locking
/// (after `Sysroot::initialize_with_mount_namespace`).
pub struct SysrootLock {
    sysroot: ostree::Sysroot,
    path: PathBuf,
}

impl SysrootLock {
    /// The sysroot this guard locks.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for SysrootLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SysrootLock")
            .field("path", &self.path)
            .finish()
    }
}

impl Drop for SysrootLock {
    fn drop(&mut self) {
        self.sysroot.unlock();
    }
}

/// Take libostree's lock on `sysroot` (whose path is `path`, for messages).
pub fn ostree_sysroot(sysroot: &ostree::Sysroot, path: &Path, wait: Wait) -> Result<SysrootLock> {
    let lockfile = path.join("ostree/lock");
    let guard = || SysrootLock {
        sysroot: sysroot.clone(),
        path: path.to_path_buf(),
    };
    let free = sysroot.try_lock().with_context(|| {
        format!(
            "locking the sysroot {} ({})",
            path.display(),
            lockfile.display()
        )
    })?;
    if free {
        return Ok(guard());
    }
    if wait == Wait::NoWait {
        bail!(
            "the sysroot {} is in use by another process (slipway, ostree admin or rpm-ostree; lock {})",
            path.display(),
            lockfile.display()
        );
    }
    crate::sys::ui::info(format!(
        "waiting for another process (slipway, ostree admin or rpm-ostree) to release the sysroot {} (lock {})",
        path.display(),
        lockfile.display()
    ));
    sysroot.lock().with_context(|| {
        format!(
            "locking the sysroot {} ({})",
            path.display(),
            lockfile.display()
        )
    })?;
    Ok(guard())
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

    #[test]
    fn sysroot_lock_excludes_a_second_holder_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let open = || {
            let s = ostree::Sysroot::new(Some(&ostree::gio::File::for_path(d.path())));
            s.ensure_initialized(ostree::gio::Cancellable::NONE)
                .unwrap();
            s
        };
        let (a, b) = (open(), open());
        let g = ostree_sysroot(&a, d.path(), Wait::NoWait).unwrap();
        let err = ostree_sysroot(&b, d.path(), Wait::NoWait).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        assert!(err.to_string().contains("ostree/lock"), "{err}");
        drop(g);
        ostree_sysroot(&b, d.path(), Wait::NoWait).unwrap();
    }
}
