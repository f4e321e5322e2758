//! The `images` phase of compose: each bound image becomes an unpacked root in the host tree, each service a
//! unit, and `/usr/lib/slipway/services.json` says what the commit binds.
//!
//! An image from `packages` goes through the host's own pipeline: the package set is resolved
//! by the same apt state (so it is part of the input hash and a missing package gets the same
//! error, naming the image's entry), installed by mmdebstrap from the same `.deb` cache, then
//! `add-files` and `postprocess` run as for a host. An `archive` is unpacked by
//! [`super::archive`]. Either way the root is cleaned of what a container never needs from
//! its image (`/dev`, apt's lists and downloaded `.deb`s), checked for what a commit cannot
//! hold, and digested.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::compose::apt::{AptWorkspace, ResolvedPackage};
use crate::services::{BoundImage, ENV_DIR, MANIFEST, Manifest};
use crate::sys::tree::Tree;
use crate::treefile::Treefile;
use crate::treefile::services::{ContainerImage, ImageSource};

/// The PATH of an image built from packages, unless the treefile's `env` says otherwise.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The treefile as an image's own pipeline sees it: its packages (with their origins, for
/// apt's errors), add-files and postprocess; nothing of the host's.
pub fn image_view(tf: &Treefile, img: &ContainerImage) -> Treefile {
    let mut v = tf.clone();
    v.packages = match &img.source {
        ImageSource::Packages { packages, .. } => packages.clone(),
        ImageSource::Archive(_) => Vec::new(),
    };
    // `FILE: container-images[i] (name:tag)` -> `FILE: container-images[i].packages (name:tag)`
    let origin = match img.origin.rsplit_once(" (") {
        Some((key, what)) => format!("{key}.packages ({what}"),
        None => format!("{}.packages", img.origin),
    };
    v.package_origins = v
        .packages
        .iter()
        .map(|p| (p.clone(), origin.clone()))
        .collect();
    v.add_files = img.add_files.clone();
    v.postprocess = img.postprocess.clone();
    v.postprocess_script = None;
    v.remove_files = Vec::new();
    v.units = Vec::new();
    v.container_images = Vec::new();
    v.services = Vec::new();
    v
}

/// Resolve the package set of every package image (`name:tag` -> packages).
pub fn resolve(ws: &AptWorkspace, tf: &Treefile) -> Result<BTreeMap<String, Vec<ResolvedPackage>>> {
    let mut out = BTreeMap::new();
    for img in &tf.container_images {
        if let ImageSource::Packages { .. } = img.source {
            let pkgs = ws
                .resolve(&image_view(tf, img))
                .with_context(|| format!("resolving the packages of image {}", img.reference()))?;
            out.insert(img.reference(), pkgs);
        }
    }
    Ok(out)
}

/// What the images phase needs from the compose.
pub struct ImagesPlan<'a> {
    pub tf: &'a Treefile,
    pub ws: &'a AptWorkspace,
    pub packages: &'a BTreeMap<String, Vec<ResolvedPackage>>,
    /// The compose's work directory (image roots are built below it).
    pub work: &'a Path,
    /// The host tree, already in the OSTree layout.
    pub rootfs: &'a Path,
    pub source_date_epoch: Option<u64>,
}

