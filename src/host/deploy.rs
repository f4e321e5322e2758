//! Making a commit the new default deployment of a stateroot (shared by `upgrade` and
//! `deploy VERSION|COMMIT`), and the `deploy` verb itself.
//!
//! The sequence: refuse while a staged deployment exists; check the room on /boot; deploy
//! the commit with libostree (`deploy_tree`), whose `/etc` three-way merge starts from the
//! merge deployment (the booted one when booted in this stateroot, else the stateroot's
//! default); carry the kernel arguments and the origin (without its transient state, such as
//! the pin) over from the stateroot's current default; write the deployment list with the
//! new one first (`simple_write_deployment`: the booted and merge deployments, pinned ones
//! and other stateroots' are kept, the rest of the stateroot is pruned), libostree's clean-up
//! held back until GRUB is switched (`Host::finish_switch`).

use anyhow::{Context, Result, anyhow};
use fn_error_context::context;
use ostree::gio;
use ostree::glib;

use super::fetch::{self, Pull};
use super::{CommitInfo, Host, boot};

/// The state after a new deployment was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Deployed {
    pub stateroot: String,
    /// The new default deployment's commit.
    pub default: CommitInfo,
    /// The rollback deployment's commit (the previous default).
    pub rollback: Option<CommitInfo>,
    /// The new deployment's kernel arguments (without libostree's `ostree=`).
    pub kernel_args: Vec<String>,
    /// How many entries the regenerated boot menu has.
    pub boot_entries: usize,
    /// What happened to the EFI system partition (None: not asked to touch it).
    pub boot_files: Option<super::esp::EspUpdate>,
}

/// A deployment's kernel arguments from its boot entry, without the `ostree=` argument
/// libostree adds to every deployment itself.
pub fn kernel_args_of(dep: &ostree::Deployment) -> Vec<String> {
    let options = dep
        .bootconfig()
        .and_then(|b| b.get("options"))
        .map(|s| s.to_string())
        .unwrap_or_default();
    crate::sysroot::bootloader::kernel_args(&options)
        .into_iter()
        .filter(|a| !a.starts_with("ostree="))
        .map(String::from)
        .collect()
}

/// A copy of a deployment's origin without libostree's transient state (the pin), for the
/// deployment that follows it.
fn copy_origin(host: &Host, dep: &ostree::Deployment) -> Result<glib::KeyFile> {
    let Some(old) = dep.origin() else {
        let refspec = fetch::origin_refspec(host, dep)?;
        return Ok(host.sysroot().origin_new_from_refspec(&refspec.to_string()));
    };
    let copy = glib::KeyFile::new();
    copy.load_from_data(&old.to_data(), glib::KeyFileFlags::KEEP_COMMENTS)
        .with_context(|| format!("copying the origin of {}", host.describe(dep)))?;
    ostree::Deployment::origin_remove_transient_state(&copy);
    Ok(copy)
}

