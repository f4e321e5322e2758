//! Room on /boot for a new deployment, checked before anything is written (a full /boot
//! half way through a deployment is what fedora-coreos-tracker#819 is about).
//!
//! libostree copies a deployment's kernel and initramfs to
//! `/boot/ostree/<stateroot>-<bootcsum>/` (`vmlinuz-<kver>`, `initramfs-<kver>.img`) unless
//! a file of that name is already there; the boot checksum is the SHA-256 of the kernel
//! followed by the initramfs. So the room needed is the size of the files that are not there
//! yet, plus [`BOOT_ENTRIES_MARGIN_BYTES`] for the boot loader entries and `grub.cfg`,
//! compared with what `statvfs` says is free for unprivileged writers.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fn_error_context::context;
use indicatif::HumanBytes;

use crate::repo::kernel::{KernelFiles, kernel_files};

/// Room kept for the new `loader.N/entries`, `grub.cfg` and file system overhead.
pub const BOOT_ENTRIES_MARGIN_BYTES: u64 = 1 << 20;

/// Where libostree puts a commit's kernel and initramfs on /boot, with their sizes.
fn destinations(
    k: &KernelFiles,
    boot: &Path,
    stateroot: &str,
    bootcsum: &str,
) -> Vec<(PathBuf, u64)> {
    let dir = boot.join(format!("ostree/{stateroot}-{bootcsum}"));
    let mut out = vec![(dir.join(format!("vmlinuz-{}", k.kver)), k.vmlinuz_size())];
    if let Some(size) = k.initramfs_size() {
        out.push((dir.join(format!("initramfs-{}.img", k.kver)), size));
    }
    out
}

/// What a deployment needs on /boot and what is free there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootRoom {
    pub needed: u64,
    pub free: u64,
}

/// Bytes free on the file system holding `dir` for unprivileged writers.
pub fn free_bytes(dir: &Path) -> Result<u64> {
    let st = rustix::fs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The room deploying `commit` into `stateroot` needs on `boot`, and what is free there.
pub fn room(repo: &ostree::Repo, commit: &str, stateroot: &str, boot: &Path) -> Result<BootRoom> {
    let k = kernel_files(repo, commit)?;
    let bootcsum = k.bootcsum(repo)?;
    let needed = destinations(&k, boot, stateroot, &bootcsum)
        .into_iter()
        .filter(|(p, _)| !p.exists())
        .map(|(_, size)| size)
        .sum::<u64>()
        + BOOT_ENTRIES_MARGIN_BYTES;
    Ok(BootRoom {
        needed,
        free: free_bytes(boot)?,
    })
}

/// Refuse when `commit` would not fit on `boot`.
#[context("Checking the room on {} for commit {commit}", boot.display())]
pub fn check_room(repo: &ostree::Repo, commit: &str, stateroot: &str, boot: &Path) -> Result<()> {
    let r = room(repo, commit, stateroot, boot)?;
    if r.needed > r.free {
        bail!(
            "not enough room on {} for commit {commit}: its kernel and initramfs and the boot \
             entries need {}, {} are free; remove old deployments (`slipway host cleanup`) or \
             make /boot larger",
            boot.display(),
            HumanBytes(r.needed),
            HumanBytes(r.free)
        );
    }
    Ok(())
}
