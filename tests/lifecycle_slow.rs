//! The lifecycle chain: one VM, one persistent disk, a host made from signed commits taken
//! through upgrades with a bound service, a red deployment and a rollback. The firmware is a
//! parameter (SeaBIOS in `make test`). The disk is the composed default host (v0), signed by
//! a key the test makes and written by `slipway image --remote-gpg-key` with the test's
//! server as its remote; the guest reaches the server on the test machine through `guestfwd`
//! and nothing else (no registry). The scenarios, chained:
//!
//! 0. Signatures: v1 published unsigned, then signed only by another key: `host upgrade`
//!    refuses each, naming the commit, the remote and what is missing, and the deployments
//!    stay as they were. Then v1 signed by the trusted key, with a static delta from v0 made
//!    before the signature (as `ostree gpg-sign` after a compose leaves it): taken.
//! 1. v1 = the default host plus a tiny image built by slipway from `busybox-static` (an HTTP
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

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::fixtures::*;
use common::guest::*;
use common::vm::{self, Firmware, Vm, VmConfig};
use serde_json::Value;

const GUEST_SERVER: &str = "10.0.2.100:8080";
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
/// The service's port in the guest.
const WEB_PORT: u16 = 8080;

fn record(name: &str, value: f64, unit: &str) {
    record_measurement(name, value, unit, "tcg");
}

