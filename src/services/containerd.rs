//! The bound images for Kubernetes: containerd's CRI (namespace `k8s.io`) gets each image
//! the way `place-images` gives it to docker, from the deployment's own files, with no
//! registry and no copy, so a kubelet finds them as if pulled.
//!
//! Through containerd's own command line (`ctr`), while containerd runs:
//!
//! 1. the layer: a snapshot (overlayfs snapshotter) prepared with no parent, the image root
//!    hard linked into its directory, committed under the layer's chain id (for one layer,
//!    its diff id);
//! 2. the image: an OCI archive holding only the index, the manifest and the config (the
//!    config is docker's, byte for byte, so the image has the same id in both), imported;
//!    containerd finds the layer unpacked already (the snapshot) and never asks for its blob;
//! 3. labels: `io.cri-containerd.pinned=pinned` (kubelet's image garbage collection keeps
//!    pinned images, containerd 1.6.22 and later), `org.slipway.digest`; the snapshot's
//!    `containerd.io/gc.root` (set by `ctr snapshots commit`) is removed, so the image keeps
//!    it and removing the image frees it.
//!
//! The names are CRI's: `web:v1` is `docker.io/library/web:v1`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{BoundImage, DIGEST_LABEL};
use crate::sys::cmd::CommandRunExt;

/// containerd's namespace for Kubernetes (the CRI plugin's).
pub const NAMESPACE: &str = "k8s.io";
/// The label kubelet's image garbage collection spares (containerd 1.6.22 and later).
pub const PINNED_LABEL: &str = "io.cri-containerd.pinned";

use super::store::Placed;

/// The fully qualified name CRI looks an image up by (`web:v1` -> `docker.io/library/web:v1`).
pub fn cri_name(reference: &str) -> String {
    let (first, _) = reference.split_once('/').unwrap_or(("", reference));
    if !reference.contains('/') {
        format!("docker.io/library/{reference}")
    } else if first.contains('.') || first.contains(':') || first == "localhost" {
        reference.to_string()
    } else {
        format!("docker.io/{reference}")
    }
}

fn ctr() -> Command {
    let mut c = Command::new("ctr");
    c.args(["--namespace", NAMESPACE]);
    c
}

/// The labels of image `name` in containerd, if it has it (`ctr images ls` prints them as
/// `k=v,k=v` in the last column).
fn image_labels(name: &str) -> Result<Option<String>> {
    let out = ctr()
        .args(["images", "ls"])
        .arg(format!("name=={name}"))
        .run_get_string()?;
    Ok(out
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(|l| l.split_whitespace().last().unwrap_or("").to_string()))
}

/// The OCI archive of an image without its layer blob: `oci-layout`, `index.json` naming
/// `name`, the manifest and the config.
pub fn archive(name: &str, config: &[u8], diff_id: &str, layer_bytes: u64) -> Result<Vec<u8>> {
    let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(config)));
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": diff_id,
            "size": layer_bytes,
        }],
    }))?;
    let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
    let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))?;
    let mut b = tar::Builder::new(Vec::new());
    let blob = |d: &str| format!("blobs/sha256/{}", &d["sha256:".len()..]);
    for (path, data) in [
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_string(), index),
        (blob(&manifest_digest), manifest),
        (blob(&config_digest), config.to_vec()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, &path, &data[..])
            .context("writing the OCI archive")?;
    }
    b.into_inner().context("writing the OCI archive")
}

/// Where containerd's `Source` path (`/var/lib/containerd/...`) is for slipway: under the
/// stateroot's var directory `var_dir`.
fn source_in(var_dir: &Path, source: &str) -> Result<PathBuf> {
    let rel = source
        .strip_prefix("/var/")
        .with_context(|| format!("containerd's snapshot {source} is not under /var"))?;
    crate::sys::tree::check_path("snapshot", rel).map(|r| var_dir.join(r))
}

