use crate::kickstart::test_util::*;
use crate::kickstart::*;

#[test]
fn parse_errors_name_the_offending_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "text\n\nfrobnicate --now\n",
            3,
            "unknown kickstart command `frobnicate`",
        ),
        (
            "ostreesetup --osname=debian --url=http://h/repo\n",
            1,
            "ostreesetup requires --ref",
        ),
        (
            "\nostreesetup --url=http://h/repo --ref=r\n",
            2,
            "ostreesetup requires --osname",
        ),
        (
            "ostreesetup --osname=debian --ref=r\n",
            1,
            "ostreesetup requires --url",
        ),
        (
            "ostreesetup --osname=d --url=ftp://h/repo --ref=r\n",
            1,
            "ostreesetup --url: `ftp://h/repo` uses an unsupported scheme",
        ),
        (
            "ostreesetup --osname=d --url=/srv/repo --ref=r\n",
            1,
            "--url: `/srv/repo` is not a URL",
        ),
        (
            "part /boot --size=1\npart / --size=big\n",
            2,
            "part --size: `big` is not a whole number of MiB",
        ),
        ("part / --size=0\n", 1, "--size: `0` must be at least 1 MiB"),
        ("part / --maxsize=-5 --grow\n", 1, "part --maxsize: `-5`"),
        ("part --size=5\n", 1, "part requires a mount point"),
        ("part / /home --size=5\n", 1, "unexpected `/home`"),
        ("part home --size=5\n", 1, "`home` is not a mount point"),
        (
            "network --hostname=a\nnetwork --bootproto=carrier-pigeon\n",
            2,
            "network --bootproto: `carrier-pigeon` expected dhcp or static",
        ),
        (
            "network --bootproto=static\n",
            1,
            "--bootproto=static requires --ip",
        ),
        (
            "network --bootproto=static --ip=10.0.0.300\n",
            1,
            "network --ip: `10.0.0.300` is not an IP address",
        ),
        (
            "network --onboot=maybe\n",
            1,
            "--onboot: `maybe` expected yes or no",
        ),
        ("network --hostname=bad_name\n", 1, "--hostname: `bad_name`"),
        ("network --mtu=jumbo\n", 1, "network --mtu: `jumbo`"),
        (
            "part / --grow\nautopart --type=plain\n",
            2,
            "`autopart` cannot be combined with `part` (first `part` at test.ks:1)",
        ),
        (
            "autopart\n\npart / --grow\n",
            3,
            "`part` cannot be combined with `autopart` (given at test.ks:1)",
        ),
        ("autopart --type=zfs\n", 1, "autopart --type: `zfs`"),
        (
            "text\nrootpw --iscrypted\n",
            2,
            "rootpw requires a password (or --lock)",
        ),
        (
            "rootpw two words\n",
            1,
            "rootpw takes one password argument, got 2",
        ),
        (
            "rootpw --iscrypted --plaintext x\n",
            1,
            "cannot be combined",
        ),
        ("user --groups=wheel\n", 1, "user requires --name"),
        ("user --name=a:b\n", 1, "user --name: `a:b`"),
        (
            "user --name=core --uid=abc\n",
            1,
            "user --uid: `abc` is not a numeric user id",
        ),
        (
            "user --name=core\nuser --name=other\nuser --name=core\n",
            3,
            "user `core` is already defined at test.ks:1",
        ),
        (
            "sshkey --username=core ssh-ed25519 AAAA test\n",
            1,
            "exactly one argument, the whole public key in quotes (got 3 words)",
        ),
        (
            "sshkey \"ssh-ed25519 AAAA\"\n",
            1,
            "sshkey requires --username",
        ),
        (
            "sshkey --username=core\n",
            1,
            "sshkey requires the public key",
        ),
        (
            "sshkey --username=core AAAA\n",
            1,
            "does not look like an OpenSSH public key",
        ),
        ("services\n", 1, "services requires --enabled or --disabled"),
        ("timezone --utc\n", 1, "timezone requires a time zone"),
        (
            "timezone --nontp --ntpservers=a Etc/UTC\n",
            1,
            "cannot be combined",
        ),
        ("timezone ../../etc/passwd\n", 1, "is not a time zone name"),
        (
            "bootloader --timeout=soon\n",
            1,
            "bootloader --timeout: `soon`",
        ),
        (
            "bootloader --location=floppy\n",
            1,
            "bootloader --location: `floppy`",
        ),
        ("bootloader --append=\"a 'b\"\n", 1, "bootloader --append"),
        ("zerombr yes\n", 1, "zerombr takes no arguments"),
        (
            "clearpart --all --none\n",
            1,
            "clearpart --none is not supported",
        ),
        (
            "ignoredisk\n",
            1,
            "ignoredisk requires --only-use or --drives",
        ),
        ("firstboot\n", 1, "firstboot requires --enable or --disable"),
        ("lang\n", 1, "lang requires a locale"),
        ("keyboard --switch=x\n", 1, "keyboard requires a layout"),
    ];
    for (text, line, needle) in cases {
        assert_error_at(text, *line, needle);
    }
}

