//! `slipway host`: the lifecycle of an installed host (or an offline sysroot).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::{EXIT_UNCHANGED, ExitCode};
use crate::host::{self, Access, Host};

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Show the deployments: commit, version, booted, pending, rollback, pinned, origin.
    Status(StatusArgs),
    /// Pull the newest commit of the default deployment's refspec and deploy it as the new
    /// default, keeping the current default as rollback. Exits with 77 when already up to date.
    Upgrade(UpgradeArgs),
    /// Deploy a commit of the refspec's history, by version or checksum prefix, as the new
    /// default. Exits with 77 when it already is the default.
    Deploy(DeployArgs),
    /// Make the rollback deployment the default (and the default the rollback).
    Rollback(RollbackArgs),
    /// Remove deployments that are not booted, default, rollback or pinned, and unreferenced
    /// objects.
    Cleanup(CleanupArgs),
    /// Pin a deployment so upgrades and cleanup keep it (or unpin it).
    Pin(PinArgs),
    /// Judge this boot: run the health checks and record the verdict; a red new deployment
    /// is rolled back (and the machine rebooted). Run by slipway-boot-check.service; exits
    /// 1 on a red verdict.
    BootCheck(BootCheckArgs),
    /// Make the booted deployment's bound container images available to docker, then
    /// conclude the verdict as boot-check does: the second stage of the health gate (run by
    /// slipway-images.service, after docker); exits 1 when an image fails to load.
    LoadImages(BootCheckArgs),
    /// Before docker starts, once the host checks are green: place the booted deployment's
    /// bound images straight into docker's image store, hard linked from the deployment (run
    /// by slipway-images-place.service). An image it cannot place is imported by
    /// load-images; it never fails the boot.
    PlaceImages(BootCheckArgs),
    /// Succeed only if this boot's verdict is green (the `ExecStartPre=` of gated units).
    Gate(GateArgs),
    /// After a green boot, give the FleetLock reboot slot back (run by
    /// slipway-fleetlock-steady-state.service; nothing to do without a fleetlock-url).
    SteadyState(SteadyStateArgs),
    /// Look for an update and, as /etc/slipway/updates.json says, report it (policy
    /// check), download it (stage) or deploy it and reboot (apply: inside the reboot
    /// windows, with a FleetLock slot when a server is configured). Run by
    /// slipway-update-agent.timer (not enabled by default).
    UpdateAgent(UpdateAgentArgs),
}

/// The sysroot every `host` verb acts on.
#[derive(Debug, Args)]
pub struct SysrootArg {
    /// The OSTree sysroot: `/` on the host itself, or the root of an offline one (a mounted
    /// image).
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub sysroot: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub sysroot: SysrootArg,
    /// Print the status as JSON (schema 1) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub sysroot: SysrootArg,
    /// The stateroot to upgrade (default: the booted deployment's, else the default's).
    #[arg(long = "stateroot", alias = "os", value_name = "NAME")]
    pub os: Option<String>,
    /// Only say whether a newer commit is available (pulls its metadata only); exits with 77
    /// when there is none.
    #[arg(long, conflicts_with_all = ["download_only", "reboot"])]
    pub check: bool,
    /// Pull the new commit but deploy nothing.
    #[arg(long, conflicts_with = "reboot")]
    pub download_only: bool,
    /// Deploy the refspec's commit even when it is older (timestamp or version) than the
    /// current default.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Reboot into the new deployment (`systemctl reboot`; only with --sysroot /).
    #[arg(long)]
    pub reboot: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub sysroot: SysrootArg,
    /// The stateroot to deploy into (default: the booted deployment's, else the default's).
    #[arg(long = "stateroot", alias = "os", value_name = "NAME")]
    pub os: Option<String>,
    /// Reboot into the new deployment (`systemctl reboot`; only with --sysroot /).
    #[arg(long)]
    pub reboot: bool,
    /// A kernel argument for the new deployment, replacing the current default's argument of
    /// the same name (`root=...`, `rd.retry=5`); repeatable. With it, the default's own
    /// commit is deployed anew.
    #[arg(long, value_name = "ARG")]
    pub karg: Vec<String>,
    /// A `version` of the refspec's history, or a commit checksum (a prefix of at least 4
    /// hex digits will do).
    #[arg(value_name = "VERSION|COMMIT")]
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub sysroot: SysrootArg,
    /// Reboot into the rollback deployment (`systemctl reboot`; only with --sysroot /).
    #[arg(long)]
    pub reboot: bool,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub sysroot: SysrootArg,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    #[command(flatten)]
    pub sysroot: SysrootArg,
    /// Remove the pin instead.
    #[arg(long)]
    pub unpin: bool,
    /// The deployment's index, as `slipway host status` shows it.
    #[arg(value_name = "INDEX")]
    pub index: usize,
}

