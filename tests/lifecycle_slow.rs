//! The lifecycle chain: one VM, one persistent disk, a host made from signed commits taken
//! through upgrades with a bound service, red deployments and rollbacks, under OVMF with
//! Secure Boot enforced by Microsoft's keys (as a real machine's firmware): every boot goes
//! through the commit's signed shim, signed GRUB and signed kernel, and the guest reports
//! Secure Boot on and the kernel locked down. The firmware is a parameter. The disk is the composed default host (v0), signed by a key the
//! test makes and written by `slipway image --trusted-key` with the test's server as its
//! remote; the guest reaches the server (and the test's FleetLock server) on the test machine
//! through `guestfwd` and nothing else (no registry). The short form (`make test`) chains
//! steps 0 to 5; the long form (`make test-full`) goes on with steps 6 to 10 on the same disk.
//!
//! 0. Signatures: v1 published unsigned, then signed only by another key: `host upgrade`
//!    refuses each, naming the commit, the remote and what is missing, and the deployments
//!    stay as they were; so does v1 signed by the trusted key under an unsigned summary (the
//!    remote verifies the summary too). Then v1 signed by the trusted key, with a static
//!    delta from v0 made before the signature (as `ostree gpg-sign` after a compose leaves
//!    it), under a signed summary: taken.
//! 1. Before it, the test removes MokManager from the ESP (as an older ESP would lack a
//!    file): the upgrade puts v1's whole signed chain back, and `host status` shows each
//!    boot file with the deployment file it came from.
//!    v1 = the default host plus a tiny image built by slipway from `busybox-static` (an HTTP
//!    server answering with a version string) and the service `web` running it: after `host
//!    upgrade --reboot` the service answers v1 on its published port, `host status` lists the
//!    image (loaded) and the service (active, running), and the verdict lists the image; the
//!    service's declared volume, environment and restart policy are in effect in the guest.
//! 2. v2 changes only the service's page: the pull from v1 to v2 fetches the changed file's
//!    object and metadata, nothing of the rest of the image (measured); after `upgrade
//!    --reboot` the service answers v2.
//! 3. v3 = v2 plus a required check that fails: judged red, neither docker nor the service
//!    starts on it, the host rolls back to v2 by itself.
//! 4. `host cleanup` removes an image no deployment binds and keeps the bound ones.
//! 5. `host rollback --reboot` brings back v1's answer: its image comes back from what the
//!    host holds (re-tagged by its content digest, nothing downloaded).
//!
//! The long form:
//!
//! 6. v4 changes the kernel (it pins the older `linux-image-amd64` the apt sources offer) and
//!    the page. Its upgrade is cut by power cuts (QEMU killed at failpoints that pause and
//!    print a marker on the console) in the ESP's update (the ESP lacks MokManager again):
//!    after the new set is written beside the old one, and after the two are swapped (each
//!    time `EFI/BOOT` holds a whole set, the old one, then the new one, and Secure Boot still
//!    boots through it); then before the switch, inside libostree's write (new
//!    loader.N complete) and after libostree's loader swap but before GRUB's switch: each
//!    time v1 boots again with a complete menu, and the last boot's gate finishes the switch.
//!    v4 then boots its own kernel (`uname -r`), green, docker after the verdict, answering v4.
//! 7. A power cut right after `rollback`'s switch boots v1; the update agent with the test's
//!    FleetLock server brings v4 back: a reboot slot is asked for before the reboot and
//!    refused while taken, steady-state comes after the green boot.
//! 8. v5 = v4 on which docker cannot start, so its bound image cannot be loaded: the second
//!    stage judges it red, the service never starts on it, the host rolls back by itself.
//! 9. v4 deployed again with a kernel argument naming a missing root: it never reaches
//!    userspace, the initramfs reboots, and after three tries GRUB boots the rollback, whose
//!    gate rejects the broken default.
//! 10. `host cleanup` removes the rejected deployments and keeps the booted and the pinned
//!     ones with their images.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::fixtures::*;
use common::guest::*;
use common::vm::{self, Firmware, SbKeys, Vm, VmConfig};
use serde_json::Value;

const GUEST_SERVER: &str = "10.0.2.100:8080";
/// Where the guest finds the test's FleetLock server.
const GUEST_LOCK: &str = "10.0.2.101:8081";
/// Where the guest reaches the test's HTTPS server over the same repository (its
/// certificate names this address).
const GUEST_TLS_IP: &str = "10.0.2.102";
const GUEST_TLS: &str = "10.0.2.102:8443";
/// The verdict's MESSAGE_ID (src/host/health/journal.rs).
const VERDICT_ID: &str = "0b6e7f3d2a8c4f51a1d9e2c7b4f60a13";
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
/// The service's port in the guest.
const WEB_PORT: u16 = 8080;

fn record(name: &str, value: f64, unit: &str) {
    record_measurement(name, value, unit, "tcg");
}

/// The treefile of a host with the `web` service answering `page`, with `packages` added to
/// the default host's.
fn web_treefile(dir: &Path, name: &str, page: &str, packages: &[String]) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("index.html"), page).unwrap();
    let tf = d.join("host.json");
    std::fs::write(
        &tf,
        serde_json::json!({
            "include": source_dir().join("treefiles/atomic-host.json"),
            "packages": packages,
            "container-images": [{
                "name": "web", "tag": "stable", "packages": ["busybox-static"],
                "add-files": [["index.html", "/srv/index.html"]],
                "cmd": ["busybox", "httpd", "-f", "-p", WEB_PORT.to_string(), "-h", "/srv"],
                "exposed-ports": [WEB_PORT]
            }],
            "services": [{
                "name": "web", "image": "web:stable", "ports": [format!("{WEB_PORT}:{WEB_PORT}")],
                "volumes": ["/var/lib/web:/data"], "environment": {"MODE": "test"},
                "restart": "always"
            }]
        })
        .to_string(),
    )
    .unwrap();
    tf
}

/// The repositories: `served` (v0, signed), `staging1` (v1 on top of v0), `staging2` (v2 on top
/// of v1) and `staging3` (v3 on top of v2), published into `served` when the test says so; the
/// trusted key and another one.
struct Setup {
    _dir: tempfile::TempDir,
    served: PathBuf,
    staging1: PathBuf,
    staging2: PathBuf,
    staging3: PathBuf,
    v0: String,
    v1: String,
    v2: String,
    v3: String,
    /// GnuPG homes of the trusted key and of another one; the trusted key's public part.
    good: PathBuf,
    wrong: PathBuf,
    good_public: PathBuf,
    /// The long form's updates, composed on a thread of their own while steps 0 to 5 run
    /// (the VM is mostly waiting then; composing them first cost five minutes before v0).
    full: Option<std::thread::JoinHandle<Full>>,
}

