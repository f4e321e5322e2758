//! Room on /boot for a new deployment, checked before anything is written (a full /boot
//! half way through a deployment is what fedora-coreos-tracker#819 is about).
//!
//! libostree copies a deployment's kernel and initramfs to
//! `/boot/ostree/<stateroot>-<bootcsum>/` (`vmlinuz-<kver>`, `initramfs-<kver>.img`) unless
//! a file of that name is already there; the boot checksum is the SHA-256 of the kernel
//! followed by the initramfs. So the room needed is the size of the files that are not there
//! yet, plus [`BOOT_ENTRIES_MARGIN_BYTES`] for the boot loader entries and `grub.cfg`,
//! compared with what `statvfs` says is free for unprivileged writers.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fn_error_context::context;
use indicatif::HumanBytes;
use ostree::gio;
use ostree::prelude::*;
use sha2::{Digest, Sha256};

/// Room kept for the new `loader.N/entries`, `grub.cfg` and file system overhead.
pub const BOOT_ENTRIES_MARGIN_BYTES: u64 = 1 << 20;

/// A commit's kernel and initramfs (`/usr/lib/modules/KVER/{vmlinuz,initramfs.img}`).
#[derive(Debug, Clone)]
pub struct KernelFiles {
    pub kver: String,
    vmlinuz: gio::File,
    vmlinuz_size: u64,
    initramfs: Option<(gio::File, u64)>,
}

fn size_of(f: &gio::File) -> Result<u64> {
    let info = f
        .query_info(
            "standard::size",
            gio::FileQueryInfoFlags::NOFOLLOW_SYMLINKS,
            gio::Cancellable::NONE,
        )
        .with_context(|| format!("reading the size of {}", f.uri()))?;
    Ok(u64::try_from(info.size()).unwrap_or(0))
}

/// Find the kernel in a commit the way libostree does for this layout.
#[context("Finding the kernel of commit {commit}")]
pub fn kernel_files(repo: &ostree::Repo, commit: &str) -> Result<KernelFiles> {
    let (root, _) = repo
        .read_commit(commit, gio::Cancellable::NONE)
        .with_context(|| format!("reading commit {commit}"))?;
    let modules = root.resolve_relative_path("usr/lib/modules");
    let children = modules
        .enumerate_children(
            "standard::name,standard::type",
            gio::FileQueryInfoFlags::NOFOLLOW_SYMLINKS,
            gio::Cancellable::NONE,
        )
        .with_context(|| format!("listing /usr/lib/modules of commit {commit}"))?;
    let mut kvers = Vec::new();
    for info in children {
        let info = info.context("listing /usr/lib/modules")?;
        if info.file_type() == gio::FileType::Directory {
            let name = info.name().to_string_lossy().into_owned();
            if modules
                .resolve_relative_path(format!("{name}/vmlinuz"))
                .query_exists(gio::Cancellable::NONE)
            {
                kvers.push(name);
            }
        }
    }
    kvers.sort();
    let Some(kver) = kvers.into_iter().next() else {
        bail!("commit {commit} has no kernel (/usr/lib/modules/*/vmlinuz)");
    };
    let dir = modules.resolve_relative_path(&kver);
    let vmlinuz = dir.resolve_relative_path("vmlinuz");
    let vmlinuz_size = size_of(&vmlinuz)?;
    let initramfs_file = dir.resolve_relative_path("initramfs.img");
    let initramfs = if initramfs_file.query_exists(gio::Cancellable::NONE) {
        let size = size_of(&initramfs_file)?;
        Some((initramfs_file, size))
    } else {
        None
    };
    Ok(KernelFiles {
        kver,
        vmlinuz,
        vmlinuz_size,
        initramfs,
    })
}

impl KernelFiles {
    /// libostree's boot checksum: SHA-256 over the kernel, then the initramfs.
    pub fn bootcsum(&self, repo: &ostree::Repo) -> Result<String> {
        let mut h = Sha256::new();
        let mut files = vec![&self.vmlinuz];
        if let Some((f, _)) = &self.initramfs {
            files.push(f);
        }
        let mut buf = vec![0u8; 1 << 16];
        for f in files {
            // A file of a commit reads through its content object.
            let object = f
                .downcast_ref::<ostree::RepoFile>()
                .map(|rf| rf.ensure_resolved().map(|()| rf.checksum()))
                .transpose()
                .with_context(|| format!("resolving {}", f.uri()))?
                .with_context(|| format!("{} is not a file of a commit", f.uri()))?;
            let (stream, _, _) = repo
                .load_file(&object, gio::Cancellable::NONE)
                .with_context(|| format!("opening {}", f.uri()))?;
            let mut r = stream
                .with_context(|| format!("{} is not a regular file", f.uri()))?
                .into_read();
            loop {
                let n = r
                    .read(&mut buf)
                    .with_context(|| format!("reading {}", f.uri()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Where libostree puts them on /boot, with their sizes.
    fn destinations(&self, boot: &Path, stateroot: &str, bootcsum: &str) -> Vec<(PathBuf, u64)> {
        let dir = boot.join(format!("ostree/{stateroot}-{bootcsum}"));
        let mut out = vec![(
            dir.join(format!("vmlinuz-{}", self.kver)),
            self.vmlinuz_size,
        )];
        if let Some((_, size)) = &self.initramfs {
            out.push((dir.join(format!("initramfs-{}.img", self.kver)), *size));
        }
        out
    }
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
    let needed = k
        .destinations(boot, stateroot, &bootcsum)
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
