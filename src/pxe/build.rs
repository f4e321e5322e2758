//! `slipway pxe build`: what a network boot needs, from the commit itself and Debian's
//! packages, in one directory that `slipway pxe serve` serves over TFTP and HTTP.
//!
//! # The installer environment
//!
//! The installer runs from the commit's own userspace, booted from RAM (a "live root"):
//!
//! - `vmlinuz` and `initramfs.img` are the commit's own kernel and dracut initramfs
//!   (`/usr/lib/modules/KVER/`), byte for byte.
//! - `rootfs.img` is a second initrd: an uncompressed cpio archive that the kernel unpacks
//!   after the commit's initramfs (boot loaders concatenate initrds, and the kernel reads a
//!   series of cpio archives, compressed or not). It holds the live root in two squashfs
//!   images: `/slipway/root.squashfs`, a checkout of the commit exactly as it is (`/usr/etc`
//!   and the kernel included), and `/slipway/live.squashfs`, the live layer over it (the
//!   commit's `/usr/etc` as `/etc`, the slipway that ran the build,
//!   `slipway-installer.service`, the default kickstart and the trusted key); and three files
//!   for the initramfs: `slipway-live-root.service` mounts both and a tmpfs, and a
//!   `sysroot.mount` in `/etc/systemd/system` (which wins over the unit `root=tmpfs` makes
//!   systemd-fstab-generator write) puts them together as an overlay at `/sysroot`.
//! - The commit's tree stays mounted at `/run/slipway/lower` ([`LIVE_SEED_DIR`]), its image
//!   kept as a file in a tmpfs at `/run/slipway/images`, and the installer unpacks the image
//!   beside the target's repository and adopts its files before it pulls (`slipway install
//!   --seed-image`, see `sysroot::deploy::Seed`): the pull then finds every object but the
//!   signed commit already there, so the host crosses the network once (as coreos-installer's
//!   osmet does with a live ISO's image). The signature still decides: the pulled commit
//!   names its root tree by checksum, and the imported objects are addressed by theirs.
//!   dracut accepts `root=tmpfs`; the commit's initramfs already has systemd, mount and the
//!   loop, squashfs and overlay modules, which the plan checks with `lsinitrd`.
//! - The live root boots to `multi-user.target` with the health gate and the container
//!   workloads masked; `slipway-installer.service` runs `slipway install` with the kickstart
//!   named by `slipway.ks=` on the kernel command line, or the default one.
//!
//! Why not dracut's `livenet` and `dmsquash-live`: they ship in Debian's `dracut-live` and
//! `dracut-network`, but an installer initramfs built with them needs curl, a DHCP client and
//! those modules inside the commit (none is in a slipway host), or the build machine's
//! userspace in the initramfs. The boot loader already speaks HTTP (iPXE) or TFTP, so it
//! fetches the live root itself, and nothing new runs in the initramfs but two mounts.
//!
//! Except under GRUB, whose TFTP (and its HTTP) is slow, and whose signed build has no HTTP:
//! `netroot.img` ([`NETROOT_IMG`]) is a third, small initrd that GRUB loads in place of
//! `rootfs.img`. It carries what the initramfs lacks for fetching the live root itself (the
//! commit's NIC modules, Debian's static busybox) and the SHA-256 the download must have
//! (`pxe/live/net-root.sh`); `pxe serve` names the URL and the interface on the kernel
//! command line.
//!
//! # Layout of DIR
//!
//! ```text
//! DIR/manifest.json              refs, commits, kernel versions, sha256 of every artifact
//! DIR/boot.ipxe                  iPXE menu chaining each ref's script
//! DIR/refs/<ref>/                one per ref (`/` in the ref written `+`)
//!     vmlinuz initramfs.img rootfs.img [netroot.img] boot.ipxe [kickstart.ks]
//!     [shimx64.efi grubx64.efi]  the commit's signed shim and network GRUB (Secure Boot)
//! DIR/pxelinux.cfg/default       PXELINUX (BIOS) menu
//! DIR/grub/grub.cfg              GRUB (UEFI) menu
//! DIR/undionly.kpxe ipxe.efi snponly.efi     iPXE, from Debian's ipxe
//! DIR/pxelinux.0 ldlinux.c32                 from Debian's pxelinux and syslinux-common
//! DIR/grubnetx64.efi             GRUB netboot image (grub-mkimage, efinet tftp http)
//! ```
//!
//! Scripts and menus are written from templates in the repository's `pxe/` folder (compiled
//! in); the only placeholder left in what is written is `{{server}}`, the URL `pxe serve`
//! serves DIR at ([`fill_server`]).
//!
//! # Order of work
//!
//! Plan (no file written: refs, kernels, initramfs capabilities, the kickstart, the key,
//! programs, Debian packages) -> lock DIR -> per changed ref: check out, live root, squashfs,
//! artifacts in `DIR/.build-*`, renamed into `DIR/refs/<ref>` (exchanged with the old one) ->
//! boot programs -> manifest (written beside and renamed) -> menus. A ref whose commit,
//! slipway source hash and options are those the manifest records is left as it is
//! ("unchanged"). A killed build leaves only `DIR/.build-*`, removed by the next one.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use fn_error_context::context;
use ostree::gio;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pxe::cpio;
use crate::pxe::debian::{self, Deb};
use crate::sys::cmd::CommandRunExt;
use crate::sys::file::sha256_hex;
use crate::sys::lock::{self, Wait};
use crate::sys::tree::Tree;
use crate::sys::ui;
use crate::sysroot::bootloader::{self, Platform};

/// The manifest's file name in DIR.
pub const MANIFEST: &str = "manifest.json";
/// The manifest's format version.
pub const SCHEMA: u32 = 1;
/// The placeholder `pxe serve` replaces with the URL it serves DIR at (no trailing `/`).
pub const SERVER_PLACEHOLDER: &str = "{{server}}";
/// Kernel arguments of the installer: the live root (`root=tmpfs`, see the module
/// documentation), no shell in the initramfs and a halt (not a reboot loop back into the
/// network boot) when it fails, both consoles.
pub const KERNEL_ARGS: [&str; 5] = [
    "root=tmpfs",
    "rd.shell=0",
    "rd.emergency=halt",
    "console=tty0",
    "console=ttyS0,115200n8",
];
/// The GRUB netboot image in DIR.
pub const GRUB_NETBOOT: &str = "grubnetx64.efi";
/// Secure Boot: the commit's signed shim in its ref's directory (what DHCP names).
pub const SB_SHIM: &str = "shimx64.efi";
/// Secure Boot: the commit's signed network GRUB beside the shim, under the name shim loads.
pub const SB_GRUB: &str = "grubx64.efi";
/// The commit's files for a Secure Boot network boot: (name in the ref's directory, path in
/// the commit).
const SB_NETBOOT: [(&str, &str); 2] = [
    (SB_SHIM, "usr/lib/shim/shimx64.efi.signed"),
    (
        SB_GRUB,
        "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
    ),
];
/// Where the commit's tree (a squashfs) is inside `rootfs.img` (and in the initramfs once
/// unpacked): the live root's lower layer and the installer's seed.
pub const SQUASHFS_IN_CPIO: &str = "slipway/root.squashfs";
/// Where the live layer (a squashfs: `/etc`, the installer's slipway and units) is.
pub const LIVE_SQUASHFS_IN_CPIO: &str = "slipway/live.squashfs";
/// Where the live root mounts the commit's tree, which the installer imports before its pull.
pub const LIVE_SEED_DIR: &str = "/run/slipway/lower";
/// Paths in the live root.
pub const LIVE_KICKSTART: &str = "etc/slipway/installer.ks";
pub const LIVE_TRUSTED_KEY: &str = "etc/slipway/installer-trusted.gpg";
pub const LIVE_TLS_CA: &str = "etc/slipway/installer-tls-ca.pem";

/// Boot programs taken out of Debian packages: (name in DIR, package, path in the package).
pub const PACKAGED_PROGRAMS: [(&str, &str, &str); 5] = [
    ("undionly.kpxe", "ipxe", "usr/lib/ipxe/undionly.kpxe"),
    ("ipxe.efi", "ipxe", "boot/ipxe.efi"),
    ("snponly.efi", "ipxe", "usr/lib/ipxe/snponly.efi"),
    ("pxelinux.0", "pxelinux", "usr/lib/PXELINUX/pxelinux.0"),
    (
        "ldlinux.c32",
        "syslinux-common",
        "usr/lib/syslinux/modules/bios/ldlinux.c32",
    ),
];

/// Modules embedded in the GRUB netboot image, so it needs nothing more from the server
/// than its `grub.cfg`.
const GRUB_NET_MODULES: [&str; 16] = [
    "normal",
    "configfile",
    "linux",
    "echo",
    "test",
    "sleep",
    "reboot",
    "halt",
    "net",
    "efinet",
    "tftp",
    "http",
    "gzio",
    "all_video",
    "efi_gop",
    "serial",
];

