//! `slipway install`: a kickstart carried out onto a disk of this machine (the PXE live
//! root's installer, or any Linux with slipway and the tools).
//!
//! 1. **Kickstart**: read from a file or fetched over `http://` (no TLS: slipway is built
//!    without it), parsed and validated for install; errors name the line. A file's
//!    `%include` is resolved relative to the file; a fetched kickstart's `%include` is refused
//!    at its line (the installer fetches one document).
//! 2. **`%pre`** scripts run on the installer's root (not with `--dry-run`).
//! 3. **Plan** ([`plan::InstallPlan`]): the disk ([`disk::choose`]), the partitions and file
//!    system UUIDs, the commit, kernel arguments, users. `--dry-run` prints it as JSON and
//!    stops. Nothing has touched a disk up to here.
//! 4. **Act**: wipe (when the plan says so), GPT with sfdisk, file systems with the planned
//!    UUIDs, root and /boot mounted (unmounted by a guard, also on error), the commit pulled
//!    from `ostreesetup --url` and deployed with libostree (verified with the trusted key
//!    unless `--nogpg`), host configuration, `%post` in the deployment, `%post --nochroot` on
//!    the installer's root (`SLIPWAY_SYSROOT`: the mounted target's root, `SLIPWAY_DEPLOYMENT`:
//!    the deployment inside it, `SLIPWAY_DISK`), fstab and `root=` by UUID, GRUB for BIOS (MBR
//!    and BIOS boot partition) and UEFI (`EFI/BOOT/BOOTX64.EFI`), both finding /boot by file
//!    system UUID.
//! 5. **Report** `{"mac","uuid","step":"install-result","result"[,"error"]}` to `--report` or
//!    `slipway.report=` of the kernel command line, then `reboot`/`poweroff`/`halt` as the
//!    kickstart says.
//!
//! On failure after the disk was touched, the disk is wiped (each partition's signatures,
//! then the protective MBR, both GPT headers and the MBR boot code; checked with `wipefs -n`)
//! unless `--preserve-on-error`; the error is reported and slipway exits non-zero without
//! rebooting.

pub mod disk;
pub mod plan;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};

use crate::kickstart::{self, Kickstart, PowerAction, Script};
use crate::sys::cmd::CommandRunExt;
use crate::sys::ui;
use crate::sysroot::bootloader::{self, BootSearch, GrubSettings, Platform};
use crate::sysroot::deploy::{self, DeployRequest, Remote, Seed};
use crate::sysroot::disk as sysdisk;
use crate::sysroot::esp;
pub use plan::InstallPlan;

/// The trusted key the PXE live root carries (`slipway pxe build --trusted-key`).
pub const DEFAULT_TRUSTED_KEY: &str = "/etc/slipway/installer-trusted.gpg";
/// The CA file the PXE live root carries (`slipway pxe build --tls-ca`).
pub const DEFAULT_TLS_CA: &str = "/etc/slipway/installer-tls-ca.pem";
/// Largest kickstart fetched over HTTP.
const MAX_KICKSTART: u64 = 1 << 20;

/// What `slipway install` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// A path or an `http://` URL.
    pub kickstart: String,
    pub device: Option<String>,
    pub preserve_on_error: bool,
    pub trusted_key: Option<PathBuf>,
    /// The CA file `https://` servers are checked against.
    pub tls_ca: Option<PathBuf>,
    pub report: Option<String>,
    pub dry_run: bool,
    /// A checkout of the commit to import before the pull (`--seed`).
    pub seed: Option<PathBuf>,
    /// A squashfs image of the commit's tree to import before the pull (the live root's,
    /// `--seed-image`).
    pub seed_image: Option<PathBuf>,
}

/// Read a kickstart from a file or an `http://` or `https://` URL (the server checked
/// against `tls_ca`, else the machine's CA certificates), parse it and validate it for
/// install.
pub fn load_kickstart(src: &str, tls_ca: Option<&Path>) -> Result<Kickstart> {
    let ks = if src.starts_with("http://") || src.starts_with("https://") {
        let text = fetch(src, tls_ca)?;
        refuse_includes(&text, src)?;
        kickstart::parse_str(&text, src)?
    } else {
        kickstart::parse_file(Path::new(src))?
    };
    ks.validate_for_install()?;
    plan::sizes(&ks)?;
    Ok(ks)
}

