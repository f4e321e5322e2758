//! Checks of a whole parsed kickstart for each consumer: [`Kickstart::validate_for_install`]
//! (the PXE installer: `ostreesetup`, a storage layout it can lay out),
//! [`Kickstart::validate_for_image`], and [`Kickstart::image_warnings`] (what an image build
//! ignores). All problems are collected and reported together.

use std::collections::HashMap;

use anyhow::{Result, anyhow};

use super::{
    AutoPartType, Kickstart, Location, SUPPORTED_AUTOPART_FSTYPES, SUPPORTED_PART_FSTYPES, User,
};

impl Kickstart {
    /// For an installer that has a trusted key (`has_key`) or none: an `ostreesetup` that
    /// verifies signatures (no `--nogpg`) needs one, or no install could ever succeed.
    pub fn check_trusted_key(&self, has_key: bool) -> Result<()> {
        match self.ostreesetup.as_ref() {
            Some(o) if !o.nogpg && !has_key => anyhow::bail!(
                "{}: ostreesetup verifies the commit's signature (no --nogpg), but the \
                 installer has no key to verify it with: build it with `slipway pxe build \
                 --trusted-key FILE` (the public key the commits are signed with), or add \
                 --nogpg to install unverified commits",
                o.at
            ),
            _ => Ok(()),
        }
    }

    /// Check that the PXE installer can carry this kickstart out: an `ostreesetup`, and either
    /// `autopart` (plain) or `part` lines including `/`, with supported filesystems. All
    /// problems are reported together.
    pub fn validate_for_install(&self) -> Result<()> {
        let mut problems = self.common_problems();
        if self.ostreesetup.is_none() {
            problems.push(
                "no `ostreesetup` command: the installer needs --osname, --url and --ref to know what to deploy"
                    .to_string(),
            );
        }
        self.storage_problems(&mut problems);
        report(problems, "cannot be installed")
    }

    /// Check that the image builder can apply this kickstart. Storage, `ostreesetup` and the
    /// like are not checked: the image builder ignores them (see [`Kickstart::image_warnings`]).
    pub fn validate_for_image(&self) -> Result<()> {
        report(self.common_problems(), "cannot be applied to an image")
    }

    /// What an image build does not apply, each `SOURCE:LINE: message`: the parse warnings
    /// ([`Kickstart::warnings`]) first, then one message per command, option or script that
    /// only the installer uses (storage, `ostreesetup`, `reboot`, `%pre`...).
    pub fn image_warnings(&self) -> Vec<String> {
        let mut warnings = self.warnings.clone();
        let mut ignored = |at: &Location, what: &str, why: &str| {
            warnings.push(format!(
                "{at}: `{what}` is ignored when building an image: {why}"
            ));
        };
        const LAYOUT: &str = "the image has a fixed partition layout";
        if let Some(o) = &self.ostreesetup {
            ignored(
                &o.at,
                "ostreesetup",
                "the image is deployed from the --repo and --ref it is built from",
            );
        }
        if let Some(at) = &self.zerombr {
            ignored(at, "zerombr", LAYOUT);
        }
        if let Some(c) = &self.clearpart {
            ignored(&c.at, "clearpart", LAYOUT);
        }
        if let Some(i) = &self.ignoredisk {
            ignored(&i.at, "ignoredisk", LAYOUT);
        }
        if let Some(a) = &self.autopart {
            ignored(&a.at, "autopart", LAYOUT);
        }
        for p in &self.parts {
            ignored(&p.at, &format!("part {}", p.mountpoint), LAYOUT);
        }
        if let Some(b) = &self.bootloader {
            if b.location.is_some() {
                ignored(
                    &b.at,
                    "bootloader --location",
                    "GRUB is installed for the image's firmware",
                );
            }
            if b.boot_drive.is_some() {
                ignored(&b.at, "bootloader --boot-drive", "the image is one disk");
            }
        }
        for n in self.network.iter().filter(|n| n.activate.is_some()) {
            ignored(
                &n.at,
                "network --activate/--no-activate",
                "it concerns the installer's own network",
            );
        }
        if let Some(r) = &self.reboot {
            ignored(
                &r.at,
                r.action.as_str(),
                "there is no installer run to finish",
            );
        }
        for script in &self.pre {
            warnings.push(format!(
                "{}: %pre script is not run when building an image",
                script.at
            ));
        }
        for script in self.post.iter().filter(|s| s.nochroot) {
            warnings.push(format!(
                "{}: %post --nochroot script: there is no installer environment when building an image",
                script.at
            ));
        }
        warnings
    }