/// Units of the commit that must not start in the installer's live root: the health gate
/// (it would judge the live root as a deployment), its second stage (bound images) and the
/// workloads it gates (a commit's own services are wanted by slipway-healthy.target, which
/// the masked gate never lets start); and what only takes CPU from the installer on its one
/// core, for a root that lives a few minutes: sshd (and its first-boot host keys), AppArmor's
/// profile compilation, the maintenance timers, e2scrub and pstore.
const LIVE_MASKED: [&str; 20] = [
    "slipway-boot-check.service",
    "slipway-images.service",
    "slipway-images-place.service",
    "slipway-fleetlock-steady-state.service",
    "slipway-update-agent.service",
    "slipway-update-agent.timer",
    "docker.service",
    "docker.socket",
    "containerd.service",
    "kubelet.service",
    "ssh.service",
    "ssh.socket",
    "apparmor.service",
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "fstrim.timer",
    "systemd-pstore.service",
];

/// What the installer's `unsquashfs` comes from (Debian's squashfs-tools, and the one library
/// of it a slipway host may lack): (package, path in the package, name in
/// [`LIVE_UNSQUASHFS_DIR`]). The installer unpacks the live root's squashfs with it instead of
/// reading the mounted image through the kernel (see `sysroot::deploy::Seed::Image`).
pub const LIVE_TOOLS: [(&str, &str, &str); 2] = [
    ("squashfs-tools", "usr/bin/unsquashfs", "unsquashfs"),
    (
        "liblzo2-2",
        "lib/x86_64-linux-gnu/liblzo2.so.2.0.0",
        "liblzo2.so.2",
    ),
];
/// Where the live layer keeps them, and the wrapper that runs `unsquashfs` with its library
/// ([`LIVE_BIN_DIR`] is first in the installer's `PATH`).
pub const LIVE_UNSQUASHFS_DIR: &str = "usr/lib/slipway/unsquashfs";
pub const LIVE_BIN_DIR: &str = "usr/lib/slipway/bin";
const UNSQUASHFS_WRAPPER: &str = "#!/bin/sh\n\
# slipway's live root: Debian's unsquashfs with its liblzo2, for the installer's seed.\n\
LD_LIBRARY_PATH=/usr/lib/slipway/unsquashfs exec /usr/lib/slipway/unsquashfs/unsquashfs \"$@\"\n";

/// The small initrd a boot loader may load instead of `rootfs.img` (GRUB, whose TFTP is
/// slow): the live root's initramfs units, busybox (DHCP, HTTP, SHA-256, cpio), the commit's
/// network drivers and the SHA-256 of `rootfs.img`, which the initramfs then fetches over
/// HTTP (`pxe/live/net-root.sh`).
pub const NETROOT_IMG: &str = "netroot.img";
/// Where busybox comes from: (package, path in the package).
pub const NETROOT_BUSYBOX: (&str, &str) = ("busybox-static", "bin/busybox");
/// In netroot.img: the expected `rootfs.img` (`SHA256 SIZE`).
pub const NETROOT_ROOTFS_SUM: &str = "usr/lib/slipway/rootfs.img.sha256";
/// The commit's modules netroot.img carries (with what they depend on), by path under
/// `/usr/lib/modules/KVER/`: every Ethernet driver and the paravirtual NICs.
const NETROOT_MODULES: [&str; 4] = [
    "kernel/drivers/net/ethernet/",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/net/vmxnet3/",
    "kernel/drivers/net/hyperv/",
];

/// The `.deb` cache in the cache directory.
const PXE_DEBS: &str = "pxe-debs";

/// Templates (see `pxe/README.md`).
const TEMPLATE_MENU_IPXE: &str = include_str!("../../pxe/ipxe/boot.ipxe");
const TEMPLATE_REF_IPXE: &str = include_str!("../../pxe/ipxe/ref.ipxe");
const TEMPLATE_PXELINUX: &str = include_str!("../../pxe/pxelinux/default");
const TEMPLATE_GRUB: &str = include_str!("../../pxe/grub/grub.cfg");
/// The live root's files for the initramfs and for the live root itself.
const LIVE_SYSROOT_MOUNT: &str = include_str!("../../pxe/live/sysroot.mount");
const LIVE_ROOT_SERVICE: &str = include_str!("../../pxe/live/slipway-live-root.service");
const LIVE_ROOT_SCRIPT: &str = include_str!("../../pxe/live/live-root.sh");
const NET_ROOT_SCRIPT: &str = include_str!("../../pxe/live/net-root.sh");
const UDHCPC_SCRIPT: &str = include_str!("../../pxe/live/udhcpc.script");
const INSTALLER_SERVICE: &str = include_str!("../../pxe/live/slipway-installer.service");
const INSTALLER_SCRIPT: &str = include_str!("../../pxe/live/pxe-installer");

/// What `slipway pxe build` is asked to do.
#[derive(Debug, Clone)]
pub struct PxeBuildOptions {
    pub repo: PathBuf,
    pub refs: Vec<String>,
    pub output: PathBuf,
    pub kickstart: Option<PathBuf>,
    pub gpg_key: Option<PathBuf>,
    /// CA certificates (PEM) the installer checks `https://` servers against.
    pub tls_ca: Option<PathBuf>,
    /// The slipway executable the installer carries (stripped); default: this one.
    pub installer_slipway: Option<PathBuf>,
    pub cachedir: PathBuf,
}

/// `DIR/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    /// The slipway that wrote the manifest last.
    pub slipway_version: String,
    pub slipway_source: String,
    /// Boot programs at DIR's top, by file name.
    pub boot_programs: BTreeMap<String, BootProgram>,
    /// Every ref built into DIR.
    pub refs: BTreeMap<String, RefEntry>,
}

/// A boot program at DIR's top.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootProgram {
    pub sha256: String,
    pub size: u64,
    /// The Debian package it came from and its version.
    pub package: String,
    pub version: String,
}

/// One built ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefEntry {
    /// Its directory, relative to DIR (`refs/<ref with / as +>`).
    pub dir: String,
    pub commit: String,
    /// The commit's `version`.
    pub version: Option<String>,
    pub kernel_version: String,
    /// The slipway that built it (and that the installer carries).
    pub slipway_version: String,
    pub slipway_source: String,
    /// SHA-256 over the options that shape the artifacts (kickstart, key, installer
    /// executable).
    pub options: String,
    /// The default kickstart, relative to DIR, when one was given.
    pub kickstart: Option<String>,
    /// SHA-256 of the trusted key in the live root, when one was given.
    pub gpg_key_sha256: Option<String>,
    pub kernel_args: Vec<String>,
    /// Every file of the ref's directory, by name.
    pub files: BTreeMap<String, Artifact>,
}

/// A file's digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub sha256: String,
    pub size: u64,
}

/// What happened to each ref.
#[derive(Debug, Clone, Serialize)]
pub struct PxeBuildSummary {
    pub schema: crate::sys::ui::Schema,
    pub output: PathBuf,
    pub refs: Vec<RefOutcome>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefOutcome {
    #[serde(rename = "ref")]
    pub ostree_ref: String,
    pub commit: String,
    pub dir: String,
    /// False when the ref was already built from the same commit, slipway and options.
    pub changed: bool,
}

/// The directory of a ref, relative to DIR: `/` becomes `+` (which no OSTree ref contains),
/// so the name is one path component, readable, and safe in URLs, TFTP and GRUB paths.
pub fn ref_dir(ostree_ref: &str) -> String {
    format!("refs/{}", ostree_ref.replace('/', "+"))
}

/// A local OSTree ref as `ref_dir` can name it: components of letters, digits, `.`, `_`
/// and `-`, not starting with `.` or `-`, separated by single `/`.
pub fn check_ref_name(r: &str) -> Result<()> {
    let ok = !r.is_empty()
        && r.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with(['.', '-'])
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
        });
    if !ok {
        bail!(
            "`{r}` is not a local OSTree ref slipway can build for PXE (letters, digits, `.`, `_`, `-` and `/` between components)"
        );
    }
    Ok(())
}

/// Fill in `{{server}}` (`pxe serve`'s part of the templates): `server` is the URL DIR is
/// served at, e.g. `http://192.0.2.1:8080`.
pub fn fill_server(text: &str, server: &str) -> String {
    text.replace(SERVER_PLACEHOLDER, server.trim_end_matches('/'))
}

/// Read `DIR/manifest.json`; `None` when DIR has none.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let p = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    let m: Manifest =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
    if m.schema != SCHEMA {
        bail!(
            "{}: schema {} is not the {SCHEMA} this slipway writes",
            p.display(),
            m.schema
        );
    }
    Ok(Some(m))
}