/// `%include`/`%ksappend` in a fetched kickstart: refused at its line.
fn refuse_includes(text: &str, src: &str) -> Result<()> {
    for (i, line) in text.lines().enumerate() {
        let w = line.split_whitespace().next().unwrap_or("");
        if w == "%include" || w == "%ksappend" {
            bail!(
                "{src}:{}: {w} is not supported in a kickstart fetched over HTTP (the installer \
                 reads one document; inline the included file)",
                i + 1
            );
        }
    }
    Ok(())
}

fn agent(tls_ca: Option<&Path>) -> Result<ureq::Agent> {
    crate::sys::http::agent_with_ca(std::time::Duration::from_secs(60), 3, tls_ca)
}

/// How long a kickstart URL is retried while the server cannot be reached (the network of a
/// freshly booted installer may still be coming up).
const FETCH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

fn fetch(url: &str, tls_ca: Option<&Path>) -> Result<String> {
    let started = std::time::Instant::now();
    let agent = agent(tls_ca)?;
    let mut resp = loop {
        match agent.get(url).call() {
            Ok(r) => break r,
            Err(e) if started.elapsed() < FETCH_PATIENCE => {
                ui::info(format!("fetching the kickstart {url}: {e}; trying again"));
                std::thread::sleep(std::time::Duration::from_secs(3));
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "fetching the kickstart {url} (tried for {} s)",
                        FETCH_PATIENCE.as_secs()
                    )
                });
            }
        }
    };
    if resp.status() != 200 {
        let body = crate::sys::http::body_text(&mut resp, crate::sys::http::MAX_ERROR_BODY)
            .unwrap_or_default();
        bail!(
            "fetching the kickstart {url}: HTTP {} {}",
            resp.status().as_u16(),
            body.trim()
        );
    }
    let mut text = String::new();
    resp.body_mut()
        .as_reader()
        .take(MAX_KICKSTART + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading the kickstart {url}"))?;
    if text.len() as u64 > MAX_KICKSTART {
        bail!("the kickstart {url} is larger than {MAX_KICKSTART} bytes");
    }
    Ok(text)
}

/// `--seed DIR` (a directory holding a tree with `/usr`) or `--seed-image FILE` (a squashfs
/// image, and `unsquashfs` to unpack it), checked before any disk is touched.
fn check_seed(opts: &InstallOptions) -> Result<Option<Seed>> {
    match (&opts.seed, &opts.seed_image) {
        (Some(_), Some(_)) => bail!("--seed and --seed-image name two seeds; give one"),
        (Some(dir), None) => {
            let usr = dir.join("usr");
            if !std::fs::symlink_metadata(&usr).is_ok_and(|m| m.is_dir()) {
                bail!(
                    "--seed {}: not a tree to import (no /usr directory in it)",
                    dir.display()
                );
            }
            Ok(Some(Seed::Tree(dir.clone())))
        }
        (None, Some(image)) => {
            let mut magic = [0u8; 4];
            std::fs::File::open(image)
                .and_then(|mut f| f.read_exact(&mut magic))
                .with_context(|| format!("--seed-image {}: reading it", image.display()))?;
            if &magic != SQUASHFS_MAGIC {
                bail!(
                    "--seed-image {}: not a squashfs image (it starts with {magic:02x?}, not \"hsqs\")",
                    image.display()
                );
            }
            crate::sys::preflight::require_programs(&["unsquashfs"])
                .context("--seed-image needs unsquashfs (squashfs-tools)")?;
            Ok(Some(Seed::Image(image.clone())))
        }
        (None, None) => Ok(None),
    }
}

/// The first bytes of a squashfs image (its magic number, little-endian).
const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";

