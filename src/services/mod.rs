//! Service containers bound to the host commit.
//!
//! A treefile's `container-images` become unpacked image roots inside the commit
//! (`/usr/lib/slipway/images/NAME/TAG/rootfs`), so OSTree deduplicates them file by file
//! against the host and against earlier commits: an upgrade that changes one package in one
//! image transfers that package's files, not a layer. Its `services` become systemd units
//! (`NAME.service`, in the commit's `/usr/lib/systemd/system`, wanted by
//! `slipway-healthy.target`) that run `docker run --rm` with docker's restart policy off.
//! `/usr/lib/slipway/services.json` (the [`Manifest`]) says what the commit binds.
//!
//! This module is what a commit binds, as compose writes it and the host reads it: the
//! [`Manifest`], the content digest of an image root, the unit and environment file text.
//! The treefile keys are [`crate::treefile::services`]; building the image roots is
//! compose's (`compose::images`, `compose::archive`);
//! [`docker`] is the host's part: the verdict's second stage (`slipway host load-images`),
//! what runs (`host status`), what no deployment needs any more (`host cleanup`).

pub mod containerd;
pub mod docker;
pub mod layer;
pub mod store;

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::treefile::services::{ImageConfig, Service};

/// Where the manifest lives in a commit.
pub const MANIFEST: &str = "usr/lib/slipway/services.json";
/// Per-service environment files (`--env-file`).
pub const ENV_DIR: &str = "usr/lib/slipway/services";
/// The label carrying an image's content digest: the stable identity `load-images` skips by.
pub const DIGEST_LABEL: &str = "org.slipway.digest";
/// The label carrying `name:tag` as bound.
pub const REF_LABEL: &str = "org.slipway.image";
/// The label docker containers of services carry.
pub const SERVICE_LABEL: &str = "org.slipway.service";

/// An image as the commit holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct BoundImage {
    pub name: String,
    pub tag: String,
    /// `sha256:` over the image root's content (see [`content_digest`]).
    pub digest: String,
    /// The image root, relative to the deployment's root.
    pub rootfs: String,
    pub config: ImageConfig,
    /// `packages` or `archive`.
    pub built_from: String,
    pub files: u64,
    pub bytes: u64,
    /// The layer's digest: `sha256:` of the canonical uncompressed tar of the image root
    /// ([`layer`]), the name docker and containerd give it. Absent in manifests written
    /// before slipway placed images into the stores (those are imported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<String>,
    /// The length of that tar in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_bytes: Option<u64>,
}

impl BoundImage {
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// `/usr/lib/slipway/services.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub schema: u32,
    pub images: Vec<BoundImage>,
    pub services: Vec<Service>,
}

impl Manifest {
    /// The manifest of the tree at `root` (a deployment), or an empty one when the commit
    /// binds nothing.
    pub fn read(root: &Path) -> Result<Manifest> {
        let tree = crate::sys::tree::Tree::open(root)?;
        let mut f = match tree.open_file(MANIFEST) {
            Ok(f) => f,
            Err(e)
                if e.chain().any(|c| {
                    c.downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
                }) =>
            {
                return Ok(Manifest::default());
            }
            Err(e) => return Err(e),
        };
        let mut text = String::new();
        f.read_to_string(&mut text)
            .with_context(|| format!("reading /{MANIFEST} in {}", root.display()))?;
        let m: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("parsing /{MANIFEST} in {}", root.display()))?;
        if m.schema != 1 {
            bail!(
                "/{MANIFEST} in {}: schema {} is newer than this slipway knows (1)",
                root.display(),
                m.schema
            );
        }
        Ok(m)
    }

    pub fn image(&self, reference: &str) -> Option<&BoundImage> {
        self.images.iter().find(|i| i.reference() == reference)
    }
}