fn source_hash() -> &'static str {
    env!("SLIPWAY_SOURCE_HASH")
}

// ---------------------------------------------------------------------------------------
// Templates

/// Render a template: `{{#refs}}...{{/refs}}` repeats for each ref with that ref's values,
/// then `{{key}}` takes the global values. Everything but `{{server}}` must be filled.
fn render(
    template: &str,
    name: &str,
    globals: &[(&str, String)],
    refs: &[Vec<(&'static str, String)>],
) -> Result<String> {
    let fill = |text: &str, values: &[(&str, String)]| -> String {
        let mut t = text.to_string();
        for (k, v) in values {
            t = t.replace(&format!("{{{{{k}}}}}"), v);
        }
        t
    };
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{#refs}}") {
        out.push_str(&rest[..start]);
        let body_and_more = &rest[start + "{{#refs}}".len()..];
        let end = body_and_more
            .find("{{/refs}}")
            .with_context(|| format!("template {name}: {{{{#refs}}}} without {{{{/refs}}}}"))?;
        // The block's own line breaks: the body starts after the `{{#refs}}` line.
        let body = body_and_more[..end]
            .strip_prefix('\n')
            .unwrap_or(&body_and_more[..end]);
        for r in refs {
            out.push_str(&fill(body, r));
        }
        rest = &body_and_more[end + "{{/refs}}".len()..];
        rest = rest.strip_prefix('\n').unwrap_or(rest);
    }
    out.push_str(rest);
    let out = fill(&out, globals);
    let leftover = out.replace(SERVER_PLACEHOLDER, "");
    if let Some(i) = leftover.find("{{") {
        let end = leftover[i..]
            .find("}}")
            .map(|e| i + e + 2)
            .unwrap_or(leftover.len());
        bail!("template {name}: `{}` is not filled in", &leftover[i..end]);
    }
    Ok(out)
}

/// A menu title: the ref, its version and commit, in characters every boot loader's menu
/// syntax takes as they are.
fn title(ostree_ref: &str, e: &RefEntry) -> String {
    let version: String = e
        .version
        .as_deref()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let v = if version.is_empty() {
        String::new()
    } else {
        format!(" {version}")
    };
    format!("{ostree_ref}{v} ({})", &e.commit[..12.min(e.commit.len())])
}

fn ref_values(ostree_ref: &str, e: &RefEntry, index: usize) -> Vec<(&'static str, String)> {
    vec![
        ("label", format!("ref-{index}")),
        ("title", title(ostree_ref, e)),
        ("ref", ostree_ref.to_string()),
        ("commit", e.commit.clone()),
        ("dir", e.dir.clone()),
        ("kernel_args", e.kernel_args.join(" ")),
    ]
}

/// The menus at DIR's top, from the manifest: (path relative to DIR, content).
pub fn menus(m: &Manifest) -> Result<Vec<(&'static str, String)>> {
    let refs: Vec<Vec<(&'static str, String)>> = m
        .refs
        .iter()
        .enumerate()
        .map(|(i, (r, e))| ref_values(r, e, i))
        .collect();
    let globals = [("default", "ref-0".to_string())];
    Ok(vec![
        (
            "boot.ipxe",
            render(TEMPLATE_MENU_IPXE, "pxe/ipxe/boot.ipxe", &globals, &refs)?,
        ),
        (
            "pxelinux.cfg/default",
            render(TEMPLATE_PXELINUX, "pxe/pxelinux/default", &globals, &refs)?,
        ),
        (
            "grub/grub.cfg",
            render(TEMPLATE_GRUB, "pxe/grub/grub.cfg", &globals, &refs)?,
        ),
    ])
}

/// A ref's own iPXE script.
fn ref_script(ostree_ref: &str, e: &RefEntry) -> Result<String> {
    render(
        TEMPLATE_REF_IPXE,
        "pxe/ipxe/ref.ipxe",
        &ref_values(ostree_ref, e, 0),
        &[],
    )
}

// ---------------------------------------------------------------------------------------
// Plan

/// A ref to build, checked.
struct RefPlan {
    ostree_ref: String,
    commit: String,
    version: Option<String>,
    kver: String,
    dir: String,
    changed: bool,
    /// The modules the commit's initramfs has (paths under `/usr/lib/modules/KVER/`); `None`
    /// for a ref that is current (nothing is built for it).
    initramfs_modules: Option<Vec<String>>,
}

/// Every input, checked.
struct Plan {
    refs: Vec<RefPlan>,
    kickstart: Option<Vec<u8>>,
    gpg_key: Option<Vec<u8>>,
    tls_ca: Option<Vec<u8>>,
    installer_exe: PathBuf,
    options: String,
    /// The packages of the boot programs, when they are to be (re)written.
    debs: Option<Vec<Deb>>,
    /// The packages of [`LIVE_TOOLS`].
    live_debs: Vec<Deb>,
    /// busybox's package ([`NETROOT_BUSYBOX`]).
    busybox_deb: Deb,
    /// The manifest the plan was made against.
    manifest: Option<Manifest>,
}

/// The programs a build runs.
fn required_programs(with_key: bool) -> Vec<&'static str> {
    let mut tools = vec![
        "mksquashfs",
        "lsinitrd",
        "strip",
        "apt-get",
        "apt-cache",
        "dpkg-deb",
        "dpkg-query",
        "grub-mkimage",
        "depmod",
    ];
    if with_key {
        tools.push("gpg");
    }
    tools
}

/// Refuse a kickstart the installer could not use on its own: invalid for the installer, or
/// made of several files (`%include` would not be found in the live root).
#[context("Checking the kickstart {}", path.display())]
fn check_kickstart(path: &Path, has_key: bool) -> Result<Vec<u8>> {
    let ks = crate::kickstart::parse_file(path)?;
    ks.validate_for_install()?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    for (i, line) in text.lines().enumerate() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first == "%include" || first == "%ksappend" {
            bail!(
                "{}:{}: `{first}`: the default kickstart of a PXE installer must be one file (the installer has only this one)",
                path.display(),
                i + 1
            );
        }
    }
    ks.check_trusted_key(has_key)?;
    Ok(bytes)
}

/// A public OpenPGP key (binary or armored), as `gpg --show-keys` reads it; a secret key is
/// refused.
#[context("Checking the trusted key {}", path.display())]
fn check_gpg_key(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let home = tempfile::tempdir().context("creating a GnuPG home for the key check")?;
    let out = Command::new("gpg")
        .arg("--homedir")
        .arg(home.path())
        .args(["--batch", "--with-colons", "--show-keys"])
        .arg(path)
        .run_get_string()
        .with_context(|| format!("{} is not an OpenPGP key gpg can read", path.display()))?;
    if out.lines().any(|l| l.starts_with("sec")) {
        bail!(
            "{} holds a secret key: give the public key (`gpg --export KEYID`)",
            path.display()
        );
    }
    if !out.lines().any(|l| l.starts_with("pub")) {
        bail!("{} holds no public key", path.display());
    }
    Ok(bytes)
}

/// SHA-256 over what shapes the artifacts besides the commit and slipway's source.
/// `installer`: what identifies the installer's programs (slipway's SHA-256, the live tools'
/// packages).
fn options_hash(
    ks: Option<&[u8]>,
    key: Option<&[u8]>,
    tls_ca: Option<&[u8]>,
    installer: &str,
) -> String {
    let mut h = Sha256::new();
    for (name, part) in [("kickstart", ks), ("gpg-key", key), ("tls-ca", tls_ca)] {
        h.update(name.as_bytes());
        match part {
            Some(b) => {
                h.update([1u8]);
                h.update((b.len() as u64).to_le_bytes());
                h.update(b);
            }
            None => h.update([0u8]),
        }
    }
    h.update(b"installer-slipway");
    h.update(installer.as_bytes());
    hex::encode(h.finalize())
}

/// Is the ref in DIR what this build would make?
fn is_current(m: &Manifest, output: &Path, ostree_ref: &str, commit: &str, options: &str) -> bool {
    let Some(e) = m.refs.get(ostree_ref) else {
        return false;
    };
    e.commit == commit
        && e.slipway_source == source_hash()
        && e.options == options
        && e.files.iter().all(|(name, a)| {
            std::fs::metadata(output.join(&e.dir).join(name))
                .map(|md| md.is_file() && md.len() == a.size)
                .unwrap_or(false)
        })
}

/// Are the boot programs in DIR the ones the manifest records, written by this slipway?
fn boot_programs_current(m: &Manifest, output: &Path) -> bool {
    m.slipway_source == source_hash()
        && PACKAGED_PROGRAMS
            .iter()
            .map(|(n, _, _)| *n)
            .chain([GRUB_NETBOOT])
            .all(|n| {
                m.boot_programs.get(n).is_some_and(|b| {
                    std::fs::metadata(output.join(n))
                        .map(|md| md.is_file() && md.len() == b.size)
                        .unwrap_or(false)
                })
            })
}

/// The commit's tree must be a host slipway's installer can run in.
fn check_tree(repo: &ostree::Repo, ostree_ref: &str, commit: &str) -> Result<()> {
    for (path, why) in [
        ("/usr/lib/systemd/systemd", "systemd boots the live root"),
        ("/usr/etc", "the live root's /etc comes from /usr/etc"),
    ] {
        if crate::repo::commit_path_type(repo, commit, path)?.is_none() {
            bail!("ref {ostree_ref} (commit {commit}) has no {path}: {why}; is it a slipway host?");
        }
    }
    Ok(())
}

/// What the live root needs from the commit's initramfs, as `lsinitrd` lists it: systemd's
/// initrd with dracut's root= parser, mount, mkdir, mv, stat, a shell, and the loop, squashfs and
/// overlay drivers (as modules there or built into the kernel).
/// Returns the initramfs's modules (paths under `/usr/lib/modules/KVER/`).
#[context("Checking the initramfs of {ostree_ref} (commit {commit})")]
fn check_initramfs(
    repo: &ostree::Repo,
    ostree_ref: &str,
    commit: &str,
    kver: &str,
) -> Result<Vec<String>> {
    let path = format!("/usr/lib/modules/{kver}/initramfs.img");
    let data = crate::repo::read_commit_file(repo, commit, &path)?
        .with_context(|| format!("commit {commit} ({ostree_ref}) has no {path}"))?;
    let dir = tempfile::tempdir().context("creating a directory for lsinitrd")?;
    let img = dir.path().join("initramfs.img");
    std::fs::write(&img, &data).with_context(|| format!("writing {}", img.display()))?;
    let listing = Command::new("lsinitrd").arg(&img).run_get_string()?;
    let has = |p: &str| {
        listing
            .lines()
            .any(|l| l.ends_with(&format!(" {p}")) || l.contains(&format!(" {p} -> ")))
    };
    let mut missing: Vec<String> = [
        "usr/lib/systemd/systemd",
        "usr/bin/dracut-cmdline",
        "usr/bin/mount",
        "usr/bin/mkdir",
        "usr/bin/mv",
        "usr/bin/stat",
        "usr/bin/sh",
        "etc/initrd-release",
    ]
    .iter()
    .filter(|p| !has(p))
    .map(|p| format!("/{p}"))
    .collect();
    let builtin = crate::repo::read_commit_file(
        repo,
        commit,
        &format!("/usr/lib/modules/{kver}/modules.builtin"),
    )?
    .map(|b| String::from_utf8_lossy(&b).into_owned())
    .unwrap_or_default();
    for module in ["loop", "squashfs", "overlay"] {
        let ko = format!("/{module}.ko");
        if !listing.lines().any(|l| l.contains(&ko)) && !builtin.lines().any(|l| l.contains(&ko)) {
            missing.push(format!("the {module} kernel module"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "{path} of commit {commit} ({ostree_ref}) cannot mount the installer's live root: it lacks {} (slipway composes a systemd dracut initramfs with --no-hostonly, which has them)",
            missing.join(", ")
        );
    }
    let prefix = format!("usr/lib/modules/{kver}/");
    Ok(listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|p| p.strip_prefix(&prefix))
        .filter(|p| p.starts_with("kernel/") && p.ends_with(".ko"))
        .map(str::to_string)
        .collect())
}

/// Every check that can be made before a file is written. `manifest`: DIR's, read now.
#[context("Checking the PXE build request")]
fn plan(opts: &PxeBuildOptions, repo: &ostree::Repo, manifest: Option<Manifest>) -> Result<Plan> {
    let kickstart = opts
        .kickstart
        .as_deref()
        .map(|k| check_kickstart(k, opts.gpg_key.is_some()))
        .transpose()?;
    let gpg_key = opts.gpg_key.as_deref().map(check_gpg_key).transpose()?;
    let tls_ca = opts
        .tls_ca
        .as_deref()
        .map(|p| -> Result<Vec<u8>> {
            let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            crate::sys::http::parse_ca(&pem, &p.display().to_string()).context("--tls-ca")?;
            Ok(pem)
        })
        .transpose()?;
    let installer_exe = match &opts.installer_slipway {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("finding slipway's own executable")?,
    };
    let exe_sha = crate::repo::sha256_file(&installer_exe)
        .with_context(|| format!("the installer's slipway {}", installer_exe.display()))?;
    let live_debs = LIVE_TOOLS
        .iter()
        .map(|(package, _, _)| debian::locate(package))
        .collect::<Result<Vec<_>>>()?;
    let busybox_deb = debian::locate(NETROOT_BUSYBOX.0)?;
    let installer: String = std::iter::once(exe_sha)
        .chain(
            live_debs
                .iter()
                .chain([&busybox_deb])
                .map(|d| format!("{} {} {}", d.package, d.version, d.sha256)),
        )
        .collect::<Vec<_>>()
        .join("\n");
    let options = options_hash(
        kickstart.as_deref(),
        gpg_key.as_deref(),
        tls_ca.as_deref(),
        &installer,
    );

    let mut refs: Vec<RefPlan> = Vec::new();
    for r in &opts.refs {
        check_ref_name(r)?;
        if refs.iter().any(|p| &p.ostree_ref == r) {
            bail!("ref {r} is named twice");
        }
        let commit = crate::repo::resolve_required(repo, r)?;
        let kernel =
            crate::repo::kernel::kernel_files(repo, &commit).with_context(|| format!("ref {r}"))?;
        check_tree(repo, r, &commit)?;
        let changed = !manifest
            .as_ref()
            .is_some_and(|m| is_current(m, &opts.output, r, &commit, &options));
        let initramfs_modules = if changed {
            Some(check_initramfs(repo, r, &commit, &kernel.kver)?)
        } else {
            None
        };
        refs.push(RefPlan {
            ostree_ref: r.clone(),
            version: crate::repo::commit_meta_string(repo, &commit, "version")?,
            commit,
            kver: kernel.kver,
            dir: ref_dir(r),
            changed,
            initramfs_modules,
        });
    }
    let programs_current = manifest
        .as_ref()
        .is_some_and(|m| boot_programs_current(m, &opts.output));
    let debs = if programs_current {
        None
    } else {
        let mut packages: Vec<&str> = PACKAGED_PROGRAMS.iter().map(|(_, p, _)| *p).collect();
        packages.dedup();
        Some(
            packages
                .into_iter()
                .map(debian::locate)
                .collect::<Result<Vec<_>>>()?,
        )
    };
    Ok(Plan {
        refs,
        kickstart,
        gpg_key,
        tls_ca,
        installer_exe,
        options,
        debs,
        live_debs,
        busybox_deb,
        manifest,
    })
}

/// Host checks and the output directory: before anything is read or written.
fn preflight(opts: &PxeBuildOptions) -> Result<()> {
    crate::sys::preflight::require_root("slipway pxe build")?;
    crate::sys::preflight::require_programs(&required_programs(opts.gpg_key.is_some()))?;
    bootloader::grub_lib(Platform::Efi)?;
    if opts.refs.is_empty() {
        bail!("no --ref given");
    }
    let out = &opts.output;
    if out.exists() {
        if !out.is_dir() {
            bail!("{} exists and is not a directory", out.display());
        }
        let empty = std::fs::read_dir(out)
            .with_context(|| format!("reading {}", out.display()))?
            .next()
            .is_none();
        if !empty && !out.join(MANIFEST).is_file() {
            bail!(
                "{} is not empty and has no {MANIFEST}: it is not a directory `slipway pxe build` wrote; choose an empty or new one",
                out.display()
            );
        }
    } else {
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!("{}: directory does not exist", parent.display());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Build

/// Build the network boot files of every ref into DIR.
pub fn build(opts: &PxeBuildOptions) -> Result<PxeBuildSummary> {
    preflight(opts)?;
    let repo = crate::repo::open(&opts.repo)?;
    let first = plan(opts, &repo, read_manifest(&opts.output)?)?;

    std::fs::create_dir_all(&opts.output)
        .with_context(|| format!("creating {}", opts.output.display()))?;
    let _lock = lock::exclusive(
        &opts.output.join(".slipway-pxe.lock"),
        &format!("the PXE directory {}", opts.output.display()),
        Wait::Block,
    )?;
    remove_leftovers(&opts.output);
    // Another build may have finished while this one waited.
    let now = read_manifest(&opts.output)?;
    let plan = if now == first.manifest {
        first
    } else {
        plan(opts, &repo, now)?
    };

    let mut manifest = plan.manifest.clone().unwrap_or_else(|| Manifest {
        schema: SCHEMA,
        slipway_version: env!("CARGO_PKG_VERSION").to_string(),
        slipway_source: source_hash().to_string(),
        boot_programs: BTreeMap::new(),
        refs: BTreeMap::new(),
    });
    std::fs::create_dir_all(&opts.cachedir)
        .with_context(|| format!("creating {}", opts.cachedir.display()))?;

    // Boot programs first: a download that fails should fail before the long part.
    if let Some(debs) = &plan.debs {
        let work = crate::sys::workdir::create(&opts.cachedir, "pxe-programs-")?;
        manifest.boot_programs = boot_programs(debs, &opts.cachedir, work.path(), &opts.output)?;
    }

    let mut outcomes = Vec::new();
    for r in &plan.refs {
        if r.changed {
            let entry = build_ref(opts, &repo, &plan, r)?;
            manifest.refs.insert(r.ostree_ref.clone(), entry);
            ui::info(format!(
                "{}: built {} from commit {}",
                r.ostree_ref, r.dir, r.commit
            ));
        } else {
            ui::info(format!("{}: unchanged (commit {})", r.ostree_ref, r.commit));
        }
        outcomes.push(RefOutcome {
            ostree_ref: r.ostree_ref.clone(),
            commit: r.commit.clone(),
            dir: r.dir.clone(),
            changed: r.changed,
        });
        // Each finished ref is recorded at once: a later failure does not lose it.
        write_manifest(&opts.output, &mut manifest)?;
    }
    for (rel, text) in menus(&manifest)? {
        write_if_changed(&opts.output.join(rel), text.as_bytes())?;
    }
    Ok(PxeBuildSummary {
        schema: crate::sys::ui::Schema,
        output: opts.output.clone(),
        refs: outcomes,
    })
}

/// Remove what killed builds left in DIR (the caller holds DIR's lock).
fn remove_leftovers(dir: &Path) {
    let mut candidates = Vec::new();
    for d in [dir.to_path_buf(), dir.join("refs")] {
        if let Ok(rd) = std::fs::read_dir(&d) {
            candidates.extend(rd.flatten().map(|e| e.path()));
        }
    }
    for p in candidates {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // `.build-*`: a ref being written; `.tmp*`: a file being written (write_atomic).
        if name.starts_with(".build-") || name.starts_with(".tmp") {
            ui::info(format!(
                "removing the leftover of an interrupted build: {}",
                p.display()
            ));
            let res = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            if let Err(e) = res {
                ui::warn(format!("could not remove {}: {e}", p.display()));
            }
        }
    }
}

fn write_manifest(dir: &Path, m: &mut Manifest) -> Result<()> {
    m.slipway_version = env!("CARGO_PKG_VERSION").to_string();
    m.slipway_source = source_hash().to_string();
    let text = serde_json::to_string_pretty(m)? + "\n";
    write_if_changed(&dir.join(MANIFEST), text.as_bytes())
}

/// Write `path` (beside it, then renamed) unless it already holds `data`.
fn write_if_changed(path: &Path, data: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == data) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    crate::sys::file::write_atomic(path, data)
}

/// The boot programs: out of Debian's packages, and the GRUB netboot image.
#[context("Writing the boot programs")]
fn boot_programs(
    debs: &[Deb],
    cachedir: &Path,
    work: &Path,
    out: &Path,
) -> Result<BTreeMap<String, BootProgram>> {
    let mut programs = BTreeMap::new();
    for deb in debs {
        let file = debian::fetch(deb, &cachedir.join(PXE_DEBS))?;
        let unpacked = work.join(&deb.package);
        debian::extract(&file, &unpacked)?;
        for (name, package, rel) in PACKAGED_PROGRAMS {
            if package != deb.package {
                continue;
            }
            let src = debian::regular_file(&unpacked, rel, package)?;
            let data = std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
            write_if_changed(&out.join(name), &data)?;
            programs.insert(
                name.to_string(),
                BootProgram {
                    sha256: sha256_hex(&data),
                    size: data.len() as u64,
                    package: deb.package.clone(),
                    version: deb.version.clone(),
                },
            );
        }
    }
    let grub = work.join(GRUB_NETBOOT);
    Command::new("grub-mkimage")
        .arg("-d")
        .arg(bootloader::grub_lib(Platform::Efi)?)
        .args(["-O", "x86_64-efi", "-p", "(tftp)/grub", "-o"])
        .arg(&grub)
        .args(GRUB_NET_MODULES)
        .run()
        .context("building the GRUB netboot image")?;
    let data = std::fs::read(&grub).with_context(|| format!("reading {}", grub.display()))?;
    write_if_changed(&out.join(GRUB_NETBOOT), &data)?;
    let version = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", Platform::Efi.package()])
        .run_get_string()?;
    programs.insert(
        GRUB_NETBOOT.to_string(),
        BootProgram {
            sha256: sha256_hex(&data),
            size: data.len() as u64,
            package: Platform::Efi.package().to_string(),
            version,
        },
    );
    Ok(programs)
}

/// Check out the commit, make the live root, write the ref's files into a temporary
/// directory in DIR and swap it into place.
#[context("Building {} (commit {})", r.ostree_ref, r.commit)]
fn build_ref(
    opts: &PxeBuildOptions,
    repo: &ostree::Repo,
    plan: &Plan,
    r: &RefPlan,
) -> Result<RefEntry> {
    let work = crate::sys::workdir::create(&opts.cachedir, "pxe-")?;
    let root = work.path().join("root");
    ui::info(format!(
        "{}: checking out commit {}",
        r.ostree_ref, r.commit
    ));
    checkout(repo, &r.commit, &root)?;
    let mtime = crate::repo::commit_timestamp(repo, &r.commit)?;

    let staging = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(&opts.output)
        .with_context(|| format!("creating a directory in {}", opts.output.display()))?;
    let stage = staging.path();

    // The commit's tree stays whole (the installer's seed); the live layer goes over it.
    let tree = Tree::open(&root)?;
    take_boot_files(repo, r, stage)?;
    copy_signed_netboot(&tree, stage)?;
    drop(tree);
    let live = work.path().join("live");
    prepare_live_root(
        repo,
        &r.commit,
        &root,
        &live,
        plan,
        work.path(),
        &opts.cachedir,
    )?;
    let squashfs = work.path().join("root.squashfs");
    let live_squashfs = work.path().join("live.squashfs");
    ui::info(format!("{}: making the live root's squashfs", r.ostree_ref));
    make_squashfs(&root, &squashfs, mtime)?;
    make_squashfs(&live, &live_squashfs, mtime)?;
    let rootfs_img = stage.join("rootfs.img");
    write_rootfs_img(&squashfs, &live_squashfs, &rootfs_img, mtime)?;
    // Described once: for netroot.img's check and for the manifest.
    let rootfs = Artifact {
        sha256: crate::repo::sha256_file(&rootfs_img)?,
        size: std::fs::metadata(&rootfs_img)?.len(),
    };
    let rootfs_sum = format!("{} {}\n", rootfs.sha256, rootfs.size);
    write_netroot_img(
        &root,
        r,
        plan,
        &rootfs_sum,
        work.path(),
        &opts.cachedir,
        &stage.join(NETROOT_IMG),
        mtime,
    )?;
    drop(work);

    if let Some(ks) = &plan.kickstart {
        std::fs::write(stage.join("kickstart.ks"), ks).context("writing kickstart.ks")?;
    }
    let mut entry = RefEntry {
        dir: r.dir.clone(),
        commit: r.commit.clone(),
        version: r.version.clone(),
        kernel_version: r.kver.clone(),
        slipway_version: env!("CARGO_PKG_VERSION").to_string(),
        slipway_source: source_hash().to_string(),
        options: plan.options.clone(),
        kickstart: plan
            .kickstart
            .as_ref()
            .map(|_| format!("{}/kickstart.ks", r.dir)),
        gpg_key_sha256: plan.gpg_key.as_deref().map(sha256_hex),
        kernel_args: KERNEL_ARGS.iter().map(|s| s.to_string()).collect(),
        files: BTreeMap::new(),
    };
    std::fs::write(stage.join("boot.ipxe"), ref_script(&r.ostree_ref, &entry)?)
        .context("writing boot.ipxe")?;
    entry.files = seal_stage(stage, BTreeMap::from([("rootfs.img".to_string(), rootfs)]))?;

    crate::sys::failpoint::hit("pxe-before-rename")?;
    let dest = opts.output.join(&r.dir);
    std::fs::create_dir_all(opts.output.join("refs"))?;
    swap_into_place(&staging.keep(), &dest)?;
    Ok(entry)
}

/// The commit's kernel and initramfs (padded) written into `stage`.
fn take_boot_files(repo: &ostree::Repo, r: &RefPlan, stage: &Path) -> Result<()> {
    let moddir = format!("usr/lib/modules/{}", r.kver);
    for (name, dest) in [("vmlinuz", "vmlinuz"), ("initramfs.img", "initramfs.img")] {
        let mut data =
            crate::repo::read_commit_file(repo, &r.commit, &format!("/{moddir}/{name}"))?
                .with_context(|| format!("commit {} has no /{moddir}/{name}", r.commit))?;
        if name == "initramfs.img" {
            pad_initrd(&mut data);
        }
        std::fs::write(stage.join(dest), &data)
            .with_context(|| format!("writing {}", stage.join(dest).display()))?;
    }
    Ok(())
}

/// The commit's signed shim and network GRUB (Secure Boot), when it has them, copied into
/// `stage` under the names DHCP and shim ask for.
fn copy_signed_netboot(tree: &Tree, stage: &Path) -> Result<()> {
    let present: Vec<bool> = SB_NETBOOT
        .iter()
        .map(|(_, src)| tree.exists(src))
        .collect::<Result<_>>()?;
    if !present.iter().any(|p| *p) {
        return Ok(());
    }
    for (name, src) in SB_NETBOOT {
        let data = tree
            .read_named(&format!("the signed network boot's {name}"), src)
            .context(
                "the commit has part of Debian's signed boot chain (shim-signed, \
                 grub-efi-amd64-signed), not all",
            )?;
        std::fs::write(stage.join(name), &data)
            .with_context(|| format!("writing {}", stage.join(name).display()))?;
    }
    Ok(())
}

/// A zstd squashfs of `root`, every time set to `mtime` (the same tree gives the same
/// bytes).
fn make_squashfs(root: &Path, squashfs: &Path, mtime: u64) -> Result<()> {
    let epoch = mtime.to_string();
    Command::new("mksquashfs")
        .arg(root)
        .arg(squashfs)
        .args([
            "-noappend",
            "-quiet",
            "-no-progress",
            "-comp",
            "zstd",
            "-b",
            "1M",
            "-mkfs-time",
            &epoch,
            "-all-time",
            &epoch,
        ])
        .run()
        .context("making the live root's squashfs")?;
    Ok(())
}

/// Every file of `stage` synced, world-readable and described (size, SHA-256) for the
/// manifest; the directory itself made 0755. A file in `described` (hashed as it was written,
/// and unchanged since: same size) is not read again.
fn seal_stage(
    stage: &Path,
    mut described: BTreeMap<String, Artifact>,
) -> Result<BTreeMap<String, Artifact>> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(stage).with_context(|| format!("reading {}", stage.display()))? {
        let p = e?.path();
        let f = std::fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", p.display()))?;
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let size = f.metadata()?.len();
        let artifact = match described.remove(&name) {
            Some(a) if a.size == size => a,
            _ => Artifact {
                sha256: crate::repo::sha256_file(&p)?,
                size,
            },
        };
        files.insert(name, artifact);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
    }
    std::fs::set_permissions(stage, std::fs::Permissions::from_mode(0o755))?;
    Ok(files)
}

/// Put `new` at `dest`: exchanged atomically with the directory there, which is then
/// removed, so `dest` is always a whole ref.
fn swap_into_place(new: &Path, dest: &Path) -> Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    if dest.exists() {
        renameat_with(CWD, new, CWD, dest, RenameFlags::EXCHANGE)
            .with_context(|| format!("exchanging {} with {}", new.display(), dest.display()))?;
        std::fs::remove_dir_all(new)
            .with_context(|| format!("removing the old {}", dest.display()))?;
    } else {
        renameat_with(CWD, new, CWD, dest, RenameFlags::NOREPLACE)
            .with_context(|| format!("renaming {} to {}", new.display(), dest.display()))?;
    }
    Ok(())
}

/// `ostree checkout` of `commit` into `dest` (which must not exist), owners kept.
fn checkout(repo: &ostree::Repo, commit: &str, dest: &Path) -> Result<()> {
    checkout_subpath(repo, commit, None, dest)
}

/// [`checkout`] of the commit's `subpath` (absolute) only, or the whole commit.
fn checkout_subpath(
    repo: &ostree::Repo,
    commit: &str,
    subpath: Option<&str>,
    dest: &Path,
) -> Result<()> {
    let opts = ostree::RepoCheckoutAtOptions {
        mode: ostree::RepoCheckoutMode::None,
        overwrite_mode: ostree::RepoCheckoutOverwriteMode::None,
        subpath: subpath.map(PathBuf::from),
        ..Default::default()
    };
    repo.checkout_at(
        Some(&opts),
        libc::AT_FDCWD,
        dest,
        commit,
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("checking out commit {commit} into {}", dest.display()))
}

/// The live layer `live` over the commit's checkout `root`: the commit's `/usr/etc` as
/// `/etc`, the installer's slipway, its unit, the default kickstart and the trusted key; the
/// health gate and the workloads masked.
#[context("Making the live root's layer {}", live.display())]
fn prepare_live_root(
    repo: &ostree::Repo,
    commit: &str,
    root: &Path,
    live: &Path,
    plan: &Plan,
    work: &Path,
    cachedir: &Path,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (rel, want_dir) in [("usr", true), ("usr/etc", true)] {
        let m = std::fs::symlink_metadata(root.join(rel))
            .with_context(|| format!("the commit has no /{rel}"))?;
        if m.is_dir() != want_dir || m.file_type().is_symlink() {
            bail!("/{rel} in the commit is not a directory");
        }
    }
    if std::fs::symlink_metadata(root.join("etc")).is_ok() {
        bail!("the commit has an /etc besides /usr/etc: not an OSTree layout slipway made");
    }
    std::fs::create_dir(live).with_context(|| format!("creating {}", live.display()))?;
    std::fs::set_permissions(live, std::fs::Permissions::from_mode(0o755))?;
    checkout_subpath(repo, commit, Some("/usr/etc"), &live.join("etc"))?;
    let tree = Tree::open(live)?;

    let stripped = work.join("slipway.stripped");
    Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&stripped)
        .arg(&plan.installer_exe)
        .run()
        .with_context(|| format!("stripping {}", plan.installer_exe.display()))?;
    let mut exe = std::fs::File::open(&stripped)
        .with_context(|| format!("opening {}", stripped.display()))?;
    tree.write_file(crate::payload::EXECUTABLE, &mut exe, 0o755)?;
    tree.write_file(
        "usr/lib/systemd/system/slipway-installer.service",
        &mut INSTALLER_SERVICE.as_bytes(),
        0o644,
    )?;
    tree.write_file(
        "usr/lib/slipway/pxe-installer",
        &mut INSTALLER_SCRIPT.as_bytes(),
        0o755,
    )?;
    tree.symlink(
        "etc/systemd/system/multi-user.target.wants/slipway-installer.service",
        "/usr/lib/systemd/system/slipway-installer.service",
    )?;
    for unit in LIVE_MASKED {
        tree.symlink(&format!("etc/systemd/system/{unit}"), "/dev/null")?;
    }
    live_tools(&tree, plan, work, &cachedir.join(PXE_DEBS))?;
    if let Some(ks) = &plan.kickstart {
        tree.write_file(LIVE_KICKSTART, &mut ks.as_slice(), 0o600)?;
    }
    if let Some(key) = &plan.gpg_key {
        tree.write_file(LIVE_TRUSTED_KEY, &mut key.as_slice(), 0o644)?;
    }
    if let Some(ca) = &plan.tls_ca {
        tree.write_file(LIVE_TLS_CA, &mut ca.as_slice(), 0o644)?;
    }
    Ok(())
}