#[derive(Debug, Args)]
pub struct BootCheckArgs {
    #[command(flatten)]
    pub sysroot: SysrootArg,
    /// Where this boot's verdict is kept.
    #[arg(long, value_name = "DIR", default_value = "/run/slipway")]
    pub run_dir: PathBuf,
    /// Judge deployment INDEX as if it were the booted one (offline sysroots, tests).
    #[arg(long, value_name = "INDEX", hide = true)]
    pub assume_booted: Option<usize>,
    /// Never reboot, whatever health.json says (tests).
    #[arg(long, hide = true)]
    pub no_reboot: bool,
}

#[derive(Debug, Args)]
pub struct SteadyStateArgs {
    /// The sysroot of the running host (`/`): its deployment's updates.json names the
    /// server.
    #[arg(
        long = "sysroot",
        alias = "root",
        value_name = "PATH",
        default_value = "/"
    )]
    pub root: PathBuf,
    /// Where this boot's verdict is kept.
    #[arg(long, value_name = "DIR", default_value = "/run/slipway")]
    pub run_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// Where this boot's verdict is kept.
    #[arg(long, value_name = "DIR", default_value = "/run/slipway")]
    pub run_dir: PathBuf,
    /// Content with green host checks while the bound images are still to load (docker
    /// and containerd, which loading them needs).
    #[arg(long)]
    pub host_checks: bool,
}

#[derive(Debug, Args)]
pub struct UpdateAgentArgs {
    #[command(flatten)]
    pub sysroot: SysrootArg,
    /// One pass, then exit (with policy apply, a pass waits for the reboot window and the
    /// reboot slot); without it, a new pass starts an hour after each one.
    #[arg(long)]
    pub once: bool,
    /// Where the agent's status (`update-agent.json`) is kept.
    #[arg(long, value_name = "DIR", default_value = "/run/slipway")]
    pub run_dir: PathBuf,
}

/// A red verdict ends slipway with status 1: its unit fails, so slipway-healthy.target (and
/// what waits for it) is never reached.
fn green_or_exit_1(v: host::health::Verdict) -> Result<()> {
    if v.green {
        Ok(())
    } else {
        Err(ExitCode(1).into())
    }
}

fn boot_check_options(a: BootCheckArgs) -> host::health::gate::BootCheckOptions {
    host::health::gate::BootCheckOptions {
        sysroot: a.sysroot.sysroot,
        run_dir: a.run_dir,
        assume_booted: a.assume_booted,
        no_reboot: a.no_reboot,
    }
}

