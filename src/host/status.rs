//! `slipway host status`: the sysroot's deployments, as a versioned JSON object for programs
//! (`--json`) and a short table for people.
//!
//! The JSON object (`schema` 1; fields are only added within a schema, never renamed or
//! removed):
//!
//! ```json
//! {
//!   "schema": 1,
//!   "sysroot": "/",
//!   "deployments": [
//!     {
//!       "index": 0, "stateroot": "debian", "serial": 0,
//!       "commit": "3f2a…", "version": "2026.11.27.0", "timestamp": 1764201600,
//!       "booted": false, "default": true, "pending": true, "rollback": false,
//!       "pinned": false, "staged": false,
//!       "refspec": "debian:slipway/bookworm/x86_64/atomic-host",
//!       "remote": "debian", "remote_url": "http://10.0.0.1/repo",
//!       "kernel_args": ["root=LABEL=root", "rw"],
//!       "health": {
//!         "marked_good": "2026-12-01T05:00:00Z",
//!         "rejected": null,
//!         "last_verdict": {
//!           "boot_id": "…", "at": "2026-12-01T05:00:00Z", "commit": "3f2a…",
//!           "deployserial": 0, "green": true,
//!           "checks": [{"name": "20-var", "stage": "required", "path": "/usr/lib/…",
//!                       "result": "passed", "exit_code": 0, "output": "…",
//!                       "milliseconds": 12}]
//!         }
//!       }
//!     }
//!   ],
//!   "boot_tries_left": null
//! }
//! ```
//!
//! `version` and `timestamp` are null when the commit object is not in the repository;
//! `refspec`, `remote` and `remote_url` when the origin has none. `health` is what the
//! health gate recorded: `marked_good` (when it first had a green verdict), `rejected`
//! (`{"at", "reason"}` when the gate rolled away from it; it is never made the default
//! again by itself), `last_verdict` (the verdict of its latest boot, every check with its
//! result and output). `boot_tries_left` is GRUB's counter while a new default is on trial
//! (null otherwise).

use anyhow::Result;
use fn_error_context::context;

use super::deploy::kernel_args_of;
use super::fetch::{self, Refspec};
use super::{CommitInfo, Host};

/// The version of the JSON layout below.
pub const STATUS_SCHEMA: u32 = 1;

/// `slipway host status --json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostStatus {
    /// Always [`STATUS_SCHEMA`].
    pub schema: u32,
    /// The sysroot path the status was read from.
    pub sysroot: String,
    /// Default first, as libostree orders them.
    pub deployments: Vec<DeploymentStatus>,
    /// Boots left for the default on trial (GRUB's counter), if one is on trial.
    pub boot_tries_left: Option<u32>,
    /// The EFI system partition's boot files (the running system, when it has one).
    #[serde(default)]
    pub boot_files: Option<super::esp::EspStatus>,
}

/// One deployment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentStatus {
    /// Position in the deployment list (what `pin` takes).
    pub index: usize,
    /// The stateroot (libostree's "osname").
    pub stateroot: String,
    /// The deployment serial (several deployments of one commit differ in it).
    pub serial: i32,
    pub commit: String,
    /// The commit's `version` metadata.
    pub version: Option<String>,
    /// The commit's timestamp, seconds since the epoch.
    pub timestamp: Option<u64>,
    /// The running deployment (never on an offline sysroot).
    pub booted: bool,
    /// Index 0: what boots next.
    pub default: bool,
    /// The default, not booted yet.
    pub pending: bool,
    /// Right after the default in the default's stateroot: what `rollback` makes the default.
    pub rollback: bool,
    /// Kept by upgrades and `cleanup`.
    pub pinned: bool,
    /// Staged by libostree, written at shutdown (not made by slipway).
    pub staged: bool,
    /// The origin's refspec, followed by `upgrade`.
    pub refspec: Option<String>,
    /// The refspec's remote.
    pub remote: Option<String>,
    /// That remote's URL.
    pub remote_url: Option<String>,
    /// Kernel arguments of the boot entry (without libostree's `ostree=`).
    pub kernel_args: Vec<String>,
    /// What the health gate recorded for it.
    pub health: HealthStatus,
    /// The container images its commit binds.
    #[serde(default)]
    pub images: Vec<ImageStatus>,
    /// The services its commit defines.
    #[serde(default)]
    pub services: Vec<ServiceStatus>,
}

/// A bound image of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageStatus {
    /// `name:tag`.
    pub image: String,
    pub digest: String,
    pub files: u64,
    pub bytes: u64,
    /// For the booted deployment while docker runs: whether docker holds `name:tag` with
    /// this digest.
    pub loaded: Option<bool>,
}