/// The treefile of a host with the `web` service answering `page`.
fn web_treefile(dir: &Path, name: &str, page: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("index.html"), page).unwrap();
    let tf = d.join("host.json");
    std::fs::write(
        &tf,
        serde_json::json!({
            "include": source_dir().join("treefiles/atomic-host.json"),
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
}

fn setup() -> Setup {
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
    ostree(&served, &["summary", "-u"]);
    ostree(
        &staging1,
        &["pull-local", served.to_str().unwrap(), &host.reference],
    );
    let t = Instant::now();
    let v1 = compose(
        &staging1,
        &web_treefile(dir.path(), "v1", "slipway web v1\n"),
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
        &web_treefile(dir.path(), "v2", "slipway web v2\n"),
    );
    // v3: v2 plus a required check that always fails, as a commit on top of v2 (the gate is
    // under test here, not compose).
    ostree(
        &staging3,
        &["pull-local", staging2.to_str().unwrap(), HOST_REF],
    );
    let overlay = dir.path().join("v3-overlay");
    let check = overlay.join("usr/lib/slipway/checks/required.d/50-slipway-test-fail");
    std::fs::create_dir_all(check.parent().unwrap()).unwrap();
    std::fs::write(
        &check,
        "#!/bin/sh\necho 'slipway test: this deployment is broken'\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&check, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A version above v2's, so upgrade does not take v3 for a downgrade.
    let v2_version = ostree(&staging3, &["show", "--print-metadata-key=version", &v2]);
    let v3_version = format!("{}.1", v2_version.trim().trim_matches('\''));
    let v3 = ostree(
        &staging3,
        &[
            "commit",
            "-b",
            HOST_REF,
            &format!("--tree=ref={v2}"),
            &format!("--tree=dir={}", overlay.display()),
            "--owner-uid=0",
            "--owner-gid=0",
            &format!("--add-metadata-string=version={v3_version}"),
            "-s",
            "v2 with a failing required check",
        ],
    )
    .trim()
    .to_string();
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
        _dir: dir,
    }
}

/// Make `staging`'s head of the host ref the served one, signed by `signer` if given.
fn publish(served: &Path, staging: &Path, signer: Option<&Path>) -> String {
    ostree(served, &["pull-local", staging.to_str().unwrap(), HOST_REF]);
    let head = ostree(served, &["rev-parse", HOST_REF]).trim().to_string();
    if let Some(home) = signer {
        gpg_sign(served, &head, home);
    }
    ostree(served, &["summary", "-u"]);
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

/// `host upgrade --reboot` must be refused for `commit` because of `why`, with the commit and
/// the remote named, and leave the deployments as they were.
fn upgrade_refused(vm: &Vm, what: &str, commit: &str, why: &str) {
    let before = deployments(vm);
    let o = vm
        .ssh("slipway host upgrade --reboot")
        .unwrap_or_else(|e| panic!("{what}: ssh: {e:#}"));
    let err = String::from_utf8_lossy(&o.stderr);
    // 255 would be SSH's own failure, not slipway's refusal.
    assert_eq!(o.status.code(), Some(1), "{what}: {err}");
    for needle in [commit, "remote debian", why] {
        assert!(err.contains(needle), "{what}: no `{needle}` in: {err}");
    }
    assert_eq!(deployments(vm), before, "{what}: the deployments changed");
    eprintln!("0. {what}: refused as it should be");
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

/// Seconds from the concluded verdict (the second stage's journal entry) to web.service
/// becoming active, on this boot.
fn verdict_to_service(vm: &Vm) -> f64 {
    let line = check(
        vm,
        "journalctl -b -o json --no-pager MESSAGE_ID=0b6e7f3d2a8c4f51a1d9e2c7b4f60a13 | tail -n1",
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
#[ignore = "slow: composes three updates, boots a signed host under SeaBIOS through refused and signed upgrades, a bound service, a red deployment and a rollback"]
fn lifecycle_under_seabios_signed_upgrade_service_red_boot_rollback() {
    chain(Firmware::Bios, "lifecycle-bios");
}

fn chain(firmware: Firmware, name: &str) {
    let t0 = Instant::now();
    vm::require_qemu().unwrap();
    let st = setup();
    eprintln!("v1, v2, v3 ready after {:.0}s", t0.elapsed().as_secs_f64());
    let server = RepoServer::start(st.served.parent().unwrap());

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
            .arg("--remote-gpg-key")
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
        .ssh("root", &key);
    let vm = Vm::start(cfg).unwrap();
    if let Err(e) = vm.wait_for_ssh(BOOT_TIMEOUT) {
        vm.mark_failed();
        panic!("no SSH: {e:#}\n{}", vm.diagnostics());
    }
    let _ = vm.ssh("systemctl is-system-running --wait");
    assert_eq!(booted(&vm).0, st.v0);
    // v0 binds nothing: the second stage is skipped, the verdict complete.
    let s = status(&vm);
    assert_eq!(booted_entry(&s)["images"], serde_json::json!([]), "{s}");
    assert_eq!(
        check(&vm, "systemctl is-active slipway-healthy.target docker").trim(),
        "active\nactive"
    );
    eprintln!("v0 booted after {:.0}s", t0.elapsed().as_secs_f64());

    // 0. Only commits signed by the trusted key are taken.
    let v1 = publish(&st.served, &st.staging1, None);
    assert_eq!(v1, st.v1);
    upgrade_refused(&vm, "v1 unsigned", &st.v1, "has no signature");
    gpg_sign(&st.served, &st.v1, &st.wrong);
    upgrade_refused(
        &vm,
        "v1 signed only by another key",
        &st.v1,
        &format!("is signed only by {}", gpg_fingerprint(&st.wrong)),
    );
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
    ostree(&st.served, &["summary", "-u"]);

    // 1. v1: the service answers v1.
    let t = Instant::now();
    until_booted(&vm, "slipway host upgrade --reboot", &st.v1, BOOT_TIMEOUT);
    assert_eq!(
        answer(&vm, web, Duration::from_secs(300)),
        "slipway web v1\n"
    );
    let took = t.elapsed().as_secs_f64();
    eprintln!("1. v1 answers after {took:.0}s (upgrade, reboot, import)");
    record("services_upgrade_to_first_answer", took, "s");
    service_runs(&vm, &st.v1);
    assert_eq!(
        image_check(&status(&vm)),
        ("passed".to_string(), "imported".to_string())
    );
    let ready = verdict_to_service(&vm);
    eprintln!("1. verdict to web.service active: {ready:.1}s");
    record("services_verdict_to_service_active", ready, "s");
    // Ordering: the images were loaded after docker started and before the service.
    let order = check(
        &vm,
        "for u in docker slipway-images web; do systemctl show -p ActiveEnterTimestampMonotonic --value $u.service; done",
    );
    let t: Vec<u64> = order.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert!(
        t[0] < t[1] && t[1] < t[2],
        "docker, images, web became active at {t:?}"
    );

    declared_settings_hold(&vm, web);

    // 2. v2: only the page changed; the pull carries that file, not the image.
    publish(&st.served, &st.staging2, Some(&st.good));
    measure_pull(&st.served, &st.v1, &st.v2);
    let t = Instant::now();
    until_booted(&vm, "slipway host upgrade --reboot", &st.v2, BOOT_TIMEOUT);
    assert_eq!(
        answer(&vm, web, Duration::from_secs(300)),
        "slipway web v2\n"
    );
    eprintln!("2. v2 answers after {:.0}s", t.elapsed().as_secs_f64());
    service_runs(&vm, &st.v2);
    // v1 stays the rollback; keep it through the red v3 (a pinned deployment is not pruned).
    let s = status(&vm);
    assert_eq!(s["deployments"][1]["commit"], st.v1.as_str(), "{s}");
    check(&vm, "slipway host pin 1");

    // 3. v3 fails a required check: no docker, no service on it; back to v2 by itself.
    publish(&st.served, &st.staging3, Some(&st.good));
    let mark = vm.serial_mark();
    let t = Instant::now();
    until_booted(
        &vm,
        "slipway host upgrade --reboot",
        &st.v2,
        BOOT_TIMEOUT * 2,
    );
    eprintln!(
        "3. v3 judged red and rolled back in {:.0}s",
        t.elapsed().as_secs_f64()
    );
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
    let v3 = s["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["commit"] == st.v3.as_str())
        .unwrap_or_else(|| panic!("v3 is not listed: {s}"));
    assert!(
        v3["health"]["rejected"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("50-slipway-test-fail"),
        "{s}"
    );
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
    eprintln!(
        "lifecycle chain: {:.0}s in all (VM part {:.0}s)",
        t0.elapsed().as_secs_f64(),
        vm.elapsed().as_secs_f64()
    );
}
