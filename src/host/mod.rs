//! The host lifecycle: `slipway host status|upgrade|deploy|rollback|cleanup|pin` on the
//! OSTree sysroot of a running host (`/`) or on an offline one (any directory holding
//! `ostree/`, such as a mounted image or a test fixture).
//!
//! What it owns:
//! - [`Host`]: an opened, loaded sysroot; verbs that write hold libostree's sysroot lock
//!   ([`crate::sys::lock::ostree_sysroot`], the lock `ostree admin` and rpm-ostree take)
//!   from before loading until they end, so two of them never interleave;
//! - `status`: the deployments as a versioned, documented JSON object and a short table;
//! - `fetch`: the origin's refspec, its remote (the sysroot repository's configuration, else
//!   the deployment's `/etc/ostree/remotes.d`), pulls, the ref's history;
//! - `boot`: the room a new deployment needs on /boot, checked before anything is written;
//! - `deploy`: making a commit the new default (libostree's `/etc` merge, kernel arguments
//!   carried over, the previous default kept as rollback, the boot menu switched through `finish_switch`), shared by
//!   `upgrade` and `deploy VERSION|COMMIT`;
//! - `upgrade`: follow the refspec, refuse downgrades; `rollback`, `cleanup`, `pin`;
//! - [`updates`]: the update agent (policy, reboot windows, a state machine) and
//!   [`fleetlock`], the FleetLock client that coordinates reboots across a fleet.
//!
//! Terms, as `status` shows them: the **default** deployment is the first in libostree's
//! list (index 0, what boots next); **booted** is the running one (never on an offline
//! sysroot); **pending** is a default that is not booted; the **rollback** is the deployment
//! right after the default among the deployments of the default's stateroot: what `rollback`
//! makes the default.
//!
//! The boot loader switch is atomic: libostree writes the new entries and slipway's menu
//! into the new `/boot/loader.N` before it swaps the `/boot/loader` link, and GRUB reads the
//! menu through that link (see [`crate::sysroot::bootloader`]).

pub mod boot;
pub mod cleanup;
pub mod deploy;
pub mod esp;
pub mod fetch;
pub mod fleetlock;
pub mod health;
pub mod pin;
pub mod rollback;
pub mod status;
pub mod updates;
pub mod upgrade;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use fn_error_context::context;
use ostree::gio;

use crate::sys::cmd::CommandRunExt;
use crate::sys::lock::{self, SysrootLock, Wait};

/// Whether a verb only reads the sysroot or changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Locked from before loading to the end of the verb.
    Write,
}

/// An opened and loaded OSTree sysroot.
pub struct Host {
    path: PathBuf,
    sysroot: ostree::Sysroot,
    repo: ostree::Repo,
    // Dropped last: the lock outlives every use of the sysroot.
    _lock: Option<SysrootLock>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("path", &self.path).finish()
    }
}

/// A commit and what people know it by.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    pub checksum: String,
    /// The `version` metadata string, if the commit has one.
    pub version: Option<String>,
    /// The commit's timestamp, seconds since the epoch (UTC).
    pub timestamp: u64,
}

impl CommitInfo {
    /// Read a commit's version and timestamp from `repo`.
    #[context("Reading commit {checksum}")]
    pub fn load(repo: &ostree::Repo, checksum: &str) -> Result<CommitInfo> {
        Ok(CommitInfo {
            checksum: checksum.to_string(),
            version: crate::repo::commit_meta_string(repo, checksum, "version")?,
            timestamp: crate::repo::commit_timestamp(repo, checksum)?,
        })
    }

    /// The first 12 characters of the checksum, for tables.
    pub fn short(&self) -> &str {
        self.checksum.get(..12).unwrap_or(&self.checksum)
    }
}

impl std::fmt::Display for CommitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{} (version {v})", self.checksum),
            None => write!(f, "{}", self.checksum),
        }
    }
}