/// A service of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub image: String,
    pub unit: String,
    pub ports: Vec<String>,
    /// For the booted deployment: `systemctl is-active` of the unit.
    pub active: Option<String>,
    /// For the booted deployment while docker runs: whether its container runs.
    pub running: Option<bool>,
}

/// What the running host's docker says (asked only when docker.service is active: asking
/// through its socket would start it, gate or not).
struct DockerView {
    images: std::collections::BTreeSet<(String, String)>,
    running: std::collections::BTreeMap<String, String>,
}

fn docker_view() -> Option<DockerView> {
    if !crate::services::docker::docker_running() {
        return None;
    }
    let images = crate::services::docker::slipway_images()
        .ok()?
        .into_iter()
        .flat_map(|(_, digest, tags)| tags.into_iter().map(move |t| (t, digest.clone())))
        .collect();
    let running = crate::services::docker::running_services().ok()?;
    Some(DockerView { images, running })
}

/// The images and services a deployment binds; live facts for the booted one.
fn bound_of(
    host: &Host,
    d: &ostree::Deployment,
    booted: bool,
    docker: &mut Option<Option<DockerView>>,
) -> (Vec<ImageStatus>, Vec<ServiceStatus>) {
    let m = match crate::services::Manifest::read(&host.deployment_root(d)) {
        Ok(m) => m,
        Err(e) => {
            crate::sys::ui::warn(format!("{e:#}"));
            return (Vec::new(), Vec::new());
        }
    };
    if m.images.is_empty() && m.services.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let view = if booted && host.is_running_root() {
        docker.get_or_insert_with(docker_view).as_ref()
    } else {
        None
    };
    let images = m
        .images
        .iter()
        .map(|i| ImageStatus {
            image: i.reference(),
            digest: i.digest.clone(),
            files: i.files,
            bytes: i.bytes,
            loaded: view.map(|v| v.images.contains(&(i.reference(), i.digest.clone()))),
        })
        .collect();
    let services = m
        .services
        .iter()
        .map(|s| ServiceStatus {
            name: s.name.clone(),
            image: s.image.clone(),
            unit: s.unit(),
            ports: s.ports.iter().map(|p| p.docker_arg()).collect(),
            active: (booted && host.is_running_root())
                .then(|| crate::services::docker::unit_state(&s.unit())),
            running: view.map(|v| v.running.contains_key(&s.name)),
        })
        .collect();
    (images, services)
}

/// The health gate's record of a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthStatus {
    pub marked_good: Option<String>,
    pub rejected: Option<super::health::store::Rejection>,
    pub last_verdict: Option<super::health::Verdict>,
}

/// Read the status of `host`.
#[context("Reading the status of the sysroot {}", host.path().display())]
pub fn status(host: &Host) -> Result<HostStatus> {
    let deps = host.deployments();
    let booted = host.booted();
    let rollback = host.rollback_index();
    let mut out = Vec::with_capacity(deps.len());
    let mut docker = None;
    for (index, d) in deps.iter().enumerate() {
        let commit = d.csum().to_string();
        // A deployment whose commit object is gone still has a status.
        let info = match host.commit_info(&commit) {
            Ok(i) => Some(i),
            Err(e) => {
                crate::sys::ui::warn(format!("{e:#}"));
                None
            }
        };
        let is_booted = booted.as_ref().is_some_and(|b| b.equal(d));
        let refspec = fetch::origin_refspec_opt(d);
        let remote = refspec
            .as_deref()
            .and_then(|r| Refspec::parse(r).ok())
            .and_then(|r| r.remote);
        let remote_url = match &remote {
            Some(name) => fetch::find_remote(host, name, d)?.map(|r| r.url),
            None => None,
        };
        let h = super::health::Store::open(host, d.osname().as_str()).of(d)?;
        let (images, services) = bound_of(host, d, is_booted, &mut docker);
        out.push(DeploymentStatus {
            index,
            stateroot: d.osname().to_string(),
            serial: d.deployserial(),
            commit,
            version: info.as_ref().and_then(|i| i.version.clone()),
            timestamp: info.as_ref().map(|i: &CommitInfo| i.timestamp),
            booted: is_booted,
            default: index == 0,
            pending: index == 0 && !is_booted,
            rollback: Some(index) == rollback,
            pinned: d.is_pinned(),
            staged: d.is_staged(),
            refspec,
            remote,
            remote_url,
            kernel_args: kernel_args_of(d),
            health: HealthStatus {
                marked_good: h.marked_good,
                rejected: h.rejected,
                last_verdict: h.last_verdict,
            },
            images,
            services,
        });
    }
    let boot_tries_left = crate::sysroot::bootloader::read_grubenv(&host.boot_dir())?
        .get(crate::sysroot::bootloader::BOOT_LEFT_VAR)
        .and_then(|v| v.parse().ok());
    Ok(HostStatus {
        schema: STATUS_SCHEMA,
        sysroot: host.path().display().to_string(),
        deployments: out,
        boot_tries_left,
        boot_files: super::esp::status(host),
    })
}

