//! Fast checks of `slipway host` through the real binary, on offline sysroots in temporary
//! directories: tiny bootable-looking commits made with the `ostree` CLI (a kernel and an
//! initramfs that are not real, os-release, a `version`), a sysroot made with `ostree admin`
//! (`sysroot.bootloader none`, a `file://` remote without GPG), no network, seconds. Runs as
//! root (libostree's deployments are owned by root and marked immutable).

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::fixtures::*;
use serde_json::Value;

const REF: &str = "test/host";
const OS: &str = "debian";
/// Kernel arguments the first deployment is made with; every later one must carry them.
const KARGS: [&str; 2] = ["root=LABEL=root", "slipway.test=carried"];

/// A remote repository and an offline sysroot deployed from it.
struct Fixture {
    dir: tempfile::TempDir,
    repo: PathBuf,
    sysroot: PathBuf,
    /// A small file system mounted on the sysroot's /boot, if asked for.
    boot_mounted: bool,
    /// A `systemctl` that only records that it ran, first in slipway's PATH.
    fake_bin: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.boot_mounted {
            let _ = Command::new("umount")
                .arg(self.sysroot.join("boot"))
                .status();
        }
        // libostree marks deployment directories immutable.
        if let Err(e) = slipway::sys::workdir::remove_tree(self.dir.path()) {
            eprintln!("leaving {}: {e:#}", self.dir.path().display());
        }
    }
}

fn ostree_ok(args: &[&str]) -> String {
    stdout_of(Command::new("ostree").args(args))
}

impl Fixture {
    /// An empty archive repository and a sysroot with stateroot `debian` and the remote,
    /// nothing deployed. `boot_size` mounts a tmpfs of that size on its /boot.
    fn new(boot_size: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let sysroot = dir.path().join("sysroot");
        let fake_bin = dir.path().join("bin");
        std::fs::create_dir_all(&fake_bin).unwrap();
        let systemctl = fake_bin.join("systemctl");
        std::fs::write(
            &systemctl,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\n",
                dir.path().join("systemctl-calls").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut f = Fixture {
            repo,
            sysroot,
            boot_mounted: false,
            fake_bin,
            dir,
        };
        ostree(&f.repo, &["init", "--mode=archive"]);
        std::fs::create_dir_all(f.sysroot.join("boot")).unwrap();
        if let Some(size) = boot_size {
            run_ok(
                Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                    .arg(f.sysroot.join("boot")),
            );
            f.boot_mounted = true;
        }
        let s = f.sysroot_arg();
        ostree_ok(&["admin", "init-fs", &f.sysroot.display().to_string()]);
        ostree_ok(&["admin", "os-init", OS, &s]);
        let srepo = f.sysroot_repo();
        ostree(&srepo, &["config", "set", "sysroot.bootloader", "none"]);
        ostree(
            &srepo,
            &[
                "remote",
                "add",
                "--no-gpg-verify",
                OS,
                &format!("file://{}", f.repo.display()),
            ],
        );
        f
    }

    fn sysroot_arg(&self) -> String {
        format!("--sysroot={}", self.sysroot.display())
    }

    fn sysroot_repo(&self) -> PathBuf {
        self.sysroot.join("ostree/repo")
    }

    /// Commit a tree with a kernel (`kernel` bytes), an initramfs, os-release and
    /// `version=VERSION` at `date` onto the ref; returns the checksum.
    fn commit(&self, version: &str, date: &str, kernel: &[u8]) -> String {
        let tree = self.dir.path().join(format!("tree-{version}"));
        let w = |p: &str, c: &[u8]| {
            let p = tree.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        };
        w("usr/lib/modules/6.1.0-test/vmlinuz", kernel);
        w("usr/lib/modules/6.1.0-test/initramfs.img", b"initramfs");
        let os_release = format!("ID=debian\nPRETTY_NAME=\"Slipway Test v{version}\"\n");
        w("usr/lib/os-release", os_release.as_bytes());
        w("usr/etc/os-release", os_release.as_bytes());
        w("usr/etc/hostname", b"host\n");
        ostree(
            &self.repo,
            &[
                "commit",
                &format!("--branch={REF}"),
                &format!("--tree=dir={}", tree.display()),
                &format!("--add-metadata-string=version={version}"),
                &format!("--timestamp={date}"),
            ],
        )
        .trim()
        .to_string()
    }

    /// Pull the ref's newest commit into the sysroot and deploy it with `ostree admin`
    /// (`--retain`: keep every deployment there is).
    fn ostree_deploy(&self, retain: bool) {
        ostree(&self.sysroot_repo(), &["pull", OS, REF]);
        let s = self.sysroot_arg();
        let mut args = vec!["admin", "deploy", &s, "--os", OS];
        let kargs: Vec<String> = KARGS.iter().map(|k| format!("--karg={k}")).collect();
        args.extend(kargs.iter().map(String::as_str));
        if retain {
            args.push("--retain");
        }
        let refspec = format!("{OS}:{REF}");
        args.push(&refspec);
        ostree_ok(&args);
    }

    /// `host upgrade ARGS` fails with status 1, its error holds every one of `needles`, and
    /// no deployment was added or removed.
    fn upgrade_refused(&self, what: &str, args: &[&str], needles: &[&str]) {
        let before = self.deployment_dirs();
        let o = self.host("upgrade", args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {e}{}", stdout(&o));
        for needle in needles {
            assert!(e.contains(needle), "{what}: no `{needle}` in: {e}");
        }
        assert_eq!(
            self.deployment_dirs(),
            before,
            "{what}: something was deployed"
        );
        eprintln!("{what}: refused as it should be:\n{e}");
    }

    /// `slipway host VERB ARGS --sysroot SYSROOT`, with the fake `systemctl` first in PATH.
    fn host(&self, verb: &str, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.fake_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        slipway()
            .args(["host", verb])
            .args(args)
            .arg("--sysroot")
            .arg(&self.sysroot)
            .env("PATH", path)
            .output()
            .unwrap()
    }

    /// Run a verb that must succeed; its stdout.
    fn host_ok(&self, verb: &str, args: &[&str]) -> String {
        let o = self.host(verb, args);
        assert!(
            o.status.success(),
            "slipway host {verb} {args:?} failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.host_ok("status", &["--json"])).unwrap()
    }

    /// (version, state flags) of each deployment, default first.
    fn summary(&self) -> Vec<(String, Vec<&'static str>)> {
        let s = self.status();
        s["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let flags = ["booted", "default", "pending", "rollback", "pinned"]
                    .into_iter()
                    .filter(|f| d[*f] == true)
                    .collect();
                (d["version"].as_str().unwrap().to_string(), flags)
            })
            .collect()
    }

    /// The deployment directories of the stateroot (`CHECKSUM.SERIAL`).
    fn deployment_dirs(&self) -> Vec<String> {
        let dir = self.sysroot.join(format!("ostree/deploy/{OS}/deploy"));
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".origin"))
            .collect();
        v.sort();
        v
    }