/// Build every image into the host tree, then write units, environment files and the
/// manifest. Returns the manifest (empty when the treefile binds nothing, and then nothing is
/// written).
pub fn build_all(plan: &ImagesPlan, on_line: &mut dyn FnMut(&str)) -> Result<Manifest> {
    let tf = plan.tf;
    if tf.container_images.is_empty() && tf.services.is_empty() {
        return Ok(Manifest::default());
    }
    let host = Tree::open(plan.rootfs)?;
    for s in &tf.services {
        for dir in ["usr/lib/systemd/system", "usr/etc/systemd/system"] {
            if host.exists(&format!("{dir}/{}", s.unit()))? {
                bail!(
                    "{}: the host already has a unit /{dir}/{} (from a package or add-files): \
                     give the service another name",
                    s.origin,
                    s.unit()
                );
            }
        }
    }
    let mut images = Vec::new();
    for img in &tf.container_images {
        on_line(&format!("image {}", img.reference()));
        images.push(build_one(plan, img, on_line)?);
    }
    for s in &tf.services {
        host.write_file(
            &format!("usr/lib/systemd/system/{}", s.unit()),
            &mut crate::services::unit_text(s).as_bytes(),
            0o644,
        )?;
        host.symlink(
            &format!(
                "usr/lib/systemd/system/slipway-healthy.target.wants/{}",
                s.unit()
            ),
            &format!("../{}", s.unit()),
        )?;
        host.write_file(
            &format!("{ENV_DIR}/{}.env", s.name),
            &mut crate::services::env_file_text(s).as_bytes(),
            0o600,
        )?;
    }
    let manifest = Manifest {
        schema: 1,
        images,
        services: tf.services.clone(),
    };
    let text = serde_json::to_string_pretty(&manifest)? + "\n";
    host.write_file(MANIFEST, &mut text.as_bytes(), 0o644)?;
    Ok(manifest)
}

/// Clear what a container never takes from its image; `/dev` is docker's.
fn clean(root: &Path) -> Result<()> {
    let t = Tree::open(root)?;
    for dir in [
        "dev",
        "var/lib/apt/lists",
        "var/cache/apt/archives",
        "tmp",
        "run",
    ] {
        if !t.is_dir(dir)? {
            continue;
        }
        for n in t.list(dir)? {
            if (dir == "var/lib/apt/lists" || dir == "var/cache/apt/archives")
                && (n == "partial" || n == "lock")
            {
                continue;
            }
            t.remove(&format!("{dir}/{n}"))?;
        }
    }
    for f in [
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
    ] {
        t.remove(f)?;
    }
    remove_leftovers(&t)
}

/// What installing packages leaves that no image needs, and that would travel in every
/// update (dpkg's whole old status with each new one): dpkg's and debconf's backups, the
/// install logs, ldconfig's cache of its own runs, the shadow files' backups, mmdebstrap's
/// build settings (as Debian's official images are cleaned by debuerreotype).
pub fn remove_leftovers(t: &Tree) -> Result<()> {
    for (dir, ends) in [
        ("var/lib/dpkg", "-old"),
        ("var/cache/debconf", "-old"),
        ("etc", "-"),
    ] {
        if !t.is_dir(dir)? {
            continue;
        }
        for n in t.list(dir)? {
            let rel = format!("{dir}/{n}");
            if n.ends_with(ends) && !t.is_dir(&rel)? {
                t.remove(&rel)?;
            }
        }
    }
    for f in [
        "var/log/dpkg.log",
        "var/log/alternatives.log",
        "var/log/bootstrap.log",
        "var/log/apt/history.log",
        "var/log/apt/term.log",
        "var/log/apt/eipp.log.xz",
        "var/cache/ldconfig/aux-cache",
        "etc/dpkg/dpkg.cfg.d/99mmdebstrap",
        "etc/apt/apt.conf.d/99mmdebstrap",
    ] {
        t.remove(f)?;
    }
    Ok(())
}

