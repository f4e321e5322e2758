//! Tests of the QEMU harness in `tests/common/vm.rs`.
//!
//! The slow ones boot a kernel taken from `SLIPWAY_TEST_KERNEL` directly
//! (no initrd, no disk), so it panics when mounting its root fs; they run with
//! `cargo test --test vm_harness -- --include-ignored`.

mod common;

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::vm::{
    Accel, Disk, DiskFormat, DiskInterface, Firmware, ROOT_MOUNT_PANIC, Vm, VmConfig, accel_for,
    accel_override, clean_console, copy_vm_logs, free_tcp_port, generate_ssh_key, parse_accel,
    tail_lines,
};
use common::{parse_timeout_scale, scaled, test_kernel};

const ROOT_PANIC: &str = "VFS: Unable to mount root fs";
const NEVER: &str = "slipway-needle-that-never-appears";
/// Env var that turns `pdeathsig_helper` into a real VM holder.
const HELPER_PIDFILE: &str = "SLIPWAY_VM_HARNESS_HELPER_PIDFILE";

/// A direct kernel boot without root fs. With `exit_on_panic` the kernel
/// reboots at once on panic and QEMU exits (`-no-reboot`); otherwise it hangs.
fn rootless_boot(name: &str, kernel: &Path, exit_on_panic: bool) -> VmConfig {
    let panic = if exit_on_panic { "-1" } else { "0" };
    VmConfig::new(name)
        .kernel(kernel)
        .append(format!("console=ttyS0 panic={panic}"))
        .no_reboot(exit_on_panic)
        .memory_mib(512)
}

fn process_alive(pid: u32) -> bool {
    // A zombie has exited already; only its parent's wait is missing.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

fn boot_to_root_panic(firmware: Firmware) {
    let kernel = test_kernel();
    let accel = accel_for(Some(&kernel));
    let name = format!("rootless-{firmware}");
    let mut vm = Vm::start(
        rootless_boot(&name, &kernel, true)
            .firmware(firmware)
            .accel(accel),
    )
    .unwrap();
    assert_eq!(vm.accel(), accel);
    if firmware == Firmware::Uefi {
        assert!(vm.dir().join("OVMF_VARS.fd").is_file());
    }
    vm.wait_for_serial(ROOT_PANIC, Duration::from_secs(240))
        .unwrap();
    let panicked = vm.elapsed();
    let status = vm.wait_for_exit(Duration::from_secs(60)).unwrap();
    let exited = vm.elapsed();
    assert!(status.success(), "QEMU exit status {status}");
    assert!(vm.serial_text().contains("Kernel panic"));
    eprintln!(
        "{firmware} direct kernel boot under {accel}: root-mount panic after {:.1}s, \
         QEMU exited after {:.1}s",
        panicked.as_secs_f64(),
        exited.as_secs_f64()
    );
}

/// (1) The kernel reaches its root-mount panic and QEMU exits by itself.
#[test]
#[ignore = "slow: boots QEMU"]
fn bios_direct_kernel_boot_reaches_root_panic_and_exits() {
    boot_to_root_panic(Firmware::Bios);
}

/// (4) The same under OVMF.
#[test]
#[ignore = "slow: boots QEMU"]
fn uefi_direct_kernel_boot_reaches_root_panic_and_exits() {
    boot_to_root_panic(Firmware::Uefi);
}

/// (2) A needle that never comes fails after the timeout, with the console
/// tail in the error, and leaves the VM running.
#[test]
#[ignore = "slow: boots QEMU"]
fn wait_for_serial_times_out_with_console_tail() {
    let kernel = test_kernel();
    let vm = Vm::start(rootless_boot("serial-timeout", &kernel, false)).unwrap();
    vm.wait_for_serial("Kernel panic", Duration::from_secs(240))
        .unwrap();

    let timeout = Duration::from_secs(3);
    let started = Instant::now();
    let err = vm.wait_for_serial(NEVER, timeout).unwrap_err();
    let waited = started.elapsed();
    let message = format!("{err:#}");

    assert!(waited >= scaled(timeout), "gave up early: {waited:?}");
    assert!(
        waited < scaled(timeout) + Duration::from_secs(10),
        "gave up late: {waited:?}"
    );
    assert!(message.contains("timed out"), "{message}");
    assert!(message.contains(NEVER), "{message}");
    assert!(message.contains("last 40 lines"), "{message}");
    assert!(
        message.contains(ROOT_PANIC),
        "no console tail in: {message}"
    );
    assert!(vm.is_running());

    // Output before a mark does not satisfy a wait that starts at the mark.
    let mark = vm.serial_mark();
    assert!(mark > 0);
    vm.wait_for_serial_since(0, "Kernel panic", timeout)
        .unwrap();
    let err = vm
        .wait_for_serial_since(mark, "Kernel panic", timeout)
        .unwrap_err();
    assert!(format!("{err:#}").contains("timed out"), "{err:#}");
}

/// (2b) Waiting fails early, not at the timeout, when QEMU exits.
#[test]
#[ignore = "slow: boots QEMU"]
fn wait_for_serial_fails_early_when_qemu_exits() {
    let kernel = test_kernel();
    let vm = Vm::start(rootless_boot("serial-exit", &kernel, true)).unwrap();
    let err = vm
        .wait_for_serial(NEVER, Duration::from_secs(3600))
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(vm.elapsed() < Duration::from_secs(600), "{message}");
    assert!(message.contains("QEMU exited"), "{message}");
    assert!(message.contains("Kernel panic"), "{message}");
}

/// (3) Dropping a running Vm kills and reaps QEMU and removes its directory.
#[test]
#[ignore = "slow: boots QEMU"]
fn dropping_a_running_vm_leaves_no_qemu_behind() {
    let kernel = test_kernel();
    let vm = Vm::start(rootless_boot("drop", &kernel, false)).unwrap();
    vm.wait_for_serial("Linux version", Duration::from_secs(120))
        .unwrap();
    let (pid, dir) = (vm.pid(), vm.dir().to_path_buf());
    assert!(process_alive(pid));
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(vm);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} still exists (alive or zombie) after drop"
    );
    assert!(!dir.exists(), "{} not removed", dir.display());
}