    /// The menu GRUB reads: the fixed dispatcher loads `slipway_loader` from grubenv and
    /// reads that loader directory's menu, which must be the one libostree's `loader` link
    /// names (the switch finished).
    fn grub_cfg(&self) -> String {
        let boot = self.sysroot.join("boot");
        let dispatcher = std::fs::read_to_string(boot.join("grub/grub.cfg")).unwrap();
        assert!(dispatcher.contains("load_env"), "{dispatcher}");
        let env = self.grubenv_all();
        let loader = env
            .lines()
            .find_map(|l| l.strip_prefix("slipway_loader="))
            .unwrap_or_else(|| panic!("no slipway_loader in grubenv: {env}"))
            .to_string();
        assert_eq!(
            std::fs::read_link(boot.join("loader")).unwrap(),
            PathBuf::from(&loader)
        );
        std::fs::read_to_string(boot.join(loader).join("grub.cfg")).unwrap()
    }

    /// GRUB's environment block on the sysroot's /boot, as GRUB's own tool lists it.
    fn grubenv_all(&self) -> String {
        let out = Command::new("grub-editenv")
            .arg(self.sysroot.join("boot/grub/grubenv"))
            .arg("list")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The boot counter lines of GRUB's environment block.
    fn grubenv(&self) -> String {
        self.grubenv_all()
            .lines()
            .filter(|l| l.starts_with("slipway_boot_left="))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// The root of the deployment at `index` (as `status` numbers them).
    fn deployment_root(&self, index: usize) -> PathBuf {
        let s = self.status();
        let d = &s["deployments"][index];
        self.sysroot.join(format!(
            "ostree/deploy/{OS}/deploy/{}.{}",
            d["commit"].as_str().unwrap(),
            d["serial"]
        ))
    }

    /// An operator check in the deployment's /etc.
    fn add_check(&self, index: usize, stage: &str, name: &str, body: &str) {
        let p = self
            .deployment_root(index)
            .join(format!("etc/slipway/checks/{stage}.d/{name}"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `host boot-check` judging deployment `index` as if it were booted.
    fn boot_check(&self, index: usize) -> Output {
        let run = self.dir.path().join("run");
        self.host(
            "boot-check",
            &[
                "--assume-booted",
                &index.to_string(),
                "--run-dir",
                run.to_str().unwrap(),
            ],
        )
    }

    /// The BLS entries libostree wrote: (file name, contents), sorted by file name.
    fn loader_entries(&self) -> Vec<(String, String)> {
        let dir = self.sysroot.join("boot/loader/entries");
        let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn systemctl_calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("systemctl-calls")).unwrap_or_default()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The titles of grub.cfg's menu entries, in order.
fn menu_titles(cfg: &str) -> Vec<String> {
    cfg.lines()
        .filter_map(|l| l.strip_prefix("menuentry '"))
        .map(|l| l.split(" (ostree").next().unwrap().to_string())
        .collect()
}

#[test]
fn status_upgrade_rollback_deploy_and_pin() {
    let f = Fixture::new(None);
    let v1 = f.commit("1", "2024-01-01 00:00:00 +0000", b"kernel 1");
    f.ostree_deploy(false);
    // Local configuration the /etc merge must carry into every new deployment.
    let v1_dir = f.deployment_dirs().pop().unwrap();
    std::fs::write(
        f.sysroot
            .join(format!("ostree/deploy/{OS}/deploy/{v1_dir}/etc/local.conf")),
        "kept\n",
    )
    .unwrap();

    let s = f.status();
    assert_eq!(s["schema"], 1);
    assert_eq!(s["sysroot"], f.sysroot.display().to_string());
    let d = &s["deployments"][0];
    assert_eq!(d["index"], 0);
    assert_eq!(d["commit"], v1.as_str());
    assert_eq!(d["version"], "1");
    assert_eq!(d["stateroot"], OS);
    assert_eq!(d["refspec"], format!("{OS}:{REF}"));
    assert_eq!(d["remote"], OS);
    assert_eq!(d["remote_url"], format!("file://{}", f.repo.display()));
    assert_eq!(d["kernel_args"], serde_json::json!(KARGS));
    assert_eq!(f.summary(), [("1".into(), vec!["default", "pending"])]);
    let table = f.host_ok("status", &[]);
    assert!(table.contains("default,pending"), "{table}");
    assert!(table.contains(&format!("remote {OS}: file://")), "{table}");

    // Nothing newer: exit 77, nothing written.
    let o = f.host("upgrade", &["--check"]);
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stdout(&o).contains("already up to date"), "{}", stdout(&o));

    let v2 = f.commit("2", "2024-02-01 00:00:00 +0000", b"kernel 2");
    let o = f.host("upgrade", &["--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("update available: {v2} (version 2)")),
        "{}",
        stdout(&o)
    );
    assert_eq!(f.deployment_dirs().len(), 1, "--check deployed something");
    // --download-only: the whole commit is in the sysroot repository, nothing deployed.
    let out = f.host_ok("upgrade", &["--download-only"]);
    assert!(
        out.contains(&format!("downloaded: {v2} (version 2)")),
        "{out}"
    );
    assert_eq!(
        f.deployment_dirs().len(),
        1,
        "--download-only deployed something"
    );
    ostree(&f.sysroot_repo(), &["fsck", "--quiet"]);
    ostree(
        &f.sysroot_repo(),
        &["ls", &v2, "/usr/lib/modules/6.1.0-test/vmlinuz"],
    );

    let out = f.host_ok("upgrade", &[]);
    assert!(out.contains(&format!("default: {v2} (version 2)")), "{out}");
    assert!(
        out.contains(&format!("rollback: {v1} (version 1)")),
        "{out}"
    );
    assert_eq!(
        f.summary(),
        [
            ("2".into(), vec!["default", "pending"]),
            ("1".into(), vec!["rollback"])
        ]
    );
    let s = f.status();
    assert_eq!(s["deployments"][0]["commit"], v2.as_str());
    assert_eq!(s["deployments"][0]["kernel_args"], serde_json::json!(KARGS));
    // libostree's /etc merge started from the previous default.
    let v2_dir = format!("{v2}.0");
    assert_eq!(
        std::fs::read_to_string(
            f.sysroot
                .join(format!("ostree/deploy/{OS}/deploy/{v2_dir}/etc/local.conf"))
        )
        .unwrap(),
        "kept\n"
    );
    // Two BLS entries: the default (highest version) is v2, with the carried arguments.
    let entries = f.loader_entries();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let newest = entries
        .iter()
        .find(|(_, t)| t.contains("\nversion 2\n"))
        .unwrap();
    assert!(newest.1.contains("title Slipway Test v2"), "{newest:?}");
    assert!(
        newest
            .1
            .contains("options root=LABEL=root slipway.test=carried ostree="),
        "{newest:?}"
    );
    // grub.cfg lists both, v2 first, arguments carried.
    let cfg = f.grub_cfg();
    assert_eq!(
        menu_titles(&cfg),
        ["Slipway Test v2", "Slipway Test v1"],
        "{cfg}"
    );
    assert!(
        cfg.contains("'root=LABEL=root' 'slipway.test=carried'"),
        "{cfg}"
    );

    // Again: already up to date.
    let o = f.host("upgrade", &[]);
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("already up to date: {v2} (version 2)")),
        "{}",
        stdout(&o)
    );

    // Rollback: v1 becomes the default, v2 the rollback; the menu follows.
    let out = f.host_ok("rollback", &[]);
    assert!(out.contains(&format!("default: {v1} (version 1)")), "{out}");
    assert_eq!(
        f.summary(),
        [
            ("1".into(), vec!["default", "pending"]),
            ("2".into(), vec!["rollback"])
        ]
    );
    assert_eq!(
        menu_titles(&f.grub_cfg()),
        ["Slipway Test v1", "Slipway Test v2"]
    );

    // Deploy by version: v2 again as a new default, v1 kept as rollback.
    let out = f.host_ok("deploy", &["2"]);
    assert!(out.contains(&format!("default: {v2} (version 2)")), "{out}");
    assert_eq!(
        f.summary(),
        [
            ("2".into(), vec!["default", "pending"]),
            ("1".into(), vec!["rollback"])
        ]
    );
    assert_eq!(
        menu_titles(&f.grub_cfg()),
        ["Slipway Test v2", "Slipway Test v1"]
    );
    // By checksum prefix, the default itself: nothing to do.
    let o = f.host("deploy", &[&v2[..8]]);
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stdout(&o).contains("already the default"), "{}", stdout(&o));
    // With kernel arguments the default's commit is deployed anew; an argument replaces the
    // one of the same name.
    f.host_ok(
        "deploy",
        &[&v2[..8], "--karg", "root=LABEL=other", "--karg", "quiet"],
    );
    let s = f.status();
    assert_eq!(s["deployments"][0]["commit"], v2.as_str());
    assert_eq!(
        s["deployments"][1]["commit"],
        v2.as_str(),
        "a new deployment"
    );
    assert_eq!(
        s["deployments"][0]["kernel_args"],
        serde_json::json!(["slipway.test=carried", "root=LABEL=other", "quiet"])
    );
    assert!(
        f.grub_cfg().contains("'root=LABEL=other' 'quiet'"),
        "{}",
        f.grub_cfg()
    );

    // Pin and unpin.
    let out = f.host_ok("pin", &["1"]);
    assert!(
        out.contains("deployment 1") && out.contains("pinned"),
        "{out}"
    );
    assert_eq!(f.summary()[1].1, ["rollback", "pinned"]);
    f.host_ok("pin", &["--unpin", "1"]);
    assert_eq!(f.summary()[1].1, ["rollback"]);
    let o = f.host("pin", &["5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no deployment 5")
            && stderr(&o).contains(&f.sysroot.display().to_string()),
        "{}",
        stderr(&o)
    );
    assert_eq!(f.systemctl_calls(), "", "something rebooted");
}

#[test]
fn downgrades_are_refused_unless_allowed() {
    let f = Fixture::new(None);
    let v2 = f.commit("2", "2024-02-01 00:00:00 +0000", b"kernel 2");
    f.ostree_deploy(false);
    // The ref moves to an older build.
    let v1 = f.commit("1", "2024-01-01 00:00:00 +0000", b"kernel 1");
    let entries = f.loader_entries();

    let o = f.host("upgrade", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let e = stderr(&o);
    for needle in [
        "refusing to downgrade",
        "--allow-downgrade",
        "version 1 is lower than 2",
        "timestamp 2024-01-01T00:00:00Z is older than 2024-02-01T00:00:00Z",
        v1.as_str(),
        v2.as_str(),
        &f.sysroot.display().to_string(),
    ] {
        assert!(e.contains(needle), "{needle} missing from: {e}");
    }
    assert_eq!(f.deployment_dirs(), [format!("{v2}.0")]);
    assert_eq!(f.loader_entries(), entries, "boot entries changed");

    // --check reports it as what it is.
    let o = f.host("upgrade", &["--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("older commit available"),
        "{}",
        stdout(&o)
    );

    let out = f.host_ok("upgrade", &["--allow-downgrade"]);
    assert!(out.contains(&format!("default: {v1} (version 1)")), "{out}");
    assert_eq!(
        f.summary(),
        [
            ("1".into(), vec!["default", "pending"]),
            ("2".into(), vec!["rollback"])
        ]
    );
}

#[test]
fn deploy_finds_a_version_only_the_remote_has() {
    let f = Fixture::new(None);
    let v1 = f.commit("1", "2024-01-01 00:00:00 +0000", b"kernel 1");
    let v2 = f.commit("2", "2024-02-01 00:00:00 +0000", b"kernel 2");
    let v3 = f.commit("3", "2024-03-01 00:00:00 +0000", b"kernel 3");
    f.ostree_deploy(false);
    // The sysroot has only the newest commit.
    let shows = |c: &str| {
        Command::new("ostree")
            .arg(format!("--repo={}", f.sysroot_repo().display()))
            .args(["show", c])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(shows(&v3) && !shows(&v1) && !shows(&v2));

    // Going back is what `deploy` is for: no downgrade refusal.
    let out = f.host_ok("deploy", &["1"]);
    assert!(out.contains(&format!("default: {v1} (version 1)")), "{out}");
    assert!(
        out.contains(&format!("rollback: {v3} (version 3)")),
        "{out}"
    );
    // A checksum prefix of a commit whose metadata came with the history.
    let out = f.host_ok("deploy", &[&v2[..10]]);
    assert!(out.contains(&format!("default: {v2} (version 2)")), "{out}");
    assert_eq!(
        f.summary(),
        [
            ("2".into(), vec!["default", "pending"]),
            ("1".into(), vec!["rollback"])
        ]
    );
    let o = f.host("deploy", &["9.9"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("`9.9`")
            && e.contains(&format!("{OS}:{REF}"))
            && e.contains(&f.sysroot.display().to_string()),
        "{e}"
    );
}

#[test]
fn a_full_boot_is_refused_before_anything_is_written() {
    // 4 MiB on /boot: a 1.5 MiB kernel fits once, a 3 MiB one does not.
    let f = Fixture::new(Some("4m"));
    let small = vec![1u8; 3 << 19];
    f.commit("1", "2024-01-01 00:00:00 +0000", &small);
    f.ostree_deploy(false);
    let entries = f.loader_entries();
    let dirs = f.deployment_dirs();
    let boot_dirs = || {
        let mut v: Vec<String> = std::fs::read_dir(f.sysroot.join("boot/ostree"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let boot_before = boot_dirs();

    let big = f.commit("2", "2024-02-01 00:00:00 +0000", &vec![2u8; 3 << 20]);
    let o = f.host("upgrade", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "not enough room on {}",
            f.sysroot.join("boot").display()
        )) && e.contains(&big),
        "{e}"
    );
    assert_eq!(f.deployment_dirs(), dirs);
    assert_eq!(f.loader_entries(), entries);
    assert_eq!(boot_dirs(), boot_before);

    // The same kernel as the deployed one is already on /boot: only the entries need room.
    let v3 = f.commit("3", "2024-03-01 00:00:00 +0000", &small);
    let out = f.host_ok("upgrade", &[]);
    assert!(out.contains(&format!("default: {v3} (version 3)")), "{out}");
    assert_eq!(boot_dirs(), boot_before);
}

#[test]
fn cleanup_keeps_default_rollback_and_pinned() {
    let f = Fixture::new(None);
    let v1 = f.commit("1", "2024-01-01 00:00:00 +0000", b"kernel 1");
    f.ostree_deploy(false);
    f.commit("2", "2024-02-01 00:00:00 +0000", b"kernel 2");
    f.ostree_deploy(true);
    f.commit("3", "2024-03-01 00:00:00 +0000", b"kernel 3");
    f.ostree_deploy(true);
    assert_eq!(
        f.summary(),
        [
            ("3".into(), vec!["default", "pending"]),
            ("2".into(), vec!["rollback"]),
            ("1".into(), vec![])
        ]
    );

    f.host_ok("pin", &["2"]);
    let out = f.host_ok("cleanup", &[]);
    assert!(out.contains("3 deployments kept, 0 removed"), "{out}");
    assert_eq!(f.deployment_dirs().len(), 3);

    f.host_ok("pin", &["--unpin", "2"]);
    let out = f.host_ok("cleanup", &[]);
    assert!(
        out.contains(&format!(
            "removed deployment 2 ({OS}, commit {v1} (version 1))"
        )),
        "{out}"
    );
    assert!(out.contains("2 deployments kept, 1 removed"), "{out}");
    assert_eq!(
        f.summary(),
        [
            ("3".into(), vec!["default", "pending"]),
            ("2".into(), vec!["rollback"])
        ]
    );
    assert!(!f.deployment_dirs().iter().any(|d| d.starts_with(&v1)));
    assert_eq!(
        menu_titles(&f.grub_cfg()),
        ["Slipway Test v3", "Slipway Test v2"]
    );
    // Its commit object went with it.
    let o = Command::new("ostree")
        .arg(format!("--repo={}", f.sysroot_repo().display()))
        .args(["show", &v1])
        .output()
        .unwrap();
    assert!(!o.status.success(), "commit {v1} was not pruned");
}

#[test]
fn reboot_is_refused_for_an_offline_sysroot() {
    let f = Fixture::new(None);
    f.commit("1", "2024-01-01 00:00:00 +0000", b"kernel 1");
    f.ostree_deploy(false);
    f.commit("2", "2024-02-01 00:00:00 +0000", b"kernel 2");
    for (verb, args) in [
        ("upgrade", vec!["--reboot"]),
        ("rollback", vec!["--reboot"]),
        ("deploy", vec!["--reboot", "2"]),
    ] {
        let o = f.host(verb, &args);
        assert_eq!(o.status.code(), Some(1), "{verb}: {}", stdout(&o));
        let e = stderr(&o);
        assert!(
            e.contains("--reboot")
                && e.contains("--sysroot /")
                && e.contains(&f.sysroot.display().to_string()),
            "{verb}: {e}"
        );
    }
    // Refused before any work: nothing deployed, nothing rebooted.
    assert_eq!(f.summary().len(), 1);
    assert_eq!(f.systemctl_calls(), "");
}

#[test]
fn a_writer_waits_for_the_sysroot_lock() {
    let f = Fixture::new(None);
    f.commit("1", "2024-01-01 00:00:00 +0000", b"kernel 1");
    f.ostree_deploy(false);
    // Hold libostree's sysroot lock, as `ostree admin` or rpm-ostree would.
    let other = ostree::Sysroot::new(Some(&ostree::gio::File::for_path(&f.sysroot)));
    other.lock().unwrap();
    let mut writer = slipway()
        .args(["host", "pin", "0", "--sysroot"])
        .arg(&f.sysroot)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the writer says it waits (not a fixed time), then check it still does.
    let mut stderr = std::io::BufReader::new(writer.stderr.take().unwrap());
    let mut err = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !err.contains("waiting for another process") {
        assert!(
            std::time::Instant::now() < deadline,
            "pin never said it waits: {err}"
        );
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            panic!("pin ended without waiting for the lock: {err}");
        }
        err.push_str(&line);
    }
    assert!(
        writer.try_wait().unwrap().is_none(),
        "pin wrote while the sysroot was locked"
    );
    // Readers do not wait.
    assert_eq!(f.summary()[0].1, ["default", "pending"]);
    other.unlock();
    stderr.read_to_string(&mut err).unwrap();
    let status = writer.wait().unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(f.summary()[0].1, ["default", "pending", "pinned"]);
}

#[test]
fn every_host_flag_is_documented() {
    for (verb, flags) in [
        ("status", vec!["--sysroot", "--json"]),
        (
            "upgrade",
            vec![
                "--sysroot",
                "--stateroot",
                "--check",
                "--download-only",
                "--allow-downgrade",
                "--reboot",
            ],
        ),
        (
            "deploy",
            vec!["--sysroot", "--stateroot", "--reboot", "VERSION|COMMIT"],
        ),
        ("rollback", vec!["--sysroot", "--reboot"]),
        ("cleanup", vec!["--sysroot"]),
        ("pin", vec!["--sysroot", "--unpin", "INDEX"]),
        ("update-agent", vec!["--sysroot", "--once", "--run-dir"]),
    ] {
        let out = stdout_of(slipway().args(["host", verb, "--help"]));
        for flag in flags {
            assert!(
                out.contains(flag),
                "{flag} missing from `host {verb} --help`:\n{out}"
            );
        }
    }
    let out = stdout_of(slipway().args(["host", "upgrade", "--help"]));
    assert!(out.contains("77"), "{out}");
}

/// The health gate on an offline sysroot, judging deployments with `--assume-booted`: green
/// marks good and ends the trial; red on a new default rejects it and rolls back (reboot
/// asked); a rejected deployment is not made the default again by `rollback` or `upgrade`;
/// red on a deployment marked good stays red; an exhausted trial rejects the default; the
/// gate of the workloads follows the verdict; cleanup removes the rejected.
#[test]
fn the_health_gate_judges_rolls_back_and_remembers() {
    let f = Fixture::new(None);
    f.commit("1", "2024-01-01 00:00:00 +0000", b"kernel 1");
    f.ostree_deploy(false);
    let run = f.dir.path().join("run");
    let gate = || {
        slipway()
            .args(["host", "gate", "--run-dir"])
            .arg(&run)
            .output()
            .unwrap()
    };

    // No verdict yet: the workloads' gate is closed.
    let o = gate();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no health verdict yet"),
        "{}",
        stderr(&o)
    );

    // v1, no trial, a passing and a failing *wanted* check: green, marked good.
    f.add_check(0, "required", "10-ok", "echo all fine");
    f.add_check(0, "wanted", "90-soft", "echo meh; exit 1");
    let o = f.boot_check(0);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o).trim(), "green");
    let s = f.status();
    let h = &s["deployments"][0]["health"];
    assert!(h["marked_good"].is_string(), "{h}");
    assert_eq!(h["last_verdict"]["green"], true);
    assert_eq!(h["last_verdict"]["checks"][0]["name"], "10-ok");
    assert_eq!(h["last_verdict"]["checks"][0]["output"], "all fine\n");
    assert_eq!(h["last_verdict"]["checks"][1]["result"], "failed");
    assert!(gate().status.success(), "{}", stderr(&gate()));
    // The same boot is not judged twice.
    f.add_check(0, "required", "20-late", "exit 1");
    let o = f.boot_check(0);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("judged already"), "{}", stderr(&o));
    std::fs::remove_dir_all(&run).unwrap();

    // Red on v1, which was marked good: no rollback (there is none), workloads stay stopped.
    let o = f.boot_check(0);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("red: required check 20-late"),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("no rollback"), "{}", stderr(&o));
    assert!(!gate().status.success());
    std::fs::remove_dir_all(&run).unwrap();
    std::fs::remove_file(
        f.deployment_root(0)
            .join("etc/slipway/checks/required.d/20-late"),
    )
    .unwrap();

    // v2 is deployed on trial: GRUB's counter is set before the switch.
    let v2 = f.commit("2", "2024-02-01 00:00:00 +0000", b"kernel 2");
    f.host_ok("upgrade", &[]);
    assert_eq!(f.grubenv(), "slipway_boot_left=3\n");
    assert_eq!(f.status()["boot_tries_left"], 3);
    assert!(f.grub_cfg().contains("load_env"), "{}", f.grub_cfg());

    // v2 boots red: rejected, v1 the default again, counter cleared, reboot asked.
    f.add_check(0, "required", "50-fail", "echo disk on fire >&2; exit 7");
    let o = f.boot_check(0);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        f.systemctl_calls().contains("--no-block reboot"),
        "{}",
        f.systemctl_calls()
    );
    assert_eq!(
        f.summary(),
        [
            ("1".into(), vec!["default", "pending"]),
            ("2".into(), vec!["rollback"])
        ]
    );
    assert_eq!(f.grubenv(), "");
    let s = f.status();
    let reason = s["deployments"][1]["health"]["rejected"]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("required check 50-fail failed (exit status 7): disk on fire"),
        "{reason}"
    );
    let table = f.host_ok("status", &[]);
    assert!(table.contains("deployment 1 rejected at"), "{table}");
    assert_eq!(
        menu_titles(&f.grub_cfg()),
        ["Slipway Test v1", "Slipway Test v2"]
    );

