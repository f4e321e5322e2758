//! Slow suite for `slipway host` and the health gate: the composed host's disk image booted
//! under QEMU (TCG), upgraded from an HTTP server on the test machine (`python3 -m
//! http.server` over a repository, reached through QEMU's `guestfwd`: the guest reaches
//! nothing else), and the scenarios of the host issue chained in one VM:
//!
//! 1. v1 boots green; upgrade to v2 (one package more, a marker file) and reboot: v2 green,
//!    docker started after the verdict, v1 the rollback.
//! 4. `rollback --reboot` returns to v1; the update agent brings v2 back (6.).
//! 2. v3 carries a required check that fails: it is judged red, docker and containerd never
//!    start on it, the host rolls back to v2 by itself and `status` says why.
//! 3. v2 deployed again with a kernel argument naming a missing root: it never reaches
//!    userspace, the initramfs reboots, and after three tries GRUB boots the rollback, whose
//!    gate rejects the broken default.
//! 6. The update agent with a FleetLock server (the test's) brings v2 back: pre-reboot is
//!    asked before the reboot and refused while the slot is taken, steady-state comes after
//!    the green boot.
//! 5. Power cuts (QEMU killed at failpoints that pause and print a marker on the console):
//!    during `upgrade` before the switch, inside libostree's write (new loader.N complete),
//!    after libostree's loader swap but before GRUB's switch (the next boot's gate finishes
//!    it), and right after `rollback`'s switch: every time the machine boots a complete
//!    deployment, old or new, and every file its menu names exists. They are chained into the
//!    scenarios rather than run from copies of a disk: each cut replaces a reboot, which keeps
//!    the test inside its time budget.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::fixtures::*;
use common::guest::*;
use common::vm::{self, Firmware, Vm, VmConfig};
use serde_json::Value;

/// Where the guest finds the repository server and the FleetLock server.
const GUEST_SERVER: &str = "10.0.2.100:8080";
const GUEST_LOCK: &str = "10.0.2.101:8081";
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
/// The verdict's MESSAGE_ID (src/host/health/journal.rs).
const VERDICT_ID: &str = "0b6e7f3d2a8c4f51a1d9e2c7b4f60a13";

/// A FleetLock server for the test: records every request; `pre-reboot` is granted only
/// while the slot is free, `steady-state` always.
struct LockServer {
    port: u16,
    state: std::sync::Arc<std::sync::Mutex<LockState>>,
}

#[derive(Default)]
struct LockState {
    slot_free: bool,
    /// (when, path, body) of each request.
    requests: Vec<(Instant, String, String)>,
}

impl LockServer {
    fn start() -> LockServer {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(LockState::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut r = BufReader::new(conn);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    head.push_str(&line);
                }
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .and_then(|v| v.trim().parse().ok())
                    })
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let granted = {
                    let mut s = st.lock().unwrap();
                    s.requests.push((
                        Instant::now(),
                        path.clone(),
                        String::from_utf8_lossy(&body).into_owned(),
                    ));
                    path.ends_with("/v1/steady-state") || s.slot_free
                };
                let reply = if granted {
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    let b = r#"{"kind":"failed_lock","value":"the slot is taken"}"#;
                    format!(
                        "HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                        b.len()
                    )
                };
                let _ = r.into_inner().write_all(reply.as_bytes());
            }
        });
        LockServer { port, state }
    }

    fn requests(&self, path: &str) -> Vec<Instant> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(_, p, _)| p.ends_with(path))
            .map(|(t, _, _)| *t)
            .collect()
    }
}

fn record(name: &str, value: f64, unit: &str) {
    record_measurement(name, value, unit, "tcg");
}

