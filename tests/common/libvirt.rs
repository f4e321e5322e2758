//! A private libvirt for Vagrant tests: libvirtd and virtlogd run inside a network namespace
//! the test creates, so the NAT networks vagrant-libvirt defines (bridges, dnsmasq, iptables)
//! exist only there and guests reach nothing but that namespace. Vagrant runs in the same
//! namespace to reach the guests. Everything is torn down on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::fixtures::run_ok;

pub struct PrivateLibvirt {
    pub netns: String,
    pub vagrant_home: PathBuf,
    pub workdir: PathBuf,
    volumes_before: Vec<String>,
}

fn virsh(args: &[&str]) -> std::process::Output {
    Command::new("virsh")
        .args(["-c", "qemu:///system"])
        .args(args)
        .output()
        .expect("virsh (libvirt-clients) is installed by make test-deps")
}

fn volumes() -> Vec<String> {
    let out = virsh(&["vol-list", "default", "--name"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

impl PrivateLibvirt {
    /// Start libvirt in a fresh namespace. Panics with the reason if it cannot run here.
    pub fn start(workdir: &Path) -> Self {
        let sock = Path::new("/run/libvirt/libvirt-sock");
        assert!(
            !sock.exists()
                || Command::new("virsh")
                    .args(["-c", "qemu:///system", "version"])
                    .output()
                    .map(|o| !o.status.success())
                    .unwrap_or(true),
            "a libvirtd is already running on this machine; the Vagrant test starts its own in a network namespace"
        );
        let netns = format!("slwvg-{}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &netns]));
        run_ok(Command::new("ip").args(["netns", "exec", &netns, "ip", "link", "set", "lo", "up"]));
        for daemon in ["virtlogd", "libvirtd"] {
            run_ok(Command::new("ip").args(["netns", "exec", &netns, daemon, "-d"]));
        }
        let start = Instant::now();
        while !virsh(&["version"]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "libvirtd did not come up"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        std::fs::create_dir_all("/var/lib/libvirt/images").unwrap();
        if !virsh(&["pool-info", "default"]).status.success() {
            run_ok(Command::new("virsh").args([
                "-c",
                "qemu:///system",
                "pool-define-as",
                "default",
                "dir",
                "--target",
                "/var/lib/libvirt/images",
            ]));
        }
        let _ = virsh(&["pool-start", "default"]);
        let vagrant_home = workdir.join("vagrant.d");
        std::fs::create_dir_all(&vagrant_home).unwrap();
        PrivateLibvirt {
            netns,
            vagrant_home,
            workdir: workdir.to_path_buf(),
            volumes_before: volumes(),
        }
    }

    /// `vagrant ARGS` in the namespace, in `cwd`.
    pub fn vagrant(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, "vagrant"])
            .args(args)
            .current_dir(cwd)
            .env("VAGRANT_HOME", &self.vagrant_home)
            .env("VAGRANT_CHECKPOINT_DISABLE", "1");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("vagrant is installed by make test-deps")
    }
}

impl Drop for PrivateLibvirt {
    fn drop(&mut self) {
        // Domains left by a failed test.
        let out = virsh(&["list", "--all", "--name"]);
        for d in String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let _ = virsh(&["destroy", d.trim()]);
            let _ = virsh(&["undefine", d.trim(), "--nvram"]);
        }
        for v in volumes() {
            if !self.volumes_before.contains(&v) || v.contains("slipway-test") {
                let _ = virsh(&["vol-delete", "--pool", "default", &v]);
            }
        }
        let _ = Command::new("pkill").args(["-x", "libvirtd"]).status();
        let _ = Command::new("pkill").args(["-x", "virtlogd"]).status();
        std::thread::sleep(Duration::from_millis(500));
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
        let _ = &self.workdir;
    }
}