/// [`LIVE_TOOLS`] into the live layer, and the `unsquashfs` wrapper.
fn live_tools(tree: &Tree, plan: &Plan, work: &Path, cache: &Path) -> Result<()> {
    for (deb, (_, rel, name)) in plan.live_debs.iter().zip(LIVE_TOOLS) {
        let src = debian::take_file(deb, cache, work, rel)?;
        let mut f =
            std::fs::File::open(&src).with_context(|| format!("opening {}", src.display()))?;
        tree.write_file(&format!("{LIVE_UNSQUASHFS_DIR}/{name}"), &mut f, 0o755)?;
    }
    tree.write_file(
        &format!("{LIVE_BIN_DIR}/unsquashfs"),
        &mut UNSQUASHFS_WRAPPER.as_bytes(),
        0o755,
    )
}

/// Zero bytes after the initramfs up to a multiple of 4. The kernel reads an uncompressed
/// cpio archive (`rootfs.img`) only at a 4-byte aligned offset of the initrd memory, and
/// skips zero bytes between archives. iPXE's BIOS loader, GRUB and PXELINUX align each
/// initrd themselves; the kernel's EFI stub (`initrd=` under snponly.efi) concatenates them
/// as they are, so without this an initramfs of odd length hides the live root.
pub fn pad_initrd(data: &mut Vec<u8>) {
    data.resize(data.len().next_multiple_of(4), 0);
}

