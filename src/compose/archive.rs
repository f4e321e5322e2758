//! Image archives unpacked into an image root: `docker save` archives (`manifest.json`, a
//! config and layer tars) and OCI image layouts in a tar (`oci-layout`, `index.json`, blobs).
//! Debian 12's docker cannot load the second kind; slipway unpacks both the same way.
//!
//! The archive is indexed once (name -> offset and size, links), then the config and the layers
//! are read from their offsets. Layers (plain, or gzip) are applied in order inside the image
//! root through [`Tree`], so no entry reaches outside it, whatever its path or link says:
//! `.wh.NAME` removes NAME from the layers below, `.wh..wh..opq` empties its directory of
//! what the layers below put there. What an OSTree commit cannot hold (device nodes, FIFOs)
//! is refused by name. Extended attributes are not carried.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::sys::tree::Tree;
use crate::treefile::services::ImageConfig;

/// Where a member of the archive is.
#[derive(Debug, Clone)]
enum Member {
    File { pos: u64, size: u64 },
    Link(String),
}

/// An indexed archive.
struct Archive {
    path: std::path::PathBuf,
    members: BTreeMap<String, Member>,
}

/// `./a//b/` -> `a/b`; `None` for paths with `..` or nothing left.
fn normalize(p: &str) -> Option<String> {
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

impl Archive {
    fn index(path: &Path) -> Result<Archive> {
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut ar = tar::Archive::new(BufReader::new(f));
        let mut members = BTreeMap::new();
        for e in ar
            .entries()
            .with_context(|| format!("{} is not a tar archive", path.display()))?
        {
            let e = e.with_context(|| format!("{}: a damaged tar archive", path.display()))?;
            let name = e.path()?.to_string_lossy().into_owned();
            let Some(name) = normalize(&name) else {
                continue;
            };
            match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    members.insert(
                        name,
                        Member::File {
                            pos: e.raw_file_position(),
                            size: e.size(),
                        },
                    );
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(t) = e.link_name()? {
                        let t = t.to_string_lossy().into_owned();
                        let target = if e.header().entry_type() == tar::EntryType::Symlink {
                            let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                            format!("{dir}/{t}")
                        } else {
                            t
                        };
                        if let Some(t) = normalize_dots(&target) {
                            members.insert(name, Member::Link(t));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Archive {
            path: path.to_path_buf(),
            members,
        })
    }

    fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let mut n = normalize(name)?;
        for _ in 0..16 {
            match self.members.get(&n)? {
                Member::File { pos, size } => return Some((*pos, *size)),
                Member::Link(t) => n = t.clone(),
            }
        }
        None
    }

    fn has(&self, name: &str) -> bool {
        self.locate(name).is_some()
    }

    fn open(&self, name: &str) -> Result<impl Read + use<>> {
        let (pos, size) = self.locate(name).ok_or_else(|| {
            anyhow!(
                "{}: `{name}` is named but not in the archive",
                self.path.display()
            )
        })?;
        let mut f =
            File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        f.seek(SeekFrom::Start(pos))?;
        Ok(BufReader::new(f.take(size)))
    }

    fn json(&self, name: &str) -> Result<Value> {
        let mut text = String::new();
        self.open(name)?
            .read_to_string(&mut text)
            .with_context(|| format!("{}: reading {name}", self.path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: {name} is not valid JSON", self.path.display()))
    }
}

/// `a/../b` -> `b` (link targets inside the archive); `None` when it leaves the archive.
fn normalize_dots(p: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// How an archive is laid out, as found.
#[derive(Debug, PartialEq, Eq)]
pub enum Format {
    DockerSave,
    OciLayout,
}

/// A layer: where it is in the archive.
struct Layer {
    member: String,
}

/// The config and layers an archive holds.
fn plan(ar: &Archive, what: &str) -> Result<(Format, Value, Vec<Layer>)> {
    let file = ar.path.display();
    if ar.has("manifest.json") {
        let m = ar.json("manifest.json")?;
        let list = m
            .as_array()
            .ok_or_else(|| anyhow!("image {what}: {file}: manifest.json is not a list"))?;
        if list.len() != 1 {
            bail!(
                "image {what}: {file} holds {} images; save one image per archive",
                list.len()
            );
        }
        let e = &list[0];
        let config = e["Config"]
            .as_str()
            .ok_or_else(|| anyhow!("image {what}: {file}: manifest.json has no Config"))?;
        let layers = e["Layers"]
            .as_array()
            .ok_or_else(|| anyhow!("image {what}: {file}: manifest.json has no Layers"))?
            .iter()
            .map(|l| {
                l.as_str()
                    .map(|s| Layer { member: s.into() })
                    .ok_or_else(|| anyhow!("image {what}: {file}: a layer that is not a path"))
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok((Format::DockerSave, ar.json(config)?, layers));
    }
    if ar.has("index.json") && ar.has("oci-layout") {
        let blob = |digest: &str| -> Result<String> {
            let (alg, hex) = digest
                .split_once(':')
                .ok_or_else(|| anyhow!("image {what}: {file}: `{digest}` is not a digest"))?;
            Ok(format!("blobs/{alg}/{hex}"))
        };
        let mut index = ar.json("index.json")?;
        // An index may name an index (nested); follow single entries down to a manifest.
        for _ in 0..4 {
            let ms = index["manifests"]
                .as_array()
                .ok_or_else(|| anyhow!("image {what}: {file}: index.json has no manifests"))?
                .clone();
            let amd64: Vec<&Value> = ms
                .iter()
                .filter(|m| {
                    m["platform"].is_null()
                        || (m["platform"]["architecture"] == "amd64"
                            && m["platform"]["os"] == "linux")
                })
                .collect();
            if amd64.len() != 1 {
                bail!(
                    "image {what}: {file}: index.json lists {} linux/amd64 manifests; save one image per archive",
                    amd64.len()
                );
            }
            let d = amd64[0]["digest"]
                .as_str()
                .ok_or_else(|| anyhow!("image {what}: {file}: a manifest without digest"))?;
            let next = ar.json(&blob(d)?)?;
            if next["manifests"].is_array() {
                index = next;
                continue;
            }
            let config = next["config"]["digest"]
                .as_str()
                .ok_or_else(|| anyhow!("image {what}: {file}: the manifest has no config"))?;
            let layers = next["layers"]
                .as_array()
                .ok_or_else(|| anyhow!("image {what}: {file}: the manifest has no layers"))?
                .iter()
                .map(|l| {
                    Ok(Layer {
                        member: blob(l["digest"].as_str().ok_or_else(|| {
                            anyhow!("image {what}: {file}: a layer without digest")
                        })?)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            return Ok((Format::OciLayout, ar.json(&blob(config)?)?, layers));
        }
        bail!("image {what}: {file}: index.json nests too deep");
    }
    bail!(
        "image {what}: {file} is not an image archive: neither manifest.json (docker save) nor \
         index.json with oci-layout (an OCI layout) is in it"
    )
}

/// The runtime settings of an image config (`config` of the OCI/docker config JSON).
fn config_of(v: &Value) -> ImageConfig {
    let c = &v["config"];
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
    };
    let mut env = BTreeMap::new();
    for e in strings(&c["Env"]).unwrap_or_default() {
        if let Some((k, v)) = e.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    let mut ports: Vec<u16> = c["ExposedPorts"]
        .as_object()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.split('/').next()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    ports.sort();
    ports.dedup();
    let nonempty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(String::from);
    ImageConfig {
        user: nonempty(c["User"].as_str()),
        workdir: nonempty(c["WorkingDir"].as_str()),
        entrypoint: strings(&c["Entrypoint"]).filter(|v| !v.is_empty()),
        cmd: strings(&c["Cmd"]).filter(|v| !v.is_empty()),
        env,
        exposed_ports: ports,
    }
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    h: sha2::Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.h, &buf[..n]);
        Ok(n)
    }
}

/// Unpack the image in `archive` into `target` (an empty directory); its runtime settings.
/// Each layer's uncompressed content must match its `diff_id` in the config, so a damaged or
/// mismatched archive is refused.
pub fn unpack(archive: &Path, target: &Path, what: &str) -> Result<(Format, ImageConfig)> {
    let ar = Archive::index(archive).with_context(|| format!("image {what}"))?;
    let (format, config, layers) = plan(&ar, what)?;
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != layers.len() {
        bail!(
            "image {what}: {}: the config lists {} layer digests (rootfs.diff_ids) for {} layers",
            archive.display(),
            diff_ids.len(),
            layers.len()
        );
    }
    let tree = Tree::open(target)?;
    for (i, layer) in layers.iter().enumerate() {
        let mut r = ar.open(&layer.member)?;
        let mut magic = [0u8; 4];
        let n = read_full(&mut r, &mut magic)?;
        let head = std::io::Cursor::new(magic[..n].to_vec());
        let stream = head.chain(r);
        let key = format!(
            "image {what}: {}: layer {i} ({})",
            archive.display(),
            layer.member
        );
        let mut hashing: Hashing<Box<dyn Read>> = Hashing {
            inner: match magic {
                [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(stream)),
                [0x28, 0xb5, 0x2f, 0xfd] => bail!(
                    "{key}: zstd-compressed layers are not supported; save the image with docker save"
                ),
                _ => Box::new(stream),
            },
            h: <sha2::Sha256 as sha2::Digest>::new(),
        };
        apply_layer(&tree, &mut hashing, &key)?;
        // The end-of-archive blocks and padding count too.
        std::io::copy(&mut hashing, &mut std::io::sink())
            .with_context(|| format!("{key}: reading"))?;
        let got = format!("sha256:{}", hex::encode(sha2::Digest::finalize(hashing.h)));
        if got != diff_ids[i] {
            bail!(
                "{key}: its content is {got}, but the config says {}: the archive is damaged or \
                 not one image",
                diff_ids[i]
            );
        }
    }
    Ok((format, config_of(&config)))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Apply one layer's entries inside `tree`.
pub fn apply_layer(tree: &Tree, layer: &mut dyn Read, key: &str) -> Result<()> {
    let mut ar = tar::Archive::new(layer);
    // Paths this layer put in place: an opaque whiteout hides only what lies below.
    let mut ours: HashSet<String> = HashSet::new();
    for e in ar
        .entries()
        .with_context(|| format!("{key}: not a tar stream"))?
    {
        let mut e = e.with_context(|| format!("{key}: a damaged layer"))?;
        let raw = e.path()?.to_string_lossy().into_owned();
        let Some(rel) = normalize(&raw) else {
            if raw.split('/').any(|c| c == "..") {
                bail!("{key}: entry `{raw}` contains `..`");
            }
            continue; // the layer's root itself
        };
        let (parent, base) = match rel.rsplit_once('/') {
            Some((p, b)) => (p.to_string(), b.to_string()),
            None => (String::new(), rel.clone()),
        };
        if base == ".wh..wh..opq" {
            if tree.is_dir(&parent)? || parent.is_empty() {
                for n in tree.list(&parent)? {
                    let child = if parent.is_empty() {
                        n
                    } else {
                        format!("{parent}/{n}")
                    };
                    if !ours.contains(&child) {
                        tree.remove(&child)?;
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            let victim = if parent.is_empty() {
                hidden.to_string()
            } else {
                format!("{parent}/{hidden}")
            };
            tree.remove(&victim)
                .with_context(|| format!("{key}: whiteout {raw}"))?;
            continue;
        }
        let h = e.header().clone();
        // An empty owner field reads as root, as GNU tar reads it.
        let (uid, gid) = (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32);
        let mode = h.mode()?;
        let ty = h.entry_type();
        if !ty.is_dir() && tree.is_dir(&rel)? {
            tree.remove(&rel)?;
        }
        match ty {
            tar::EntryType::Directory => {
                if tree.exists(&rel)? && !tree.is_dir(&rel)? {
                    tree.remove(&rel)?;
                }
                tree.create_dir_all(&rel)?;
                tree.set_mode(&rel, mode)?;
                tree.set_owner(&rel, uid, gid)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                tree.write_file(&rel, &mut e, mode)
                    .with_context(|| format!("{key}: /{rel}"))?;
                // write_file sets the mode before the owner: set it again, as chown clears
                // set-id bits.
                tree.set_owner(&rel, uid, gid)?;
                tree.set_mode(&rel, mode)?;
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name()?
                    .ok_or_else(|| anyhow!("{key}: /{rel}: a link without target"))?
                    .to_string_lossy()
                    .into_owned();
                tree.symlink(&rel, &target)?;
                tree.set_owner(&rel, uid, gid)?;
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name()?
                    .ok_or_else(|| anyhow!("{key}: /{rel}: a hard link without target"))?
                    .to_string_lossy()
                    .into_owned();
                let t = normalize(&target)
                    .ok_or_else(|| anyhow!("{key}: /{rel}: hard link to `{target}`"))?;
                tree.hard_link(&t, &rel)
                    .with_context(|| format!("{key}: /{rel}"))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let kind = match ty {
                    tar::EntryType::Char => "a character device",
                    tar::EntryType::Block => "a block device",
                    _ => "a FIFO",
                };
                bail!(
                    "{key}: /{rel} is {kind}, which an OSTree commit cannot hold (docker gives \
                     every container its own /dev)"
                );
            }
            other => bail!("{key}: /{rel}: tar entry type {other:?} is not supported"),
        }
        ours.insert(rel);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar stream of (path, kind, data) where kind is 'f', 'd', 'l' (symlink to data),
    /// 'h' (hard link to data), 'c' (char device).
    pub fn layer(entries: &[(&str, char, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(if *kind == 'd' { 0o755 } else { 0o644 });
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match kind {
                'f' => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_bytes()).unwrap();
                }
                'd' => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
                'l' | 'h' => {
                    h.set_entry_type(if *kind == 'l' {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    h.set_size(0);
                    b.append_link(&mut h, path, data).unwrap();
                }
                'c' => {
                    h.set_entry_type(tar::EntryType::Char);
                    h.set_size(0);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
                _ => unreachable!(),
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_remove_and_opaque_directories_hide_the_layers_below() {
        let d = tempfile::tempdir().unwrap();
        let t = Tree::open(d.path()).unwrap();
        let base = layer(&[
            ("etc/", 'd', ""),
            ("etc/a", 'f', "a"),
            ("etc/b", 'f', "b"),
            ("srv/", 'd', ""),
            ("srv/old", 'f', "old"),
            ("srv/keep", 'f', "keep"),
            ("bin/", 'd', ""),
            ("bin/sh", 'f', "sh"),
            ("bin/ash", 'h', "bin/sh"),
        ]);
        apply_layer(&t, &mut &base[..], "l0").unwrap();
        let top = layer(&[
            ("etc/.wh.a", 'f', ""),
            ("srv/new", 'f', "new"),
            ("srv/.wh..wh..opq", 'f', ""),
            ("etc/b", 'f', "b2"),
        ]);
        apply_layer(&t, &mut &top[..], "l1").unwrap();
        let r = d.path();
        assert!(!r.join("etc/a").exists());
        assert_eq!(std::fs::read_to_string(r.join("etc/b")).unwrap(), "b2");
        assert!(!r.join("srv/old").exists() && !r.join("srv/keep").exists());
        assert_eq!(std::fs::read_to_string(r.join("srv/new")).unwrap(), "new");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(r.join("bin/sh")).unwrap().ino(),
            std::fs::metadata(r.join("bin/ash")).unwrap().ino()
        );
    }

    #[test]
    fn entries_never_leave_the_image_root() {
        let outside = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        let t = Tree::open(d.path()).unwrap();
        // An absolute link to a directory outside, then a file written through it: it lands
        // inside the root (the link resolves there), never in `outside`.
        let l = layer(&[
            ("escape", 'l', outside.path().to_str().unwrap()),
            (&format!("escape/{}", "x"), 'f', "inside"),
        ]);
        // The link resolves to the image's own (missing) directory: an error, nothing
        // written outside.
        let e = apply_layer(&t, &mut &l[..], "l0").unwrap_err();
        assert!(format!("{e:#}").contains("/escape/x"), "{e:#}");
        assert!(!outside.path().join("x").exists());
        // With that directory in the image, the file lands there.
        let inside = d.path().join(outside.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        apply_layer(&t, &mut &l[..], "l0").unwrap();
        assert!(!outside.path().join("x").exists());
        assert_eq!(std::fs::read_to_string(inside.join("x")).unwrap(), "inside");
        // `..` never survives normalization.
        assert!(normalize("a/../b").is_none());
    }

    #[test]
    fn device_nodes_are_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let t = Tree::open(d.path()).unwrap();
        let l = layer(&[("dev/", 'd', ""), ("dev/null", 'c', "")]);
        let e = apply_layer(&t, &mut &l[..], "image x:1: layer 0")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("image x:1: layer 0: /dev/null is a character device"),
            "{e}"
        );
    }

    fn sha(data: &[u8]) -> String {
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))
        )
    }

    fn with_diff_ids(mut config: Value, layers: &[Vec<u8>]) -> Value {
        config["rootfs"] = serde_json::json!({
            "type": "layers",
            "diff_ids": layers.iter().map(|l| sha(l)).collect::<Vec<_>>()
        });
        config
    }

    fn docker_save(dir: &Path, layers: &[Vec<u8>], config: Value) -> std::path::PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        let mut names = Vec::new();
        let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        };
        for (i, l) in layers.iter().enumerate() {
            let n = format!("{i:064}/layer.tar");
            add(&mut b, &n, l);
            names.push(n);
        }
        add(&mut b, "cfg.json", config.to_string().as_bytes());
        let manifest =
            serde_json::json!([{"Config": "cfg.json", "RepoTags": ["tool:1.0"], "Layers": names}]);
        add(&mut b, "manifest.json", manifest.to_string().as_bytes());
        let p = dir.join("tool.tar");
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        p
    }

    #[test]
    fn docker_save_archives_unpack_with_their_config() {
        let d = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"config": {"Cmd": ["/bin/tool"], "Env": ["PATH=/bin", "A=b=c"], "ExposedPorts": {"9000/tcp": {}}, "WorkingDir": "/srv"}});
        let l0 = layer(&[("bin/", 'd', ""), ("bin/tool", 'f', "#!/bin/sh\n")]);
        let l1 = layer(&[("bin/.wh.tool", 'f', ""), ("bin/tool2", 'f', "2")]);
        let layers = [l0, l1];
        // A config whose digests do not match the layers: refused.
        let p = docker_save(
            d.path(),
            &layers,
            with_diff_ids(cfg.clone(), &[layers[0].clone(), layers[0].clone()]),
        );
        let root = d.path().join("bad");
        std::fs::create_dir(&root).unwrap();
        let e = format!("{:#}", unpack(&p, &root, "tool:1.0").unwrap_err());
        assert!(
            e.contains("image tool:1.0") && e.contains("layer 1") && e.contains("damaged"),
            "{e}"
        );
        let p = docker_save(d.path(), &layers, with_diff_ids(cfg, &layers));
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let (format, c) = unpack(&p, &root, "tool:1.0").unwrap();
        assert_eq!(format, Format::DockerSave);
        assert_eq!(c.cmd.as_deref(), Some(&["/bin/tool".to_string()][..]));
        assert_eq!(c.env["A"], "b=c");
        assert_eq!(c.exposed_ports, [9000]);
        assert_eq!(c.workdir.as_deref(), Some("/srv"));
        assert!(!root.join("bin/tool").exists());
        assert!(root.join("bin/tool2").exists());
    }

    #[test]
    fn an_archive_that_is_not_an_image_says_so() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.tar");
        std::fs::write(&p, layer(&[("hello", 'f', "x")])).unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let e = format!("{:#}", unpack(&p, &root, "tool:1.0").unwrap_err());
        assert!(
            e.contains("image tool:1.0") && e.contains("is not an image archive"),
            "{e}"
        );
        std::fs::write(
            &p,
            b"not a tar at all, but long enough to have a header block?",
        )
        .unwrap();
        let e = format!("{:#}", unpack(&p, &root, "tool:1.0").unwrap_err());
        assert!(e.contains("image tool:1.0"), "{e}");
    }

    #[test]
    fn oci_layouts_with_gzip_layers_unpack_too() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let plain = layer(&[("srv/", 'd', ""), ("srv/hello", 'f', "oci")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let config = with_diff_ids(
            serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/srv/hello"], "User": "1000"}}),
            std::slice::from_ref(&plain),
        )
        .to_string();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config.as_bytes()), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(&gz), "size": gz.len()}]
        })
        .to_string();
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest.as_bytes()), "size": manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}}
        ]})
        .to_string();
        let mut b = tar::Builder::new(Vec::new());
        let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
        for (name, data) in [
            (
                "oci-layout".to_string(),
                br#"{"imageLayoutVersion": "1.0.0"}"#.to_vec(),
            ),
            ("index.json".to_string(), index.into_bytes()),
            (
                blob(&sha(manifest.as_bytes())),
                manifest.clone().into_bytes(),
            ),
            (blob(&sha(config.as_bytes())), config.clone().into_bytes()),
            (blob(&sha(&gz)), gz.clone()),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, &name, &data[..]).unwrap();
        }
        let p = d.path().join("tool.oci.tar");
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let (format, c) = unpack(&p, &root, "tool:1.0").unwrap();
        assert_eq!(format, Format::OciLayout);
        assert_eq!(
            std::fs::read_to_string(root.join("srv/hello")).unwrap(),
            "oci"
        );
        assert_eq!(
            c.entrypoint.as_deref(),
            Some(&["/srv/hello".to_string()][..])
        );
        assert_eq!(c.user.as_deref(), Some("1000"));
    }
}