impl Host {
    /// Open and load the sysroot at `path`. With [`Access::Write`], wait for and take the
    /// sysroot lock first (on a booted host, in a private mount namespace where libostree
    /// may remount a read-only /sysroot writable).
    #[context("Opening the sysroot {}", path.display())]
    pub fn open(path: &Path, access: Access) -> Result<Host> {
        if !path.join("ostree/repo").is_dir() || !path.join("ostree/deploy").is_dir() {
            bail!(
                "{} is not an OSTree sysroot (no ostree/repo and ostree/deploy in it)",
                path.display()
            );
        }
        // libostree reports some results with g_print ("Freed objects: ..."): stdout is for
        // slipway's own results, so those go to stderr with the rest of the progress.
        ostree::glib::set_print_handler(|msg| crate::sys::ui::info(msg.trim_end()));
        let sysroot = ostree::Sysroot::new(Some(&gio::File::for_path(path)));
        let lock = match access {
            Access::Read => None,
            Access::Write => {
                // A no-op unless `path` is the root of a booted OSTree host.
                sysroot
                    .initialize_with_mount_namespace(gio::Cancellable::NONE)
                    .context("preparing a private mount namespace")?;
                Some(lock::ostree_sysroot(&sysroot, path, Wait::Block)?)
            }
        };
        sysroot
            .load(gio::Cancellable::NONE)
            .context("loading the deployments")?;
        let repo = sysroot.repo();
        let host = Host {
            path: path.to_path_buf(),
            sysroot,
            repo,
            _lock: lock,
        };
        if access == Access::Write {
            host.prepare_boot_writes()?;
        }
        Ok(host)
    }

    /// Whether the sysroot is the root of the machine slipway runs on.
    pub fn is_running_root(&self) -> bool {
        std::fs::canonicalize(&self.path)
            .map(|p| p == Path::new("/"))
            .unwrap_or(false)
    }

    /// The sysroot's path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sysroot's repository.
    pub fn repo(&self) -> &ostree::Repo {
        &self.repo
    }

    pub(crate) fn sysroot(&self) -> &ostree::Sysroot {
        &self.sysroot
    }

    /// The boot file system's directory (`/boot` of the sysroot).
    pub fn boot_dir(&self) -> PathBuf {
        self.path.join("boot")
    }

    /// All deployments, default first.
    pub fn deployments(&self) -> Vec<ostree::Deployment> {
        self.sysroot.deployments()
    }

    /// The running deployment (none on an offline sysroot).
    pub fn booted(&self) -> Option<ostree::Deployment> {
        self.sysroot.booted_deployment()
    }

    /// Re-read the deployments after a change.
    pub(crate) fn reload(&self) -> Result<()> {
        self.sysroot
            .load(gio::Cancellable::NONE)
            .with_context(|| format!("reloading the sysroot {}", self.path.display()))
    }

    /// The directory of a deployment's root.
    pub fn deployment_root(&self, dep: &ostree::Deployment) -> PathBuf {
        self.path
            .join(self.sysroot.deployment_dirpath(dep).as_str())
    }

    /// The stateroot a verb acts on: `os` when given (it must exist), else the booted
    /// deployment's, else the default deployment's, else the only stateroot.
    pub fn stateroot(&self, os: Option<&str>) -> Result<String> {
        let existing = self.stateroots()?;
        if let Some(os) = os {
            crate::sysroot::deploy::validate_osname(os)?;
            if !existing.iter().any(|s| s == os) {
                bail!(
                    "the sysroot {} has no stateroot `{os}` (it has: {})",
                    self.path.display(),
                    list_or_none(&existing)
                );
            }
            return Ok(os.to_string());
        }
        if let Some(b) = self.booted() {
            return Ok(b.osname().to_string());
        }
        if let Some(d) = self.deployments().first() {
            return Ok(d.osname().to_string());
        }
        match existing.as_slice() {
            [only] => Ok(only.clone()),
            _ => bail!(
                "the sysroot {} has no deployments and {} stateroots ({}); name one with --os",
                self.path.display(),
                existing.len(),
                list_or_none(&existing)
            ),
        }
    }

