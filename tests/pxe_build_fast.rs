//! Fast checks of `slipway pxe build` through the real binary: tiny commits made with the
//! `ostree` CLI (a kernel that is not real, and an initramfs that is a real zstd-compressed
//! cpio archive with the paths and module files a dracut systemd initramfs has, so `lsinitrd`
//! reads it), the real mksquashfs, unsquashfs, cpio, grub-mkimage and grub-script-check, and
//! the boot programs out of Debian's packages (downloaded once into the test cache by
//! `apt-get download`; later runs need no network). Runs as root.
//!
//! The real installer initramfs and live root of a composed host are checked by the slow
//! test at the end (`#[ignore]`).

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::fixtures::*;
use common::pxe::*;
use serde_json::Value;
use slipway::pxe::build::{
    LIVE_SQUASHFS_IN_CPIO, SERVER_PLACEHOLDER, SQUASHFS_IN_CPIO, cpio_entry_offset,
};

const REF_A: &str = "test/pxe/a";
const REF_B: &str = "test/pxe/b";
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sha256(p: &Path) -> String {
    slipway::repo::sha256_file(p).unwrap()
}

/// The files `rootfs.img` (a cpio archive) holds, as GNU cpio lists them.
fn cpio_list(p: &Path) -> BTreeSet<String> {
    let out = run_ok(
        Command::new("cpio")
            .args(["-i", "-t", "--quiet", "-F"])
            .arg(p),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// `netroot.img` (a gzip-compressed cpio archive) unpacked into `dest` (created).
fn unpack_netroot(img: &Path, dest: &Path) {
    std::fs::create_dir(dest).unwrap();
    run_ok(
        Command::new("sh")
            .current_dir(dest)
            .arg("-c")
            .arg(format!("zcat {} | cpio -i -d --quiet", img.display())),
    );
}

/// Where the squashfs `name` starts inside `rootfs.img`.
fn squashfs_offset(rootfs_img: &Path, name: &str) -> u64 {
    let mut f = std::fs::File::open(rootfs_img).unwrap();
    cpio_entry_offset(&mut f, name)
        .unwrap()
        .unwrap_or_else(|| panic!("rootfs.img holds no {name}"))
        .0
}

/// What the squashfs `name` inside `rootfs.img` holds, as unsquashfs lists it (`-o`: its
/// offset).
fn squashfs_list(rootfs_img: &Path, name: &str) -> BTreeSet<String> {
    let offset = squashfs_offset(rootfs_img, name);
    let out = run_ok(
        Command::new("unsquashfs")
            .args(["-lc", "-o", &offset.to_string(), "-d", "/"])
            .arg(rootfs_img),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches('/').to_string())
        .collect()
}

/// The squashfs `name` inside `rootfs.img` unpacked into `dest` (owners, modes and extended
/// attributes kept), by the build machine's unsquashfs or by the one in `tools` (the live
/// layer's, with its library beside it).
fn unsquash(rootfs_img: &Path, name: &str, dest: &Path, tools: Option<&Path>) {
    let offset = squashfs_offset(rootfs_img, name).to_string();
    let mut cmd = match tools {
        Some(dir) => {
            let mut c = Command::new(dir.join("unsquashfs"));
            c.env("LD_LIBRARY_PATH", dir);
            c
        }
        None => Command::new("unsquashfs"),
    };
    run_ok(
        cmd.args(["-q", "-n", "-o", &offset, "-d"])
            .arg(dest)
            .arg(rootfs_img),
    );
}

/// A file's content from the live layer's squashfs inside `rootfs.img`.
fn squashfs_cat(rootfs_img: &Path, path: &str) -> Vec<u8> {
    let offset = squashfs_offset(rootfs_img, LIVE_SQUASHFS_IN_CPIO);
    run_ok(
        Command::new("unsquashfs")
            .args(["-cat", "-o", &offset.to_string()])
            .arg(rootfs_img)
            .arg(path),
    )
    .stdout
}

/// A PE image for x86-64 (what UEFI firmware loads).
fn assert_pe_x64(p: &Path) {
    let b = std::fs::read(p).unwrap();
    assert_eq!(&b[..2], b"MZ", "{} is not a PE image", p.display());
    let pe = u32::from_le_bytes(b[0x3c..0x40].try_into().unwrap()) as usize;
    assert_eq!(&b[pe..pe + 4], b"PE\0\0", "{}", p.display());
    let machine = u16::from_le_bytes(b[pe + 4..pe + 6].try_into().unwrap());
    assert_eq!(machine, 0x8664, "{} is not for x86-64", p.display());
}

/// A PXE network boot program: loaded at 0:7C00 and entered at its first byte, a far jump.
fn assert_pxe_nbp(p: &Path, marker: &[u8]) {
    let b = std::fs::read(p).unwrap();
    assert_eq!(b[0], 0xEA, "{} does not start with a far jump", p.display());
    assert!(
        b.windows(marker.len()).any(|w| w == marker),
        "{} does not contain {:?}",
        p.display(),
        String::from_utf8_lossy(marker)
    );
}

/// Every file a generated script or menu names, relative to DIR.
fn named_files(out: &Path) -> Vec<(String, String)> {
    let mut named = Vec::new();
    let server = format!("{SERVER_PLACEHOLDER}/");
    let mut ipxe_scripts = vec![out.join("boot.ipxe")];
    for e in std::fs::read_dir(out.join("refs")).unwrap() {
        ipxe_scripts.push(e.unwrap().path().join("boot.ipxe"));
    }
    for script in ipxe_scripts {
        let text = std::fs::read_to_string(&script).unwrap();
        assert!(text.starts_with("#!ipxe\n"), "{}", script.display());
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [cmd @ ("kernel" | "initrd" | "chain"), url, ..] = words[..] {
                let rel = url.strip_prefix(&server).unwrap_or_else(|| {
                    panic!("{}: {url} is not below {{{{server}}}}", script.display())
                });
                named.push((format!("{} ({cmd})", script.display()), rel.to_string()));
            }
        }
    }
    let pxelinux = std::fs::read_to_string(out.join("pxelinux.cfg/default")).unwrap();
    for line in pxelinux.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["KERNEL", p] => named.push(("pxelinux KERNEL".into(), p.to_string())),
            ["INITRD", list] => {
                for p in list.split(',') {
                    named.push(("pxelinux INITRD".into(), p.to_string()));
                }
            }
            _ => {}
        }
    }
    let grub = std::fs::read_to_string(out.join("grub/grub.cfg")).unwrap();
    for line in grub.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["linux", p, ..] => named.push(("grub linux".into(), p.trim_start_matches('/').into())),
            ["initrd", ref ps @ ..] => {
                for p in ps {
                    named.push(("grub initrd".into(), p.trim_start_matches('/').into()));
                }
            }
            _ => {}
        }
    }
    named
}