/// v4 (staging4, on top of v2): another kernel, the service answering v4; v5 (staging5, on
/// top of v4): docker cannot start, so the bound image cannot be loaded.
struct Full {
    staging4: PathBuf,
    staging5: PathBuf,
    v4: String,
    v5: String,
    /// The version of `linux-image-amd64` v4 pins.
    kernel: String,
}

fn setup(full: bool) -> Setup {
    let host = composed_host();
    let dir = tempfile::tempdir_in(cache_root()).unwrap();
    // A package no apt source has, in an image: the error names the image's entry, before
    // anything is built (a dry run still resolves).
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        serde_json::json!({
            "include": source_dir().join("treefiles/atomic-host.json"),
            "container-images": [{"name": "web", "tag": "stable",
                                  "packages": ["busybox-static", "slipway-no-such-package"]}]
        })
        .to_string(),
    )
    .unwrap();
    let out = slipway()
        .args(["compose", "tree", "--dry-run", "--repo"])
        .arg(dir.path().join("bad-repo"))
        .arg("--cachedir")
        .arg(apt_cache())
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("package `slipway-no-such-package` (asked for in")
            && err.contains("container-images[0].packages (web:stable)) does not exist"),
        "{err}"
    );
    let served = dir.path().join("repo");
    let staging1 = dir.path().join("staging1");
    let staging2 = dir.path().join("staging2");
    let staging3 = dir.path().join("staging3");
    for r in [&served, &staging1, &staging2, &staging3] {
        ostree(r, &["init", "--mode=archive"]);
    }
    ostree(
        &served,
        &["pull-local", host.repo.to_str().unwrap(), &host.reference],
    );
    let good = dir.path().join("gnupg-good");
    let wrong = dir.path().join("gnupg-wrong");
    let good_public = dir.path().join("good.gpg");
    new_key(&good, "slipway-test-good", &good_public);
    new_key(&wrong, "slipway-test-wrong", &dir.path().join("wrong.gpg"));
    gpg_sign(&served, &host.commit, &good);
    // The image's remote verifies the summary too (`gpg-verify-summary`): every summary the
    // test serves is signed by the trusted key, but one.
    update_summary(&served, Some(&good));
    ostree(
        &staging1,
        &["pull-local", served.to_str().unwrap(), &host.reference],
    );
    let t = Instant::now();
    let v1 = compose(
        &staging1,
        &web_treefile(dir.path(), "v1", "slipway web v1\n", &[]),
    );
    record(
        "services_compose_host_with_image",
        t.elapsed().as_secs_f64(),
        "s",
    );
    ostree(
        &staging2,
        &["pull-local", staging1.to_str().unwrap(), HOST_REF],
    );
    let v2 = compose(
        &staging2,
        &web_treefile(dir.path(), "v2", "slipway web v2\n", &[]),
    );
    // v3: v2 plus a required check that always fails, as a commit on top of v2 (the gate is
    // under test here, not compose).
    ostree(
        &staging3,
        &["pull-local", staging2.to_str().unwrap(), HOST_REF],
    );
    let v3 = commit_on_top(
        &staging3,
        &v2,
        &dir.path().join("v3-overlay"),
        &[(
            "usr/lib/slipway/checks/required.d/50-slipway-test-fail",
            "#!/bin/sh\necho 'slipway test: this deployment is broken'\nexit 1\n",
        )],
        "v2 with a failing required check",
    );
    let work = dir.path().to_path_buf();
    let from = staging2.clone();
    let full = full.then(|| {
        std::thread::spawn(move || {
            let t = Instant::now();
            let f = long_form_updates(&work, &from);
            eprintln!(
                "long form: v4 and v5 composed in {:.0}s (beside steps 0 to 5)",
                t.elapsed().as_secs_f64()
            );
            f
        })
    });
    Setup {
        served,
        staging1,
        staging2,
        staging3,
        v0: host.commit.clone(),
        v1,
        v2,
        v3,
        good,
        wrong,
        good_public,
        full,
        _dir: dir,
    }
}

/// v4 on top of v2 (`staging2`'s head): v2's service answering v4, and another kernel (the
/// version of `linux-image-amd64` the apt sources offer besides the newest one v0..v3 carry);
/// v5 on top of v4. Their repositories are in `dir`.
fn long_form_updates(dir: &Path, staging2: &Path) -> Full {
    let kernel = older_kernel_package();
    let staging4 = dir.join("staging4");
    let staging5 = dir.join("staging5");
    for r in [&staging4, &staging5] {
        ostree(r, &["init", "--mode=archive"]);
    }
    ostree(
        &staging4,
        &["pull-local", staging2.to_str().unwrap(), HOST_REF],
    );
    let v4 = compose(
        &staging4,
        &web_treefile(
            dir,
            "v4",
            "slipway web v4\n",
            &[format!("linux-image-amd64={kernel}")],
        ),
    );
    // v5: v4 on which docker cannot start, so its bound image cannot be loaded.
    ostree(
        &staging5,
        &["pull-local", staging4.to_str().unwrap(), HOST_REF],
    );
    let v5 = commit_on_top(
        &staging5,
        &v4,
        &dir.join("v5-overlay"),
        &[(
            "usr/lib/systemd/system/docker.service.d/50-slipway-test-broken.conf",
            "[Service]\nExecStartPre=/bin/sh -c 'echo slipway test: docker cannot start; exit 1'\n",
        )],
        "v4 on which docker cannot start",
    );
    Full {
        staging4,
        staging5,
        v4,
        v5,
        kernel,
    }
}