/// `rootfs.img`: the initramfs side of the live root (`sysroot.mount`, the service that
/// mounts the squashfs images, its script) and the two squashfs images (the commit's tree and
/// the live layer), as one uncompressed cpio archive.
fn write_rootfs_img(squashfs: &Path, live: &Path, out: &Path, mtime: u64) -> Result<()> {
    let f = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = cpio::Writer::new(
        std::io::BufWriter::new(f),
        u32::try_from(mtime).unwrap_or(0),
    );
    write_live_units(&mut w)?;
    w.dir("slipway", 0o755)?;
    for (name, path) in [(SQUASHFS_IN_CPIO, squashfs), (LIVE_SQUASHFS_IN_CPIO, live)] {
        let mut sq =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let size = sq.metadata()?.len();
        w.file_from(name, 0o644, size, &mut sq)?;
    }
    sync_written(w.finish()?, out)
}

/// Flush a file written through a `BufWriter` and sync it to disk.
fn sync_written(mut buf: std::io::BufWriter<std::fs::File>, out: &Path) -> Result<()> {
    buf.flush()
        .with_context(|| format!("writing {}", out.display()))?;
    buf.into_inner()
        .map_err(|e| anyhow!("writing {}: {}", out.display(), e.error()))?
        .sync_all()
        .with_context(|| format!("syncing {}", out.display()))
}

