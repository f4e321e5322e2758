//! The package stage on small packages built here with `dpkg-deb` (real archives, no
//! network): unpacking into the cache, assembling a root as dpkg's unpack would, and the
//! watch over cached roots.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::assemble::{self, Filters};
use super::cache::{DebFile, PackageCache};
use super::*;
use crate::compose::apt::ResolvedPackage;

/// Build `name_1.0_all.deb` in `dir` from `files` (path, content), `links` (path, target),
/// hard links (path, existing path) and extra control fields.
fn deb(
    dir: &Path,
    name: &str,
    files: &[(&str, &str)],
    links: &[(&str, &str)],
    hard: &[(&str, &str)],
    control: &str,
    conffiles: &[&str],
) -> DebFile {
    let root = dir.join(format!("src-{name}"));
    for (p, c) in files {
        let f = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, c).unwrap();
        // A fixed time, as a package's files have.
        let t = rustix::time::Timespec {
            tv_sec: 1_600_000_000,
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &f,
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
    }
    for (p, t) in links {
        let f = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(t, &f).unwrap();
    }
    for (p, t) in hard {
        std::fs::hard_link(
            root.join(t.trim_start_matches('/')),
            root.join(p.trim_start_matches('/')),
        )
        .unwrap();
    }
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\n{control}Description: test package {name}\n"
        ),
    )
    .unwrap();
    if !conffiles.is_empty() {
        std::fs::write(root.join("DEBIAN/conffiles"), conffiles.join("\n") + "\n").unwrap();
    }
    let path = dir.join(format!("{name}_1.0_all.deb"));
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-b"])
        .arg(&root)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    DebFile {
        pkg: ResolvedPackage {
            name: name.into(),
            version: "1.0".into(),
            arch: "all".into(),
            hash: String::new(),
        },
        sha256: cache::sha256_file(&path).unwrap(),
        path,
    }
}