/// Commit `files` (path in the tree, content; executable when it starts with `#!`) on top of
/// `base` in `repo`'s host ref, with a version above `base`'s so `upgrade` does not take it
/// for a downgrade.
fn commit_on_top(
    repo: &Path,
    base: &str,
    overlay: &Path,
    files: &[(&str, &str)],
    subject: &str,
) -> String {
    use std::os::unix::fs::PermissionsExt;
    for (path, text) in files {
        let f = overlay.join(path);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, text).unwrap();
        let mode = if text.starts_with("#!") { 0o755 } else { 0o644 };
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let version = ostree(repo, &["show", "--print-metadata-key=version", base]);
    let version = format!("{}.1", version.trim().trim_matches('\''));
    ostree(
        repo,
        &[
            "commit",
            "-b",
            HOST_REF,
            &format!("--tree=ref={base}"),
            &format!("--tree=dir={}", overlay.display()),
            "--owner-uid=0",
            "--owner-gid=0",
            &format!("--add-metadata-string=version={version}"),
            "-s",
            subject,
        ],
    )
    .trim()
    .to_string()
}

/// The oldest version of `linux-image-amd64` the build machine's apt sources offer (compose
/// uses them): not the one the default host takes, so a host pinning it boots another kernel.
fn older_kernel_package() -> String {
    let out = stdout_of(Command::new("apt-cache").args(["madison", "linux-image-amd64"]));
    let versions: Vec<String> = out
        .lines()
        .filter_map(|l| l.split('|').nth(1))
        .map(|v| v.trim().to_string())
        .collect();
    assert!(
        versions.len() >= 2,
        "the kernel-changing upgrade needs two versions of linux-image-amd64 in the apt sources (a point release and its security update); apt-cache madison says:\n{out}"
    );
    versions.last().unwrap().clone()
}

/// Make `staging`'s head of the host ref the served one, signed by `signer` if given, under a
/// summary signed by the trusted key (`summary_key`).
fn publish(served: &Path, staging: &Path, signer: Option<&Path>, summary_key: &Path) -> String {
    ostree(served, &["pull-local", staging.to_str().unwrap(), HOST_REF]);
    let head = ostree(served, &["rev-parse", HOST_REF]).trim().to_string();
    if let Some(home) = signer {
        gpg_sign(served, &head, home);
    }
    update_summary(served, Some(summary_key));
    head
}

/// (commit, serial) of every deployment, in order, and the booted one's index.
fn deployments(vm: &Vm) -> (Vec<(String, i64)>, usize) {
    let s = status(vm);
    let list = s["deployments"].as_array().unwrap();
    (
        list.iter()
            .map(|d| {
                (
                    d["commit"].as_str().unwrap().to_string(),
                    d["serial"].as_i64().unwrap(),
                )
            })
            .collect(),
        list.iter().position(|d| d["booted"] == true).unwrap(),
    )
}

/// `host upgrade --reboot` must be refused with every one of `needles` in its message (what
/// was refused, the remote, why), and leave the deployments as they were.
fn upgrade_refused(vm: &Vm, what: &str, needles: &[&str]) {
    let before = deployments(vm);
    let o = vm
        .ssh("slipway host upgrade --reboot")
        .unwrap_or_else(|e| panic!("{what}: ssh: {e:#}"));
    let err = String::from_utf8_lossy(&o.stderr);
    // 255 would be SSH's own failure, not slipway's refusal.
    assert_eq!(o.status.code(), Some(1), "{what}: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{what}: no `{needle}` in: {err}");
    }
    assert_eq!(deployments(vm), before, "{what}: the deployments changed");
    eprintln!("0. {what}: refused as it should be");
}

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
        use std::io::{BufReader, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(LockState::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut r = BufReader::new(conn);
                let Ok((head, body)) = read_http_request(&mut r) else {
                    continue;
                };
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

impl Drop for LockServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let lines: Vec<String> = s
                .requests
                .iter()
                .map(|(_, path, body)| format!("{path} {body}"))
                .collect();
            eprintln!(
                "--- the FleetLock server's requests (slot free: {}) ---\n{}",
                s.slot_free,
                lines.join("\n")
            );
        }
    }
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