    // Never the default again by itself: rollback refuses, upgrade skips it.
    let o = f.host("rollback", &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("was rejected by the health gate"),
        "{}",
        stderr(&o)
    );
    let o = f.host("upgrade", &[]);
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("no update: {v2}")),
        "{}",
        stdout(&o)
    );

    // Deployed again by hand, it never reaches a verdict: after the tries GRUB boots entry 1
    // (v1) with the counter at 0, and the gate rejects the default.
    std::fs::remove_dir_all(&run).unwrap();
    f.host_ok("deploy", &["2"]);
    assert_eq!(f.grubenv(), "slipway_boot_left=3\n");
    let grubenv = f.sysroot.join("boot/grub/grubenv");
    let text = std::fs::read_to_string(&grubenv)
        .unwrap()
        .replace("slipway_boot_left=3", "slipway_boot_left=0");
    std::fs::write(&grubenv, text).unwrap();
    let o = f.boot_check(1);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(f.summary()[0].0, "1");
    let s = f.status();
    assert!(
        s["deployments"][1]["health"]["rejected"]["reason"]
            .as_str()
            .unwrap()
            .contains("did not reach a green verdict in 3 boots"),
        "{s}"
    );
    assert_eq!(f.grubenv(), "");

    // cleanup removes the rejected deployments, even the rollback.
    f.host_ok("cleanup", &[]);
    assert_eq!(f.summary(), [("1".into(), vec!["default", "pending"])]);
}