impl DeploymentStatus {
    /// "default, pending", "rollback, pinned"...
    fn state(&self) -> String {
        let flags = [
            (self.booted, "booted"),
            (self.default, "default"),
            (self.pending, "pending"),
            (self.rollback, "rollback"),
            (self.pinned, "pinned"),
            (self.staged, "staged"),
        ];
        let s: Vec<&str> = flags
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        if s.is_empty() {
            "-".into()
        } else {
            s.join(",")
        }
    }

    /// One line for each bound image and each service of the deployment.
    fn workload_lines(&self) -> String {
        let mut s = String::new();
        for i in &self.images {
            let state = match i.loaded {
                Some(true) => ", loaded",
                Some(false) => ", not loaded",
                None => "",
            };
            s.push_str(&format!(
                "deployment {}: image {} ({}, {} files{state})\n",
                self.index,
                i.image,
                i.digest.get(..19).unwrap_or(&i.digest),
                i.files
            ));
        }
        for v in &self.services {
            let mut state = Vec::new();
            if let Some(a) = &v.active {
                state.push(a.clone());
            }
            match v.running {
                Some(true) => state.push("running".into()),
                Some(false) => state.push("not running".into()),
                None => {}
            }
            let ports = if v.ports.is_empty() {
                String::new()
            } else {
                format!(", ports {}", v.ports.join(" "))
            };
            let state = if state.is_empty() {
                String::new()
            } else {
                format!(": {}", state.join(", "))
            };
            s.push_str(&format!(
                "deployment {}: service {} ({}{ports}){state}\n",
                self.index, v.name, v.image
            ));
        }
        s
    }
}

impl HealthStatus {
    /// "green", "red", "rejected", "good" or "-", for the table.
    fn short(&self) -> String {
        if self.rejected.is_some() {
            return "rejected".into();
        }
        match &self.last_verdict {
            Some(v) if v.green => "green".into(),
            Some(_) => "red".into(),
            None if self.marked_good.is_some() => "good".into(),
            None => "-".into(),
        }
    }
}

impl HostStatus {
    /// A table for people: one line per deployment, then the remotes.
    pub fn table(&self) -> String {
        if self.deployments.is_empty() {
            return format!("no deployments in {}\n", self.sysroot);
        }
        let mut s = self.deployment_rows();
        let mut remotes: Vec<(String, String)> = self
            .deployments
            .iter()
            .filter_map(|d| Some((d.remote.clone()?, d.remote_url.clone()?)))
            .collect();
        remotes.sort();
        remotes.dedup();
        for (name, url) in remotes {
            s.push_str(&format!("remote {name}: {url}\n"));
        }
        for d in &self.deployments {
            if let Some(r) = &d.health.rejected {
                s.push_str(&format!(
                    "deployment {} rejected at {}: {}\n",
                    d.index, r.at, r.reason
                ));
            } else if let Some(v) = d.health.last_verdict.as_ref().filter(|v| !v.green) {
                s.push_str(&format!(
                    "deployment {} at {}: {}\n",
                    d.index,
                    v.at,
                    v.summary()
                ));
            }
        }
        for d in &self.deployments {
            s.push_str(&d.workload_lines());
        }
        if let Some(n) = self.boot_tries_left {
            s.push_str(&format!("default on trial: {n} boots left\n"));
        }
        if let Some(e) = &self.boot_files {
            s.push_str(&e.lines());
        }
        s
    }

