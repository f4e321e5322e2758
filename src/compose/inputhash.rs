//! Change detection.
//!
//! The input hash is a SHA-256 over everything that decides what a compose produces: the
//! flattened treefile, the content of every file it refers to, and the resolved package set
//! (name, version, architecture and the hash of each .deb), plus slipway's own version, the
//! hash of its sources (the conversion code is an input too) and the hash of the slipway
//! executable the host carries. Equal to the hash recorded on the ref's commit
//! means nothing changed.
//!
//! The index hash is a cheaper pre-check: the treefile and its files plus the signed release
//! files of every apt source. If those are unchanged, the package indexes are unchanged, so
//! resolution would give the same set; the compose can stop without asking apt.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::compose::apt::ResolvedPackage;
use crate::treefile::Treefile;

/// The layout of the hash itself.
const FORMAT: &str = "slipway-inputhash-2";

/// SHA-256 of slipway's own sources (see `build.rs`): a change to the code that converts,
/// postprocesses or commits a tree is a change of input, so it composes anew.
pub const SOURCE_HASH: &str = env!("SLIPWAY_SOURCE_HASH");

fn treefile_part(h: &mut Sha256, tf: &Treefile, host_exe: &str) -> Result<()> {
    treefile_part_with_source(h, tf, SOURCE_HASH, host_exe)
}

fn treefile_part_with_source(
    h: &mut Sha256,
    tf: &Treefile,
    source: &str,
    host_exe: &str,
) -> Result<()> {
    h.update(FORMAT.as_bytes());
    h.update(b"\0");
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(b"\0source\0");
    h.update(source.as_bytes());
    h.update(b"\0host-executable\0");
    h.update(host_exe.as_bytes());
    h.update(b"\0treefile\0");
    h.update(tf.canonical_json().as_bytes());
    for f in tf.referenced_files() {
        let data = std::fs::read(&f.path)
            .with_context(|| format!("reading {} for the input hash", f.display))?;
        h.update(b"\0file\0");
        h.update(f.display.as_bytes());
        h.update(b"\0");
        h.update(Sha256::digest(&data));
    }
    Ok(())
}

/// The input hash of a treefile, its resolved packages and the slipway executable the host
/// carries (`host_exe`: its SHA-256).
pub fn input_hash(tf: &Treefile, packages: &[ResolvedPackage], host_exe: &str) -> Result<String> {
    input_hash_with_images(tf, packages, &Default::default(), host_exe)
}

/// The input hash including the resolved package set of each package image (`name:tag` ->
/// packages): a new version of a package in an image is a change of input.
pub fn input_hash_with_images(
    tf: &Treefile,
    packages: &[ResolvedPackage],
    images: &std::collections::BTreeMap<String, Vec<ResolvedPackage>>,
    host_exe: &str,
) -> Result<String> {
    let mut h = Sha256::new();
    treefile_part(&mut h, tf, host_exe)?;
    let mut pkgs: Vec<&ResolvedPackage> = packages.iter().collect();
    pkgs.sort();
    for p in pkgs {
        h.update(format!("\0pkg\0{} {} {} {}", p.name, p.version, p.arch, p.hash).as_bytes());
    }
    for (image, packages) in images {
        h.update(format!("\0image\0{image}").as_bytes());
        let mut pkgs: Vec<&ResolvedPackage> = packages.iter().collect();
        pkgs.sort();
        for p in pkgs {
            h.update(format!("\0pkg\0{} {} {} {}", p.name, p.version, p.arch, p.hash).as_bytes());
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// The index hash: treefile and host executable plus the apt sources' release files digest.
pub fn index_hash(tf: &Treefile, index_digest: &str, host_exe: &str) -> Result<String> {
    let mut h = Sha256::new();
    treefile_part(&mut h, tf, host_exe)?;
    h.update(b"\0index\0");
    h.update(index_digest.as_bytes());
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn pkg(name: &str, v: &str) -> ResolvedPackage {
        ResolvedPackage {
            name: name.into(),
            version: v.into(),
            arch: "amd64".into(),
            hash: "SHA256:00".into(),
        }
    }

    fn setup(dir: &Path) -> std::path::PathBuf {
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let t = dir.join("t.json");
        std::fs::write(&t, r#"{"ref": "r", "packages": ["aa"], "add-files": [["daemon.json", "/etc/docker/daemon.json"]]}"#).unwrap();
        t
    }

    #[test]
    fn same_inputs_same_hash_any_change_differs() {
        let d = tempfile::tempdir().unwrap();
        let t = setup(d.path());
        let pk = vec![pkg("a", "1"), pkg("b", "2")];
        let base = input_hash(&Treefile::load(&t).unwrap(), &pk, "exe").unwrap();
        // Stable, and independent of package order.
        let rev: Vec<_> = pk.iter().rev().cloned().collect();
        assert_eq!(
            base,
            input_hash(&Treefile::load(&t).unwrap(), &rev, "exe").unwrap()
        );
        // A package version.
        assert_ne!(
            base,
            input_hash(
                &Treefile::load(&t).unwrap(),
                &[pkg("a", "1"), pkg("b", "3")],
                "exe"
            )
            .unwrap()
        );
        // A referenced file's content.
        std::fs::write(d.path().join("daemon.json"), r#"{"debug": true}"#).unwrap();
        let changed_file = input_hash(&Treefile::load(&t).unwrap(), &pk, "exe").unwrap();
        assert_ne!(base, changed_file);
        // The treefile itself.
        std::fs::write(&t, r#"{"ref": "r", "packages": ["aa", "cc"], "add-files": [["daemon.json", "/etc/docker/daemon.json"]]}"#).unwrap();
        assert_ne!(
            changed_file,
            input_hash(&Treefile::load(&t).unwrap(), &pk, "exe").unwrap()
        );
    }

    #[test]
    fn slipway_sources_are_an_input() {
        let d = tempfile::tempdir().unwrap();
        let t = Treefile::load(&setup(d.path())).unwrap();
        let hash = |source: &str, exe: &str| {
            let mut h = Sha256::new();
            treefile_part_with_source(&mut h, &t, source, exe).unwrap();
            hex::encode(h.finalize())
        };
        assert_eq!(hash(SOURCE_HASH, "e"), hash(SOURCE_HASH, "e"));
        assert_ne!(
            hash(SOURCE_HASH, "e"),
            hash("another build of slipway", "e")
        );
        // The executable the host carries (a release or a debug build of the same sources).
        assert_ne!(hash(SOURCE_HASH, "e"), hash(SOURCE_HASH, "f"));
        assert_eq!(SOURCE_HASH.len(), 64, "set by build.rs");
    }

    #[test]
    fn hash_does_not_depend_on_checkout_location() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (ta, tb) = (setup(a.path()), setup(b.path()));
        let pk = vec![pkg("a", "1")];
        assert_eq!(
            input_hash(&Treefile::load(&ta).unwrap(), &pk, "exe").unwrap(),
            input_hash(&Treefile::load(&tb).unwrap(), &pk, "exe").unwrap()
        );
    }

    #[test]
    fn index_hash_tracks_the_index_digest() {
        let d = tempfile::tempdir().unwrap();
        let t = Treefile::load(&setup(d.path())).unwrap();
        assert_eq!(
            index_hash(&t, "x", "e").unwrap(),
            index_hash(&t, "x", "e").unwrap()
        );
        assert_ne!(
            index_hash(&t, "x", "e").unwrap(),
            index_hash(&t, "y", "e").unwrap()
        );
    }
}
