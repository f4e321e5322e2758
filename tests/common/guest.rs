//! Helpers for slow tests that drive a booted slipway host over SSH: compose into a
//! repository, read `host status`, wait through reboots until a commit is booted and judged,
//! and compare commits file by file.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fixtures::*;
use super::vm::Vm;

/// Compose `treefile` into `repo`; the commit.
pub fn compose(repo: &Path, treefile: &Path) -> String {
    let t = Instant::now();
    let out = stdout_of(
        slipway()
            .args(["compose", "tree", "--repo"])
            .arg(repo)
            .arg("--cachedir")
            .arg(apt_cache())
            .arg(treefile),
    );
    eprintln!(
        "composed {} in {:.0}s",
        treefile.display(),
        t.elapsed().as_secs_f64()
    );
    out.trim().to_string()
}

/// `text` without ANSI escape sequences (systemd colours its console status lines).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

pub fn check(vm: &Vm, cmd: &str) -> String {
    vm.ssh_ok(cmd).unwrap_or_else(|e| {
        vm.mark_failed();
        panic!("`{cmd}` failed: {e:#}\n{}", vm.diagnostics())
    })
}

pub fn status(vm: &Vm) -> Value {
    serde_json::from_str(&check(vm, "slipway host status --json")).unwrap()
}

/// (commit, serial) of the booted deployment.
pub fn booted(vm: &Vm) -> (String, i64) {
    let s = status(vm);
    let d = s["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["booted"] == true)
        .cloned()
        .unwrap_or_else(|| panic!("nothing booted: {s}"));
    (
        d["commit"].as_str().unwrap().to_string(),
        d["serial"].as_i64().unwrap(),
    )
}

/// Run `cmd` (which ends in a reboot), then wait through as many boots as it takes until
/// `commit` is booted and its gate has judged it.
pub fn until_booted(vm: &Vm, cmd: &str, commit: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    let mut old = vm.boot_id().unwrap();
    // The command pulls before it reboots: give it time (the connection drops at the reboot).
    let _ = vm.ssh_with_timeout(cmd, Duration::from_secs(900));
    loop {
        let left = timeout.checked_sub(start.elapsed()).unwrap_or_else(|| {
            vm.mark_failed();
            panic!("{commit} was not booted in time\n{}", vm.diagnostics())
        });
        if let Err(e) = vm.wait_for_boot_other_than(&old, Instant::now(), left) {
            vm.mark_failed();
            panic!("waiting for {commit}: {e:#}");
        }
        let Ok(id) = vm.boot_id() else { continue };
        old = id.clone();
        // This boot's verdict; the gate may reboot the machine instead.
        let deadline = Instant::now() + Duration::from_secs(300);
        let judged = loop {
            if let Ok(o) =
                vm.ssh("cat /proc/sys/kernel/random/boot_id; test -e /run/slipway/verdict.json")
            {
                let now = String::from_utf8_lossy(&o.stdout).trim().to_string();
                if !now.is_empty() && now != id {
                    break false;
                }
                if o.status.success() {
                    break true;
                }
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_secs(2));
        };
        // The machine may be going down again (the gate rolling back): ask without panicking.
        let now_booted = vm
            .ssh("slipway host status --json")
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|s| {
                s["deployments"]
                    .as_array()?
                    .iter()
                    .find(|d| d["booted"] == true)
                    .and_then(|d| d["commit"].as_str().map(String::from))
            });
        if judged && now_booted.as_deref() == Some(commit) {
            let _ = vm.ssh("systemctl is-system-running --wait");
            return start.elapsed();
        }
    }
}

/// Bytes of the objects under `repo/objects` whose checksum is in `objects`.
pub fn object_bytes(repo: &Path, objects: &std::collections::BTreeSet<String>) -> u64 {
    objects
        .iter()
        .map(|o| {
            let (a, b) = o.split_at(2);
            std::fs::metadata(repo.join(format!("objects/{a}/{b}.filez")))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}

/// path -> content checksum of every regular file of a commit.
pub fn file_checksums(repo: &Path, commit: &str) -> std::collections::BTreeMap<String, String> {
    ostree(repo, &["ls", "-R", "-C", commit, "/"])
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // -00644 0 0 SIZE CHECKSUM PATH
            Some((w.get(5)?.to_string(), w.get(4)?.to_string()))
        })
        .collect()
}

