//! The health gate: a verdict on every boot before container workloads start, and the
//! automatic rollback of a red deployment.
//!
//! What it owns:
//! - [`config`]: `health.json` from the deployment (`/usr/lib/slipway`) and the operator
//!   (`/etc/slipway`), key by key;
//! - [`checks`]: finding the check executables (`required.d`, `wanted.d`, the operator's
//!   overriding or masking the commit's by name) and running each with its timeout;
//! - [`store`]: what is known of each deployment (marked good, rejected and why, its last
//!   verdict), kept under the stateroot's `/var/lib/slipway/health` so it survives rollbacks;
//! - [`gate`]: `slipway host boot-check` (the boot-check service) and `slipway host gate`
//!   (the `ExecStartPre=` of every gated workload);
//! - [`journal`]: verdicts and rollbacks as structured journal entries with fixed
//!   MESSAGE_IDs;
//!
//! The units, drop-ins, default checks and settings every host carries are the payload
//! ([`crate::payload`]); the gate reads them back from the deployment.
//!
//! The boot of a new default is a *trial*: before the host lifecycle switches the default
//! (upgrade, deploy, rollback to a deployment never marked good) it sets GRUB's
//! `slipway_boot_left` to `boot-tries`; GRUB counts it down on each boot and boots the
//! rollback entry when none are left (see [`crate::sysroot::bootloader`]). The verdict then
//! decides, as [`gate::decide`] spells out.

pub mod checks;
pub mod config;
pub mod gate;
pub mod journal;
pub mod store;

pub use config::HealthConfig;
pub use store::{DeploymentHealth, Store};

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckResult {
    /// The executable's file name (`30-container-state`).
    pub name: String,
    /// `required` or `wanted`.
    pub stage: String,
    /// Where it was found.
    pub path: String,
    /// `passed`, `failed` or `timeout`.
    pub result: String,
    /// Its exit status, when it exited.
    pub exit_code: Option<i32>,
    /// The end of what it printed (stdout and stderr together).
    pub output: String,
    pub milliseconds: u64,
}

/// The verdict of one boot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// When it was reached (ISO 8601, UTC).
    pub at: String,
    /// The deployment judged: commit checksum and deployment serial.
    pub commit: String,
    pub deployserial: i32,
    /// Green: every required check passed.
    pub green: bool,
    /// Every check that ran, in order (the bound images as checks of stage `images`).
    pub checks: Vec<CheckResult>,
    /// The host checks passed and the deployment binds container images that the second
    /// stage (`slipway host load-images`) has not made available yet: docker and containerd
    /// may start, nothing else.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub images_pending: bool,
}

impl Verdict {
    /// The first required check that did not pass.
    pub fn failed_required(&self) -> Option<&CheckResult> {
        self.checks
            .iter()
            .find(|c| (c.stage == "required" || c.stage == "images") && c.result != "passed")
    }

    /// "green" or "red: required check NAME failed (exit 1): OUTPUT".
    pub fn summary(&self) -> String {
        match self.failed_required() {
            None if self.images_pending => "green (host checks; bound images next)".into(),
            None => "green".into(),
            Some(c) if c.stage == "images" => format!(
                "red: bound image {} failed to load: {}",
                c.name,
                c.output.trim().lines().last().unwrap_or("(no output)")
            ),
            Some(c) => format!(
                "red: required check {} {}: {}",
                c.name,
                match (c.result.as_str(), c.exit_code) {
                    ("timeout", _) => "timed out".to_string(),
                    (_, Some(code)) => format!("failed (exit status {code})"),
                    _ => "failed".to_string(),
                },
                c.output.trim().lines().last().unwrap_or("(no output)")
            ),
        }
    }
}

/// Before `dep` becomes the default: put it on trial (GRUB's counter set to `boot-tries`
/// from its own `health.json`), unless the gate marked it good on an earlier boot, which
/// ends any trial. Done before the switch, so a power cut between the two leaves at worst a
/// counter on the old default, which its next green verdict clears.
pub fn start_trial(host: &crate::host::Host, dep: &ostree::Deployment) -> anyhow::Result<()> {
    use crate::sysroot::bootloader::{BOOT_LEFT_VAR, set_grubenv_var};
    let store = Store::open(host, dep.osname().as_str());
    let boot = host.boot_dir();
    if store.of(dep)?.marked_good.is_some() {
        return set_grubenv_var(&boot, BOOT_LEFT_VAR, None);
    }
    let cfg = HealthConfig::load(&host.deployment_root(dep))?;
    set_grubenv_var(&boot, BOOT_LEFT_VAR, Some(&cfg.boot_tries.to_string()))
}

/// The current time as ISO 8601 UTC.
pub fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::sys::time::utc(secs)
}