/// The update agent on an offline sysroot, one pass at a time: policy check (the default)
/// only reports, policy stage downloads without deploying, policy apply is refused before
/// any work (it reboots, and this is not the machine's root); the status file follows.
#[test]
fn the_update_agent_checks_and_stages() {
    let f = Fixture::new(None);
    f.commit("1", "2024-01-01 00:00:00 +0000", b"kernel 1");
    f.ostree_deploy(false);
    let run = f.dir.path().join("run");
    let agent = || {
        f.host(
            "update-agent",
            &["--once", "--run-dir", run.to_str().unwrap()],
        )
    };
    let agent_status = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(run.join("update-agent.json")).unwrap())
            .unwrap()
    };
    let settings = |text: &str| {
        let p = f.deployment_root(0).join("etc/slipway/updates.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };

    let o = agent();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "up to date\n");
    assert_eq!(agent_status()["state"], "up-to-date");

    let v2 = f.commit("2", "2024-02-01 00:00:00 +0000", b"kernel 2");
    let o = agent();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("update available: {v2} (version 2)")),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("policy check"), "{}", stderr(&o));
    let st = agent_status();
    assert_eq!(
        (st["state"].as_str(), st["policy"].as_str()),
        (Some("available"), Some("check"))
    );
    assert_eq!(st["update"]["commit"], v2.as_str());
    assert_eq!(f.summary().len(), 1);

    // Policy stage: the commit is pulled whole, nothing is deployed.
    settings(r#"{"policy": "stage"}"#);
    let o = agent();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("update downloaded: {v2}")),
        "{}",
        stdout(&o)
    );
    assert_eq!(agent_status()["state"], "staged");
    assert_eq!(f.summary(), [("1".into(), vec!["default", "pending"])]);
    let sysroot_repo = f.sysroot_repo();
    ostree(
        &sysroot_repo,
        &["ls", &v2, "/usr/lib/modules/6.1.0-test/vmlinuz"],
    );

    // Policy apply reboots: refused here, before any work.
    settings(r#"{"policy": "apply"}"#);
    let o = agent();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("the update policy is `apply`") && stderr(&o).contains("--sysroot /"),
        "{}",
        stderr(&o)
    );
    assert_eq!(f.summary().len(), 1);
    assert_eq!(f.systemctl_calls(), "");

    // Bad settings name the file and the key.
    settings(
        r#"{"policy": "apply", "reboot-windows": [{"days": ["Mon"], "start": "25:00", "length-minutes": 5}]}"#,
    );
    let o = agent();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("etc/slipway/updates.json")
            && stderr(&o).contains("`reboot-windows[0].start`"),
        "{}",
        stderr(&o)
    );
}

