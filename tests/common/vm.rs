//! QEMU virtual machines for slipway's slow integration tests (image boots,
//! PXE installs, upgrades, rollbacks).
//!
//! A [`Vm`] is a `qemu-system-x86_64` process started from a [`VmConfig`]. Its
//! serial console goes to a file that tests poll ([`Vm::wait_for_serial`]);
//! with user-mode networking the guest's port 22 is forwarded to a free port on
//! 127.0.0.1 for [`Vm::ssh`]. A QMP socket is used to detect that QEMU is up
//! and for ACPI power-down; there is no human monitor.
//!
//! Lifetime: QEMU is started by slipway's runner (`slipway::sys::cmd::spawn`: it dies with
//! the test process, not with the test's thread), and dropping the
//! `Vm` terminates and reaps it.
//!
//! When a `Vm` is dropped while its thread is panicking, or after
//! [`Vm::mark_failed`], its serial log and QEMU's stderr are copied to
//! [`artifacts_dir`](super::artifacts_dir) so a failed CI run keeps the console.
//!
//! Every timeout passed to this module is multiplied by
//! `SLIPWAY_TEST_TIMEOUT_SCALE` (see [`scaled`](super::scaled)).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::{artifacts_dir, scaled, test_cache_dir};

/// The QEMU binary (Debian package `qemu-system-x86`).
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
/// OVMF firmware code (Debian package `ovmf`), mapped read-only.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF variable store template; each VM gets a private copy.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// OVMF built to enforce Secure Boot (with SMM).
pub const OVMF_SECBOOT_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// A variable store with Microsoft's keys enrolled and Secure Boot on.
pub const OVMF_MS_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";
/// A variable store with only a test key (snakeoil) enrolled and Secure Boot on.
pub const OVMF_SNAKEOIL_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd";
/// Environment variable forcing the accelerator: `kvm` or `tcg`.
pub const ENV_ACCEL: &str = "SLIPWAY_TEST_ACCEL";

pub const DEFAULT_MEMORY_MIB: u32 = 2048;
pub const DEFAULT_CPUS: u32 = 2;
/// Default timeout of one [`Vm::ssh`] command (before scaling).
pub const DEFAULT_SSH_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the KVM probe waits for the kernel to reach its root-mount panic.
/// Not scaled: a working KVM gets there in a second or two.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(25);
/// Lines of console shown in error messages.
pub const CONSOLE_TAIL_LINES: usize = 40;
/// Serial lines that show a kernel booted without a root fs got far enough.
pub const ROOT_MOUNT_PANIC: [&str; 2] = ["VFS: Unable to mount root", "Kernel panic"];

const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Bytes of console re-scanned by each poll of a serial wait.
const SCAN_OVERLAP: usize = 64 * 1024;
/// How long QEMU may take to answer QMP after being spawned (before scaling).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one `ssh ... true` attempt inside [`Vm::wait_for_ssh`].
const SSH_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace period between SIGTERM and SIGKILL when stopping QEMU.
const TERM_GRACE: Duration = Duration::from_secs(5);
const QMP_TIMEOUT: Duration = Duration::from_secs(10);

const SERIAL_FILE: &str = "serial.log";
/// How long the console may stay silent after a guest reset before the
/// firmware counts as hung (OVMF prints its boot manager's lines within seconds).
const RESET_SILENCE: Duration = Duration::from_secs(120);
const QEMU_LOG_FILE: &str = "qemu-stderr.log";
const QMP_SOCKET: &str = "qmp.sock";
const VARS_FILE: &str = "OVMF_VARS.fd";

// ---------------------------------------------------------------------------
// Firmware and accelerator

/// Guest firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default. With `graphics=off` it mirrors its output (and
    /// that of option ROMs such as iPXE) to the serial console.
    Bios,
    /// OVMF: `OVMF_CODE_4M.fd` read-only plus a private copy of
    /// `OVMF_VARS_4M.fd` in the VM's temporary directory.
    Uefi,
    /// OVMF with Secure Boot enforced: `OVMF_CODE_4M.secboot.fd` (SMM, so the guest cannot
    /// write the variables behind the firmware's back) with a private copy of the variable
    /// store holding `keys`.
    SecureBoot(SbKeys),
}

/// The keys a Secure Boot variable store enrolls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SbKeys {
    /// `OVMF_VARS_4M.ms.fd`: Microsoft's keys, which sign Debian's shim (a real machine's).
    Microsoft,
    /// `OVMF_VARS_4M.snakeoil.fd`: a test key only, which signs nothing Debian ships.
    Snakeoil,
}

impl Firmware {
    /// OVMF, with or without Secure Boot.
    pub fn uefi(self) -> bool {
        self != Firmware::Bios
    }
}

impl fmt::Display for Firmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
            Firmware::SecureBoot(SbKeys::Microsoft) => "uefi-secure-boot",
            Firmware::SecureBoot(SbKeys::Snakeoil) => "uefi-secure-boot-snakeoil",
        })
    }
}

/// QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Accel {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Accel> {
        parse_accel(s)
    }
}

/// Parses `kvm` or `tcg` (case-insensitive, surrounding whitespace ignored).
pub fn parse_accel(value: &str) -> Result<Accel> {
    match value.trim().to_ascii_lowercase().as_str() {
        "kvm" => Ok(Accel::Kvm),
        "tcg" => Ok(Accel::Tcg),
        other => bail!("unknown accelerator {other:?}: expected \"kvm\" or \"tcg\""),
    }
}

/// Interprets a `SLIPWAY_TEST_ACCEL` value: unset or blank means "no
/// override"; anything but `kvm`/`tcg` is an error.
pub fn accel_override(value: Option<&str>) -> Result<Option<Accel>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_accel(v)
            .map(Some)
            .with_context(|| format!("invalid {ENV_ACCEL}={v:?}")),
    }
}

