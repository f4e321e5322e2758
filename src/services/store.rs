//! Placing a deployment's bound images straight into docker's image store, before docker
//! starts: no tar, no copy. The image root in the deployment is hard linked into a new
//! overlay2 layer (one file system: the deployment and `/var` both live on the root file
//! system of an OSTree host), and the layer, the image and its tag are written as docker
//! 20.10 keeps them (`/var/lib/docker/image/overlay2`). Docker reads them when it starts.
//!
//! What docker finds (each file without a trailing newline, as docker writes them):
//!
//! ```text
//! overlay2/CACHE-ID/diff/...          the image root, hard linked (a layer with no parent)
//! overlay2/CACHE-ID/link              LID: 26 characters of base32
//! overlay2/l/LID -> ../CACHE-ID/diff
//! image/overlay2/layerdb/sha256/DIFF/{diff,size,cache-id}
//! image/overlay2/imagedb/content/sha256/ID   the image's config (ID = its SHA-256)
//! image/overlay2/repositories.json           NAME -> NAME:TAG -> sha256:ID
//! ```
//!
//! The layer is named by the digest of the image root's canonical tar
//! ([`super::layer`], computed at compose time); its cache id and link id are derived from
//! it, so placing again after a crash reuses (or replaces) what a first attempt left, and
//! the layer is written before the entry that names it. The one thing docker could do with
//! an image it pulled and cannot with a placed one is `docker save` or `docker push` it (no
//! `tar-split.json.gz`: docker says so when asked); a placed image runs, inspects, tags and
//! is removed like any other. A lower layer is never written by overlayfs (a container's
//! changes go to its own upper layer), so the deployment's files stay as the commit has them.
//!
//! The layout is docker's own (moby 20.10: `daemon/graphdriver/overlay2`, `layer/filestore.go`,
//! `image/fs.go`, `reference/store.go`); [`DockerStore::open`] declines a data directory
//! that another storage driver uses, and then the image is imported as before.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{BoundImage, DIGEST_LABEL, REF_LABEL};

/// What [`DockerStore::place`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// The tag already named this image.
    Present,
    /// The image and its layer were written.
    Placed,
    /// Docker had the image (an older deployment's, say): only the tag was written.
    Tagged,
}

impl Placed {
    /// The word the record and the verdict use.
    pub fn word(self) -> &'static str {
        match self {
            Placed::Present => "present",
            Placed::Placed => "placed",
            Placed::Tagged => "tagged",
        }
    }
}

/// What `host place-images` did for one image this boot, as `load-images` reads it back
/// (`/run/slipway/images-placed.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PlacedRecord {
    pub digest: String,
    /// docker: a [`Placed::word`], or why it was not placed (it is imported then).
    pub result: String,
    pub milliseconds: u64,
    /// containerd's CRI (`k8s.io`): a [`Placed::word`], or why not.
    #[serde(default)]
    pub cri: String,
    #[serde(default)]
    pub cri_milliseconds: u64,
}

impl PlacedRecord {
    /// The word of an outcome, or the error's whole text.
    pub fn outcome(r: &Result<Placed>) -> String {
        match r {
            Ok(p) => p.word().to_string(),
            Err(e) => format!("{e:#}"),
        }
    }

    /// What docker's store was given for `digest` this boot: the image written or only
    /// tagged (`None`: nothing, or another digest, or it failed).
    pub fn for_docker(&self, digest: &str) -> Option<Placed> {
        if self.digest != digest {
            return None;
        }
        [Placed::Placed, Placed::Tagged]
            .into_iter()
            .find(|p| p.word() == self.result)
    }
}

/// Storage drivers other than overlay2 that keep layers in docker's data directory.
const OTHER_DRIVERS: &[&str] = &[
    "vfs",
    "btrfs",
    "zfs",
    "devicemapper",
    "aufs",
    "fuse-overlayfs",
    "overlay",
];

/// docker's data directory (`/var/lib/docker`, as slipway sees it).
pub struct DockerStore {
    dir: PathBuf,
}