#[test]
fn atomic_host_fixture_parses_completely() {
    // A template for `pxe serve`: rendered with the values the checks below expect.
    let path = fixture("atomic-host.ks");
    let source = path.display().to_string();
    let mut values =
        crate::kickstart::template::dummy_values("slipway/bookworm/x86_64/atomic-host");
    values.insert("server", "http://192.168.100.1:8080".into());
    values.insert("repo", "http://192.168.100.1:8080/repo".into());
    values.insert("hostname", "node1".into());
    let text = std::fs::read_to_string(&path).unwrap();
    let text = crate::kickstart::template::render(&text, &source, &values).unwrap();
    let ks = crate::kickstart::parse_str(&text, &source).unwrap();

    assert_eq!(ks.lang.as_deref(), Some("en_US.UTF-8"));
    assert_eq!(
        ks.keyboard,
        Some(Keyboard {
            keymap: "us".into(),
            ..Default::default()
        })
    );
    assert_eq!(
        ks.timezone,
        Some(Timezone {
            name: "Etc/UTC".into(),
            utc: true,
            nontp: false,
            ntpservers: vec![],
            at: Location::new(&source, 6),
        })
    );
    assert_eq!(ks.zerombr, Some(Location::new(&source, 9)));
    assert_eq!(
        ks.clearpart,
        Some(ClearPart {
            all: true,
            initlabel: true,
            drives: vec![],
            at: Location::new(&source, 10),
        })
    );
    assert!(ks.autopart.is_none());
    let summary: Vec<_> = ks
        .parts
        .iter()
        .map(|p| {
            (
                p.mountpoint.as_str(),
                p.size,
                p.grow,
                p.effective_fstype(),
                p.label.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("biosboot", Some(1), false, "biosboot", None),
            ("/boot/efi", Some(127), false, "efi", None),
            ("/boot", Some(384), false, "ext4", Some("boot")),
            ("/", None, true, "ext4", Some("root")),
        ]
    );
    assert_eq!(ks.parts[3].at, Location::new(&source, 14));

    let ostree = ks.ostreesetup.as_ref().unwrap();
    assert_eq!(ostree.osname, "debian");
    assert_eq!(ostree.remote, "debian");
    assert_eq!(ostree.url, "http://192.168.100.1:8080/repo");
    assert_eq!(ostree.ostree_ref, "slipway/bookworm/x86_64/atomic-host");
    assert!(!ostree.nogpg);
    assert_eq!(ostree.at.line, 21);

    let boot = ks.bootloader.as_ref().unwrap();
    assert_eq!(boot.append, vec!["console=ttyS0,115200", "console=tty0"]);

    assert_eq!(ks.network.len(), 1);
    assert_eq!(ks.network[0].bootproto, Some(BootProto::Dhcp));
    assert_eq!(ks.hostname(), Some("node1"));

    assert_eq!(
        ks.rootpw,
        Some(RootPw {
            password: None,
            iscrypted: false,
            lock: true,
            allow_ssh: false,
        })
    );
    assert_eq!(ks.users.len(), 1);
    assert_eq!(ks.users[0].name, "core");
    assert_eq!(ks.users[0].groups, vec!["sudo", "docker"]);
    assert_eq!(ks.users[0].password, None);
    assert_eq!(ks.sshkeys.len(), 1);
    assert_eq!(ks.sshkeys[0].username, "core");
    assert_eq!(ks.sshkeys[0].key, KEY);
    assert_eq!(ks.services.enabled, vec!["docker", "containerd"]);
    assert_eq!(ks.services.disabled, vec!["apt-daily.timer"]);
    assert_eq!(
        ks.reboot,
        Some(RebootAction {
            action: PowerAction::Reboot,
            at: Location::new(&source, 32),
        })
    );

    assert!(ks.pre.is_empty());
    assert_eq!(ks.post.len(), 1);
    let post = &ks.post[0];
    assert!(post.erroronfail);
    assert!(!post.nochroot);
    assert_eq!(post.interpreter, "/bin/sh");
    assert_eq!(post.at, Location::new(&source, 34));
    assert_eq!(
        post.body,
        "set -eu\n\
             # Let the core user use sudo without a password.\n\
             echo 'core ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/core\n\
             chmod 0440 /etc/sudoers.d/core\n"
    );
    assert_eq!(
        ks.warnings,
        Vec::<String>::new(),
        "the shipped template warns"
    );

    ks.validate_for_install().unwrap();
    ks.validate_for_image().unwrap();
    let warnings = ks.image_warnings().join("\n");
    for (line, ignored) in [
        (9, "zerombr"),
        (10, "clearpart"),
        (11, "part biosboot"),
        (14, "part /"),
        (21, "ostreesetup"),
        (32, "reboot"),
    ] {
        assert!(
            warnings.contains(&format!("{source}:{line}: `{ignored}")),
            "{warnings}"
        );
    }
    assert!(!warnings.contains("autopart"), "{warnings}");
    assert!(!warnings.contains("ignoredisk"), "{warnings}");
}

#[test]
fn quoting_of_ssh_keys_and_kernel_arguments() {
    let ks = parse(&format!(
        "sshkey --username=core '{KEY}'\n\
             sshkey --username root \"{KEY}\"\n\
             bootloader --append=\"console=ttyS0,115200 rd.break=cmdline foo='a b' systemd.unit=multi-user.target\"\n"
    ));
    assert_eq!(ks.sshkeys.len(), 2);
    assert!(ks.sshkeys.iter().all(|k| k.key == KEY));
    assert_eq!(ks.sshkeys[1].username, "root");
    assert_eq!(ks.sshkeys[1].at.line, 2);
    assert_eq!(
        ks.bootloader.unwrap().append,
        vec![
            "console=ttyS0,115200",
            "rd.break=cmdline",
            "foo=a b",
            "systemd.unit=multi-user.target"
        ]
    );
}

#[test]
fn services_lines_accumulate() {
    let ks = parse(
        "services --enabled=sshd,chronyd\n\
             services --disabled=apt-daily.timer\n\
             services --enabled=\"docker, sshd\" --enabled=podman --disabled=cups\n",
    );
    assert_eq!(
        ks.services.enabled,
        vec!["sshd", "chronyd", "docker", "podman"]
    );
    assert_eq!(ks.services.disabled, vec!["apt-daily.timer", "cups"]);
    assert!(ks.warnings.is_empty());
    ks.validate_for_image().unwrap();

    let conflict = parse("services --enabled=cups\nservices --disabled=cups\n");
    let err = format!("{:#}", conflict.validate_for_image().unwrap_err());
    assert!(err.contains("`cups` is both enabled and disabled"), "{err}");
}

#[test]
fn repeated_once_only_commands_keep_the_last_with_a_warning() {
    let ks = parse(
        "rootpw --iscrypted $6$salt$hash\n\
             timezone --utc Etc/UTC\n\
             rootpw --lock\n\
             reboot\n\
             poweroff\n\
             services --enabled=a\n\
             services --enabled=b\n",
    );
    assert_eq!(
        ks.rootpw,
        Some(RootPw {
            password: None,
            iscrypted: false,
            lock: true,
            allow_ssh: false,
        })
    );
    assert_eq!(
        ks.reboot,
        Some(RebootAction {
            action: PowerAction::Poweroff,
            at: Location::new("test.ks", 5),
        })
    );
    assert_eq!(ks.warnings.len(), 2, "{:?}", ks.warnings);
    assert!(
        ks.warnings[0]
            .starts_with("test.ks:3: `rootpw` given more than once (previously at test.ks:1)"),
        "{:?}",
        ks.warnings
    );
    assert!(
        ks.warnings[1].starts_with("test.ks:5: "),
        "{:?}",
        ks.warnings
    );
}

#[test]
fn crypted_root_password_keeps_dollars() {
    let ks = parse("rootpw --iscrypted --allow-ssh $6$rounds=4096$salt$Hash/x.\n");
    let rootpw = ks.rootpw.unwrap();
    assert_eq!(
        rootpw.password.as_deref(),
        Some("$6$rounds=4096$salt$Hash/x.")
    );
    assert!(rootpw.iscrypted && rootpw.allow_ssh && !rootpw.lock);
}

#[test]
fn user_options() {
    let ks = parse(
        "user --name=ops --groups=\"wheel, adm\" --password=$6$x$y --iscrypted \
             --homedir=/var/home/ops --shell=/bin/zsh --uid=1500 --gid=1500 --gecos=\"Ops Team\" --lock\n",
    );
    let user = &ks.users[0];
    assert_eq!(user.groups, vec!["wheel", "adm"]);
    assert_eq!(user.password.as_deref(), Some("$6$x$y"));
    assert!(user.iscrypted && user.lock);
    assert_eq!(user.homedir.as_deref(), Some("/var/home/ops"));
    assert_eq!((user.uid, user.gid), (Some(1500), Some(1500)));
    assert_eq!(user.gecos.as_deref(), Some("Ops Team"));

    let dup = parse("user --name=a --uid=1000\nuser --name=b --uid=1000\n");
    let err = format!("{:#}", dup.validate_for_image().unwrap_err());
    assert!(
        err.starts_with("test.ks:2: user `b` has uid 1000, already used by `a` at test.ks:1"),
        "{err}"
    );
}

#[test]
fn network_static_and_hostname() {
    let ks = parse(
        "network --device=eth0 --bootproto=static --ip=10.0.0.5 --netmask=255.255.255.0 \
             --gateway=10.0.0.1 --nameserver=1.1.1.1,9.9.9.9 --nameserver 8.8.8.8 --onboot=no --activate --mtu=9000\n\
             network --hostname=first.example.com\n\
             network --device=eth1 --bootproto=bootp --netmask=24 --hostname=last\n",
    );
    let eth0 = &ks.network[0];
    assert_eq!(eth0.bootproto, Some(BootProto::Static));
    assert_eq!(eth0.ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(eth0.nameservers, vec!["1.1.1.1", "9.9.9.9", "8.8.8.8"]);
    assert_eq!(eth0.onboot, Some(false));
    assert_eq!(eth0.activate, Some(true));
    assert_eq!(eth0.mtu, Some(9000));
    assert_eq!(ks.network[2].bootproto, Some(BootProto::Dhcp));
    assert_eq!(ks.network[2].netmask.as_deref(), Some("24"));
    assert_eq!(ks.hostname(), Some("last"));
    assert_eq!(parse("text\n").hostname(), None);
}

#[test]
fn tolerated_commands_store_nothing_and_warn() {
    let ks = parse(
        "graphical\n\
             firstboot --disable\n\
             selinux --disabled\n\
             firewall --disabled\n\
             eula --agreed\n\
             skipx\n\
             text --non-interactive\n\
             cmdline\n\
             firstboot --enable\n\
             selinux --permissive\n",
    );
    let lines: Vec<&str> = ks.warnings.iter().map(String::as_str).collect();
    assert_eq!(
        lines,
        [
            "test.ks:1: `graphical` has no effect: slipway's installer and image builder never ask anything",
            "test.ks:2: `firstboot` has no effect: Debian has no Initial Setup to run on first boot",
            "test.ks:3: `selinux` has no effect: slipway hosts run without SELinux",
            "test.ks:4: `firewall --disabled` has no effect: slipway configures no firewall",
            "test.ks:5: `eula` has no effect: Debian has no license agreement to accept",
            "test.ks:6: `skipx` has no effect: slipway configures no X server",
            "test.ks:7: `text` has no effect: slipway's installer and image builder never ask anything",
            "test.ks:8: `cmdline` has no effect: slipway's installer and image builder never ask anything",
            "test.ks:9: `firstboot` has no effect: Debian has no Initial Setup to run on first boot",
            "test.ks:10: `selinux` given more than once (previously at test.ks:3); the last one wins",
            "test.ks:10: `selinux` has no effect: slipway hosts run without SELinux",
        ]
    );
    // Nothing but the warnings is kept.
    assert_eq!(
        ks,
        Kickstart {
            warnings: ks.warnings.clone(),
            ..Default::default()
        }
    );
    // They are what an image build prints.
    assert_eq!(ks.image_warnings(), ks.warnings);
}

#[test]
fn options_nothing_applies_are_warned_about() {
    let ks = parse(
        "part / --grow --asprimary\n\
             reboot --eject --kexec\n\
             lang en_US.UTF-8 --addsupport=de_DE.UTF-8\n\
             timezone Europe/Berlin\n\
             bootloader --driveorder=sda,sdb --leavebootorder --append=quiet\n",
    );
    let lines: Vec<&str> = ks.warnings.iter().map(String::as_str).collect();
    assert_eq!(
        lines,
        [
            "test.ks:1: part --asprimary is ignored: slipway writes GPT, where every partition is primary",
            "test.ks:2: reboot --eject is ignored: a network installation has no media to eject",
            "test.ks:2: reboot --kexec is ignored: slipway restarts through the firmware",
            "test.ks:3: lang --addsupport is ignored: the locales a host has come from its commit",
            "test.ks:4: timezone without --utc asks for a hardware clock in local time; slipway keeps it in UTC (add --utc)",
            "test.ks:5: bootloader --driveorder is ignored: use --boot-drive to name the disk",
            "test.ks:5: bootloader --leavebootorder is ignored: slipway never changes the firmware's boot order",
        ]
    );
    assert_eq!(ks.bootloader.unwrap().append, ["quiet"]);
    assert!(!ks.timezone.unwrap().utc);
}

#[test]
fn refused_commands_and_options_name_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "text\nclearpart --linux\n",
            2,
            "clearpart --linux is not supported: slipway installs onto whole disks",
        ),
        ("clearpart --none\n", 1, "clearpart --none is not supported"),
        (
            "clearpart --all --list=sda1\n",
            1,
            "clearpart --list is not supported",
        ),
        (
            "clearpart --all --disklabel=msdos\n",
            1,
            "clearpart --disklabel: `msdos` is not supported: slipway writes GPT",
        ),
        (
            "bootloader --password=grub.pbkdf2.sha512.x\n",
            1,
            "bootloader --password is not supported: slipway sets no GRUB password",
        ),
        (
            "bootloader --md5pass=$1$x\n",
            1,
            "bootloader --md5pass is not supported",
        ),
        (
            "bootloader --iscrypted\n",
            1,
            "bootloader --iscrypted is not supported",
        ),
        (
            "bootloader --disabled\n",
            1,
            "bootloader --disabled is not supported",
        ),
        (
            "selinux --enforcing\n",
            1,
            "selinux --enforcing is not supported: slipway hosts have no SELinux policy",
        ),
        ("\nselinux\n", 2, "selinux --enforcing is not supported"),
        (
            "firewall --enabled --service=ssh\n",
            1,
            "firewall is not supported: slipway configures no firewall",
        ),
        ("firewall --service=ssh\n", 1, "firewall is not supported"),
        (
            "logvol / --vgname=vg --name=root --grow\n",
            1,
            "`logvol` is not supported: slipway installs plain partitions",
        ),
        ("volgroup vg pv.01\n", 1, "`volgroup` is not supported"),
        (
            "url --url=http://mirror/debian\n",
            1,
            "`url` is not supported: the software comes from the OSTree commit",
        ),
        ("repo --name=x --baseurl=y\n", 1, "`repo` is not supported"),
        (
            "timesource --ntp-server=a\n",
            1,
            "`timesource` is not supported: use `timezone --ntpservers=`",
        ),
        ("group --name=ops\n", 1, "`group` is not supported"),
        (
            "eula --disagree\n",
            1,
            "unknown option `--disagree` for `eula`",
        ),
        ("skipx now\n", 1, "skipx takes no arguments"),
        (
            "firstboot --enable --disable\n",
            1,
            "--enable and --disable cannot be combined",
        ),
        (
            "network --noipv4 --noipv6\n",
            1,
            "--noipv4 and --noipv6 cannot be combined",
        ),
        (
            "network --noipv4 --bootproto=static --ip=10.0.0.5\n",
            1,
            "--noipv4 cannot be combined with an IPv4",
        ),
        (
            "network --noipv4 --gateway=10.0.0.1 --ipv6=auto\n",
            1,
            "--noipv4 cannot be combined with an IPv4",
        ),
        (
            "network --noipv6 --ipv6=auto\n",
            1,
            "--noipv6 cannot be combined with --ipv6",
        ),
        (
            "network --ipv6=slaac\n",
            1,
            "network --ipv6: `slaac` expected auto, dhcp or an IPv6 address",
        ),
        (
            "network --ipv6=2001:db8::5/129\n",
            1,
            "prefix length that is not 1 to 128",
        ),
        (
            "network --ipv6=auto --ipv6gateway=10.0.0.1\n",
            1,
            "network --ipv6gateway: `10.0.0.1` is not an IPv6 address",
        ),
        ("lang \"en_US.UTF-8\nX=y\"\n", 1, "unbalanced quotes"),
        ("lang 'en US'\n", 1, "lang: `en US` is not a locale name"),
        (
            "keyboard 'de;rm -rf'\n",
            1,
            "keyboard: `de;rm -rf` is not a keymap name",
        ),
        (
            "keyboard --xlayouts='cz (qwerty'\n",
            1,
            "keyboard --xlayouts: `cz (qwerty` expected LAYOUT or LAYOUT (VARIANT)",
        ),
        (
            "keyboard --xlayouts='c=z'\n",
            1,
            "keyboard --xlayouts: `c=z` is not an X layout",
        ),
        (
            "keyboard us --switch='grp:alt shift'\n",
            1,
            "keyboard --switch: `grp:alt shift` is not an XKB option",
        ),
    ];
    for (text, line, needle) in cases {
        assert_error_at(text, *line, needle);
    }
}