    /// Problems that make a kickstart unusable for every consumer.
    fn common_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for unit in &self.services.enabled {
            if self.services.disabled.contains(unit) {
                problems.push(format!("services: `{unit}` is both enabled and disabled"));
            }
        }
        let mut uids: HashMap<u32, &User> = HashMap::new();
        for user in &self.users {
            if let Some(uid) = user.uid
                && let Some(prev) = uids.insert(uid, user)
            {
                problems.push(format!(
                    "{}: user `{}` has uid {uid}, already used by `{}` at {}",
                    user.at, user.name, prev.name, prev.at
                ));
            }
        }
        problems
    }

    fn storage_problems(&self, problems: &mut Vec<String>) {
        if let Some(auto) = &self.autopart {
            let at = &auto.at;
            if let Some(kind) = auto.part_type.filter(|t| *t != AutoPartType::Plain) {
                problems.push(format!(
                    "{at}: autopart --type={} is not supported: slipway installs plain partitions (use --type=plain or `part` lines)",
                    kind.as_str()
                ));
            }
            if auto.encrypted {
                problems.push(format!("{at}: autopart --encrypted is not supported"));
            }
            if let Some(fstype) = &auto.fstype
                && !SUPPORTED_AUTOPART_FSTYPES.contains(&fstype.as_str())
            {
                problems.push(format!(
                    "{at}: autopart --fstype={fstype} is not supported (use {})",
                    SUPPORTED_AUTOPART_FSTYPES.join(" or ")
                ));
            }
            return;
        }
        if self.parts.is_empty() {
            problems.push(
                "no storage layout: add `autopart --type=plain` or `part` lines including `/`"
                    .to_string(),
            );
            return;
        }
        let mut mounts: HashMap<&str, &Location> = HashMap::new();
        for part in &self.parts {
            let at = &part.at;
            let mp = part.mountpoint.as_str();
            if !(mp.starts_with('/') || matches!(mp, "swap" | "biosboot")) {
                problems.push(format!(
                    "{at}: part {mp}: LVM, RAID and btrfs members are not supported"
                ));
                continue;
            }
            let fstype = part.effective_fstype();
            if !SUPPORTED_PART_FSTYPES.contains(&fstype) {
                problems.push(format!(
                    "{at}: part {mp}: --fstype={fstype} is not supported (supported: {})",
                    SUPPORTED_PART_FSTYPES.join(", ")
                ));
            } else {
                let mismatch = match (mp, fstype) {
                    ("biosboot", "biosboot") | ("swap", "swap") => None,
                    ("biosboot", _) => Some("a biosboot partition needs --fstype=biosboot"),
                    ("swap", _) => Some("a swap partition needs --fstype=swap"),
                    (_, "biosboot") => Some("--fstype=biosboot needs the mount point `biosboot`"),
                    (_, "swap") => Some("--fstype=swap needs the mount point `swap`"),
                    ("/boot/efi", _) => None,
                    (_, "efi") => Some("--fstype=efi is only for /boot/efi"),
                    ("/" | "/boot", "vfat") => Some("/ and /boot need ext4 or xfs"),
                    _ => None,
                };
                if let Some(why) = mismatch {
                    problems.push(format!("{at}: part {mp}: {why}"));
                }
            }
            if part.size.is_none() && !part.grow {
                problems.push(format!("{at}: part {mp}: needs --size=MiB or --grow"));
            }
            if let (Some(size), Some(max)) = (part.size, part.maxsize)
                && max < size
            {
                problems.push(format!(
                    "{at}: part {mp}: --maxsize={max} is smaller than --size={size}"
                ));
            }
            if mp != "swap"
                && let Some(prev) = mounts.insert(mp, at)
            {
                problems.push(format!("{at}: part {mp}: already defined at {prev}"));
            }
        }
        if !mounts.contains_key("/") {
            problems.push("no `part /`: the installer needs a root partition".to_string());
        }
    }
}