/// The initramfs side of the live root, in `rootfs.img` and `netroot.img` alike:
/// `sysroot.mount`, the service that mounts the squashfs images, and its script.
fn write_live_units<W: Write>(w: &mut cpio::Writer<W>) -> Result<()> {
    for d in [
        "etc",
        "etc/systemd",
        "etc/systemd/system",
        "etc/systemd/system/initrd-root-fs.target.requires",
        "usr",
        "usr/lib",
        "usr/lib/slipway",
    ] {
        w.dir(d, 0o755)?;
    }
    w.file(
        "etc/systemd/system/sysroot.mount",
        0o644,
        LIVE_SYSROOT_MOUNT.as_bytes(),
    )?;
    w.file(
        "etc/systemd/system/slipway-live-root.service",
        0o644,
        LIVE_ROOT_SERVICE.as_bytes(),
    )?;
    w.symlink(
        "etc/systemd/system/initrd-root-fs.target.requires/sysroot.mount",
        "../sysroot.mount",
    )?;
    w.file(
        "usr/lib/slipway/live-root.sh",
        0o755,
        LIVE_ROOT_SCRIPT.as_bytes(),
    )
}

/// The commit's modules netroot.img carries: [`NETROOT_MODULES`] and every module they
/// depend on, as `modules.dep` (in the checkout `moddir`) lists them. Empty when the commit
/// has none (or no `modules.dep`).
fn netroot_modules(moddir: &Path) -> Result<Vec<String>> {
    let dep = moddir.join("modules.dep");
    let text = match std::fs::read_to_string(&dep) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dep.display())),
    };
    let mut deps: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let (module, rest) = line
            .split_once(':')
            .with_context(|| format!("{}:{}: no `:`", dep.display(), n + 1))?;
        deps.insert(module, rest.split_whitespace().collect());
    }
    let mut todo: Vec<&str> = deps
        .keys()
        .copied()
        .filter(|m| {
            NETROOT_MODULES.iter().any(|w| {
                if w.ends_with('/') {
                    m.starts_with(w)
                } else {
                    m == w
                }
            })
        })
        .collect();
    let mut all = std::collections::BTreeSet::new();
    while let Some(m) = todo.pop() {
        if all.insert(m.to_string()) {
            todo.extend(deps.get(m).into_iter().flatten().copied());
        }
    }
    Ok(all.into_iter().collect())
}

