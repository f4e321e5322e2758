//! Slow suite for `slipway install`: the composed host's image booted under QEMU with a
//! second, empty disk; inside it, `slipway install --device /dev/vdb` from a kickstart whose
//! `ostreesetup --url` is the test machine's repository server (reached through QEMU's
//! `guestfwd`). First an install that fails after partitioning and mkfs (a failpoint):
//! non-zero exit, and the disk is left without signatures or partition table. Then a good
//! one: the machine is powered off and a new VM boots from that disk, with the installer's
//! own disk (another slipway install, same file system labels) as its second disk and the
//! kickstart's key; the booted commit, root and /boot from the first disk, found by file
//! system UUID (`root=UUID=`, GRUB's search), are checked under SeaBIOS (tests/pxe_slow.rs
//! boots an installed disk under OVMF).
//!
//! The commit is served unsigned (`ostreesetup --nogpg`): the test repository is not signed.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::fixtures::*;
use common::vm::{self, Disk, Firmware, Vm, VmConfig};

/// Where the guest finds the repository server.
const GUEST_SERVER: &str = "10.0.2.100:8080";
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(2400);

fn check(vm: &Vm, cmd: &str) -> String {
    vm.ssh_ok(cmd).unwrap_or_else(|e| {
        vm.mark_failed();
        panic!("`{cmd}` failed: {e:#}\n{}", vm.diagnostics())
    })
}

/// The kickstart the guest installs with; `post` is the body of a `%post --erroronfail`.
fn kickstart(reference: &str, public_key: &str, post: &str) -> String {
    format!(
        "ostreesetup --osname=debian --remote=debian --url=http://{GUEST_SERVER}/repo --ref={reference} --nogpg\n\
         zerombr\n\
         clearpart --all --initlabel\n\
         autopart --type=plain\n\
         bootloader --append=\"slipway.installed=1\" --timeout=1\n\
         network --hostname=installed\n\
         user --name=core --groups=sudo\n\
         sshkey --username=core \"{public_key}\"\n\
         sshkey --username=root \"{public_key}\"\n\
         %post --erroronfail\n{post}\n%end\n"
    )
}

/// Put `text` at `path` on the guest.
fn write_guest_file(vm: &Vm, path: &str, text: &str) {
    check(
        vm,
        &format!("cat > {path} <<'SLIPWAY_EOF'\n{text}SLIPWAY_EOF\n"),
    );
}

