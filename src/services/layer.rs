//! An image root as one layer: the digest of the uncompressed tar docker and OCI tools would
//! make of it (the layer's `diff_id`), computed at compose time without writing the tar.
//!
//! The tar is canonical: entries depth first in byte order of their names (a directory before
//! what it holds), paths relative without `./`, every time stamp 0 (a deployment's files all
//! have mtime 0, so the tar of a deployment's image root is this one), numeric owners only,
//! every name of a file as a regular entry of its own (a deployment shares one inode between
//! every file of the same content, the build machine does not: hard links are no part of the
//! layer's identity), extended attributes as PAX `SCHILY.xattr.` records, GNU long names, two zero blocks at the
//! end. The host places the image root into docker's and containerd's stores under this
//! digest (see [`super::store`]), so both name the layer as a pull of the same tar would.

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The layer of an image root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    /// The tar's length in bytes.
    pub tar_bytes: u64,
}

/// A writer that only hashes and counts.
struct HashSink {
    h: Sha256,
    n: u64,
}

impl Write for HashSink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.h.update(b);
        self.n += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One PAX record: `LEN key=value\n`, LEN counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn header(kind: tar::EntryType, m: &std::fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(m.mode() & 0o7777);
    h.set_uid(m.uid() as u64);
    h.set_gid(m.gid() as u64);
    h.set_mtime(0);
    h.set_size(0);
    h
}

/// The layer digest of the tree at `root` (see the module's text for the tar it hashes).
pub fn tar_digest(root: &Path) -> Result<Layer> {
    let sink = write_tar(
        root,
        HashSink {
            h: Sha256::new(),
            n: 0,
        },
    )?;
    Ok(Layer {
        diff_id: format!("sha256:{}", hex::encode(sink.h.finalize())),
        tar_bytes: sink.n,
    })
}

/// The canonical tar of `root` into `w`.
fn write_tar<W: Write>(root: &Path, w: W) -> Result<W> {
    let mut b = tar::Builder::new(w);
    let io = |e: io::Error, r: &str| anyhow::Error::new(e).context(format!("the tar of /{r}"));
    super::walk_in_order(root, |r, p, m| {
        let x = crate::sys::file::xattrs(p)?;
        if !x.is_empty() {
            let mut data = Vec::new();
            for (k, v) in &x {
                let key = format!("SCHILY.xattr.{}", String::from_utf8_lossy(k));
                data.extend(pax_record(&key, v));
            }
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_size(data.len() as u64);
            let short: String = format!("PaxHeaders.0/{}", r.rsplit('/').next().unwrap_or(r))
                .chars()
                .take(99)
                .collect();
            h.set_path(&short).map_err(|e| io(e, r))?;
            h.set_cksum();
            b.append(&h, &data[..]).map_err(|e| io(e, r))?;
        }
        let ft = m.file_type();
        if ft.is_dir() {
            let mut h = header(tar::EntryType::Directory, m);
            b.append_data(&mut h, format!("{r}/"), io::empty())
                .map_err(|e| io(e, r))
        } else if ft.is_symlink() {
            let t = std::fs::read_link(p).with_context(|| format!("reading {}", p.display()))?;
            let mut h = header(tar::EntryType::Symlink, m);
            b.append_link(&mut h, r, &t).map_err(|e| io(e, r))
        } else if ft.is_file() {
            let mut h = header(tar::EntryType::Regular, m);
            h.set_size(m.len());
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            b.append_data(&mut h, r, f).map_err(|e| io(e, r))
        } else {
            anyhow::bail!(
                "/{r} in {} is not a file, directory or link",
                root.display()
            );
        }
    })?;
    b.into_inner().context("finishing the tar")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("k", b"v"), b"6 k=v\n");
        for n in [90, 93, 94, 95, 96, 990, 995] {
            let r = pax_record("SCHILY.xattr.user.x", &vec![b'a'; n]);
            let len: usize = String::from_utf8_lossy(&r)
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, r.len(), "value of {n} bytes");
        }
    }

    #[test]
    fn the_digest_is_of_a_tar_a_reader_takes_and_it_follows_the_content() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("usr/bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        let long = "d".repeat(120);
        std::fs::create_dir_all(root.join(&long)).unwrap();
        std::fs::write(root.join(&long).join("f"), "x").unwrap();
        let a = tar_digest(&root).unwrap();
        assert_eq!(a, tar_digest(&root).unwrap(), "the digest is stable");

        // The digest is the SHA-256 of the very bytes a tar reader takes back as the tree.
        let bytes = write_tar(&root, Vec::new()).unwrap();
        assert_eq!(bytes.len() as u64, a.tar_bytes);
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            a.diff_id
        );
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let kind = e.header().entry_type();
            assert_eq!(e.header().mtime().unwrap(), 0);
            let mut s = String::new();
            if kind == tar::EntryType::Regular {
                e.read_to_string(&mut s).unwrap();
            }
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            seen.push(format!("{path} {kind:?} {link} {s}"));
        }
        assert_eq!(seen[0], "bin Symlink usr/bin ");
        assert!(seen.contains(&format!("{long}/ Directory  ")), "{seen:?}");
        assert!(seen.contains(&format!("{long}/f Regular  x")), "{seen:?}");
        assert!(seen.contains(&"usr/bin/tool Regular  #!/bin/sh\necho hi\n".to_string()));
        assert!(
            seen.contains(&"usr/bin/tool2 Regular  #!/bin/sh\necho hi\n".to_string()),
            "a second name is a file of its own: {seen:?}"
        );
        let dir = seen.iter().position(|s| s.starts_with("usr/ ")).unwrap();
        let file = seen
            .iter()
            .position(|s| s.starts_with("usr/bin/tool "))
            .unwrap();
        assert!(
            dir < file,
            "a directory comes before what it holds: {seen:?}"
        );

        // Content, mode and a new file each change the digest.
        std::fs::write(root.join("usr/bin/tool"), "#!/bin/sh\necho ho\n").unwrap();
        let b = tar_digest(&root).unwrap();
        assert_ne!(a.diff_id, b.diff_id);
        std::fs::set_permissions(
            root.join("etc"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let c = tar_digest(&root).unwrap();
        assert_ne!(b.diff_id, c.diff_id);
        std::fs::write(root.join("etc/new"), "").unwrap();
        assert_ne!(c.diff_id, tar_digest(&root).unwrap().diff_id);
    }
}
