//! A tiny OSTree repository with commits that look like slipway hosts to `pxe build` (a
//! kernel that is not real, an initramfs `lsinitrd` reads), and `slipway pxe build` on it:
//! shared by `tests/pxe_build_fast.rs` and `tests/pxe_serve.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::fixtures::*;

pub const KVER: &str = "6.1.0-test";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub out: PathBuf,
}

/// The initramfs of the fake commits: what `check_initramfs` looks for, as dracut lays it out.
pub fn fake_initramfs(dir: &Path) -> Vec<u8> {
    let mut w = slipway::pxe::cpio::Writer::new(Vec::new(), 0);
    for d in [
        "etc",
        "usr",
        "usr/bin",
        "usr/lib",
        "usr/lib/systemd",
        "usr/lib/modules",
    ] {
        w.dir(d, 0o755).unwrap();
    }
    for f in [
        "usr/lib/systemd/systemd",
        "usr/bin/dracut-cmdline",
        "usr/bin/mount",
        "usr/bin/mkdir",
        "usr/bin/mv",
        "usr/bin/stat",
        "usr/bin/bash",
        "usr/lib/initrd-release",
    ] {
        w.file(f, 0o755, b"#!fake\n").unwrap();
    }
    w.symlink("usr/bin/sh", "bash").unwrap();
    w.symlink("etc/initrd-release", "../usr/lib/initrd-release")
        .unwrap();
    for m in [
        "kernel/drivers/block/loop.ko",
        "kernel/fs/squashfs/squashfs.ko",
        "kernel/fs/overlayfs/overlay.ko",
    ] {
        w.file(&format!("usr/lib/modules/{KVER}/{m}"), 0o644, b"module")
            .unwrap();
    }
    let cpio = w.finish().unwrap();
    let raw = dir.join("initramfs.cpio");
    std::fs::write(&raw, cpio).unwrap();
    run_ok(Command::new("zstd").args(["-q", "-f", "-19"]).arg(&raw));
    std::fs::read(dir.join("initramfs.cpio.zst")).unwrap()
}

/// Modules for a commit's tree, so that `pxe build` writes `netroot.img`: a network driver
/// (`NIC_MODULE`) and what it depends on (`NIC_DEPENDENCY`), the initramfs's three modules and
/// one module that is neither (`OTHER_MODULE`), with a `modules.dep` naming them. Not real
/// modules: `depmod` indexes them by path (it warns that it cannot read their symbols).
pub const NIC_MODULE: &str = "kernel/drivers/net/ethernet/fake/fake_nic.ko";
pub const NIC_DEPENDENCY: &str = "kernel/net/core/fake_link.ko";
pub const OTHER_MODULE: &str = "kernel/sound/fake_snd.ko";
pub fn add_nic_modules(tree: &Path) {
    let moddir = tree.join(format!("usr/lib/modules/{KVER}"));
    let initramfs = [
        "kernel/drivers/block/loop.ko",
        "kernel/fs/squashfs/squashfs.ko",
        "kernel/fs/overlayfs/overlay.ko",
    ];
    let mut dep = format!("{NIC_MODULE}: {NIC_DEPENDENCY}\n{NIC_DEPENDENCY}:\n{OTHER_MODULE}:\n");
    for m in initramfs {
        dep.push_str(&format!("{m}:\n"));
    }
    for m in [NIC_MODULE, NIC_DEPENDENCY, OTHER_MODULE]
        .into_iter()
        .chain(initramfs)
    {
        let p = moddir.join(m);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("module {m}")).unwrap();
    }
    std::fs::write(moddir.join("modules.dep"), dep).unwrap();
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let out = dir.path().join("pxe");
        ostree(&repo, &["init", "--mode=archive"]);
        Fixture { dir, repo, out }
    }

    /// A commit on `reference` of a tree that looks like a slipway host to `pxe build`.
    pub fn commit(&self, reference: &str, version: &str) -> String {
        self.commit_with(reference, version, |_| {})
    }

    pub fn commit_with(&self, reference: &str, version: &str, edit: impl Fn(&Path)) -> String {
        let tree = self
            .dir
            .path()
            .join(format!("tree-{}-{version}", reference.replace('/', "_")));
        let w = |p: &str, c: &[u8]| {
            let p = tree.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        };
        w(
            &format!("usr/lib/modules/{KVER}/vmlinuz"),
            format!("kernel {reference} {version}").as_bytes(),
        );
        w(
            &format!("usr/lib/modules/{KVER}/initramfs.img"),
            &fake_initramfs(self.dir.path()),
        );
        w(&format!("usr/lib/modules/{KVER}/modules.builtin"), b"");
        w("usr/lib/systemd/systemd", b"systemd");
        w("usr/lib/os-release", b"ID=debian\n");
        w("usr/etc/os-release", b"ID=debian\n");
        w("usr/etc/hostname", b"host\n");
        w("usr/etc/systemd/system/.keep", b"");
        std::fs::create_dir_all(tree.join("var")).unwrap();
        edit(&tree);
        ostree(
            &self.repo,
            &[
                "commit",
                &format!("--branch={reference}"),
                &format!("--tree=dir={}", tree.display()),
                &format!("--add-metadata-string=version={version}"),
            ],
        )
        .trim()
        .to_string()
    }

    /// `slipway pxe build --repo REPO -o OUT ARGS...`, with the shared package cache.
    pub fn build(&self, args: &[&str]) -> Output {
        let cache = cache_root().join("pxe-build-cache");
        slipway()
            .args(["pxe", "build", "--repo"])
            .arg(&self.repo)
            .arg("-o")
            .arg(&self.out)
            .arg("--cachedir")
            .arg(&cache)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn build_ok(&self, args: &[&str]) -> Output {
        let out = self.build(args);
        assert!(
            out.status.success(),
            "pxe build {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn manifest(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.out.join("manifest.json")).unwrap())
            .unwrap()
    }

    pub fn commit_file(&self, commit: &str, path: &str) -> Vec<u8> {
        let out = run_ok(
            Command::new("ostree")
                .arg(format!("--repo={}", self.repo.display()))
                .args(["cat", commit, path]),
        );
        out.stdout
    }
}

/// A public key for `pxe build --trusted-key` (the shipped kickstart verifies commits), made
/// in `dir` once.
pub fn trusted_key(dir: &Path) -> PathBuf {
    let key = dir.join("trusted.gpg");
    if !key.exists() {
        new_key(&dir.join("trusted-gnupg"), "slipway-pxe-test", &key);
    }
    key
}

/// `kickstart/atomic-host.ks` (a template for `pxe serve`) rendered for a build's default
/// kickstart, written into `dir`.
pub fn atomic_host_ks(dir: &Path) -> PathBuf {
    let src = source_dir().join("kickstart/atomic-host.ks");
    let text = std::fs::read_to_string(&src).unwrap();
    let mut values =
        slipway::kickstart::template::dummy_values("slipway/bookworm/x86_64/atomic-host");
    values.insert("server", "http://192.168.100.1:8080".into());
    values.insert("hostname", "node1".into());
    let out = dir.join("atomic-host.ks");
    std::fs::write(
        &out,
        slipway::kickstart::template::render(&text, &src.display().to_string(), &values).unwrap(),
    )
    .unwrap();
    out
}
