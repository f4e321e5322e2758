//! Files written so that a reader (or a power cut) sees the old content or the new, never a
//! mix: [`write_atomic`].

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow};

/// Write `path` atomically: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    // Readable by all, like any configuration file (tempfile creates them 0600).
    write_atomic_mode(path, content, 0o644)
}

/// [`write_atomic`] with the file's mode.
pub fn write_atomic_mode(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().context("path without a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(content)
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| anyhow!("renaming to {}: {}", path.display(), e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// The SHA-256 of `data`, in lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The extended attributes of `p` (links not followed), sorted by name; none where the file
/// system has none.
pub fn xattrs(p: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::llistxattr(p, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing xattrs of {}", p.display())),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let mut v = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(p, name, &mut v[..]) {
                Ok(l) => break l,
                Err(rustix::io::Errno::RANGE) => v.resize(v.len() * 4, 0),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "reading xattr {} of {}",
                            String::from_utf8_lossy(name),
                            p.display()
                        )
                    });
                }
            }
        };
        v.truncate(len);
        out.push((name.to_vec(), v));
    }
    out.sort();
    Ok(out)
}