fn build_one(
    plan: &ImagesPlan,
    img: &ContainerImage,
    on_line: &mut dyn FnMut(&str),
) -> Result<BoundImage> {
    let what = img.reference();
    let dir = plan
        .work
        .join("images")
        .join(format!("{}_{}", img.name, img.tag));
    let root = dir.join("rootfs");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (built_from, base) = match &img.source {
        ImageSource::Packages { .. } => {
            let packages = plan
                .packages
                .get(&what)
                .with_context(|| format!("image {what}: its packages were not resolved"))?;
            let ws = plan.ws;
            let dpkg_path_filters = plan.tf.dpkg_path_filters();
            crate::compose::rootfs::build(
                &crate::compose::rootfs::RootfsPlan {
                    suite: &plan.tf.suite,
                    sources_file: &ws.sources_file(),
                    preferences_file: &ws.preferences_file(),
                    packages,
                    deb_cache: &ws.archives(),
                    seed_userdb: None,
                    target: &root,
                    source_date_epoch: plan.source_date_epoch,
                    dpkg_path_filters: &dpkg_path_filters,
                },
                on_line,
            )
            .with_context(|| format!("image {what} ({})", img.origin))?;
            // What Debian's own images set: docker adds no PATH to an imported image.
            let env = [("PATH".to_string(), DEFAULT_PATH.to_string())].into();
            (
                "packages",
                crate::treefile::services::ImageConfig {
                    env,
                    ..Default::default()
                },
            )
        }
        ImageSource::Archive(f) => {
            std::fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
            let (format, config) = super::archive::unpack(&f.path, &root, &what)?;
            on_line(&format!(
                "image {what}: {} unpacked ({format:?})",
                f.display
            ));
            ("archive", config)
        }
    };
    clean(&root)?;
    let view = image_view(plan.tf, img);
    crate::compose::postprocess::add_files(&root, &view)
        .with_context(|| format!("image {what} ({})", img.origin))?;
    crate::compose::postprocess::run_scripts(&root, &view, on_line)
        .with_context(|| format!("image {what}"))?;
    clean(&root)?;
    let n = super::pyc::zero_source_mtimes(&root).with_context(|| format!("image {what}"))?;
    if n > 0 {
        on_line(&format!(
            "image {what}: {n} Python bytecode files fitted to the commit"
        ));
    }
    let summary = crate::services::content_digest(&root, &what)?;
    let layer =
        crate::services::layer::tar_digest(&root).with_context(|| format!("image {what}"))?;
    let rel = format!("{}/rootfs", img.dir());
    let host = Tree::open(plan.rootfs)?;
    host.create_dir_all(&img.dir())?;
    if host.exists(&rel)? {
        bail!("image {what}: /{rel} exists in the host tree already");
    }
    // Both are below the compose's work directory: one file system.
    let dest = plan.rootfs.join(&rel);
    std::fs::rename(&root, &dest)
        .with_context(|| format!("moving {} to {}", root.display(), dest.display()))?;
    std::fs::remove_dir_all(&dir).ok();
    on_line(&format!(
        "image {what}: {} files, {} bytes, {}, layer {}",
        summary.files, summary.bytes, summary.digest, layer.diff_id
    ));
    Ok(BoundImage {
        name: img.name.clone(),
        tag: img.tag.clone(),
        digest: summary.digest,
        rootfs: rel,
        config: base.overlaid(&img.config),
        built_from: built_from.into(),
        files: summary.files,
        bytes: summary.bytes,
        diff_id: Some(layer.diff_id),
        layer_bytes: Some(layer.tar_bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `docker save` archive of one layer holding `files`.
    fn archive(dir: &Path, files: &[(&str, &str)]) -> std::path::PathBuf {
        let mut l = tar::Builder::new(Vec::new());
        for (p, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
            l.append_data(&mut h, p, data.as_bytes()).unwrap();
        }
        let layer = l.into_inner().unwrap();
        let diff = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&layer))
        );
        let config = serde_json::json!({"config": {"Cmd": ["/bin/tool"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff]}})
        .to_string();
        let manifest =
            serde_json::json!([{"Config": "c.json", "Layers": ["l/layer.tar"]}]).to_string();
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("l/layer.tar", layer),
            ("c.json", config.into_bytes()),
            ("manifest.json", manifest.into_bytes()),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        let p = dir.join("tool.tar");
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        p
    }

    #[test]
    fn an_image_keeps_no_backup_log_or_build_setting() {
        let d = tempfile::tempdir().unwrap();
        let w = |rel: &str| {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        };
        let gone = [
            "var/lib/dpkg/status-old",
            "var/lib/dpkg/diversions-old",
            "var/cache/debconf/templates.dat-old",
            "var/log/dpkg.log",
            "var/log/apt/history.log",
            "var/log/apt/term.log",
            "var/log/alternatives.log",
            "var/cache/ldconfig/aux-cache",
            "etc/passwd-",
            "etc/shadow-",
            "etc/dpkg/dpkg.cfg.d/99mmdebstrap",
        ];
        let kept = [
            "var/lib/dpkg/status",
            "var/cache/debconf/templates.dat",
            "var/log/lastlog",
            "etc/passwd",
            "etc/dpkg/dpkg.cfg.d/excludes",
        ];
        for f in gone.iter().chain(&kept) {
            w(f);
        }
        std::fs::create_dir_all(d.path().join("etc/cron-")).unwrap();
        clean(d.path()).unwrap();
        for f in gone {
            assert!(!d.path().join(f).exists(), "{f} is still there");
        }
        for f in kept {
            assert!(d.path().join(f).exists(), "{f} was removed");
        }
        assert!(d.path().join("etc/cron-").is_dir());
    }

    #[test]
    fn an_archive_image_and_its_service_land_in_the_tree_with_the_manifest() {
        let d = tempfile::tempdir().unwrap();
        archive(d.path(), &[("bin/tool", "#!/bin/sh\necho tool\n")]);
        let tf = d.path().join("host.json");
        std::fs::write(
            &tf,
            r#"{"ref": "a/b", "packages": ["systemd"],
                "container-images": [{"name": "tool", "tag": "1.0", "archive": "tool.tar", "env": {"MODE": "x"}}],
                "services": [{"name": "tool", "image": "tool:1.0", "ports": ["9000:9000"], "environment": {"A": "b"}}]}"#,
        )
        .unwrap();
        let tf = Treefile::load(&tf).unwrap();
        let rootfs = d.path().join("work/rootfs");
        std::fs::create_dir_all(rootfs.join("usr/lib/systemd/system")).unwrap();
        let ws = AptWorkspace::prepare(&d.path().join("cache"), &[], &[]).unwrap();
        let plan = ImagesPlan {
            tf: &tf,
            ws: &ws,
            packages: &BTreeMap::new(),
            work: &d.path().join("work"),
            rootfs: &rootfs,
            source_date_epoch: None,
        };
        let m = build_all(&plan, &mut |_| {}).unwrap();
        assert_eq!(m.images.len(), 1);
        let img = &m.images[0];
        assert_eq!(img.built_from, "archive");
        assert_eq!(
            img.config.cmd.as_deref(),
            Some(&["/bin/tool".to_string()][..])
        );
        assert_eq!(img.config.env["MODE"], "x");
        assert_eq!(img.config.env["PATH"], "/bin");
        let root = rootfs.join(&img.rootfs);
        assert!(root.join("bin/tool").is_file());
        assert_eq!(
            crate::services::content_digest(&root, "t").unwrap().digest,
            img.digest
        );
        let unit =
            std::fs::read_to_string(rootfs.join("usr/lib/systemd/system/tool.service")).unwrap();
        assert!(unit.contains("-p 9000:9000/tcp tool:1.0"), "{unit}");
        assert_eq!(
            std::fs::read_link(
                rootfs.join("usr/lib/systemd/system/slipway-healthy.target.wants/tool.service")
            )
            .unwrap(),
            Path::new("../tool.service")
        );
        let env =
            std::fs::read_to_string(rootfs.join("usr/lib/slipway/services/tool.env")).unwrap();
        assert!(env.ends_with("A=b\n"), "{env}");
        let read = crate::services::Manifest::read(&rootfs).unwrap();
        assert_eq!(read.images, m.images);
        assert_eq!(read.services[0].ports, m.services[0].ports);

        // A service whose unit name the host has already: refused, naming it.
        let rootfs2 = d.path().join("work2/rootfs");
        std::fs::create_dir_all(rootfs2.join("usr/lib/systemd/system")).unwrap();
        std::fs::write(rootfs2.join("usr/lib/systemd/system/tool.service"), "").unwrap();
        let plan = ImagesPlan {
            rootfs: &rootfs2,
            work: &d.path().join("work2"),
            ..plan
        };
        let e = format!("{:#}", build_all(&plan, &mut |_| {}).unwrap_err());
        assert!(e.contains("services[0] (service tool): the host already has a unit /usr/lib/systemd/system/tool.service"), "{e}");
    }
}
