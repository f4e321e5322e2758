//! Slow suite for `slipway compose tree`: real composes from the registry's packages.
//! Run with `cargo test --test compose_slow -- --include-ignored --test-threads=1` (root).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fixtures::*;
use common::guest::{file_checksums, object_bytes};

fn meta(repo: &Path, rev: &str, key: &str) -> String {
    ostree(repo, &["show", &format!("--print-metadata-key={key}"), rev])
}

#[test]
#[ignore = "slow: composes the default host"]
fn default_host_has_what_an_ostree_container_host_needs() {
    let host = composed_host();
    let (repo, r) = (&host.repo, host.reference.as_str());
    assert_eq!(ostree(repo, &["rev-parse", r]).trim(), host.commit);

    let os_release = ostree(repo, &["cat", r, "/usr/lib/os-release"]);
    assert!(
        os_release.contains("VERSION_CODENAME=bookworm"),
        "{os_release}"
    );
    // The build's own dpkg and apt settings (no fsync, no translations) stay out of the host.
    let dpkg_cfg = ostree(repo, &["ls", r, "/usr/etc/dpkg/dpkg.cfg.d"]);
    assert!(!dpkg_cfg.contains("99mmdebstrap"), "{dpkg_cfg}");

    let kver = meta(repo, r, "ostree.linux")
        .trim()
        .trim_matches('\'')
        .to_string();
    assert!(kver.ends_with("-amd64"), "ostree.linux = {kver}");
    for f in ["vmlinuz", "initramfs.img"] {
        let ls = ostree(repo, &["ls", r, &format!("/usr/lib/modules/{kver}/{f}")]);
        assert!(ls.starts_with('-'), "{f}: {ls}");
    }
    assert_eq!(meta(repo, r, "ostree.bootable").trim(), "true");

    // The ostree dracut module is inside the initramfs.
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("initramfs.img");
    let data = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["cat", r, &format!("/usr/lib/modules/{kver}/initramfs.img")])
        .output()
        .unwrap();
    std::fs::write(&img, &data.stdout).unwrap();
    let listing = stdout_of(Command::new("lsinitrd").arg(&img));
    assert!(
        listing.contains("ostree-prepare-root"),
        "no ostree-prepare-root in the initramfs"
    );

    // slipway itself and its health gate: the executable, the enabled units, the drop-ins
    // that gate the container runtimes, the default checks.
    for f in [
        "/usr/bin/slipway",
        "/usr/lib/systemd/system/slipway-boot-check.service",
        "/usr/lib/systemd/system/slipway-healthy.target",
        "/usr/lib/systemd/system/slipway-images.service",
        "/usr/etc/systemd/system/multi-user.target.wants/slipway-images.service",
        "/usr/lib/systemd/system/docker.service.d/50-slipway-health.conf",
        "/usr/lib/systemd/system/containerd.service.d/50-slipway-health.conf",
        "/usr/lib/systemd/system/kubelet.service.d/50-slipway-health.conf",
        "/usr/lib/slipway/checks/required.d/20-var",
        "/usr/etc/systemd/system/multi-user.target.wants/slipway-healthy.target",
        "/usr/etc/systemd/system/multi-user.target.wants/slipway-boot-check.service",
    ] {
        ostree(repo, &["ls", r, f]);
    }
    assert_eq!(
        meta(repo, r, "slipway.host-executable")
            .trim()
            .trim_matches('\'')
            .len(),
        64
    );

    // /var and /boot are empty; /var comes from tmpfiles.
    for d in ["/var", "/boot"] {
        let ls = ostree(repo, &["ls", r, d]);
        assert_eq!(ls.lines().count(), 1, "{d} is not empty:\n{ls}");
    }
    let tmpfiles = ostree(repo, &["cat", r, "/usr/lib/tmpfiles.d/slipway-var.conf"]);
    for needed in [
        "d /var/lib/docker ",
        "d /var/lib/containerd ",
        "d /var/home ",
        "d /var/roothome ",
        "L /var/lib/dpkg ",
    ] {
        assert!(
            tmpfiles.contains(needed),
            "missing `{needed}` in tmpfiles:\n{tmpfiles}"
        );
    }
    for link in [
        "home -> var/home",
        "root -> var/roothome",
        "ostree -> sysroot/ostree",
    ] {
        assert!(ostree(repo, &["ls", r, "/"]).contains(link), "{link}");
    }

    // The dpkg database is readable from the commit.
    let db = tmp.path().join("dpkg");
    run_ok(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["checkout", "--subpath=/usr/share/dpkg/database", "-U", r])
            .arg(&db),
    );
    let q = stdout_of(
        Command::new("dpkg-query")
            .arg(format!("--admindir={}", db.display()))
            .args([
                "-W",
                "-f",
                "${Package} ${Status}\n",
                "docker.io",
                "containerd",
                "kubernetes-client",
                "ostree-boot",
            ]),
    );
    assert_eq!(q.matches("install ok installed").count(), 4, "{q}");

    // Groups and first-boot state.
    let group = ostree(repo, &["cat", r, "/usr/etc/group"]);
    assert!(
        group.lines().any(|l| l.starts_with("docker:")),
        "no docker group"
    );
    assert!(
        !ostree(repo, &["ls", r, "/usr/etc/ssh"]).contains("ssh_host_"),
        "host keys baked in"
    );
    assert_eq!(ostree(repo, &["cat", r, "/usr/etc/machine-id"]), "");

    // Metadata.
    for key in [
        "version",
        "slipway.inputhash",
        "slipway.packages",
        "slipway.treefile",
        "ostree.linux",
    ] {
        let v = meta(repo, r, key);
        assert!(!v.trim().is_empty(), "metadata {key} missing");
    }
    assert!(meta(repo, r, "slipway.packages").contains("'docker.io'"));
    assert!(meta(repo, r, "slipway.treefile").contains("kubernetes-client"));

    // No backup, log or cache the installation left, no manuals, no translations (the
    // default host says `documentation: false`, `install-langs: []`); each copyright stays.
    let files = file_checksums(repo, &host.commit);
    let leftovers: Vec<&String> = files.keys().filter(|p| is_leftover(p)).collect();
    assert!(
        leftovers.is_empty(),
        "build leftovers in the commit: {leftovers:?}"
    );
    let docs: Vec<&String> = files
        .keys()
        .filter(|p| is_documentation(p))
        .take(10)
        .collect();
    assert!(docs.is_empty(), "documentation in the commit: {docs:?}");
    assert!(files.contains_key("/usr/share/doc/systemd/copyright"));

    run_ok(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .arg("fsck"),
    );
    assert!(repo.join("summary").is_file());
    let summary = ostree(repo, &["summary", "--view"]);
    assert!(summary.contains(r), "{summary}");

    // A second compose with the same inputs changes nothing.
    let json = tmp.path().join("again.json");
    let out = run_ok(
        slipway()
            .args(["compose", "tree", "--repo"])
            .arg(repo)
            .arg("--cachedir")
            .arg(apt_cache())
            .arg("--write-composejson-to")
            .arg(&json)
            .arg(source_dir().join("treefiles/atomic-host.json")),
    );
    let cj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(cj["changed"], false);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), host.commit);
    assert!(String::from_utf8_lossy(&out.stderr).contains("No apparent changes"));
    assert_eq!(ostree(repo, &["rev-parse", r]).trim(), host.commit);
}