/// The CA file: `--tls-ca` (checked), else [`DEFAULT_TLS_CA`] when present.
fn tls_ca(opt: Option<&Path>) -> Result<Option<PathBuf>> {
    let p = match opt {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_TLS_CA).is_file() => PathBuf::from(DEFAULT_TLS_CA),
        None => return Ok(None),
    };
    crate::sys::http::read_ca(&p).context("--tls-ca")?;
    Ok(Some(p))
}

/// The trusted key: `--trusted-key`, else [`DEFAULT_TRUSTED_KEY`] when present.
fn trusted_key(opt: Option<&Path>) -> Result<Option<PathBuf>> {
    match opt {
        Some(p) if !p.is_file() => bail!("--trusted-key {}: no such file", p.display()),
        Some(p) => Ok(Some(p.to_path_buf())),
        None => Ok(Some(PathBuf::from(DEFAULT_TRUSTED_KEY)).filter(|p| p.is_file())),
    }
}

/// Run a `%pre` or `%post --nochroot` script on this machine's root.
fn run_host_script(what: &str, s: &Script, env: &[(&str, &Path)]) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("script");
    std::fs::write(&path, &s.body)?;
    let mut c = Command::new(&s.interpreter);
    c.arg(&path);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .run_get_output()
        .with_context(|| format!("{}: running the {what} script", s.at))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(log) = &s.log {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    }
    crate::sysroot::hostconfig::script_outcome(s, what, out.status, &text)
}

/// Where the acts got to: what to wipe on failure.
#[derive(Debug, Default)]
struct Touched {
    touched: bool,
    partitions: Vec<PathBuf>,
}

/// `slipway install`.
pub fn install(opts: &InstallOptions) -> Result<()> {
    let report_url = opts.report.clone().or_else(cmdline_report_url);
    let result = install_inner(opts, report_url.as_deref());
    match result {
        Ok(Outcome::DryRun) => Ok(()),
        Ok(Outcome::Installed { finish }) => {
            report(report_url.as_deref(), "install-result", None);
            match finish {
                Some(a) => {
                    ui::info(format!("installed; {}", a.as_str()));
                    Command::new("systemctl")
                        .arg(a.as_str())
                        .run()
                        .with_context(|| format!("systemctl {}", a.as_str()))
                }
                None => {
                    ui::info("installed");
                    Ok(())
                }
            }
        }
        Err(e) => {
            report(
                report_url.as_deref(),
                "install-result",
                Some(&format!("{e:#}")),
            );
            Err(e)
        }
    }
}

enum Outcome {
    DryRun,
    Installed { finish: Option<PowerAction> },
}

