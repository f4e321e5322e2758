//! Writing cpio archives in the "newc" format (`070701`), the one the Linux kernel unpacks
//! from an initramfs.
//!
//! `pxe::build` appends one to the commit's initramfs (the units that mount the live root)
//! and wraps the live root's squashfs in one (`rootfs.img`, a second initrd). Every entry is
//! owned by root with a fixed modification time, so the same input gives the same bytes.
//! Names are relative paths without a leading `/`, as the kernel and `cpio -i` expect.

use std::io::{Read, Write};

use anyhow::{Context, Result, bail};

/// Length of a newc header.
pub const HEADER_LEN: usize = 110;

/// Header plus name (NUL-terminated, padded to 4 bytes): where an entry's data starts,
/// counted from the start of its header.
pub fn data_offset(name: &str) -> usize {
    (HEADER_LEN + name.len() + 1).next_multiple_of(4)
}

/// A cpio archive being written to `W`.
pub struct Writer<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    mtime: u32,
}

impl<W: Write> Writer<W> {
    /// A new archive; every entry gets modification time `mtime` (seconds since the epoch).
    pub fn new(out: W, mtime: u32) -> Self {
        Self {
            out,
            written: 0,
            next_ino: 1,
            mtime,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .context("writing a cpio archive")?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: u64) -> Result<()> {
        if name.starts_with('/') || name.contains('\0') || name.is_empty() {
            bail!("cpio entry name `{name}` must be a relative path");
        }
        let Ok(size32) = u32::try_from(size) else {
            bail!("{name}: {size} bytes is more than a newc cpio entry can hold (4 GiB)");
        };
        let ino = if name == "TRAILER!!!" {
            0
        } else {
            self.next_ino
        };
        self.next_ino += 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            self.mtime,
            size32,
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() as u32 + 1,
            0, // check
        ];
        let mut h = String::with_capacity(HEADER_LEN);
        h.push_str("070701");
        for f in fields {
            h.push_str(&format!("{f:08X}"));
        }
        debug_assert_eq!(h.len(), HEADER_LEN);
        self.put(h.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    /// A directory.
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<()> {
        self.header(name, 0o040000 | (perm & 0o7777), 2, 0)
    }

    /// A regular file with `data`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<()> {
        self.header(name, 0o100000 | (perm & 0o7777), 1, data.len() as u64)?;
        self.put(data)?;
        self.pad()
    }

    /// A regular file of `size` bytes read from `data` (which must hold exactly that many).
    pub fn file_from(
        &mut self,
        name: &str,
        perm: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<()> {
        self.header(name, 0o100000 | (perm & 0o7777), 1, size)?;
        let copied = std::io::copy(&mut data.take(size), &mut self.out)
            .with_context(|| format!("writing {name} into a cpio archive"))?;
        self.written += copied;
        if copied != size {
            bail!("{name}: expected {size} bytes, read {copied}");
        }
        self.pad()
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<()> {
        self.header(name, 0o120777, 1, target.len() as u64)?;
        self.put(target.as_bytes())?;
        self.pad()
    }

    /// The trailer; returns the writer.
    pub fn finish(mut self) -> Result<W> {
        self.header("TRAILER!!!", 0, 1, 0)?;
        self.out.flush().context("writing a cpio archive")?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::cmd::CommandRunExt;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), 0);
        w.dir("etc", 0o755).unwrap();
        w.file("etc/a.conf", 0o644, b"hello\n").unwrap();
        w.file_from("big", 0o600, 5, &mut &b"12345"[..]).unwrap();
        w.symlink("etc/link", "a.conf").unwrap();
        w.finish().unwrap()
    }

    /// GNU cpio, a reader no one here wrote, lists and extracts what the writer made.
    #[test]
    fn gnu_cpio_reads_the_archive() {
        let bytes = sample();
        assert_eq!(bytes.len() % 4, 0);
        let list = std::process::Command::new("cpio")
            .args(["-i", "-t", "--quiet"])
            .run_with_input(&bytes)
            .unwrap();
        assert_eq!(
            list.lines().collect::<Vec<_>>(),
            ["etc", "etc/a.conf", "big", "etc/link"]
        );
        let d = tempfile::tempdir().unwrap();
        std::process::Command::new("cpio")
            .args(["-i", "-d", "--quiet", "-D"])
            .arg(d.path())
            .run_with_input(&bytes)
            .unwrap();
        assert_eq!(
            std::fs::read(d.path().join("etc/a.conf")).unwrap(),
            b"hello\n"
        );
        assert_eq!(std::fs::read(d.path().join("big")).unwrap(), b"12345");
        assert_eq!(
            std::fs::read_link(d.path().join("etc/link")).unwrap(),
            std::path::Path::new("a.conf")
        );
    }

    #[test]
    fn data_starts_where_data_offset_says() {
        let mut w = Writer::new(Vec::new(), 0);
        w.file("slipway/root.squashfs", 0o644, b"DATA").unwrap();
        let bytes = w.finish().unwrap();
        let off = data_offset("slipway/root.squashfs");
        assert_eq!(&bytes[off..off + 4], b"DATA");
    }

    #[test]
    fn short_reader_and_absolute_names_are_errors() {
        let mut w = Writer::new(Vec::new(), 0);
        assert!(w.file_from("f", 0o644, 10, &mut &b"123"[..]).is_err());
        let mut w = Writer::new(Vec::new(), 0);
        assert!(w.file("/etc/x", 0o644, b"").is_err());
    }
}
