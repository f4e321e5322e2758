//! Preflight checks: the host programs each verb needs, and which Debian package provides them.
//!
//! A missing tool is reported before any work starts, with the `apt-get install` line that
//! fixes it.

use anyhow::{Result, bail};

/// Program name to the Debian 12 package that ships it.
const PROVIDERS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("apt-get", "apt"),
    ("apt-cache", "apt"),
    ("dpkg", "dpkg"),
    ("cp", "coreutils"),
    ("dpkg-deb", "dpkg"),
    ("dpkg-query", "dpkg"),
    ("mksquashfs", "squashfs-tools"),
    ("unsquashfs", "squashfs-tools"),
    ("bwrap", "bubblewrap"),
    ("strip", "binutils"),
    ("grub-editenv", "grub-common"),
    ("unshare", "util-linux"),
    ("ostree", "ostree"),
    ("ip", "iproute2"),
    ("gpg", "gnupg"),
    ("gpgv", "gpgv"),
    ("sfdisk", "fdisk"),
    ("mkfs.ext4", "e2fsprogs"),
    ("mke2fs", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("chattr", "e2fsprogs"),
    ("mkfs.fat", "dosfstools"),
    ("mkfs.vfat", "dosfstools"),
    ("mformat", "mtools"),
    ("mcopy", "mtools"),
    ("mmd", "mtools"),
    ("mdir", "mtools"),
    ("grub-mkimage", "grub-common"),
    ("grub-script-check", "grub-common"),
    ("/usr/lib/grub/i386-pc/grub-bios-setup", "grub-pc-bin"),
    ("qemu-img", "qemu-utils"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("tar", "tar"),
    ("docker", "docker.io"),
    ("ctr", "containerd"),
    ("zstd", "zstd"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("losetup", "mount"),
    ("mount", "mount"),
    ("umount", "mount"),
    ("lsblk", "util-linux"),
    ("findmnt", "util-linux"),
    ("wipefs", "util-linux"),
    ("blkid", "util-linux"),
    ("udevadm", "udev"),
    ("lsinitrd", "dracut-core"),
    ("depmod", "kmod"),
    ("systemctl", "systemd"),
];

/// The Debian package providing `prog`, when slipway knows it.
pub fn package_for(prog: &str) -> Option<&'static str> {
    PROVIDERS
        .iter()
        .find(|(p, _)| *p == prog || p.rsplit('/').next() == Some(prog))
        .map(|(_, pkg)| *pkg)
}

/// Fail unless running as root, naming the verb that needs it.
pub fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "{what} must run as root (it builds root filesystems and writes disk images); try `sudo slipway ...`"
        );
    }
    Ok(())
}

/// Check that every program is present; report all missing ones at once.
pub fn require_programs(progs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = progs
        .iter()
        .copied()
        .filter(|p| which(p).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut pkgs: Vec<&str> = missing.iter().filter_map(|p| package_for(p)).collect();
    pkgs.sort();
    pkgs.dedup();
    bail!(
        "required host programs are missing: {}; install them with `apt-get install {}`",
        missing.join(", "),
        pkgs.join(" ")
    )
}

/// Find a program in PATH (plus the sbin directories a non-login root shell may lack).
pub fn which(prog: &str) -> Option<std::path::PathBuf> {
    if prog.contains('/') {
        let p = std::path::PathBuf::from(prog);
        return p.exists().then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .map(|d| std::path::Path::new(d).join(prog))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every program slipway starts by name (`Command::new("...")`) or asks for in a preflight
    /// (`require_programs(&[...])`), anywhere in its sources, has its Debian package in the
    /// table, so no hint ever reads `apt-get install ` with nothing after it.
    #[test]
    fn every_program_slipway_runs_has_its_package() {
        fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    sources(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let quoted = |s: &str| -> Vec<String> {
            s.split('"').skip(1).step_by(2).map(String::from).collect()
        };
        let mut programs = std::collections::BTreeSet::new();
        for f in &files {
            let whole = std::fs::read_to_string(f).unwrap();
            // The code slipway runs, not its unit tests.
            let text = whole.split("#[cfg(test)]").next().unwrap();
            for (i, _) in text.match_indices("Command::new(\"") {
                let rest = &text[i + "Command::new(\"".len()..];
                programs.insert(rest[..rest.find('"').unwrap()].to_string());
            }
            for (i, _) in text.match_indices("require_programs(&[") {
                let rest = &text[i..];
                programs.extend(quoted(&rest[..rest.find(']').unwrap()]));
            }
            for (i, _) in text.match_indices("tools.extend([") {
                let rest = &text[i..];
                programs.extend(quoted(&rest[..rest.find(']').unwrap()]));
            }
            for (i, _) in text.match_indices("let mut tools = vec![") {
                let rest = &text[i..];
                programs.extend(quoted(&rest[..rest.find(']').unwrap()]));
            }
        }
        programs.remove(""); // the runner's placeholder while a command is with the spawner
        assert!(programs.len() > 10, "found only {programs:?}");
        let missing: Vec<&String> = programs
            .iter()
            .filter(|p| package_for(p).is_none())
            .collect();
        assert!(missing.is_empty(), "no package known for {missing:?}");
    }

    #[test]
    fn missing_tools_are_named_with_their_package() {
        let err = require_programs(&["sh", "mformat-nonexistent-xyz"]).unwrap_err();
        assert!(err.to_string().contains("mformat-nonexistent-xyz"));
        assert_eq!(package_for("grub-bios-setup"), Some("grub-pc-bin"));
        assert_eq!(package_for("mmdebstrap"), Some("mmdebstrap"));
    }
}