/// Not a test on its own: when started by
/// `qemu_dies_with_the_test_process` it starts a VM, reports QEMU's pid and
/// waits to be killed.
#[test]
#[ignore = "helper of qemu_dies_with_the_test_process"]
fn pdeathsig_helper() {
    let Some(pidfile) = std::env::var_os(HELPER_PIDFILE) else {
        return;
    };
    let kernel = test_kernel();
    let vm = Vm::start(rootless_boot("pdeathsig", &kernel, false).accel(Accel::Tcg)).unwrap();
    let tmp = PathBuf::from(&pidfile).with_extension("tmp");
    fs::write(&tmp, vm.pid().to_string()).unwrap();
    fs::rename(&tmp, &pidfile).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// (3b) QEMU dies when the test process is SIGKILLed (no Drop runs then).
#[test]
#[ignore = "slow: boots QEMU"]
fn qemu_dies_with_the_test_process() {
    test_kernel(); // fail here, not in the helper, without a kernel
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("qemu.pid");
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pdeathsig_helper",
            "--include-ignored",
            "--nocapture",
        ])
        .env(HELPER_PIDFILE, &pidfile)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + scaled(Duration::from_secs(60));
    let qemu_pid: u32 = loop {
        if let Ok(text) = fs::read_to_string(&pidfile) {
            break text.trim().parse().unwrap();
        }
        if let Some(status) = helper.try_wait().unwrap() {
            panic!("helper exited ({status}) before starting QEMU");
        }
        assert!(Instant::now() < deadline, "helper did not start QEMU");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(process_alive(qemu_pid));
    helper.kill().unwrap(); // SIGKILL: no destructors run in the helper
    helper.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(qemu_pid) {
        assert!(
            Instant::now() < deadline,
            "QEMU {qemu_pid} outlived its test process"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (6b) A VM dropped while its thread panics, or after `mark_failed`, leaves
/// its console in the artifacts directory; a passing one does not.
#[test]
#[ignore = "slow: boots QEMU"]
fn failed_vm_console_is_saved_on_drop() {
    let kernel = test_kernel();
    let artifacts = tempfile::tempdir().unwrap();
    let cfg = |name: &str| {
        rootless_boot(name, &kernel, false)
            .accel(Accel::Tcg)
            .artifacts_dir(artifacts.path())
    };
    let saved = |prefix: &str| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(artifacts.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{prefix}-"))
            })
            .collect();
        found.sort();
        found
    };

    {
        let vm = Vm::start(cfg("passing")).unwrap();
        vm.wait_for_serial("Linux version", Duration::from_secs(120))
            .unwrap();
    }
    assert!(saved("passing").is_empty());

    {
        let vm = Vm::start(cfg("marked")).unwrap();
        vm.wait_for_serial("Kernel panic", Duration::from_secs(240))
            .unwrap();
        vm.mark_failed();
    }
    let files = saved("marked");
    assert_eq!(files.len(), 2, "{files:?}");
    let serial = files
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".serial.log"))
        .unwrap();
    assert!(fs::read_to_string(serial).unwrap().contains(ROOT_PANIC));
    assert!(
        files
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".qemu-stderr.log"))
    );

    let outcome = std::thread::scope(|s| {
        s.spawn(|| {
            let vm = Vm::start(cfg("panicking")).unwrap();
            vm.wait_for_serial("Linux version", Duration::from_secs(120))
                .unwrap();
            panic!("deliberate test failure");
        })
        .join()
    });
    assert!(outcome.is_err());
    let files = saved("panicking");
    assert_eq!(files.len(), 2, "{files:?}");
    let serial = files
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".serial.log"))
        .unwrap();
    assert!(
        fs::read_to_string(serial)
            .unwrap()
            .contains("Linux version")
    );
}

