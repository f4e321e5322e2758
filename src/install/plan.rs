//! [`InstallPlan`]: everything the installer will do, decided before the disk is touched.

use std::path::PathBuf;

use anyhow::{Result, anyhow};

use super::disk::{Choice, Partition};
use crate::kickstart::{Kickstart, PowerAction};
use crate::sysroot::deploy;

/// The fixed partitions have the sizes of `slipway image`'s layout.
pub use crate::sysroot::disk::{BIOS_BOOT_MIB, BOOT_MIB, ESP_MIB};
/// The smallest root partition the installer lays out.
pub const ROOT_MIN_MIB: u64 = 2048;

/// The commit to deploy (`ostreesetup`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Commit {
    pub osname: String,
    pub remote: String,
    pub url: String,
    pub ostree_ref: String,
    /// Signatures verified while pulling, and the remote keeps `gpg-verify=true`.
    pub gpg_verify: bool,
    pub trusted_key: Option<PathBuf>,
    /// The CA file an `https://` URL's server is checked against (also the installed
    /// remote's `tls-ca-path`); `None`: the machine's CA certificates.
    pub tls_ca: Option<PathBuf>,
    /// What is imported into the repository before the pull (`--seed`, `--seed-image`).
    pub seed: Option<crate::sysroot::deploy::Seed>,
}

/// File system identities, generated up front.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Filesystems {
    pub root_uuid: String,
    pub boot_uuid: String,
    /// The FAT volume serial of the ESP (`XXXXXXXX`; `XXXX-XXXX` in `blkid`).
    pub esp_serial: String,
}

/// What `slipway install` will do (printed by `--dry-run`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstallPlan {
    pub schema: crate::sys::ui::Schema,
    pub kickstart: String,
    pub disk: String,
    pub disk_bytes: u64,
    pub disk_reason: String,
    /// The disk holds data that is wiped first (`wipefs --all` of each partition and the disk).
    pub wipe_first: bool,
    pub partitions: Vec<Partition>,
    pub filesystems: Filesystems,
    pub commit: Commit,
    pub kernel_args: Vec<String>,
    pub fstab: Vec<String>,
    pub users: Vec<String>,
    pub ssh_keys_for: Vec<String>,
    pub hostname: Option<String>,
    pub network_devices: Vec<String>,
    pub post_scripts: usize,
    pub post_nochroot_scripts: usize,
    /// `reboot`, `poweroff`, `halt` or nothing.
    pub finish: Option<PowerAction>,
}

/// A new random UUID (the kernel's generator).
pub fn new_uuid() -> Result<String> {
    let u = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(|e| anyhow!("reading /proc/sys/kernel/random/uuid: {e}"))?;
    Ok(u.trim().to_string())
}

pub use crate::sysroot::disk::Sizes;

/// The sizes asked for by `part` lines or `autopart`, checked against what the installer can
/// lay out: BIOS boot, ESP, /boot and / (ext4), always all four (the disk boots under BIOS and
/// UEFI). Errors name the kickstart line.
pub fn sizes(ks: &Kickstart) -> Result<Sizes> {
    let mut s = Sizes {
        bios_boot_mib: BIOS_BOOT_MIB,
        esp_mib: ESP_MIB,
        boot_mib: BOOT_MIB,
        root_mib: None,
        root_max_mib: None,
        root_min_mib: ROOT_MIN_MIB,
    };
    let mut problems = Vec::new();
    if let Some(a) = &ks.autopart {
        if let Some(f) = a.fstype.as_deref().filter(|f| *f != "ext4") {
            problems.push(format!(
                "{}: autopart --fstype={f}: the installer makes ext4 file systems",
                a.at
            ));
        }
        if a.noboot {
            problems.push(format!(
                "{}: autopart --noboot: a slipway host needs its /boot partition",
                a.at
            ));
        }
    }
    for p in &ks.parts {
        let at = &p.at;
        let fstype = p.effective_fstype();
        match p.mountpoint.as_str() {
            "biosboot" => {
                if let Some(n) = p.size {
                    s.bios_boot_mib = n.max(1);
                }
            }
            "/boot/efi" => match p.size {
                Some(n) if n < 64 => problems.push(format!(
                    "{at}: part /boot/efi: --size={n} is too small (FAT32 needs 64 MiB or more)"
                )),
                Some(n) => s.esp_mib = n,
                None => {}
            },
            "/boot" | "/" if fstype != "ext4" => problems.push(format!(
                "{at}: part {}: --fstype={fstype}: the installer makes ext4 file systems",
                p.mountpoint
            )),
            "/boot" => match p.size {
                Some(n) if n < BOOT_MIB => problems.push(format!(
                    "{at}: part /boot: --size={n} is too small (at least {BOOT_MIB} MiB: \
                     two deployments' kernels and initramfs images)"
                )),
                Some(n) => s.boot_mib = n,
                None => {}
            },
            "/" => {
                if p.grow {
                    s.root_mib = None;
                    s.root_max_mib = p.maxsize;
                } else {
                    s.root_mib = p.size;
                }
                if let Some(n) = p.size
                    && n < ROOT_MIN_MIB
                {
                    problems.push(format!(
                        "{at}: part /: --size={n} is too small (at least {ROOT_MIN_MIB} MiB)"
                    ));
                }
            }
            other => problems.push(format!(
                "{at}: part {other}: the installer lays out biosboot, /boot/efi, /boot and / only"
            )),
        }
        if p.ondisk.is_some() {
            // Checked against the chosen disk in `layout`.
        }
    }
    match problems.len() {
        0 => Ok(s),
        1 => Err(anyhow!(problems.remove(0))),
        _ => Err(anyhow!(
            "kickstart cannot be installed:\n  - {}",
            problems.join("\n  - ")
        )),
    }
}

