//! compose's part: each bound image becomes an unpacked root in the host tree, each service a
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

use super::spec::{ContainerImage, ImageSource};
use super::{BoundImage, ENV_DIR, MANIFEST, Manifest};
use crate::compose::apt::{AptWorkspace, ResolvedPackage};
use crate::compose::treefile::Treefile;
use crate::sys::tree::Tree;

/// The treefile as an image's own pipeline sees it: its packages (with their origins, for
/// apt's errors), add-files and postprocess; nothing of the host's.
pub fn image_view(tf: &Treefile, img: &ContainerImage) -> Treefile {
    let mut v = tf.clone();
    v.packages = match &img.source {
        ImageSource::Packages { packages, .. } => packages.clone(),
        ImageSource::Archive(_) => Vec::new(),
    };
    v.package_origins = v
        .packages
        .iter()
        .map(|p| (p.clone(), format!("{}.packages", img.origin)))
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
            &mut super::unit_text(s).as_bytes(),
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
            &mut super::env_file_text(s).as_bytes(),
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
                },
                on_line,
            )
            .with_context(|| format!("image {what} ({})", img.origin))?;
            ("packages", super::ImageConfig::default())
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
    let summary = super::content_digest(&root, &what)?;
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
        "image {what}: {} files, {} bytes, {}",
        summary.files, summary.bytes, summary.digest
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
    })
}
