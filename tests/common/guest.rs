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