/// Give the image whose root is `src` to containerd's CRI as [`cri_name`] (`Present` or
/// `Placed`). `var_dir`: the
/// stateroot's `/var` as slipway sees it (containerd's directories are below it);
/// `tmp`: where the archive is written.
pub fn place(src: &Path, img: &BoundImage, var_dir: &Path, tmp: &Path) -> Result<Placed> {
    let name = cri_name(&img.reference());
    let diff_id = img
        .diff_id
        .as_deref()
        .context("the commit records no layer digest for it (composed by an older slipway)")?;
    let layer_bytes = img
        .layer_bytes
        .context("the commit records no layer size for it (composed by an older slipway)")?;
    let labels = image_labels(&name)?;
    if labels.as_deref().is_some_and(|l| {
        l.split(',')
            .any(|kv| kv == format!("{DIGEST_LABEL}={}", img.digest))
    }) {
        return Ok(Placed::Present);
    }
    // 1. The layer, unless containerd has it.
    let have = ctr()
        .args(["snapshots", "info", diff_id])
        .run_get_output()?
        .status
        .success();
    if !have {
        let key = format!("slipway-{}", &diff_id["sha256:".len()..]);
        // What a cut attempt left (an active snapshot under the key).
        let _ = ctr().args(["snapshots", "rm", &key]).run_get_output();
        let mounts: serde_json::Value = ctr()
            .args(["snapshots", "prepare", "--mounts", &key])
            .run_and_parse_json()
            .context("preparing a snapshot")?;
        let source = mounts[0]["Source"]
            .as_str()
            .filter(|_| mounts[0]["Type"] == "bind")
            .with_context(|| format!("a new snapshot's mounts are not one bind mount: {mounts}"))?;
        let fs = source_in(var_dir, source)?;
        if std::fs::read_dir(&fs)
            .with_context(|| format!("reading {}", fs.display()))?
            .next()
            .is_some()
        {
            bail!("the new snapshot {} is not empty", fs.display());
        }
        super::store::link_tree(src, &fs)?;
        let m = std::fs::symlink_metadata(src)?;
        super::store::copy_meta(src, &m, &fs)?;
        ctr()
            .args(["snapshots", "commit", diff_id, &key])
            .run()
            .context("committing the snapshot")?;
    }
    // 2. The image, its layer found unpacked.
    let config = super::store::config_json(img, diff_id);
    std::fs::create_dir_all(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut t = tempfile::Builder::new()
        .prefix(".slipway-oci-")
        .suffix(".tar")
        .tempfile_in(tmp)
        .with_context(|| format!("creating a file in {}", tmp.display()))?;
    t.write_all(&archive(&name, &config, diff_id, layer_bytes)?)
        .with_context(|| format!("writing {}", t.path().display()))?;
    ctr()
        .args(["images", "import", "--snapshotter", "overlayfs"])
        .arg(t.path())
        .run()
        .with_context(|| format!("importing {name}"))?;
    // 3. Labels; the snapshot now belongs to the image.
    ctr()
        .args(["images", "label", &name])
        .arg(format!("{PINNED_LABEL}=pinned"))
        .arg(format!("{DIGEST_LABEL}={}", img.digest))
        .run()
        .with_context(|| format!("labelling {name}"))?;
    let _ = ctr()
        .args(["snapshots", "label", diff_id, "containerd.io/gc.root="])
        .run_get_output();
    Ok(Placed::Placed)
}

/// Remove the images slipway gave containerd that no deployment binds (by digest). Returns
/// what was removed and what could not be.
pub fn remove_unbound(
    bound: &std::collections::BTreeSet<String>,
) -> Result<(Vec<String>, Vec<String>)> {
    let (mut removed, mut kept) = (Vec::new(), Vec::new());
    let out = ctr().args(["images", "ls"]).run_get_string()?;
    for l in out.lines().skip(1) {
        let (Some(name), Some(labels)) = (l.split_whitespace().next(), l.split_whitespace().last())
        else {
            continue;
        };
        let Some(digest) = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{DIGEST_LABEL}=")))
        else {
            continue;
        };
        if bound.contains(digest) {
            continue;
        }
        super::docker::sort_removal(
            name,
            digest,
            ctr().args(["images", "rm", name]).run_get_output(),
            &mut removed,
            &mut kept,
        );
    }
    Ok((removed, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_names_are_fully_qualified() {
        assert_eq!(cri_name("web:v1"), "docker.io/library/web:v1");
        assert_eq!(
            cri_name("openstack/keystone:1"),
            "docker.io/openstack/keystone:1"
        );
        assert_eq!(cri_name("reg.example:5000/x:1"), "reg.example:5000/x:1");
        assert_eq!(cri_name("localhost/x:1"), "localhost/x:1");
    }

    #[test]
    fn the_archive_names_the_image_and_holds_no_layer() {
        let config = br#"{"rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let diff = format!("sha256:{}", "a".repeat(64));
        let a = archive("docker.io/library/web:v1", config, &diff, 10240).unwrap();
        let mut ar = tar::Archive::new(&a[..]);
        let mut files = std::collections::BTreeMap::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().display().to_string();
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            files.insert(p, v);
        }
        assert_eq!(files.len(), 4, "{:?}", files.keys());
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(
            m["annotations"]["io.containerd.image.name"],
            "docker.io/library/web:v1"
        );
        let md = m["digest"].as_str().unwrap();
        let manifest = &files[&format!("blobs/sha256/{}", &md[7..])];
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(manifest))),
            md
        );
        let manifest: serde_json::Value = serde_json::from_slice(manifest).unwrap();
        assert_eq!(manifest["layers"][0]["digest"], diff.as_str());
        assert_eq!(manifest["layers"][0]["size"], 10240);
        let cd = manifest["config"]["digest"].as_str().unwrap();
        assert_eq!(
            files[&format!("blobs/sha256/{}", &cd[7..])],
            config.to_vec()
        );
        assert!(
            !files.contains_key(&format!("blobs/sha256/{}", "a".repeat(64))),
            "the layer blob is not in the archive"
        );
    }

    #[test]
    fn a_snapshot_source_resolves_under_the_stateroots_var() {
        let v = Path::new("/sysroot/ostree/deploy/debian/var");
        assert_eq!(
            source_in(
                v,
                "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/3/fs"
            )
            .unwrap(),
            v.join("lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/3/fs")
        );
        assert!(source_in(v, "/etc/x").is_err());
        assert!(source_in(v, "/var/../etc").is_err());
    }
}
