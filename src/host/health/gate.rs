//! `slipway host boot-check` (run by `slipway-boot-check.service` on every boot) and
//! `slipway host gate` (the `ExecStartPre=` of docker, containerd and kubelet).
//!
//! boot-check, in order:
//! 1. If this boot already has a verdict (`/run/slipway/verdict.json` with this boot's id),
//!    answer with it: a later start of the service never re-runs the checks.
//! 2. **Exhausted trial**: GRUB's counter is at 0 and the booted deployment is not the
//!    default, so GRUB booted the rollback because the default never reached a verdict: the
//!    default is rejected ("did not reach a green verdict in N boots") and the booted
//!    deployment becomes the default.
//! 3. Run the checks; record the verdict (run directory, the deployment's record, the
//!    journal).
//! 4. [`decide`]: green marks the deployment good and ends its trial (the FleetLock reboot
//!    slot goes back afterwards, from `slipway host steady-state`, which runs after
//!    slipway-healthy.target so the workloads never wait for the lock server); red on a deployment
//!    never marked good, booted as the default, with a rollback that was not itself
//!    rejected, rejects it, makes the rollback the default and reboots; any other red stays
//!    red (workloads stay stopped) and says why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::store::Rejection;
use super::{HealthConfig, Store, Verdict, checks, journal};
use crate::host::rollback::moved_to_front;
use crate::host::{Access, Host};
use crate::services::store::PlacedRecord;
use crate::sysroot::bootloader;

/// The verdict of the current boot, for `gate` and later starts of the service.
pub const VERDICT_FILE: &str = "verdict.json";

/// What the gate does once the checks have run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Mark the booted deployment good; end its trial if it was on one.
    Green { end_trial: bool },
    /// Reject the booted deployment and make deployment `to` the default.
    RollBack { to: usize },
    /// Red, and nothing to roll back to (or it must not be): workloads stay stopped.
    StayRed { why: String },
}

/// What [`decide`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Index of the booted deployment (0: it is the default).
    pub booted: usize,
    pub booted_marked_good: bool,
    /// GRUB's counter, if a trial is running.
    pub boot_left: Option<u32>,
    /// The rollback deployment of the default, and whether it was rejected itself.
    pub rollback: Option<(usize, bool)>,
    pub green: bool,
}

/// The rule of the gate (see the module documentation).
pub fn decide(f: &Facts) -> Decision {
    if f.green {
        return Decision::Green {
            end_trial: f.boot_left.is_some() && f.booted == 0,
        };
    }
    if f.booted_marked_good {
        return Decision::StayRed {
            why: "this deployment passed its checks on an earlier boot, so it is not rolled \
                  back; container workloads stay stopped until the checks pass"
                .into(),
        };
    }
    if f.booted != 0 {
        return Decision::StayRed {
            why: "the booted deployment is not the default (chosen by hand at the boot menu?); \
                  nothing is changed"
                .into(),
        };
    }
    match f.rollback {
        Some((to, false)) => Decision::RollBack { to },
        Some((_, true)) => Decision::StayRed {
            why: "the rollback deployment was rejected itself; nothing better to boot".into(),
        },
        None => Decision::StayRed {
            why: "there is no rollback deployment".into(),
        },
    }
}