/// `netroot.img` (see [`NETROOT_IMG`]), a gzip-compressed cpio archive, when the commit's
/// kernel has network drivers; otherwise none, and every boot loader loads `rootfs.img`.
/// Its modules index (`modules.dep`, aliases...) is made by `depmod` over the initramfs's
/// modules and the added ones, so `modprobe` in the initramfs finds both.
#[allow(clippy::too_many_arguments)]
#[context("Writing {}", out.display())]
fn write_netroot_img(
    root: &Path,
    r: &RefPlan,
    plan: &Plan,
    rootfs_sum: &str,
    work: &Path,
    cachedir: &Path,
    out: &Path,
    mtime: u64,
) -> Result<()> {
    let rel_moddir = format!("usr/lib/modules/{}", r.kver);
    let moddir = root.join(&rel_moddir);
    let added = netroot_modules(&moddir)?;
    if added.is_empty() {
        ui::info(format!(
            "{}: the commit's kernel has no network drivers in /{rel_moddir}: no {NETROOT_IMG}, every boot loader loads rootfs.img",
            r.ostree_ref
        ));
        return Ok(());
    }
    // depmod's tree: the initramfs's modules and the added ones, with the kernel's lists.
    let base = work.join("netroot-depmod");
    let index_dir = base.join(&rel_moddir);
    std::fs::create_dir_all(&index_dir)
        .with_context(|| format!("creating {}", index_dir.display()))?;
    std::os::unix::fs::symlink("usr/lib", base.join("lib"))
        .with_context(|| format!("creating {}/lib", base.display()))?;
    let initramfs_modules = r.initramfs_modules.as_deref().with_context(|| {
        format!(
            "{}: the initramfs's modules were not listed (the ref is current)",
            r.ostree_ref
        )
    })?;
    for m in initramfs_modules.iter().chain(&added) {
        let src = moddir.join(m);
        if !src.is_file() {
            continue;
        }
        let dest = index_dir.join(m);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        if !dest.exists() {
            std::fs::hard_link(&src, &dest)
                .or_else(|_| std::fs::copy(&src, &dest).map(|_| ()))
                .with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
        }
    }
    for list in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        if moddir.join(list).is_file() {
            std::fs::copy(moddir.join(list), index_dir.join(list))
                .with_context(|| format!("copying {}", moddir.join(list).display()))?;
        }
    }
    Command::new("depmod")
        .arg("-b")
        .arg(&base)
        .arg(&r.kver)
        .run()
        .context("indexing the installer initramfs's modules")?;
    for index in ["modules.dep.bin", "modules.alias.bin"] {
        if !index_dir.join(index).is_file() {
            bail!(
                "depmod wrote no {index} in {}: modprobe in the initramfs would find no module",
                index_dir.display()
            );
        }
    }

    let busybox = debian::take_file(
        &plan.busybox_deb,
        &cachedir.join(PXE_DEBS),
        work,
        NETROOT_BUSYBOX.1,
    )?;

    let f = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let gz =
        flate2::GzBuilder::new().write(std::io::BufWriter::new(f), flate2::Compression::default());
    let mut w = cpio::Writer::new(gz, u32::try_from(mtime).unwrap_or(0));
    write_live_units(&mut w)?;
    w.file(
        "usr/lib/slipway/net-root.sh",
        0o644,
        NET_ROOT_SCRIPT.as_bytes(),
    )?;
    w.file(
        "usr/lib/slipway/udhcpc.script",
        0o755,
        UDHCPC_SCRIPT.as_bytes(),
    )?;
    w.file(NETROOT_ROOTFS_SUM, 0o644, rootfs_sum.as_bytes())?;
    let mut bb =
        std::fs::File::open(&busybox).with_context(|| format!("opening {}", busybox.display()))?;
    let size = bb.metadata()?.len();
    w.file_from("usr/lib/slipway/busybox", 0o755, size, &mut bb)?;
    // The modules' directories, then the modules and the index depmod wrote.
    let mut dirs = std::collections::BTreeSet::new();
    for m in &added {
        let mut p = Path::new(m).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(format!("{rel_moddir}/{}", d.display()));
            p = d.parent();
        }
    }
    for d in ["usr/lib/modules".to_string(), rel_moddir.clone()]
        .into_iter()
        .chain(dirs)
    {
        w.dir(&d, 0o755)?;
    }
    let mut index: Vec<String> = std::fs::read_dir(&index_dir)
        .with_context(|| format!("reading {}", index_dir.display()))?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|n| n.starts_with("modules."))
        .collect();
    index.sort();
    for name in added.iter().chain(&index) {
        let src = index_dir.join(name);
        let mut f =
            std::fs::File::open(&src).with_context(|| format!("opening {}", src.display()))?;
        let size = f.metadata()?.len();
        w.file_from(&format!("{rel_moddir}/{name}"), 0o644, size, &mut f)?;
    }
    let gz = w
        .finish()?
        .finish()
        .with_context(|| format!("compressing {}", out.display()))?;
    sync_written(gz, out)
}