/// Every file the boot menu GRUB reads names exists: kernels and initramfs on /boot, each entry's
/// `ostree=` deployment link in the physical root. So any entry GRUB picks boots a complete
/// deployment.
fn menu_is_complete(vm: &Vm) {
    // The dispatcher reads the loader directory that grubenv names.
    let env = check(vm, "cat /boot/grub/grubenv");
    let loader = env
        .lines()
        .find_map(|l| l.strip_prefix("slipway_loader="))
        .unwrap_or("loader")
        .to_string();
    let menu = check(vm, &format!("cat /boot/{loader}/grub.cfg"));
    let mut named = 0;
    for line in menu.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"linux") | Some(&"initrd") => {
                for w in &words[1..] {
                    let w = w.trim_matches('\'');
                    if w.starts_with('/') {
                        check(vm, &format!("test -s /boot{w}"));
                        named += 1;
                    } else if let Some(t) = w.strip_prefix("ostree=") {
                        check(vm, &format!("test -d /sysroot{t}/usr"));
                        named += 1;
                    }
                }
            }
            _ => {}
        }
    }
    assert!(named >= 3, "the menu names too little:\n{menu}");
}

/// Run `cmd` on the guest with failpoint `fp` pausing it, wait for the failpoint's marker on
/// the serial console, cut the power (kill QEMU), and boot the same disk again.
fn power_cut(mut vm: Vm, cfg: &VmConfig, cmd: &str, fp: &str) -> Vm {
    let t = Instant::now();
    let mark = vm.serial_mark();
    let _ = vm.ssh(&format!(
        "SLIPWAY_FAILPOINTS={fp}=pause nohup {cmd} >/dev/null 2>&1 &"
    ));
    if let Err(e) =
        vm.wait_for_serial_since(mark, &format!("failpoint {fp}: pausing"), BOOT_TIMEOUT)
    {
        vm.mark_failed();
        panic!("`{cmd}` never reached {fp}: {e:#}");
    }
    vm.kill();
    drop(vm);
    let vm = Vm::start(cfg.clone()).unwrap();
    if let Err(e) = vm.wait_for_ssh(BOOT_TIMEOUT) {
        vm.mark_failed();
        panic!(
            "no SSH after a power cut at {fp}: {e:#}\n{}",
            vm.diagnostics()
        );
    }
    // The gate judges the boot like any other.
    let deadline = Instant::now() + Duration::from_secs(600);
    while vm
        .ssh("test -e /run/slipway/verdict.json")
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "no verdict after the power cut at {fp}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let _ = vm.ssh("systemctl is-system-running --wait");
    menu_is_complete(&vm);
    eprintln!(
        "power cut at {fp} during `{cmd}`: booted again in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    vm
}

/// docker started after the verdict on this boot: the journal's verdict entry comes before
/// docker's first entry.
fn docker_after_verdict(vm: &Vm) {
    let first = |filter: &str| -> u64 {
        let line = check(
            vm,
            &format!("journalctl -b -o json --no-pager {filter} | head -n1"),
        );
        let v: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("journal entry for {filter}: {e}: {line}"));
        v["__MONOTONIC_TIMESTAMP"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let verdict = first(&format!("MESSAGE_ID={VERDICT_ID}"));
    let docker = first("_SYSTEMD_UNIT=docker.service");
    let started = first("UNIT=docker.service");
    assert!(
        verdict < docker && verdict < started,
        "verdict at {verdict}, docker at {docker}/{started} (monotonic µs)"
    );
    assert_eq!(
        check(
            vm,
            "systemctl is-active slipway-healthy.target docker containerd"
        )
        .trim(),
        "active\nactive\nactive"
    );
}

/// Seconds from this boot's verdict to docker becoming active.
fn verdict_to_docker(vm: &Vm) -> f64 {
    let line = check(
        vm,
        &format!("journalctl -b -o json --no-pager MESSAGE_ID={VERDICT_ID} | head -n1"),
    );
    let v: Value = serde_json::from_str(line.trim()).unwrap();
    let verdict: f64 = v["__MONOTONIC_TIMESTAMP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let docker: f64 = check(
        vm,
        "systemctl show -p ActiveEnterTimestampMonotonic --value docker.service",
    )
    .trim()
    .parse()
    .unwrap();
    (docker - verdict) / 1e6
}

/// What an upgrade from v1 to v2 transfers: the static delta compose wrote, the objects a
/// pull without deltas fetches, against the compressed size of the files that changed.
fn measure_update_size(lc: &Lifecycle) {
    let repo = &lc.served;
    let old = file_checksums(repo, &lc.v1);
    let new = file_checksums(repo, &lc.v2);
    // Content v2 has and v1 has nowhere: what any pull must fetch.
    let had: std::collections::BTreeSet<&String> = old.values().collect();
    let changed: std::collections::BTreeSet<String> =
        new.values().filter(|c| !had.contains(c)).cloned().collect();
    assert!(!changed.is_empty(), "v2 adds no file content to v1");
    let changed_bytes = object_bytes(repo, &changed);
    let delta_dir = repo.join(slipway::repo::static_delta_dir(Some(&lc.v1), &lc.v2).unwrap());
    let delta_bytes: u64 = std::fs::read_dir(&delta_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", delta_dir.display()))
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    // A pull without deltas: every object of v2 the v1 repository lacks.
    let tmp = tempfile::tempdir_in(cache_root()).unwrap();
    let client = tmp.path().join("repo");
    ostree(&client, &["init", "--mode=archive"]);
    ostree(&client, &["pull-local", repo.to_str().unwrap(), &lc.v1]);
    let before = slipway::repo::dir_size(&client.join("objects"));
    ostree(&client, &["pull-local", repo.to_str().unwrap(), &lc.v2]);
    let pulled = slipway::repo::dir_size(&client.join("objects")) - before;
    // The pull fetches the new content and the metadata above it, nothing else of the host.
    assert!(delta_bytes > 0, "the static delta is empty");
    assert!(
        pulled >= changed_bytes && pulled < changed_bytes + 4 * 1024 * 1024,
        "the pull of v2 over v1 fetched {pulled} bytes for {changed_bytes} bytes of new content"
    );
    eprintln!(
        "v1 -> v2: {} files changed, {changed_bytes} bytes compressed; static delta {delta_bytes} bytes ({:.2}x); object pull {pulled} bytes ({:.2}x)",
        changed.len(),
        delta_bytes as f64 / changed_bytes as f64,
        pulled as f64 / changed_bytes as f64
    );
    record(
        "host_update_changed_files_bytes",
        changed_bytes as f64,
        "bytes",
    );
    record(
        "host_update_static_delta_bytes",
        delta_bytes as f64,
        "bytes",
    );
    record("host_update_object_pull_bytes", pulled as f64, "bytes");
}

/// The repository the guest upgrades from: v1 (the composed host), then v2, then v3.
struct Lifecycle {
    _dir: tempfile::TempDir,
    served: PathBuf,
    staging: PathBuf,
    v1: String,
    v2: String,
    v3: String,
}

fn lifecycle() -> Lifecycle {
    let host = composed_host();
    let dir = tempfile::tempdir_in(cache_root()).unwrap();
    let served = dir.path().join("repo");
    let staging = dir.path().join("staging");
    for r in [&served, &staging] {
        ostree(r, &["init", "--mode=archive"]);
    }
    ostree(
        &served,
        &["pull-local", host.repo.to_str().unwrap(), &host.reference],
    );
    let src = source_dir();
    std::fs::write(dir.path().join("marker"), "v2\n").unwrap();
    let v2_tf = dir.path().join("v2.json");
    std::fs::write(
        &v2_tf,
        serde_json::json!({
            "include": src.join("treefiles/atomic-host.json"),
            "packages": ["hello"],
            "add-files": [["marker", "/usr/share/slipway-test/marker"]],
        })
        .to_string(),
    )
    .unwrap();
    let v2 = compose(&served, &v2_tf);
    // v3: v2 plus a required check that always fails, composed beside the served
    // repository so the guest sees it only when the test publishes it.
    ostree(
        &staging,
        &["pull-local", served.to_str().unwrap(), &host.reference],
    );
    std::fs::write(
        dir.path().join("fail"),
        "#!/bin/sh\necho 'slipway test: this deployment is broken'\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.path().join("fail"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let v3_tf = dir.path().join("v3.json");
    std::fs::write(
        &v3_tf,
        serde_json::json!({
            "include": v2_tf,
            "add-files": [["fail", "/usr/lib/slipway/checks/required.d/50-slipway-test-fail"]],
        })
        .to_string(),
    )
    .unwrap();
    let v3 = compose(&staging, &v3_tf);
    Lifecycle {
        served,
        staging,
        v1: host.commit.clone(),
        v2,
        v3,
        _dir: dir,
    }
}

#[test]
#[ignore = "slow: composes two updates and boots a host through upgrades, rollbacks and failed boots"]
fn upgrade_rollback_red_and_unbootable_deployments_in_one_vm() {
    let t0 = Instant::now();
    vm::require_qemu().unwrap();
    let lc = lifecycle();
    measure_update_size(&lc);
    let server = RepoServer::start(lc.served.parent().unwrap());
    let lock = LockServer::start();
    eprintln!("updates composed after {:.0}s", t0.elapsed().as_secs_f64());

    // A writable copy of the image: a qcow2 overlay on the cached raw image.
    let base = host_image("raw");
    let disk = lc.served.parent().unwrap().join("disk.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&base)
            .arg(&disk),
    );
    let (key, _) = test_ssh_key();
    let accel = vm::accel_for(Some(&host_kernel()));
    let cfg = VmConfig::new("host-lifecycle")
        .disk(&disk)
        .firmware(Firmware::Bios)
        .accel(accel)
        .user_net_ssh()
        .guest_forward(GUEST_SERVER, server.port)
        .guest_forward(GUEST_LOCK, lock.port)
        .ssh("root", &key);
    let mut vm = Vm::start(cfg.clone()).unwrap();
    if let Err(e) = vm.wait_for_ssh(BOOT_TIMEOUT) {
        vm.mark_failed();
        panic!("no SSH: {e:#}\n{}", vm.diagnostics());
    }
    let _ = vm.ssh("systemctl is-system-running --wait");
    eprintln!("v1 booted after {:.0}s", t0.elapsed().as_secs_f64());

    // v1: green, marked good, the workloads after the verdict.
    assert_eq!(booted(&vm).0, lc.v1);
    let s = status(&vm);
    assert_eq!(
        s["deployments"][0]["health"]["last_verdict"]["green"], true,
        "{s}"
    );
    assert!(
        s["deployments"][0]["health"]["marked_good"].is_string(),
        "{s}"
    );
    docker_after_verdict(&vm);
    check(&vm, "test -x /usr/bin/slipway && slipway --version");
    // The image recorded a remote nobody answers; point it at the test's server.
    check(
        &vm,
        &format!(
            "sed -i 's#^url=.*#url=http://{GUEST_SERVER}/repo#' /etc/ostree/remotes.d/debian.conf"
        ),
    );

    // 1. Upgrade to v2, through power cuts (5.): before the switch, inside it (the new
    // loader.N and its menu complete, libostree's loader link not swapped yet) and after
    // libostree's swap but before GRUB's switch, v1 boots again; the last boot's gate finishes
    // the interrupted switch, so the next reboot brings v2. Every time the menu is complete.
    let o = check(&vm, "slipway host upgrade --check");
    assert!(o.contains(&lc.v2), "{o}");
    for fp in [
        "host-before-switch",
        "grub-menu-written",
        "host-after-loader-swap",
    ] {
        vm = power_cut(vm, &cfg, "slipway host upgrade", fp);
        assert_eq!(booted(&vm).0, lc.v1, "after a power cut at {fp}");
        let s = status(&vm);
        let v1 = s["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["booted"] == true)
            .unwrap();
        assert_eq!(v1["health"]["last_verdict"]["green"], true, "{s}");
    }
    let s = status(&vm);
    assert_eq!(s["deployments"][0]["commit"], lc.v2.as_str(), "{s}");
    assert_eq!(
        s["boot_tries_left"], 3,
        "the finished switch puts v2 on trial: {s}"
    );
    let took = until_booted(&vm, "systemctl reboot", &lc.v2, BOOT_TIMEOUT);
    eprintln!(
        "1. upgraded to v2 in {:.0}s after the last cut",
        took.as_secs_f64()
    );
    assert_eq!(check(&vm, "cat /usr/share/slipway-test/marker"), "v2\n");
    check(&vm, "test -x /usr/bin/hello");
    let s = status(&vm);
    assert_eq!(s["deployments"][0]["commit"], lc.v2.as_str());
    assert_eq!(s["deployments"][0]["booted"], true);
    assert_eq!(
        s["deployments"][0]["health"]["last_verdict"]["green"], true,
        "{s}"
    );
    assert_eq!(s["deployments"][1]["commit"], lc.v1.as_str());
    assert_eq!(s["deployments"][1]["rollback"], true);
    assert!(
        s["boot_tries_left"].is_null(),
        "the trial must end green: {s}"
    );
    docker_after_verdict(&vm);
    record("host_verdict_to_docker_active", verdict_to_docker(&vm), "s");

    // 5. A power cut right after the rollback's switch: v1 boots.
    vm = power_cut(vm, &cfg, "slipway host rollback", "host-after-switch");
    assert_eq!(booted(&vm).0, lc.v1);
    assert_eq!(status(&vm)["deployments"][1]["commit"], lc.v2.as_str());

    // 6. The update agent (policy apply, a FleetLock server) brings v2 back: it asks for a
    // reboot slot before rebooting, waits while the slot is taken, and the slot is given
    // back after the green boot.
    check(
        &vm,
        &format!(
            "mkdir -p /etc/slipway && echo '{{\"policy\": \"apply\", \"fleetlock-url\": \"http://{GUEST_LOCK}\", \"backoff-secs\": 2, \"max-backoff-secs\": 4}}' > /etc/slipway/updates.json"
        ),
    );
    let v1_boot = vm.boot_id().unwrap();
    check(
        &vm,
        "systemd-run --unit=slipway-test-agent slipway host update-agent --once",
    );
    let deadline = Instant::now() + Duration::from_secs(900);
    while lock.requests("/v1/pre-reboot").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the agent never asked for a reboot slot"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // Refused twice: still the same boot.
    assert_eq!(vm.boot_id().unwrap(), v1_boot, "rebooted without a slot");
    lock.state.lock().unwrap().slot_free = true;
    let freed = Instant::now();
    let took = until_booted(&vm, "true", &lc.v2, BOOT_TIMEOUT);
    eprintln!(
        "6. the agent upgraded to v2 through FleetLock in {:.0}s",
        took.as_secs_f64()
    );
    docker_after_verdict(&vm);
    let deadline = Instant::now() + Duration::from_secs(300);
    while lock.requests("/v1/steady-state").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no steady-state after the green boot"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let pre = lock.requests("/v1/pre-reboot");
    let granted_at = *pre.last().unwrap();
    assert!(
        granted_at >= freed,
        "the last pre-reboot was granted before the slot was free"
    );
    assert!(lock.requests("/v1/steady-state")[0] > granted_at);
    let body = lock.state.lock().unwrap().requests[0].2.clone();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["client_params"]["group"], "default", "{body}");
    check(&vm, "rm /etc/slipway/updates.json");

    // 4. `rollback --reboot` returns to v1, `upgrade --reboot` brings v2 back.
    let took = until_booted(&vm, "slipway host rollback --reboot", &lc.v1, BOOT_TIMEOUT);
    eprintln!("4. rolled back to v1 in {:.0}s", took.as_secs_f64());
    record("host_rollback_reboot_to_ssh", took.as_secs_f64(), "s");
    let took = until_booted(&vm, "slipway host upgrade --reboot", &lc.v2, BOOT_TIMEOUT);
    eprintln!("4. upgraded to v2 again in {:.0}s", took.as_secs_f64());
    docker_after_verdict(&vm);

    // 2. v3 is published; it boots red and the host rolls back to v2 by itself.
    ostree(
        &lc.served,
        &["pull-local", lc.staging.to_str().unwrap(), HOST_REF],
    );
    // Clients resolve refs through the summary: publish it, as compose does.
    ostree(&lc.served, &["summary", "-u"]);
    let mark = vm.serial_mark();
    let took = until_booted(
        &vm,
        "slipway host upgrade --reboot",
        &lc.v2,
        BOOT_TIMEOUT * 2,
    );
    eprintln!(
        "2. v3 judged red and rolled back in {:.0}s",
        took.as_secs_f64()
    );
    // The console without colour codes: systemd prints "Starting docker.service - ..." when
    // a start job runs (a unit whose requirement failed never gets that far).
    let serial = strip_ansi(&vm.serial_text_since(mark));
    let red = serial
        .find("boot verdict red")
        .unwrap_or_else(|| panic!("no red verdict on the console:\n{serial}"));
    let v3_boot = serial[..red].rfind("Linux version").unwrap_or(0);
    let v3_end = serial[red..]
        .find("reboot: Restarting system")
        .map(|i| red + i)
        .unwrap_or(serial.len());
    let v3_console = &serial[v3_boot..v3_end];
    let after = &serial[v3_end..];
    for unit in ["docker.service", "containerd.service"] {
        let started = |text: &str| {
            text.contains(&format!("Starting {unit}")) || text.contains(&format!("Started {unit}"))
        };
        assert!(
            !started(v3_console),
            "{unit} was started on the red v3 boot:\n{v3_console}"
        );
        // The same console lines do appear on the green boot that follows.
        assert!(
            started(after),
            "{unit} does not start on the console of the green boot:\n{after}"
        );
    }
    assert!(v3_console.contains("50-slipway-test-fail"), "{v3_console}");
    let s = status(&vm);
    let v3 = s["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["commit"] == lc.v3.as_str())
        .unwrap_or_else(|| panic!("v3 is not listed: {s}"));
    let reason = v3["health"]["rejected"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("50-slipway-test-fail") && reason.contains("this deployment is broken"),
        "{s}"
    );
    assert_eq!(s["deployments"][0]["commit"], lc.v2.as_str());
    let table = check(&vm, "slipway host status");
    assert!(table.contains("rejected"), "{table}");
    docker_after_verdict(&vm);
    // upgrade does not bring the rejected v3 back.
    let o = vm.ssh("slipway host upgrade").unwrap();
    assert_eq!(
        o.status.code(),
        Some(77),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // 3. v2 again with a root that does not exist: never reaches userspace; GRUB gives up
    // after three boots and the gate makes the working deployment the default again.
    let (good_commit, good_serial) = booted(&vm);
    let took = until_booted(
        &vm,
        &format!(
            "slipway host deploy {} --karg root=LABEL=slipway-missing --karg rd.retry=10 --reboot",
            lc.v2
        ),
        &lc.v2,
        BOOT_TIMEOUT * 2,
    );
    eprintln!(
        "3. unbootable deployment rolled back in {:.0}s",
        took.as_secs_f64()
    );
    assert_eq!(booted(&vm), (good_commit, good_serial));
    let s = status(&vm);
    assert_eq!(s["deployments"][0]["booted"], true, "{s}");
    let broken = s["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            d["kernel_args"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "root=LABEL=slipway-missing")
        })
        .unwrap_or_else(|| panic!("the broken deployment is not listed: {s}"));
    assert!(
        broken["health"]["rejected"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("did not reach a green verdict in 3 boots"),
        "{s}"
    );
    assert!(s["boot_tries_left"].is_null(), "{s}");
    eprintln!(
        "host lifecycle test: {:.0}s in all",
        t0.elapsed().as_secs_f64()
    );
}