/// systemd's quoting for one argument of `ExecStart=`: `%` and `$` are doubled so systemd
/// neither expands specifiers nor variables; arguments with spaces, quotes or backslashes are
/// double-quoted with C escapes.
pub fn systemd_quote(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    let plain = !escaped.is_empty()
        && escaped
            .chars()
            .all(|c| c.is_ascii_graphic() && !"\"'\\;".contains(c));
    if plain {
        return escaped;
    }
    let mut out = String::from("\"");
    for c in escaped.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `docker run` command line of a service (without the leading `docker`).
pub fn docker_run_args(svc: &Service) -> Vec<String> {
    let mut a: Vec<String> = [
        "run",
        "--rm",
        "--name",
        &svc.name,
        // dockerd never starts a container by itself (systemd's Restart= does), least of
        // all a newer deployment's after a rollback; nothing comes from a registry.
        "--restart=no",
        "--pull=never",
        "--label",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(format!("{SERVICE_LABEL}={}", svc.name));
    a.push("--env-file".into());
    a.push(format!("/{ENV_DIR}/{}.env", svc.name));
    for p in &svc.ports {
        a.push("-p".into());
        a.push(p.docker_arg());
    }
    for v in &svc.volumes {
        a.push("-v".into());
        a.push(v.docker_arg());
    }
    a.push(svc.image.clone());
    a.extend(svc.command.iter().cloned());
    a
}

/// The unit file of a service.
pub fn unit_text(svc: &Service) -> String {
    let needs: Vec<String> = svc.needs.iter().map(|n| format!("{n}.service")).collect();
    let mut deps = vec![
        "slipway-healthy.target".to_string(),
        "docker.service".into(),
    ];
    deps.extend(needs);
    let run: Vec<String> = docker_run_args(svc)
        .iter()
        .map(|a| systemd_quote(a))
        .collect();
    let name = systemd_quote(&svc.name);
    format!(
        "# Written by slipway compose from the treefile's services. It belongs to the
# deployment: a rollback brings back the older deployment's unit with its image.
# It starts only after a green boot verdict (both stages: host checks, bound images).
[Unit]
Description=slipway service {svc_name} (image {image})
Requires={deps}
After={deps}

[Service]
ExecStartPre=/usr/bin/slipway host gate
ExecStartPre=-/usr/bin/docker rm -f {name}
ExecStart=/usr/bin/docker {run}
ExecStop=/usr/bin/docker stop {name}
Restart={restart}
RestartSec=2
TimeoutStartSec=5min

[Install]
WantedBy=slipway-healthy.target
",
        svc_name = svc.name,
        image = svc.image,
        deps = deps.join(" "),
        run = run.join(" "),
        restart = svc.restart,
    )
}

/// docker's `--env-file` text of a service (values are taken literally, one per line).
pub fn env_file_text(svc: &Service) -> String {
    let mut s = String::from("# Written by slipway compose: the service's environment\n");
    for (k, v) in &svc.environment {
        s.push_str(&format!("{k}={v}\n"));
    }
    s
}

/// A file of an image root, as the digest sees it.
#[derive(Debug, Default)]
pub struct Summary {
    pub digest: String,
    pub files: u64,
    pub bytes: u64,
}

/// Walk an image root: refuse what an OSTree commit cannot hold (device nodes, FIFOs,
/// sockets), by name, and compute the content digest: SHA-256 over every entry in path
/// order (path, type, mode, owner, and the content's SHA-256 or the link target). It does
/// not depend on time stamps, so the same image root gives the same digest on the build
/// machine and in a deployment.
/// Visit every entry of the tree at `root` in the order both image digests use: depth first,
/// a directory's entries in byte order of their names before what its subdirectories hold.
/// `visit` gets the path relative to `root`, the path and the entry's metadata (links not
/// followed).
pub fn walk_in_order(
    root: &Path,
    mut visit: impl FnMut(&str, &Path, &std::fs::Metadata) -> Result<()>,
) -> Result<()> {
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading {}", dir.display()))?;
        names.sort();
        // Children pushed in reverse, so the first name's subtree comes first.
        let mut subdirs = Vec::new();
        for n in names {
            let name = n.to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let p = root.join(&r);
            let m = std::fs::symlink_metadata(&p)
                .with_context(|| format!("looking at {}", p.display()))?;
            visit(&r, &p, &m)?;
            if m.file_type().is_dir() {
                subdirs.push(r);
            }
        }
        for d in subdirs.into_iter().rev() {
            stack.push(d);
        }
    }
    Ok(())
}

pub fn content_digest(root: &Path, what: &str) -> Result<Summary> {
    let mut h = Sha256::new();
    let mut sum = Summary::default();
    walk_in_order(root, |r, p, m| {
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            'f'
        } else if ft.is_symlink() {
            'l'
        } else {
            let what_kind = if ft.is_char_device() {
                "a character device"
            } else if ft.is_block_device() {
                "a block device"
            } else if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_socket() {
                "a socket"
            } else {
                "a special file"
            };
            bail!(
                "image {what}: /{r} is {what_kind}, which an OSTree commit cannot hold \
                 (docker gives every container its own /dev)"
            );
        };
        h.update(r.as_bytes());
        h.update(
            format!(
                "\0{kind}\0{:o}\0{}\0{}\0",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            )
            .as_bytes(),
        );
        match kind {
            'f' => {
                h.update(crate::repo::sha256_file(p)?.as_bytes());
                sum.files += 1;
                sum.bytes += m.len();
            }
            'l' => {
                let t =
                    std::fs::read_link(p).with_context(|| format!("reading {}", p.display()))?;
                h.update(t.as_os_str().as_encoded_bytes());
            }
            _ => {}
        }
        h.update(b"\n");
        Ok(())
    })?;
    sum.digest = format!("sha256:{}", hex::encode(h.finalize()));
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Service {
        crate::treefile::services::service(
            "t",
            serde_json::from_value(serde_json::json!({
                "name": "web", "image": "web:v1", "ports": ["8080:8080"],
                "volumes": ["/var/lib/web:/data"], "environment": {"MODE": "prod 100%"},
                "restart": "always", "command": ["httpd", "-h", "/srv dir"]
            }))
            .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn the_unit_runs_docker_without_its_restart_policy_after_the_gate() {
        let u = unit_text(&svc());
        assert!(
            u.contains("Requires=slipway-healthy.target docker.service\n"),
            "{u}"
        );
        assert!(
            u.contains("After=slipway-healthy.target docker.service\n"),
            "{u}"
        );
        assert!(
            u.contains("ExecStartPre=/usr/bin/slipway host gate\n"),
            "{u}"
        );
        assert!(
            u.contains("ExecStart=/usr/bin/docker run --rm --name web --restart=no --pull=never"),
            "{u}"
        );
        assert!(
            u.contains("-p 8080:8080/tcp -v /var/lib/web:/data web:v1 httpd -h \"/srv dir\"\n"),
            "{u}"
        );
        assert!(u.contains("Restart=always\n"), "{u}");
        assert!(u.contains("WantedBy=slipway-healthy.target"), "{u}");
        assert_eq!(env_file_text(&svc()).lines().last(), Some("MODE=prod 100%"));
    }

    #[test]
    fn systemd_quoting_keeps_specifiers_and_variables_literal() {
        assert_eq!(systemd_quote("plain"), "plain");
        assert_eq!(systemd_quote("100%"), "100%%");
        assert_eq!(systemd_quote("$HOME"), "$$HOME");
        assert_eq!(systemd_quote("a b"), "\"a b\"");
        assert_eq!(systemd_quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(systemd_quote(""), "\"\"");
    }

    #[test]
    fn the_digest_follows_content_and_metadata_not_time() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("srv")).unwrap();
        std::fs::write(r.join("srv/index.html"), "v1").unwrap();
        std::os::unix::fs::symlink("/srv/index.html", r.join("link")).unwrap();
        let a = content_digest(r, "t").unwrap();
        assert_eq!((a.files, a.bytes), (1, 2));
        let f = std::fs::File::options()
            .write(true)
            .open(r.join("srv/index.html"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(content_digest(r, "t").unwrap().digest, a.digest);
        std::fs::write(r.join("srv/index.html"), "v2").unwrap();
        let b = content_digest(r, "t").unwrap();
        assert_ne!(b.digest, a.digest);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            r.join("srv/index.html"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_ne!(content_digest(r, "t").unwrap().digest, b.digest);
    }

    #[test]
    fn special_files_are_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("run")).unwrap();
        nix::unistd::mkfifo(&d.path().join("run/pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = content_digest(d.path(), "web:v1").unwrap_err().to_string();
        assert!(e.contains("image web:v1: /run/pipe is a FIFO"), "{e}");
    }
}