/// docker started after the host checks' verdict on this boot: slipway-boot-check.service
/// (the first stage) was done before docker's first journal entry. (A deployment that binds
/// images has its verdict concluded later, by slipway-images.service, after docker loaded
/// them; its services wait for that one.)
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
    let checked: u64 = check(
        vm,
        "systemctl show -p ActiveEnterTimestampMonotonic --value slipway-boot-check.service",
    )
    .trim()
    .parse()
    .unwrap();
    let docker = first("_SYSTEMD_UNIT=docker.service");
    let started = first("UNIT=docker.service");
    assert!(
        checked > 0 && checked < docker && checked < started,
        "host checks done at {checked}, docker at {docker}/{started} (monotonic µs)"
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

/// What the service answers on the forwarded port, waiting for it to come up.
fn answer(vm: &Vm, port: u16, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{port}/index.html"))
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if start.elapsed() > timeout {
            vm.mark_failed();
            panic!(
                "the service did not answer in {timeout:?}: {}\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                vm.ssh("systemctl status web.service slipway-images.service --no-pager; journalctl -b -u web.service -u slipway-images.service --no-pager | tail -n 40")
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default(),
                vm.diagnostics()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The booted deployment's entry of `host status --json`.
fn booted_entry(s: &Value) -> Value {
    s["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["booted"] == true)
        .cloned()
        .unwrap_or_else(|| panic!("nothing booted: {s}"))
}

/// The image check of this boot's verdict: (result, output).
fn image_check(s: &Value) -> (String, String) {
    let d = booted_entry(s);
    let c = d["health"]["last_verdict"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["stage"] == "images")
        .cloned()
        .unwrap_or_else(|| panic!("no image check in the verdict: {d}"));
    (
        c["result"].as_str().unwrap().to_string(),
        c["output"].as_str().unwrap().to_string(),
    )
}

/// The milliseconds the booted deployment's image check took (placing and checking).
fn image_check_ms(s: &Value) -> u64 {
    let d = booted_entry(s);
    d["health"]["last_verdict"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["stage"] == "images")
        .and_then(|c| c["milliseconds"].as_u64())
        .unwrap_or_else(|| panic!("no image check time in the verdict: {d}"))
}

/// containerd's CRI namespace holds web:stable as kubelet would look it up, pinned and
/// labelled with its digest, and a container from it (through containerd alone, no docker)
/// serves `page`: the snapshot holds the image root.
fn cri_has_the_image(vm: &Vm, page: &str) {
    let ls = check_as_root(vm, "ctr -n k8s.io images ls");
    eprintln!("ctr -n k8s.io images ls:\n{ls}");
    let line = ls
        .lines()
        .find(|l| l.starts_with("docker.io/library/web:stable "))
        .unwrap_or_else(|| panic!("containerd's k8s.io namespace lacks web:stable:\n{ls}"));
    assert!(
        line.contains("io.cri-containerd.pinned=pinned")
            && line.contains("org.slipway.digest=sha256:"),
        "{line}"
    );
    let out = check_as_root(
        vm,
        "ctr -n k8s.io run --rm docker.io/library/web:stable slipway-cri-check busybox cat /srv/index.html",
    );
    assert_eq!(out, page, "a container from containerd's web:stable");
}

/// Seconds from the concluded verdict (the second stage's journal entry) to web.service
/// becoming active, on this boot.
fn verdict_to_service(vm: &Vm) -> f64 {
    let line = check(
        vm,
        &format!("journalctl -b -o json --no-pager MESSAGE_ID={VERDICT_ID} | tail -n1"),
    );
    let v: Value = serde_json::from_str(line.trim()).unwrap();
    let verdict: f64 = v["__MONOTONIC_TIMESTAMP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let active: f64 = check(
        vm,
        "systemctl show -p ActiveEnterTimestampMonotonic --value web.service",
    )
    .trim()
    .parse()
    .unwrap();
    (active - verdict) / 1e6
}

/// The service is the one of the booted deployment: active, running, image loaded.
fn service_runs(vm: &Vm, commit: &str) {
    let s = status(vm);
    let d = booted_entry(&s);
    assert_eq!(d["commit"], commit, "{s}");
    assert_eq!(d["images"][0]["image"], "web:stable", "{d}");
    assert_eq!(d["images"][0]["loaded"], true, "{d}");
    assert_eq!(d["services"][0]["name"], "web", "{d}");
    assert_eq!(d["services"][0]["active"], "active", "{d}");
    assert_eq!(d["services"][0]["running"], true, "{d}");
    assert_eq!(d["health"]["last_verdict"]["green"], true, "{d}");
    assert!(d["health"]["marked_good"].is_string(), "{d}");
    let digest = d["images"][0]["digest"].as_str().unwrap().to_string();
    // docker runs the container from the image with this deployment's digest.
    let label = check(
        vm,
        "docker inspect --format '{{index .Config.Labels \"org.slipway.digest\"}}' $(docker inspect --format '{{.Image}}' web)",
    );
    assert_eq!(label.trim(), digest);
    let table = check(vm, "slipway host status");
    assert!(
        table.contains("service web (web:stable, ports 8080:8080/tcp): active, running"),
        "{table}"
    );
}

/// The service's declared volume, environment and restart policy are in effect: a file the
/// container writes under `/data` is in the host's `/var/lib/web`, the container's processes
/// see `MODE=test`, and a killed container is started again by systemd (`Restart=always`) and
/// answers again.
fn declared_settings_hold(vm: &Vm, web: u16) {
    check(
        vm,
        "rm -f /var/lib/web/probe && docker exec web busybox sh -c 'echo from-the-container > /data/probe'",
    );
    assert_eq!(
        check(vm, "cat /var/lib/web/probe").trim(),
        "from-the-container",
        "the volume /var/lib/web:/data"
    );
    let env = check(vm, "docker exec web busybox env");
    assert!(
        env.lines().any(|l| l == "MODE=test"),
        "MODE=test not in the container's environment:\n{env}"
    );
    assert_eq!(
        check(vm, "systemctl show -p Restart --value web.service").trim(),
        "always"
    );
    let before = check(vm, "systemctl show -p InvocationID --value web.service");
    check(vm, "docker kill web");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = vm
            .ssh("systemctl is-active web.service && systemctl show -p InvocationID --value web.service")
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        if let Some(now) = now
            && !now.contains(before.trim())
        {
            break;
        }
        if Instant::now() > deadline {
            vm.mark_failed();
            panic!(
                "web.service was not started again after its container was killed\n{}",
                vm.diagnostics()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(
        answer(vm, web, Duration::from_secs(120)),
        "slipway web v1\n",
        "the restarted service"
    );
    eprintln!("1. volume, environment and restart policy hold");
}

/// What a pull of `to` into a repository holding `from` fetches, against the content of the
/// files that changed between them.
fn measure_pull(repo: &Path, from: &str, to: &str) {
    let old = file_checksums(repo, from);
    let new = file_checksums(repo, to);
    let changed: std::collections::BTreeSet<String> = new
        .iter()
        .filter(|(p, c)| old.get(*p) != Some(c))
        .map(|(_, c)| c.clone())
        .collect();
    let changed_paths: Vec<&String> = new
        .iter()
        .filter(|(p, c)| old.get(*p) != Some(c))
        .map(|(p, _)| p)
        .collect();
    let changed_bytes = object_bytes(repo, &changed);
    let image_bytes: u64 = new
        .iter()
        .filter(|(p, _)| p.starts_with("/usr/lib/slipway/images/"))
        .map(|(_, c)| c.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .iter()
        .map(|c| object_bytes(repo, &[c.clone()].into()))
        .sum();
    let tmp = tempfile::tempdir_in(cache_root()).unwrap();
    let client = tmp.path().join("repo");
    ostree(&client, &["init", "--mode=archive"]);
    ostree(&client, &["pull-local", repo.to_str().unwrap(), from]);
    let objects = |r: &Path| -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for e in walk(&r.join("objects")) {
            let n = e
                .strip_prefix(r.join("objects"))
                .unwrap()
                .to_string_lossy()
                .replace('/', "");
            out.insert(n);
        }
        out
    };
    let before = objects(&client);
    ostree(&client, &["pull-local", repo.to_str().unwrap(), to]);
    let after = objects(&client);
    let fetched: Vec<&String> = after.difference(&before).collect();
    let content: Vec<&&String> = fetched.iter().filter(|o| o.ends_with(".filez")).collect();
    let size = |o: &str| {
        let (a, b) = o.split_at(2);
        std::fs::metadata(client.join(format!("objects/{a}/{b}")))
            .unwrap()
            .len()
    };
    let content_bytes: u64 = content.iter().map(|o| size(o)).sum();
    let all_bytes: u64 = fetched.iter().map(|o| size(o)).sum();
    eprintln!(
        "v1 -> v2: changed files {changed_paths:?} ({changed_bytes} bytes compressed); pulled {} objects, {} of them file content ({content_bytes} bytes), {all_bytes} bytes in all; the image's files are {image_bytes} bytes",
        fetched.len(),
        content.len()
    );
    // Only the changed files' content travels; the rest is metadata (commit, dirtrees and
    // dirmetas of the changed path).
    let fetched_content: std::collections::BTreeSet<String> = content
        .iter()
        .map(|o| o.trim_end_matches(".filez").to_string())
        .collect();
    assert_eq!(
        fetched_content, changed,
        "file content pulled besides the changed files"
    );
    assert!(
        all_bytes < image_bytes / 100,
        "the pull ({all_bytes} bytes) is not small against the image ({image_bytes} bytes)"
    );
    record(
        "services_update_changed_files_bytes",
        changed_bytes as f64,
        "bytes",
    );
    record("services_update_pull_bytes", all_bytes as f64, "bytes");
    record("services_image_bytes", image_bytes as f64, "bytes");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
#[ignore = "slow: composes three updates, boots a signed host under OVMF through refused and signed upgrades, a bound service, a red deployment and a rollback"]
fn lifecycle_under_ovmf_signed_upgrade_service_red_boot_rollback() {
    chain(
        Firmware::SecureBoot(SbKeys::Microsoft),
        "lifecycle-sb",
        false,
    );
}

#[test]
#[ignore = "slow: the short chain under OVMF, then a kernel-changing upgrade through power cuts, FleetLock, a deployment whose image cannot load, an unbootable deployment and cleanup"]
fn lifecycle_under_ovmf_full_kernel_upgrade_power_cuts_unloadable_image_unbootable_cleanup() {
    chain(
        Firmware::SecureBoot(SbKeys::Microsoft),
        "lifecycle-sb-full",
        true,
    );
}

/// The chain under `firmware`; `full` adds the long scenarios (steps 6 to 10) after step 5.
fn chain(firmware: Firmware, name: &str, full: bool) {
    let t0 = Instant::now();
    vm::require_qemu().unwrap();
    let mut st = setup(full);
    eprintln!("updates ready after {:.0}s", t0.elapsed().as_secs_f64());
    let server = RepoServer::start(st.served.parent().unwrap());
    let lock = LockServer::start();
    // The same repository over HTTPS, with a certificate from a CA the test makes; another
    // CA, which signed nothing the server shows, for the refusal.
    let tls = st.served.parent().unwrap().join("tls");
    let ca = common::tls::TestCa::new(&tls, "slipway-chain-ca");
    let other_ca = common::tls::TestCa::new(&tls.join("other"), "slipway-chain-other-ca");
    let (cert, cert_key) = ca.issue("slipway-chain-server", &[GUEST_TLS_IP]);
    let tls_server = common::tls::start_server(st.served.parent().unwrap(), &cert, &cert_key);

    // The disk: v0 from the served repository, its remote the test's server with the key.
    let disk = st.served.parent().unwrap().join("disk.raw");
    let ks = test_kickstart(st.served.parent().unwrap());
    run_ok(
        slipway()
            .args(["image", "--repo"])
            .arg(&st.served)
            .args(["--ref", HOST_REF, "--format", "raw", "--kickstart"])
            .arg(&ks)
            .args(["--remote-url", &format!("http://{GUEST_SERVER}/repo")])
            .arg("--trusted-key")
            .arg(&st.good_public)
            .arg("-o")
            .arg(&disk)
            .arg("--cachedir")
            .arg(apt_cache()),
    );
    eprintln!(
        "signed image written after {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    let (key, _) = test_ssh_key();
    let web = vm::free_tcp_port();
    let cfg = VmConfig::new(name)
        .disk(&disk)
        .firmware(firmware)
        .accel(vm::accel_for(Some(&host_kernel())))
        .user_net_ssh()
        .host_forward(web, WEB_PORT)
        .guest_forward(GUEST_SERVER, server.port)
        .guest_forward(GUEST_LOCK, lock.port)
        .guest_forward(GUEST_TLS, tls_server.port)
        .ssh("root", &key);
    let mut vm = Vm::start(cfg.clone()).unwrap();
    if let Err(e) = vm.wait_for_ssh(BOOT_TIMEOUT) {
        vm.mark_failed();
        panic!("no SSH: {e:#}\n{}", vm.diagnostics());
    }
    let _ = vm.ssh("systemctl is-system-running --wait");
    assert_eq!(booted(&vm).0, st.v0);
    // The image boots under this firmware with everything a host needs (make test boots the
    // fixture's own image under OVMF no more: this is that boot).
    host_checks(&vm, &st.v0, &format!("http://{GUEST_SERVER}/repo"));
    if firmware.uefi() {
        check(&vm, "test -d /sys/firmware/efi");
    }
    if let Firmware::SecureBoot(_) = firmware {
        // Debian's signed shim, GRUB and kernel, from the commit, under the firmware's
        // Microsoft keys; the image put them on the ESP.
        secure_boot_on(&vm);
        esp_is_the_defaults_signed_chain(&vm);
    }
    // v0 binds nothing: the second stage is skipped, the verdict complete.
    let s = status(&vm);
    assert_eq!(booted_entry(&s)["images"], serde_json::json!([]), "{s}");
    assert_eq!(
        check(&vm, "systemctl is-active slipway-healthy.target docker").trim(),
        "active\nactive"
    );
    eprintln!("v0 booted after {:.0}s", t0.elapsed().as_secs_f64());

    // 0. Only commits signed by the trusted key are taken.
    let v1 = publish(&st.served, &st.staging1, None, &st.good);
    assert_eq!(v1, st.v1);
    let remote = "remote debian";
    upgrade_refused(&vm, "v1 unsigned", &[&st.v1, remote, "has no signature"]);
    gpg_sign(&st.served, &st.v1, &st.wrong);
    let by = format!("is signed only by {}", gpg_fingerprint(&st.wrong));
    upgrade_refused(&vm, "v1 signed only by another key", &[&st.v1, remote, &by]);
    ostree(
        &st.served,
        &[
            "gpg-sign",
            &format!("--gpg-homedir={}", st.wrong.display()),
            "--delete",
            &st.v1,
            &gpg_fingerprint(&st.wrong),
        ],
    );
    ostree(
        &st.served,
        &[
            "static-delta",
            "generate",
            &format!("--from={}", st.v0),
            &format!("--to={}", st.v1),
        ],
    );
    gpg_sign(&st.served, &st.v1, &st.good);
    // A good commit under an unsigned summary: refused too.
    update_summary(&st.served, None);
    let summary = "the summary of remote debian";
    upgrade_refused(
        &vm,
        "v1 under an unsigned summary",
        &[summary, "has no signature"],
    );
    update_summary(&st.served, Some(&st.good));

    // 1. v1: the service answers v1. The ESP lacks MokManager first (as one an older
    // slipway wrote would): the upgrade puts v1's whole signed chain there.
    if firmware.uefi() {
        esp_remove(&vm, "mmx64.efi");
    }
    let t = Instant::now();
    until_booted(&vm, "slipway host upgrade --reboot", &st.v1, BOOT_TIMEOUT);
    assert_eq!(
        answer(&vm, web, Duration::from_secs(300)),
        "slipway web v1\n"
    );
    let took = t.elapsed().as_secs_f64();
    eprintln!("1. v1 answers after {took:.0}s (upgrade, reboot, image placed)");
    record("services_upgrade_to_first_answer", took, "s");
    service_runs(&vm, &st.v1);
    if firmware.uefi() {
        esp_is_the_defaults_signed_chain(&vm);
    }
    if let Firmware::SecureBoot(_) = firmware {
        secure_boot_on(&vm);
    }
    // The image was placed into docker's store before docker started (hard links to the
    // deployment's files), and into containerd's for Kubernetes.
    let s1 = status(&vm);
    assert_eq!(
        image_check(&s1),
        ("passed".to_string(), "placed".to_string())
    );
    let load_ms = image_check_ms(&s1);
    eprintln!(
        "1. web:stable placed into docker's store and checked in {load_ms} ms (the verdict's image check)"
    );
    record("services_image_load", load_ms as f64 / 1000.0, "s");
    cri_has_the_image(&vm, "slipway web v1\n");
    let ready = verdict_to_service(&vm);
    eprintln!("1. verdict to web.service active: {ready:.1}s");
    record("services_verdict_to_service_active", ready, "s");
    // Ordering: the images were loaded after docker started and before the service.
    let order = check(
        &vm,
        "for u in slipway-images-place docker slipway-images web; do systemctl show -p ActiveEnterTimestampMonotonic --value $u.service; done",
    );
    let t: Vec<u64> = order.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert!(
        t[0] < t[1] && t[1] < t[2] && t[2] < t[3],
        "place-images, docker, images, web became active at {t:?}"
    );

    declared_settings_hold(&vm, web);

    // 2. v2: only the page changed; the pull carries that file, not the image. It comes
    // over HTTPS: the remote moves to the test's TLS server with a CA file (libostree's
    // tls-ca-path). A CA that did not sign the server's certificate is refused first.
    publish(&st.served, &st.staging2, Some(&st.good), &st.good);
    measure_pull(&st.served, &st.v1, &st.v2);
    let remote_ca = "/etc/slipway/tls/debian-ca.pem";
    let put_ca = |pem: &Path| {
        let pem = std::fs::read_to_string(pem).unwrap();
        check(
            &vm,
            &format!("mkdir -p /etc/slipway/tls && printf '%s' '{pem}' > {remote_ca}"),
        );
    };
    let remote_conf = "$(grep -l '^\\[remote \"debian\"\\]' /etc/ostree/remotes.d/*.conf)";
    put_ca(&other_ca.cert);
    check(
        &vm,
        &format!(
            "f={remote_conf} && sed -i 's|^url=.*|url=https://{GUEST_TLS}/repo|' $f && echo 'tls-ca-path={remote_ca}' >> $f && cat $f"
        ),
    );
    upgrade_refused(
        &vm,
        "v2 from a server whose certificate the remote's CA did not sign",
        &[
            &format!("the TLS certificate of {GUEST_TLS} (remote debian) is not trusted"),
            remote_ca,
        ],
    );
    put_ca(&ca.cert);
    let t = Instant::now();
    until_booted(&vm, "slipway host upgrade --reboot", &st.v2, BOOT_TIMEOUT);
    assert_eq!(
        answer(&vm, web, Duration::from_secs(300)),
        "slipway web v2\n"
    );
    eprintln!(
        "2. v2 (over HTTPS) answers after {:.0}s",
        t.elapsed().as_secs_f64()
    );
    service_runs(&vm, &st.v2);
    // The pull went to the TLS server; the rest of the chain goes back to plain HTTP (the
    // long form's kernel update is thousands of objects, slow over TLS under TCG).
    assert!(
        tls_server.log().contains("GET /repo/"),
        "nothing pulled over HTTPS:\n{}",
        tls_server.log()
    );
    check(
        &vm,
        &format!(
            "f={remote_conf} && sed -i -e 's|^url=.*|url=http://{GUEST_SERVER}/repo|' -e '/^tls-ca-path=/d' $f"
        ),
    );
    // v1 stays the rollback; keep it through the red v3 (a pinned deployment is not pruned).
    let s = status(&vm);
    assert_eq!(s["deployments"][1]["commit"], st.v1.as_str(), "{s}");
    check(&vm, "slipway host pin 1");

    // 3. v3 fails a required check: no docker, no service on it; back to v2 by itself.
    assert_eq!(
        publish(&st.served, &st.staging3, Some(&st.good), &st.good),
        st.v3
    );
    let (v3_console, reason) = upgrade_judged_red(&vm, "3. v3", &st.v3, &st.v2);
    for unit in ["docker.service", "slipway-images.service", "web.service"] {
        assert!(
            !v3_console.contains(&format!("Starting {unit}"))
                && !v3_console.contains(&format!("Started {unit}")),
            "{unit} was started on the red v3 boot:\n{v3_console}"
        );
    }
    assert_eq!(
        answer(&vm, web, Duration::from_secs(300)),
        "slipway web v2\n"
    );
    let s = status(&vm);
    assert!(reason.contains("50-slipway-test-fail"), "{s}");
    service_runs(&vm, &st.v2);
    assert_eq!(
        image_check(&s),
        ("passed".to_string(), "present".to_string()),
        "v2's image was in docker already"
    );

    // 4. cleanup: the rejected v3 goes, and an image slipway made that nothing binds; the
    // images of v2 and (pinned) v1 stay.
    check(
        &vm,
        "tar -cf /tmp/empty.tar --files-from /dev/null && docker import --change 'LABEL org.slipway.digest=sha256:0000' /tmp/empty.tar slipway-test-unbound:1",
    );
    let out = check(&vm, "slipway host cleanup");
    assert!(
        out.contains("removed image slipway-test-unbound:1"),
        "{out}"
    );
    assert!(!out.contains("web:stable"), "{out}");
    let images = check(
        &vm,
        "docker image ls --format '{{.Repository}}:{{.Tag}} {{.ID}}' --filter label=org.slipway.digest",
    );
    assert!(!images.contains("slipway-test-unbound"), "{images}");
    assert_eq!(
        images.lines().count(),
        2,
        "v1's and v2's images stay: {images}"
    );
    let s = status(&vm);
    assert!(
        !s["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["commit"] == st.v3.as_str()),
        "{s}"
    );

    // 5. rollback to v1: its image is in docker already (untagged since v2 took the tag),
    // tagged again by its digest; nothing downloaded.
    let t = Instant::now();
    until_booted(&vm, "slipway host rollback --reboot", &st.v1, BOOT_TIMEOUT);
    assert_eq!(
        answer(&vm, web, Duration::from_secs(300)),
        "slipway web v1\n"
    );
    let took = t.elapsed().as_secs_f64();
    eprintln!("5. rolled back to v1's answer in {took:.0}s");
    record("services_rollback_to_answer", took, "s");
    service_runs(&vm, &st.v1);
    assert_eq!(
        image_check(&status(&vm)),
        ("passed".to_string(), "tagged".to_string())
    );
    if let Some(compose) = st.full.take() {
        let t = Instant::now();
        let f = compose.join().expect("composing v4 and v5 failed");
        eprintln!(
            "long form: waited {:.0}s for v4 and v5",
            t.elapsed().as_secs_f64()
        );
        vm = long_scenarios(vm, &cfg, &st, &f, &lock, web);
    }
    eprintln!("lifecycle chain: {:.0}s in all", t0.elapsed().as_secs_f64());
    drop(vm);
}

/// Steps 6 to 10, on v1 booted after step 5 (v1 pinned, v2 the other deployment).
fn long_scenarios(
    mut vm: Vm,
    cfg: &VmConfig,
    st: &Setup,
    f: &Full,
    lock: &LockServer,
    web: u16,
) -> Vm {
    // 6. v4 changes the kernel. The upgrade is cut five times: in the ESP's update (the new
    // set written beside the old, then the two swapped; the ESP lacks MokManager first, so
    // there is something to update), before the switch, inside it (the new loader.N and its
    // menu complete, libostree's loader link not swapped yet) and after libostree's swap but
    // before GRUB's switch. Each time v1 boots again (under Secure Boot, through whichever
    // boot files the ESP holds) with a complete menu; the last boot's gate finishes the
    // interrupted switch, so the next reboot brings v4.
    let old_kernel = check(&vm, "uname -r").trim().to_string();
    publish(&st.served, &f.staging4, Some(&st.good), &st.good);
    let o = check(&vm, "slipway host upgrade --check");
    assert!(o.contains(&f.v4), "{o}");
    esp_remove(&vm, "mmx64.efi");
    let old_set = ["boot/bootx64.efi", "boot/grub.cfg", "boot/grubx64.efi"];
    for fp in [
        "esp-new-written",
        "esp-swapped",
        "host-before-switch",
        "grub-menu-written",
        "host-after-loader-swap",
    ] {
        vm = power_cut(vm, cfg, "slipway host upgrade", fp);
        assert_eq!(booted(&vm).0, st.v1, "after a power cut at {fp}");
        // EFI/BOOT is a whole set after every cut: the old one until the swap, the new one
        // from it on; the set the swap moved aside waits for the next update to remove it.
        let files = esp_files(&vm);
        let boot: Vec<&str> = files
            .iter()
            .filter(|f| f.starts_with("boot/"))
            .map(String::as_str)
            .collect();
        let aside: Vec<&str> = files
            .iter()
            .filter_map(|f| f.strip_prefix("slipway-new/"))
            .collect();
        match fp {
            "esp-new-written" => assert_eq!(boot, old_set, "after a cut at {fp}: {files:?}"),
            "esp-swapped" => {
                assert_eq!(boot.len(), 4, "after a cut at {fp}: {files:?}");
                assert_eq!(
                    aside,
                    ["bootx64.efi", "grub.cfg", "grubx64.efi"],
                    "after a cut at {fp}: {files:?}"
                );
            }
            _ => {
                assert_eq!(boot.len(), 4, "after a cut at {fp}: {files:?}");
                assert!(aside.is_empty(), "after a cut at {fp}: {files:?}");
            }
        }
        secure_boot_on(&vm);
        let s = status(&vm);
        assert_eq!(
            booted_entry(&s)["health"]["last_verdict"]["green"],
            true,
            "{s}"
        );
    }
    let s = status(&vm);
    assert_eq!(s["deployments"][0]["commit"], f.v4.as_str(), "{s}");
    assert_eq!(
        s["boot_tries_left"], 3,
        "the finished switch puts v4 on trial: {s}"
    );
    let t = Instant::now();
    until_booted(&vm, "systemctl reboot", &f.v4, BOOT_TIMEOUT);
    assert_eq!(
        answer(&vm, web, Duration::from_secs(300)),
        "slipway web v4\n"
    );
    eprintln!(
        "6. v4 answers {:.0}s after the last cut",
        t.elapsed().as_secs_f64()
    );
    let new_kernel = check(&vm, "uname -r").trim().to_string();
    assert_ne!(
        new_kernel, old_kernel,
        "v4 pins linux-image-amd64={}",
        f.kernel
    );
    // The running kernel is v4's own: its modules are in v4's /usr.
    check(
        &vm,
        &format!("test -d /usr/lib/modules/{new_kernel}/kernel"),
    );
    let pkg = check(&vm, "dpkg-query -W -f '${Version}' linux-image-amd64");
    assert_eq!(pkg.trim(), f.kernel);
    service_runs(&vm, &f.v4);
    docker_after_verdict(&vm);
    let s = status(&vm);
    assert!(
        s["boot_tries_left"].is_null(),
        "the trial must end green: {s}"
    );
    eprintln!("6. kernel {old_kernel} -> {new_kernel}");

    // 7. A power cut right after `rollback`'s switch: v1 boots. Then the update agent
    // (policy apply, the test's FleetLock server) brings v4 back: it asks for a reboot slot
    // before rebooting, waits while the slot is taken, and gives the slot back after the
    // green boot.
    vm = power_cut(vm, cfg, "slipway host rollback", "host-after-switch");
    assert_eq!(booted(&vm).0, st.v1);
    assert_eq!(
        answer(&vm, web, Duration::from_secs(300)),
        "slipway web v1\n"
    );
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
        if Instant::now() > deadline {
            vm.mark_failed();
            panic!(
                "the agent never asked twice for a reboot slot\n{}",
                vm.diagnostics()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(vm.boot_id().unwrap(), v1_boot, "rebooted without a slot");
    lock.state.lock().unwrap().slot_free = true;
    let freed = Instant::now();
    let took = until_booted(&vm, "true", &f.v4, BOOT_TIMEOUT);
    eprintln!(
        "7. the agent upgraded to v4 through FleetLock in {:.0}s",
        took.as_secs_f64()
    );
    assert_eq!(
        answer(&vm, web, Duration::from_secs(300)),
        "slipway web v4\n"
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while lock.requests("/v1/steady-state").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no steady-state after the green boot"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let granted_at = *lock.requests("/v1/pre-reboot").last().unwrap();
    assert!(
        granted_at >= freed,
        "the last pre-reboot was granted before the slot was free"
    );
    assert!(lock.requests("/v1/steady-state")[0] > granted_at);
    let body = lock.state.lock().unwrap().requests[0].2.clone();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["client_params"]["group"], "default", "{body}");
    check(&vm, "rm /etc/slipway/updates.json");

    // 8. v5: docker cannot start, so its bound image cannot be loaded: judged red by the
    // second stage, the service never started on it, back to v4 by itself.
    assert_eq!(
        publish(&st.served, &f.staging5, Some(&st.good), &st.good),
        f.v5
    );
    // The host's journal is volatile by default (no /var/log/journal): make it persistent in
    // the stateroot's /var, so the red boot's journal is there after the rollback.
    check(
        &vm,
        "mkdir -p /var/log/journal && systemd-tmpfiles --create --prefix /var/log/journal \
         && journalctl --flush",
    );
    let (v5_console, reason) = upgrade_judged_red(&vm, "8. v5 (image cannot load)", &f.v5, &f.v4);
    // Docker's own failure is in the red boot's journal (the previous boot, kept in the
    // stateroot's /var/log/journal). Not on the console: systemd stops printing unit status there once
    // the serial getty is up, before docker is first asked for.
    let journal = check(
        &vm,
        "journalctl -b -1 --no-pager -o cat -u docker.service -u slipway-images.service",
    );
    assert!(
        journal.contains("boot verdict red")
            && journal.contains("slipway test: docker cannot start"),
        "the previous boot's journal does not show the red verdict and docker's failed start:\n{journal}"
    );
    assert!(
        !v5_console.contains("Starting web.service") && !v5_console.contains("Started web.service"),
        "web.service was started on the red v5 boot:\n{v5_console}"
    );
    let s = status(&vm);
    assert!(
        reason.contains("web:stable") && reason.contains("failed to load"),
        "{s}"
    );
    service_runs(&vm, &f.v4);
    assert_eq!(
        answer(&vm, web, Duration::from_secs(300)),
        "slipway web v4\n"
    );

    // 9. v4 again with a root that does not exist: it never reaches userspace; GRUB gives up
    // after three boots and the gate makes the working deployment the default again.
    let good = booted(&vm);
    let t = Instant::now();
    until_booted(
        &vm,
        &format!(
            "slipway host deploy {} --karg root=LABEL=slipway-missing --karg rd.retry=10 --reboot",
            f.v4
        ),
        &f.v4,
        BOOT_TIMEOUT * 2,
    );
    eprintln!(
        "9. unbootable deployment rolled back in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(booted(&vm), good);
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
    assert_eq!(
        answer(&vm, web, Duration::from_secs(300)),
        "slipway web v4\n"
    );

    // 10. cleanup removes the rejected deployments (v5, the unbootable one), keeps the
    // booted v4 and the pinned v1 with their images.
    let out = check(&vm, "slipway host cleanup");
    eprintln!("10. cleanup: {}", out.trim());
    let s = status(&vm);
    let list = s["deployments"].as_array().unwrap();
    assert!(
        list.iter().all(|d| d["health"]["rejected"].is_null()),
        "a rejected deployment is left: {s}"
    );
    let commits: Vec<&str> = list.iter().map(|d| d["commit"].as_str().unwrap()).collect();
    assert!(
        commits.contains(&f.v4.as_str()) && commits.contains(&st.v1.as_str()),
        "{s}"
    );
    let images = check(
        &vm,
        "docker image ls --format '{{.Repository}}:{{.Tag}} {{.ID}}' --filter label=org.slipway.digest",
    );
    assert!(images.contains("web:stable"), "{images}");
    service_runs(&vm, &f.v4);
    vm
}

/// `host upgrade --reboot` to the published `red`, which must be judged red and rolled back to
/// `back_to` by itself: the red boot's console and the reason `host status` gives for the
/// rejection.
fn upgrade_judged_red(vm: &Vm, what: &str, red: &str, back_to: &str) -> (String, String) {
    let mark = vm.serial_mark();
    let t = Instant::now();
    until_booted(
        vm,
        "slipway host upgrade --reboot",
        back_to,
        BOOT_TIMEOUT * 2,
    );
    eprintln!(
        "{what} judged red and rolled back in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    let serial = strip_ansi(&vm.serial_text_since(mark));
    let console = red_boot_console(&serial).to_string();
    let s = status(vm);
    let entry = s["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["commit"] == red)
        .unwrap_or_else(|| panic!("{what} ({red}) is not listed: {s}"));
    let reason = entry["health"]["rejected"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (console, reason)
}

/// The console of the red boot in `serial`: from the kernel's start before the red verdict to
/// the reboot after it.
fn red_boot_console(serial: &str) -> &str {
    let red = serial
        .find("boot verdict red")
        .unwrap_or_else(|| panic!("no red verdict on the console:\n{serial}"));
    let start = serial[..red].rfind("Linux version").unwrap_or(0);
    let end = serial[red..]
        .find("reboot: Restarting system")
        .map(|i| red + i)
        .unwrap_or(serial.len());
    &serial[start..end]
}
