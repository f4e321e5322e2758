//! The host's part: the booted deployment's bound images made available to docker (the
//! verdict's second stage), which services run, and the images no deployment binds any more.
//!
//! An image is identified by its content digest, carried as the label `org.slipway.digest`:
//! `NAME:TAG` already carrying this deployment's digest is left alone; an image carrying it
//! under another tag (the older deployment's, after a rollback) is tagged again; otherwise the
//! image root is packed (`tar`, numeric owners, hard links and xattrs kept) and given to
//! `docker import` with the image's settings and the labels. Nothing comes from a registry.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::store::{Placed, PlacedRecord};
use super::{BoundImage, DIGEST_LABEL, Manifest, REF_LABEL, SERVICE_LABEL};
use crate::sys::cmd::CommandRunExt;

/// How an image was made available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loaded {
    /// `NAME:TAG` carried the digest already.
    Present,
    /// Another image with the digest was tagged `NAME:TAG`.
    Tagged,
    /// Imported from the deployment's image root.
    Imported,
    /// Placed into docker's store before docker started (`host place-images`): docker shows
    /// it with its digest.
    Placed,
}

/// The digest label of `reference` in docker, if docker has it.
fn label_of(reference: &str) -> Result<Option<String>> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format"])
        .arg(format!("{{{{index .Config.Labels \"{DIGEST_LABEL}\"}}}}"))
        .arg(reference)
        .run_get_output()?;
    if !out.status.success() {
        return Ok(None);
    }
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok((!s.is_empty() && s != "<no value>").then_some(s))
}