/// Find where `name`'s data starts in a newc cpio archive (for readers such as the tests
/// and `unsquashfs -o`).
pub fn cpio_entry_offset(archive: &mut dyn Read, name: &str) -> Result<Option<(u64, u64)>> {
    let mut offset = 0u64;
    loop {
        let mut header = [0u8; cpio::HEADER_LEN];
        if archive.read_exact(&mut header).is_err() {
            return Ok(None);
        }
        if &header[..6] != b"070701" {
            bail!("not a newc cpio archive at byte {offset}");
        }
        let field = |i: usize| -> Result<u64> {
            let s = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i])?;
            Ok(u64::from_str_radix(s, 16)?)
        };
        let size = field(6)?;
        let namesize = field(11)? as usize;
        let name_pad = (cpio::HEADER_LEN + namesize).next_multiple_of(4) - cpio::HEADER_LEN;
        let mut n = vec![0u8; name_pad];
        archive.read_exact(&mut n)?;
        let entry = String::from_utf8_lossy(&n[..namesize.saturating_sub(1)]).into_owned();
        let data_at = offset + cpio::HEADER_LEN as u64 + name_pad as u64;
        if entry == name {
            return Ok(Some((data_at, size)));
        }
        if entry == "TRAILER!!!" {
            return Ok(None);
        }
        let skip = size.next_multiple_of(4);
        std::io::copy(&mut archive.take(skip), &mut std::io::sink())?;
        offset = data_at + skip;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(commit: &str) -> RefEntry {
        RefEntry {
            dir: ref_dir("slipway/bookworm/x86_64/atomic-host"),
            commit: commit.into(),
            version: Some("2026.12.01.0".into()),
            kernel_version: "6.1.0-9-amd64".into(),
            slipway_version: "0".into(),
            slipway_source: "s".into(),
            options: "o".into(),
            kickstart: None,
            gpg_key_sha256: None,
            kernel_args: KERNEL_ARGS.iter().map(|s| s.to_string()).collect(),
            files: BTreeMap::new(),
        }
    }

    fn manifest(refs: &[(&str, &str)]) -> Manifest {
        Manifest {
            schema: SCHEMA,
            slipway_version: "0".into(),
            slipway_source: "s".into(),
            boot_programs: BTreeMap::new(),
            refs: refs
                .iter()
                .map(|(r, c)| {
                    let mut e = entry(c);
                    e.dir = ref_dir(r);
                    (r.to_string(), e)
                })
                .collect(),
        }
    }

    #[test]
    fn initrd_padding_aligns_what_follows() {
        for len in 0..9usize {
            let mut data = vec![0xffu8; len];
            pad_initrd(&mut data);
            assert_eq!(data.len() % 4, 0, "{len}");
            assert!(data.len() - len < 4, "{len}");
            assert!(data[len..].iter().all(|b| *b == 0), "{len}");
        }
    }

    #[test]
    fn ref_names_map_to_one_safe_component() {
        assert_eq!(
            ref_dir("slipway/bookworm/x86_64/atomic-host"),
            "refs/slipway+bookworm+x86_64+atomic-host"
        );
        check_ref_name("slipway/bookworm/x86_64/atomic-host").unwrap();
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/../b",
            "remote:ref",
            "a b",
            ".hidden",
            "a/-x",
            "{{x}}",
        ] {
            assert!(check_ref_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn menus_name_every_ref_and_leave_only_the_server() {
        let m = manifest(&[("a/one", &"1".repeat(64)), ("b/two", &"2".repeat(64))]);
        for (name, text) in menus(&m).unwrap() {
            assert!(
                text.contains("refs/a+one/vmlinuz") || text.contains("refs/a+one/boot.ipxe"),
                "{name}: {text}"
            );
            assert!(text.contains("refs/b+two"), "{name}: {text}");
            assert!(
                !text.replace(SERVER_PLACEHOLDER, "").contains("{{"),
                "{name}: {text}"
            );
            assert!(!text.contains("{{#refs}}"), "{name}");
        }
        let ipxe = &menus(&m).unwrap()[0].1;
        assert!(ipxe.starts_with("#!ipxe\n"));
        assert!(
            ipxe.contains("item ref-0 a/one 2026.12.01.0 (111111111111)"),
            "{ipxe}"
        );
        assert!(
            ipxe.contains(":ref-1\nchain {{server}}/refs/b+two/boot.ipxe"),
            "{ipxe}"
        );
        let filled = fill_server(ipxe, "http://192.0.2.1:8080/");
        assert!(
            filled.contains("chain http://192.0.2.1:8080/refs/a+one/boot.ipxe"),
            "{filled}"
        );
    }

    #[test]
    fn grub_menu_passes_grub_script_check() {
        let m = manifest(&[("a/one", &"1".repeat(64))]);
        let grub = menus(&m)
            .unwrap()
            .into_iter()
            .find(|(n, _)| *n == "grub/grub.cfg")
            .unwrap()
            .1;
        let out = Command::new("grub-script-check").run_with_input(grub.as_bytes());
        assert!(out.is_ok(), "{out:?}\n{grub}");
        assert!(
            grub.contains("initrd /refs/a+one/initramfs.img /refs/a+one/rootfs.img"),
            "{grub}"
        );
    }

    #[test]
    fn ref_script_loads_kernel_and_both_initrds_over_http() {
        let e = entry(&"3".repeat(64));
        let s = ref_script("slipway/bookworm/x86_64/atomic-host", &e).unwrap();
        let dir = "{{server}}/refs/slipway+bookworm+x86_64+atomic-host";
        assert!(
            s.contains(&format!(
                "kernel {dir}/vmlinuz initrd=initramfs.img initrd=rootfs.img root=tmpfs"
            )),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "initrd {dir}/initramfs.img\ninitrd {dir}/rootfs.img\nboot"
            )),
            "{s}"
        );
    }

    #[test]
    fn unfilled_placeholders_are_template_errors() {
        let err = render("a {{nope}} b", "t", &[], &[]).unwrap_err();
        assert!(err.to_string().contains("{{nope}}"), "{err}");
        let err = render("{{#refs}}x", "t", &[], &[]).unwrap_err();
        assert!(err.to_string().contains("without"), "{err}");
        assert_eq!(
            render("{{server}}/x", "t", &[], &[]).unwrap(),
            "{{server}}/x"
        );
    }

    #[test]
    fn options_hash_tells_kickstart_key_and_executable_apart() {
        let a = options_hash(Some(b"ks"), None, None, "e");
        assert_ne!(a, options_hash(None, Some(b"ks"), None, "e"));
        assert_ne!(a, options_hash(None, None, Some(b"ks"), "e"));
        assert_ne!(a, options_hash(Some(b"ks"), None, Some(b"ca"), "e"));
        assert_ne!(a, options_hash(Some(b"ks2"), None, None, "e"));
        assert_ne!(a, options_hash(Some(b"ks"), None, None, "f"));
        assert_eq!(a, options_hash(Some(b"ks"), None, None, "e"));
    }

    #[test]
    fn live_assets_are_valid_shell_and_units() {
        for (name, text) in [
            ("live-root.sh", LIVE_ROOT_SCRIPT),
            ("pxe-installer", INSTALLER_SCRIPT),
        ] {
            let out = Command::new("sh")
                .args(["-n", "-c", text])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            LIVE_ROOT_SCRIPT.contains(SQUASHFS_IN_CPIO)
                && LIVE_ROOT_SCRIPT.contains(LIVE_SQUASHFS_IN_CPIO)
                && LIVE_ROOT_SCRIPT.contains(LIVE_SEED_DIR)
        );
        assert!(INSTALLER_SCRIPT.contains(LIVE_SEED_DIR));
        assert!(
            INSTALLER_SCRIPT.contains(LIVE_KICKSTART)
                && INSTALLER_SCRIPT.contains(LIVE_TRUSTED_KEY)
                && INSTALLER_SCRIPT.contains(LIVE_TLS_CA)
        );
        assert!(LIVE_SYSROOT_MOUNT.contains("Where=/sysroot"));
        assert!(
            LIVE_SYSROOT_MOUNT.contains(&format!("lowerdir=/run/slipway/live:{LIVE_SEED_DIR},"))
        );
        assert!(KERNEL_ARGS.contains(&"root=tmpfs"));
    }

    #[test]
    fn cpio_entry_offset_finds_the_squashfs() {
        let mut w = cpio::Writer::new(Vec::new(), 0);
        w.dir("etc", 0o755).unwrap();
        w.file("etc/x", 0o644, b"abcde").unwrap();
        w.file(SQUASHFS_IN_CPIO, 0o644, b"hsqs-data").unwrap();
        let bytes = w.finish().unwrap();
        let (off, size) = cpio_entry_offset(&mut bytes.as_slice(), SQUASHFS_IN_CPIO)
            .unwrap()
            .unwrap();
        assert_eq!(&bytes[off as usize..(off + size) as usize], b"hsqs-data");
        assert!(
            cpio_entry_offset(&mut bytes.as_slice(), "nope")
                .unwrap()
                .is_none()
        );
    }
}