    /// The table's head and one aligned row a deployment.
    fn deployment_rows(&self) -> String {
        let mut rows = vec![[
            "INDEX".to_string(),
            "STATEROOT".into(),
            "VERSION".into(),
            "COMMIT".into(),
            "STATE".into(),
            "HEALTH".into(),
            "REFSPEC".into(),
        ]];
        for d in &self.deployments {
            rows.push([
                d.index.to_string(),
                d.stateroot.clone(),
                d.version.clone().unwrap_or_else(|| "-".into()),
                d.commit.get(..12).unwrap_or(&d.commit).to_string(),
                d.state(),
                d.health.short(),
                d.refspec.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        let widths: Vec<usize> = (0..7)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut s = String::new();
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            s.push_str(line.join("  ").trim_end());
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(index: usize, version: &str) -> DeploymentStatus {
        DeploymentStatus {
            index,
            stateroot: "debian".into(),
            serial: 0,
            commit: format!("{index}").repeat(64),
            version: Some(version.into()),
            timestamp: Some(1),
            booted: false,
            default: index == 0,
            pending: index == 0,
            rollback: index == 1,
            pinned: index == 1,
            staged: false,
            refspec: Some("debian:a/b".into()),
            remote: Some("debian".into()),
            remote_url: Some("file:///srv/repo".into()),
            kernel_args: vec!["rw".into()],
            health: HealthStatus::default(),
            images: Vec::new(),
            services: Vec::new(),
        }
    }

    #[test]
    fn table_has_one_line_per_deployment_and_the_remote() {
        let s = HostStatus {
            schema: STATUS_SCHEMA,
            sysroot: "/x".into(),
            deployments: vec![dep(0, "2"), dep(1, "1")],
            boot_tries_left: None,
            boot_files: None,
        };
        let t = s.table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("INDEX  STATEROOT  VERSION"), "{t}");
        assert!(lines[1].contains("000000000000  default,pending"), "{t}");
        assert!(
            lines[2].contains("rollback,pinned  -       debian:a/b"),
            "{t}"
        );
        assert_eq!(lines[3], "remote debian: file:///srv/repo");
    }

    #[test]
    fn table_says_why_a_deployment_was_rejected() {
        let mut d1 = dep(1, "1");
        d1.health.rejected = Some(crate::host::health::store::Rejection {
            at: "2026-12-01T00:00:00Z".into(),
            reason: "red: required check 50-fail failed (exit status 1): broken".into(),
        });
        let s = HostStatus {
            schema: STATUS_SCHEMA,
            sysroot: "/x".into(),
            deployments: vec![dep(0, "2"), d1],
            boot_tries_left: Some(2),
            boot_files: Some(crate::host::esp::EspStatus {
                device: "/dev/vda2".into(),
                signed_chain: true,
                files: vec![crate::host::esp::EspFile {
                    name: "BOOTX64.EFI".into(),
                    size: 3,
                    sha256: "0123456789abcdef".into(),
                    matches: Some("/usr/lib/shim/shimx64.efi.signed of deployment 0".into()),
                }],
            }),
        };
        let t = s.table();
        assert!(
            t.contains(
                "boot files on /dev/vda2 (EFI/BOOT): Debian's signed shim and GRUB (Secure Boot)\n  BOOTX64.EFI 0123456789ab /usr/lib/shim/shimx64.efi.signed of deployment 0\n"
            ),
            "{t}"
        );
        assert!(t.contains("rollback,pinned  rejected  debian:a/b"), "{t}");
        assert!(
            t.contains("deployment 1 rejected at 2026-12-01T00:00:00Z: red: required check 50-fail failed (exit status 1): broken"),
            "{t}"
        );
        assert!(t.contains("default on trial: 2 boots left"), "{t}");
    }

    #[test]
    fn table_lists_each_deployments_images_and_services() {
        let mut d0 = dep(0, "2");
        d0.images.push(ImageStatus {
            image: "web:v1".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            files: 12,
            bytes: 3,
            loaded: Some(true),
        });
        d0.services.push(ServiceStatus {
            name: "web".into(),
            image: "web:v1".into(),
            unit: "slipway-service-web.service".into(),
            ports: vec!["8080:80".into()],
            active: Some("active".into()),
            running: Some(false),
        });
        let s = HostStatus {
            schema: STATUS_SCHEMA,
            sysroot: "/x".into(),
            deployments: vec![d0],
            boot_tries_left: None,
            boot_files: None,
        };
        let t = s.table();
        assert!(
            t.contains("deployment 0: image web:v1 (sha256:abababababab, 12 files, loaded)\n"),
            "{t}"
        );
        assert!(
            t.contains("deployment 0: service web (web:v1, ports 8080:80): active, not running\n"),
            "{t}"
        );
    }

    #[test]
    fn json_carries_the_schema() {
        let s = HostStatus {
            schema: STATUS_SCHEMA,
            sysroot: "/x".into(),
            deployments: vec![dep(0, "2")],
            boot_tries_left: None,
            boot_files: None,
        };
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["deployments"][0]["pending"], true);
        assert_eq!(v["deployments"][0]["remote_url"], "file:///srv/repo");
    }
}