#[test]
fn bootloader_keeps_what_the_installer_uses() {
    let ks = parse("bootloader --location=mbr --boot-drive=vda --timeout=3\n");
    let boot = ks.bootloader.unwrap();
    assert_eq!(boot.location, Some(BootLocation::Mbr));
    assert_eq!(boot.boot_drive.as_deref(), Some("vda"));
    assert_eq!(boot.timeout, Some(3));
    assert_eq!(boot.at, Location::new("test.ks", 1));
    assert!(ks.warnings.is_empty(), "{:?}", ks.warnings);

    let ks = parse(
        "clearpart --drives=sda --initlabel --disklabel=GPT\nignoredisk --only-use=vda,vdb\n",
    );
    let clear = ks.clearpart.as_ref().unwrap();
    assert!(!clear.all && clear.initlabel);
    assert_eq!(clear.drives, vec!["sda"]);
    assert_eq!(ks.ignoredisk.as_ref().unwrap().only_use, vec!["vda", "vdb"]);
    assert_eq!(ks.ignoredisk.as_ref().unwrap().at.line, 2);
}

#[test]
fn network_ipv6_and_noipv4() {
    let ks = parse(
        "network --device=eth0 --ipv6=auto\n\
             network --device=eth1 --noipv4 --ipv6=dhcp\n\
             network --device=eth2 --noipv4 --ipv6=2001:db8::5/48 --ipv6gateway=2001:db8::1\n\
             network --device=eth3 --ipv6=2001:db8::6\n\
             network --device=eth4 --noipv6\n",
    );
    let v6: Vec<_> = ks.network.iter().map(|n| n.ipv6).collect();
    let addr = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
    assert_eq!(
        v6,
        [
            Some(Ipv6::Auto),
            Some(Ipv6::Dhcp),
            Some(Ipv6::Static {
                address: addr("2001:db8::5"),
                prefix: 48
            }),
            Some(Ipv6::Static {
                address: addr("2001:db8::6"),
                prefix: 64
            }),
            None,
        ]
    );
    assert!(!ks.network[0].noipv4 && ks.network[1].noipv4 && ks.network[2].noipv4);
    assert_eq!(ks.network[2].ipv6gateway, Some(addr("2001:db8::1")));
    assert!(ks.network[4].noipv6);
}