fn install_inner(opts: &InstallOptions, report_url: Option<&str>) -> Result<Outcome> {
    if !opts.dry_run {
        crate::sys::preflight::require_root("slipway install")?;
    }
    crate::sys::preflight::require_programs(&[
        "lsblk",
        "wipefs",
        "sfdisk",
        "udevadm",
        "mkfs.ext4",
        "mkfs.fat",
        "mmd",
        "mcopy",
        "mount",
        "umount",
        "grub-mkimage",
        "bwrap",
    ])?;
    for p in [Platform::Bios, Platform::Efi] {
        bootloader::grub_lib(p)?;
    }
    let ca = tls_ca(opts.tls_ca.as_deref())?;
    let ks = load_kickstart(&opts.kickstart, ca.as_deref())?;
    for w in &ks.warnings {
        ui::warn(w);
    }
    if opts.dry_run {
        for s in &ks.pre {
            ui::info(format!("{}: %pre script not run (--dry-run)", s.at));
        }
    } else {
        for s in &ks.pre {
            run_host_script("%pre", s, &[])?;
        }
    }
    let key = trusted_key(opts.trusted_key.as_deref())?;
    let disks = disk::gather()?;
    let choice = disk::choose(
        &disks,
        opts.device.as_deref(),
        &disk::WipePolicy::from_kickstart(&ks),
    )?;
    let mut plan = plan::build(&ks, &opts.kickstart, &choice, key, ca)?;
    plan.commit.seed = check_seed(opts)?;
    if opts.dry_run {
        crate::outln!("{}", serde_json::to_string_pretty(&plan)?)?;
        return Ok(Outcome::DryRun);
    }
    ui::info(format!(
        "installing {} ({}) onto {} ({}, {}){}",
        plan.commit.ostree_ref,
        plan.commit.url,
        plan.disk,
        indicatif::HumanBytes(plan.disk_bytes),
        plan.disk_reason,
        if plan.wipe_first {
            "; wiping what it holds"
        } else {
            ""
        }
    ));
    let existing: Vec<PathBuf> = choice
        .facts
        .device
        .children
        .iter()
        .map(|c| PathBuf::from(c.path()))
        .collect();
    let mut touched = Touched::default();
    if !opts.dry_run {
        report(report_url, "install-start", None);
    }
    match act(&ks, &plan, &existing, &mut touched, report_url) {
        Ok(()) => Ok(Outcome::Installed {
            finish: plan.finish,
        }),
        Err(e) if !touched.touched => Err(e),
        Err(e) if opts.preserve_on_error => Err(e.context(format!(
            "installation failed; {} left as it is (--preserve-on-error)",
            plan.disk
        ))),
        Err(e) => {
            ui::warn(format!(
                "installation failed: {e:#}\nwiping the boot structures of {}",
                plan.disk
            ));
            match disk::wipe(Path::new(&plan.disk), &touched.partitions) {
                Ok(()) => Err(e.context(format!(
                    "installation failed; {} wiped (no partition table, no signatures)",
                    plan.disk
                ))),
                Err(w) => Err(e.context(format!(
                    "installation failed, and wiping {} failed too: {w:#}",
                    plan.disk
                ))),
            }
        }
    }
}

/// Everything that writes to the disk.
fn act(
    ks: &Kickstart,
    plan: &InstallPlan,
    existing: &[PathBuf],
    t: &mut Touched,
    report_url: Option<&str>,
) -> Result<()> {
    let dev = Path::new(&plan.disk);
    let nodes = partition_and_format(plan, existing, t)?;
    crate::sys::failpoint::hit("install-after-mkfs")?;

    let work = tempfile::Builder::new()
        .prefix("slipway-install.")
        .tempdir_in(if Path::new("/run").is_dir() {
            "/run"
        } else {
            "/tmp"
        })
        .context("creating the mount point")?;
    let target = work.path().join("sysroot");
    let mut mounts = disk::Mounts::default();
    mounts.mount(&nodes.root, &target)?;
    mounts.mount(&nodes.boot, &target.join("boot"))?;

    let mut settings = GrubSettings {
        boot_search: BootSearch::Uuid(plan.filesystems.boot_uuid.clone()),
        ..Default::default()
    };
    if let Some(t) = ks.bootloader.as_ref().and_then(|b| b.timeout) {
        settings.timeout = t;
    }
    let deployed = deploy_and_configure(ks, plan, &target, &settings, report_url)?;
    for s in ks.post.iter().filter(|s| s.nochroot) {
        run_host_script(
            "%post --nochroot",
            s,
            &[
                ("SLIPWAY_SYSROOT", &target),
                ("SLIPWAY_DEPLOYMENT", &deployed.root),
                ("SLIPWAY_DISK", dev),
            ],
        )?;
    }
    crate::sys::failpoint::hit("install-after-deploy")?;

    install_grub(
        plan,
        &nodes.esp,
        &target.join("boot"),
        &deployed.root,
        work.path(),
        &settings,
    )?;
    rustix::fs::sync();
    mounts.unmount_all()?;
    Ok(())
}

/// The partition nodes the installer formats and mounts.
struct Nodes {
    esp: PathBuf,
    boot: PathBuf,
    root: PathBuf,
}

/// The planned partition of `role`: its index in the plan.
fn part_index(plan: &InstallPlan, role: disk::Role) -> Result<usize> {
    plan.partitions
        .iter()
        .position(|p| p.role == role)
        .ok_or_else(|| anyhow!("no {role:?} partition in the plan"))
}

