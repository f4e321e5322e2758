//! Fast checks of `slipway image` on a small synthetic commit: bad input is refused before
//! any image file exists, and the disk an image gets is laid out as promised.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::fixtures::*;

/// A tiny commit that libostree accepts as bootable (a kernel and initramfs that are not real).
fn synthetic_repo(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    let w = |p: &str, c: &str| {
        let p = tree.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    };
    w("usr/lib/modules/6.1.0-0-amd64/vmlinuz", "not a kernel");
    w(
        "usr/lib/modules/6.1.0-0-amd64/initramfs.img",
        "not an initramfs",
    );
    w("usr/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    w("usr/etc/group", "root:x:0:\n");
    w("usr/etc/fstab", "");
    w("usr/lib/os-release", "ID=debian\nNAME=synthetic\n");
    for d in ["boot", "dev", "proc", "sys", "run", "tmp", "var", "sysroot"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::os::unix::fs::symlink("sysroot/ostree", tree.join("ostree")).unwrap();
    let repo = dir.join("repo");
    run_ok(
        slipway()
            .args(["compose", "commit", "--repo"])
            .arg(&repo)
            .args([
                "--ref",
                "test/synthetic",
                "--add-metadata-string",
                "version=1.0",
            ])
            .arg(&tree),
    );
    // `compose commit` adds ostree.linux when the tree has a kernel.
    assert!(
        ostree(
            &repo,
            &[
                "show",
                "--print-metadata-key=ostree.linux",
                "test/synthetic"
            ]
        )
        .contains("6.1.0-0-amd64")
    );
    repo
}

fn image(repo: &Path, out: &Path, extra: &[&str], cache: &Path) -> Output {
    slipway()
        .args(["image", "--repo"])
        .arg(repo)
        .args(["--ref", "test/synthetic", "-o"])
        .arg(out)
        .arg("--cachedir")
        .arg(cache)
        .args(extra)
        .output()
        .unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn bad_input_fails_before_any_image_file_exists() {
    let d = tempfile::tempdir().unwrap();
    let repo = synthetic_repo(d.path());
    let outdir = d.path().join("out");
    std::fs::create_dir_all(&outdir).unwrap();
    let out = outdir.join("host.raw");
    let cache = d.path().join("cache");

    let err = |o: Output| {
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // A ref that does not exist.
    let e = err(slipway()
        .args(["image", "--repo"])
        .arg(&repo)
        .args(["--ref", "no/such/ref", "-o"])
        .arg(&out)
        .arg("--cachedir")
        .arg(&cache)
        .output()
        .unwrap());
    assert!(
        e.contains("no/such/ref") && e.contains("test/synthetic"),
        "{e}"
    );
    // A repository that is not one.
    let e = err(image(&outdir, &out, &[], &cache));
    assert!(e.contains("not an OSTree repository"), "{e}");
    // A kickstart with an unknown command names the line.
    let ks = d.path().join("bad.ks");
    std::fs::write(&ks, "user --name=core\nfrobnicate --now\n").unwrap();
    let e = err(image(
        &repo,
        &out,
        &["--kickstart", ks.to_str().unwrap()],
        &cache,
    ));
    assert!(e.contains("bad.ks:2") && e.contains("frobnicate"), "{e}");
    // A malformed option.
    std::fs::write(&ks, "bootloader --timeout=soon\n").unwrap();
    let e = err(image(
        &repo,
        &out,
        &["--kickstart", ks.to_str().unwrap()],
        &cache,
    ));
    assert!(e.contains("bad.ks:1"), "{e}");
    // A size too small for the tree (checked after staging, before the image file).
    let e = err(image(&repo, &out, &["--size", "64M"], &cache));
    assert!(e.contains("too small"), "{e}");
    assert!(
        files_in(&outdir).is_empty(),
        "files left behind: {:?}",
        files_in(&outdir)
    );

    // OUT exists: refused without --force, and left untouched.
    std::fs::write(&out, "precious").unwrap();
    let e = err(image(&repo, &out, &[], &cache));
    assert!(e.contains("--force"), "{e}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious");
}

#[test]
fn image_layout_partitions_and_boot_files() {
    let d = tempfile::tempdir().unwrap();
    let repo = synthetic_repo(d.path());
    let out = d.path().join("host.raw");
    let o = image(
        &repo,
        &out,
        &["--size", "2G", "--json"],
        &d.path().join("cache"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The staged deployment (immutable, as libostree leaves it) was cleaned up.
    assert_eq!(files_in(&d.path().join("cache/work")), [".lock"]);
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["schema"], 1);
    assert_eq!(summary["firmware"], "hybrid");
    assert_eq!(summary["version"], "1.0");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 2 << 30);

    let table: serde_json::Value =
        serde_json::from_str(&stdout_of(Command::new("sfdisk").arg("--json").arg(&out))).unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["BIOS-BOOT", "EFI-SYSTEM", "boot", "root"]);
    assert_eq!(parts[0]["type"], "21686148-6449-6E6F-744E-656564454649");

    // The MBR carries GRUB's boot code pointing at the BIOS boot partition.
    let disk = std::fs::read(&out).map(|v| v[..512].to_vec()).unwrap();
    let core_lba = u64::from_le_bytes(disk[0x5c..0x64].try_into().unwrap());
    assert_eq!(core_lba, parts[0]["start"].as_u64().unwrap());
    assert_eq!(&disk[510..512], &[0x55, 0xaa]);

    // The ESP has the EFI loader.
    let esp_off = parts[1]["start"].as_u64().unwrap() * 512;
    let dir = stdout_of(Command::new("mdir").args([
        "-i",
        &format!("{}@@{esp_off}", out.display()),
        "::/EFI/BOOT",
    ]));
    assert!(dir.contains("BOOTX64"), "{dir}");

    // The boot file system holds grub.cfg generated from the BLS entry.
    let boot = d.path().join("boot.part");
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", out.display()))
            .arg(format!("of={}", boot.display()))
            .args([
                "bs=1M",
                &format!("skip={}", parts[2]["start"].as_u64().unwrap() / 2048),
                &format!("count={}", parts[2]["size"].as_u64().unwrap() / 2048),
                "conv=sparse",
                "status=none",
            ]),
    );
    // GRUB reads the fixed dispatcher, which names the loader directory from grubenv: the
    // one libostree's `loader` link points to.
    let debugfs = |req: &str| stdout_of(Command::new("debugfs").args(["-R", req]).arg(&boot));
    let dispatcher = debugfs("cat /grub/grub.cfg");
    assert!(dispatcher.contains("load_env"), "{dispatcher}");
    let grubenv = debugfs("cat /grub/grubenv");
    assert_eq!(grubenv.len(), 1024, "{grubenv}");
    let loader = grubenv
        .lines()
        .find_map(|l| l.strip_prefix("slipway_loader="))
        .unwrap_or_else(|| panic!("{grubenv}"))
        .to_string();
    let st = debugfs("stat /loader");
    assert!(
        st.contains(&format!("Fast link dest: \"{loader}\"")),
        "{st}"
    );
    let cfg = debugfs(&format!("cat /{loader}/grub.cfg"));
    assert!(cfg.contains("root=LABEL=root"), "{cfg}");
    assert!(cfg.contains("ostree=/ostree/boot."), "{cfg}");
    assert!(cfg.contains("linux '/ostree/debian-"), "{cfg}");
    let entries = stdout_of(
        Command::new("debugfs")
            .args(["-R", "ls /loader/entries"])
            .arg(&boot),
    );
    assert!(entries.contains("ostree-1-debian.conf"), "{entries}");
}

/// A signed commit gets a remote that checks signatures, with the key in the image: without
/// the key (or with one that does not verify the commit, or a key for an unsigned commit)
/// the image is refused before any file is written.
#[test]
fn signed_commits_get_a_remote_that_verifies_them() {
    let d = tempfile::tempdir().unwrap();
    let repo = synthetic_repo(d.path());
    let cache = d.path().join("cache");
    let out = d.path().join("host.raw");
    let gpg = |home: &Path, args: &[&str]| {
        std::fs::create_dir_all(home).unwrap();
        std::fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        run_ok(
            Command::new("gpg")
                .arg("--homedir")
                .arg(home)
                .args(["--batch", "--yes", "--quiet", "--passphrase", ""])
                .args(args),
        )
    };
    let key = |name: &str| {
        let home = d.path().join(format!("gnupg-{name}"));
        gpg(
            &home,
            &[
                "--quick-gen-key",
                &format!("{name} <{name}@slipway.invalid>"),
                "ed25519",
                "sign",
                "never",
            ],
        );
        let public = d.path().join(format!("{name}.gpg"));
        gpg(&home, &["--output", public.to_str().unwrap(), "--export"]);
        (home, public)
    };
    let (home, public) = key("signer");
    let (_, wrong) = key("stranger");
    let remote = ["--remote-url", "http://192.0.2.1/repo"];
    let err = |extra: &[&str]| {
        let mut args: Vec<&str> = remote.to_vec();
        args.extend(extra);
        let o = image(&repo, &out, &args, &cache);
        assert!(!o.status.success());
        assert!(!out.exists());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = err(&["--trusted-key", public.to_str().unwrap()]);
    assert!(e.contains("is not signed"), "{e}");

    run_ok(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .arg(format!("--gpg-homedir={}", home.display()))
            .args(["gpg-sign", "test/synthetic", "signer@slipway.invalid"]),
    );
    let e = err(&[]);
    assert!(
        e.contains("is signed") && e.contains("--trusted-key"),
        "{e}"
    );
    let e = err(&["--trusted-key", wrong.to_str().unwrap()]);
    assert!(e.contains("no signature") || e.contains("verifying"), "{e}");

    let mut args: Vec<&str> = remote.to_vec();
    args.extend(["--trusted-key", public.to_str().unwrap(), "--size", "2G"]);
    let o = image(&repo, &out, &args, &cache);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The root file system: the deployment's remote and key.
    let table: serde_json::Value =
        serde_json::from_str(&stdout_of(Command::new("sfdisk").arg("--json").arg(&out))).unwrap();
    let root_part = &table["partitiontable"]["partitions"][3];
    let root = d.path().join("root.part");
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", out.display()))
            .arg(format!("of={}", root.display()))
            .args([
                "bs=1M",
                &format!("skip={}", root_part["start"].as_u64().unwrap() / 2048),
                &format!("count={}", root_part["size"].as_u64().unwrap() / 2048),
                "conv=sparse",
                "status=none",
            ]),
    );
    let debugfs = |req: &str| stdout_of(Command::new("debugfs").args(["-R", req]).arg(&root));
    let deploy = debugfs("ls -p /ostree/deploy/debian/deploy");
    let dep = deploy
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .find(|n| n.ends_with(".0"))
        .unwrap_or_else(|| panic!("no deployment: {deploy}"))
        .to_string();
    let conf = debugfs(&format!(
        "cat /ostree/deploy/debian/deploy/{dep}/etc/ostree/remotes.d/debian.conf"
    ));
    assert!(conf.contains("gpg-verify=true"), "{conf}");
    assert!(conf.contains("gpg-verify-summary=true"), "{conf}");
    assert!(
        conf.contains("gpgkeypath=/etc/slipway/keys/debian.gpg"),
        "{conf}"
    );
    let installed = debugfs(&format!(
        "dump /ostree/deploy/debian/deploy/{dep}/etc/slipway/keys/debian.gpg {}",
        d.path().join("installed.gpg").display()
    ));
    let _ = installed;
    assert_eq!(
        std::fs::read(d.path().join("installed.gpg")).unwrap(),
        std::fs::read(&public).unwrap()
    );
}