/// User networking: the forwarded ssh port listens on 127.0.0.1 only, QMP
/// answers, and `wait_for_ssh` fails in time with a useful error when no
/// guest answers.
#[test]
#[ignore = "slow: boots QEMU"]
fn user_net_forwards_ssh_port_and_wait_for_ssh_times_out() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = generate_ssh_key(keys.path()).unwrap();
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    // No kernel and no disk: the firmware finds nothing to boot.
    let vm = Vm::start(
        VmConfig::new("user-net")
            .accel(Accel::Tcg)
            .memory_mib(256)
            .user_net_ssh()
            .ssh("root", &key),
    )
    .unwrap();
    let port = vm.ssh_port().expect("ssh port");
    TcpStream::connect(("127.0.0.1", port)).expect("hostfwd listens on 127.0.0.1");
    let args = vm.command_line().join(" ");
    assert!(args.contains("restrict=on"), "{args}");
    assert!(!args.contains("guestfwd"), "{args}");
    let status = vm.qmp("query-status", None).unwrap();
    assert_eq!(status["status"], "running", "{status}");

    let started = Instant::now();
    let err = vm.wait_for_ssh(Duration::from_secs(5)).unwrap_err();
    let message = format!("{err:#}");
    assert!(started.elapsed() < scaled(Duration::from_secs(5)) + Duration::from_secs(40));
    assert!(message.contains("ssh to 127.0.0.1"), "{message}");
    assert!(message.contains("last error"), "{message}");
}