/// Route a `host` verb; results go to stdout, progress to stderr.
pub fn run(c: HostCommand) -> Result<()> {
    match c {
        HostCommand::Status(a) => {
            let h = Host::open(&a.sysroot.sysroot, Access::Read)?;
            let s = host::status::status(&h)?;
            if a.json {
                crate::outln!("{}", serde_json::to_string_pretty(&s)?)?;
            } else {
                crate::sys::ui::out(s.table())?;
            }
            Ok(())
        }
        HostCommand::Upgrade(a) => upgrade(a),
        HostCommand::BootCheck(a) => {
            green_or_exit_1(host::health::gate::boot_check(&boot_check_options(a))?)
        }
        HostCommand::PlaceImages(a) => host::health::gate::place_images(&boot_check_options(a)),
        HostCommand::LoadImages(a) => {
            green_or_exit_1(host::health::gate::load_images(&boot_check_options(a))?)
        }
        HostCommand::Gate(a) => host::health::gate::gate(&a.run_dir, a.host_checks),
        HostCommand::SteadyState(a) => host::health::gate::steady_state(&a.root, &a.run_dir),
        HostCommand::UpdateAgent(a) => host::updates::run(&host::updates::AgentOptions {
            sysroot: a.sysroot.sysroot,
            once: a.once,
            run_dir: a.run_dir,
        }),
        HostCommand::Deploy(a) => {
            if a.reboot {
                host::check_reboot_allowed(&a.sysroot.sysroot)?;
            }
            let h = Host::open(&a.sysroot.sysroot, Access::Write)?;
            match host::deploy::deploy(&h, a.os.as_deref(), &a.target, &a.karg)? {
                host::deploy::DeployOutcome::AlreadyDefault(c) => {
                    crate::outln!("{c} is already the default deployment")?;
                    Err(ExitCode(EXIT_UNCHANGED).into())
                }
                host::deploy::DeployOutcome::Deployed(d) => {
                    // The deployment is made: a failed print does not keep the reboot back.
                    let printed = print_deployed(&d);
                    drop(h);
                    reboot_if(a.reboot)?;
                    printed
                }
            }
        }
        HostCommand::Rollback(a) => {
            if a.reboot {
                host::check_reboot_allowed(&a.sysroot.sysroot)?;
            }
            let h = Host::open(&a.sysroot.sysroot, Access::Write)?;
            let r = host::rollback::rollback(&h)?;
            // The switch is made: a failed print does not keep the reboot back.
            let printed = crate::outln!("default: {}", r.default)
                .and_then(|_| crate::outln!("rollback: {}", r.rollback));
            drop(h);
            reboot_if(a.reboot)?;
            printed
        }
        HostCommand::Cleanup(a) => {
            let h = Host::open(&a.sysroot.sysroot, Access::Write)?;
            let c = host::cleanup::cleanup(&h)?;
            for r in &c.removed {
                crate::outln!("removed {r}")?;
            }
            crate::outln!("{} deployments kept, {} removed", c.kept, c.removed.len())?;
            for i in &c.images_removed {
                crate::outln!("removed image {i}")?;
            }
            for i in &c.images_kept {
                crate::sys::ui::warn(format!("image not removed: {i}"));
            }
            Ok(())
        }
        HostCommand::Pin(a) => {
            let h = Host::open(&a.sysroot.sysroot, Access::Write)?;
            let p = host::pin::pin(&h, a.index, !a.unpin)?;
            let what = if p.pinned { "pinned" } else { "not pinned" };
            if p.changed {
                crate::outln!("{}: {what}", p.deployment)?;
            } else {
                crate::outln!("{}: already {what}", p.deployment)?;
            }
            Ok(())
        }
    }
}

fn upgrade(a: UpgradeArgs) -> Result<()> {
    if a.reboot {
        host::check_reboot_allowed(&a.sysroot.sysroot)?;
    }
    let h = Host::open(&a.sysroot.sysroot, Access::Write)?;
    let opts = host::upgrade::UpgradeOptions {
        check: a.check,
        download_only: a.download_only,
        allow_downgrade: a.allow_downgrade,
    };
    use host::upgrade::UpgradeOutcome as O;
    match host::upgrade::upgrade(&h, a.os.as_deref(), opts)? {
        O::UpToDate(c) => {
            crate::outln!("already up to date: {c}")?;
            Err(ExitCode(EXIT_UNCHANGED).into())
        }
        O::Available {
            current,
            new,
            downgrade,
        } => match downgrade {
            None => crate::outln!("update available: {new} (deployed: {current})"),
            Some(why) => crate::outln!(
                "older commit available: {new} (deployed: {current}): {why}; upgrade refuses it without --allow-downgrade"
            ),
        },
        O::Rejected { new, rejection } => {
            crate::outln!(
                "no update: {new} was rejected by the health gate at {}: {}; \
                 `slipway host deploy {}` tries it again",
                rejection.at,
                rejection.reason,
                new.checksum
            )?;
            Err(ExitCode(EXIT_UNCHANGED).into())
        }
        O::Downloaded { current, new } => {
            crate::outln!("downloaded: {new} (deployed: {current})")?;
            Ok(())
        }
        O::Deployed(d) => {
            let printed = print_deployed(&d);
            drop(h);
            reboot_if(a.reboot)?;
            printed
        }
    }
}

fn print_deployed(d: &host::deploy::Deployed) -> Result<()> {
    crate::outln!("default: {}", d.default)?;
    if let Some(r) = &d.rollback {
        crate::outln!("rollback: {r}")?;
    }
    if let Some(b) = &d.boot_files {
        crate::outln!("{b}")?;
    }
    Ok(())
}

/// Reboot after the sysroot lock is released (checked to be allowed before any work).
fn reboot_if(reboot: bool) -> Result<()> {
    if reboot { host::reboot() } else { Ok(()) }
}