/// A file a package installation leaves that no commit needs: dpkg's, debconf's and the
/// shadow files' backups, install logs, caches.
fn is_leftover(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with("-old")
        || name.ends_with(".log")
        || name.ends_with(".log.xz")
        || name.ends_with(".deb")
        || (path.contains("/var/lib/apt/lists/") && name != "lock")
        || ["aux-cache", "pkgcache.bin", "srcpkgcache.bin"].contains(&name)
        || [
            "passwd-", "group-", "shadow-", "gshadow-", "subuid-", "subgid-",
        ]
        .contains(&name)
}

/// Manuals and translations (what `documentation: false` and `install-langs: []` leave out).
fn is_documentation(path: &str) -> bool {
    let under = |d: &str| path.contains(d);
    (under("/usr/share/doc/") && !path.ends_with("/copyright"))
        || under("/usr/share/man/")
        || under("/usr/share/info/")
        || (under("/usr/share/locale/") && !path.ends_with("/locale.alias"))
}

/// The size of the `.deb` the compose cache holds for `package` (one version of it).
fn deb_size(package: &str) -> u64 {
    let dir = apt_cache().join("apt/archives");
    let found: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&format!("{package}_")) && n.ends_with(".deb")
        })
        .collect();
    assert_eq!(found.len(), 1, "one {package} .deb in {}", dir.display());
    found[0].metadata().unwrap().len()
}

