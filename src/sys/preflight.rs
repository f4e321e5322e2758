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
    ("bwrap", "bubblewrap"),
    ("unshare", "util-linux"),
    ("ostree", "ostree"),
    ("gpg", "gnupg"),
    ("gpgv", "gpgv"),
    ("sfdisk", "fdisk"),
    ("mkfs.ext4", "e2fsprogs"),
    ("mke2fs", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("mkfs.vfat", "dosfstools"),
    ("mformat", "mtools"),
    ("mcopy", "mtools"),
    ("mmd", "mtools"),
    ("grub-mkimage", "grub-common"),
    ("/usr/lib/grub/i386-pc/grub-bios-setup", "grub-pc-bin"),
    ("qemu-img", "qemu-utils"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("tar", "tar"),
    ("zstd", "zstd"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("losetup", "mount"),
    ("lsinitrd", "dracut-core"),
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
        .filter(|p| crate::sys::cmd::which(p).is_none())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_are_named_with_their_package() {
        let err = require_programs(&["sh", "mformat-nonexistent-xyz"]).unwrap_err();
        assert!(err.to_string().contains("mformat-nonexistent-xyz"));
        assert_eq!(package_for("grub-bios-setup"), Some("grub-pc-bin"));
        assert_eq!(package_for("mmdebstrap"), Some("mmdebstrap"));
    }
}