/// docker's name for the machine's architecture.
fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The image's config as docker keeps it: what `docker import --change` would set, the
/// labels, and the layer.
pub fn config_json(img: &BoundImage, diff_id: &str) -> Vec<u8> {
    let c = &img.config;
    let mut config = serde_json::Map::new();
    if let Some(u) = &c.user {
        config.insert("User".into(), json!(u));
    }
    if let Some(w) = &c.workdir {
        config.insert("WorkingDir".into(), json!(w));
    }
    if let Some(e) = &c.entrypoint {
        config.insert("Entrypoint".into(), json!(e));
    }
    if let Some(cmd) = &c.cmd {
        config.insert("Cmd".into(), json!(cmd));
    }
    if !c.env.is_empty() {
        let env: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        config.insert("Env".into(), json!(env));
    }
    if !c.exposed_ports.is_empty() {
        let ports: BTreeMap<String, Value> = c
            .exposed_ports
            .iter()
            .map(|p| (format!("{p}/tcp"), json!({})))
            .collect();
        config.insert("ExposedPorts".into(), json!(ports));
    }
    config.insert(
        "Labels".into(),
        json!({DIGEST_LABEL: img.digest, REF_LABEL: img.reference()}),
    );
    let created = "1970-01-01T00:00:00Z";
    let v = json!({
        "architecture": docker_arch(),
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{
            "created": created,
            "created_by": format!("slipway: bound image {}, placed from the deployment", img.reference()),
        }],
    });
    // serde_json's map is ordered: the same image gives the same bytes, so the same id.
    serde_json::to_vec(&v).expect("json")
}

/// A hex digest from a `sha256:` one.
fn hex_of(digest: &str) -> Result<&str> {
    let h = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("`{digest}` is not a sha256 digest"))?;
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("`{digest}` is not a sha256 digest");
    }
    Ok(h)
}

/// docker's link id: 26 characters of RFC 4648 base32 (upper case, no padding).
fn link_id(seed: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in seed {
        acc = (acc << 8) | *b as u32;
        bits += 8;
        while bits >= 5 && out.len() < 26 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 && out.len() < 26 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn mkdir(p: &Path, mode: u32) -> Result<()> {
    match std::fs::create_dir(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", p.display())),
    }
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", p.display()))
}

/// Copy owner, mode and extended attributes of `src` onto `dst` (not followed).
pub(crate) fn copy_meta(src: &Path, m: &std::fs::Metadata, dst: &Path) -> Result<()> {
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()))
        .with_context(|| format!("setting the owner of {}", dst.display()))?;
    if !m.file_type().is_symlink() {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .with_context(|| format!("setting the mode of {}", dst.display()))?;
    }
    for (name, value) in crate::sys::file::xattrs(src)? {
        rustix::fs::lsetxattr(dst, &name[..], &value, rustix::fs::XattrFlags::empty())
            .with_context(|| format!("setting xattrs of {}", dst.display()))?;
    }
    Ok(())
}

/// The tree at `src` into `dst` (which exists): directories and links made anew, files hard
/// linked (copied when the file has as many links as the file system allows).
pub(crate) fn link_tree(src: &Path, dst: &Path) -> Result<u64> {
    let mut files = 0;
    for e in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let e = e.with_context(|| format!("reading {}", src.display()))?;
        let (s, d) = (e.path(), dst.join(e.file_name()));
        let m =
            std::fs::symlink_metadata(&s).with_context(|| format!("looking at {}", s.display()))?;
        let ft = m.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
            files += link_tree(&s, &d)?;
            copy_meta(&s, &m, &d)?;
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&s).with_context(|| format!("reading {}", s.display()))?;
            std::os::unix::fs::symlink(&t, &d)
                .with_context(|| format!("creating {}", d.display()))?;
            copy_meta(&s, &m, &d)?;
        } else if ft.is_file() {
            match std::fs::hard_link(&s, &d) {
                Ok(()) => {}
                Err(err) if err.raw_os_error() == Some(libc::EMLINK) => {
                    std::fs::copy(&s, &d)
                        .with_context(|| format!("copying {} to {}", s.display(), d.display()))?;
                    copy_meta(&s, &m, &d)?;
                }
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("linking {} to {}", s.display(), d.display()));
                }
            }
            files += 1;
        } else {
            bail!("{} is not a file, directory or link", s.display());
        }
    }
    Ok(files)
}

/// The host's physical root file system bound again, not recursively and writable, on a new
/// directory under `/run` (in slipway's own mount namespace): one mount that holds both the
/// deployments and the stateroots' `/var`, which the host mounts on its own (a hard link never
/// crosses mounts). Unmounted when dropped.
#[derive(Debug)]
pub struct RootView {
    dir: Option<tempfile::TempDir>,
}

impl RootView {
    pub fn bind(physical_root: &Path) -> Result<Self> {
        use nix::mount::MsFlags;
        let dir = tempfile::Builder::new()
            .prefix("slipway-root-")
            .tempdir_in("/run")
            .context("creating a mount point under /run")?;
        nix::mount::mount(
            Some(physical_root),
            dir.path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| {
            format!(
                "binding {} on {}",
                physical_root.display(),
                dir.path().display()
            )
        })?;
        let view = RootView { dir: Some(dir) };
        // A bind takes the flags of its source (the host's /sysroot is read-only): writable.
        nix::mount::mount(
            None::<&str>,
            view.path(),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        )
        .with_context(|| format!("making {} writable", view.path().display()))?;
        Ok(view)
    }

    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/"))
    }
}