/// The static delta `from` -> `to` in `repo`, in bytes.
fn delta_size(repo: &Path, from: &str, to: &str) -> u64 {
    let dir = repo.join(slipway::repo::static_delta_dir(Some(from), to).unwrap());
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn compose(repo: &Path, treefile: &Path, extra: &[&str]) -> Output {
    slipway()
        .args(["compose", "tree", "--repo"])
        .arg(repo)
        .arg("--cachedir")
        .arg(apt_cache())
        .args(extra)
        .arg(treefile)
        .output()
        .unwrap()
}

use std::process::Output;

#[test]
#[ignore = "slow: composes from a local signed apt repository"]
fn third_party_repository_with_signed_by() {
    let tmp = tempfile::tempdir().unwrap();
    let apt = local_apt_repo(tmp.path());
    let repo = tmp.path().join("repo");
    let repos = |key: &Path| {
        serde_json::json!({
            "repos": [{"uri": format!("file://{}", apt.dir.display()), "suite": "./", "components": [], "signed-by": key.display().to_string()}],
            "packages": ["hello", apt.package.clone()],
        })
    };

    // With the wrong key: a clear error naming the repository; nothing written.
    let tf = tiny_treefile(tmp.path(), "test/thirdparty", repos(&apt.wrong_key));
    let out = compose(&repo, &tf, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&apt.dir.display().to_string()), "{err}");
    assert!(err.contains("cannot be verified"), "{err}");
    assert!(!ostree(&repo, &["refs"]).contains("test/thirdparty"));

    // With the right key: the package's files are in the commit.
    let tf = tiny_treefile(tmp.path(), "test/thirdparty", repos(&apt.key));
    let out = compose(&repo, &tf, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let content = ostree(
        &repo,
        &[
            "cat",
            "test/thirdparty",
            &format!("/{}", apt.file_in_package),
        ],
    );
    assert_eq!(content, "hello from a third-party repository\n");
    assert!(meta(&repo, "test/thirdparty", "slipway.packages").contains("slipway-test-hello"));

    // Signed: the commit and the summary carry signatures that verify with the key.
    let fpr = gpg_fingerprint(&apt.gnupg_home);
    let out = compose(
        &repo,
        &tf,
        &[
            "--force-nocache",
            "--gpg-sign",
            &fpr,
            "--gpg-homedir",
            apt.gnupg_home.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(repo.join("summary.sig").is_file(), "summary not signed");
    run_ok(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["remote", "add", "--gpg-import"])
            .arg(&apt.key)
            .args(["self", &format!("file://{}", repo.display())]),
    );
    let shown = ostree(
        &repo,
        &["show", "--gpg-verify-remote=self", "test/thirdparty"],
    );
    assert!(shown.contains("Good signature"), "{shown}");

    // A repository that cannot be reached is named.
    let tf = tiny_treefile(
        tmp.path(),
        "test/thirdparty",
        serde_json::json!({"repos": [{"uri": "file:///nonexistent/slipway-repo", "suite": "./", "components": [], "signed-by": apt.key.display().to_string()}]}),
    );
    let out = compose(&repo, &tf, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("/nonexistent/slipway-repo") && err.contains("cannot be reached"),
        "{err}"
    );
}

#[test]
#[ignore = "slow: resolves against the registry"]
fn missing_package_is_named_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let tf = tiny_treefile(
        tmp.path(),
        "test/missing",
        serde_json::json!({"packages": ["hello", "no-such-package-slipway"]}),
    );
    let out = compose(&repo, &tf, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no-such-package-slipway"), "{err}");
    assert!(err.contains("tiny.json: packages[1]"), "{err}");
    assert_eq!(ostree(&repo, &["refs"]).trim(), "");
}

#[test]
#[ignore = "slow: composes a small tree"]
fn failing_postprocess_names_the_script_and_keeps_the_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    // Postprocess scripts have no network: a listener on the build machine's loopback is
    // out of reach, and the only interface the script sees is its own loopback.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let good = tiny_treefile(
        tmp.path(),
        "test/post",
        serde_json::json!({"postprocess": [format!(
            "cat /proc/net/dev > /usr/share/slipway-net-dev; \
             if bash -c 'echo hello > /dev/tcp/127.0.0.1/{port}' 2>/dev/null; then \
             echo reached-the-build-machine >&2; exit 1; fi; \
             echo ok > /usr/share/slipway-no-network"
        )]}),
    );
    let out = compose(&repo, &good, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listener.accept().is_err(),
        "a postprocess script connected to the build machine's loopback"
    );
    assert_eq!(
        ostree(
            &repo,
            &["cat", "test/post", "/usr/share/slipway-no-network"]
        ),
        "ok\n"
    );
    let dev = ostree(&repo, &["cat", "test/post", "/usr/share/slipway-net-dev"]);
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "{dev}");
    let before = ostree(&repo, &["rev-parse", "test/post"]);

    // A failing script: named with its output and status; the ref and the repository as
    // they were.
    let bad = tiny_treefile(
        tmp.path(),
        "test/post",
        serde_json::json!({"postprocess": ["echo configuring the widget; echo widget exploded >&2; exit 3"]}),
    );
    let out = compose(&repo, &bad, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("postprocess[0]"), "{err}");
    assert!(err.contains("widget exploded"), "{err}");
    assert!(err.contains("status 3"), "{err}");
    assert_eq!(ostree(&repo, &["rev-parse", "test/post"]), before);
    run_ok(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .arg("fsck"),
    );
}