/// A green verdict gives the FleetLock reboot slot back (steady-state, with the id derived
/// from the machine id and the configured group); settings that do not parse leave the
/// verdict green. (A server that cannot be reached is retried for minutes: unit tests of
/// `host::fleetlock` cover giving up.)
#[test]
fn a_green_boot_reports_steady_state() {
    use std::io::{BufReader, Write};
    let f = Fixture::new(None);
    f.commit("1", "2024-01-01 00:00:00 +0000", b"kernel 1");
    f.ostree_deploy(false);
    let root = f.deployment_root(0);
    std::fs::write(
        root.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut r = BufReader::new(conn);
        let (head, body) = read_http_request(&mut r).unwrap();
        tx.send((head, String::from_utf8(body).unwrap())).unwrap();
        let mut conn = r.into_inner();
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
    });
    let settings = root.join("etc/slipway/updates.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(
        &settings,
        format!(r#"{{"fleetlock-url": "http://{addr}/", "fleetlock-group": "workers", "backoff-secs": 1, "max-backoff-secs": 1}}"#),
    )
    .unwrap();
    let run = f.dir.path().join("run");

    // No verdict yet: the slot is kept.
    let steady = || {
        slipway()
            .args(["host", "steady-state", "--sysroot"])
            .arg(&root)
            .arg("--run-dir")
            .arg(&run)
            .output()
            .unwrap()
    };
    let o = steady();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no green verdict"), "{}", stderr(&o));
    let o = f.boot_check(0);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o).trim(), "green");
    // The verdict does not wait for the lock server: the slot goes back afterwards.
    assert!(rx.try_recv().is_err());
    let o = steady();
    assert!(o.status.success(), "{}", stderr(&o));
    let (head, body) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        head.starts_with("POST /v1/steady-state HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("fleet-lock-protocol: true"),
        "{head}"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["client_params"]["group"], "workers");
    assert_eq!(body["client_params"]["id"].as_str().unwrap().len(), 32);
    assert!(
        stderr(&o).contains("reboot slot released"),
        "{}",
        stderr(&o)
    );

    // Settings that do not parse: the verdict stays green, steady-state warns.
    std::fs::remove_dir_all(&run).unwrap();
    std::fs::write(&settings, r#"{"fleetlock-url": 1}"#).unwrap();
    let o = f.boot_check(0);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = steady();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning") && stderr(&o).contains("`fleetlock-url`"),
        "{}",
        stderr(&o)
    );
}