fn host_filters() -> Filters {
    Filters::parse(&[
        "path-exclude=/usr/share/doc/*".into(),
        "path-include=/usr/share/doc/*/copyright".into(),
    ])
    .unwrap()
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn packages_are_unpacked_once_and_assembled_as_dpkg_unpacks_them() {
    let d = tempfile::tempdir().unwrap();
    let a = deb(
        d.path(),
        "pa",
        &[
            ("/bin/pa", "#!/bin/sh\necho a\n"),
            ("/etc/pa.conf", "setting=1\n"),
            ("/usr/share/doc/pa/README", "read me\n"),
            ("/usr/share/doc/pa/copyright", "free\n"),
        ],
        &[("/usr/bin/pa2", "pa")],
        &[("/bin/pa-again", "/bin/pa")],
        "",
        &["/etc/pa.conf"],
    );
    let b = deb(
        d.path(),
        "pb",
        &[("/usr/share/pb/shared", "from b\n")],
        &[],
        &[],
        "",
        &[],
    );
    let c = deb(
        d.path(),
        "pc",
        &[("/usr/share/pb/shared", "from c\n")],
        &[],
        &[],
        "Replaces: pb (<< 2)\n",
        &[],
    );
    let cache = PackageCache::open(&d.path().join("cache")).unwrap();
    let debs = vec![a, b, c];
    let entries = cache.entries(&debs, 2).unwrap();
    assert_eq!(cache.imported.load(std::sync::atomic::Ordering::SeqCst), 3);
    // The entry holds /usr merged, the list the archive's own names, the root first.
    assert!(entries[0].data().join("usr/bin/pa").is_file());
    assert!(!entries[0].data().join("bin").exists());
    assert_eq!(entries[0].list[0], "/.");
    assert!(entries[0].list.contains(&"/bin/pa".to_string()));
    assert_eq!(entries[0].conffiles(), ["/etc/pa.conf"]);

    let root = d.path().join("root");
    let tree = assemble::skeleton(&root, "amd64").unwrap();
    let all: Vec<&Entry> = entries.iter().collect();
    let lists = assemble::unpack(&tree, &all, &host_filters()).unwrap();
    assemble::write_database(&tree, &all, &lists).unwrap();

    assert_eq!(
        std::fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(read(&root, "bin/pa"), "#!/bin/sh\necho a\n");
    let m = std::fs::metadata(root.join("usr/bin/pa")).unwrap();
    assert_eq!(m.mtime(), 1_600_000_000, "the archive's time is kept");
    let again = std::fs::metadata(root.join("usr/bin/pa-again")).unwrap();
    assert_eq!(m.ino(), again.ino(), "a hard link stays one");
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/pa2")).unwrap(),
        Path::new("pa")
    );
    // Conffiles wait for dpkg --configure; filtered files stay listed but absent.
    assert!(root.join("etc/pa.conf.dpkg-new").is_file());
    assert!(!root.join("etc/pa.conf").exists());
    assert!(!root.join("usr/share/doc/pa/README").exists());
    assert!(root.join("usr/share/doc/pa/copyright").is_file());
    let list_a = read(&root, "var/lib/dpkg/info/pa.list");
    assert!(list_a.contains("/usr/share/doc/pa/README\n"), "{list_a}");
    // pc replaces pb's file: pc's content, and pb no longer lists it.
    assert_eq!(read(&root, "usr/share/pb/shared"), "from c\n");
    assert!(!read(&root, "var/lib/dpkg/info/pb.list").contains("/usr/share/pb/shared"));
    assert!(read(&root, "var/lib/dpkg/info/pc.list").contains("/usr/share/pb/shared"));
    let status = read(&root, "var/lib/dpkg/status");
    assert!(
        status.contains("Package: pa\nStatus: install ok unpacked\n")
            && status.contains("Conffiles:\n /etc/pa.conf newconffile\n"),
        "{status}"
    );
    assert!(status.find("Package: pa").unwrap() < status.find("Package: pb").unwrap());

    // A second compose finds all three unpacked.
    let cache2 = PackageCache::open(&d.path().join("cache")).unwrap();
    cache2.entries(&debs, 2).unwrap();
    assert_eq!(cache2.imported.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn a_file_in_two_packages_that_do_not_replace_each_other_is_named() {
    let d = tempfile::tempdir().unwrap();
    let x = deb(d.path(), "px", &[("/usr/lib/same", "x")], &[], &[], "", &[]);
    let y = deb(d.path(), "py", &[("/usr/lib/same", "y")], &[], &[], "", &[]);
    let cache = PackageCache::open(&d.path().join("cache")).unwrap();
    let entries = cache.entries(&[x, y], 1).unwrap();
    let tree = assemble::skeleton(&d.path().join("root"), "amd64").unwrap();
    let all: Vec<&Entry> = entries.iter().collect();
    let e = assemble::unpack(&tree, &all, &Filters::default()).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("/usr/lib/same is in both px and py"), "{msg}");
}

#[test]
fn a_package_whose_archive_is_not_a_deb_is_named() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("broken_1.0_all.deb");
    std::fs::write(&path, "not an archive").unwrap();
    let cache = PackageCache::open(&d.path().join("cache")).unwrap();
    let debs = [DebFile {
        pkg: ResolvedPackage {
            name: "broken".into(),
            version: "1.0".into(),
            arch: "all".into(),
            hash: String::new(),
        },
        sha256: "00".into(),
        path: path.clone(),
    }];
    let e = cache.entries(&debs, 1).unwrap_err();
    assert!(
        format!("{e:#}").contains(&path.display().to_string()),
        "{e:#}"
    );
    // Nothing half-written is left as an entry.
    assert_eq!(
        std::fs::read_dir(d.path().join("cache/entries"))
            .unwrap()
            .count(),
        0
    );
}

fn cached_root(dir: &Path) -> PathBuf {
    let t = dir.join("trees/t1");
    std::fs::create_dir_all(t.join("root/usr/lib")).unwrap();
    std::fs::write(t.join("root/usr/lib/os-release"), "ID=debian\n").unwrap();
    t
}

#[test]
fn a_cached_root_written_in_place_leaves_the_cache() {
    let d = tempfile::tempdir().unwrap();
    let t = cached_root(d.path());
    let mut w = Watch::default();
    w.add(&t).unwrap();
    // A build that links the root and appends to a file writes the cached file too.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(t.join("root/usr/lib/os-release"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"X=1\n").unwrap();
    assert_eq!(w.verify().unwrap(), vec![t.clone()]);
    assert!(!t.exists(), "the changed root is still in the cache");
}

#[test]
fn a_cached_root_left_alone_stays() {
    let d = tempfile::tempdir().unwrap();
    let t = cached_root(d.path());
    let mut w = Watch::default();
    w.add(&t).unwrap();
    // Replacing a file (a new inode, as dpkg and every rename-based writer do) is fine.
    link_root(&t.join("root"), &d.path().join("build")).unwrap();
    std::fs::remove_file(d.path().join("build/usr/lib/os-release")).unwrap();
    std::fs::write(d.path().join("build/usr/lib/os-release"), "ID=other\n").unwrap();
    assert!(w.verify().unwrap().is_empty());
    assert_eq!(read(&t, "root/usr/lib/os-release"), "ID=debian\n");
}

#[test]
fn account_ids_ignore_all_but_names_and_ids() {
    let seed = |p: &str, g: &str| {
        let (p, g) = (p.to_string(), g.to_string());
        account_ids(move |f| match f {
            "passwd" => Some(p.clone()),
            "group" => Some(g.clone()),
            _ => None,
        })
    };
    let a = seed(
        "root:x:0:0:root:/root:/bin/bash\n",
        "root:x:0:\nsudo:x:27:\n",
    );
    let b = seed(
        "root:x:0:0:Root:/root:/bin/sh\n",
        "sudo:x:27:core\nroot:x:0:\n",
    );
    let c = seed(
        "root:x:0:0:root:/root:/bin/bash\n",
        "root:x:0:\nsudo:x:28:\n",
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(account_ids(|_| None), "none");
}

#[test]
fn a_linked_root_shares_usr_but_not_etc_and_var() {
    let d = tempfile::tempdir().unwrap();
    let t = cached_root(d.path());
    std::fs::create_dir_all(t.join("root/etc")).unwrap();
    std::fs::write(t.join("root/etc/shells"), "/bin/sh\n").unwrap();
    std::fs::create_dir_all(t.join("root/var/lib/dpkg")).unwrap();
    std::fs::write(t.join("root/var/lib/dpkg/lock"), "").unwrap();
    let build = d.path().join("build");
    link_root(&t.join("root"), &build).unwrap();
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&build.join("usr/lib/os-release")),
        ino(&t.join("root/usr/lib/os-release"))
    );
    assert_ne!(
        ino(&build.join("etc/shells")),
        ino(&t.join("root/etc/shells"))
    );
    assert_ne!(
        ino(&build.join("var/lib/dpkg/lock")),
        ino(&t.join("root/var/lib/dpkg/lock"))
    );
    // Appending to /etc in the build leaves the kept root as it was.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(build.join("etc/shells"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"/bin/bash\n").unwrap();
    assert_eq!(read(&t, "root/etc/shells"), "/bin/sh\n");
}

#[test]
fn a_kept_root_changed_since_it_was_kept_is_not_used() {
    let d = tempfile::tempdir().unwrap();
    let trees = d.path().join("trees");
    let t = cached_root(d.path());
    let deb = DebFile {
        pkg: ResolvedPackage {
            name: "x".into(),
            version: "1".into(),
            arch: "all".into(),
            hash: String::new(),
        },
        path: PathBuf::from("/nonexistent"),
        sha256: "ab".into(),
    };
    let meta = TreeMeta {
        base: "base".into(),
        packages: [("x:all".to_string(), "ab".to_string())].into(),
        ids: vec!["none".into()],
        digest: root_digest(&t.join("root")).unwrap(),
    };
    std::fs::write(t.join("meta.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
    let found = find_tree(&trees, "base", "none", std::slice::from_ref(&deb)).unwrap();
    assert!(matches!(found, Some(Found::Exact(ref p)) if p == &t));
    // Written in place (as by a compose killed before its watch ran): dropped, not used.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(t.join("root/usr/lib/os-release"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"X=1\n").unwrap();
    let found = find_tree(&trees, "base", "none", &[deb]).unwrap();
    assert!(found.is_none());
    assert!(!t.exists(), "the changed root is still in the cache");
}