/// `cmd` run as root over SSH (whoever the VM logs in as); its output, or a panic.
pub fn check_as_root(vm: &Vm, cmd: &str) -> String {
    let o = vm.ssh_as("root", cmd).unwrap();
    if !o.status.success() {
        vm.mark_failed();
        panic!(
            "`{cmd}` as root failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What every host booted from a `slipway image` of `commit` built with the test kickstart
/// (`test_kickstart`) and `--remote-url remote_url` must show, whoever the VM logs in as.
pub fn host_checks(vm: &Vm, commit: &str, remote_url: &str) {
    // The booted deployment is the composed commit; / is an OSTree deployment, /usr read-only.
    let status = check(vm, "ostree admin status");
    assert!(status.contains(&format!("* debian {commit}.0")), "{status}");
    // The upgrade remote given with --remote-url, and the origin following it.
    assert_eq!(
        check(vm, "ostree remote show-url debian").trim(),
        remote_url
    );
    assert!(
        status.contains(&format!("origin refspec: debian:{HOST_REF}")),
        "{status}"
    );
    check(vm, "test -e /run/ostree-booted");
    assert!(
        check(vm, "findmnt -no OPTIONS /usr")
            .split(',')
            .any(|o| o == "ro")
    );
    // Read-only even for root: the write fails on the file system, not on permissions (root
    // can write to /etc), and the failure is touch's, not SSH's (255).
    check_as_root(
        vm,
        "touch /etc/slipway-write-test && rm /etc/slipway-write-test",
    );
    let o = vm.ssh_as("root", "touch /usr/slipway-write-test").unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "touch on /usr as root: {err}");
    assert!(err.contains("Read-only file system"), "{err}");
    // Boot has finished (SSH can come up before docker under emulation), nothing failed.
    let state = vm.ssh("systemctl is-system-running --wait").unwrap();
    let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
    assert_eq!(
        state,
        "running",
        "{}",
        check(vm, "systemctl --failed --no-legend --plain")
    );
    // Containers.
    assert_eq!(
        check(vm, "systemctl is-active docker containerd").trim(),
        "active\nactive"
    );
    let info = check(vm, "docker info --format '{{.ServerVersion}} {{.Driver}}'");
    assert!(info.contains("overlay2"), "{info}");
    check(vm, "kubectl version --client");
    // The health gate judged this boot green before the workloads started.
    assert_eq!(
        check(
            vm,
            "systemctl is-active slipway-boot-check.service slipway-healthy.target"
        )
        .trim(),
        "active\nactive"
    );
    let st: serde_json::Value =
        serde_json::from_str(&check(vm, "slipway host status --json")).unwrap();
    let d = &st["deployments"][0];
    assert_eq!(d["booted"], true, "{st}");
    assert_eq!(d["health"]["last_verdict"]["green"], true, "{st}");
    assert!(d["health"]["marked_good"].is_string(), "{st}");
    // docker needs the host checks' verdict (the first stage; a deployment's bound images,
    // the second, are loaded into docker): boot-check is active once its verdict is in.
    let judged = check(
        vm,
        "systemctl show -p ActiveEnterTimestampMonotonic --value slipway-boot-check.service",
    );
    let docker = check(
        vm,
        "systemctl show -p ExecMainStartTimestampMonotonic --value docker.service",
    );
    assert!(
        judged.trim().parse::<u64>().unwrap() <= docker.trim().parse::<u64>().unwrap(),
        "docker started at {docker} before the host checks' verdict at {judged}"
    );
    // GRUB reads the menu that grubenv names: the one of libostree's current loader.
    let loader = check(vm, "readlink /boot/loader");
    let env = check(vm, "cat /boot/grub/grubenv");
    assert!(
        env.contains(&format!("slipway_loader={}", loader.trim())),
        "{env}"
    );
    check(vm, "test -d /var/lib/docker && test -d /var/lib/containerd");
    assert_eq!(
        check(vm, "systemctl --failed --no-legend --plain").trim(),
        ""
    );
    // The kickstart: user, key, kernel argument, hostname, timezone, %post.
    let id = check(vm, "id core");
    assert!(
        id.contains("(core)") && id.contains("(docker)") && id.contains("(sudo)"),
        "{id}"
    );
    assert!(check(vm, "cat /proc/cmdline").contains("slipway.test=1"));
    assert_eq!(check(vm, "hostname").trim(), "slipway-test");
    assert_eq!(
        check(vm, "readlink /etc/localtime").trim(),
        "/usr/share/zoneinfo/Europe/Berlin"
    );
    assert_eq!(
        check(vm, "cat /etc/slipway-post-marker").trim(),
        "from-post"
    );
    assert!(check_as_root(vm, "cat ~core/.ssh/authorized_keys").contains("slipway-tests"));
    assert!(check(vm, "findmnt -no SOURCE /boot").starts_with("/dev/"));
}

/// The guest booted with Secure Boot enforced: the firmware's `SecureBoot` variable is 1 and
/// the kernel locked itself down (Debian's kernel does under Secure Boot).
pub fn secure_boot_on(vm: &Vm) {
    let var = check(
        vm,
        "od -An -tx1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
    );
    assert!(
        var.split_whitespace().last() == Some("01"),
        "SecureBoot variable: {var}"
    );
    let lockdown = check(vm, "cat /sys/kernel/security/lockdown");
    assert!(
        lockdown.contains("[integrity]") || lockdown.contains("[confidentiality]"),
        "lockdown: {lockdown}"
    );
    let dmesg = check(vm, "dmesg | grep -i 'secure boot' || true");
    assert!(dmesg.contains("Secure boot enabled"), "{dmesg}");
}

/// A shell command that runs `inner` with the ESP (label `EFI-SYSTEM`) mounted at `$esp`.
fn with_esp(inner: &str, read_only: bool) -> String {
    format!(
        "esp=$(mktemp -d) && mount {} /dev/disk/by-label/EFI-SYSTEM $esp && ( {inner} ); rc=$?; umount $esp && rmdir $esp && exit $rc",
        if read_only { "-o ro" } else { "" }
    )
}

/// The files under the ESP's `EFI` directory (`BOOT/BOOTX64.EFI`...), sorted, lower case.
pub fn esp_files(vm: &Vm) -> Vec<String> {
    let out = check(vm, &with_esp("cd $esp/EFI && find . -type f | sort", true));
    let mut v: Vec<String> = out
        .lines()
        .map(|l| l.trim_start_matches("./").to_ascii_lowercase())
        .collect();
    v.sort();
    v
}

/// Remove `EFI/BOOT/NAME` from the guest's ESP (an ESP an older slipway wrote, or one
/// missing a file).
pub fn esp_remove(vm: &Vm, name: &str) {
    check(vm, &with_esp(&format!("rm $esp/EFI/BOOT/{name}"), false));
}

/// The ESP holds Debian's signed chain (shim, GRUB, MokManager) and the config beside it,
/// every file the same bytes as the default deployment's (`host status`).
pub fn esp_is_the_defaults_signed_chain(vm: &Vm) {
    let s = status(vm);
    let b = &s["boot_files"];
    assert_eq!(b["signed_chain"], true, "{s}");
    let mut names: Vec<String> = b["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no boot files in the status: {s}"))
        .iter()
        .map(|f| {
            let m = f["matches"].as_str().unwrap_or_default();
            assert!(m.ends_with("of deployment 0"), "{f} in {s}");
            f["name"].as_str().unwrap().to_ascii_lowercase()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["bootx64.efi", "grub.cfg", "grubx64.efi", "mmx64.efi"],
        "{s}"
    );
}
