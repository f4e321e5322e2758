//! Fast checks of `slipway compose` through the real binary: no network, seconds.

mod common;

use std::path::Path;
use std::process::Command;

use common::fixtures::*;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn compose_err(treefile: &Path, repo: &Path) -> String {
    let out = slipway()
        .args(["compose", "tree", "--repo"])
        .arg(repo)
        .arg(treefile)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn treefile_errors_name_file_and_key_and_touch_nothing() {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("repo");
    write(
        d.path(),
        "inc/docker.json",
        r#"{"packages": ["docker.io"], "units": "docker.service"}"#,
    );
    let top = write(
        d.path(),
        "host.json",
        r#"{"include": ["inc/docker.json"], "ref": "x/y", "packages": ["systemd"]}"#,
    );
    let err = compose_err(&top, &repo);
    assert!(err.contains("inc/docker.json: units"), "{err}");
    assert!(
        !repo.exists(),
        "a repository was created for a bad treefile"
    );

    let top = write(
        d.path(),
        "host.json",
        r#"{"ref": "x/y", "packages": ["systemd"], "postprocess-script": "missing.sh"}"#,
    );
    let err = compose_err(&top, &repo);
    assert!(
        err.contains("postprocess-script") && err.contains("missing.sh"),
        "{err}"
    );

    let top = write(
        d.path(),
        "host.json",
        r#"{"ref": "x/y", "packages": ["systemd"], "paxkages": []}"#,
    );
    let err = compose_err(&top, &repo);
    assert!(err.contains("unknown field `paxkages`"), "{err}");
}

#[test]
fn every_compose_flag_is_documented() {
    let out = stdout_of(slipway().args(["compose", "tree", "--help"]));
    for flag in [
        "--repo",
        "--cachedir",
        "--force-nocache",
        "--write-composejson-to",
        "--gpg-sign",
        "--gpg-homedir",
        "--dry-run",
    ] {
        assert!(out.contains(flag), "{flag} missing from help:\n{out}");
    }
}

#[test]
fn commit_verb_writes_what_ostree_commit_writes() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    write(&tree, "usr/bin/hello", "#!/bin/sh\necho hello\n");
    write(&tree, "usr/share/doc/hello/README", "readme");
    std::os::unix::fs::symlink("../share/doc", tree.join("usr/bin/docs")).unwrap();
    let repo = d.path().join("repo");
    let out = stdout_of(
        slipway()
            .args(["compose", "commit", "--repo"])
            .arg(&repo)
            .args(["--ref", "fast/test", "--add-metadata-string", "version=1.0"])
            .arg(&tree),
    );
    let commit = out.trim();
    assert_eq!(ostree(&repo, &["rev-parse", "fast/test"]).trim(), commit);
    run_ok(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["commit", "--branch=fast/cli"])
            .arg(format!("--tree=dir={}", tree.display())),
    );
    assert_eq!(ostree(&repo, &["diff", "fast/test", "fast/cli"]).trim(), "");
    assert!(ostree(&repo, &["show", "fast/test"]).contains("Version: 1.0"));
    run_ok(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .arg("fsck"),
    );
}

#[test]
fn not_a_repository_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "notrepo/file", "x");
    let tree = d.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let out = slipway()
        .args(["compose", "commit", "--repo"])
        .arg(d.path().join("notrepo"))
        .args(["--ref", "a"])
        .arg(&tree)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an OSTree repository"));
}

/// The source hash the binary reports (and counts in every input hash) is the hash of this
/// checkout's sources: recomputed here the way build.rs documents it, so a binary built
/// from other sources, or a build script that stopped tracking a file, is caught.
#[test]
fn version_reports_the_hash_of_these_sources() {
    use sha2::{Digest, Sha256};
    fn files_below(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                files_below(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let root = source_dir();
    let mut files = Vec::new();
    files_below(&root.join("src"), &mut files);
    files_below(&root.join("pxe"), &mut files);
    for f in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        files.push(root.join(f));
    }
    let mut h = Sha256::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        h.update(f.strip_prefix(&root).unwrap().to_string_lossy().as_bytes());
        h.update([0u8]);
        h.update((data.len() as u64).to_le_bytes());
        h.update(&data);
    }
    let expected = hex::encode(h.finalize());
    let out = slipway().arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("(source {expected})")),
        "slipway --version says {text:?}, the sources hash to {expected}"
    );
}

/// A signing key that is not there is found in the plan, before the resolve, the build and
/// the commit, and before the repository is created.
#[test]
fn missing_signing_key_fails_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let tf = write(
        d.path(),
        "t.json",
        r#"{"ref": "test/sign", "packages": ["hello"]}"#,
    );
    let repo = d.path().join("repo");
    let out = slipway()
        .args(["compose", "tree", "--repo"])
        .arg(&repo)
        .args(["--gpg-sign", "0123456789ABCDEF", "--gpg-homedir"])
        .arg(&home)
        .arg("--cachedir")
        .arg(d.path().join("cache"))
        .arg(&tf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no secret key `0123456789ABCDEF`"), "{err}");
    assert!(!err.contains("resolve:"), "work started: {err}");
    assert!(!repo.exists(), "the repository was created");
    assert!(!d.path().join("cache").exists(), "the cache was created");
}

#[test]
fn every_shipped_treefile_loads_and_the_keystone_example_binds_its_service() {
    let dir = source_dir().join("treefiles");
    // The top-level treefiles (base.json and the like are fragments others include).
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .chain([dir.join("atomic-host.json")])
        .collect();
    files.sort();
    for f in &files {
        slipway::treefile::Treefile::load(f).unwrap_or_else(|e| panic!("{}: {e:#}", f.display()));
    }
    let k =
        slipway::treefile::Treefile::load(&dir.join("examples/openstack-keystone.json")).unwrap();
    assert!(
        k.packages.iter().any(|p| p == "docker.io"),
        "the default host is included"
    );
    let img = &k.container_images[0];
    assert_eq!(img.reference(), "keystone:22.0.2");
    for var in [
        "OS_USERNAME",
        "OS_PASSWORD",
        "OS_PROJECT_NAME",
        "OS_AUTH_URL",
    ] {
        assert!(img.config.env.contains_key(var), "{var}");
    }
    let s = &k.services[0];
    assert_eq!(
        (s.name.as_str(), s.image.as_str()),
        ("keystone", "keystone:22.0.2")
    );
    assert_eq!(s.ports[0].host, 5000);
    assert!(s.volumes[0].host.starts_with("/var/"));
}

#[test]
fn a_service_of_an_unbound_image_stops_the_compose_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("repo");
    let top = write(
        d.path(),
        "host.json",
        r#"{"ref": "x/y", "packages": ["systemd"],
            "container-images": [{"name": "web", "tag": "v1", "packages": ["busybox-static"]}],
            "services": [{"name": "api", "image": "api:v1"}]}"#,
    );
    let err = compose_err(&top, &repo);
    assert!(err.contains("host.json"), "{err}");
    assert!(
        err.contains("service api runs image api:v1, which the treefile does not bind (container-images has: web:v1)"),
        "{err}"
    );
    assert!(!repo.exists(), "nothing is written");
}