/// Wipe the disk first if the plan says so, write the table, find the partition nodes and
/// make the file systems with the planned UUIDs; from here on `t` knows what to wipe.
fn partition_and_format(
    plan: &InstallPlan,
    existing: &[PathBuf],
    t: &mut Touched,
) -> Result<Nodes> {
    let dev = Path::new(&plan.disk);
    t.touched = true;
    if plan.wipe_first {
        t.partitions = existing.to_vec();
        disk::wipe(dev, existing).context("wiping the disk first (clearpart)")?;
    }
    sysdisk::write_table(dev, sysdisk::Medium::BlockDevice, &plan.partitions)?;
    let nodes = disk::partition_nodes(dev, &plan.partitions)?;
    t.partitions = nodes.clone();
    let node = |role| part_index(plan, role).map(|i| nodes[i].clone());
    let nodes = Nodes {
        esp: node(disk::Role::Esp)?,
        boot: node(disk::Role::Boot)?,
        root: node(disk::Role::Root)?,
    };
    let fs = &plan.filesystems;
    let on = sysdisk::Place::Node;
    sysdisk::mkfs_esp(on(&nodes.esp), bootloader::ESP_LABEL, Some(&fs.esp_serial))?;
    let (boot, root) = (bootloader::BOOT_LABEL, bootloader::ROOT_LABEL);
    sysdisk::mkfs_ext4(on(&nodes.boot), boot, Some(&fs.boot_uuid), None)?;
    sysdisk::mkfs_ext4(on(&nodes.root), root, Some(&fs.root_uuid), None)?;
    Ok(nodes)
}

/// Pull and deploy the planned commit into the mounted `target`, then its fstab, the
/// kickstart's host configuration and its chrooted `%post` scripts.
fn deploy_and_configure(
    ks: &Kickstart,
    plan: &InstallPlan,
    target: &Path,
    settings: &GrubSettings,
    report_url: Option<&str>,
) -> Result<deploy::Deployed> {
    let c = &plan.commit;
    ui::info(format!("pulling {} from {}", c.ostree_ref, c.url));
    let deployed = deploy::deploy_new(
        &DeployRequest {
            sysroot: target,
            osname: &c.osname,
            source: &c.url,
            ostree_ref: &c.ostree_ref,
            kernel_args: plan.kernel_args.clone(),
            remote: Some(Remote {
                name: c.remote.clone(),
                url: c.url.clone(),
                gpg_verify: c.gpg_verify,
                // The key goes into the sysroot repository's keyring instead (`gpg_key`).
                gpg_key: None,
                tls_ca: c.tls_ca.clone(),
            }),
            gpg_verify: c.gpg_verify,
            gpg_key: c.trusted_key.as_deref(),
            tls_ca: c.tls_ca.as_deref(),
            seed: c.seed.as_ref(),
            on_seeded: Some(&|| report(report_url, "seeded", None)),
            on_pulled: Some(&|| report(report_url, "pulled", None)),
        },
        settings,
    )?;
    ui::info(format!(
        "deployed {} ({})",
        deployed.commit,
        deployed.version.as_deref().unwrap_or("-")
    ));
    report(report_url, "deployed", None);
    deploy::add_fstab_lines(&deployed.root, &plan.fstab)?;
    crate::sysroot::hostconfig::apply(ks, &deployed)?;
    crate::sysroot::hostconfig::run_post(ks, &deployed)?;
    Ok(deployed)
}

/// GRUB for both firmwares: its modules in `bootfs`, the BIOS core image in the BIOS boot
/// partition, and on the ESP the deployed commit's boot files (its signed shim and GRUB, or
/// a GRUB image built here when it has none), each finding /boot by its UUID.
fn install_grub(
    plan: &InstallPlan,
    esp: &Path,
    bootfs: &Path,
    deployed_root: &Path,
    work: &Path,
    settings: &GrubSettings,
) -> Result<()> {
    ui::info("installing GRUB for BIOS and UEFI");
    for p in [Platform::Bios, Platform::Efi] {
        bootloader::install_modules(p, bootfs)?;
    }
    let core = work.join("core.img");
    bootloader::mkimage(Platform::Bios, &core, &settings.boot_search)?;
    let bb = &plan.partitions[part_index(plan, disk::Role::BiosBoot)?];
    bootloader::install_bios(Path::new(&plan.disk), &core, bb.start, bb.sectors)?;
    let files = esp::boot_files(deployed_root, &settings.boot_search, work)?;
    ui::info(if files.signed {
        "EFI system partition: the commit's signed shim and GRUB (Secure Boot)"
    } else {
        "EFI system partition: GRUB built here (the commit has no signed chain)"
    });
    esp::write_new(sysdisk::Place::Node(esp), &files, work)
}