fn make_gpg_key(dir: &Path) -> PathBuf {
    let home = dir.join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    let g = |args: &[&str]| {
        run_ok(
            Command::new("gpg")
                .arg("--homedir")
                .arg(&home)
                .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
                .args(args),
        )
    };
    g(&[
        "--quick-gen-key",
        "pxe-test@example.invalid",
        "ed25519",
        "sign",
        "never",
    ]);
    let key = dir.join("trusted.gpg");
    let out = g(&["--export", "pxe-test@example.invalid"]);
    std::fs::write(&key, out.stdout).unwrap();
    let secret = dir.join("secret.gpg");
    let out = g(&["--export-secret-keys", "pxe-test@example.invalid"]);
    std::fs::write(&secret, out.stdout).unwrap();
    key
}

#[test]
fn layout_manifest_artifacts_and_boot_programs() {
    let f = Fixture::new();
    // Owners, a set-uid bit and a file capability: the seed must keep them to be the tree.
    let commit = f.commit_with(REF_A, "1.0", |tree| {
        use std::os::unix::fs::PermissionsExt;
        let ping = tree.join("usr/bin/ping");
        std::fs::create_dir_all(ping.parent().unwrap()).unwrap();
        std::fs::write(&ping, b"ping").unwrap();
        run_ok(Command::new("setcap").arg("cap_net_raw+ep").arg(&ping));
        let su = tree.join("usr/bin/su");
        std::fs::write(&su, b"su").unwrap();
        std::fs::set_permissions(&su, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let spool = tree.join("usr/share/daemon");
        std::fs::create_dir_all(&spool).unwrap();
        std::fs::write(spool.join("file"), b"x").unwrap();
        std::os::unix::fs::chown(&spool, Some(1), Some(1)).unwrap();
        std::os::unix::fs::chown(spool.join("file"), Some(1), Some(1)).unwrap();
        add_nic_modules(tree);
    });
    let ks = atomic_host_ks(f.dir.path());
    let key = make_gpg_key(f.dir.path());
    let out = f.build_ok(&[
        "--ref",
        REF_A,
        "--kickstart",
        ks.to_str().unwrap(),
        "--trusted-key",
        key.to_str().unwrap(),
        "--json",
    ]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["schema"], 1);
    assert_eq!(summary["refs"][0]["ref"], REF_A);
    assert_eq!(summary["refs"][0]["changed"], true);

    let refdir = f.out.join("refs/test+pxe+a");
    let names: BTreeSet<String> = std::fs::read_dir(&refdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "boot.ipxe",
            "initramfs.img",
            "kickstart.ks",
            "netroot.img",
            "rootfs.img",
            "vmlinuz"
        ]
        .map(String::from)
        .into()
    );
    // The commit's own kernel and initramfs, byte for byte (the initramfs padded with zeros
    // to a multiple of 4 bytes, so rootfs.img after it is aligned however a boot loader puts
    // the two together); the default kickstart as given.
    assert_eq!(
        std::fs::read(refdir.join("vmlinuz")).unwrap(),
        f.commit_file(&commit, &format!("/usr/lib/modules/{KVER}/vmlinuz"))
    );
    let initramfs = std::fs::read(refdir.join("initramfs.img")).unwrap();
    let original = f.commit_file(&commit, &format!("/usr/lib/modules/{KVER}/initramfs.img"));
    assert_eq!(&initramfs[..original.len()], &original[..]);
    assert_eq!(initramfs.len() % 4, 0, "initramfs.img is not padded");
    assert!(initramfs.len() - original.len() < 4);
    assert!(initramfs[original.len()..].iter().all(|b| *b == 0));
    assert_eq!(
        std::fs::read(refdir.join("kickstart.ks")).unwrap(),
        std::fs::read(&ks).unwrap()
    );

    // The manifest: commit, kernel version, the sha256 of every artifact, who built it.
    let m = f.manifest();
    assert_eq!(m["schema"], 1);
    let e = &m["refs"][REF_A];
    assert_eq!(e["commit"], commit.as_str());
    assert_eq!(e["version"], "1.0");
    assert_eq!(e["kernel_version"], KVER);
    assert_eq!(e["dir"], "refs/test+pxe+a");
    assert_eq!(e["kickstart"], "refs/test+pxe+a/kickstart.ks");
    assert_eq!(e["gpg_key_sha256"], sha256(&key).as_str());
    assert_eq!(e["slipway_source"], m["slipway_source"]);
    assert_eq!(e["slipway_version"], env!("CARGO_PKG_VERSION"));
    let files = e["files"].as_object().unwrap();
    assert_eq!(files.len(), names.len());
    for (name, a) in files {
        assert_eq!(a["sha256"], sha256(&refdir.join(name)).as_str(), "{name}");
    }

    // netroot.img (a gzip cpio archive): the same units, the script that fetches rootfs.img
    // over HTTP with busybox, the SHA-256 and size it must have, the commit's network drivers
    // and what they need, and a module index that has the initramfs's modules too.
    let unpacked = f.dir.path().join("netroot");
    unpack_netroot(&refdir.join("netroot.img"), &unpacked);
    for p in [
        "etc/systemd/system/sysroot.mount",
        "etc/systemd/system/slipway-live-root.service",
        "etc/systemd/system/initrd-root-fs.target.requires/sysroot.mount",
        "usr/lib/slipway/live-root.sh",
        "usr/lib/slipway/net-root.sh",
        "usr/lib/slipway/udhcpc.script",
    ] {
        assert!(
            std::fs::symlink_metadata(unpacked.join(p)).is_ok(),
            "netroot.img lacks {p}"
        );
    }
    let busybox = unpacked.join("usr/lib/slipway/busybox");
    for applet in ["udhcpc", "wget", "sha256sum", "cpio", "ip"] {
        run_ok(Command::new(&busybox).args([applet, "--help"]));
    }
    assert_eq!(
        std::fs::read_to_string(unpacked.join("usr/lib/slipway/rootfs.img.sha256")).unwrap(),
        format!(
            "{} {}\n",
            sha256(&refdir.join("rootfs.img")),
            std::fs::metadata(refdir.join("rootfs.img")).unwrap().len()
        )
    );
    let moddir = unpacked.join(format!("usr/lib/modules/{KVER}"));
    assert!(moddir.join(NIC_MODULE).is_file() && moddir.join(NIC_DEPENDENCY).is_file());
    assert!(
        !moddir.join(OTHER_MODULE).exists(),
        "{OTHER_MODULE} in netroot.img"
    );
    let index = std::fs::read_to_string(moddir.join("modules.dep")).unwrap();
    for m in [NIC_MODULE, NIC_DEPENDENCY, "kernel/fs/squashfs/squashfs.ko"] {
        assert!(
            index.lines().any(|l| l.starts_with(&format!("{m}:"))),
            "{index}"
        );
    }
    assert!(moddir.join("modules.dep.bin").is_file() && moddir.join("modules.alias.bin").is_file());

    // rootfs.img: the initramfs side of the live root and the squashfs.
    let rootfs = refdir.join("rootfs.img");
    let listed = cpio_list(&rootfs);
    for p in [
        "etc/systemd/system/sysroot.mount",
        "etc/systemd/system/slipway-live-root.service",
        "etc/systemd/system/initrd-root-fs.target.requires/sysroot.mount",
        "usr/lib/slipway/live-root.sh",
        SQUASHFS_IN_CPIO,
        LIVE_SQUASHFS_IN_CPIO,
    ] {
        assert!(listed.contains(p), "rootfs.img lacks {p}: {listed:?}");
    }
    // The lower layer is the commit's tree exactly, taken the installer's way: unpacked by
    // the live layer's own unsquashfs (Debian's, with its liblzo2) beside a new bare
    // repository and adopted into it, its root has the commit's root checksums (owners,
    // modes and the file capability kept), so an installer that imports it has every object
    // but the commit.
    let live_dir = f.dir.path().join("live");
    unsquash(&rootfs, LIVE_SQUASHFS_IN_CPIO, &live_dir, None);
    let tools = live_dir.join(slipway::pxe::build::LIVE_UNSQUASHFS_DIR);
    for (_, _, name) in slipway::pxe::build::LIVE_TOOLS {
        assert!(tools.join(name).is_file(), "the live layer lacks {name}");
    }
    let wrapper = std::fs::read_to_string(
        live_dir
            .join(slipway::pxe::build::LIVE_BIN_DIR)
            .join("unsquashfs"),
    )
    .unwrap();
    assert!(
        wrapper.contains("/usr/lib/slipway/unsquashfs/unsquashfs"),
        "{wrapper}"
    );
    let lower = f.dir.path().join("lower");
    unsquash(&rootfs, SQUASHFS_IN_CPIO, &lower, Some(&tools));
    let seeded = f.dir.path().join("seeded");
    ostree(&seeded, &["init", "--mode=bare"]);
    let imported = slipway::repo::commit::adopt_tree(&seeded, &lower).unwrap();
    let (contents, meta) =
        slipway::repo::commit_root(&slipway::repo::open(&f.repo).unwrap(), &commit).unwrap();
    assert_eq!(
        (
            imported.contents_checksum.as_str(),
            imported.metadata_checksum.as_str()
        ),
        (contents.as_str(), meta.as_str()),
        "the live root's lower layer is not the commit's tree"
    );
    // The live layer: the commit's /usr/etc as /etc, slipway, the installer, the defaults.
    let live = squashfs_list(&rootfs, LIVE_SQUASHFS_IN_CPIO);
    for p in [
        "usr/bin/slipway",
        "usr/lib/slipway/pxe-installer",
        "usr/lib/systemd/system/slipway-installer.service",
        "etc/systemd/system/multi-user.target.wants/slipway-installer.service",
        "etc/systemd/system/slipway-boot-check.service",
        "etc/systemd/system/ssh.service",
        "etc/systemd/system/apparmor.service",
        "etc/slipway/installer.ks",
        "etc/slipway/installer-trusted.gpg",
        "etc/os-release",
        "etc/hostname",
    ] {
        assert!(live.contains(p), "the live root lacks /{p}");
    }
    for p in ["usr/etc", &format!("usr/lib/modules/{KVER}/vmlinuz")] {
        assert!(!live.contains(p), "the live layer has /{p}");
    }
    assert_eq!(
        squashfs_cat(&rootfs, "etc/slipway/installer-trusted.gpg"),
        std::fs::read(&key).unwrap()
    );
    assert_eq!(
        squashfs_cat(&rootfs, "etc/slipway/installer.ks"),
        std::fs::read(&ks).unwrap()
    );

    // The boot programs are the real thing.
    assert_pxe_nbp(&f.out.join("undionly.kpxe"), b"No PXE stack found");
    assert_pxe_nbp(&f.out.join("pxelinux.0"), b"PXELINUX");
    assert_eq!(
        &std::fs::read(f.out.join("ldlinux.c32")).unwrap()[..4],
        b"\x7fELF"
    );
    for efi in ["ipxe.efi", "snponly.efi", "grubnetx64.efi"] {
        assert_pe_x64(&f.out.join(efi));
    }
    let programs = m["boot_programs"].as_object().unwrap();
    assert_eq!(programs["undionly.kpxe"]["package"], "ipxe");
    assert_eq!(programs["pxelinux.0"]["package"], "pxelinux");
    for (name, p) in programs {
        assert_eq!(p["sha256"], sha256(&f.out.join(name)).as_str(), "{name}");
    }

    // Every file a script or menu names exists; GRUB reads a menu it can parse.
    let named = named_files(&f.out);
    assert!(named.len() >= 9, "{named:?}");
    for (by, rel) in &named {
        assert!(
            f.out.join(rel).is_file(),
            "{by} names {rel}, which is not in DIR"
        );
    }
    let grub = std::fs::read(f.out.join("grub/grub.cfg")).unwrap();
    run_ok(Command::new("grub-script-check").arg(f.out.join("grub/grub.cfg")));
    assert!(!grub.is_empty());
    // Nothing half-written is left.
    let hidden: Vec<String> = std::fs::read_dir(&f.out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n != ".slipway-pxe.lock")
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn two_refs_share_a_directory_and_an_unchanged_rebuild_is_a_no_op() {
    let f = Fixture::new();
    let a1 = f.commit(REF_A, "1.0");
    f.build_ok(&["--ref", REF_A]);
    let b1 = f.commit(REF_B, "7.0");
    let out = f.build_ok(&["--ref", REF_B]);
    assert!(
        stderr(&out).contains(&format!("{REF_B}: built")),
        "{}",
        stderr(&out)
    );
    // A kernel without network drivers: no netroot.img, and the build says why.
    assert!(!f.out.join("refs/test+pxe+b/netroot.img").exists());
    assert!(
        stderr(&out).contains("no network drivers"),
        "{}",
        stderr(&out)
    );
    let m = f.manifest();
    assert_eq!(m["refs"][REF_A]["commit"], a1.as_str());
    assert_eq!(m["refs"][REF_B]["commit"], b1.as_str());
    for menu in ["boot.ipxe", "pxelinux.cfg/default", "grub/grub.cfg"] {
        let text = std::fs::read_to_string(f.out.join(menu)).unwrap();
        assert!(text.contains("refs/test+pxe+a/"), "{menu}: {text}");
        assert!(text.contains("refs/test+pxe+b/"), "{menu}: {text}");
    }
    for (by, rel) in named_files(&f.out) {
        assert!(f.out.join(&rel).is_file(), "{by} names {rel}");
    }

    // Same commit, same slipway, same options: nothing is written.
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| {
        let m = std::fs::metadata(f.out.join(p)).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec())
    };
    let before: Vec<_> = ["refs/test+pxe+a/rootfs.img", "manifest.json", "boot.ipxe"]
        .iter()
        .map(|p| ino(p))
        .collect();
    let out = f.build_ok(&["--ref", REF_A, "--ref", REF_B]);
    assert!(
        stderr(&out).contains(&format!("{REF_A}: unchanged")),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!("{REF_B}: unchanged")),
        "{}",
        stderr(&out)
    );
    let after: Vec<_> = ["refs/test+pxe+a/rootfs.img", "manifest.json", "boot.ipxe"]
        .iter()
        .map(|p| ino(p))
        .collect();
    assert_eq!(before, after, "an unchanged rebuild rewrote files");
    assert_eq!(f.manifest(), m);

    // A new commit is rebuilt; an option that changes the image rebuilds too.
    let a2 = f.commit(REF_A, "1.1");
    let out = f.build_ok(&["--ref", REF_A]);
    assert!(
        stderr(&out).contains(&format!("{REF_A}: built")),
        "{}",
        stderr(&out)
    );
    assert_eq!(f.manifest()["refs"][REF_A]["commit"], a2.as_str());
    assert_eq!(f.manifest()["refs"][REF_B]["commit"], b1.as_str());
    let ks = atomic_host_ks(f.dir.path());
    let key = trusted_key(f.dir.path());
    let out = f.build_ok(&[
        "--ref",
        REF_B,
        "--kickstart",
        ks.to_str().unwrap(),
        "--trusted-key",
        key.to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains(&format!("{REF_B}: built")),
        "{}",
        stderr(&out)
    );
    assert!(f.out.join("refs/test+pxe+b/kickstart.ks").is_file());
}

