//! `slipway image`: a commit becomes a disk image (raw, qcow2) or a Vagrant box, bootable
//! under BIOS and UEFI.
//!
//! Plan (everything checked before any image file exists) -> stage (libostree deployment in
//! a work directory, kickstart host configuration, Vagrant user, boot loader menu) -> disk
//! (partition table, file systems populated from the staged trees, GRUB for each firmware, all
//! written into a temporary file beside OUT without loop devices or mounts) -> convert
//! (qcow2, box) -> rename to OUT.

pub mod disk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use fn_error_context::context;
use ostree::gio;

use crate::kickstart::{self, Kickstart};
use crate::sys::cmd::CommandRunExt;
use crate::sys::lock::{self, Wait};
use crate::sys::ui::{self, Progress};
use crate::sysroot::bootloader::{self, GrubSettings, Platform};
use crate::sysroot::deploy::{self, DeployRequest, Remote};
use crate::sysroot::disk as sysdisk;
use crate::sysroot::esp;
pub use disk::Firmware;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Raw,
    Qcow2,
    VagrantLibvirt,
}

/// What `slipway image` is asked to do.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    pub repo: PathBuf,
    pub ostree_ref: String,
    pub format: Format,
    pub output: PathBuf,
    pub firmware: Firmware,
    pub size: Option<u64>,
    pub kickstart: Option<PathBuf>,
    pub remote_url: Option<String>,
    /// The public key that verifies the commit's signature: the remote is written with
    /// `gpg-verify=true` and this key (required when the commit is signed).
    pub remote_gpg_key: Option<PathBuf>,
    /// The CA file (PEM) an `https://` remote's server is checked against: put into the
    /// image and named by the remote's `tls-ca-path`.
    pub remote_tls_ca: Option<PathBuf>,
    pub force: bool,
    pub osname: String,
    pub cachedir: PathBuf,
    /// Compress qcow2 clusters (default for Vagrant boxes).
    pub compress: Option<bool>,
}

/// The summary printed at the end (and with `--json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSummary {
    pub schema: crate::sys::ui::Schema,
    pub output: PathBuf,
    pub format: Format,
    pub firmware: Firmware,
    pub commit: String,
    pub version: Option<String>,
    pub osname: String,
    pub disk_size: u64,
    pub file_size: u64,
    pub kernel_args: Vec<String>,
    pub phases: BTreeMap<String, f64>,
}

/// Checked inputs.
struct Plan {
    commit: String,
    ks: Option<Kickstart>,
    settings: GrubSettings,
    kernel_args: Vec<String>,
}