fn report(mut problems: Vec<String>, what: &str) -> Result<()> {
    match problems.len() {
        0 => Ok(()),
        1 => Err(anyhow!(problems.remove(0))),
        _ => Err(anyhow!(
            "kickstart {what}:\n  - {}",
            problems.join("\n  - ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::kickstart::test_util::*;
    use crate::kickstart::*;

    #[test]
    fn image_example_fixture_is_fit_for_images_only() {
        let ks = parse_file(&fixture("image-example.ks")).unwrap();
        assert_eq!(ks.users.len(), 1);
        let admin = &ks.users[0];
        assert_eq!(admin.name, "admin");
        assert_eq!(admin.shell.as_deref(), Some("/bin/bash"));
        assert_eq!(admin.gecos.as_deref(), Some("Image Admin"));
        assert_eq!(ks.sshkeys[0].username, "admin");
        assert!(ks.sshkeys[0].key.ends_with(" admin@example"));
        assert_eq!(
            ks.bootloader.as_ref().unwrap().append,
            vec!["console=ttyS0,115200", "quiet"]
        );
        assert_eq!(ks.hostname(), Some("image-host"));
        assert_eq!(ks.network[0].bootproto, None);
        assert_eq!(ks.timezone.as_ref().unwrap().name, "Europe/Berlin");
        assert_eq!(ks.services.enabled, vec!["ssh"]);
        assert_eq!(
            ks.services.disabled,
            vec!["apt-daily.timer", "apt-daily-upgrade.timer"]
        );

        ks.validate_for_image().unwrap();
        assert_eq!(ks.image_warnings(), Vec::<String>::new());
        let err = format!("{:#}", ks.validate_for_install().unwrap_err());
        assert!(err.contains("no `ostreesetup`"), "{err}");
        assert!(err.contains("no storage layout"), "{err}");
    }

    #[test]
    fn install_validation_of_storage() {
        parse(INSTALLABLE).validate_for_install().unwrap();

        let auto = "ostreesetup --osname=o --url=https://h/r --ref=r\n";
        parse(&format!("{auto}autopart\n"))
            .validate_for_install()
            .unwrap();
        parse(&format!(
            "{auto}autopart --type=plain --fstype=xfs --nohome\n"
        ))
        .validate_for_install()
        .unwrap();
        let ks = parse(&format!("{auto}autopart --nolvm\n"));
        assert_eq!(
            ks.autopart.as_ref().unwrap().part_type,
            Some(AutoPartType::Plain)
        );

        let cases: &[(String, &str)] = &[
            (
                format!("{auto}autopart --type=lvm\n"),
                "test.ks:2: autopart --type=lvm is not supported",
            ),
            (
                format!("{auto}autopart --fstype=btrfs\n"),
                "test.ks:2: autopart --fstype=btrfs is not supported",
            ),
            (
                format!("{auto}part / --grow --fstype=btrfs\n"),
                "test.ks:2: part /: --fstype=btrfs is not supported",
            ),
            (format!("{auto}part /boot --size=500\n"), "no `part /`"),
            (
                format!("{auto}part /\n"),
                "part /: needs --size=MiB or --grow",
            ),
            (
                format!("{auto}part / --grow\npart /srv --fstype=efi --size=100\n"),
                "test.ks:3: part /srv: --fstype=efi is only for /boot/efi",
            ),
            (
                format!("{auto}part / --grow\npart swap --fstype=ext4 --size=100\n"),
                "a swap partition needs --fstype=swap",
            ),
            (
                format!("{auto}part / --grow --fstype=vfat\n"),
                "/ and /boot need ext4 or xfs",
            ),
            (
                format!("{auto}part / --grow\npart pv.01 --size=100\n"),
                "test.ks:3: part pv.01: LVM, RAID and btrfs members are not supported",
            ),
            (
                format!("{auto}part / --size=10\npart / --size=20\n"),
                "test.ks:3: part /: already defined at test.ks:2",
            ),
            (
                format!("{auto}part / --size=10 --maxsize=5\n"),
                "--maxsize=5 is smaller than --size=10",
            ),
            ("part / --grow\n".to_string(), "no `ostreesetup` command"),
        ];
        for (text, needle) in cases {
            let err = format!("{:#}", parse(text).validate_for_install().unwrap_err());
            assert!(err.contains(needle), "expected `{needle}` in: {err}");
            // Image validation does not care about storage or ostreesetup.
            parse(text).validate_for_image().unwrap();
        }

        // Several problems are reported together.
        let err = format!(
            "{:#}",
            parse("autopart --type=lvm --encrypted\n")
                .validate_for_install()
                .unwrap_err()
        );
        assert!(
            err.starts_with("kickstart cannot be installed:\n  - "),
            "{err}"
        );
        assert!(err.contains("no `ostreesetup`"), "{err}");
        assert!(err.contains("--type=lvm"), "{err}");
        assert!(err.contains("--encrypted"), "{err}");
    }

    #[test]
    fn image_warnings_name_every_command_an_image_does_not_apply() {
        let ks = parse(
            "ostreesetup --osname=d --url=file:///srv/repo --ref=r\n\
             zerombr\n\
             clearpart --all --initlabel\n\
             ignoredisk --only-use=vda\n\
             part / --grow\n\
             part swap --size=512\n\
             bootloader --append=quiet --timeout=2 --location=mbr --boot-drive=vda\n\
             network --device=eth0 --activate --ipv6=auto\n\
             poweroff\n\
             %pre\n\
             true\n\
             %end\n\
             %post --nochroot\n\
             true\n\
             %end\n\
             graphical\n\
             %post --log=/root/post.log\n\
             true\n\
             %end\n",
        );
        let warnings = ks.image_warnings();
        let expected = [
            "test.ks:16: `graphical` has no effect",
            "test.ks:1: `ostreesetup` is ignored when building an image",
            "test.ks:2: `zerombr` is ignored",
            "test.ks:3: `clearpart` is ignored",
            "test.ks:4: `ignoredisk` is ignored",
            "test.ks:5: `part /` is ignored",
            "test.ks:6: `part swap` is ignored",
            "test.ks:7: `bootloader --location` is ignored",
            "test.ks:7: `bootloader --boot-drive` is ignored",
            "test.ks:8: `network --activate/--no-activate` is ignored",
            "test.ks:9: `poweroff` is ignored",
            "test.ks:10: %pre script is not run",
            "test.ks:13: %post --nochroot script",
        ];
        assert_eq!(warnings.len(), expected.len(), "{warnings:#?}");
        for (w, e) in warnings.iter().zip(expected) {
            assert!(w.starts_with(e), "expected `{e}...`, got `{w}`");
        }

        // What an image applies gives no warning.
        let applied = parse(
            "user --name=ops --groups=sudo --homedir=/var/home/ops\n\
             sshkey --username=ops \"ssh-ed25519 AAAA ops\"\n\
             rootpw --iscrypted --allow-ssh $6$x$y\n\
             network --device=eth0 --noipv4 --ipv6=2001:db8::5/64 --hostname=h\n\
             timezone --utc --ntpservers=ntp.example Europe/Berlin\n\
             services --enabled=ssh\n\
             lang de_DE.UTF-8\n\
             keyboard --vckeymap=de --xlayouts=de,us\n\
             bootloader --append=quiet --timeout=2\n\
             %post --erroronfail --log=/var/log/post.log\n\
             true\n\
             %end\n",
        );
        assert_eq!(applied.image_warnings(), Vec::<String>::new());
    }

    #[test]
    fn two_swaps_are_fine() {
        parse(&format!(
            "{INSTALLABLE}part swap --size=1024\npart swap --size=1024 --ondisk=vdb\n"
        ))
        .validate_for_install()
        .unwrap();
    }
}