/// Whether `/dev/kvm` can be opened read-write.
pub fn kvm_available() -> bool {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Chooses the accelerator for a VM, logging the decision to stderr.
///
/// 1. `SLIPWAY_TEST_ACCEL=kvm|tcg` wins (a malformed value panics).
/// 2. `/dev/kvm` cannot be opened: TCG.
/// 3. Given a kernel, probe once whether it boots under KVM (see
///    [`probe_kvm`]); the verdict is cached in
///    [`test_cache_dir`](super::test_cache_dir), keyed by the kernel's size
///    and mtime.
/// 4. Otherwise TCG: on some hosts KVM opens but Linux guests hang early, and
///    without a kernel there is nothing cheap to probe with.
pub fn accel_for(kernel: Option<&Path>) -> Accel {
    let env = std::env::var(ENV_ACCEL).ok();
    match accel_override(env.as_deref()) {
        Ok(Some(accel)) => {
            log(format_args!("accel {accel}: forced by {ENV_ACCEL}"));
            return accel;
        }
        Ok(None) => {}
        Err(e) => panic!("{e:#}"),
    }
    if !kvm_available() {
        log("accel tcg: /dev/kvm cannot be opened");
        return Accel::Tcg;
    }
    let Some(kernel) = kernel else {
        log(format_args!(
            "accel tcg: no kernel to probe KVM with (the safe default here; \
             set {ENV_ACCEL}=kvm to force KVM)"
        ));
        return Accel::Tcg;
    };
    match probe_kvm_cached(kernel) {
        Ok((accel, how)) => {
            log(format_args!(
                "accel {accel}: KVM probe with {} ({how})",
                kernel.display()
            ));
            accel
        }
        Err(e) => {
            log(format_args!(
                "accel tcg: could not run the KVM probe: {e:#}"
            ));
            Accel::Tcg
        }
    }
}

/// The cache file holding the KVM probe verdict for `kernel`.
pub fn kvm_probe_cache_file(kernel: &Path) -> Result<PathBuf> {
    let meta = fs::metadata(kernel).with_context(|| format!("stat {}", kernel.display()))?;
    let mtime = meta
        .modified()
        .with_context(|| format!("mtime of {}", kernel.display()))?
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Ok(test_cache_dir().join(format!(
        "kvm-probe-{}-{}.{:09}",
        meta.len(),
        mtime.as_secs(),
        mtime.subsec_nanos()
    )))
}

static PROBE_LOCK: Mutex<()> = Mutex::new(());

fn probe_kvm_cached(kernel: &Path) -> Result<(Accel, &'static str)> {
    // Serialises probes of parallel tests in one process.
    let _guard = PROBE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = kvm_probe_cache_file(kernel)?;
    if let Ok(text) = fs::read_to_string(&cache)
        && let Ok(accel) = parse_accel(&text)
    {
        return Ok((accel, "cached verdict"));
    }
    let accel = probe_kvm(kernel)?;
    if let Err(e) = write_atomically(&cache, format!("{accel}\n").as_bytes()) {
        log(format_args!(
            "warning: cannot cache the KVM probe verdict in {}: {e:#}",
            cache.display()
        ));
    }
    Ok((accel, "fresh probe"))
}

/// Boots `kernel` directly under KVM without initrd or disk and reports
/// [`Accel::Kvm`] if the console shows it reaching its root-mount panic within
/// [`KVM_PROBE_TIMEOUT`], [`Accel::Tcg`] otherwise. Not cached.
pub fn probe_kvm(kernel: &Path) -> Result<Accel> {
    let cfg = VmConfig::new("kvm-probe")
        .accel(Accel::Kvm)
        .memory_mib(512)
        .cpus(1)
        .kernel(kernel)
        .append("console=ttyS0 panic=-1")
        .no_reboot(true);
    let started = Instant::now();
    let vm = match Vm::start(cfg) {
        Ok(vm) => vm,
        Err(e) => {
            let message = format!("{e:#}");
            log(format_args!(
                "KVM probe: QEMU failed to start under KVM:\n{}",
                tail_lines(&message, 3)
            ));
            return Ok(Accel::Tcg);
        }
    };
    let verdict = match vm.wait_serial_impl(0, &ROOT_MOUNT_PANIC, KVM_PROBE_TIMEOUT) {
        Ok(_) => Accel::Kvm,
        Err(_) => Accel::Tcg,
    };
    log(format_args!(
        "KVM probe: {} after {:.1}s",
        match verdict {
            Accel::Kvm => "kernel reached its root-mount panic",
            Accel::Tcg => "kernel did NOT get far under KVM",
        },
        started.elapsed().as_secs_f64()
    ));
    Ok(verdict)
}

// ---------------------------------------------------------------------------
// Configuration

/// How a disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskInterface {
    /// virtio-blk (`/dev/vdX` in the guest).
    Virtio,
    /// IDE/AHCI (`/dev/sdX`); on q35 QEMU maps `if=ide` to the AHCI controller.
    Ide,
}

/// Disk image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    /// `qcow2` for `*.qcow2`/`*.qcow`, `raw` otherwise.
    pub fn from_path(path: &Path) -> DiskFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("qcow2") || ext.eq_ignore_ascii_case("qcow") => {
                DiskFormat::Qcow2
            }
            _ => DiskFormat::Raw,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// A disk image attached to the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub interface: DiskInterface,
    /// `None`: detected from the extension ([`DiskFormat::from_path`]).
    pub format: Option<DiskFormat>,
    pub read_only: bool,
    /// A virtio disk with a place in the firmware's boot order (`bootindex`).
    pub bootindex: Option<u32>,
}

impl Disk {
    /// A virtio-blk disk, format detected from the extension.
    pub fn new(path: impl Into<PathBuf>) -> Disk {
        Disk {
            path: path.into(),
            interface: DiskInterface::Virtio,
            format: None,
            read_only: false,
            bootindex: None,
        }
    }

    pub fn interface(mut self, interface: DiskInterface) -> Disk {
        self.interface = interface;
        self
    }

    pub fn format(mut self, format: DiskFormat) -> Disk {
        self.format = Some(format);
        self
    }

    pub fn read_only(mut self, read_only: bool) -> Disk {
        self.read_only = read_only;
        self
    }

    /// Its place in the firmware's boot order (virtio only).
    pub fn bootindex(mut self, index: u32) -> Disk {
        self.bootindex = Some(index);
        self
    }

    pub fn effective_format(&self) -> DiskFormat {
        self.format
            .unwrap_or_else(|| DiskFormat::from_path(&self.path))
    }
}

/// Guest networking. Every variant keeps traffic on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Net {
    /// No NIC at all.
    None,
    /// User-mode networking (`-netdev user,restrict=on`): the guest gets DHCP
    /// but cannot open connections out of the VM; with `ssh_forward` a free
    /// port on 127.0.0.1 is forwarded to the guest's port 22.
    User { ssh_forward: bool },
    /// A tap device that must already exist (`-netdev tap,script=no`), for
    /// PXE tests. With `netns`, QEMU runs under `ip netns exec NS`.
    Tap {
        ifname: String,
        mac: String,
        netns: Option<String>,
    },
}

/// Everything needed to start a [`Vm`]. Build with [`VmConfig::new`] and the
/// chained setters; the fields are public for inspection and tweaking.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Used in logs and artifact file names.
    pub name: String,
    pub disks: Vec<Disk>,
    pub memory_mib: u32,
    pub cpus: u32,
    pub firmware: Firmware,
    /// `None`: decided at start by [`accel_for`] with `kernel`.
    pub accel: Option<Accel>,
    /// `-cpu`; `None`: `host` under KVM, `max` under TCG.
    pub cpu_model: Option<String>,
    /// Direct kernel boot.
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    /// QEMU `-snapshot`: writes go to a temporary overlay, images stay intact.
    pub snapshot: bool,
    /// QEMU `-no-reboot`: a guest reboot makes QEMU exit.
    pub no_reboot: bool,
    pub net: Net,
    /// QEMU device model of the NIC (default `virtio-net-pci`, whose iPXE
    /// option ROM QEMU loads for network boot).
    pub nic_model: String,
    /// `-boot order=...`, e.g. `"n"` (network first) or `"c"` (disk).
    pub boot_order: Option<String>,
    /// Appended verbatim at the end of the QEMU command line.
    pub extra_args: Vec<String>,
    pub ssh_user: String,
    pub ssh_key: Option<PathBuf>,
    /// Default timeout of [`Vm::ssh`] and [`Vm::ssh_ok`] (scaled).
    pub ssh_timeout: Duration,
    /// Where logs go when the VM fails; `None`: [`artifacts_dir`].
    pub artifacts_dir: Option<PathBuf>,
    /// User networking only: guest connections to `GUEST_IP:PORT` reach `127.0.0.1:PORT` on
    /// the test machine, the only way out of `restrict=on`. Each connection runs
    /// `nc 127.0.0.1 PORT` (QEMU `guestfwd=...-cmd:`): a `tcp:` chardev would be a single
    /// connection for the VM's whole life.
    pub guest_forwards: Vec<(String, u16)>,
    /// `hostfwd`: (port on 127.0.0.1 of the test machine, guest TCP port).
    pub host_forwards: Vec<(u16, u16)>,
    /// Tap networking: the guest's address inside the tap's namespace; ssh then runs as
    /// `ip netns exec NS ssh ... USER@ADDRESS` (port 22).
    pub ssh_address: Option<String>,
    /// Appended to the NIC's `-device` (`romfile=` to drop the iPXE ROM, `bootindex=1`).
    pub nic_options: Vec<String>,
}