    /// The stateroots under `ostree/deploy`, sorted.
    fn stateroots(&self) -> Result<Vec<String>> {
        let dir = self.path.join("ostree/deploy");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e.with_context(|| format!("reading {}", dir.display()))?;
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The first deployment of `stateroot`: its current default.
    pub fn default_of(&self, stateroot: &str) -> Result<ostree::Deployment> {
        self.deployments()
            .into_iter()
            .find(|d| d.osname() == stateroot)
            .ok_or_else(|| {
                anyhow!(
                    "stateroot `{stateroot}` of the sysroot {} has no deployment to start from \
                     (make one with `slipway image` or `ostree admin deploy`)",
                    self.path.display()
                )
            })
    }

    /// Index of the rollback deployment: the one right after the default in the default's
    /// stateroot.
    pub fn rollback_index(&self) -> Option<usize> {
        let deps = self.deployments();
        let first = deps.first()?;
        deps.iter()
            .enumerate()
            .skip(1)
            .find(|(_, d)| d.osname() == first.osname())
            .map(|(i, _)| i)
    }

    /// A commit's version and timestamp, from the sysroot repository.
    pub fn commit_info(&self, checksum: &str) -> Result<CommitInfo> {
        CommitInfo::load(&self.repo, checksum)
            .with_context(|| format!("in the repository of the sysroot {}", self.path.display()))
    }

    /// "deployment N (STATEROOT, commit C (version V))", for messages.
    pub fn describe(&self, dep: &ostree::Deployment) -> String {
        let csum = dep.csum();
        let commit = match crate::repo::commit_meta_string(&self.repo, &csum, "version") {
            Ok(Some(v)) => format!("{csum} (version {v})"),
            _ => csum.to_string(),
        };
        let index = self
            .deployments()
            .iter()
            .position(|d| d.equal(dep))
            .map(|i| i.to_string())
            .unwrap_or_else(|| "(new)".into());
        format!("deployment {index} ({}, commit {commit})", dep.osname())
    }

    /// Refuse to write while libostree has a staged deployment (made by
    /// `ostree admin deploy --stage` or rpm-ostree, finalized at shutdown): writing the
    /// deployment list now would drop or reorder it behind its owner's back.
    pub(crate) fn refuse_if_staged(&self) -> Result<()> {
        if let Some(s) = self.sysroot.staged_deployment() {
            bail!(
                "the sysroot {} has a staged deployment (commit {}), finalized at the next \
                 shutdown; reboot or remove it (`ostree admin undeploy 0`) first",
                self.path.display(),
                s.csum()
            );
        }
        Ok(())
    }

    /// Write `deployments` as the new list: libostree writes the entries and the menu of a new
    /// `loader.N` and swaps the `loader` link, with its clean-up held back; then GRUB is
    /// switched to `loader.N` ([`crate::sysroot::bootloader::finish_switch`]); then the
    /// clean-up runs (the previous loader directory and unused kernels go). Returns how many
    /// entries the new menu has.
    pub(crate) fn write_deployment_list(
        &self,
        deployments: &[ostree::Deployment],
    ) -> Result<usize> {
        self.sysroot
            .write_deployments_with_options(
                deployments,
                &ostree::SysrootWriteDeploymentsOpts {
                    do_postclean: false,
                },
                gio::Cancellable::NONE,
            )
            .context("writing the deployment list")?;
        crate::sys::failpoint::hit("host-after-loader-swap")?;
        self.finish_switch()
    }

    /// GRUB switched to the current loader directory, then libostree's clean-up.
    pub(crate) fn finish_switch(&self) -> Result<usize> {
        let n = crate::sysroot::bootloader::finish_switch(&self.boot_dir()).with_context(|| {
            format!(
                "switching the boot menu of the sysroot {}",
                self.path.display()
            )
        })?;
        self.sysroot
            .prepare_cleanup(gio::Cancellable::NONE)
            .context("removing the previous boot loader directory and unused boot files")?;
        self.reload()?;
        Ok(n)
    }

    /// Before libostree writes a deployment list: libostree's grub2 backend with slipway's
    /// generator (sysroots made by `ostree admin` or an older slipway say `none` or nothing),
    /// the generator's environment, a GRUB environment block.
    fn prepare_boot_writes(&self) -> Result<()> {
        crate::sysroot::bootloader::check_generator_env()?;
        let config = self.repo.copy_config();
        if config.string("sysroot", "bootloader").ok().as_deref() != Some("grub2") {
            config.set_string("sysroot", "bootloader", "grub2");
            self.repo
                .write_config(&config)
                .context("setting sysroot.bootloader=grub2 in the sysroot repository")?;
            self.repo
                .reload_config(gio::Cancellable::NONE)
                .context("reloading the sysroot repository config")?;
        }
        crate::sysroot::bootloader::prepare_boot(&self.boot_dir(), None)
    }
}

/// Settings layered the way the health gate and the update agent read theirs: each of `files`
/// (relative to a deployment's root: the shipped one first, then the operator's) that exists
/// is a JSON object, read by serde into `L` (every key optional, unknown keys refused) without
/// its `//` comment keys, at any depth. The caller applies the layers in order, so the
/// operator's keys override the shipped ones. Errors name the file, say `what`, and name the
/// key (`reboot-windows[0].start`). A top-level key may be `null` only if it is in
/// `nullable` (serde would read it as absent, and a typo'd value would pass unseen).
pub fn load_layered<L: serde::de::DeserializeOwned>(
    root: &Path,
    files: [&str; 2],
    what: &str,
    nullable: &[&str],
) -> Result<Vec<(PathBuf, L)>> {
    let mut layers = Vec::new();
    for rel in files {
        let p = root.join(rel);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        };
        let layer = (|| -> Result<L> {
            let mut v: serde_json::Value = serde_json::from_str(&text)?;
            if !v.is_object() {
                bail!("expected a JSON object");
            }
            crate::sys::json::strip_comments(&mut v);
            if let Some((k, _)) = v
                .as_object()
                .into_iter()
                .flatten()
                .find(|(k, v)| v.is_null() && !nullable.contains(&k.as_str()))
            {
                bail!("`{k}` is null: give it a value, or leave it out for the default");
            }
            crate::sys::json::deserialize(v).map_err(|e| match e.path {
                None => anyhow::anyhow!("{}", e.error),
                Some(path) => anyhow::anyhow!("`{path}`: {}", e.error),
            })
        })()
        .with_context(|| format!("{}: invalid {what}", p.display()))?;
        layers.push((p, layer));
    }
    Ok(layers)
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// `--reboot` restarts the machine slipway runs on, so it only makes sense when the sysroot
/// is that machine's root. Checked before any work.
pub fn check_reboot_allowed(sysroot: &Path) -> Result<()> {
    let real = std::fs::canonicalize(sysroot)
        .with_context(|| format!("resolving the sysroot path {}", sysroot.display()))?;
    if real != Path::new("/") {
        bail!(
            "--reboot restarts this machine, so it needs --sysroot / (the sysroot here is {}); \
             boot that sysroot's machine yourself",
            sysroot.display()
        );
    }
    Ok(())
}

/// `systemctl reboot`, after a change to the booted host's deployments.
pub fn reboot() -> Result<()> {
    crate::sys::ui::info("rebooting into the new default deployment");
    std::process::Command::new("systemctl")
        .arg("reboot")
        .run()
        .context("asking systemd to reboot")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reboot_is_refused_for_another_sysroot() {
        let d = tempfile::tempdir().unwrap();
        let err = check_reboot_allowed(d.path()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("--sysroot /"), "{msg}");
        assert!(msg.contains(&d.path().display().to_string()), "{msg}");
        check_reboot_allowed(Path::new("/")).unwrap();
        check_reboot_allowed(Path::new("/.")).unwrap();
    }

    #[test]
    fn not_a_sysroot_is_named() {
        let d = tempfile::tempdir().unwrap();
        let err = Host::open(d.path(), Access::Read).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("is not an OSTree sysroot"), "{msg}");
        assert!(msg.contains(&d.path().display().to_string()), "{msg}");
    }
}