/// Deploy `commit` (complete in the sysroot repository) as the new default of `stateroot`,
/// keeping the current default as the rollback.
#[context(
    "Deploying commit {commit} into stateroot {stateroot} of the sysroot {}",
    host.path().display()
)]
pub fn deploy_commit(
    host: &Host,
    stateroot: &str,
    commit: &str,
    kargs: &[String],
    update_esp: bool,
) -> Result<Deployed> {
    host.refuse_if_staged()?;
    let default = host.default_of(stateroot)?;
    boot::check_room(host.repo(), commit, stateroot, &host.boot_dir())?;
    let sysroot = host.sysroot();
    let merge = sysroot
        .merge_deployment(Some(stateroot))
        .unwrap_or_else(|| default.clone());
    let origin = copy_origin(host, &default)?;
    let kernel_args = crate::sysroot::deploy::merge_kernel_args(kernel_args_of(&default), kargs);
    let kargs: Vec<&str> = kernel_args.iter().map(String::as_str).collect();
    let new = sysroot
        .deploy_tree(
            Some(stateroot),
            commit,
            Some(&origin),
            Some(&merge),
            &kargs,
            gio::Cancellable::NONE,
        )
        .with_context(|| {
            format!(
                "deploying the tree (merging /etc of {})",
                host.describe(&merge)
            )
        })?;
    // The boot files go first, before the trial's counter is set: the new shim and GRUB boot
    // the old menu too, and a failure here leaves GRUB's environment as it was.
    let boot_files = if update_esp {
        Some(super::esp::update(host, &host.deployment_root(&new))?)
    } else {
        None
    };
    super::health::start_trial(host, &new)?;
    crate::sys::failpoint::hit("host-before-switch")?;
    sysroot
        .simple_write_deployment(
            Some(stateroot),
            &new,
            Some(&merge),
            ostree::SysrootSimpleWriteDeploymentFlags::NO_CLEAN,
            gio::Cancellable::NONE,
        )
        .context("writing the deployment list")?;
    crate::sys::failpoint::hit("host-after-loader-swap")?;
    let boot_entries = host.finish_switch()?;
    crate::sys::failpoint::hit("host-after-switch")?;
    let deps = host.deployments();
    let first = deps
        .first()
        .ok_or_else(|| anyhow!("no deployments after writing the new one"))?;
    let rollback = match host.rollback_index() {
        Some(i) => Some(host.commit_info(&deps[i].csum())?),
        None => None,
    };
    Ok(Deployed {
        stateroot: stateroot.to_string(),
        default: host.commit_info(&first.csum())?,
        rollback,
        kernel_args,
        boot_entries,
        boot_files,
    })
}

/// What `deploy VERSION|COMMIT` did.
#[derive(Debug, Clone)]
pub enum DeployOutcome {
    /// The commit is already the stateroot's default: nothing was written.
    AlreadyDefault(CommitInfo),
    Deployed(Deployed),
}

/// `slipway host deploy TARGET`: deploy the commit of the origin ref's history whose
/// `version` is TARGET or whose checksum starts with TARGET (or one already deployed), pulling
/// the history's commit metadata from the remote when the sysroot repository does not have
/// it, then the commit itself. Going back to an older version is what this verb is for, so
/// it is not refused as a downgrade.
#[context("Deploying `{target}` on the sysroot {}", host.path().display())]
pub fn deploy(
    host: &Host,
    os: Option<&str>,
    target: &str,
    kargs: &[String],
) -> Result<DeployOutcome> {
    let stateroot = host.stateroot(os)?;
    let default = host.default_of(&stateroot)?;
    let refspec = fetch::origin_refspec(host, &default)?;
    let repo = host.repo();

    let deployed: Vec<String> = host
        .deployments()
        .iter()
        .filter(|d| d.osname() == stateroot)
        .map(|d| d.csum().to_string())
        .collect();
    let candidates = |tip: Option<String>| -> Result<Vec<String>> {
        let mut c = match tip {
            Some(t) => fetch::history(repo, &t)?,
            None => vec![],
        };
        for d in &deployed {
            if !c.contains(d) {
                c.push(d.clone());
            }
        }
        Ok(c)
    };
    let mut searched = candidates(fetch::resolve(host, &refspec)?)?;
    let mut found = fetch::find_commit(repo, &searched, target)?;
    if found.is_none() && refspec.remote.is_some() {
        fetch::pull(host, &refspec, &default, &Pull::History)?;
        searched = candidates(fetch::resolve(host, &refspec)?)?;
        found = fetch::find_commit(repo, &searched, target)?;
    }
    if found.is_none() && target.len() == 64 && target.bytes().all(|b| b.is_ascii_hexdigit()) {
        // A full checksum need not be on the ref's history.
        found = Some(target.to_ascii_lowercase());
    }
    let commit = found.ok_or_else(|| {
        anyhow!(
            "no commit with version `{target}` or a checksum starting with it in the history of {refspec} or among the deployments ({} commits searched)",
            searched.len()
        )
    })?;
    if !fetch::is_complete(repo, &commit) {
        fetch::pull(host, &refspec, &default, &Pull::Commit(commit.clone()))?;
    }
    if commit == default.csum().as_str() && kargs.is_empty() {
        return Ok(DeployOutcome::AlreadyDefault(host.commit_info(&commit)?));
    }
    // Going back: the ESP keeps the newer boot files (see host::esp).
    Ok(DeployOutcome::Deployed(deploy_commit(
        host, &stateroot, &commit, kargs, false,
    )?))
}