impl VmConfig {
    /// 2 CPUs, 2048 MiB, BIOS, no disk, no network, accelerator chosen at
    /// start, ssh user `root`.
    pub fn new(name: impl Into<String>) -> VmConfig {
        VmConfig {
            name: name.into(),
            disks: Vec::new(),
            memory_mib: DEFAULT_MEMORY_MIB,
            cpus: DEFAULT_CPUS,
            firmware: Firmware::Bios,
            accel: None,
            cpu_model: None,
            kernel: None,
            initrd: None,
            append: None,
            snapshot: false,
            no_reboot: false,
            net: Net::None,
            nic_model: "virtio-net-pci".to_string(),
            boot_order: None,
            extra_args: Vec::new(),
            ssh_user: "root".to_string(),
            ssh_key: None,
            ssh_timeout: DEFAULT_SSH_TIMEOUT,
            artifacts_dir: None,
            guest_forwards: Vec::new(),
            host_forwards: Vec::new(),
            ssh_address: None,
            nic_options: Vec::new(),
        }
    }

    /// Tap networking: reach the guest's ssh at `address` from inside the tap's namespace.
    pub fn ssh_address(mut self, address: impl Into<String>) -> VmConfig {
        self.ssh_address = Some(address.into());
        self
    }

    /// One more `key=value` for the NIC's `-device` (`romfile=`, `bootindex=1`).
    pub fn nic_option(mut self, option: impl Into<String>) -> VmConfig {
        self.nic_options.push(option.into());
        self
    }

    /// Let the guest reach `127.0.0.1:host_port` at `guest` (`10.0.2.100:80`).
    pub fn guest_forward(mut self, guest: impl Into<String>, host_port: u16) -> VmConfig {
        self.guest_forwards.push((guest.into(), host_port));
        self
    }

    /// Adds a virtio-blk disk whose format is detected from its extension.
    /// Forward 127.0.0.1:`host_port` on the test machine to the guest's TCP `guest_port`
    /// (user networking only).
    pub fn host_forward(mut self, host_port: u16, guest_port: u16) -> VmConfig {
        self.host_forwards.push((host_port, guest_port));
        self
    }

    pub fn disk(self, path: impl Into<PathBuf>) -> VmConfig {
        self.add_disk(Disk::new(path))
    }

    pub fn add_disk(mut self, disk: Disk) -> VmConfig {
        self.disks.push(disk);
        self
    }

    pub fn memory_mib(mut self, mib: u32) -> VmConfig {
        self.memory_mib = mib;
        self
    }

    pub fn cpus(mut self, cpus: u32) -> VmConfig {
        self.cpus = cpus;
        self
    }

    pub fn firmware(mut self, firmware: Firmware) -> VmConfig {
        self.firmware = firmware;
        self
    }

    pub fn accel(mut self, accel: Accel) -> VmConfig {
        self.accel = Some(accel);
        self
    }

    pub fn cpu_model(mut self, model: impl Into<String>) -> VmConfig {
        self.cpu_model = Some(model.into());
        self
    }

    pub fn kernel(mut self, kernel: impl Into<PathBuf>) -> VmConfig {
        self.kernel = Some(kernel.into());
        self
    }

    pub fn initrd(mut self, initrd: impl Into<PathBuf>) -> VmConfig {
        self.initrd = Some(initrd.into());
        self
    }

    pub fn append(mut self, cmdline: impl Into<String>) -> VmConfig {
        self.append = Some(cmdline.into());
        self
    }

    pub fn snapshot(mut self, snapshot: bool) -> VmConfig {
        self.snapshot = snapshot;
        self
    }

    pub fn no_reboot(mut self, no_reboot: bool) -> VmConfig {
        self.no_reboot = no_reboot;
        self
    }

    pub fn net(mut self, net: Net) -> VmConfig {
        self.net = net;
        self
    }

    /// User-mode networking with guest port 22 forwarded from 127.0.0.1.
    pub fn user_net_ssh(self) -> VmConfig {
        self.net(Net::User { ssh_forward: true })
    }

    pub fn tap(
        self,
        ifname: impl Into<String>,
        mac: impl Into<String>,
        netns: Option<&str>,
    ) -> VmConfig {
        self.net(Net::Tap {
            ifname: ifname.into(),
            mac: mac.into(),
            netns: netns.map(str::to_string),
        })
    }

    pub fn nic_model(mut self, model: impl Into<String>) -> VmConfig {
        self.nic_model = model.into();
        self
    }

    pub fn boot_order(mut self, order: impl Into<String>) -> VmConfig {
        self.boot_order = Some(order.into());
        self
    }

    pub fn extra_arg(mut self, arg: impl Into<String>) -> VmConfig {
        self.extra_args.push(arg.into());
        self
    }

    pub fn extra_args<I, S>(mut self, args: I) -> VmConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn ssh(mut self, user: impl Into<String>, private_key: impl Into<PathBuf>) -> VmConfig {
        self.ssh_user = user.into();
        self.ssh_key = Some(private_key.into());
        self
    }

    pub fn ssh_timeout(mut self, timeout: Duration) -> VmConfig {
        self.ssh_timeout = timeout;
        self
    }

    pub fn artifacts_dir(mut self, dir: impl Into<PathBuf>) -> VmConfig {
        self.artifacts_dir = Some(dir.into());
        self
    }