#[test]
fn keyboard_layouts_variants_and_switch() {
    let ks = parse(
        "keyboard --vckeymap=cz-qwerty --xlayouts='us','cz (qwerty)' --switch=grp:alt_shift_toggle\n",
    );
    assert_eq!(
        ks.keyboard,
        Some(Keyboard {
            keymap: "cz-qwerty".into(),
            xlayouts: vec![
                XLayout {
                    layout: "us".into(),
                    variant: None
                },
                XLayout {
                    layout: "cz".into(),
                    variant: Some("qwerty".into())
                },
            ],
            switch: vec!["grp:alt_shift_toggle".into()],
        })
    );
    // The console keymap falls back on the first X layout.
    let ks = parse("keyboard --xlayouts='de (nodeadkeys)',us\n");
    assert_eq!(ks.keyboard.unwrap().keymap, "de");
}

#[test]
fn ostree_url_schemes() {
    for url in ["file:///srv/repo", "http://h:8080/repo", "HTTPS://h/repo"] {
        let ks = parse(&format!("ostreesetup --osname=d --url={url} --ref=r\n"));
        let ostree = ks.ostreesetup.unwrap();
        assert_eq!(ostree.url, url);
        assert_eq!(ostree.remote, "d", "remote defaults to osname");
        assert!(!ostree.nogpg);
    }
    assert_error_at(
        "ostreesetup --osname=d --url=http:// --ref=r\n",
        1,
        "has no path or host",
    );
}

#[test]
fn serialises_to_json() {
    let ks = parse(&format!("{INSTALLABLE}reboot\n"));
    let json = serde_json::to_value(&ks).unwrap();
    assert_eq!(json["ostreesetup"]["ref"], "debian/x86_64");
    assert_eq!(json["parts"][0]["mountpoint"], "/");
    assert_eq!(json["parts"][0]["at"]["line"], 2);
    assert_eq!(json["reboot"]["action"], "reboot");
}