impl Drop for RootView {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take()
            && let Err(e) = nix::mount::umount2(dir.path(), nix::mount::MntFlags::MNT_DETACH)
        {
            crate::sys::ui::warn(format!("unmounting {}: {e}", dir.path().display()));
            let _ = dir.keep();
        }
    }
}

/// Removes a half-made layer directory unless disarmed.
struct Wipe(Option<PathBuf>);

impl Drop for Wipe {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

impl DockerStore {
    /// docker's data directory at `dir`, prepared for overlay2 (the directories docker
    /// itself would make); `None` when another storage driver keeps layers there.
    pub fn open(dir: &Path) -> Result<Option<DockerStore>> {
        for d in OTHER_DRIVERS {
            let p = dir.join(d);
            if p.is_dir()
                && std::fs::read_dir(&p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .next()
                    .is_some()
            {
                return Ok(None);
            }
        }
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710))?;
        }
        mkdir(&dir.join("overlay2"), 0o710)?;
        mkdir(&dir.join("overlay2/l"), 0o700)?;
        let image = dir.join("image");
        mkdir(&image, 0o700)?;
        for (p, mode) in [
            ("overlay2", 0o700),
            ("overlay2/imagedb", 0o700),
            ("overlay2/imagedb/content", 0o700),
            ("overlay2/imagedb/content/sha256", 0o700),
            ("overlay2/imagedb/metadata", 0o700),
            ("overlay2/imagedb/metadata/sha256", 0o700),
            ("overlay2/layerdb", 0o700),
            ("overlay2/layerdb/sha256", 0o700),
            ("overlay2/layerdb/tmp", 0o700),
        ] {
            mkdir(&image.join(p), mode)?;
        }
        Ok(Some(DockerStore {
            dir: dir.to_path_buf(),
        }))
    }

    fn image_dir(&self) -> PathBuf {
        self.dir.join("image/overlay2")
    }

    fn repositories(&self) -> Result<Value> {
        let p = self.image_dir().join("repositories.json");
        match std::fs::read(&p) {
            Ok(b) => {
                let v: Value = serde_json::from_slice(&b)
                    .with_context(|| format!("parsing {}", p.display()))?;
                if !v["Repositories"].is_object() {
                    bail!("{}: no `Repositories` object", p.display());
                }
                Ok(v)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({"Repositories": {}})),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// The image id `NAME:TAG` names in docker's store, if any.
    pub fn tagged(&self, reference: &str) -> Result<Option<String>> {
        let name = reference
            .rsplit_once(':')
            .map(|(n, _)| n)
            .unwrap_or(reference);
        Ok(self.repositories()?["Repositories"][name][reference]
            .as_str()
            .map(String::from))
    }

    /// Put the image whose root is `src` (inside a deployment, on the file system of
    /// docker's data directory) into the store as `NAME:TAG`. Docker must not be running.
    pub fn place(&self, src: &Path, img: &BoundImage) -> Result<Placed> {
        let reference = img.reference();
        let diff_id = img
            .diff_id
            .as_deref()
            .context("the commit records no layer digest for it (composed by an older slipway)")?;
        let diff_hex = hex_of(diff_id)?;
        let config = config_json(img, diff_id);
        let id = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
        let content = self
            .image_dir()
            .join("imagedb/content/sha256")
            .join(&id["sha256:".len()..]);
        let layerdb = self.image_dir().join("layerdb/sha256").join(diff_hex);
        if self.tagged(&reference)?.as_deref() == Some(id.as_str())
            && content.is_file()
            && layerdb.join("cache-id").is_file()
        {
            return Ok(Placed::Present);
        }
        let (sdev, ddev) = (
            std::fs::metadata(src)
                .with_context(|| format!("looking at {}", src.display()))?
                .dev(),
            std::fs::metadata(&self.dir)?.dev(),
        );
        if sdev != ddev {
            bail!(
                "{} and {} are not on one file system",
                src.display(),
                self.dir.display()
            );
        }
        let had = content.is_file() && layerdb.join("cache-id").is_file();
        if !layerdb.join("cache-id").is_file() {
            self.write_layer(src, diff_id, img.bytes)?;
        }
        if !content.is_file() {
            crate::sys::file::write_atomic_mode(&content, &config, 0o600)?;
        }
        let mut repos = self.repositories()?;
        let name = img.name.clone();
        let entry = repos["Repositories"]
            .as_object_mut()
            .expect("checked")
            .entry(name)
            .or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        entry[&reference] = json!(id);
        crate::sys::file::write_atomic_mode(
            &self.image_dir().join("repositories.json"),
            &serde_json::to_vec(&repos)?,
            0o600,
        )?;
        Ok(if had { Placed::Tagged } else { Placed::Placed })
    }

    /// The layer `diff_id` from the tree at `src`: the overlay2 directory first, then the
    /// layer store's entry that names it (renamed into place).
    fn write_layer(&self, src: &Path, diff_id: &str, bytes: u64) -> Result<()> {
        let diff_hex = hex_of(diff_id)?;
        let cache_id = hex::encode(Sha256::digest(format!("slipway layer {diff_id}")));
        let lid = link_id(&Sha256::digest(format!("slipway link {diff_id}")));
        let dir = self.dir.join("overlay2").join(&cache_id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let mut wipe = Wipe(Some(dir.clone()));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o710))?;
        let diff = dir.join("diff");
        std::fs::create_dir(&diff).with_context(|| format!("creating {}", diff.display()))?;
        link_tree(src, &diff)?;
        let m = std::fs::symlink_metadata(src)?;
        copy_meta(src, &m, &diff)?;
        crate::sys::file::write_atomic_mode(&dir.join("link"), lid.as_bytes(), 0o644)?;
        let l = self.dir.join("overlay2/l").join(&lid);
        if std::fs::symlink_metadata(&l).is_ok() {
            std::fs::remove_file(&l).with_context(|| format!("removing {}", l.display()))?;
        }
        std::os::unix::fs::symlink(format!("../{cache_id}/diff"), &l)
            .with_context(|| format!("creating {}", l.display()))?;
        // The entry, written aside and renamed: docker sees a whole one or none.
        let tmp = self
            .image_dir()
            .join("layerdb/tmp")
            .join(format!("slipway-{diff_hex}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        for (f, v) in [
            ("diff", diff_id.to_string()),
            ("size", bytes.to_string()),
            ("cache-id", cache_id.clone()),
        ] {
            crate::sys::file::write_atomic_mode(&tmp.join(f), v.as_bytes(), 0o644)?;
        }
        let entry = self.image_dir().join("layerdb/sha256").join(diff_hex);
        if entry.exists() {
            std::fs::remove_dir_all(&entry)?;
        }
        std::fs::rename(&tmp, &entry)
            .with_context(|| format!("moving {} to {}", tmp.display(), entry.display()))?;
        wipe.0 = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::ImageConfig;

    fn image(diff_id: &str) -> BoundImage {
        BoundImage {
            name: "web".into(),
            tag: "v1".into(),
            digest: "sha256:content".into(),
            rootfs: "usr/lib/slipway/images/web/v1/rootfs".into(),
            config: ImageConfig {
                cmd: Some(vec!["httpd".into(), "-f".into()]),
                env: [("PATH".to_string(), "/usr/bin:/bin".to_string())].into(),
                exposed_ports: vec![8080],
                ..Default::default()
            },
            built_from: "packages".into(),
            files: 2,
            bytes: 9,
            diff_id: Some(diff_id.into()),
            layer_bytes: Some(10240),
        }
    }

    #[test]
    fn link_ids_are_docker_shaped() {
        let l = link_id(&Sha256::digest(b"x"));
        assert_eq!(l.len(), 26);
        assert!(
            l.bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        );
        assert_eq!(link_id(&[0, 0, 0, 0, 0]), "AAAAAAAA");
        assert_eq!(&link_id(b"foobar"), "MZXW6YTBOI", "RFC 4648's example");
    }

    #[test]
    fn an_image_root_is_placed_as_docker_keeps_it_and_placing_again_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("deploy/rootfs");
        std::fs::create_dir_all(src.join("usr/bin")).unwrap();
        std::fs::write(src.join("usr/bin/httpd"), "binary").unwrap();
        std::os::unix::fs::symlink("usr/bin", src.join("bin")).unwrap();
        std::fs::create_dir(src.join("secret")).unwrap();
        std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let layer = crate::services::layer::tar_digest(&src).unwrap();
        let img = image(&layer.diff_id);
        let docker = d.path().join("var/lib/docker");
        let store = DockerStore::open(&docker).unwrap().unwrap();
        assert_eq!(store.place(&src, &img).unwrap(), Placed::Placed);

        let hexid = &layer.diff_id["sha256:".len()..];
        let db = docker.join("image/overlay2/layerdb/sha256").join(hexid);
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        assert_eq!(read(db.join("diff")), layer.diff_id, "no newline");
        assert_eq!(read(db.join("size")), "9");
        let cache = read(db.join("cache-id"));
        assert_eq!(cache.len(), 64);
        let ldir = docker.join("overlay2").join(&cache);
        let lid = read(ldir.join("link"));
        assert_eq!(lid.len(), 26);
        assert_eq!(
            std::fs::read_link(docker.join("overlay2/l").join(&lid)).unwrap(),
            PathBuf::from(format!("../{cache}/diff"))
        );
        assert!(!ldir.join("lower").exists() && !ldir.join("work").exists());
        // Files are the deployment's own (one inode), links and directories made anew.
        let a = std::fs::metadata(src.join("usr/bin/httpd")).unwrap();
        let b = std::fs::metadata(ldir.join("diff/usr/bin/httpd")).unwrap();
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
        assert_eq!(
            std::fs::read_link(ldir.join("diff/bin")).unwrap(),
            PathBuf::from("usr/bin")
        );
        let m = std::fs::metadata(ldir.join("diff/secret")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o700);

        // The image: its config named by its digest, with the layer, the settings and labels.
        let repos: Value =
            serde_json::from_str(&read(docker.join("image/overlay2/repositories.json"))).unwrap();
        let id = repos["Repositories"]["web"]["web:v1"]
            .as_str()
            .unwrap()
            .to_string();
        let config = std::fs::read(
            docker
                .join("image/overlay2/imagedb/content/sha256")
                .join(&id["sha256:".len()..]),
        )
        .unwrap();
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&config))),
            id
        );
        let c: Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"][0], layer.diff_id.as_str());
        assert_eq!(c["config"]["Cmd"], json!(["httpd", "-f"]));
        assert_eq!(c["config"]["Env"], json!(["PATH=/usr/bin:/bin"]));
        assert_eq!(c["config"]["ExposedPorts"], json!({"8080/tcp": {}}));
        assert_eq!(c["config"]["Labels"][DIGEST_LABEL], "sha256:content");
        assert_eq!(c["config"]["Labels"][REF_LABEL], "web:v1");
        assert_eq!(
            store.tagged("web:v1").unwrap().as_deref(),
            Some(id.as_str())
        );

        // Again: nothing to do. A second tag of the same image shares the layer.
        assert_eq!(store.place(&src, &img).unwrap(), Placed::Present);
        let mut other = img.clone();
        other.tag = "v2".into();
        assert_eq!(store.place(&src, &other).unwrap(), Placed::Placed);
        // v1 named another image meanwhile (as after an upgrade): placing v1 again only tags.
        let repos_file = docker.join("image/overlay2/repositories.json");
        let mut r: Value = serde_json::from_str(&read(repos_file.clone())).unwrap();
        r["Repositories"]["web"]["web:v1"] = json!("sha256:".to_string() + &"0".repeat(64));
        std::fs::write(&repos_file, r.to_string()).unwrap();
        assert_eq!(store.place(&src, &img).unwrap(), Placed::Tagged);
        assert_eq!(
            store.tagged("web:v1").unwrap().as_deref(),
            Some(id.as_str())
        );
        let repos: Value =
            serde_json::from_str(&read(docker.join("image/overlay2/repositories.json"))).unwrap();
        assert_eq!(repos["Repositories"]["web"].as_object().unwrap().len(), 2);
        let layers = std::fs::read_dir(docker.join("overlay2")).unwrap().count();
        assert_eq!(layers, 2, "one layer and l/");
    }

    #[test]
    fn a_store_of_another_driver_is_left_to_docker_import() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("vfs/dir/abc")).unwrap();
        assert!(DockerStore::open(d.path()).unwrap().is_none());
    }

    #[test]
    fn a_layer_left_half_written_is_written_again() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("rootfs");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/a"), "a").unwrap();
        let layer = crate::services::layer::tar_digest(&src).unwrap();
        let img = image(&layer.diff_id);
        let docker = d.path().join("docker");
        let store = DockerStore::open(&docker).unwrap().unwrap();
        // A first attempt cut after the overlay2 directory, before the layer store's entry.
        let cache_id = hex::encode(Sha256::digest(format!("slipway layer {}", layer.diff_id)));
        std::fs::create_dir_all(docker.join("overlay2").join(&cache_id).join("diff/junk")).unwrap();
        assert_eq!(store.place(&src, &img).unwrap(), Placed::Placed);
        let diff = docker.join("overlay2").join(&cache_id).join("diff");
        assert!(diff.join("etc/a").is_file());
        assert!(
            !diff.join("junk").exists(),
            "the half-made layer was replaced"
        );
    }
}