#[test]
#[ignore = "slow: boots the host image, installs onto a second disk, boots that disk"]
fn install_onto_a_second_disk_and_boot_it_and_a_failed_install_wipes_it() {
    let t0 = Instant::now();
    vm::require_qemu().unwrap();
    let host = composed_host();
    let dir = tempfile::tempdir_in(cache_root()).unwrap();
    let served = dir.path().join("repo");
    ostree(&served, &["init", "--mode=archive"]);
    ostree(
        &served,
        &["pull-local", host.repo.to_str().unwrap(), &host.reference],
    );
    ostree(&served, &["summary", "-u"]);
    let server = RepoServer::start(dir.path());

    let base = host_image("raw");
    let disk = dir.path().join("installer.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&base)
            .arg(&disk),
    );
    let target = dir.path().join("target.raw");
    std::fs::File::create(&target)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let (key, public) = test_ssh_key();
    let accel = vm::accel_for(Some(&host_kernel()));
    let cfg = VmConfig::new("install-from")
        .disk(&disk)
        .add_disk(Disk::new(&target))
        .firmware(Firmware::Bios)
        .accel(accel)
        .memory_mib(2048)
        .user_net_ssh()
        .guest_forward(GUEST_SERVER, server.port)
        .ssh("root", &key);
    let mut vm = Vm::start(cfg).unwrap();
    if let Err(e) = vm.wait_for_ssh(BOOT_TIMEOUT) {
        vm.mark_failed();
        panic!("no SSH: {e:#}\n{}", vm.diagnostics());
    }
    eprintln!("installer VM up after {:.0}s", t0.elapsed().as_secs_f64());
    // The second disk is empty: the rule would pick it too.
    let plan = check(
        &vm,
        "cat > /root/dry.ks <<'EOF'\nostreesetup --osname=debian --url=http://h/repo --ref=r --nogpg\nautopart\nEOF\nslipway install --kickstart /root/dry.ks --dry-run",
    );
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(plan["disk"], "/dev/vdb", "{plan}");

    // A failure after the disk was partitioned and its file systems made (a failpoint: the PXE lab,
    // tests/pxe_slow.rs, fails a %post after the pull): non-zero exit, nothing left on it.
    write_guest_file(
        &vm,
        "/root/fail.ks",
        &kickstart(&host.reference, &public, "true"),
    );
    let o = vm
        .ssh_with_timeout(
            "SLIPWAY_FAILPOINTS=install-after-mkfs=error \
             slipway install --kickstart /root/fail.ks --device /dev/vdb",
            INSTALL_TIMEOUT,
        )
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "the failing install succeeded: {err}");
    assert!(err.contains("failpoint install-after-mkfs"), "{err}");
    assert!(err.contains("wiped"), "{err}");
    assert_eq!(check(&vm, "wipefs -n /dev/vdb").trim(), "");
    let o = vm.ssh("sfdisk -d /dev/vdb").unwrap();
    assert!(!o.status.success(), "a partition table is left on /dev/vdb");
    eprintln!(
        "failed install wiped after {:.0}s",
        t0.elapsed().as_secs_f64()
    );

    // The good install.
    write_guest_file(
        &vm,
        "/root/good.ks",
        &kickstart(
            &host.reference,
            &public,
            "echo installed > /etc/slipway-installed",
        ),
    );
    let o = vm
        .ssh_with_timeout(
            "slipway install --kickstart /root/good.ks --device /dev/vdb",
            INSTALL_TIMEOUT,
        )
        .unwrap();
    assert!(
        o.status.success(),
        "install failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("installed after {:.0}s", t0.elapsed().as_secs_f64());
    let _ = vm.ssh("sync; systemctl poweroff");
    let _ = vm.wait_for_exit(Duration::from_secs(300));
    drop(vm);

    // A new machine with the installed disk first and, second, the installer's own disk:
    // another slipway install with the same file system labels. The installed host must
    // find its /boot and root by UUID, on the first disk.
    let cfg = VmConfig::new("installed")
        .disk(&target)
        .add_disk(Disk::new(&disk))
        .firmware(Firmware::Bios)
        .accel(accel)
        .user_net_ssh()
        .ssh("root", &key);
    let vm = Vm::start(cfg).unwrap();
    if let Err(e) = vm.wait_for_ssh(BOOT_TIMEOUT) {
        vm.mark_failed();
        panic!(
            "the installed disk does not boot: {e:#}\n{}",
            vm.diagnostics()
        );
    }
    let status: serde_json::Value =
        serde_json::from_str(&check(&vm, "slipway host status --json")).unwrap();
    let booted = status["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["booted"] == true)
        .cloned()
        .unwrap_or_else(|| panic!("nothing booted: {status}"));
    assert_eq!(booted["commit"], host.commit.as_str(), "{status}");
    let cmdline = check(&vm, "cat /proc/cmdline");
    let root_uuid = check(&vm, "findmnt -no UUID /sysroot").trim().to_string();
    assert!(
        cmdline.contains(&format!("root=UUID={root_uuid}")),
        "{cmdline} (root {root_uuid})"
    );
    assert!(cmdline.contains("slipway.installed=1"), "{cmdline}");
    let fstab = check(&vm, "cat /etc/fstab");
    let boot_uuid = fstab
        .lines()
        .find_map(|l| l.strip_prefix("UUID=").filter(|r| r.contains(" /boot ")))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no /boot by UUID in fstab:\n{fstab}"))
        .to_string();
    let labels = check(&vm, "lsblk -rno NAME,LABEL /dev/vdb");
    assert!(
        labels
            .lines()
            .any(|l| l.ends_with(&format!(" {}", slipway::sysroot::bootloader::BOOT_LABEL))),
        "the second disk has no boot file system with the same label: {labels}"
    );
    let root_dev = check(&vm, "findmnt -no SOURCE /sysroot").trim().to_string();
    assert!(root_dev.starts_with("/dev/vda"), "root from {root_dev}");
    let source = check(&vm, "findmnt -no SOURCE /boot").trim().to_string();
    assert!(source.starts_with("/dev/vda"), "/boot from {source}");
    let by_uuid = check(&vm, &format!("readlink -f /dev/disk/by-uuid/{boot_uuid}"))
        .trim()
        .to_string();
    assert_eq!(source, by_uuid, "/boot is not the UUID's partition");
    let menu = check(&vm, "cat /boot/loader/grub.cfg");
    assert!(
        menu.contains(&format!("--fs-uuid {boot_uuid}")),
        "the menu does not find /boot by UUID:\n{menu}"
    );
    assert_eq!(check(&vm, "cat /etc/slipway-installed").trim(), "installed");
    assert_eq!(check(&vm, "hostname").trim(), "installed");
    eprintln!(
        "installed disk booted (BIOS) after {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    let _ = vm.ssh("systemctl poweroff");
}