/// The partitions on a disk of `disk_bytes`, 1 MiB aligned, with new partition UUIDs.
pub fn layout(disk_bytes: u64, s: &Sizes) -> Result<Vec<Partition>> {
    crate::sysroot::disk::layout(disk_bytes, s, || new_uuid().map(Some))
}

/// Kernel arguments: slipway's defaults with `root=UUID=`, then `bootloader --append`.
pub fn kernel_args(ks: &Kickstart, root_uuid: &str) -> Vec<String> {
    let args = deploy::merge_kernel_args(
        deploy::default_kernel_args(),
        &[format!("root=UUID={root_uuid}")],
    );
    match &ks.bootloader {
        Some(b) => deploy::merge_kernel_args(args, &b.append),
        None => args,
    }
}

/// Build the plan from a validated kickstart and the chosen disk.
pub fn build(
    ks: &Kickstart,
    source: &str,
    choice: &Choice,
    trusted_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
) -> Result<InstallPlan> {
    let o = ks
        .ostreesetup
        .as_ref()
        .ok_or_else(|| anyhow!("no `ostreesetup` command"))?;
    deploy::validate_osname(&o.osname).map_err(|e| anyhow!("{}: {e:#}", o.at))?;
    // A CA file matters only for https (the default one of a live root is simply unused).
    let tls_ca = tls_ca.filter(|_| o.url.starts_with("https://"));
    let gpg_verify = !o.nogpg;
    if gpg_verify && trusted_key.is_none() {
        anyhow::bail!(
            "{}: ostreesetup without --nogpg: commits are verified, but there is no trusted \
             key (give --trusted-key FILE or install one as {})",
            o.at,
            super::DEFAULT_TRUSTED_KEY
        );
    }
    let disk_name = choice.facts.device.name.clone();
    for p in &ks.parts {
        if let Some(d) = &p.ondisk
            && d.trim_start_matches("/dev/") != disk_name
        {
            anyhow::bail!(
                "{}: part {} --ondisk={d}: the installer lays everything out on one disk, \
                 {} here",
                p.at,
                p.mountpoint,
                choice.facts.device.path()
            );
        }
    }
    let s = sizes(ks)?;
    let partitions = layout(choice.facts.device.size, &s)?;
    let fs = Filesystems {
        root_uuid: new_uuid()?,
        boot_uuid: new_uuid()?,
        esp_serial: new_uuid()?[..8].to_ascii_uppercase(),
    };
    let kernel_args = kernel_args(ks, &fs.root_uuid);
    Ok(InstallPlan {
        schema: crate::sys::ui::Schema,
        kickstart: source.to_string(),
        disk: choice.facts.device.path(),
        disk_bytes: choice.facts.device.size,
        disk_reason: choice.reason.clone(),
        wipe_first: choice.wipe,
        partitions,
        fstab: vec![format!("UUID={} /boot ext4 defaults 0 2", fs.boot_uuid)],
        filesystems: fs,
        commit: Commit {
            osname: o.osname.clone(),
            remote: o.remote.clone(),
            url: o.url.clone(),
            ostree_ref: o.ostree_ref.clone(),
            gpg_verify,
            trusted_key: if gpg_verify { trusted_key } else { None },
            tls_ca,
            seed: None,
        },
        kernel_args,
        users: ks.users.iter().map(|u| u.name.clone()).collect(),
        ssh_keys_for: ks.sshkeys.iter().map(|k| k.username.clone()).collect(),
        hostname: ks.hostname().map(String::from),
        network_devices: ks
            .network
            .iter()
            .map(|n| n.device.clone().unwrap_or_else(|| "(first)".into()))
            .collect(),
        post_scripts: ks.post.iter().filter(|p| !p.nochroot).count(),
        post_nochroot_scripts: ks.post.iter().filter(|p| p.nochroot).count(),
        finish: ks.reboot.as_ref().map(|r| r.action),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kickstart::parse_str;
    use crate::sysroot::disk::{MIB, Role};

    const OSTREE: &str =
        "ostreesetup --osname=debian --url=http://10.0.2.2:8080/repo --ref=r --nogpg\n";

    fn err(text: &str) -> String {
        let ks = parse_str(text, "t.ks").unwrap();
        format!("{:#}", sizes(&ks).unwrap_err())
    }

    #[test]
    fn part_lines_outside_the_layout_are_refused_at_their_line() {
        let e = err(&format!("{OSTREE}part / --grow\npart /srv --size=100\n"));
        assert!(
            e.starts_with("t.ks:3: part /srv: the installer lays out"),
            "{e}"
        );
        let e = err(&format!("{OSTREE}part / --grow --fstype=xfs\n"));
        assert!(e.starts_with("t.ks:2: part /: --fstype=xfs"), "{e}");
        let e = err(&format!("{OSTREE}part / --grow\npart /boot --size=100\n"));
        assert!(
            e.starts_with("t.ks:3: part /boot: --size=100 is too small"),
            "{e}"
        );
        let e = err(&format!("{OSTREE}autopart --fstype=xfs\n"));
        assert!(e.starts_with("t.ks:2: autopart --fstype=xfs"), "{e}");
        let e = err(&format!(
            "{OSTREE}part / --size=100\npart swap --fstype=swap --size=100\n"
        ));
        assert!(e.contains("t.ks:2: part /: --size=100 is too small"), "{e}");
        assert!(
            e.contains("t.ks:3: part swap: the installer lays out"),
            "{e}"
        );
    }

    #[test]
    fn the_layout_matches_the_image_layout() {
        let ks = parse_str(
            &format!("{OSTREE}part biosboot --size=1 --fstype=biosboot\npart /boot/efi --size=127 --fstype=efi\npart /boot --size=384\npart / --grow\n"),
            "t.ks",
        )
        .unwrap();
        let s = sizes(&ks).unwrap();
        let parts = layout(8 << 30, &s).unwrap();
        let mib: Vec<u64> = parts.iter().map(|p| p.bytes() / MIB).collect();
        assert_eq!(&mib[..3], &[1, 127, 384]);
        assert_eq!(parts[0].start, 2048);
        for w in parts.windows(2) {
            assert_eq!(w[0].start + w[0].sectors, w[1].start);
        }
        let last = &parts[3];
        assert!(last.offset() + last.bytes() <= (8 << 30) - MIB);
        assert_eq!(last.role, Role::Root);
        assert_ne!(parts[0].partuuid, parts[1].partuuid);
        let script = crate::sysroot::disk::sfdisk_script(&parts);
        assert!(script.contains(&format!("uuid={}", parts[3].partuuid.as_deref().unwrap())));
        // autopart gives the same.
        let auto = parse_str(&format!("{OSTREE}autopart\n"), "t.ks").unwrap();
        assert_eq!(sizes(&auto).unwrap(), s);
        // Too small a disk.
        let e = format!("{:#}", layout(1 << 30, &s).unwrap_err());
        assert!(e.contains("too small"), "{e}");
        // A fixed root size.
        let fixed = parse_str(&format!("{OSTREE}part / --size=4096\n"), "t.ks").unwrap();
        let p = layout(8 << 30, &sizes(&fixed).unwrap()).unwrap();
        assert_eq!(p[3].bytes(), 4096 * MIB);
    }

    #[test]
    fn kernel_arguments_root_by_uuid_and_append() {
        let ks = parse_str(
            &format!("{OSTREE}autopart\nbootloader --append=\"quiet rd.retry=10\"\n"),
            "t.ks",
        )
        .unwrap();
        let args = kernel_args(&ks, "1234-uuid");
        assert_eq!(args[0], "rw");
        assert!(
            args.contains(&"root=UUID=1234-uuid".to_string()),
            "{args:?}"
        );
        assert!(
            !args.iter().any(|a| a.starts_with("root=LABEL")),
            "{args:?}"
        );
        assert!(args.contains(&"rd.retry=10".to_string()));
        assert!(!args.contains(&"rd.retry=60".to_string()));
        assert_eq!(args.last().unwrap(), "rd.retry=10");
    }
}