/// Image ids carrying `digest`.
fn ids_with(digest: &str) -> Result<Vec<String>> {
    let s = Command::new("docker")
        .args(["image", "ls", "-q", "--no-trunc", "--filter"])
        .arg(format!("label={DIGEST_LABEL}={digest}"))
        .run_get_string()?;
    Ok(s.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// `docker import --change` lines for an image's settings and labels.
pub fn changes(img: &BoundImage) -> Vec<String> {
    let json = |v: &Vec<String>| serde_json::to_string(v).expect("strings serialize");
    let c = &img.config;
    let mut out = Vec::new();
    if let Some(u) = &c.user {
        out.push(format!("USER {u}"));
    }
    if let Some(w) = &c.workdir {
        out.push(format!("WORKDIR {w}"));
    }
    if let Some(e) = &c.entrypoint {
        out.push(format!("ENTRYPOINT {}", json(e)));
    }
    if let Some(cmd) = &c.cmd {
        out.push(format!("CMD {}", json(cmd)));
    }
    for (k, v) in &c.env {
        out.push(format!(
            "ENV {k}={}",
            serde_json::to_string(v).expect("string")
        ));
    }
    for p in &c.exposed_ports {
        out.push(format!("EXPOSE {p}"));
    }
    out.push(format!("LABEL {DIGEST_LABEL}={}", img.digest));
    out.push(format!("LABEL {REF_LABEL}={}", img.reference()));
    out
}

/// Make one bound image of the deployment at `root` available to docker.
/// `before`: what `place-images` did for it this boot (`Placed` or `Tagged`), if anything.
pub fn ensure(root: &Path, img: &BoundImage, tmp: &Path, before: Option<Loaded>) -> Result<Loaded> {
    let reference = img.reference();
    if label_of(&reference)?.as_deref() == Some(img.digest.as_str()) {
        return Ok(before.unwrap_or(Loaded::Present));
    }
    if let Some(id) = ids_with(&img.digest)?.first() {
        Command::new("docker")
            .args(["tag", id, &reference])
            .run()
            .with_context(|| format!("tagging {id} as {reference}"))?;
        return Ok(Loaded::Tagged);
    }
    let src = crate::sys::tree::check_path("rootfs", &img.rootfs)?;
    let dir = root.join(&src);
    if !dir.is_dir() {
        bail!(
            "image {reference}: its root {} is not in the deployment",
            dir.display()
        );
    }
    std::fs::create_dir_all(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let t = tempfile::Builder::new()
        .prefix(".slipway-image-")
        .suffix(".tar")
        .tempfile_in(tmp)
        .with_context(|| format!("creating a file in {}", tmp.display()))?;
    Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "-C"])
        .arg(&dir)
        .arg("-cf")
        .arg(t.path())
        .arg(".")
        .run()
        .with_context(|| format!("image {reference}: packing {}", dir.display()))?;
    let mut c = Command::new("docker");
    c.arg("import");
    for ch in changes(img) {
        c.arg("--change").arg(ch);
    }
    c.arg(t.path()).arg(&reference);
    c.run_get_string()
        .with_context(|| format!("image {reference}: docker import"))?;
    if label_of(&reference)?.as_deref() != Some(img.digest.as_str()) {
        bail!("image {reference}: imported, but docker does not show it with its digest label");
    }
    Ok(Loaded::Imported)
}

/// The result of one image for the verdict.
#[derive(Debug, Clone)]
pub struct ImageOutcome {
    pub reference: String,
    pub result: Result<Loaded, String>,
    pub milliseconds: u64,
}

/// Make every image the deployment at `root` binds available, in order; each outcome (a
/// failure does not stop the others: the verdict lists them all). `placed`: what `host
/// place-images` recorded this boot, by reference; an image it placed or tagged is reported
/// so, and the time it took counts too.
pub fn ensure_all(
    root: &Path,
    m: &Manifest,
    tmp: &Path,
    placed: &BTreeMap<String, PlacedRecord>,
) -> Vec<ImageOutcome> {
    m.images
        .iter()
        .map(|img| {
            let t = Instant::now();
            let record = placed.get(&img.reference());
            let before = record.and_then(|r| r.for_docker(&img.digest));
            let how = before.map(|p| match p {
                Placed::Tagged => Loaded::Tagged,
                _ => Loaded::Placed,
            });
            let result = ensure(root, img, tmp, how).map_err(|e| format!("{e:#}"));
            let earlier = before.and(record).map_or(0, |r| r.milliseconds);
            ImageOutcome {
                reference: img.reference(),
                result,
                milliseconds: t.elapsed().as_millis() as u64 + earlier,
            }
        })
        .collect()
}

/// Is docker answering? (`host status` asks without starting it.)
pub fn docker_running() -> bool {
    unit_active("docker.service")
}

/// Is `unit` active (systemd's view)?
pub fn unit_active(unit: &str) -> bool {
    unit_state(unit) == "active"
}

/// `systemctl is-active` of `unit` (`active`, `inactive`, `failed`...; `unknown` when
/// systemctl cannot be asked).
pub fn unit_state(unit: &str) -> String {
    Command::new("systemctl")
        .args(["is-active", unit])
        .run_get_output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// `name:tag` -> digest of every image docker holds that slipway imported.
pub fn slipway_images() -> Result<Vec<(String, String, Vec<String>)>> {
    let ids = Command::new("docker")
        .args(["image", "ls", "-q", "--no-trunc", "--filter"])
        .arg(format!("label={DIGEST_LABEL}"))
        .run_get_string()?;
    let ids: BTreeSet<String> = ids
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let v: serde_json::Value = Command::new("docker")
        .args(["image", "inspect"])
        .args(&ids)
        .run_and_parse_json()?;
    let mut out = Vec::new();
    for i in v.as_array().cloned().unwrap_or_default() {
        let id = i["Id"].as_str().unwrap_or_default().to_string();
        let digest = i["Config"]["Labels"][DIGEST_LABEL]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let tags = i["RepoTags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        out.push((id, digest, tags));
    }
    Ok(out)
}

/// Service name -> running container's image reference, from docker's view.
pub fn running_services() -> Result<BTreeMap<String, String>> {
    let s = Command::new("docker")
        .args(["ps", "--filter"])
        .arg(format!("label={SERVICE_LABEL}"))
        .args(["--format", "{{.Names}}\t{{.Image}}"])
        .run_get_string()?;
    Ok(s.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, i)| (n.to_string(), i.to_string()))
        .collect())
}

/// Remove the images slipway imported that no deployment binds (by digest). Returns what
/// was removed and what could not be (in use by a container, say).
pub fn remove_unbound(bound: &BTreeSet<String>) -> Result<(Vec<String>, Vec<String>)> {
    let (mut removed, mut kept) = (Vec::new(), Vec::new());
    for (id, digest, tags) in slipway_images()? {
        if bound.contains(&digest) {
            continue;
        }
        let name = if tags.is_empty() {
            id.clone()
        } else {
            tags.join(", ")
        };
        // By id with every tag: `docker image rm ID` refuses an id with several tags.
        let mut c = Command::new("docker");
        c.args(["image", "rm"]);
        if tags.is_empty() {
            c.arg(&id);
        } else {
            c.args(&tags);
        }
        sort_removal(&name, &digest, c.run_get_output(), &mut removed, &mut kept);
    }
    Ok((removed, kept))
}

/// One removal's outcome into `removed` or `kept` (with the runtime's own words).
pub(crate) fn sort_removal(
    name: &str,
    digest: &str,
    outcome: Result<std::process::Output>,
    removed: &mut Vec<String>,
    kept: &mut Vec<String>,
) {
    match outcome {
        Ok(o) if o.status.success() => removed.push(format!("{name} ({digest})")),
        Ok(o) => kept.push(format!(
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => kept.push(format!("{name}: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_changes_carry_the_settings_and_the_identity() {
        let img = BoundImage {
            name: "web".into(),
            tag: "v1".into(),
            digest: "sha256:ab".into(),
            rootfs: "usr/lib/slipway/images/web/v1/rootfs".into(),
            config: super::super::ImageConfig {
                cmd: Some(vec!["busybox".into(), "httpd".into(), "-f".into()]),
                env: [("MODE".to_string(), "a b".to_string())].into(),
                exposed_ports: vec![8080],
                workdir: Some("/srv".into()),
                ..Default::default()
            },
            built_from: "packages".into(),
            files: 1,
            bytes: 1,
            diff_id: None,
            layer_bytes: None,
        };
        let c = changes(&img);
        assert!(
            c.contains(&"CMD [\"busybox\",\"httpd\",\"-f\"]".to_string()),
            "{c:?}"
        );
        assert!(c.contains(&"ENV MODE=\"a b\"".to_string()), "{c:?}");
        assert!(c.contains(&"EXPOSE 8080".to_string()));
        assert!(c.contains(&"WORKDIR /srv".to_string()));
        assert!(c.contains(&"LABEL org.slipway.digest=sha256:ab".to_string()));
        assert!(c.contains(&"LABEL org.slipway.image=web:v1".to_string()));
    }
}