/// PXE plumbing: QEMU runs inside a network namespace on a tap device and
/// iPXE (the NIC's option ROM) drives the NIC and prints to the serial
/// console, under SeaBIOS and OVMF. Needs root and iproute2; the namespace
/// has no route anywhere.
#[test]
#[ignore = "slow: boots QEMU"]
fn tap_in_netns_network_boot_runs_ipxe() {
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let ip = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ns = Netns(format!("slwvm-{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&["-n", &ns.0, "tuntap", "add", "dev", "tap0", "mode", "tap"]);
    ip(&["-n", &ns.0, "link", "set", "tap0", "up"]);

    let mac = "52:54:00:5c:17:01";
    for firmware in [Firmware::Bios, Firmware::Uefi] {
        let vm = Vm::start(
            VmConfig::new(format!("pxe-{firmware}"))
                .accel(Accel::Tcg)
                .memory_mib(512)
                .firmware(firmware)
                .tap("tap0", mac, Some(&ns.0))
                .boot_order("n"),
        )
        .unwrap();
        assert_eq!(&vm.command_line()[..4], ["ip", "netns", "exec", &ns.0]);
        // `ip netns exec` execs QEMU, so the pid is QEMU's own.
        let comm = fs::read_to_string(format!("/proc/{}/comm", vm.pid())).unwrap();
        assert!(comm.starts_with("qemu-system"), "{comm}");
        vm.wait_for_serial("iPXE", Duration::from_secs(120))
            .unwrap();
        vm.wait_for_serial(mac, Duration::from_secs(120)).unwrap();
    }
}

/// (5) `SLIPWAY_TEST_ACCEL` parsing; `accel_for` reads the variable through
/// `accel_override`, so the environment is not touched here.
#[test]
fn accel_override_parsing() {
    assert_eq!(accel_override(None).unwrap(), None);
    assert_eq!(accel_override(Some("")).unwrap(), None);
    assert_eq!(accel_override(Some("  ")).unwrap(), None);
    assert_eq!(accel_override(Some("kvm")).unwrap(), Some(Accel::Kvm));
    assert_eq!(accel_override(Some("TCG\n")).unwrap(), Some(Accel::Tcg));
    let err = accel_override(Some("hvf")).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("SLIPWAY_TEST_ACCEL"), "{message}");
    assert!(message.contains("hvf"), "{message}");
    assert_eq!(parse_accel("Kvm").unwrap(), Accel::Kvm);
    assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
    assert!(parse_accel("kvm,tcg").is_err());
}

#[test]
fn timeout_scale_parsing() {
    assert_eq!(parse_timeout_scale(None).unwrap(), 1.0);
    assert_eq!(parse_timeout_scale(Some("")).unwrap(), 1.0);
    assert_eq!(parse_timeout_scale(Some("2.5")).unwrap(), 2.5);
    assert!(parse_timeout_scale(Some("0")).is_err());
    assert!(parse_timeout_scale(Some("-1")).is_err());
    assert!(parse_timeout_scale(Some("fast")).is_err());
}

/// (6) The copy behind "keep the console of a failed VM".
#[test]
fn copy_vm_logs_keeps_serial_and_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let serial = tmp.path().join("serial.log");
    let stderr = tmp.path().join("qemu-stderr.log");
    fs::write(&serial, "Booting...\r\nlogin: ").unwrap();
    fs::write(&stderr, "qemu: warning\n").unwrap();
    let dest = tmp.path().join("artifacts/nested");

    let first = copy_vm_logs("pxe install/uefi", &serial, &stderr, &dest).unwrap();
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = name
        .strip_prefix("pxe_install_uefi-")
        .and_then(|rest| rest.strip_suffix(".serial.log"))
        .unwrap_or_else(|| panic!("unexpected name {name}"));
    assert!(stamp.parse::<u64>().is_ok(), "{name}");
    assert_eq!(fs::read(&first).unwrap(), fs::read(&serial).unwrap());
    let stderr_copy = dest.join(format!("pxe_install_uefi-{stamp}.qemu-stderr.log"));
    assert_eq!(fs::read_to_string(stderr_copy).unwrap(), "qemu: warning\n");

    // The same name again never overwrites.
    let second = copy_vm_logs("pxe install/uefi", &serial, &stderr, &dest).unwrap();
    assert_ne!(first, second);
    assert!(second.is_file());

    // A VM that died before writing anything still leaves a note.
    let missing = copy_vm_logs("early", &tmp.path().join("nope"), &stderr, &dest).unwrap();
    assert!(
        fs::read_to_string(missing)
            .unwrap()
            .contains("(no log: cannot open")
    );
}