    /// The QEMU arguments (without the binary) for this configuration, with
    /// the VM's files in `dir` and guest port 22 forwarded from `ssh_port`.
    pub fn qemu_args(
        &self,
        accel: Accel,
        dir: &Path,
        ssh_port: Option<u16>,
    ) -> Result<Vec<String>> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));

        push(&[
            "-name",
            &format!("guest={},debug-threads=on", escape_opt(&self.name)),
        ]);
        // graphics=off makes SeaBIOS (and iPXE under it) print to the serial port.
        // Secure Boot: the variable store is writable only from SMM, so the guest cannot turn
        // it off.
        let machine = match self.firmware {
            Firmware::SecureBoot(_) => "q35,graphics=off,smm=on",
            _ => "q35,graphics=off",
        };
        push(&["-machine", machine, "-accel", accel.as_str()]);
        if let Firmware::SecureBoot(_) = self.firmware {
            push(&["-global", "driver=cfi.pflash01,property=secure,value=on"]);
        }
        let cpu = match (&self.cpu_model, accel) {
            (Some(model), _) => model.as_str(),
            (None, Accel::Kvm) => "host",
            (None, Accel::Tcg) => "max",
        };
        push(&["-cpu", cpu]);
        push(&[
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ]);
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-monitor",
            "none",
        ]);

        let serial = path_str(&dir.join(SERIAL_FILE))?;
        push(&[
            "-chardev",
            &format!("file,id=serial0,path={},append=on", escape_opt(&serial)),
        ]);
        push(&["-serial", "chardev:serial0"]);
        let qmp = path_str(&dir.join(QMP_SOCKET))?;
        push(&[
            "-chardev",
            &format!(
                "socket,id=qmp0,path={},server=on,wait=off",
                escape_opt(&qmp)
            ),
        ]);
        push(&["-mon", "chardev=qmp0,mode=control"]);

        if self.firmware.uefi() {
            let (code, _) = ovmf_paths(self.firmware)?;
            let vars = path_str(&dir.join(VARS_FILE))?;
            push(&[
                "-drive",
                &format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    escape_opt(&path_str(&code)?)
                ),
            ]);
            push(&[
                "-drive",
                &format!("if=pflash,format=raw,unit=1,file={}", escape_opt(&vars)),
            ]);
        }

        for (i, disk) in self.disks.iter().enumerate() {
            let interface = match (disk.interface, disk.bootindex) {
                (DiskInterface::Virtio, None) => "virtio",
                (DiskInterface::Ide, None) => "ide",
                (DiskInterface::Virtio, Some(_)) => "none",
                (DiskInterface::Ide, Some(_)) => {
                    bail!("VM {}: a boot index needs a virtio disk", self.name)
                }
            };
            let mut spec = format!(
                "file={},format={},if={interface},media=disk",
                escape_opt(&path_str(&disk.path)?),
                disk.effective_format().as_str(),
            );
            if disk.read_only {
                spec.push_str(",readonly=on");
            }
            if let Some(index) = disk.bootindex {
                spec.push_str(&format!(",id=disk{i}"));
                push(&["-drive", &spec]);
                push(&[
                    "-device",
                    &format!("virtio-blk-pci,drive=disk{i},bootindex={index}"),
                ]);
            } else {
                push(&["-drive", &spec]);
            }
        }
        if self.snapshot {
            push(&["-snapshot"]);
        }

        match (&self.kernel, &self.initrd, &self.append) {
            (Some(kernel), initrd, append) => {
                push(&["-kernel", &path_str(kernel)?]);
                if let Some(initrd) = initrd {
                    push(&["-initrd", &path_str(initrd)?]);
                }
                if let Some(append) = append {
                    push(&["-append", append]);
                }
            }
            (None, None, None) => {}
            (None, _, _) => bail!("VM {}: initrd/append given without a kernel", self.name),
        }

        match &self.net {
            Net::None => {}
            Net::User { ssh_forward } => {
                let mut netdev = "user,id=net0,restrict=on".to_string();
                if *ssh_forward {
                    let port = ssh_port.context("ssh forwarding needs a host port")?;
                    netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{port}-:22"));
                }
                for (host, guest) in &self.host_forwards {
                    netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
                }
                for (guest, port) in &self.guest_forwards {
                    netdev.push_str(&format!(",guestfwd=tcp:{guest}-cmd:nc 127.0.0.1 {port}"));
                }
                push(&["-netdev", &netdev]);
                let mut device = format!("{},netdev=net0", self.nic_model);
                for o in &self.nic_options {
                    device.push(',');
                    device.push_str(o);
                }
                push(&["-device", &device]);
            }
            Net::Tap { ifname, mac, .. } => {
                push(&[
                    "-netdev",
                    &format!(
                        "tap,id=net0,ifname={},script=no,downscript=no",
                        escape_opt(ifname)
                    ),
                ]);
                let mut device = format!("{},netdev=net0,mac={mac}", self.nic_model);
                for o in &self.nic_options {
                    device.push(',');
                    device.push_str(o);
                }
                push(&["-device", &device]);
            }
        }

        if let Some(order) = &self.boot_order {
            push(&["-boot", &format!("order={order}")]);
        }
        if self.no_reboot {
            push(&["-no-reboot"]);
        }
        a.extend(self.extra_args.iter().cloned());
        Ok(a)
    }

    fn validate(&self) -> Result<()> {
        for disk in &self.disks {
            ensure!(
                disk.path.is_file() || disk.path.starts_with("/dev"),
                "VM {}: disk image {} does not exist",
                self.name,
                disk.path.display()
            );
        }
        for file in [&self.kernel, &self.initrd].into_iter().flatten() {
            ensure!(
                file.is_file(),
                "VM {}: {} does not exist",
                self.name,
                file.display()
            );
        }
        if let Some(key) = &self.ssh_key {
            ensure!(
                key.is_file(),
                "VM {}: ssh key {} does not exist",
                self.name,
                key.display()
            );
        }
        ensure!(
            self.cpus > 0 && self.memory_mib >= 64,
            "VM {}: too small",
            self.name
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The VM

/// A running (or exited) QEMU process. See the module documentation.
pub struct Vm {
    name: String,
    child: Mutex<Child>,
    pid: AtomicU32,
    /// Temporary directory with the serial log, QEMU's stderr, the QMP socket
    /// and the OVMF variables; removed on drop.
    dir: tempfile::TempDir,
    serial: PathBuf,
    qemu_log: PathBuf,
    qmp_socket: PathBuf,
    started: Instant,
    accel: Accel,
    firmware: Firmware,
    command_line: Vec<String>,
    ssh_port: Option<u16>,
    /// Tap networking: (namespace, guest address) ssh goes to instead of a forwarded port.
    ssh_netns: Option<(String, String)>,
    ssh_user: String,
    ssh_key: Option<PathBuf>,
    ssh_timeout: Duration,
    artifacts_dir: PathBuf,
    failed: AtomicBool,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("name", &self.name)
            .field("pid", &self.pid())
            .field("accel", &self.accel)
            .field("firmware", &self.firmware)
            .field("ssh_port", &self.ssh_port)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Vm {
    /// Spawns QEMU and waits until it answers on QMP (so host forwarding is
    /// set up and the firmware is running). Fails with QEMU's stderr if it
    /// exits during startup.
    pub fn start(cfg: VmConfig) -> Result<Vm> {
        require_qemu()?;
        cfg.validate()?;
        let accel = cfg
            .accel
            .unwrap_or_else(|| accel_for(cfg.kernel.as_deref()));
        let dir = tempfile::Builder::new()
            .prefix("slipway-vm-")
            .tempdir()
            .context("creating the VM's temporary directory")?;
        if cfg.firmware.uefi() {
            let (_, vars) = ovmf_paths(cfg.firmware)?;
            let dest = dir.path().join(VARS_FILE);
            fs::copy(&vars, &dest)
                .with_context(|| format!("copying {} to {}", vars.display(), dest.display()))?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o644))?;
        }
        let serial = dir.path().join(SERIAL_FILE);
        let qemu_log = dir.path().join(QEMU_LOG_FILE);
        let qmp_socket = dir.path().join(QMP_SOCKET);
        let netns = match &cfg.net {
            Net::Tap {
                netns: Some(ns), ..
            } => Some(ns.as_str()),
            _ => None,
        };
        let wants_port = matches!(cfg.net, Net::User { ssh_forward: true });

        // A free port can be taken by someone else before QEMU binds it; QEMU
        // then exits at once and we try again with another port.
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let ssh_port = wants_port.then(free_tcp_port);
            let args = cfg.qemu_args(accel, dir.path(), ssh_port)?;
            let mut command_line: Vec<String> = Vec::new();
            if let Some(ns) = netns {
                command_line.extend(["ip", "netns", "exec", ns].map(String::from));
            }
            command_line.push(QEMU_BINARY.to_string());
            command_line.extend(args);
            log(format_args!(
                "[{}] starting ({accel}, {}): {}",
                cfg.name,
                cfg.firmware,
                shell_join(&command_line)
            ));

            for stale in [&serial, &qmp_socket] {
                let _ = fs::remove_file(stale);
            }
            let log_file = File::create(&qemu_log)
                .with_context(|| format!("creating {}", qemu_log.display()))?;
            let mut cmd = Command::new(&command_line[0]);
            cmd.args(&command_line[1..])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file);
            let started = Instant::now();
            let mut child = slipway::sys::cmd::spawn(&mut cmd).with_context(|| match netns {
                Some(_) => "spawning `ip netns exec` (Debian package iproute2)".to_string(),
                None => format!("spawning {QEMU_BINARY}"),
            })?;

            match wait_until_ready(&mut child, &qmp_socket, scaled(STARTUP_TIMEOUT)) {
                Ok(()) => {
                    return Ok(Vm {
                        name: cfg.name.clone(),
                        pid: AtomicU32::new(child.id()),
                        child: Mutex::new(child),
                        dir,
                        serial,
                        qemu_log,
                        qmp_socket,
                        started,
                        accel,
                        firmware: cfg.firmware,
                        command_line,
                        ssh_port,
                        ssh_netns: match (&cfg.net, &cfg.ssh_address) {
                            (
                                Net::Tap {
                                    netns: Some(ns), ..
                                },
                                Some(a),
                            ) => Some((ns.clone(), a.clone())),
                            _ => None,
                        },
                        ssh_user: cfg.ssh_user.clone(),
                        ssh_key: cfg.ssh_key.clone(),
                        ssh_timeout: cfg.ssh_timeout,
                        artifacts_dir: cfg.artifacts_dir.clone().unwrap_or_else(artifacts_dir),
                        failed: AtomicBool::new(false),
                    });
                }
                Err(e) => {
                    terminate(&mut child);
                    let stderr = fs::read_to_string(&qemu_log).unwrap_or_default();
                    if wants_port && attempt < ATTEMPTS && stderr.contains("host forwarding") {
                        log(format_args!(
                            "[{}] ssh port {ssh_port:?} was taken, retrying",
                            cfg.name
                        ));
                        continue;
                    }
                    return Err(e.context(format!(
                        "QEMU for VM {} failed to start\ncommand: {}\n--- qemu stderr ---\n{}",
                        cfg.name,
                        shell_join(&command_line),
                        tail_lines(&stderr, CONSOLE_TAIL_LINES)
                    )));
                }
            }
        }
        unreachable!("the last attempt always returns")
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Process id of QEMU (also with `ip netns exec`, which execs QEMU).
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    pub fn firmware(&self) -> Firmware {
        self.firmware
    }

    /// The full command line QEMU was started with.
    pub fn command_line(&self) -> &[String] {
        &self.command_line
    }

    /// The VM's private temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Host port on 127.0.0.1 forwarded to the guest's port 22.
    pub fn ssh_port(&self) -> Option<u16> {
        self.ssh_port
    }

    pub fn serial_log(&self) -> &Path {
        &self.serial
    }

    /// File receiving QEMU's stdout and stderr.
    pub fn qemu_log(&self) -> &Path {
        &self.qemu_log
    }

    /// The whole serial console so far (lossy UTF-8, escape codes kept).
    pub fn serial_text(&self) -> String {
        self.serial_text_since(0)
    }

    /// The serial console from byte offset `mark` (see [`Vm::serial_mark`]).
    pub fn serial_text_since(&self, mark: usize) -> String {
        let bytes = fs::read(&self.serial).unwrap_or_default();
        let start = mark.min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    /// The serial log from byte `offset` to its current end, and that end.
    fn serial_chunk(&self, offset: usize) -> (String, usize) {
        let mut bytes = Vec::new();
        let read = File::open(&self.serial).and_then(|mut file| {
            io::Seek::seek(&mut file, io::SeekFrom::Start(offset as u64))?;
            file.read_to_end(&mut bytes)
        });
        match read {
            Ok(n) => (String::from_utf8_lossy(&bytes).into_owned(), offset + n),
            Err(_) => (String::new(), offset),
        }
    }

    /// Current length of the serial log, to wait only for output produced
    /// after this point (e.g. across a reboot).
    pub fn serial_mark(&self) -> usize {
        fs::metadata(&self.serial).map_or(0, |m| m.len() as usize)
    }

    pub fn qemu_stderr_text(&self) -> String {
        fs::read_to_string(&self.qemu_log).unwrap_or_default()
    }

    /// Time since QEMU was spawned.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// QEMU's exit status if it has exited (reaping it).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.lock_child().try_wait().ok().flatten()
    }

    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Waits until `needle` appears on the serial console. Matches the raw
    /// text or the text with escape sequences removed. Fails when the
    /// (scaled) timeout passes or early when QEMU exits; the error carries the
    /// last [`CONSOLE_TAIL_LINES`] lines of the console.
    pub fn wait_for_serial(&self, needle: &str, timeout: Duration) -> Result<()> {
        self.wait_serial_impl(0, &[needle], scaled(timeout))
            .map(drop)
    }

    /// Like [`Vm::wait_for_serial`] but only looks at output after `mark`.
    pub fn wait_for_serial_since(
        &self,
        mark: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<()> {
        self.wait_serial_impl(mark, &[needle], scaled(timeout))
            .map(drop)
    }

    /// Waits for the first of several needles; returns its index.
    pub fn wait_for_serial_any(&self, needles: &[&str], timeout: Duration) -> Result<usize> {
        self.wait_serial_impl(0, needles, scaled(timeout))
    }

    fn wait_serial_impl(&self, mark: usize, needles: &[&str], timeout: Duration) -> Result<usize> {
        ensure!(!needles.is_empty(), "no needle to wait for");
        let what = if needles.len() == 1 {
            format!("{:?}", needles[0])
        } else {
            format!("any of {needles:?}")
        };
        let deadline = Instant::now() + timeout;
        // Each poll scans only what is new, plus an overlap for needles that
        // were being written during the previous poll.
        let mut from = mark;
        let scan = |from: &mut usize| -> Option<usize> {
            let (text, end) = self.serial_chunk(*from);
            *from = end.saturating_sub(SCAN_OVERLAP).max(mark);
            find_any(&text, needles)
        };
        loop {
            if let Some(i) = scan(&mut from) {
                return Ok(i);
            }
            if let Some(status) = self.exit_status() {
                // The needle may have been printed just before QEMU exited.
                if let Some(i) = scan(&mut from) {
                    return Ok(i);
                }
                bail!(
                    "VM {}: {what} never appeared on the serial console: QEMU exited ({status}) \
                     after {:.1}s\n{}",
                    self.name,
                    self.elapsed().as_secs_f64(),
                    self.diagnostics()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "VM {}: timed out after {:.1}s waiting for {what} on the serial console \
                     (VM up {:.1}s)\n{}",
                    self.name,
                    timeout.as_secs_f64(),
                    self.elapsed().as_secs_f64(),
                    self.diagnostics()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits for QEMU to exit by itself (guest power-off, or reboot with
    /// `no_reboot`). On timeout QEMU keeps running.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let timeout = scaled(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let polled = self
                .child
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .try_wait()
                .context("waiting for QEMU")?;
            if let Some(status) = polled {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "VM {}: QEMU still running after waiting {:.1}s for it to exit\n{}",
                    self.name,
                    timeout.as_secs_f64(),
                    self.diagnostics()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Retries `ssh ... true` until it succeeds; returns the time since the
    /// VM started. Fails early if QEMU exits; on timeout the error has the
    /// last ssh error and the console tail.
    pub fn wait_for_ssh(&self, timeout: Duration) -> Result<Duration> {
        self.ssh_command("true")?; // configuration errors fail at once
        let timeout = scaled(timeout);
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("(no attempt finished)");
        let mut watch = ResetWatch::default();
        loop {
            self.restart_if_firmware_silent(&mut watch)?;
            if let Some(status) = self.exit_status() {
                bail!(
                    "VM {}: QEMU exited ({status}) while waiting for ssh; last ssh error: \
                     {last_error}\n{}",
                    self.name,
                    self.diagnostics()
                );
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = SSH_ATTEMPT_TIMEOUT.min(remaining.max(Duration::from_secs(1)));
            match self.ssh_unscaled("true", attempt) {
                Ok(out) if out.status.success() => return Ok(self.elapsed()),
                Ok(out) => {
                    last_error = format!(
                        "{}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                }
                Err(e) => last_error = format!("{e:#}"),
            }
            if Instant::now() >= deadline {
                bail!(
                    "VM {}: ssh to {} not possible within {:.1}s; last error: \
                     {last_error}\n{}",
                    self.name,
                    match &self.ssh_netns {
                        Some((ns, a)) => format!("{a}:22 in the namespace {ns}"),
                        None => format!("127.0.0.1:{}", self.ssh_port.unwrap_or(0)),
                    },
                    timeout.as_secs_f64(),
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_secs(1));
        }
    }

    /// Runs `command` in the guest through ssh (the remote user's shell
    /// parses it) with the configured timeout. A non-zero exit status is not
    /// an error here; see [`Vm::ssh_ok`].
    pub fn ssh(&self, command: &str) -> Result<Output> {
        self.ssh_unscaled(command, scaled(self.ssh_timeout))
    }

    /// [`Vm::ssh`] with an explicit (scaled) timeout.
    pub fn ssh_with_timeout(&self, command: &str, timeout: Duration) -> Result<Output> {
        self.ssh_unscaled(command, scaled(timeout))
    }

    /// Runs `command` and returns its stdout; fails unless it exits 0, with
    /// the exit status, stdout and stderr in the error.
    pub fn ssh_ok(&self, command: &str) -> Result<String> {
        let out = self.ssh(command)?;
        ensure!(
            out.status.success(),
            "VM {}: `{command}` failed ({}{})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name,
            out.status,
            if out.status.code() == Some(255) {
                ", 255 may be ssh's own failure"
            } else {
                ""
            },
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn ssh_unscaled(&self, command: &str, timeout: Duration) -> Result<Output> {
        let mut cmd = self.ssh_command(command)?;
        run_with_timeout(&mut cmd, timeout)
            .with_context(|| format!("VM {}: ssh `{command}`", self.name))
    }

    /// Runs `command` as `user` with the VM's key (root, say, where the VM logs in as a
    /// user). SSH's own failures exit 255: tell them apart from the command's.
    pub fn ssh_as(&self, user: &str, command: &str) -> Result<Output> {
        let mut cmd = self.ssh_command_as(user, command)?;
        run_with_timeout(&mut cmd, scaled(self.ssh_timeout))
            .with_context(|| format!("VM {}: ssh {user}@ `{command}`", self.name))
    }

    /// The `ssh` invocation used for `command` (for debugging or for tests
    /// that need to pipe data).
    pub fn ssh_command(&self, command: &str) -> Result<Command> {
        self.ssh_command_as(&self.ssh_user, command)
    }

    fn ssh_command_as(&self, user: &str, command: &str) -> Result<Command> {
        let (port, address) = match &self.ssh_netns {
            Some((_, address)) => (22, address.clone()),
            None => (
                self.ssh_port.with_context(|| {
                    format!(
                        "VM {} has no ssh port: configure Net::User {{ ssh_forward: true }} \
                         or a tap with VmConfig::ssh_address",
                        self.name
                    )
                })?,
                "127.0.0.1".to_string(),
            ),
        };
        let key = self
            .ssh_key
            .as_ref()
            .with_context(|| format!("VM {} has no ssh key: use VmConfig::ssh", self.name))?;
        let mut cmd = match &self.ssh_netns {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "ssh"]);
                c
            }
            None => Command::new("ssh"),
        };
        cmd.args(["-F", "/dev/null"]);
        for opt in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "BatchMode=yes",
            "LogLevel=ERROR",
            "ConnectTimeout=10",
            "IdentitiesOnly=yes",
        ] {
            cmd.args(["-o", opt]);
        }
        cmd.arg("-i")
            .arg(key)
            .args(["-p", &port.to_string()])
            .arg(format!("{user}@{address}"))
            .arg(command);
        Ok(cmd)
    }

    /// Reboots the guest through ssh and waits until ssh answers with a new
    /// `boot_id`; returns how long that took.
    pub fn ssh_reboot(&self, timeout: Duration) -> Result<Duration> {
        self.ssh_then_new_boot(&as_root_systemctl("reboot"), timeout)
    }

    /// Runs `command` (which reboots the guest, itself or through something it starts) and
    /// waits until SSH answers from a new boot. The command's status means nothing: the
    /// connection usually drops.
    pub fn ssh_then_new_boot(&self, command: &str, timeout: Duration) -> Result<Duration> {
        let old = self.boot_id()?;
        let issued = Instant::now();
        let _ = self.ssh_unscaled(command, scaled(Duration::from_secs(600)));
        self.wait_for_boot_other_than(&old, issued, timeout)
    }

    /// The guest's current boot id.
    pub fn boot_id(&self) -> Result<String> {
        Ok(self
            .ssh_ok("cat /proc/sys/kernel/random/boot_id")?
            .trim()
            .to_string())
    }

    /// Waits until SSH answers from a boot whose id is not `old`.
    pub fn wait_for_boot_other_than(
        &self,
        old: &str,
        issued: Instant,
        timeout: Duration,
    ) -> Result<Duration> {
        const BOOT_ID: &str = "cat /proc/sys/kernel/random/boot_id";
        let timeout = scaled(timeout);
        let deadline = issued + timeout;
        let mut watch = ResetWatch::default();
        loop {
            self.restart_if_firmware_silent(&mut watch)?;
            if let Some(status) = self.exit_status() {
                bail!(
                    "VM {}: QEMU exited ({status}) during reboot\n{}",
                    self.name,
                    self.diagnostics()
                );
            }
            let last = match self.ssh_unscaled(BOOT_ID, SSH_ATTEMPT_TIMEOUT) {
                Ok(out) if out.status.success() => {
                    let new = String::from_utf8_lossy(&out.stdout).trim().to_string();
                    if !new.is_empty() && new != old {
                        return Ok(issued.elapsed());
                    }
                    "still the old boot".to_string()
                }
                Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "VM {}: no ssh into a new boot within {:.1}s (last: {last})\n{}",
                    self.name,
                    timeout.as_secs_f64(),
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_secs(1));
        }
    }

    /// Sends a QMP command and returns its `return` value.
    pub fn qmp(&self, execute: &str, arguments: Option<Value>) -> Result<Value> {
        qmp_call(&self.qmp_socket, execute, arguments, QMP_TIMEOUT)
            .with_context(|| format!("VM {}: QMP {execute}", self.name))
    }

    /// Presses the ACPI power button.
    pub fn acpi_powerdown(&self) -> Result<()> {
        self.qmp("system_powerdown", None).map(drop)
    }

    /// Stops QEMU now: SIGTERM, then SIGKILL after a short grace period.
    /// Idempotent.
    pub fn kill(&mut self) {
        terminate(self.child.get_mut().unwrap_or_else(PoisonError::into_inner));
    }

    /// Asks the guest to power off (`systemctl poweroff` over ssh when ssh is
    /// configured, and the ACPI power button) and waits for QEMU to exit. If
    /// it does not within the (scaled) timeout, QEMU is killed and an error
    /// returned. Either way QEMU is gone afterwards.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<()> {
        if self.exit_status().is_some() {
            return Ok(());
        }
        if (self.ssh_port.is_some() || self.ssh_netns.is_some()) && self.ssh_key.is_some() {
            let _ = self.ssh_unscaled(&as_root_systemctl("poweroff"), SSH_ATTEMPT_TIMEOUT);
        }
        let _ = self.acpi_powerdown();
        match self.wait_for_exit(timeout) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.kill();
                Err(e.context(format!(
                    "VM {} did not power off; QEMU was killed",
                    self.name
                )))
            }
        }
    }

    /// Makes drop keep the logs as if the test had panicked.
    pub fn mark_failed(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Copies the serial log and QEMU's stderr to the artifacts directory
    /// now; returns the copy of the serial log.
    pub fn save_artifacts(&self) -> Result<PathBuf> {
        copy_vm_logs(
            &self.name,
            &self.serial,
            &self.qemu_log,
            &self.artifacts_dir,
        )
    }

    /// Context for error messages: the console tail and QEMU's stderr.
    pub fn diagnostics(&self) -> String {
        let console = clean_console(&self.serial_text());
        let mut text = format!(
            "--- last {CONSOLE_TAIL_LINES} lines of the serial console ({}) ---\n{}",
            self.serial.display(),
            tail_lines(&console, CONSOLE_TAIL_LINES)
        );
        let stderr = self.qemu_stderr_text();
        if !stderr.trim().is_empty() {
            text.push_str(&format!(
                "\n--- qemu stderr ---\n{}",
                tail_lines(&stderr, 20)
            ));
        }
        // The guest's own account, when it still answers: this boot's warnings and errors,
        // and the failed units.
        if self.ssh_key.is_some()
            && self.is_running()
            && let Ok(mut cmd) = self.ssh_command(
                "systemctl --failed --no-legend --plain; journalctl -b --no-pager -p warning -o short-monotonic | tail -n 60",
            )
            && let Ok(out) = run_with_timeout(&mut cmd, Duration::from_secs(20))
            && out.status.success()
        {
            text.push_str(&format!(
                "\n--- failed units, then the guest journal's last warnings of this boot ---\n{}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        text
    }

    /// Works around a hang of QEMU 7.2 with OVMF under TCG: now and then, after the guest
    /// resets (`reboot: machine restart`), the guest stops printing for good with a CPU
    /// spinning in the firmware: before its boot manager (`BdsDxe`), or, seen under Secure
    /// Boot (SMM), right after GRUB's "Welcome to GRUB!", again at every warm reset, while
    /// a cold start of the same disk and variables boots at once (checked by hand). When the
    /// console has been silent for [`RESET_SILENCE`] since a reset and no kernel has started
    /// (`Linux version`, `EFI stub:`), QEMU is stopped and started again with the same
    /// command line (a cold boot: same disks, same OVMF variables, same ports), twice at
    /// most. A boot loader of slipway's that hangs for good hangs again after the restart, so
    /// the test still fails (with the console); each restart is logged loudly, with the
    /// registers.
    fn restart_if_firmware_silent(&self, watch: &mut ResetWatch) -> Result<()> {
        if !self.firmware.uefi() {
            return Ok(());
        }
        let len = self.serial_mark();
        let now = Instant::now();
        if watch.since.is_none() || len != watch.len {
            (watch.len, watch.since) = (len, Some(now));
            return Ok(());
        }
        if watch
            .since
            .is_some_and(|t| now.duration_since(t) < RESET_SILENCE)
        {
            return Ok(());
        }
        let tail = self.serial_text_since(len.saturating_sub(64 * 1024));
        let Some(reset) = tail.rfind("reboot: machine restart") else {
            return Ok(());
        };
        // The kernel started: whatever is silent now is the guest's own.
        let kernel = ["Linux version", "EFI stub:"]
            .iter()
            .any(|k| tail[reset..].contains(k));
        if kernel || self.exit_status().is_some() {
            return Ok(());
        }
        ensure!(
            watch.restarts < 2,
            "VM {}: the firmware stayed silent after a reset twice; not trying again\n{}",
            self.name,
            self.diagnostics()
        );
        watch.restarts += 1;
        let registers = self
            .qmp(
                "human-monitor-command",
                Some(json!({"command-line": "info registers"})),
            )
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|e| format!("(no registers: {e:#})"));
        let rip = registers
            .lines()
            .find(|l| l.contains("RIP="))
            .unwrap_or(&registers)
            .trim();
        log(format_args!(
            "[{}] the firmware or the boot loader printed nothing for {}s after the guest's \
             reset, before any kernel ({rip}); restarting QEMU (cold boot, same disks and \
             variables)",
            self.name,
            RESET_SILENCE.as_secs()
        ));
        let mut child = self.lock_child();
        terminate(&mut child);
        let _ = fs::remove_file(&self.qmp_socket);
        let log_file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.qemu_log)
            .with_context(|| format!("opening {}", self.qemu_log.display()))?;
        let mut cmd = Command::new(&self.command_line[0]);
        cmd.args(&self.command_line[1..])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let mut fresh = slipway::sys::cmd::spawn(&mut cmd)
            .with_context(|| format!("VM {}: restarting QEMU", self.name))?;
        wait_until_ready(&mut fresh, &self.qmp_socket, scaled(STARTUP_TIMEOUT))
            .with_context(|| format!("VM {}: QEMU did not start again", self.name))?;
        self.pid.store(fresh.id(), Ordering::SeqCst);
        *child = fresh;
        (watch.len, watch.since) = (self.serial_mark(), Some(Instant::now()));
        Ok(())
    }

    fn lock_child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let keep_logs = thread::panicking() || self.failed.load(Ordering::SeqCst);
        self.kill();
        if keep_logs {
            match self.save_artifacts() {
                Ok(path) => log(format_args!(
                    "[{}] serial console of the failed VM saved to {}",
                    self.name,
                    path.display()
                )),
                Err(e) => log(format_args!(
                    "[{}] could not save the VM's logs: {e:#}",
                    self.name
                )),
            }
        }
    }
}

/// What [`Vm::restart_if_firmware_silent`] remembers between two looks.
#[derive(Default)]
struct ResetWatch {
    len: usize,
    since: Option<Instant>,
    restarts: u32,
}

// ---------------------------------------------------------------------------
// Free helpers

/// Copies `serial` and `qemu_stderr` into `dest` as
/// `<name>-<unix time>.serial.log` and `<name>-<unix time>.qemu-stderr.log`
/// (with `-N` added if such files exist). A missing source yields a file
/// saying so. Returns the serial log's copy.
pub fn copy_vm_logs(name: &str, serial: &Path, qemu_stderr: &Path, dest: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let base: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut n = 0u32;
    let (prefix, serial_copy, mut serial_out) = loop {
        let prefix = match n {
            0 => format!("{base}-{stamp}"),
            n => format!("{base}-{stamp}-{n}"),
        };
        let path = dest.join(format!("{prefix}.serial.log"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => break (prefix, path, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(anyhow!(e).context(format!("creating {}", path.display()))),
        }
    };
    copy_into(serial, &mut serial_out)?;
    let stderr_path = dest.join(format!("{prefix}.qemu-stderr.log"));
    let mut stderr_out = File::create(&stderr_path)
        .with_context(|| format!("creating {}", stderr_path.display()))?;
    copy_into(qemu_stderr, &mut stderr_out)?;
    Ok(serial_copy)
}

fn copy_into(source: &Path, out: &mut File) -> Result<()> {
    match File::open(source) {
        Ok(mut file) => {
            io::copy(&mut file, out).with_context(|| format!("copying {}", source.display()))?;
        }
        Err(e) => writeln!(out, "(no log: cannot open {}: {e})", source.display())?,
    }
    Ok(())
}

/// Creates an ed25519 key pair `dir/id_ed25519` without passphrase; returns
/// the private key's path and the public key line.
pub fn generate_ssh_key(dir: &Path) -> Result<(PathBuf, String)> {
    let private = dir.join("id_ed25519");
    ensure!(!private.exists(), "{} already exists", private.display());
    let out = Command::new("ssh-keygen")
        .args(["-t", "ed25519", "-N", "", "-q", "-C", "slipway-test", "-f"])
        .arg(&private)
        .stdin(Stdio::null())
        .output()
        .context("running ssh-keygen (Debian package openssh-client)")?;
    ensure!(
        out.status.success(),
        "ssh-keygen failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let public = fs::read_to_string(private.with_extension("pub"))
        .context("reading the generated public key")?;
    Ok((private, public.trim().to_string()))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// The OVMF code and variable-template files of a firmware, or an error naming the
/// Debian package that provides them.
pub fn ovmf_paths(firmware: Firmware) -> Result<(PathBuf, PathBuf)> {
    let (code, vars) = match firmware {
        Firmware::SecureBoot(keys) => (
            OVMF_SECBOOT_CODE,
            match keys {
                SbKeys::Microsoft => OVMF_MS_VARS,
                SbKeys::Snakeoil => OVMF_SNAKEOIL_VARS,
            },
        ),
        _ => (OVMF_CODE, OVMF_VARS),
    };
    let (code, vars) = (PathBuf::from(code), PathBuf::from(vars));
    for file in [&code, &vars] {
        ensure!(
            file.is_file(),
            "UEFI firmware {} is missing: install the Debian package `ovmf` \
             (apt-get install ovmf)",
            file.display()
        );
    }
    Ok((code, vars))
}

/// Fails with the Debian package to install unless `qemu-system-x86_64` is
/// on `PATH`.
pub fn require_qemu() -> Result<()> {
    ensure!(
        find_in_path(QEMU_BINARY).is_some(),
        "{QEMU_BINARY} not found on PATH: install the Debian package `qemu-system-x86` \
         (apt-get install qemu-system-x86)"
    );
    Ok(())
}

fn find_in_path(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Removes ANSI escape sequences, carriage returns and other control
/// characters and applies backspaces, so console text is readable and
/// matchable.
pub fn clean_console(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: parameter and intermediate bytes up to a final byte;
                // other escapes (such as ESC c) are two characters long.
                if chars.next() == Some('[') {
                    for n in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&n) {
                            break;
                        }
                    }
                }
            }
            '\u{8}' => {
                if !out.ends_with('\n') {
                    out.pop();
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn find_any(raw: &str, needles: &[&str]) -> Option<usize> {
    needles.iter().position(|n| raw.contains(n)).or_else(|| {
        let clean = clean_console(raw);
        needles.iter().position(|n| clean.contains(n))
    })
}

/// `systemctl VERB` as root whether or not the ssh user is root.
fn as_root_systemctl(verb: &str) -> String {
    format!(r#"if [ "$(id -u)" = 0 ]; then systemctl {verb}; else sudo -n systemctl {verb}; fi"#)
}

/// Kills a child process: SIGTERM, a grace period, SIGKILL; always reaps.
/// Never panics.
fn terminate(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` (stdin closed, output captured), killing it after `timeout`.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = slipway::sys::cmd::spawn(cmd).with_context(|| {
        if program == "ssh" {
            "spawning ssh (Debian package openssh-client)".to_string()
        } else {
            format!("spawning {program}")
        }
    })?;
    let readers = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .map(|pipe| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for child")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(25));
    };
    let [stdout, stderr] = readers.map(|r| r.join().unwrap_or_default());
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => bail!(
            "{program} timed out after {:.1}s\n--- stdout ---\n{}\n--- stderr ---\n{}",
            timeout.as_secs_f64(),
            String::from_utf8_lossy(&stdout).trim_end(),
            String::from_utf8_lossy(&stderr).trim_end()
        ),
    }
}

/// Waits until QEMU answers QMP, or fails if it exits or the timeout passes.
fn wait_until_ready(child: &mut Child, qmp_socket: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for QEMU")? {
            bail!("QEMU exited during startup ({status})");
        }
        if qmp_socket.exists()
            && qmp_call(qmp_socket, "query-status", None, Duration::from_secs(2)).is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "QEMU did not answer on {} within {:.1}s",
                qmp_socket.display(),
                timeout.as_secs_f64()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// One QMP exchange on a fresh connection: greeting, capabilities, command.
fn qmp_call(
    socket: &Path,
    execute: &str,
    arguments: Option<Value>,
    timeout: Duration,
) -> Result<Value> {
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let greeting = qmp_read(&mut reader)?;
    ensure!(
        greeting.get("QMP").is_some(),
        "not a QMP greeting: {greeting}"
    );
    let mut send = |request: Value| -> Result<Value> {
        writeln!(writer, "{request}")?;
        loop {
            let reply = qmp_read(&mut reader)?;
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(error) = reply.get("error") {
                bail!("QMP error: {error}");
            }
            return reply
                .get("return")
                .cloned()
                .ok_or_else(|| anyhow!("unexpected QMP reply: {reply}"));
        }
    };
    send(json!({ "execute": "qmp_capabilities" }))?;
    let mut request = json!({ "execute": execute });
    if let Some(arguments) = arguments {
        request["arguments"] = arguments;
    }
    send(request)
}

fn qmp_read(reader: &mut impl BufRead) -> Result<Value> {
    let mut line = String::new();
    ensure!(reader.read_line(&mut line)? > 0, "QMP connection closed");
    serde_json::from_str(&line).with_context(|| format!("bad QMP line {line:?}"))
}

/// Escapes a value for a QEMU `key=value,...` option list.
fn escape_opt(value: &str) -> String {
    value.replace(',', ",,")
}

fn path_str(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_string)
        .with_context(|| format!("path {} is not UTF-8", path.display()))
}

fn shell_join(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(contents)?;
    tmp.persist(path)?;
    Ok(())
}

fn log(message: impl fmt::Display) {
    eprintln!("[slipway-vm] {message}");
}
