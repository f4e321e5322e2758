//! The seed's demonstration: `treefiles/examples/openstack-keystone.json` (the default host with
//! a Keystone image built from Debian 12's `keystone` package, run as the service `keystone`)
//! composed, written to a disk image, booted under QEMU (TCG); the version document is fetched
//! from port 5000 through a forward, and `docker exec keystone openstack token issue` prints a
//! token.
//!
//! It also times the image's loading: placed into docker's store from the deployment's files
//! against `tar` + `docker import` of the same image root in the same VM (at least 5x faster).
//!
//! It is in `make test-full` only (tests/suites.txt): under TCG the compose and Keystone's
//! first start take about a quarter of an hour, which `make test` cannot
//! fit beside the other VM tests inside CI's time limit. `tests/lifecycle_slow.rs` proves the
//! same machinery on a small image inside `make test`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::fixtures::*;
use common::guest::*;
use common::vm::{self, Firmware, Vm, VmConfig};

const REF: &str = "slipway/bookworm/x86_64/openstack-keystone";

#[test]
#[ignore = "slow: composes the Keystone example and boots it (make test-full)"]
fn keystone_answers_and_issues_a_token() {
    let t0 = Instant::now();
    vm::require_qemu().unwrap();
    let dir = tempfile::tempdir_in(cache_root()).unwrap();
    let repo = dir.path().join("repo");
    let commit = compose(
        &repo,
        &source_dir().join("treefiles/examples/openstack-keystone.json"),
    );
    let composed = t0.elapsed().as_secs_f64();
    record_measurement("keystone_compose", composed, "s", "tcg");
    let disk = dir.path().join("keystone.raw");
    let ks = test_kickstart(dir.path());
    run_ok(
        slipway()
            .args(["image", "--repo"])
            .arg(&repo)
            .args(["--ref", REF, "--format", "raw", "--kickstart"])
            .arg(&ks)
            .arg("-o")
            .arg(&disk)
            .arg("--cachedir")
            .arg(apt_cache()),
    );
    eprintln!(
        "composed {commit} in {composed:.0}s, image after {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    let (key, _) = test_ssh_key();
    let port = vm::free_tcp_port();
    let cfg = VmConfig::new("keystone")
        .disk(&disk)
        .firmware(Firmware::Bios)
        .accel(vm::accel_for(Some(&host_kernel())))
        .memory_mib(3072)
        .user_net_ssh()
        .host_forward(port, 5000)
        .ssh("root", &key);
    let vm = Vm::start(cfg).unwrap();
    if let Err(e) = vm.wait_for_ssh(Duration::from_secs(900)) {
        vm.mark_failed();
        panic!("no SSH: {e:#}\n{}", vm.diagnostics());
    }
    let booted_at = Instant::now();
    // The version document, from outside the VM.
    let deadline = Instant::now() + Duration::from_secs(1500);
    let doc = loop {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{port}/v3"))
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if Instant::now() > deadline {
            vm.mark_failed();
            panic!(
                "Keystone did not answer: {}\n{}",
                vm.ssh("systemctl status slipway-images keystone --no-pager; journalctl -b -u keystone --no-pager | tail -n 40")
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default(),
                vm.diagnostics()
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let answered = booted_at.elapsed().as_secs_f64();
    eprintln!("Keystone answered {answered:.0}s after SSH: {doc}");
    record_measurement("keystone_ssh_to_version_document", answered, "s", "tcg");
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        v["version"]["id"].as_str().map(|s| s.starts_with("v3")),
        Some(true),
        "{doc}"
    );
    assert_eq!(v["version"]["status"], "stable", "{doc}");
    let token = check(
        &vm,
        "docker exec keystone openstack token issue -f value -c id",
    );
    assert!(token.trim().len() > 20, "no token: {token}");
    // The image's modules load from the bytecode their packages compiled: a commit dates
    // every source 0, and compose dated the `.pyc`s for it (else each start compiles all).
    let imports = check(
        &vm,
        "docker exec keystone python3 -v -B -c 'import keystone.server.wsgi' 2>&1 | grep -E \"^# (bytecode is stale|code object from ')\" | sed -E 's/^# code object from .*/from-bytecode/' | sort | uniq -c",
    );
    assert!(
        imports.contains("from-bytecode") && !imports.contains("stale"),
        "keystone's modules are compiled again in the container:\n{imports}"
    );
    let s = status(&vm);
    let d = &s["deployments"][0];
    assert_eq!(d["commit"], commit.as_str(), "{s}");
    assert_eq!(d["images"][0]["image"], "keystone:22.0.2", "{s}");
    assert_eq!(d["images"][0]["loaded"], true, "{s}");
    assert_eq!(d["services"][0]["running"], true, "{s}");

    // Loading the bound image: placed into docker's store before docker started (hard links
    // to the deployment's files) against the import it replaced (`tar` of the image root,
    // `docker import`), the same 600 MB image in the same VM, one after the other.
    let placed: serde_json::Value =
        serde_json::from_str(&check(&vm, "cat /run/slipway/images-placed.json")).unwrap();
    let p = &placed["keystone:22.0.2"];
    assert_eq!(p["result"], "placed", "{placed}");
    assert_eq!(p["cri"], "placed", "{placed}");
    let placed_s = p["milliseconds"].as_f64().unwrap() / 1000.0;
    let cri_s = p["cri_milliseconds"].as_f64().unwrap() / 1000.0;
    eprintln!("Keystone image placed: docker {placed_s:.1}s, containerd {cri_s:.1}s");
    // Minutes under TCG: longer than `check`'s two.
    let import = vm
        .ssh_with_timeout(
            "a=$(date +%s.%N); tar --numeric-owner --xattrs -C /usr/lib/slipway/images/keystone/22.0.2/rootfs \
         -cf /var/tmp/slipway-import.tar . && docker import /var/tmp/slipway-import.tar slipway-bench:import >/dev/null \
         && b=$(date +%s.%N) && rm -f /var/tmp/slipway-import.tar && docker image rm slipway-bench:import >/dev/null \
         && awk -v a=$a -v b=$b 'BEGIN { print b - a }'",
            Duration::from_secs(1800),
        )
        .unwrap();
    assert!(
        import.status.success(),
        "the import baseline failed: {}",
        String::from_utf8_lossy(&import.stderr)
    );
    let import_s: f64 = String::from_utf8_lossy(&import.stdout)
        .trim()
        .parse()
        .unwrap();
    eprintln!(
        "Keystone image: placed for docker in {placed_s:.1}s, for containerd in {cri_s:.1}s; tar + docker import {import_s:.1}s ({:.1}x)",
        import_s / placed_s
    );
    record_measurement("keystone_image_placed", placed_s, "s", "tcg");
    record_measurement("keystone_image_placed_cri", cri_s, "s", "tcg");
    record_measurement("keystone_image_import", import_s, "s", "tcg");
    assert!(
        placed_s * 5.0 <= import_s,
        "placing the image ({placed_s:.1}s) is not 5x faster than importing it ({import_s:.1}s)"
    );
    let ctr = check(&vm, "ctr -n k8s.io images ls");
    assert!(
        ctr.contains("docker.io/library/keystone:22.0.2 ")
            && ctr.contains("io.cri-containerd.pinned=pinned"),
        "{ctr}"
    );
    eprintln!(
        "Keystone test: {:.0}s in all, token {}...",
        t0.elapsed().as_secs_f64(),
        &token.trim()[..12]
    );
}