/// Start a compose, kill it with `signal` when its stderr shows `marker`, return its stderr.
fn kill_compose_at(
    repo: &Path,
    tf: &Path,
    marker: &str,
    signal: nix::sys::signal::Signal,
    failpoints: &str,
) -> String {
    let mut child = slipway()
        .env("SLIPWAY_FAILPOINTS", failpoints)
        .args(["compose", "tree", "--force-nocache", "--repo"])
        .arg(repo)
        .arg("--cachedir")
        .arg(apt_cache())
        .arg(tf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let reader = BufReader::new(child.stderr.take().unwrap());
    let start = Instant::now();
    for line in reader.lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(marker) {
            if marker.starts_with("build:") {
                // Killed while the package stage unpacks a .deb of the cache directory into
                // the package cache (dpkg-deb at work, its child).
                let cache = apt_cache().display().to_string();
                let deadline = Instant::now() + Duration::from_secs(120);
                while processes_with(&["dpkg-deb", &cache]).is_empty() {
                    assert!(
                        Instant::now() < deadline,
                        "the package stage never ran dpkg-deb after {marker}:\n{seen}"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "compose never reached {marker}"
        );
    }
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "compose finished before it could be killed:\n{seen}"
    );
    seen
}

#[test]
#[ignore = "slow: kills composes"]
fn killed_compose_leaves_repo_consistent_and_next_compose_succeeds() {
    use nix::sys::signal::Signal;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let tf = tiny_treefile(tmp.path(), "test/kill", serde_json::json!({}));
    let out = compose(&repo, &tf, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = ostree(&repo, &["rev-parse", "test/kill"]);

    // Killed while objects are written, after they are all in but before the ref moves, and
    // while packages are unpacked into the package cache (SIGKILL and Ctrl-C).
    let entries = apt_cache().join("packages/entries");
    for (marker, sig, fp) in [
        ("commit: writing objects", Signal::SIGKILL, ""),
        (
            "failpoint commit-before-ref: pausing",
            Signal::SIGKILL,
            "commit-before-ref=pause",
        ),
        ("build: installing packages", Signal::SIGKILL, ""),
        ("build: installing packages", Signal::SIGINT, ""),
    ] {
        if marker.starts_with("build:") {
            // The largest packages leave the package cache, so that this compose unpacks them.
            for e in std::fs::read_dir(&entries).unwrap().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if ["libc6_", "perl-base_", "coreutils_", "libstdc++6_"]
                    .iter()
                    .any(|p| name.starts_with(p))
                {
                    std::fs::remove_dir_all(e.path()).unwrap();
                }
            }
        }
        kill_compose_at(&repo, &tf, marker, sig, fp);
        // The children die with slipway: wait (bounded) until none is left.
        let cache = apt_cache().display().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !processes_with(&["dpkg-deb", &cache]).is_empty()
            || !processes_with(&["bwrap", &cache]).is_empty()
        {
            assert!(
                Instant::now() < deadline,
                "the package stage outlived slipway killed at {marker}: {:?}",
                processes_with(&["dpkg-deb", &cache])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // No entry of the package cache is half written (entries appear whole, by rename).
        for e in std::fs::read_dir(&entries).unwrap().flatten() {
            let p = e.path();
            assert!(
                p.join("list").is_file()
                    && p.join("data").is_dir()
                    && p.join("control/control").is_file(),
                "a half-written entry after {sig} at {marker}: {}",
                p.display()
            );
        }
        run_ok(
            Command::new("ostree")
                .arg(format!("--repo={}", repo.display()))
                .arg("fsck"),
        );
        assert_eq!(
            ostree(&repo, &["rev-parse", "test/kill"]),
            before,
            "ref moved after {sig} at {marker}"
        );
        assert!(
            mounts_below(&apt_cache()).is_empty(),
            "mounts left behind: {:?}",
            mounts_below(&apt_cache())
        );
    }
    let out = compose(&repo, &tf, &["--force-nocache"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(ostree(&repo, &["rev-parse", "test/kill"]), before);
    run_ok(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .arg("fsck"),
    );
    // The killed composes' temporary entries went with the prune that ended this one (no
    // other compose held the cache).
    let left: Vec<String> = std::fs::read_dir(apt_cache().join("packages"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(left.is_empty(), "left in the package cache: {left:?}");
}

/// Processes whose command line contains all of `words`.
fn processes_with(words: &[&str]) -> Vec<String> {
    stdout_of(Command::new("ps").args(["-eo", "pid,args"]))
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .map(String::from)
        .collect()
}

/// Is any POSIX or flock lock held on `path` right now (from /proc/locks)?
fn lock_held(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(path) else {
        return false;
    };
    let suffix = format!(":{}", m.ino());
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .any(|dev_ino| dev_ino.ends_with(&suffix))
}

#[test]
#[ignore = "slow: kills composes while apt resolves packages"]
fn compose_killed_during_package_resolution_leaves_no_apt_and_no_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let tf = tiny_treefile(tmp.path(), "test/kill-apt", serde_json::json!({}));
    let cache = apt_cache().display().to_string();
    let apt_state = apt_cache().join("apt");
    for stage in ["update", "--print-uris"] {
        let mut child = slipway()
            .args(["compose", "tree", "--force-nocache", "--repo"])
            .arg(&repo)
            .arg("--cachedir")
            .arg(apt_cache())
            .arg(&tf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        loop {
            if !processes_with(&["apt-get", &cache, stage]).is_empty() {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "compose ended before apt-get {stage} was seen"
            );
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "apt-get {stage} never started"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let strays = || {
            let mut v = processes_with(&["apt-get", &cache]);
            v.extend(processes_with(&["/usr/lib/apt/methods/"]));
            v
        };
        while !strays().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            strays().is_empty(),
            "apt outlived the compose killed during {stage}: {:?}",
            strays()
        );
        for lock in [
            apt_state.join("lists/lock"),
            apt_state.join("lock"),
            apt_cache().join("apt.lock"),
        ] {
            assert!(
                !lock_held(&lock),
                "{} still locked after the compose was killed during {stage}",
                lock.display()
            );
        }
    }
    // And the next compose goes through.
    let out = compose(&repo, &tf, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "slow: two composes at once"]
fn concurrent_composes_into_one_repo_serialize() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let tf = tiny_treefile(tmp.path(), "test/concurrent", serde_json::json!({}));
    let spawn = || {
        slipway()
            .args(["compose", "tree", "--force-nocache", "--repo"])
            .arg(&repo)
            .arg("--cachedir")
            .arg(apt_cache())
            .arg(&tf)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Create the repository first so both race on the lock, not on creation.
    run_ok(
        Command::new("ostree")
            .args(["init", "--mode=archive"])
            .arg(format!("--repo={}", repo.display())),
    );
    let a = spawn();
    // The second starts once the first holds the repository's compose lock.
    let lock = repo.join("slipway-compose.lock");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !lock_held(&lock) {
        assert!(
            Instant::now() < deadline,
            "the first compose never took {}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let b = spawn();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert!(String::from_utf8_lossy(&b.stderr).contains("waiting for another slipway process"));
    let (ca, cb) = (
        String::from_utf8_lossy(&a.stdout).trim().to_string(),
        String::from_utf8_lossy(&b.stdout).trim().to_string(),
    );
    assert_ne!(ca, cb);
    // The second compose built on the first.
    let log = ostree(&repo, &["log", "test/concurrent"]);
    assert!(log.find(&cb).unwrap() < log.find(&ca).unwrap(), "{log}");
    assert_eq!(ostree(&repo, &["rev-parse", "test/concurrent"]).trim(), cb);
    run_ok(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .arg("fsck"),
    );
}

/// The root tree's contents and metadata checksums (`ostree ls -d -C REF /`).
fn root_tree_checksums(repo: &Path, rev: &str) -> String {
    let line = ostree(repo, &["ls", "-d", "-C", rev, "/"]);
    let f: Vec<&str> = line.split_whitespace().collect();
    assert!(f.len() >= 7, "unexpected `ostree ls` output: {line}");
    format!("{} {}", f[4], f[5])
}

#[test]
#[ignore = "slow: composes a small host twice"]
fn small_host_composed_twice_under_source_date_epoch_is_the_same_commit() {
    // Two composes of one small treefile into two fresh repositories, each resolving its
    // package set anew (`--force-nocache`) from the same apt indexes: under SOURCE_DATE_EPOCH
    // the same package set gives the very same commit (tree, metadata and timestamp).
    let tmp = tempfile::tempdir_in(cache_root()).unwrap();
    let treefile = tiny_treefile(
        tmp.path(),
        "slipway/test/reproducible",
        serde_json::json!({"packages": ["hello", "dash"]}),
    );
    let compose_into = |name: &str| {
        let repo = tmp.path().join(name);
        let out = slipway()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["compose", "tree", "--force-nocache", "--repo"])
            .arg(&repo)
            .arg("--cachedir")
            .arg(apt_cache())
            .arg(&treefile)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (repo, commit)
    };
    let (first_repo, first) = compose_into("first");
    let (second_repo, second) = compose_into("second");
    let packages = |repo: &Path, c: &str| meta(repo, c, "slipway.packages");
    assert_eq!(
        packages(&first_repo, &first),
        packages(&second_repo, &second),
        "the two composes resolved different package sets"
    );
    assert_eq!(
        root_tree_checksums(&first_repo, &first),
        root_tree_checksums(&second_repo, &second),
        "the same package set gave two trees"
    );
    // The commit checksum covers its metadata and timestamp too.
    assert_eq!(first, second, "the same tree gave two commits");
}

#[test]
#[ignore = "slow: composes the default host plus one package"]
fn adding_a_package_makes_an_update_the_size_of_the_change() {
    // v2 = the default host plus `hello` and a marker file, composed on top of the fixture
    // (v1) in a copy of its repository: what an upgrade from v1 to v2 transfers, by static
    // delta and by object pull, against the compressed size of the files that changed.
    let host = composed_host();
    let tmp = tempfile::tempdir_in(cache_root()).unwrap();
    let repo = tmp.path().join("repo");
    ostree(&repo, &["init", "--mode=archive"]);
    ostree(
        &repo,
        &["pull-local", host.repo.to_str().unwrap(), &host.reference],
    );
    std::fs::write(tmp.path().join("marker"), "v2\n").unwrap();
    let tf = tmp.path().join("v2.json");
    std::fs::write(
        &tf,
        serde_json::json!({
            "include": source_dir().join("treefiles/atomic-host.json"),
            "packages": ["hello"],
            "add-files": [["marker", "/usr/share/slipway-test/marker"]],
        })
        .to_string(),
    )
    .unwrap();
    let out = compose(&repo, &tf, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v1 = host.commit.clone();
    let v2 = ostree(&repo, &["rev-parse", HOST_REF]).trim().to_string();
    assert_ne!(v1, v2);
    let old = file_checksums(&repo, &v1);
    let new = file_checksums(&repo, &v2);
    // Content v2 has and v1 has nowhere: what any pull must fetch.
    let had: std::collections::BTreeSet<&String> = old.values().collect();
    let changed: std::collections::BTreeSet<String> =
        new.values().filter(|c| !had.contains(c)).cloned().collect();
    assert!(!changed.is_empty(), "v2 adds no file content to v1");
    let changed_bytes = object_bytes(&repo, &changed);
    let delta_bytes = delta_size(&repo, &v1, &v2);
    let deb = deb_size("hello");
    // A pull without deltas: every object of v2 a repository holding v1 lacks.
    let client = tmp.path().join("client");
    ostree(&client, &["init", "--mode=archive"]);
    ostree(&client, &["pull-local", repo.to_str().unwrap(), &v1]);
    let before = slipway::repo::dir_size(&client.join("objects"));
    ostree(&client, &["pull-local", repo.to_str().unwrap(), &v2]);
    let pulled = slipway::repo::dir_size(&client.join("objects")) - before;
    eprintln!(
        "v1 -> v2: {} files changed, {changed_bytes} bytes compressed; static delta {delta_bytes} bytes ({:.2}x; {:.2}x hello's {deb}-byte .deb); object pull {pulled} bytes ({:.2}x)",
        changed.len(),
        delta_bytes as f64 / changed_bytes as f64,
        delta_bytes as f64 / deb as f64,
        pulled as f64 / changed_bytes as f64
    );
    // The update is the size of the change: at most twice the package's own .deb (what
    // remains above it is the directory listings along the new files' paths, whose
    // checksums do not compress).
    assert!(
        delta_bytes <= 2 * deb,
        "adding hello ({deb} bytes) makes a {delta_bytes}-byte static delta"
    );
    // The pull fetches the new content and the metadata above it, nothing else of the host;
    // the delta is made and carries at least the new content.
    assert!(delta_bytes > 0, "the static delta is empty");
    assert!(
        pulled >= changed_bytes && pulled < changed_bytes + 4 * 1024 * 1024,
        "the pull of v2 over v1 fetched {pulled} bytes for {changed_bytes} bytes of new content"
    );
    for (name, value) in [
        ("host_update_changed_files_bytes", changed_bytes),
        ("host_update_static_delta_bytes", delta_bytes),
        ("host_update_object_pull_bytes", pulled),
        ("host_update_package_deb_bytes", deb),
    ] {
        record_measurement(name, value as f64, "bytes", "none");
    }
}

#[test]
#[ignore = "slow: composes a small host with a service image twice"]
fn adding_a_package_to_a_service_image_makes_an_update_the_size_of_the_change() {
    // v1: a small host binding one image built from packages; v2: the same with `hello`
    // added to the image. The image root is in the commit, so the update is an OSTree delta
    // too: at most 1.5x hello's .deb, and no backup or log of the installation travels.
    let tmp = tempfile::tempdir_in(cache_root()).unwrap();
    let repo = tmp.path().join("repo");
    let compose_with = |image_packages: &[&str]| {
        let tf = tiny_treefile(
            tmp.path(),
            "slipway/test/image-update",
            serde_json::json!({
                "packages": ["dash"],
                "documentation": false,
                "install-langs": [],
                "container-images": [{"name": "tool", "tag": "v1", "packages": image_packages}],
            }),
        );
        let out = compose(&repo, &tf, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let v1 = compose_with(&["busybox-static"]);
    let v2 = compose_with(&["busybox-static", "hello"]);
    assert_ne!(v1, v2);
    let image = "/usr/lib/slipway/images/tool/v1/rootfs/";
    let files = file_checksums(&repo, &v2);
    assert!(
        files.contains_key(&format!("{image}usr/bin/hello")),
        "hello is not in the image"
    );
    let in_image: Vec<&String> = files.keys().filter(|p| p.starts_with(image)).collect();
    let leftovers: Vec<&&String> = in_image.iter().filter(|p| is_leftover(p)).collect();
    assert!(
        leftovers.is_empty(),
        "build leftovers in the image: {leftovers:?}"
    );
    let docs: Vec<&&String> = in_image
        .iter()
        .filter(|p| is_documentation(p))
        .take(10)
        .collect();
    assert!(docs.is_empty(), "documentation in the image: {docs:?}");
    let deb = deb_size("hello");
    let delta = delta_size(&repo, &v1, &v2);
    eprintln!(
        "image tool:v1 + hello: static delta {delta} bytes, {:.2}x hello's {deb}-byte .deb",
        delta as f64 / deb as f64
    );
    assert!(
        delta * 2 <= deb * 3,
        "adding hello ({deb} bytes) to an image makes a {delta}-byte static delta"
    );
    record_measurement(
        "image_update_static_delta_bytes",
        delta as f64,
        "bytes",
        "none",
    );
    record_measurement(
        "image_update_package_deb_bytes",
        deb as f64,
        "bytes",
        "none",
    );
}

#[test]
#[ignore = "slow: composes the default host three ways, with and without the package cache"]
fn package_cache_gives_the_commit_of_unpacking_afresh() {
    // v1 the default host, v2 v1 plus `hello` (files only), v3 v2 plus `cron` (maintainer
    // scripts, a systemd unit, a user): each composed into repository A with the package
    // cache and into repository B unpacking every package afresh, under SOURCE_DATE_EPOCH.
    // The same root tree each time; v2 is the cached root of v1 plus hello's files, v3 runs
    // every package's scripts again.
    let tmp = tempfile::tempdir_in(cache_root()).unwrap();
    let treefile = |name: &str, extra: &[&str]| {
        let tf = tmp.path().join(format!("{name}.json"));
        std::fs::write(
            &tf,
            serde_json::json!({
                "include": source_dir().join("treefiles/atomic-host.json"),
                "packages": extra,
            })
            .to_string(),
        )
        .unwrap();
        tf
    };
    let steps = [
        treefile("v1", &[]),
        treefile("v2", &["hello"]),
        treefile("v3", &["hello", "cron"]),
    ];
    let compose_all = |repo: &str, extra: &[&str]| -> Vec<(String, serde_json::Value)> {
        let repo = tmp.path().join(repo);
        steps
            .iter()
            .enumerate()
            .map(|(i, tf)| {
                let report = tmp.path().join(format!("report-{i}.json"));
                let start = Instant::now();
                let out = slipway()
                    .env("SOURCE_DATE_EPOCH", "1700000000")
                    .args(["compose", "tree", "--repo"])
                    .arg(&repo)
                    .arg("--cachedir")
                    .arg(apt_cache())
                    .arg("--write-composejson-to")
                    .arg(&report)
                    .args(extra)
                    .arg(tf)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(!stderr.contains("leaves the cache"), "{stderr}");
                let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let cj: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
                eprintln!(
                    "{} step {}: {:.1}s, packages {}",
                    repo.display(),
                    i + 1,
                    start.elapsed().as_secs_f64(),
                    cj["packages"]
                );
                (root_tree_checksums(&repo, &commit), cj)
            })
            .collect()
    };
    let cached = compose_all("a", &[]);
    let afresh = compose_all("b", &["--no-package-cache"]);
    for (i, (a, b)) in cached.iter().zip(&afresh).enumerate() {
        assert_eq!(
            a.0,
            b.0,
            "step {}: the package cache gave another root tree than unpacking afresh",
            i + 1
        );
        assert_eq!(b.1["packages"]["path"], "full", "step {}", i + 1);
        assert_ne!(b.1["packages"]["unpacked"], 0, "step {}", i + 1);
    }
    assert_eq!(cached[1].1["packages"]["path"], "added", "{}", cached[1].1);
    assert_eq!(
        cached[1].1["packages"]["added"],
        serde_json::json!(["hello"])
    );
    assert_eq!(cached[2].1["packages"]["path"], "full", "{}", cached[2].1);
    // The three trees differ (each step adds a package).
    assert_ne!(cached[0].0, cached[1].0);
    assert_ne!(cached[1].0, cached[2].0);
}