#[test]
fn a_bad_kickstart_is_refused_before_any_file() {
    let f = Fixture::new();
    f.commit(REF_A, "1.0");
    let ks = f.dir.path().join("bad.ks");
    // An installer kickstart needs ostreesetup; this one also has an unknown command.
    std::fs::write(&ks, "text\nfrobnicate --now\n").unwrap();
    let out = f.build(&["--ref", REF_A, "--kickstart", ks.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("bad.ks:2"), "{err}");
    assert!(!f.out.exists(), "the output directory was created");

    // One that would need a second file in the installer.
    let inc = f.dir.path().join("inc.ks");
    let main = std::fs::read_to_string(atomic_host_ks(f.dir.path())).unwrap();
    std::fs::write(f.dir.path().join("part.ks"), "keyboard us\n").unwrap();
    std::fs::write(&inc, format!("%include part.ks\n{main}")).unwrap();
    let out = f.build(&["--ref", REF_A, "--kickstart", inc.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("inc.ks:1"), "{}", stderr(&out));
    assert!(!f.out.exists());

    // The shipped kickstart verifies commits: without a key for the installer it could
    // never install, so the build refuses it, naming its ostreesetup line.
    let shipped = atomic_host_ks(f.dir.path());
    let out = f.build(&["--ref", REF_A, "--kickstart", shipped.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("atomic-host.ks:21: ostreesetup verifies") && err.contains("--trusted-key"),
        "{err}"
    );
    assert!(!f.out.exists());
}

#[test]
fn a_missing_ref_a_secret_key_and_a_commit_without_kernel_are_refused() {
    let f = Fixture::new();
    f.commit(REF_A, "1.0");
    let out = f.build(&["--ref", REF_A, "--ref", "test/pxe/nope"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("test/pxe/nope"), "{err}");
    assert!(
        err.contains(REF_A),
        "the error lists the refs there are: {err}"
    );
    assert!(!f.out.exists());

    make_gpg_key(f.dir.path());
    let secret = f.dir.path().join("secret.gpg");
    let out = f.build(&["--ref", REF_A, "--trusted-key", secret.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("secret key"), "{}", stderr(&out));
    assert!(!f.out.exists());

    f.commit_with("test/pxe/nokernel", "1.0", |tree| {
        std::fs::remove_file(tree.join(format!("usr/lib/modules/{KVER}/vmlinuz"))).unwrap();
    });
    let out = f.build(&["--ref", "test/pxe/nokernel"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("test/pxe/nokernel") && err.contains("no kernel"),
        "{err}"
    );
    assert!(!f.out.exists());

    // An initramfs that cannot mount the live root (no squashfs driver) is named.
    f.commit_with("test/pxe/nosquashfs", "1.0", |tree| {
        let mut w = slipway::pxe::cpio::Writer::new(Vec::new(), 0);
        w.file("usr/lib/systemd/systemd", 0o755, b"x").unwrap();
        std::fs::write(
            tree.join(format!("usr/lib/modules/{KVER}/initramfs.img")),
            w.finish().unwrap(),
        )
        .unwrap();
    });
    let out = f.build(&["--ref", "test/pxe/nosquashfs"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("squashfs kernel module") && err.contains("test/pxe/nosquashfs"),
        "{err}"
    );
    assert!(!f.out.exists());
}

#[test]
fn a_directory_pxe_build_did_not_write_is_left_alone() {
    let f = Fixture::new();
    f.commit(REF_A, "1.0");
    std::fs::create_dir_all(&f.out).unwrap();
    std::fs::write(f.out.join("precious"), "x").unwrap();
    let out = f.build(&["--ref", REF_A]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(&f.out).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn an_interrupted_build_leaves_the_old_ref_whole() {
    let f = Fixture::new();
    let a1 = f.commit(REF_A, "1.0");
    f.build_ok(&["--ref", REF_A]);
    let kernel_before = std::fs::read(f.out.join("refs/test+pxe+a/vmlinuz")).unwrap();
    f.commit(REF_A, "2.0");
    let cache = cache_root().join("pxe-build-cache");
    let out = slipway()
        .args(["pxe", "build", "--repo"])
        .arg(&f.repo)
        .arg("-o")
        .arg(&f.out)
        .arg("--cachedir")
        .arg(&cache)
        .args(["--ref", REF_A])
        .env("SLIPWAY_FAILPOINTS", "pxe-before-rename=error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read(f.out.join("refs/test+pxe+a/vmlinuz")).unwrap(),
        kernel_before
    );
    assert_eq!(f.manifest()["refs"][REF_A]["commit"], a1.as_str());
    // The next build removes the leftover and finishes.
    f.build_ok(&["--ref", REF_A]);
    let hidden: Vec<String> = std::fs::read_dir(&f.out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".build-"))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    assert_ne!(
        std::fs::read(f.out.join("refs/test+pxe+a/vmlinuz")).unwrap(),
        kernel_before
    );
}

/// The real thing: the composed default host. The live root holds the host's userspace with
/// slipway and the installer; the host's own initramfs (unchanged) has what the live root's
/// units need. Slow (a compose, a 1 GB checkout and its squashfs).
#[test]
#[ignore = "slow: composes the default host"]
fn composed_host_installer_artifacts() {
    let host = composed_host();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("pxe");
    let ks = atomic_host_ks(dir.path());
    let out = slipway()
        .args(["pxe", "build", "--repo"])
        .arg(&host.repo)
        .args(["--ref", &host.reference, "-o"])
        .arg(&out_dir)
        .arg("--cachedir")
        .arg(apt_cache())
        .arg("--kickstart")
        .arg(&ks)
        .arg("--trusted-key")
        .arg(trusted_key(dir.path()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let refdir = out_dir.join(slipway::pxe::build::ref_dir(&host.reference));
    // lsinitrd: the commit's own initramfs carries systemd, dracut's root= parser and the
    // drivers the live root is mounted with.
    let listing = String::from_utf8_lossy(
        &run_ok(Command::new("lsinitrd").arg(refdir.join("initramfs.img"))).stdout,
    )
    .into_owned();
    for want in [
        "systemd-initrd",
        "dracut-systemd",
        "usr/bin/dracut-cmdline",
        "squashfs.ko",
        "overlay.ko",
        "loop.ko",
    ] {
        assert!(listing.contains(want), "the initramfs lacks {want}");
    }
    let rootfs = refdir.join("rootfs.img");
    let live = squashfs_list(&rootfs, LIVE_SQUASHFS_IN_CPIO);
    let lower = squashfs_list(&rootfs, SQUASHFS_IN_CPIO);
    for p in [
        "usr/bin/slipway",
        "usr/lib/slipway/pxe-installer",
        "etc/systemd/system/multi-user.target.wants/slipway-installer.service",
        "etc/slipway/installer.ks",
        "etc/os-release",
    ] {
        assert!(live.contains(p), "the live layer lacks /{p}");
    }
    for p in [
        "usr/lib/systemd/systemd",
        "usr/sbin/mkfs.ext4",
        "usr/etc/os-release",
    ] {
        assert!(lower.contains(p), "the live root's lower layer lacks /{p}");
    }
    // The real host's tree (file capabilities, owners, hard links) survives the squashfs:
    // unpacked by the live layer's unsquashfs and adopted, as the installer does, it is the
    // commit's root tree, so the installer's pull fetches only the commit.
    let live_dir = dir.path().join("live");
    unsquash(&rootfs, LIVE_SQUASHFS_IN_CPIO, &live_dir, None);
    let tools = live_dir.join(slipway::pxe::build::LIVE_UNSQUASHFS_DIR);
    let unpacked = dir.path().join("lower");
    unsquash(&rootfs, SQUASHFS_IN_CPIO, &unpacked, Some(&tools));
    let seeded = dir.path().join("seeded");
    ostree(&seeded, &["init", "--mode=bare"]);
    let imported = slipway::repo::commit::adopt_tree(&seeded, &unpacked).unwrap();
    let (contents, meta) =
        slipway::repo::commit_root(&slipway::repo::open(&host.repo).unwrap(), &host.commit)
            .unwrap();
    assert_eq!(
        (
            imported.contents_checksum.as_str(),
            imported.metadata_checksum.as_str()
        ),
        (contents.as_str(), meta.as_str()),
        "the live root's lower layer is not the composed commit's tree"
    );
    // netroot.img: the real host's kernel gives its NIC drivers (virtio-net for the lab's
    // machines, e1000e for a common server NIC) with what they depend on, indexed together
    // with the initramfs's own modules, and a busybox that runs.
    let netroot = dir.path().join("netroot");
    unpack_netroot(&refdir.join("netroot.img"), &netroot);
    let kver = std::fs::read_dir(netroot.join("usr/lib/modules"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let index = std::fs::read_to_string(kver.join("modules.dep")).unwrap();
    for m in [
        "kernel/drivers/net/virtio_net.ko",
        "kernel/drivers/net/net_failover.ko",
        "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko",
        "kernel/fs/squashfs/squashfs.ko",
        "kernel/fs/overlayfs/overlay.ko",
    ] {
        assert!(
            index.lines().any(|l| l.starts_with(&format!("{m}:"))),
            "netroot.img's modules.dep lacks {m}"
        );
    }
    for m in [
        "kernel/drivers/net/virtio_net.ko",
        "kernel/drivers/net/net_failover.ko",
        "kernel/net/core/failover.ko",
        "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko",
    ] {
        assert!(kver.join(m).is_file(), "netroot.img lacks {m}");
    }
    let aliases = std::fs::read_to_string(kver.join("modules.alias")).unwrap();
    assert!(
        aliases.contains(" virtio_net\n"),
        "netroot.img's modules.alias has no virtio_net"
    );
    run_ok(Command::new(netroot.join("usr/lib/slipway/busybox")).args(["udhcpc", "--help"]));

    // rootfs.img is an uncompressed cpio archive (the kernel reads it after the zstd one).
    let mut f = std::fs::File::open(refdir.join("rootfs.img")).unwrap();
    let mut magic = [0u8; 6];
    f.read_exact(&mut magic).unwrap();
    assert_eq!(&magic, b"070701");
    for (by, rel) in named_files(&out_dir) {
        assert!(out_dir.join(&rel).is_file(), "{by} names {rel}");
    }
}