/// Power lost after libostree swapped its `loader` link but before GRUB was switched (the
/// failpoint stops the upgrade there): GRUB still reads the old menu, and the next boot's
/// gate finishes the switch, with the new default on trial.
#[test]
fn a_switch_cut_short_after_the_loader_swap_is_finished_by_the_next_boot() {
    let f = Fixture::new(None);
    f.commit("1", "2024-01-01 00:00:00 +0000", b"kernel 1");
    f.ostree_deploy(false);
    f.commit("2", "2024-02-01 00:00:00 +0000", b"kernel 2");
    let o = slipway()
        .args(["host", "upgrade", "--sysroot"])
        .arg(&f.sysroot)
        .env("SLIPWAY_FAILPOINTS", "host-after-loader-swap=error")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("failpoint host-after-loader-swap"),
        "{}",
        stderr(&o)
    );
    // libostree's list has v2 first; GRUB does not read that menu yet.
    assert_eq!(f.summary()[0].0, "2");
    let link = std::fs::read_link(f.sysroot.join("boot/loader")).unwrap();
    let env = f.grubenv_all();
    assert!(
        !env.contains(&format!("slipway_loader={}", link.display())),
        "{env}"
    );
    // The old default (now index 1) boots and its gate finishes the switch.
    let o = f.boot_check(1);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("interrupted switch"), "{}", stderr(&o));
    assert_eq!(
        menu_titles(&f.grub_cfg()),
        ["Slipway Test v2", "Slipway Test v1"]
    );
    assert_eq!(f.grubenv(), "slipway_boot_left=3\n");
}

