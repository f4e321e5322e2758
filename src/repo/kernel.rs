//! A commit's kernel and initramfs, found the way libostree finds them
//! (`/usr/lib/modules/KVER/{vmlinuz,initramfs.img}`), and libostree's boot checksum over them.

use std::io::Read;

use anyhow::{Context, Result, bail};
use fn_error_context::context;
use ostree::gio;
use ostree::prelude::*;
use sha2::{Digest, Sha256};

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

    pub fn vmlinuz_size(&self) -> u64 {
        self.vmlinuz_size
    }

    pub fn initramfs_size(&self) -> Option<u64> {
        self.initramfs.as_ref().map(|(_, size)| *size)
    }
}
