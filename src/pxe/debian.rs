//! Files taken out of Debian packages without installing them.
//!
//! The network boot programs come from Debian's `ipxe`, `pxelinux` and `syslinux-common`.
//! `ipxe`'s maintainer script edits the build machine's GRUB menu, so nothing is installed:
//! `apt-get download` fetches the `.deb` (the version apt's lists on this machine name as the
//! candidate, checked against the SHA-256 they record) into a cache directory, and
//! `dpkg-deb -x` unpacks it into a temporary directory. [`locate`] does only the first half
//! (no download), so a missing package is an error before any work starts.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use fn_error_context::context;

use crate::sys::cmd::CommandRunExt;
use crate::sys::lock::{self, Wait};

/// A package as apt's lists describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    pub package: String,
    pub version: String,
    /// The `.deb`'s file name in the archive.
    pub filename: String,
    pub sha256: String,
}

/// Parse one line of `apt-get download --print-uris`:
/// `'URI' FILENAME SIZE SHA256:HEX`.
fn parse_print_uris(package: &str, text: &str) -> Result<(String, String)> {
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 4
            && fields[0].starts_with('\'')
            && let Some(hash) = fields[3].strip_prefix("SHA256:")
        {
            return Ok((fields[1].to_string(), hash.to_ascii_lowercase()));
        }
    }
    bail!("apt-get download --print-uris {package} printed no URI with a SHA-256: {text}")
}

/// What apt would download for `package` (nothing is downloaded).
#[context("Looking up the Debian package {package}")]
pub fn locate(package: &str) -> Result<Deb> {
    let out = Command::new("apt-get")
        .args(["download", "--print-uris", package])
        .run_get_output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "apt-get cannot find `{package}` ({}); run `apt-get update` if this machine's package lists are missing or old",
            err.trim()
        );
    }
    let (filename, sha256) = parse_print_uris(package, &String::from_utf8_lossy(&out.stdout))?;
    let version = Command::new("apt-cache")
        .args(["policy", package])
        .run_get_string()?
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Candidate:")
                .map(|v| v.trim().to_string())
        })
        .with_context(|| format!("apt-cache policy {package} names no candidate version"))?;
    Ok(Deb {
        package: package.to_string(),
        version,
        filename,
        sha256,
    })
}

/// The `.deb` in `cache` (downloaded when it is not there with the expected SHA-256).
#[context("Fetching {} {}", deb.package, deb.version)]
pub fn fetch(deb: &Deb, cache: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let _lock = lock::exclusive(&cache.join(".lock"), "the package cache", Wait::Block)?;
    let dest = cache.join(&deb.filename);
    if dest.is_file() && crate::repo::sha256_file(&dest)? == deb.sha256 {
        return Ok(dest);
    }
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(cache)
        .with_context(|| format!("creating a download directory in {}", cache.display()))?;
    Command::new("apt-get")
        .args(["download", "-q"])
        .arg(format!("{}={}", deb.package, deb.version))
        .current_dir(tmp.path())
        .run()?;
    let got = tmp.path().join(&deb.filename);
    if !got.is_file() {
        bail!(
            "apt-get download wrote no {} in {}",
            deb.filename,
            tmp.path().display()
        );
    }
    let hash = crate::repo::sha256_file(&got)?;
    if hash != deb.sha256 {
        bail!(
            "{}: SHA-256 {hash} is not the {} apt's lists record",
            deb.filename,
            deb.sha256
        );
    }
    std::fs::rename(&got, &dest)
        .with_context(|| format!("moving {} to {}", got.display(), dest.display()))?;
    Ok(dest)
}

/// Unpack `deb` into `dir` (`dpkg-deb -x`: files only, no maintainer script runs).
pub fn extract(deb: &Path, dir: &Path) -> Result<()> {
    Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dir)
        .run()
        .with_context(|| format!("unpacking {}", deb.display()))
}

/// A regular file at `rel` inside an unpacked package: a link (`/usr/lib/ipxe/ipxe.efi ->
/// /boot/ipxe.efi`) would lead out of it onto the build machine, so it is refused.
pub fn regular_file(dir: &Path, rel: &str, package: &str) -> Result<PathBuf> {
    let p = dir.join(rel);
    let meta = std::fs::symlink_metadata(&p).with_context(|| format!("{package} has no /{rel}"))?;
    if !meta.file_type().is_file() {
        bail!("/{rel} in {package} is not a regular file");
    }
    Ok(p)
}

/// The regular file at `rel` of `deb`: fetched into `cache` ([`fetch`]) and unpacked into
/// `work/deb-PACKAGE` ([`extract`]).
pub fn take_file(deb: &Deb, cache: &Path, work: &Path, rel: &str) -> Result<PathBuf> {
    let file = fetch(deb, cache)?;
    let unpacked = work.join(format!("deb-{}", deb.package));
    extract(&file, &unpacked)?;
    regular_file(&unpacked, rel, &deb.package)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_uris_line_is_parsed() {
        let out = "'http://deb.example/pool/main/i/ipxe/ipxe_1.0.0%2bgit-5.1_all.deb' ipxe_1.0.0+git-5.1_all.deb 1226548 SHA256:ABCDEF0123\n";
        let (f, h) = parse_print_uris("ipxe", out).unwrap();
        assert_eq!(f, "ipxe_1.0.0+git-5.1_all.deb");
        assert_eq!(h, "abcdef0123");
        assert!(parse_print_uris("ipxe", "").is_err());
        assert!(parse_print_uris("ipxe", "'u' f 1 MD5Sum:aa").is_err());
    }

    #[test]
    fn links_in_a_package_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("usr/lib/ipxe")).unwrap();
        std::os::unix::fs::symlink("/boot/ipxe.efi", d.path().join("usr/lib/ipxe/ipxe.efi"))
            .unwrap();
        let err = regular_file(d.path(), "usr/lib/ipxe/ipxe.efi", "ipxe").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = regular_file(d.path(), "boot/ipxe.efi", "ipxe").unwrap_err();
        assert!(err.to_string().contains("has no /boot/ipxe.efi"), "{err}");
    }
}