/// A remote that verifies signatures takes only commits signed by its own key, wherever the
/// remote is defined: in the deployment's `/etc/ostree/remotes.d` with `gpgkeypath` (what
/// `slipway image --trusted-key` writes; the path resolves inside the deployment) and in
/// the sysroot repository's config with the key imported (what the installer writes). An
/// unsigned commit and one signed only by another key are refused with the commit, the remote
/// and the reason, and nothing is deployed or pulled; a commit signed by the trusted key is
/// deployed, also when the static delta to it was made before it was signed (as `ostree
/// gpg-sign` after a compose leaves it: the delta carries no signature). Both remotes verify
/// the summary too (`gpg-verify-summary`, as slipway writes them): a summary that is unsigned
/// or signed only by another key is refused, naming the summary, even over a good commit.
#[test]
fn signed_remotes_take_only_commits_signed_by_their_key() {
    let f = Fixture::new(None);
    let keys = f.dir.path().join("keys");
    let (good_home, good) = (keys.join("good"), keys.join("good.gpg"));
    let (wrong_home, wrong) = (keys.join("wrong"), keys.join("wrong.gpg"));
    new_key(&good_home, "slipway-test-good", &good);
    new_key(&wrong_home, "slipway-test-wrong", &wrong);
    let sign = |commit: &str, home: &std::path::Path| gpg_sign(&f.repo, commit, home);
    let publish = |version: &str, date: &str, signer: Option<&std::path::Path>| -> String {
        // Every candidate on top of v1, so no unsigned commit stays in the ref's history.
        let c = f.commit(version, date, format!("kernel {version}").as_bytes());
        if let Some(home) = signer {
            sign(&c, home);
        }
        update_summary(&f.repo, Some(&good_home));
        c
    };
    let refused_for = |what: &str, args: &[&str], commit: &str, needles: &[&str]| {
        f.upgrade_refused(what, args, needles);
        let o = Command::new("ostree")
            .arg(format!("--repo={}", f.sysroot_repo().display()))
            .args(["show", commit])
            .output()
            .unwrap();
        assert!(
            !o.status.success(),
            "{what}: {commit} is in the sysroot repository"
        );
    };
    let refused = |what: &str, args: &[&str], commit: &str, why: &str| {
        refused_for(what, args, commit, &[commit, &format!("remote {OS}"), why]);
    };
    // A good commit under a summary that is unsigned, or signed only by another key.
    let summary_refused = |what: &str, commit: &str| {
        let summary = format!("the summary of remote {OS}");
        update_summary(&f.repo, None);
        refused_for(
            &format!("{what}, unsigned summary"),
            &[],
            commit,
            &[&summary, "has no signature"],
        );
        update_summary(&f.repo, Some(&wrong_home));
        let by = format!("signed only by {}", gpg_fingerprint(&wrong_home));
        refused_for(
            &format!("{what}, summary by another key"),
            &[],
            commit,
            &[&summary, &by],
        );
        update_summary(&f.repo, Some(&good_home));
    };

    let v1 = publish("1", "2024-01-01 00:00:00 +0000", Some(&good_home));
    f.ostree_deploy(false);
    // Over HTTP: libostree uses static deltas only for remote repositories.
    let server = RepoServer::start(f.dir.path());
    let url = format!("http://127.0.0.1:{}/repo", server.port);

    // 1. The image's layout: the remote only in the deployment's /etc, its key beside it.
    ostree(&f.sysroot_repo(), &["remote", "delete", OS]);
    let root = f.deployment_root(0);
    std::fs::create_dir_all(root.join("etc/slipway/keys")).unwrap();
    std::fs::copy(&good, root.join("etc/slipway/keys/debian.gpg")).unwrap();
    std::fs::create_dir_all(root.join("etc/ostree/remotes.d")).unwrap();
    std::fs::write(
        root.join("etc/ostree/remotes.d/debian.conf"),
        format!(
            "[remote \"{OS}\"]\nurl={url}\ngpg-verify=true\ngpgkeypath=/etc/slipway/keys/debian.gpg\ngpg-verify-summary=true\n"
        ),
    )
    .unwrap();
    let v2 = publish("2", "2024-02-01 00:00:00 +0000", None);
    refused("unsigned, remote in /etc", &[], &v2, "no signature");
    refused("unsigned, --check", &["--check"], &v2, "no signature");
    ostree(&f.repo, &["reset", REF, &v1]);
    let v3 = publish("3", "2024-03-01 00:00:00 +0000", Some(&wrong_home));
    refused(
        "another key, remote in /etc",
        &[],
        &v3,
        &format!("signed only by {}", gpg_fingerprint(&wrong_home)),
    );
    ostree(&f.repo, &["reset", REF, &v1]);
    let v4 = f.commit("4", "2024-04-01 00:00:00 +0000", b"kernel 4");
    ostree(
        &f.repo,
        &[
            "static-delta",
            "generate",
            &format!("--from={v1}"),
            &format!("--to={v4}"),
        ],
    );
    sign(&v4, &good_home);
    summary_refused("remote in /etc", &v4);
    let out = f.host_ok("upgrade", &[]);
    assert!(out.contains(&format!("default: {v4} (version 4)")), "{out}");

    // 2. The installer's layout: the remote in the sysroot repository, its key imported.
    ostree(
        &f.sysroot_repo(),
        &[
            "remote",
            "add",
            &format!("--gpg-import={}", good.display()),
            "--set=gpg-verify-summary=true",
            OS,
            &url,
        ],
    );
    let v5 = publish("5", "2024-05-01 00:00:00 +0000", None);
    refused(
        "unsigned, remote in the repository",
        &[],
        &v5,
        "no signature",
    );
    ostree(&f.repo, &["reset", REF, &v4]);
    let v6 = publish("6", "2024-06-01 00:00:00 +0000", Some(&wrong_home));
    refused(
        "another key, remote in the repository",
        &[],
        &v6,
        &format!("signed only by {}", gpg_fingerprint(&wrong_home)),
    );
    // `deploy` by checksum pulls the commit alone: refused the same way.
    let o = f.host("deploy", &[&v6]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("signed only by"), "{}", stderr(&o));
    ostree(&f.repo, &["reset", REF, &v4]);
    let v7 = publish("7", "2024-07-01 00:00:00 +0000", Some(&good_home));
    summary_refused("remote in the repository", &v7);
    let out = f.host_ok("upgrade", &[]);
    assert!(out.contains(&format!("default: {v7} (version 7)")), "{out}");
    assert_eq!(f.systemctl_calls(), "", "something rebooted");
}