/// `slipway.report=URL` on the kernel command line.
fn cmdline_report_url() -> Option<String> {
    let c = std::fs::read_to_string("/proc/cmdline").ok()?;
    c.split_whitespace()
        .find_map(|w| w.strip_prefix("slipway.report="))
        .map(String::from)
}

/// The hardware address of the interface with the default route (else the first one that is
/// not loopback).
fn mac() -> Option<String> {
    let read = |i: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{i}/address"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s != "00:00:00:00:00:00")
    };
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    for l in route.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 2
            && f[1] == "00000000"
            && let Some(m) = read(f[0])
        {
            return Some(m);
        }
    }
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.iter().find_map(|n| read(n))
}

/// The report's body.
pub fn report_body(
    mac: Option<&str>,
    uuid: Option<&str>,
    step: &str,
    error: Option<&str>,
) -> String {
    let mut v = serde_json::json!({
        "mac": mac,
        "uuid": uuid,
        "step": step,
        "result": if error.is_some() { "failed" } else { "ok" },
    });
    if let Some(e) = error {
        v["error"] = serde_json::Value::String(e.to_string());
    }
    v.to_string()
}

/// POST a step (`install-start`, `deployed`, `install-result`) with its result; a report
/// that cannot be sent is a warning, never the installer's failure.
fn report(url: Option<&str>, step: &str, error: Option<&str>) {
    let Some(url) = url else { return };
    let uuid = std::fs::read_to_string("/sys/class/dmi/id/product_uuid")
        .ok()
        .map(|s| s.trim().to_ascii_lowercase());
    let body = report_body(mac().as_deref(), uuid.as_deref(), step, error);
    match crate::sys::http::agent(std::time::Duration::from_secs(60), 3)
        .post(url)
        .header("content-type", "application/json")
        .send(body.as_bytes())
    {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => ui::warn(format!("reporting to {url}: HTTP {}", r.status())),
        Err(e) => ui::warn(format!("reporting to {url}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_checked_before_any_disk() {
        let d = tempfile::tempdir().unwrap();
        let opts = |seed: Option<&Path>, image: Option<&Path>| InstallOptions {
            seed: seed.map(Path::to_path_buf),
            seed_image: image.map(Path::to_path_buf),
            ..Default::default()
        };
        assert_eq!(check_seed(&opts(None, None)).unwrap(), None);
        let e = format!("{:#}", check_seed(&opts(Some(d.path()), None)).unwrap_err());
        assert!(e.contains("no /usr directory"), "{e}");
        std::fs::create_dir(d.path().join("usr")).unwrap();
        assert_eq!(
            check_seed(&opts(Some(d.path()), None)).unwrap(),
            Some(Seed::Tree(d.path().to_path_buf()))
        );
        let e = format!(
            "{:#}",
            check_seed(&opts(Some(d.path()), Some(d.path()))).unwrap_err()
        );
        assert!(e.contains("give one"), "{e}");
        let not = d.path().join("not.img");
        std::fs::write(&not, b"070701...").unwrap();
        let e = format!("{:#}", check_seed(&opts(None, Some(&not))).unwrap_err());
        assert!(
            e.contains(&format!("--seed-image {}: not a squashfs", not.display())),
            "{e}"
        );
        let missing = d.path().join("missing.img");
        let e = format!("{:#}", check_seed(&opts(None, Some(&missing))).unwrap_err());
        assert!(e.contains("missing.img"), "{e}");
        let img = d.path().join("seed.img");
        crate::sys::cmd::CommandRunExt::run(
            Command::new("mksquashfs")
                .arg(d.path().join("usr"))
                .arg(&img)
                .args(["-quiet", "-no-progress"]),
        )
        .unwrap();
        assert_eq!(
            check_seed(&opts(None, Some(&img))).unwrap(),
            Some(Seed::Image(img.clone()))
        );
    }

    #[test]
    fn fetched_kickstarts_refuse_include_at_its_line() {
        let e = format!(
            "{:#}",
            refuse_includes("text\n\n  %include /tmp/part.ks\n", "http://h/ks").unwrap_err()
        );
        assert!(
            e.starts_with("http://h/ks:3: %include is not supported"),
            "{e}"
        );
        refuse_includes("text\n# %include x\n", "http://h/ks").unwrap();
    }

    #[test]
    fn kickstart_errors_name_their_line_before_any_disk() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ks.cfg");
        std::fs::write(
            &p,
            "ostreesetup --osname=debian --url=http://h/repo --ref=r --nogpg\nzerombr\npart / --grow\npart /var --size=1000\n",
        )
        .unwrap();
        let e = format!(
            "{:#}",
            load_kickstart(p.to_str().unwrap(), None).unwrap_err()
        );
        assert!(e.contains(&format!("{}:4: part /var", p.display())), "{e}");
        std::fs::write(&p, "part / --grow\nlogvol / --name=x\n").unwrap();
        let e = format!(
            "{:#}",
            load_kickstart(p.to_str().unwrap(), None).unwrap_err()
        );
        assert!(e.contains(&format!("{}:2:", p.display())), "{e}");
        // A CA file that is none: refused before anything is fetched.
        let e = format!("{:#}", tls_ca(Some(&p)).unwrap_err());
        assert!(e.contains(&format!("{}: ", p.display())), "{e}");
        // A file's %include resolves relative to it.
        std::fs::write(d.path().join("storage.ks"), "autopart\n").unwrap();
        std::fs::write(
            &p,
            "ostreesetup --osname=debian --url=http://h/repo --ref=r --nogpg\n%include storage.ks\n",
        )
        .unwrap();
        let ks = load_kickstart(p.to_str().unwrap(), None).unwrap();
        assert!(ks.autopart.is_some());
    }

    #[test]
    fn plan_needs_a_key_unless_nogpg() {
        use crate::kickstart::parse_str;
        let facts = disk::DiskFacts {
            device: disk::parse_lsblk(
                r#"{"blockdevices":[{"name":"vdb","path":"/dev/vdb","size":8589934592,"type":"disk","ro":false,"rm":false}]}"#,
            )
            .unwrap()
            .remove(0),
            signatures: vec![],
            probe_error: None,
        };
        let choice = disk::choose(&[facts], None, &Default::default()).unwrap();
        let ks = parse_str(
            "ostreesetup --osname=debian --url=http://h/repo --ref=r\nautopart\n",
            "t.ks",
        )
        .unwrap();
        let e = format!(
            "{:#}",
            plan::build(&ks, "t.ks", &choice, None, None).unwrap_err()
        );
        assert!(e.starts_with("t.ks:1: ostreesetup without --nogpg"), "{e}");
        let p = plan::build(&ks, "t.ks", &choice, Some("/k.gpg".into()), None).unwrap();
        assert!(p.commit.gpg_verify);
        assert_eq!(p.disk, "/dev/vdb");
        assert_eq!(
            p.fstab,
            [format!(
                "UUID={} /boot ext4 defaults 0 2",
                p.filesystems.boot_uuid
            )]
        );
        assert!(
            p.kernel_args
                .contains(&format!("root=UUID={}", p.filesystems.root_uuid))
        );
        let ks = parse_str(
            "ostreesetup --osname=debian --url=http://h/repo --ref=r\npart / --grow --ondisk=sda\n",
            "t.ks",
        )
        .unwrap();
        let e = format!(
            "{:#}",
            plan::build(&ks, "t.ks", &choice, Some("/k".into()), None).unwrap_err()
        );
        assert!(e.starts_with("t.ks:2: part / --ondisk=sda"), "{e}");
    }

    #[test]
    fn report_bodies() {
        let ok: serde_json::Value = serde_json::from_str(&report_body(
            Some("52:54:00:12:34:56"),
            None,
            "install-result",
            None,
        ))
        .unwrap();
        assert_eq!(ok["step"], "install-result");
        assert_eq!(ok["result"], "ok");
        assert!(ok.get("error").is_none());
        let bad: serde_json::Value = serde_json::from_str(&report_body(
            Some("m"),
            Some("u"),
            "install-result",
            Some("boom"),
        ))
        .unwrap();
        assert_eq!(bad["result"], "failed");
        assert_eq!(bad["error"], "boom");
        assert_eq!(bad["uuid"], "u");
    }

    /// A loop device over a sparse file, detached when dropped.
    struct Loop {
        dev: PathBuf,
        file: PathBuf,
    }

    impl Loop {
        fn new(dir: &Path) -> Option<Loop> {
            if !nix::unistd::geteuid().is_root() {
                eprintln!("not root: skipped");
                return None;
            }
            let file = dir.join("disk.raw");
            std::fs::File::create(&file)
                .unwrap()
                .set_len(8 << 30)
                .unwrap();
            let dev = Command::new("losetup")
                .args(["--find", "--show"])
                .arg(&file)
                .run_get_string()
                .map_err(|e| eprintln!("no loop device ({e:#}): skipped"))
                .ok()?;
            Some(Loop {
                dev: PathBuf::from(dev.trim()),
                file,
            })
        }
    }

    impl Drop for Loop {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.dev).run();
        }
    }

    const KS: &str = "ostreesetup --osname=debian --url=http://127.0.0.1:9/repo --ref=r --nogpg\n\
                      zerombr\nclearpart --all\nautopart\n";

    /// The acts on a loop device over a file: the partition table is written, the partition
    /// nodes never appear (no partition scan on this loop device), so the install fails after
    /// touching the disk: it is wiped, unless --preserve-on-error. A failure before the disk
    /// is touched (%pre) leaves it as it was.
    #[test]
    fn failures_after_the_disk_is_touched_wipe_it_and_before_leave_it() {
        let d = tempfile::tempdir().unwrap();
        let Some(l) = Loop::new(d.path()) else { return };
        let ks = d.path().join("ks.cfg");
        std::fs::write(&ks, KS).unwrap();
        let opts = InstallOptions {
            kickstart: ks.display().to_string(),
            device: Some(l.dev.display().to_string()),
            ..Default::default()
        };
        let has_table = || Command::new("sfdisk").arg("-d").arg(&l.file).run().is_ok();

        let e = format!("{:#}", install_inner(&opts, None).err().unwrap());
        assert!(
            e.contains("wiped (no partition table, no signatures)"),
            "{e}"
        );
        assert!(e.contains("did not appear"), "{e}");
        assert!(!has_table());
        assert_eq!(disk::signatures(&l.file).unwrap(), vec![]);

        let keep = InstallOptions {
            preserve_on_error: true,
            ..opts.clone()
        };
        let e = format!("{:#}", install_inner(&keep, None).err().unwrap());
        assert!(e.contains("left as it is (--preserve-on-error)"), "{e}");
        assert!(has_table());

        // %pre fails before planning: the disk keeps its table.
        std::fs::write(&ks, format!("{KS}%pre --erroronfail\nexit 4\n%end\n")).unwrap();
        let e = format!("{:#}", install_inner(&opts, None).err().unwrap());
        assert!(e.contains("%pre script failed"), "{e}");
        assert!(has_table());
        // Without clearpart the disk holding data is refused, before anything is written.
        std::fs::write(
            &ks,
            "ostreesetup --osname=debian --url=http://127.0.0.1:9/repo --ref=r --nogpg\nautopart\n",
        )
        .unwrap();
        let e = format!("{:#}", install_inner(&opts, None).err().unwrap());
        assert!(e.contains("holds data"), "{e}");
        assert!(has_table());
    }
}