/// A signed commit gets a remote that verifies signatures, with the key in place: the key
/// must be given and must verify this commit; a key for an unsigned commit is refused (the
/// host could not upgrade to unsigned commits).
fn check_signature(repo: &ostree::Repo, commit: &str, opts: &ImageOptions) -> Result<()> {
    let signed = repo
        .read_commit_detached_metadata(commit, gio::Cancellable::NONE)
        .with_context(|| format!("reading the signatures of commit {commit}"))?
        .is_some_and(|m| {
            ostree::glib::VariantDict::new(Some(&m))
                .lookup_value("ostree.gpgsigs", None)
                .is_some()
        });
    match (&opts.remote_url, &opts.remote_gpg_key, signed) {
        (Some(_), None, true) => bail!(
            "commit {commit} is signed: give the public key that verifies it with \
             --trusted-key FILE, so the host's remote checks the signatures of its upgrades"
        ),
        (None, Some(_), _) => bail!("--trusted-key needs --remote-url"),
        (Some(_), Some(key), false) => bail!(
            "--trusted-key {}: commit {commit} is not signed, so the host could not \
             upgrade with signature checks on",
            key.display()
        ),
        (Some(_), Some(key), true) => {
            let result = repo
                .verify_commit_ext(
                    commit,
                    None::<&gio::File>,
                    Some(&gio::File::for_path(key)),
                    gio::Cancellable::NONE,
                )
                .with_context(|| {
                    format!(
                        "verifying commit {commit} with --trusted-key {}",
                        key.display()
                    )
                })?;
            if result.count_valid() == 0 {
                bail!(
                    "--trusted-key {}: no signature of commit {commit} is valid with that key",
                    key.display()
                );
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Every check that can be made before any file is written: the host, the output path, the
/// commit, the kickstart.
#[context("Checking the image request")]
fn plan(opts: &ImageOptions) -> Result<Plan> {
    crate::sys::preflight::require_root("slipway image")?;
    let mut tools = vec!["sfdisk", "mke2fs", "grub-mkimage", "bwrap"];
    if opts.firmware.uefi() {
        tools.extend(["mkfs.fat", "mcopy", "mmd"]);
    }
    if opts.format != Format::Raw {
        tools.extend(["qemu-img", "tar"]);
    }
    crate::sys::preflight::require_programs(&tools)?;
    for p in platforms(opts.firmware) {
        bootloader::grub_lib(p)?;
    }
    if opts.output.exists() && !opts.force {
        bail!(
            "{} exists; use --force to replace it",
            opts.output.display()
        );
    }
    if opts.output.is_dir() {
        bail!("{} is a directory", opts.output.display());
    }
    let parent = opts
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!("{}: directory does not exist", parent.display());
    }
    deploy::validate_osname(&opts.osname)?;
    let repo = crate::repo::open(&opts.repo)?;
    let commit = crate::repo::resolve_required(&repo, &opts.ostree_ref)?;
    let linux = crate::repo::commit_meta_string(&repo, &commit, "ostree.linux")?;
    if linux.is_none() {
        bail!(
            "commit {commit} ({}) has no kernel (no ostree.linux metadata): it cannot boot",
            opts.ostree_ref
        );
    }
    check_signature(&repo, &commit, opts)?;
    let ks = match &opts.kickstart {
        Some(p) => {
            let ks = kickstart::parse_file(p)?;
            ks.validate_for_image()?;
            crate::sysroot::hostconfig::check_against_commit(&ks, &repo, &commit)?;
            for w in ks.image_warnings() {
                ui::warn(w);
            }
            Some(ks)
        }
        None => None,
    };
    let mut settings = GrubSettings::default();
    let mut kernel_args = deploy::default_kernel_args();
    if let Some(b) = ks.as_ref().and_then(|k| k.bootloader.as_ref()) {
        if let Some(t) = b.timeout {
            settings.timeout = t;
        }
        kernel_args = deploy::merge_kernel_args(kernel_args, &b.append);
    }
    if let Some(u) = &opts.remote_url
        && !(u.starts_with("http://") || u.starts_with("https://") || u.starts_with("file://"))
    {
        bail!("--remote-url `{u}` must be an http, https or file URL");
    }
    if let Some(ca) = &opts.remote_tls_ca {
        if !opts
            .remote_url
            .as_ref()
            .is_some_and(|u| u.starts_with("https://"))
        {
            bail!("--tls-ca {}: needs an https:// --remote-url", ca.display());
        }
        crate::sys::http::read_ca(ca).context("--tls-ca")?;
    }
    Ok(Plan {
        commit,
        ks,
        settings,
        kernel_args,
    })
}

/// Temporary files beside OUT: `.NAME.XXXX.slipway-partial`, locked while written.
struct Partial {
    file: tempfile::NamedTempFile,
    _lock: lock::LockGuard,
}

fn partial_beside(out: &Path) -> Result<Partial> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .context("output has no file name")?
        .to_string_lossy();
    // Leftovers of killed builds: nobody holds their lock.
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!(".{name}."))
                && n.ends_with(".slipway-partial")
                && lock::is_free(&e.path())
            {
                ui::info(format!(
                    "removing the leftover of an interrupted build: {}",
                    e.path().display()
                ));
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".slipway-partial")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let guard = lock::exclusive(file.path(), "the image being written", Wait::NoWait)?;
    Ok(Partial { file, _lock: guard })
}

/// Build the image: plan, stage, size, disk, convert, rename.
pub fn build_image(opts: &ImageOptions) -> Result<ImageSummary> {
    let progress = Progress::new();
    let phase = progress.phase("plan", "checking the inputs", None);
    let plan = plan(opts)?;
    phase.finish(&format!("commit {}", &plan.commit[..12]));

    std::fs::create_dir_all(&opts.cachedir)
        .with_context(|| format!("creating {}", opts.cachedir.display()))?;
    let work = crate::sys::workdir::create(&opts.cachedir, "image-")?;
    let staged = stage(opts, &plan, work.path(), &progress)?;
    let (size, layout) = disk_layout(opts, &plan, &staged)?;
    let out_partial = partial_beside(&opts.output)?;
    let raw: PathBuf = if opts.format == Format::Raw {
        out_partial.file.path().to_path_buf()
    } else {
        work.path().join("disk.raw")
    };
    write_disk(&raw, size, &layout, &staged, work.path(), &progress)?;
    convert(
        opts,
        &raw,
        size,
        out_partial.file.path(),
        work.path(),
        &progress,
    )?;

    crate::sys::failpoint::hit("image-before-rename")?;
    let Partial { file, _lock } = out_partial;
    use std::os::unix::fs::PermissionsExt;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .context("setting the image's mode")?;
    file.persist(&opts.output)
        .map_err(|e| anyhow!("renaming to {}: {}", opts.output.display(), e.error))?;
    drop(_lock);
    drop(work);

    let mut phases = BTreeMap::new();
    for (n, d) in progress.timings() {
        *phases.entry(n).or_default() += d.as_secs_f64();
    }
    let summary = ImageSummary {
        schema: crate::sys::ui::Schema,
        output: opts.output.clone(),
        format: opts.format,
        firmware: opts.firmware,
        commit: plan.commit,
        version: staged.version,
        osname: opts.osname.clone(),
        disk_size: size,
        file_size: std::fs::metadata(&opts.output)
            .map(|m| m.len())
            .unwrap_or(0),
        kernel_args: plan.kernel_args,
        phases,
    };
    ui::info(format!(
        "wrote {} ({:?}, {:?} firmware, {} disk, {} file): commit {} version {}",
        summary.output.display(),
        summary.format,
        summary.firmware,
        indicatif::HumanBytes(summary.disk_size),
        indicatif::HumanBytes(summary.file_size),
        summary.commit,
        summary.version.as_deref().unwrap_or("-")
    ));
    Ok(summary)
}

/// The deployment staged in the work directory: the root file system's tree and the boot
/// file system's tree, side by side.
struct Staged {
    sysroot: PathBuf,
    bootfs: PathBuf,
    version: Option<String>,
    /// The ESP's boot files, from the deployed commit (UEFI images).
    esp: Option<esp::BootFiles>,
}

/// Deploy the commit into `work/sysroot` with libostree, apply the host configuration, and
/// move /boot aside with the boot loader's modules in it.
#[context("Staging the deployment of {}", plan.commit)]
fn stage(opts: &ImageOptions, plan: &Plan, work: &Path, progress: &Progress) -> Result<Staged> {
    let sysroot = work.join("sysroot");
    let phase = progress.phase("deploy", "pulling and deploying the commit", None);
    let remote = opts.remote_url.as_ref().map(|u| Remote {
        name: opts.osname.clone(),
        url: u.clone(),
        gpg_verify: opts.remote_gpg_key.is_some(),
        gpg_key: opts.remote_gpg_key.clone(),
        tls_ca: opts.remote_tls_ca.clone(),
    });
    let deployed = deploy::deploy_new(
        &DeployRequest {
            sysroot: &sysroot,
            osname: &opts.osname,
            source: &opts.repo.display().to_string(),
            ostree_ref: &opts.ostree_ref,
            kernel_args: plan.kernel_args.clone(),
            remote,
            gpg_verify: false,
            gpg_key: None,
            tls_ca: None,
            seed: None,
            on_seeded: None,
            on_pulled: None,
        },
        &plan.settings,
    )?;
    if deployed.commit != plan.commit {
        bail!(
            "the ref moved while the image was built ({} -> {})",
            plan.commit,
            deployed.commit
        );
    }
    deploy::add_fstab_lines(
        &deployed.root,
        &[format!(
            "LABEL={} /boot ext4 defaults 0 2",
            bootloader::BOOT_LABEL
        )],
    )?;
    phase.finish(&format!(
        "deployed {}",
        deployed.version.as_deref().unwrap_or(&deployed.commit)
    ));

    let phase = progress.phase("configure", "host configuration", None);
    if let Some(ks) = &plan.ks {
        crate::sysroot::hostconfig::apply(ks, &deployed)?;
        crate::sysroot::hostconfig::run_post(ks, &deployed)?;
    }
    if opts.format == Format::VagrantLibvirt {
        crate::sysroot::hostconfig::vagrant_user(&deployed)?;
        crate::sysroot::hostconfig::check_sudoers(&deployed)?;
    }
    phase.finish("done");

    // The boot file system gets what libostree put in /boot; the root's /boot stays an empty
    // mount point.
    let bootfs = work.join("bootfs");
    std::fs::rename(sysroot.join("boot"), &bootfs).context("moving /boot aside")?;
    std::fs::create_dir(sysroot.join("boot"))
        .with_context(|| format!("creating {}/boot", sysroot.display()))?;
    let mut boot_files = None;
    for p in platforms(opts.firmware) {
        bootloader::install_modules(p, &bootfs)?;
        if p == Platform::Efi {
            boot_files = Some(esp::boot_files(
                &deployed.root,
                &bootloader::BootSearch::Label,
                work,
            )?);
        }
    }
    Ok(Staged {
        sysroot,
        bootfs,
        version: deployed.version,
        esp: boot_files,
    })
}

/// The boot loader platforms a firmware choice needs.
fn platforms(firmware: Firmware) -> Vec<Platform> {
    let mut v = Vec::new();
    if firmware.bios() {
        v.push(Platform::Bios);
    }
    if firmware.uefi() {
        v.push(Platform::Efi);
    }
    v
}

/// The disk size and partition layout: everything is known now, before the image file
/// exists.
fn disk_layout(opts: &ImageOptions, plan: &Plan, staged: &Staged) -> Result<(u64, disk::Layout)> {
    let root_need = disk::tree_usage(&staged.sysroot)?;
    let boot_need = disk::tree_usage(&staged.bootfs)?;
    let boot_mib = (boot_need * 3 / disk::MIB + 1).max(disk::BOOT_MIB);
    let overhead = disk::Layout::overhead(opts.firmware, boot_mib);
    // ext4 metadata and journal, and room to breathe.
    let min = overhead + root_need + root_need / 8 + 256 * disk::MIB;
    let size = match opts.size {
        Some(s) if s < min => bail!(
            "--size {} is too small: commit {} needs at least {} (root file system {}, boot {})",
            indicatif::HumanBytes(s),
            &plan.commit[..12],
            indicatif::HumanBytes(min),
            indicatif::HumanBytes(root_need),
            indicatif::HumanBytes(boot_need)
        ),
        Some(s) => s / disk::MIB * disk::MIB,
        None => (min.div_ceil(1 << 30) << 30).max(8 << 30),
    };
    Ok((size, disk::Layout::new(size, opts.firmware, boot_mib)?))
}

/// Partition table, file systems populated from the staged trees, GRUB for each firmware,
/// all written into `raw` without loop devices or mounts.
#[context("Writing the disk {}", raw.display())]
fn write_disk(
    raw: &Path,
    size: u64,
    layout: &disk::Layout,
    staged: &Staged,
    work: &Path,
    progress: &Progress,
) -> Result<()> {
    let phase = progress.phase("disk", "partitions, file systems, boot loader", None);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(raw)
        .with_context(|| format!("creating {}", raw.display()))?;
    f.set_len(size).context("sizing the image")?;
    drop(f);
    let parts: Vec<disk::Partition> = layout.partitions().into_iter().cloned().collect();
    sysdisk::write_table(raw, sysdisk::Medium::ImageFile, &parts)?;
    let at = |part| sysdisk::Place::InImage { image: raw, part };
    phase.message("boot file system");
    let label = bootloader::BOOT_LABEL;
    sysdisk::mkfs_ext4(at(&layout.boot), label, None, Some(&staged.bootfs))?;
    phase.message("root file system");
    let label = bootloader::ROOT_LABEL;
    sysdisk::mkfs_ext4(at(&layout.root), label, None, Some(&staged.sysroot))?;
    if let Some(bb) = &layout.bios_boot {
        let core = work.join("core.img");
        bootloader::mkimage(Platform::Bios, &core, &bootloader::BootSearch::Label)?;
        bootloader::install_bios(raw, &core, bb.start, bb.sectors)?;
    }
    if let (Some(part), Some(files)) = (&layout.esp, &staged.esp) {
        phase.message(if files.signed {
            "EFI system partition (the commit's signed shim and GRUB)"
        } else {
            "EFI system partition (GRUB built here: the commit has no signed chain)"
        });
        sysdisk::mkfs_esp(at(part), bootloader::ESP_LABEL, None)?;
        esp::write_new(at(part), files, work)?;
    }
    phase.finish(&format!("{} disk", indicatif::HumanBytes(size)));
    Ok(())
}

/// qcow2 or a Vagrant box from the raw disk, written to `out`; nothing for raw images.
#[context("Converting to {:?}", opts.format)]
fn convert(
    opts: &ImageOptions,
    raw: &Path,
    size: u64,
    out: &Path,
    work: &Path,
    progress: &Progress,
) -> Result<()> {
    let compress = opts
        .compress
        .unwrap_or(opts.format == Format::VagrantLibvirt);
    match opts.format {
        Format::Raw => {}
        Format::Qcow2 => {
            let phase = progress.phase("convert", "qcow2", None);
            qcow2(raw, out, compress)?;
            phase.finish("done");
        }
        Format::VagrantLibvirt => {
            let phase = progress.phase("convert", "Vagrant box (libvirt)", None);
            let boxdir = work.join("box");
            std::fs::create_dir_all(&boxdir)
                .with_context(|| format!("creating {}", boxdir.display()))?;
            qcow2(raw, &boxdir.join("box.img"), compress)?;
            std::fs::write(
                boxdir.join("metadata.json"),
                serde_json::to_string_pretty(&serde_json::json!({
                    "provider": "libvirt",
                    "format": "qcow2",
                    "virtual_size": size.div_ceil(1 << 30),
                }))? + "\n",
            )
            .context("writing the box metadata")?;
            std::fs::write(boxdir.join("Vagrantfile"), BOX_VAGRANTFILE)
                .context("writing the box Vagrantfile")?;
            Command::new("tar")
                .arg("-cf")
                .arg(out)
                .arg("-C")
                .arg(&boxdir)
                .args(["metadata.json", "Vagrantfile", "box.img"])
                .run()
                .context("writing the box")?;
            phase.finish("done");
        }
    }
    Ok(())
}

fn qcow2(raw: &Path, out: &Path, compress: bool) -> Result<()> {
    let convert = |extra: &[&str]| {
        let mut c = Command::new("qemu-img");
        // Parallel, out-of-order writes: the output is a new file.
        c.args(["convert", "-O", "qcow2", "-m", "8", "-W"])
            .args(extra);
        c.arg(raw).arg(out).run()
    };
    if !compress {
        return convert(&[]).context("converting to qcow2");
    }
    // zstd-compressed clusters (QEMU 5.1 and later) take a seventh of zlib's time here
    // (4.4 s against 30 s for the default host) and are smaller; fall back to zlib where
    // qemu-img lacks zstd.
    convert(&["-c", "-o", "compression_type=zstd"])
        .or_else(|e| {
            ui::warn(format!(
                "qcow2 with zstd compression failed ({e:#}); using zlib"
            ));
            convert(&["-c"])
        })
        .context("converting to compressed qcow2")
}

/// The Vagrantfile inside a box: libvirt defaults that suit an OSTree host.
pub const BOX_VAGRANTFILE: &str = r#"# Defaults for boxes built by `slipway image --format vagrant-libvirt`.
Vagrant.configure("2") do |config|
  # An OSTree host has no rsync or NFS client for synced folders.
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |libvirt|
    # kvm where nested virtualisation works; qemu (software emulation) elsewhere.
    libvirt.driver = ENV.fetch("SLIPWAY_LIBVIRT_DRIVER", "kvm")
    libvirt.memory = 2048
    libvirt.cpus = 2
    libvirt.machine_type = "q35"
  end
end
"#;