#[test]
fn qemu_command_line_from_config() {
    let dir = Path::new("/tmp/vm,dir");
    let cfg = VmConfig::new("cmdline")
        .disk("/images/host.qcow2")
        .add_disk(
            Disk::new("/images/data.bin")
                .interface(DiskInterface::Ide)
                .read_only(true),
        )
        .add_disk(Disk::new("/images/odd.img").format(DiskFormat::Qcow2))
        .firmware(Firmware::Uefi)
        .snapshot(true)
        .user_net_ssh()
        .boot_order("n")
        .extra_arg("-rtc")
        .extra_arg("base=utc");
    let args = cfg.qemu_args(Accel::Tcg, dir, Some(2222)).unwrap();
    let joined = args.join(" ");
    let has = |pair: [&str; 2]| args.windows(2).any(|w| w == pair);

    assert!(has(["-machine", "q35,graphics=off"]), "{joined}");
    assert!(has(["-accel", "tcg"]) && has(["-cpu", "max"]), "{joined}");
    assert!(has(["-m", "2048"]) && has(["-smp", "2"]), "{joined}");
    assert!(has(["-display", "none"]) && has(["-monitor", "none"]));
    assert!(args.contains(&"-nodefaults".to_string()));
    assert!(has([
        "-chardev",
        "file,id=serial0,path=/tmp/vm,,dir/serial.log,append=on"
    ]));
    assert!(has(["-serial", "chardev:serial0"]));
    assert!(has([
        "-drive",
        "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
    ]));
    assert!(has([
        "-drive",
        "if=pflash,format=raw,unit=1,file=/tmp/vm,,dir/OVMF_VARS.fd"
    ]));
    assert!(has([
        "-drive",
        "file=/images/host.qcow2,format=qcow2,if=virtio,media=disk"
    ]));
    assert!(has([
        "-drive",
        "file=/images/data.bin,format=raw,if=ide,media=disk,readonly=on"
    ]));
    assert!(has([
        "-drive",
        "file=/images/odd.img,format=qcow2,if=virtio,media=disk"
    ]));
    assert!(args.contains(&"-snapshot".to_string()));
    assert!(has([
        "-netdev",
        "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22"
    ]));
    assert!(has(["-device", "virtio-net-pci,netdev=net0"]));
    assert!(has(["-boot", "order=n"]));
    assert!(!args.contains(&"-no-reboot".to_string()));
    assert!(!args.contains(&"-kernel".to_string()));
    assert_eq!(&args[args.len() - 2..], ["-rtc", "base=utc"]);

    let tap = VmConfig::new("tap")
        .accel(Accel::Kvm)
        .kernel("/boot/vmlinuz")
        .initrd("/boot/initrd.img")
        .append("console=ttyS0 quiet")
        .no_reboot(true)
        .tap("tap0", "52:54:00:00:00:01", Some("ns"));
    let args = tap.qemu_args(Accel::Kvm, dir, None).unwrap();
    let has = |pair: [&str; 2]| args.windows(2).any(|w| w == pair);
    assert!(has(["-accel", "kvm"]) && has(["-cpu", "host"]));
    assert!(has(["-kernel", "/boot/vmlinuz"]) && has(["-initrd", "/boot/initrd.img"]));
    assert!(has(["-append", "console=ttyS0 quiet"]));
    assert!(has([
        "-netdev",
        "tap,id=net0,ifname=tap0,script=no,downscript=no"
    ]));
    assert!(has([
        "-device",
        "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01"
    ]));
    assert!(args.contains(&"-no-reboot".to_string()));
    assert!(!args.iter().any(|a| a.starts_with("if=pflash")));

    let bad = VmConfig::new("bad").append("quiet");
    assert!(bad.qemu_args(Accel::Tcg, dir, None).is_err());
}

#[test]
fn console_cleanup_and_tail() {
    let raw =
        "\u{1b}c\u{1b}[2J\u{1b}[0;1miPXE\u{1b}[0m ok\r\nPress Ctrl-B...\u{8} \u{8}\u{8} \u{8}x\r\n";
    assert_eq!(clean_console(raw), "iPXE ok\nPress Ctrl-B.x\n");
    assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
    assert_eq!(tail_lines("a", 5), "a");
    assert!(ROOT_MOUNT_PANIC.iter().any(|n| n.contains("VFS")));
}

#[test]
fn free_ports_are_bindable_on_loopback() {
    let port = free_tcp_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn disk_format_from_extension() {
    assert_eq!(
        DiskFormat::from_path(Path::new("a.qcow2")),
        DiskFormat::Qcow2
    );
    assert_eq!(
        DiskFormat::from_path(Path::new("a.QCOW2")),
        DiskFormat::Qcow2
    );
    assert_eq!(DiskFormat::from_path(Path::new("a.img")), DiskFormat::Raw);
    assert_eq!(DiskFormat::from_path(Path::new("a.raw")), DiskFormat::Raw);
    assert_eq!(DiskFormat::from_path(Path::new("disk")), DiskFormat::Raw);
}