/// Options of `slipway host boot-check`.
#[derive(Debug, Clone)]
pub struct BootCheckOptions {
    pub sysroot: PathBuf,
    /// Where this boot's verdict is kept (`/run/slipway`).
    pub run_dir: PathBuf,
    /// Judge deployment INDEX as if it were booted (offline sysroots in tests).
    pub assume_booted: Option<usize>,
    /// Never reboot (tests); the configured `reboot-on-red` applies otherwise.
    pub no_reboot: bool,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// This boot's verdict, if the gate reached one.
pub fn current_verdict(run_dir: &Path) -> Result<Option<Verdict>> {
    let p = run_dir.join(VERDICT_FILE);
    let v: Verdict = match std::fs::read_to_string(&p) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("parsing {}", p.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    Ok((v.boot_id == boot_id()).then_some(v))
}

/// `slipway host gate`: succeed only when this boot's verdict is green. `host_checks`
/// (docker and containerd, which the second stage needs) is content with the first stage:
/// green host checks, bound images still to load.
pub fn gate(run_dir: &Path, host_checks: bool) -> Result<()> {
    match current_verdict(run_dir)? {
        Some(v) if v.green && (host_checks || !v.images_pending) => Ok(()),
        Some(v) if v.green => bail!(
            "this boot's host checks are green, but the deployment's bound images are not \
             loaded yet (slipway-images.service): container workloads start after it"
        ),
        Some(v) => bail!(
            "this boot's health verdict is {}; container workloads do not start \
             (see `slipway host status`)",
            v.summary()
        ),
        None => bail!(
            "this boot has no health verdict yet ({} missing): container workloads start \
             only after slipway-healthy.target",
            run_dir.join(VERDICT_FILE).display()
        ),
    }
}

/// The index of the deployment judged: the booted one, or `--assume-booted` (tests).
fn judged_index(host: &Host, assume_booted: Option<usize>) -> Result<usize> {
    let deps = host.deployments();
    match assume_booted {
        Some(i) if i < deps.len() => Ok(i),
        Some(i) => bail!("--assume-booted {i}: there are {} deployments", deps.len()),
        None => {
            let b = host
                .booted()
                .context("this is not a booted OSTree host (no booted deployment)")?;
            deps.iter()
                .position(|d| d.equal(&b))
                .context("the booted deployment is not in the deployment list")
        }
    }
}

/// `slipway host boot-check`.
pub fn boot_check(opts: &BootCheckOptions) -> Result<Verdict> {
    if let Some(v) = current_verdict(&opts.run_dir)? {
        crate::sys::ui::info(format!("this boot was judged already: {}", v.summary()));
        return finish(v);
    }
    let host = Host::open(&opts.sysroot, Access::Write)?;
    let deps = host.deployments();
    let booted_index = judged_index(&host, opts.assume_booted)?;
    let booted = deps[booted_index].clone();
    let stateroot = booted.osname().to_string();
    let store = Store::open(&host, &stateroot);
    let root = host.deployment_root(&booted);
    let cfg = HealthConfig::load(&root)?;
    let boot = host.boot_dir();
    finish_interrupted_switch(&host, &deps[0])?;
    let boot_left = bootloader::read_grubenv(&boot)?
        .get(bootloader::BOOT_LEFT_VAR)
        .and_then(|v| v.parse::<u32>().ok());

    // 2. GRUB gave up on the default.
    let mut booted_index = booted_index;
    if boot_left == Some(0) && booted_index != 0 {
        let tries = cfg.boot_tries;
        reject_default(&host, &store, &deps[0], booted_index, &booted, tries)?;
        booted_index = 0;
    }

    // 3. The checks.
    let mut verdict = run_checks(&root, &booted, &cfg)?;
    // The second stage: bound images, once docker runs (slipway-images.service).
    let bound = crate::services::Manifest::read(&root)?.images.len();
    if verdict.green && bound > 0 {
        verdict.images_pending = true;
        crate::sys::file::write_atomic(
            &opts.run_dir.join(VERDICT_FILE),
            serde_json::to_string_pretty(&verdict)?.as_bytes(),
        )?;
        store.update(&booted, |h| h.last_verdict = Some(verdict.clone()))?;
        crate::sys::ui::info(format!(
            "host checks green; {bound} bound container image(s) next (slipway-images.service)"
        ));
        return finish(verdict);
    }
    conclude(
        host,
        opts,
        &store,
        &cfg,
        booted_index,
        &booted,
        boot_left,
        verdict,
    )
}

/// A switch cut short (power lost after libostree's swap, before GRUB was switched, or a
/// deployment staged and finalized by libostree alone): finish it, the new default
/// (`default`) on trial from its next boot.
fn finish_interrupted_switch(host: &Host, default: &ostree::Deployment) -> Result<()> {
    let boot = host.boot_dir();
    let loader = std::fs::read_link(boot.join("loader"))
        .map(|t| t.to_string_lossy().into_owned())
        .ok();
    if loader.is_some() && bootloader::grub_loader(&boot)? != loader {
        crate::sys::ui::warn(format!(
            "the boot menu GRUB reads is not the one of the deployment list ({}): finishing \
             the interrupted switch; {} boots next",
            loader.as_deref().unwrap_or("-"),
            host.describe(default)
        ));
        super::start_trial(host, default)?;
        host.finish_switch()?;
    }
    Ok(())
}

/// GRUB gave up on `default` after `tries` boots and booted the rollback (`booted`, at
/// `booted_index`): reject the default, make the booted one the default again, end the
/// count, and say so in the journal.
fn reject_default(
    host: &Host,
    store: &Store,
    default: &ostree::Deployment,
    booted_index: usize,
    booted: &ostree::Deployment,
    tries: u32,
) -> Result<()> {
    let reason =
        format!("did not reach a green verdict in {tries} boots (GRUB booted the rollback)");
    store.update(default, |h| {
        h.rejected = Some(Rejection {
            at: super::now(),
            reason: reason.clone(),
        })
    })?;
    make_default(host, booted_index)?;
    bootloader::set_grubenv_var(&host.boot_dir(), bootloader::BOOT_LEFT_VAR, None)?;
    journal::send(
        journal::ROLLBACK_ID,
        3,
        &format!(
            "slipway: rejected {}: {reason}; {} is the default again",
            host.describe(default),
            host.describe(booted)
        ),
        &[
            ("SLIPWAY_REJECTED", default.csum().as_str()),
            ("SLIPWAY_DEFAULT", booted.csum().as_str()),
        ],
    );
    Ok(())
}

/// The deployment's checks (those in its /usr and /etc), each run with the configured
/// timeout: the first stage of the verdict, green when no required check failed.
fn run_checks(root: &Path, booted: &ostree::Deployment, cfg: &HealthConfig) -> Result<Verdict> {
    let mut results = Vec::new();
    for c in checks::discover(root)? {
        let r = checks::run(&c, Duration::from_secs(cfg.check_timeout_secs));
        crate::sys::ui::info(format!(
            "check {}/{}: {} ({} ms)",
            c.stage, c.name, r.result, r.milliseconds
        ));
        results.push(r);
    }
    let mut verdict = Verdict {
        boot_id: boot_id(),
        at: super::now(),
        commit: booted.csum().to_string(),
        deployserial: booted.deployserial(),
        green: true,
        checks: results,
        images_pending: false,
    };
    verdict.green = verdict.failed_required().is_none();
    Ok(verdict)
}

/// Where `place-images` records what it placed, for `load-images` to report.
pub const PLACED_FILE: &str = "images-placed.json";

/// `slipway host place-images` (slipway-images-place.service, after green host checks and
/// before docker starts): each image the booted deployment binds is placed into docker's
/// store from the deployment's own files ([`crate::services::store`]). It never fails the
/// boot: an image it cannot place is imported by `load-images`, which checks them all.
pub fn place_images(opts: &BootCheckOptions) -> Result<()> {
    let Some(verdict) = current_verdict(&opts.run_dir)? else {
        bail!("this boot has no verdict yet: slipway-boot-check.service runs first");
    };
    if !verdict.green || !verdict.images_pending {
        crate::sys::ui::info(format!(
            "nothing to place: this boot's verdict is {}",
            verdict.summary()
        ));
        return Ok(());
    }
    if crate::services::docker::docker_running() {
        crate::sys::ui::info("docker is running already: its images are left to load-images");
        return Ok(());
    }
    let host = Host::open(&opts.sysroot, Access::Write)?;
    let deps = host.deployments();
    let booted = deps[judged_index(&host, opts.assume_booted)?].clone();
    // The deployment and the stateroot's /var through one mount (the host's /var is a mount
    // of its own, and a hard link never crosses mounts).
    let physical = if host.path() == Path::new("/") {
        PathBuf::from("/sysroot")
    } else {
        host.path().to_path_buf()
    };
    let view = crate::services::store::RootView::bind(&physical)?;
    let root = view
        .path()
        .join(host.sysroot().deployment_dirpath(&booted).as_str());
    let manifest = crate::services::Manifest::read(&root)?;
    let var_dir = view
        .path()
        .join(format!("ostree/deploy/{}/var", booted.osname().as_str()));
    let docker_dir = var_dir.join("lib/docker");
    let tmp = var_dir.join("tmp");
    let containerd_running = crate::services::docker::unit_active("containerd.service");
    let store = crate::services::store::DockerStore::open(&docker_dir)?;
    let mut placed = std::collections::BTreeMap::new();
    for img in &manifest.images {
        let src = match crate::sys::tree::check_path("rootfs", &img.rootfs) {
            Ok(rel) => root.join(rel),
            Err(e) => {
                let why = format!("{e:#}");
                crate::sys::ui::warn(format!("image {}: {why}", img.reference()));
                placed.insert(
                    img.reference(),
                    PlacedRecord {
                        digest: img.digest.clone(),
                        result: why.clone(),
                        milliseconds: 0,
                        cri: why,
                        cri_milliseconds: 0,
                    },
                );
                continue;
            }
        };
        let t = std::time::Instant::now();
        let result = match &store {
            None => Err(anyhow::anyhow!(
                "{} belongs to another storage driver",
                docker_dir.display()
            )),
            Some(store) => store.place(&src, img),
        };
        let (result, ms) = (
            PlacedRecord::outcome(&result),
            t.elapsed().as_millis() as u64,
        );
        crate::sys::ui::info(format!(
            "image {}: docker: {result} ({ms} ms)",
            img.reference()
        ));
        let t = std::time::Instant::now();
        let cri = if containerd_running {
            PlacedRecord::outcome(&crate::services::containerd::place(
                &src, img, &var_dir, &tmp,
            ))
        } else {
            "containerd is not running".to_string()
        };
        let cri_ms = t.elapsed().as_millis() as u64;
        crate::sys::ui::info(format!(
            "image {}: containerd ({}): {cri} ({cri_ms} ms)",
            img.reference(),
            crate::services::containerd::NAMESPACE,
        ));
        placed.insert(
            img.reference(),
            PlacedRecord {
                digest: img.digest.clone(),
                result,
                milliseconds: ms,
                cri,
                cri_milliseconds: cri_ms,
            },
        );
    }
    nix::unistd::sync();
    crate::sys::file::write_atomic(
        &opts.run_dir.join(PLACED_FILE),
        serde_json::to_string_pretty(&placed)?.as_bytes(),
    )?;
    Ok(())
}

/// What `place-images` recorded this boot (empty when it did not run).
fn placed_images(run_dir: &Path) -> std::collections::BTreeMap<String, PlacedRecord> {
    std::fs::read_to_string(run_dir.join(PLACED_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// `slipway host load-images` (slipway-images.service, after docker): the verdict's second
/// stage. Each image the booted deployment binds is made available to docker; each is a
/// required check of stage `images`, and the verdict is concluded as the boot-check would
/// (green marks the deployment good; red rolls a new deployment back).
pub fn load_images(opts: &BootCheckOptions) -> Result<Verdict> {
    let Some(mut verdict) = current_verdict(&opts.run_dir)? else {
        bail!("this boot has no verdict yet: slipway-boot-check.service runs first");
    };
    if !verdict.images_pending {
        crate::sys::ui::info(format!(
            "nothing to load: this boot's verdict is {}",
            verdict.summary()
        ));
        return finish(verdict);
    }
    let host = Host::open(&opts.sysroot, Access::Write)?;
    let deps = host.deployments();
    let booted_index = judged_index(&host, opts.assume_booted)?;
    let booted = deps[booted_index].clone();
    if booted.csum().as_str() != verdict.commit || booted.deployserial() != verdict.deployserial {
        bail!(
            "this boot's verdict is about {}.{}, not the booted deployment {}",
            verdict.commit,
            verdict.deployserial,
            host.describe(&booted)
        );
    }
    let root = host.deployment_root(&booted);
    let manifest = crate::services::Manifest::read(&root)?;
    let tmp = host.path().join(format!(
        "ostree/deploy/{}/var/tmp",
        booted.osname().as_str()
    ));
    let placed = placed_images(&opts.run_dir);
    for o in crate::services::docker::ensure_all(&root, &manifest, &tmp, &placed) {
        let (result, output) = match &o.result {
            Ok(how) => ("passed", format!("{how:?}").to_lowercase()),
            Err(e) => ("failed", e.clone()),
        };
        crate::sys::ui::info(format!(
            "image {}: {result}: {output} ({} ms)",
            o.reference, o.milliseconds
        ));
        verdict.checks.push(super::CheckResult {
            name: o.reference.clone(),
            stage: "images".into(),
            path: manifest
                .image(&o.reference)
                .map(|i| format!("/{}", i.rootfs))
                .unwrap_or_default(),
            result: result.into(),
            exit_code: None,
            output,
            milliseconds: o.milliseconds,
        });
    }
    verdict.images_pending = false;
    verdict.green = verdict.failed_required().is_none();
    verdict.at = super::now();
    let store = Store::open(&host, booted.osname().as_str());
    let cfg = HealthConfig::load(&root)?;
    let boot_left = if booted_index == 0 {
        bootloader::read_grubenv(&host.boot_dir())?
            .get(bootloader::BOOT_LEFT_VAR)
            .and_then(|v| v.parse::<u32>().ok())
    } else {
        None
    };
    conclude(
        host,
        opts,
        &store,
        &cfg,
        booted_index,
        &booted,
        boot_left,
        verdict,
    )
}

/// Record the verdict (run directory, the deployment's record, the journal) and act on it.
#[allow(clippy::too_many_arguments)]
fn conclude(
    host: Host,
    opts: &BootCheckOptions,
    store: &Store,
    cfg: &HealthConfig,
    booted_index: usize,
    booted: &ostree::Deployment,
    boot_left: Option<u32>,
    verdict: Verdict,
) -> Result<Verdict> {
    let deps = host.deployments();
    let boot = host.boot_dir();
    crate::sys::file::write_atomic(
        &opts.run_dir.join(VERDICT_FILE),
        serde_json::to_string_pretty(&verdict)?.as_bytes(),
    )?;
    let record = store.update(booted, |h| h.last_verdict = Some(verdict.clone()))?;
    let summary = verdict.summary();
    let failed = verdict
        .failed_required()
        .map(|c| (c.name.clone(), c.output.clone()))
        .unwrap_or_default();
    journal::send(
        journal::VERDICT_ID,
        if verdict.green { 5 } else { 3 },
        &format!(
            "slipway: boot verdict {summary} for {}",
            host.describe(booted)
        ),
        &[
            (
                "SLIPWAY_VERDICT",
                if verdict.green { "green" } else { "red" },
            ),
            ("SLIPWAY_COMMIT", booted.csum().as_str()),
            ("SLIPWAY_FAILED_CHECK", failed.0.as_str()),
            ("SLIPWAY_CHECK_OUTPUT", failed.1.as_str()),
        ],
    );

    // 4. Decide.
    let rollback = host.rollback_index().map(|i| {
        let rejected = store
            .of(&deps[i])
            .map(|h| h.rejected.is_some())
            .unwrap_or(false);
        (i, rejected)
    });
    let facts = Facts {
        booted: booted_index,
        booted_marked_good: record.marked_good.is_some(),
        boot_left: if booted_index == 0 { boot_left } else { None },
        rollback,
        green: verdict.green,
    };
    match decide(&facts) {
        Decision::Green { end_trial } => {
            if record.marked_good.is_none() {
                store.update(booted, |h| h.marked_good = Some(super::now()))?;
            }
            // Only the default's own green boot ends its trial: a green rollback boot (an
            // interrupted switch) leaves the default on trial.
            if end_trial {
                bootloader::set_grubenv_var(&boot, bootloader::BOOT_LEFT_VAR, None)?;
            }
        }
        Decision::RollBack { to } => {
            store.update(booted, |h| {
                h.rejected = Some(Rejection {
                    at: super::now(),
                    reason: summary.clone(),
                })
            })?;
            let target = host.describe(&deps[to]);
            make_default(&host, to)?;
            bootloader::set_grubenv_var(&boot, bootloader::BOOT_LEFT_VAR, None)?;
            journal::send(
                journal::ROLLBACK_ID,
                3,
                &format!(
                    "slipway: rejected {}: {summary}; rolled back to {target}",
                    host.describe(booted)
                ),
                &[
                    ("SLIPWAY_REJECTED", booted.csum().as_str()),
                    ("SLIPWAY_DEFAULT", deps[to].csum().as_str()),
                ],
            );
            drop(host);
            if cfg.reboot_on_red && !opts.no_reboot {
                crate::sys::ui::info("rebooting into the rollback deployment");
                use crate::sys::cmd::CommandRunExt;
                std::process::Command::new("systemctl")
                    .args(["--no-block", "reboot"])
                    .run()
                    .context("asking systemd to reboot into the rollback")?;
            }
        }
        Decision::StayRed { why } => {
            crate::sys::ui::warn(format!("red verdict, no rollback: {why}"));
        }
    }
    finish(verdict)
}

/// `slipway host steady-state` (slipway-fleetlock-steady-state.service, after
/// slipway-healthy.target, so it never holds the workloads back): on a green boot, give back
/// the FleetLock reboot slot the update agent took before it (when `updates.json` names a
/// server). A server that cannot be reached is retried for a while, then only reported.
pub fn steady_state(root: &Path, run_dir: &Path) -> Result<()> {
    match current_verdict(run_dir)? {
        Some(v) if v.green => {}
        _ => bail!("this boot has no green verdict: the reboot slot is kept"),
    }
    if let Err(e) = crate::host::updates::report_steady_state(root) {
        crate::sys::ui::warn(format!("{e:#}"));
    }
    Ok(())
}

/// Print the verdict and return it; the command line turns red into status 1 (the service
/// fails, so slipway-healthy.target is never reached).
fn finish(v: Verdict) -> Result<Verdict> {
    // The verdict is recorded (run directory, the deployment's record, the journal) before
    // it is printed: a closed or full stdout must not change what the gate decides.
    let _ = crate::outln!("{}", v.summary());
    Ok(v)
}

/// Make deployment `index` the default (the others keep their order).
fn make_default(host: &Host, index: usize) -> Result<()> {
    let deps = host.deployments();
    host.write_deployment_list(&moved_to_front(&deps, index))
        .with_context(|| format!("making {} the default", host.describe(&deps[index])))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            booted: 0,
            booted_marked_good: false,
            boot_left: Some(2),
            rollback: Some((1, false)),
            green: true,
        }
    }

    #[test]
    fn green_ends_the_trial() {
        assert_eq!(decide(&facts()), Decision::Green { end_trial: true });
        let f = Facts {
            boot_left: None,
            ..facts()
        };
        assert_eq!(decide(&f), Decision::Green { end_trial: false });
    }

    #[test]
    fn red_on_a_new_default_rolls_back() {
        let f = Facts {
            green: false,
            ..facts()
        };
        assert_eq!(decide(&f), Decision::RollBack { to: 1 });
        // Also without a trial running (the counter was cleared by hand, say).
        let f = Facts {
            green: false,
            boot_left: None,
            ..facts()
        };
        assert_eq!(decide(&f), Decision::RollBack { to: 1 });
    }

    #[test]
    fn red_stays_red_when_rolling_back_is_wrong() {
        for f in [
            Facts {
                green: false,
                booted_marked_good: true,
                ..facts()
            },
            Facts {
                green: false,
                booted: 1,
                ..facts()
            },
            Facts {
                green: false,
                rollback: Some((1, true)),
                ..facts()
            },
            Facts {
                green: false,
                rollback: None,
                ..facts()
            },
        ] {
            assert!(
                matches!(decide(&f), Decision::StayRed { .. }),
                "{f:?}: {:?}",
                decide(&f)
            );
        }
    }

    fn write_verdict(
        dir: &Path,
        green: bool,
        images_pending: bool,
        checks: Vec<super::super::CheckResult>,
    ) {
        let v = Verdict {
            boot_id: boot_id(),
            at: "2026-12-01T00:00:00Z".into(),
            commit: "c".into(),
            deployserial: 0,
            green,
            checks,
            images_pending,
        };
        std::fs::write(dir.join(VERDICT_FILE), serde_json::to_string(&v).unwrap()).unwrap();
    }

    #[test]
    fn docker_may_start_on_green_host_checks_the_workloads_wait_for_the_images() {
        let d = tempfile::tempdir().unwrap();
        // No verdict yet: nothing starts.
        assert!(gate(d.path(), true).is_err());
        write_verdict(d.path(), true, true, vec![]);
        gate(d.path(), true).unwrap();
        let e = gate(d.path(), false).unwrap_err().to_string();
        assert!(e.contains("bound images are not loaded yet"), "{e}");
        assert!(
            current_verdict(d.path())
                .unwrap()
                .unwrap()
                .summary()
                .contains("bound images next")
        );
        // Concluded green: everything starts.
        write_verdict(d.path(), true, false, vec![]);
        gate(d.path(), false).unwrap();
        // An image that failed to load: red, and nothing starts, docker neither.
        let failed = super::super::CheckResult {
            name: "web:v1".into(),
            stage: "images".into(),
            path: "/usr/lib/slipway/images/web/v1/rootfs".into(),
            result: "failed".into(),
            exit_code: None,
            output: "image web:v1: docker import: no space left on device".into(),
            milliseconds: 3,
        };
        write_verdict(d.path(), false, false, vec![failed]);
        let v = current_verdict(d.path()).unwrap().unwrap();
        assert_eq!(v.failed_required().unwrap().name, "web:v1");
        assert_eq!(
            v.summary(),
            "red: bound image web:v1 failed to load: image web:v1: docker import: no space left on device"
        );
        assert!(gate(d.path(), true).is_err());
        assert!(gate(d.path(), false).is_err());
    }
}