/// An `https://` remote is trusted through its CA only. The image's layout (the remote and
/// its `tls-ca-path` in the deployment's /etc, the CA read inside the deployment) upgrades
/// over TLS; a CA that did not sign the server's certificate, no CA (the machine's CAs do
/// not know the test's), or a file that is no CA are refused, naming the server or the file,
/// and nothing is deployed. The installer's layout (`tls-ca-path` in the sysroot repository,
/// a path of the running host) is refused for a sysroot that is not the running one.
/// FleetLock over https takes the lock with the CA and is refused without it.
#[test]
fn https_remotes_are_trusted_through_their_ca_only() {
    use common::tls::{TestCa, start_server};
    let f = Fixture::new(None);
    let tls = f.dir.path().join("tls");
    let ca = TestCa::new(&tls, "slipway-test-ca");
    let other = TestCa::new(&tls.join("other"), "slipway-other-ca");
    let (cert, key) = ca.issue("server", &["127.0.0.1"]);
    f.commit("1", "2024-01-01 00:00:00 +0000", b"kernel 1");
    f.ostree_deploy(false);
    let server = start_server(f.dir.path(), &cert, &key);
    let host = format!("127.0.0.1:{}", server.port);
    let url = format!("https://{host}/repo");
    ostree(&f.sysroot_repo(), &["remote", "delete", OS]);
    // Written into every deployment (the one an upgrade reads is the default).
    let set_remote = |ca_pem: Option<&[u8]>, tls_line: &str| {
        for i in 0..f.deployment_dirs().len() {
            let root = f.deployment_root(i);
            std::fs::create_dir_all(root.join("etc/slipway/tls")).unwrap();
            if let Some(pem) = ca_pem {
                std::fs::write(root.join("etc/slipway/tls/debian-ca.pem"), pem).unwrap();
            }
            std::fs::create_dir_all(root.join("etc/ostree/remotes.d")).unwrap();
            std::fs::write(
                root.join("etc/ostree/remotes.d/debian.conf"),
                format!("[remote \"{OS}\"]\nurl={url}\ngpg-verify=false\n{tls_line}"),
            )
            .unwrap();
        }
    };
    let with_ca = "tls-ca-path=/etc/slipway/tls/debian-ca.pem\n";
    let refused = |what: &str, needles: &[&str]| f.upgrade_refused(what, &[], needles);

    let ca_pem = std::fs::read(&ca.cert).unwrap();
    set_remote(Some(&ca_pem), with_ca);
    let v2 = f.commit("2", "2024-02-01 00:00:00 +0000", b"kernel 2");
    let out = f.host_ok("upgrade", &[]);
    assert!(out.contains(&format!("default: {v2} (version 2)")), "{out}");
    assert!(server.log().contains("GET /repo/"), "{}", server.log());

    f.commit("3", "2024-03-01 00:00:00 +0000", b"kernel 3");
    set_remote(Some(&std::fs::read(&other.cert).unwrap()), with_ca);
    let conf = f
        .deployment_root(0)
        .join("etc/ostree/remotes.d/debian.conf");
    refused(
        "another CA",
        &[
            &format!("the TLS certificate of {host} (remote {OS}) is not trusted"),
            &format!(
                "{}: tls-ca-path=/etc/slipway/tls/debian-ca.pem",
                conf.display()
            ),
        ],
    );
    set_remote(None, "");
    refused(
        "no CA",
        &[
            &format!("the TLS certificate of {host}"),
            "the machine's CA certificates",
        ],
    );
    set_remote(Some(b"not a certificate"), with_ca);
    refused(
        "no CA in the file",
        &[&format!("{}: tls-ca-path of remote {OS}", conf.display())],
    );
    set_remote(Some(&ca_pem), with_ca);
    let out = f.host_ok("upgrade", &[]);
    assert!(out.contains("(version 3)"), "{out}");

    // The installer's layout, in the sysroot repository: its path is the running host's.
    ostree(
        &f.sysroot_repo(),
        &[
            "remote",
            "add",
            "--no-gpg-verify",
            "--set=tls-ca-path=/etc/slipway/tls/debian-ca.pem",
            OS,
            &url,
        ],
    );
    f.commit("4", "2024-04-01 00:00:00 +0000", b"kernel 4");
    refused(
        "tls-ca-path in the repository of a sysroot elsewhere",
        &["tls-ca-path=/etc/slipway/tls/debian-ca.pem, a file of the running host"],
    );

    // FleetLock over https.
    let lock = |ca: Option<&std::path::Path>| {
        let certs = ca.map(|p| slipway::sys::http::read_ca(p).unwrap());
        slipway::host::fleetlock::Client::new(&format!("https://{host}"), "id", "default", certs)
            .unwrap()
            .pre_reboot()
    };
    assert!(
        matches!(
            lock(Some(&ca.cert)),
            Ok(slipway::host::fleetlock::Answer::Granted)
        ),
        "{}",
        server.log()
    );
    for (what, ca) in [("another CA", Some(other.cert.as_path())), ("no CA", None)] {
        let e = format!("{:#}", lock(ca).unwrap_err());
        assert!(
            e.contains(&format!("POST https://{host}/")) && e.contains("ertificate"),
            "FleetLock with {what}: {e}"
        );
    }
}
