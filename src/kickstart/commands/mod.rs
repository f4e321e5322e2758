//! The per-command parsers (`ostreesetup`, `part`, `network`, `user`...) and the data types
//! they fill: [`Kickstart`] and one struct per command. Each parser checks what it can on its
//! own line (values, combinations of options, repeats) and names that line in its errors.
//!
//! What is kept is what a slipway capability applies: the image builder (host configuration)
//! or the PXE installer (`ostreesetup`, storage, `bootloader`, `reboot`...). Standard Anaconda
//! commands and options that nothing here could ever apply are either tolerated with a warning
//! in [`Kickstart::warnings`] (harmless: `text`, `eula`, `part --asprimary`...) or refused at
//! their line when ignoring them would leave the host other than the operator asked
//! (`bootloader --password`, `clearpart --linux`, `selinux --enforcing`, `logvol`...).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, anyhow, bail};
use serde::Serialize;

use super::options::{Args, Opt, Takes, alias, flag, value};
use super::{Location, Parser};

/// Filesystem types `part --fstype` may use for an install.
pub const SUPPORTED_PART_FSTYPES: &[&str] = &["ext4", "xfs", "vfat", "efi", "biosboot", "swap"];
/// Filesystem types `autopart --fstype` may use for an install.
pub const SUPPORTED_AUTOPART_FSTYPES: &[&str] = &["ext4", "xfs"];
/// Filesystem used for a `part /path` line without `--fstype`.
pub const DEFAULT_FSTYPE: &str = "ext4";
/// Interpreter of a `%pre`/`%post` script without `--interpreter`.
pub const DEFAULT_INTERPRETER: &str = "/bin/sh";

/// A parsed kickstart. Fields left `None`/empty/`false` were not given.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Kickstart {
    pub ostreesetup: Option<OstreeSetup>,
    /// Where `zerombr` was given.
    pub zerombr: Option<Location>,
    pub clearpart: Option<ClearPart>,
    pub ignoredisk: Option<IgnoreDisk>,
    pub autopart: Option<AutoPart>,
    pub parts: Vec<Part>,
    pub bootloader: Option<Bootloader>,
    pub network: Vec<Network>,
    pub rootpw: Option<RootPw>,
    pub users: Vec<User>,
    pub sshkeys: Vec<SshKey>,
    pub services: Services,
    pub timezone: Option<Timezone>,
    /// `lang`: the system locale (`LANG` in /etc/locale.conf), e.g. `en_US.UTF-8`.
    pub lang: Option<String>,
    pub keyboard: Option<Keyboard>,
    pub reboot: Option<RebootAction>,
    pub pre: Vec<Script>,
    pub post: Vec<Script>,
    /// Things that parsed but deserve the user's attention, each `SOURCE:LINE: message`.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OstreeSetup {
    pub osname: String,
    /// Remote name; defaults to `osname`.
    pub remote: String,
    pub url: String,
    #[serde(rename = "ref")]
    pub ostree_ref: String,
    pub nogpg: bool,
    pub at: Location,
}

/// `clearpart`. slipway's installer lays out whole disks: `--linux`, `--none` and `--list`
/// (keep some partitions) are refused, and the only disk label is GPT.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClearPart {
    pub all: bool,
    pub initlabel: bool,
    pub drives: Vec<String>,
    pub at: Location,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IgnoreDisk {
    /// `--only-use`: install only onto these disks.
    pub only_use: Vec<String>,
    /// `--drives`: never touch these disks.
    pub drives: Vec<String>,
    pub at: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoPartType {
    Plain,
    Lvm,
    Thinp,
    Btrfs,
}

impl AutoPartType {
    pub fn as_str(self) -> &'static str {
        match self {
            AutoPartType::Plain => "plain",
            AutoPartType::Lvm => "lvm",
            AutoPartType::Thinp => "thinp",
            AutoPartType::Btrfs => "btrfs",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AutoPart {
    /// `--type`; `None` (not given) means plain for slipway (Anaconda would default to LVM).
    #[serde(rename = "type")]
    pub part_type: Option<AutoPartType>,
    pub fstype: Option<String>,
    pub nohome: bool,
    pub noboot: bool,
    pub noswap: bool,
    pub encrypted: bool,
    pub at: Location,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Part {
    /// `/path`, `swap` or `biosboot` (also `pv.*`, `raid.*`, `btrfs.*`, rejected at validation).
    pub mountpoint: String,
    /// `--size` in MiB.
    pub size: Option<u64>,
    pub grow: bool,
    /// `--maxsize` in MiB.
    pub maxsize: Option<u64>,
    /// `--fstype` as written; see [`Part::effective_fstype`].
    pub fstype: Option<String>,
    pub label: Option<String>,
    pub ondisk: Option<String>,
    pub fsoptions: Option<String>,
    pub at: Location,
}

impl Part {
    /// `--fstype` if given, else what the mount point implies: `biosboot`, `swap`, `efi` for
    /// `/boot/efi`, and [`DEFAULT_FSTYPE`] for other paths.
    pub fn effective_fstype(&self) -> &str {
        if let Some(fstype) = &self.fstype {
            return fstype;
        }
        match self.mountpoint.as_str() {
            "biosboot" => "biosboot",
            "swap" => "swap",
            "/boot/efi" => "efi",
            _ => DEFAULT_FSTYPE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BootLocation {
    Mbr,
    Partition,
    None,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bootloader {
    /// `--append`, split shell-style into kernel arguments.
    pub append: Vec<String>,
    pub location: Option<BootLocation>,
    pub timeout: Option<u32>,
    pub boot_drive: Option<String>,
    pub at: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BootProto {
    Dhcp,
    Static,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Network {
    /// `None` when not given (Anaconda's default is DHCP).
    pub bootproto: Option<BootProto>,
    pub device: Option<String>,
    pub ip: Option<String>,
    /// Dotted quad or prefix length, as written.
    pub netmask: Option<String>,
    pub gateway: Option<String>,
    pub nameservers: Vec<String>,
    pub hostname: Option<String>,
    pub onboot: Option<bool>,
    /// `--activate` → `Some(true)`, `--no-activate` → `Some(false)`: the installer's own
    /// network, not the host's.
    pub activate: Option<bool>,
    pub ipv6: Option<Ipv6>,
    pub ipv6gateway: Option<Ipv6Addr>,
    pub mtu: Option<u32>,
    /// No IPv4 at all (no DHCPv4, no static IPv4 address).
    pub noipv4: bool,
    pub noipv6: bool,
    pub nodns: bool,
    pub nodefroute: bool,
    pub at: Location,
}

/// `network --ipv6=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ipv6 {
    /// `auto`: addresses from router advertisements (SLAAC, DHCPv6 when they ask for it).
    Auto,
    /// `dhcp`: DHCPv6 only.
    Dhcp,
    /// `ADDR[/PREFIX]`: a static address (prefix 64 when not given).
    Static { address: Ipv6Addr, prefix: u8 },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RootPw {
    /// `None` only together with `lock`.
    pub password: Option<String>,
    /// The password is a crypt(3) hash (`--iscrypted`); otherwise plain text.
    pub iscrypted: bool,
    pub lock: bool,
    /// `--allow-ssh`: root may log in over SSH with the password.
    pub allow_ssh: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub password: Option<String>,
    pub iscrypted: bool,
    pub homedir: Option<String>,
    pub shell: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub gecos: Option<String>,
    pub lock: bool,
    pub at: Location,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SshKey {
    pub username: String,
    /// The whole public key line, e.g. `ssh-ed25519 AAAA... comment`.
    pub key: String,
    pub at: Location,
}

/// Accumulated `services` lines, in order, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Services {
    pub enabled: Vec<String>,
    pub disabled: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timezone {
    /// e.g. `Etc/UTC`.
    pub name: String,
    /// Hardware clock in UTC (`--utc`/`--isUtc`). slipway hosts keep it in UTC either way;
    /// parsing a `timezone` without it records a warning.
    pub utc: bool,
    pub nontp: bool,
    pub ntpservers: Vec<String>,
    pub at: Location,
}

/// `keyboard`: the console keymap and the X layouts (/etc/vconsole.conf).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Keyboard {
    /// Console keymap (`KEYMAP`): `keyboard X`, else `--vckeymap`, else the first layout of
    /// `--xlayouts`.
    pub keymap: String,
    /// `--xlayouts` in order (`XKBLAYOUT`, `XKBVARIANT`).
    pub xlayouts: Vec<XLayout>,
    /// `--switch`: XKB options to switch layouts, e.g. `grp:alt_shift_toggle` (`XKBOPTIONS`).
    pub switch: Vec<String>,
}

/// One `--xlayouts` entry: `cz` or `cz (qwerty)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct XLayout {
    pub layout: String,
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    Reboot,
    /// `poweroff`, or its synonym `shutdown`.
    Poweroff,
    Halt,
}

impl PowerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Reboot => "reboot",
            PowerAction::Poweroff => "poweroff",
            PowerAction::Halt => "halt",
        }
    }
}

/// What the installer does once it has finished.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebootAction {
    pub action: PowerAction,
    pub at: Location,
}

/// A `%pre` or `%post` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Script {
    /// `--interpreter`, default [`DEFAULT_INTERPRETER`].
    pub interpreter: String,
    pub erroronfail: bool,
    /// `%post --nochroot`: run outside the target root.
    pub nochroot: bool,
    /// `--log`, as written (checked at parse time to name a path inside the tree).
    pub log: Option<String>,
    /// The lines between the header and `%end`, verbatim, each ending in `\n`.
    pub body: String,
    /// Where the `%pre`/`%post` header line is; the body starts on the next line.
    pub at: Location,
}

impl Kickstart {
    /// The host name set by the last `network --hostname=` line, if any.
    pub fn hostname(&self) -> Option<&str> {
        self.network
            .iter()
            .rev()
            .find_map(|n| n.hostname.as_deref())
    }
}

impl Parser {
    /// Note a command that may be given only once; a repeat keeps the last, with a warning.
    fn once(&mut self, key: &'static str, loc: &Location) {
        if let Some(prev) = self.once.insert(key, loc.clone()) {
            self.ks.warnings.push(format!(
                "{loc}: `{key}` given more than once (previously at {prev}); the last one wins"
            ));
        }
    }

    fn warn(&mut self, loc: &Location, msg: impl fmt::Display) {
        self.ks.warnings.push(format!("{loc}: {msg}"));
    }

    /// Warn about each option in `ignored` that `args` holds: `(option, why it has no effect)`.
    fn ignored_options(&mut self, args: &Args, ignored: &[(&str, &str)]) {
        for (opt, why) in ignored {
            if args.flag(opt) {
                self.warn(
                    args.loc(),
                    format!("{} {opt} is ignored: {why}", args.cmd()),
                );
            }
        }
    }

    pub(super) fn command(&mut self, loc: &Location, tokens: &[String]) -> Result<()> {
        let name = tokens[0].as_str();
        let rest = &tokens[1..];
        match name {
            "ostreesetup" => self.ostreesetup(loc, rest),
            "zerombr" => {
                Args::parse(loc, name, rest, &[])?.no_positional()?;
                self.once("zerombr", loc);
                self.ks.zerombr = Some(loc.clone());
                Ok(())
            }
            "clearpart" => self.clearpart(loc, rest),
            "ignoredisk" => self.ignoredisk(loc, rest),
            "autopart" => self.autopart(loc, rest),
            "part" | "partition" => self.part(loc, name, rest),
            "bootloader" => self.bootloader(loc, rest),
            "network" => self.network(loc, rest),
            "rootpw" => self.rootpw(loc, rest),
            "user" => self.user(loc, rest),
            "sshkey" => self.sshkey(loc, rest),
            "services" => self.services(loc, rest),
            "timezone" => self.timezone(loc, rest),
            "lang" => self.lang(loc, rest),
            "keyboard" => self.keyboard(loc, rest),
            "reboot" | "poweroff" | "halt" | "shutdown" => self.reboot(loc, name, rest),
            "text" | "cmdline" | "graphical" | "skipx" | "eula" | "firstboot" => {
                self.no_effect(loc, name, rest)
            }
            "selinux" => self.selinux(loc, rest),
            "firewall" => self.firewall(loc, rest),
            _ => match refused_command(name) {
                Some(why) => bail!("{loc}: `{name}` is not supported: {why}"),
                None => bail!("{loc}: unknown kickstart command `{name}`"),
            },
        }
    }

    /// Standard Anaconda commands that have nothing to do on a slipway host: checked, then
    /// tolerated with a warning.
    fn no_effect(&mut self, loc: &Location, name: &str, rest: &[String]) -> Result<()> {
        const INTERACTIVE: &[Opt] = &[flag("--non-interactive")];
        const EULA: &[Opt] = &[flag("--agreed")];
        const FIRSTBOOT: &[Opt] = &[
            flag("--enable"),
            alias("--enabled", "--enable", Takes::Nothing),
            flag("--reconfig"),
            flag("--disable"),
            alias("--disabled", "--disable", Takes::Nothing),
        ];
        let (spec, why) = match name {
            "text" | "cmdline" | "graphical" => (
                INTERACTIVE,
                "slipway's installer and image builder never ask anything",
            ),
            "skipx" => (&[][..], "slipway configures no X server"),
            "eula" => (EULA, "Debian has no license agreement to accept"),
            _ => (
                FIRSTBOOT,
                "Debian has no Initial Setup to run on first boot",
            ),
        };
        let args = Args::parse(loc, name, rest, spec)?;
        args.no_positional()?;
        if name == "firstboot" {
            let on = args.flag("--enable") || args.flag("--reconfig");
            match (on, args.flag("--disable")) {
                (true, true) => {
                    bail!("{loc}: firstboot: --enable and --disable cannot be combined")
                }
                (false, false) => bail!("{loc}: firstboot requires --enable or --disable"),
                _ => {}
            }
        }
        self.warn(loc, format!("`{name}` has no effect: {why}"));
        Ok(())
    }

    /// `selinux`: slipway hosts run without SELinux, which `--disabled` and `--permissive`
    /// (nothing enforced) describe; `--enforcing` (the default) cannot be honoured.
    fn selinux(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        const OPTS: &[Opt] = &[
            flag("--enforcing"),
            flag("--permissive"),
            flag("--disabled"),
        ];
        let args = Args::parse(loc, "selinux", rest, OPTS)?;
        args.no_positional()?;
        if !(args.flag("--disabled") || args.flag("--permissive")) || args.flag("--enforcing") {
            bail!(
                "{loc}: selinux --enforcing is not supported: slipway hosts have no SELinux policy (use `selinux --disabled` or remove the line)"
            );
        }
        self.once("selinux", loc);
        self.warn(
            loc,
            "`selinux` has no effect: slipway hosts run without SELinux",
        );
        Ok(())
    }

    /// `firewall`: slipway configures none, which only `--disabled` describes.
    fn firewall(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        match rest {
            [only] if only == "--disabled" || only == "--disable" => {
                self.once("firewall", loc);
                self.warn(
                    loc,
                    "`firewall --disabled` has no effect: slipway configures no firewall",
                );
                Ok(())
            }
            _ => bail!(
                "{loc}: firewall is not supported: slipway configures no firewall (put one into the commit, or use `firewall --disabled`)"
            ),
        }
    }

    fn ostreesetup(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        const OPTS: &[Opt] = &[
            value("--osname"),
            value("--remote"),
            value("--url"),
            value("--ref"),
            flag("--nogpg"),
        ];
        let args = Args::parse(loc, "ostreesetup", rest, OPTS)?;
        args.no_positional()?;
        let osname = args.required("--osname")?;
        if osname.contains(['/', ' ', '\t']) {
            return Err(args.bad("--osname", osname, "must not contain `/` or spaces"));
        }
        let remote = args.text("--remote")?.unwrap_or(osname);
        if remote.contains([' ', '\t']) {
            return Err(args.bad("--remote", remote, "must not contain spaces"));
        }
        let url = args.required("--url")?;
        check_ostree_url(url).map_err(|why| args.bad("--url", url, why))?;
        let ostree_ref = args.required("--ref")?;
        if ostree_ref.contains(char::is_whitespace) {
            return Err(args.bad("--ref", ostree_ref, "must not contain spaces"));
        }
        self.once("ostreesetup", loc);
        self.ks.ostreesetup = Some(OstreeSetup {
            osname: osname.to_string(),
            remote: remote.to_string(),
            url: url.to_string(),
            ostree_ref: ostree_ref.to_string(),
            nogpg: args.flag("--nogpg"),
            at: loc.clone(),
        });
        Ok(())
    }

    fn clearpart(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        const OPTS: &[Opt] = &[
            flag("--all"),
            flag("--linux"),
            flag("--none"),
            flag("--initlabel"),
            value("--drives"),
            value("--list"),
            value("--disklabel"),
        ];
        let args = Args::parse(loc, "clearpart", rest, OPTS)?;
        args.no_positional()?;
        const WHOLE: &str = "slipway installs onto whole disks and keeps none of their partitions";
        for keep in ["--linux", "--none", "--list"] {
            args.refuse(keep, WHOLE)?;
        }
        if let Some(label) = args.text("--disklabel")?
            && !label.eq_ignore_ascii_case("gpt")
        {
            return Err(args.bad("--disklabel", label, "is not supported: slipway writes GPT"));
        }
        self.once("clearpart", loc);
        self.ks.clearpart = Some(ClearPart {
            all: args.flag("--all"),
            initlabel: args.flag("--initlabel"),
            drives: args.list("--drives"),
            at: loc.clone(),
        });
        Ok(())
    }

    fn ignoredisk(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        const OPTS: &[Opt] = &[
            value("--only-use"),
            alias("--onlyuse", "--only-use", Takes::Value),
            value("--drives"),
        ];
        let args = Args::parse(loc, "ignoredisk", rest, OPTS)?;
        args.no_positional()?;
        let only_use = args.list("--only-use");
        let drives = args.list("--drives");
        match (only_use.is_empty(), drives.is_empty()) {
            (true, true) => bail!("{loc}: ignoredisk requires --only-use or --drives"),
            (false, false) => {
                bail!("{loc}: ignoredisk: --only-use and --drives cannot be combined")
            }
            _ => {}
        }
        self.once("ignoredisk", loc);
        self.ks.ignoredisk = Some(IgnoreDisk {
            only_use,
            drives,
            at: loc.clone(),
        });
        Ok(())
    }

    fn autopart(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        const OPTS: &[Opt] = &[
            value("--type"),
            flag("--nolvm"),
            value("--fstype"),
            flag("--nohome"),
            flag("--noboot"),
            flag("--noswap"),
            flag("--encrypted"),
        ];
        let args = Args::parse(loc, "autopart", rest, OPTS)?;
        args.no_positional()?;
        if let Some(part) = &self.first_part {
            bail!("{loc}: `autopart` cannot be combined with `part` (first `part` at {part})");
        }
        let mut part_type = match args.text("--type")? {
            None => None,
            Some("plain") => Some(AutoPartType::Plain),
            Some("lvm") => Some(AutoPartType::Lvm),
            Some("thinp") => Some(AutoPartType::Thinp),
            Some("btrfs") => Some(AutoPartType::Btrfs),
            Some(other) => {
                return Err(args.bad("--type", other, "expected plain, lvm, thinp or btrfs"));
            }
        };
        if args.flag("--nolvm") {
            if part_type.is_some_and(|t| t != AutoPartType::Plain) {
                bail!("{loc}: autopart: --nolvm contradicts --type");
            }
            part_type = Some(AutoPartType::Plain);
        }
        self.once("autopart", loc);
        self.ks.autopart = Some(AutoPart {
            part_type,
            fstype: args.text("--fstype")?.map(str::to_string),
            nohome: args.flag("--nohome"),
            noboot: args.flag("--noboot"),
            noswap: args.flag("--noswap"),
            encrypted: args.flag("--encrypted"),
            at: loc.clone(),
        });
        Ok(())
    }

    fn part(&mut self, loc: &Location, name: &str, rest: &[String]) -> Result<()> {
        const OPTS: &[Opt] = &[
            value("--size"),
            flag("--grow"),
            value("--maxsize"),
            value("--fstype"),
            value("--label"),
            value("--ondisk"),
            alias("--ondrive", "--ondisk", Takes::Value),
            flag("--asprimary"),
            value("--fsoptions"),
        ];
        let args = Args::parse(loc, name, rest, OPTS)?;
        let mountpoint = args.one_positional("a mount point (/path, swap or biosboot)")?;
        let known_member = ["pv.", "raid.", "btrfs."]
            .iter()
            .any(|prefix| mountpoint.starts_with(prefix));
        if !(mountpoint.starts_with('/')
            || matches!(mountpoint, "swap" | "biosboot")
            || known_member)
        {
            bail!(
                "{loc}: {name}: `{mountpoint}` is not a mount point (expected /path, swap or biosboot)"
            );
        }
        if let Some(auto) = &self.ks.autopart {
            bail!(
                "{loc}: `{name}` cannot be combined with `autopart` (given at {})",
                auto.at
            );
        }
        let size = args.mebibytes("--size")?;
        let maxsize = args.mebibytes("--maxsize")?;
        self.ignored_options(
            &args,
            &[(
                "--asprimary",
                "slipway writes GPT, where every partition is primary",
            )],
        );
        self.first_part.get_or_insert_with(|| loc.clone());
        self.ks.parts.push(Part {
            mountpoint: mountpoint.to_string(),
            size,
            grow: args.flag("--grow"),
            maxsize,
            fstype: args.text("--fstype")?.map(str::to_string),
            label: args.text("--label")?.map(str::to_string),
            ondisk: args.text("--ondisk")?.map(str::to_string),
            fsoptions: args.text("--fsoptions")?.map(str::to_string),
            at: loc.clone(),
        });
        Ok(())
    }

    fn bootloader(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        const OPTS: &[Opt] = &[
            value("--append"),
            value("--location"),
            value("--timeout"),
            value("--boot-drive"),
            value("--driveorder"),
            value("--password"),
            value("--md5pass"),
            flag("--iscrypted"),
            flag("--disabled"),
            flag("--leavebootorder"),
        ];
        let args = Args::parse(loc, "bootloader", rest, OPTS)?;
        args.no_positional()?;
        const PASSWORD: &str =
            "slipway sets no GRUB password, and the boot menu would be left unprotected";
        for opt in ["--password", "--md5pass", "--iscrypted"] {
            args.refuse(opt, PASSWORD)?;
        }
        args.refuse(
            "--disabled",
            "an OSTree host boots through the menu of its deployments (use --location=none to leave the disk's boot code alone)",
        )?;
        self.ignored_options(
            &args,
            &[
                ("--driveorder", "use --boot-drive to name the disk"),
                (
                    "--leavebootorder",
                    "slipway never changes the firmware's boot order",
                ),
            ],
        );
        let append = match args.value("--append") {
            Some(text) => shlex::split(text).ok_or_else(|| {
                args.bad(
                    "--append",
                    text,
                    "has unbalanced quotes or a trailing backslash",
                )
            })?,
            None => Vec::new(),
        };
        let location = match args.text("--location")? {
            None => None,
            Some("mbr") => Some(BootLocation::Mbr),
            Some("partition" | "boot") => Some(BootLocation::Partition),
            Some("none") => Some(BootLocation::None),
            Some(other) => {
                return Err(args.bad("--location", other, "expected mbr, partition or none"));
            }
        };
        let timeout = args.number::<u32>("--timeout", "a whole number of seconds")?;
        self.once("bootloader", loc);
        self.ks.bootloader = Some(Bootloader {
            append,
            location,
            timeout,
            boot_drive: args.text("--boot-drive")?.map(str::to_string),
            at: loc.clone(),
        });
        Ok(())
    }

    fn network(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        const OPTS: &[Opt] = &[
            value("--bootproto"),
            value("--device"),
            value("--ip"),
            value("--netmask"),
            value("--gateway"),
            value("--nameserver"),
            value("--hostname"),
            value("--onboot"),
            flag("--activate"),
            flag("--no-activate"),
            value("--ipv6"),
            value("--ipv6gateway"),
            value("--mtu"),
            flag("--noipv4"),
            flag("--noipv6"),
            flag("--nodns"),
            flag("--nodefroute"),
        ];
        let args = Args::parse(loc, "network", rest, OPTS)?;
        args.no_positional()?;
        let v4 = NetworkV4::parse(&args, loc)?;
        let (ipv6, ipv6gateway) = network_v6(&args)?;
        let noipv4 = args.flag("--noipv4");
        let noipv6 = args.flag("--noipv6");
        v4.check_families(loc, noipv4, noipv6, ipv6.is_some() || ipv6gateway.is_some())?;
        let hostname = args.text("--hostname")?;
        if let Some(name) = hostname {
            check_hostname(name).map_err(|why| args.bad("--hostname", name, why))?;
        }
        let onboot = match args.text("--onboot")? {
            None => None,
            Some(v) => {
                Some(parse_bool(v).ok_or_else(|| args.bad("--onboot", v, "expected yes or no"))?)
            }
        };
        let activate = match (args.flag("--activate"), args.flag("--no-activate")) {
            (true, true) => {
                bail!("{loc}: network: --activate and --no-activate cannot be combined")
            }
            (true, false) => Some(true),
            (false, true) => Some(false),
            (false, false) => None,
        };
        let device = args.text("--device")?;
        if let Some(dev) = device
            && let Some(prev) = self
                .ks
                .network
                .iter()
                .find(|n| n.device.as_deref() == Some(dev))
        {
            let prev = prev.at.clone();
            self.warn(
                loc,
                format!("network --device={dev} given more than once (previously at {prev})"),
            );
        }
        self.ks.network.push(Network {
            bootproto: v4.bootproto,
            device: device.map(str::to_string),
            ip: v4.ip.map(str::to_string),
            netmask: v4.netmask.map(str::to_string),
            gateway: v4.gateway.map(str::to_string),
            nameservers: v4.nameservers,
            hostname: hostname.map(str::to_string),
            onboot,
            activate,
            ipv6,
            ipv6gateway,
            mtu: args.number::<u32>("--mtu", "a whole number of bytes")?,
            noipv4,
            noipv6,
            nodns: args.flag("--nodns"),
            nodefroute: args.flag("--nodefroute"),
            at: loc.clone(),
        });
        Ok(())
    }

    fn rootpw(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        const OPTS: &[Opt] = &[
            flag("--iscrypted"),
            flag("--plaintext"),
            flag("--lock"),
            flag("--allow-ssh"),
        ];
        let args = Args::parse(loc, "rootpw", rest, OPTS)?;
        let iscrypted = args.crypted_or_plain()?;
        let lock = args.flag("--lock");
        let password = match args.positional.as_slice() {
            [] if lock => None,
            [] => bail!("{loc}: rootpw requires a password (or --lock)"),
            [pw] => Some(pw.clone()),
            more => bail!(
                "{loc}: rootpw takes one password argument, got {} (quote a password with spaces)",
                more.len()
            ),
        };
        self.once("rootpw", loc);
        self.ks.rootpw = Some(RootPw {
            password,
            iscrypted,
            lock,
            allow_ssh: args.flag("--allow-ssh"),
        });
        Ok(())
    }

    fn user(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        const OPTS: &[Opt] = &[
            value("--name"),
            value("--groups"),
            value("--password"),
            flag("--iscrypted"),
            flag("--plaintext"),
            value("--homedir"),
            value("--shell"),
            value("--uid"),
            value("--gid"),
            value("--gecos"),
            flag("--lock"),
        ];
        let args = Args::parse(loc, "user", rest, OPTS)?;
        args.no_positional()?;
        let name = args.required("--name")?;
        check_user_name(name).map_err(|why| args.bad("--name", name, why))?;
        if let Some(prev) = self.users_at.get(name) {
            bail!("{loc}: user `{name}` is already defined at {prev}");
        }
        let iscrypted = args.crypted_or_plain()?;
        let user = User {
            name: name.to_string(),
            groups: args.list("--groups"),
            password: args.value("--password").map(str::to_string),
            iscrypted,
            homedir: args.text("--homedir")?.map(str::to_string),
            shell: args.text("--shell")?.map(str::to_string),
            uid: args.number::<u32>("--uid", "a numeric user id")?,
            gid: args.number::<u32>("--gid", "a numeric group id")?,
            gecos: args.value("--gecos").map(str::to_string),
            lock: args.flag("--lock"),
            at: loc.clone(),
        };
        self.users_at.insert(name.to_string(), loc.clone());
        self.ks.users.push(user);
        Ok(())
    }

    fn sshkey(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        let args = Args::parse(loc, "sshkey", rest, &[value("--username")])?;
        let username = args.required("--username")?;
        let key = match args.positional.as_slice() {
            [key] => key,
            [] => bail!("{loc}: sshkey requires the public key as an argument"),
            more => bail!(
                "{loc}: sshkey takes exactly one argument, the whole public key in quotes (got {} words)",
                more.len()
            ),
        };
        if key.split_whitespace().count() < 2 {
            bail!(
                "{loc}: sshkey: `{key}` does not look like an OpenSSH public key (`TYPE BASE64 [COMMENT]`)"
            );
        }
        self.ks.sshkeys.push(SshKey {
            username: username.to_string(),
            key: key.clone(),
            at: loc.clone(),
        });
        Ok(())
    }

    fn services(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        let args = Args::parse(
            loc,
            "services",
            rest,
            &[value("--enabled"), value("--disabled")],
        )?;
        args.no_positional()?;
        let enabled = args.list("--enabled");
        let disabled = args.list("--disabled");
        if enabled.is_empty() && disabled.is_empty() {
            bail!("{loc}: services requires --enabled or --disabled");
        }
        for (new, all) in [
            (enabled, &mut self.ks.services.enabled),
            (disabled, &mut self.ks.services.disabled),
        ] {
            for unit in new {
                if !all.contains(&unit) {
                    all.push(unit);
                }
            }
        }
        Ok(())
    }

    fn timezone(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        const OPTS: &[Opt] = &[
            flag("--utc"),
            alias("--isUtc", "--utc", Takes::Nothing),
            flag("--nontp"),
            value("--ntpservers"),
        ];
        let args = Args::parse(loc, "timezone", rest, OPTS)?;
        let name = args.one_positional("a time zone such as Etc/UTC")?;
        if name.starts_with('/') || name.split('/').any(|c| c.is_empty() || c == "..") {
            return Err(anyhow!("{loc}: timezone: `{name}` is not a time zone name"));
        }
        let ntpservers = args.list("--ntpservers");
        let nontp = args.flag("--nontp");
        if nontp && !ntpservers.is_empty() {
            bail!("{loc}: timezone: --nontp and --ntpservers cannot be combined");
        }
        let utc = args.flag("--utc");
        if !utc {
            self.warn(
                loc,
                "timezone without --utc asks for a hardware clock in local time; slipway keeps it in UTC (add --utc)",
            );
        }
        self.once("timezone", loc);
        self.ks.timezone = Some(Timezone {
            name: name.to_string(),
            utc,
            nontp,
            ntpservers,
            at: loc.clone(),
        });
        Ok(())
    }

    fn lang(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        let args = Args::parse(loc, "lang", rest, &[value("--addsupport")])?;
        let lang = args.one_positional("a locale such as en_US.UTF-8")?;
        if !is_word(lang, "_.@-") {
            bail!("{loc}: lang: `{lang}` is not a locale name (such as en_US.UTF-8)");
        }
        self.ignored_options(
            &args,
            &[(
                "--addsupport",
                "the locales a host has come from its commit",
            )],
        );
        self.once("lang", loc);
        self.ks.lang = Some(lang.to_string());
        Ok(())
    }

    fn keyboard(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        const OPTS: &[Opt] = &[value("--vckeymap"), value("--xlayouts"), value("--switch")];
        let args = Args::parse(loc, "keyboard", rest, OPTS)?;
        if args.positional.len() > 1 {
            bail!("{loc}: keyboard takes at most one layout argument");
        }
        let xlayouts = args
            .list("--xlayouts")
            .iter()
            .map(|l| parse_xlayout(l).map_err(|why| args.bad("--xlayouts", l, why)))
            .collect::<Result<Vec<_>>>()?;
        let keymap = args
            .positional
            .first()
            .map(String::as_str)
            .or(args.text("--vckeymap")?)
            .map(str::to_string)
            .or_else(|| xlayouts.first().map(|x| x.layout.clone()));
        let Some(keymap) = keymap else {
            bail!("{loc}: keyboard requires a layout (e.g. `keyboard us` or --vckeymap=us)");
        };
        if !is_word(&keymap, "_.-") {
            bail!("{loc}: keyboard: `{keymap}` is not a keymap name");
        }
        let switch = args.list("--switch");
        for option in &switch {
            if !is_word(option, "_:-") {
                return Err(args.bad("--switch", option, "is not an XKB option"));
            }
        }
        self.once("keyboard", loc);
        self.ks.keyboard = Some(Keyboard {
            keymap,
            xlayouts,
            switch,
        });
        Ok(())
    }

    fn reboot(&mut self, loc: &Location, name: &str, rest: &[String]) -> Result<()> {
        let args = Args::parse(loc, name, rest, &[flag("--eject"), flag("--kexec")])?;
        args.no_positional()?;
        self.ignored_options(
            &args,
            &[
                ("--eject", "a network installation has no media to eject"),
                ("--kexec", "slipway restarts through the firmware"),
            ],
        );
        let action = match name {
            "reboot" => PowerAction::Reboot,
            "halt" => PowerAction::Halt,
            _ => PowerAction::Poweroff,
        };
        self.once("reboot/poweroff/halt/shutdown", loc);
        self.ks.reboot = Some(RebootAction {
            action,
            at: loc.clone(),
        });
        Ok(())
    }
}

/// `network`'s IPv4 options (and the name servers), each checked.
struct NetworkV4<'a> {
    bootproto: Option<BootProto>,
    ip: Option<&'a str>,
    netmask: Option<&'a str>,
    gateway: Option<&'a str>,
    nameservers: Vec<String>,
}

impl<'a> NetworkV4<'a> {
    fn parse(args: &'a Args, loc: &Location) -> Result<NetworkV4<'a>> {
        let bootproto = match args.text("--bootproto")? {
            None => None,
            Some("dhcp" | "bootp") => Some(BootProto::Dhcp),
            Some("static") => Some(BootProto::Static),
            Some(other) => {
                return Err(args.bad("--bootproto", other, "expected dhcp or static"));
            }
        };
        let ip = args.text("--ip")?;
        if let Some(ip) = ip {
            ip.parse::<IpAddr>()
                .map_err(|_| args.bad("--ip", ip, "is not an IP address"))?;
        }
        if bootproto == Some(BootProto::Static) && ip.is_none() {
            bail!("{loc}: network --bootproto=static requires --ip");
        }
        let netmask = args.text("--netmask")?;
        if let Some(mask) = netmask {
            let prefix_ok = mask.parse::<u8>().is_ok_and(|p| p <= 32);
            if !prefix_ok && mask.parse::<Ipv4Addr>().is_err() {
                return Err(args.bad(
                    "--netmask",
                    mask,
                    "expected a dotted netmask or a prefix length",
                ));
            }
        }
        let gateway = args.text("--gateway")?;
        if let Some(gw) = gateway {
            gw.parse::<IpAddr>()
                .map_err(|_| args.bad("--gateway", gw, "is not an IP address"))?;
        }
        let nameservers = args.list("--nameserver");
        for ns in &nameservers {
            ns.parse::<IpAddr>()
                .map_err(|_| args.bad("--nameserver", ns, "is not an IP address"))?;
        }
        Ok(NetworkV4 {
            bootproto,
            ip,
            netmask,
            gateway,
            nameservers,
        })
    }

    /// `--noipv4`/`--noipv6` against each other and against the addresses given.
    fn check_families(&self, loc: &Location, noipv4: bool, noipv6: bool, v6: bool) -> Result<()> {
        if noipv4 && noipv6 {
            bail!("{loc}: network: --noipv4 and --noipv6 cannot be combined");
        }
        if noipv6 && v6 {
            bail!("{loc}: network: --noipv6 cannot be combined with --ipv6 or --ipv6gateway");
        }
        if noipv4 {
            let v4 = |a: Option<&str>| a.and_then(|a| a.parse::<Ipv4Addr>().ok()).is_some();
            if self.bootproto == Some(BootProto::Static) || v4(self.ip) || v4(self.gateway) {
                bail!(
                    "{loc}: network: --noipv4 cannot be combined with an IPv4 --bootproto=static, --ip or --gateway (use --ipv6=ADDR/PREFIX)"
                );
            }
        }
        Ok(())
    }
}

/// `network --ipv6` and `--ipv6gateway`, checked.
fn network_v6(args: &Args) -> Result<(Option<Ipv6>, Option<Ipv6Addr>)> {
    let ipv6 = match args.text("--ipv6")? {
        None => None,
        Some(v) => Some(parse_ipv6(v).map_err(|why| args.bad("--ipv6", v, why))?),
    };
    let ipv6gateway = match args.text("--ipv6gateway")? {
        None => None,
        Some(gw) => Some(
            gw.parse::<Ipv6Addr>()
                .map_err(|_| args.bad("--ipv6gateway", gw, "is not an IPv6 address"))?,
        ),
    };
    Ok((ipv6, ipv6gateway))
}

fn check_ostree_url(url: &str) -> std::result::Result<(), &'static str> {
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err("is not a URL (expected file:, http: or https:)");
    };
    match scheme.to_ascii_lowercase().as_str() {
        "file" if !rest.is_empty() => Ok(()),
        "http" | "https" if rest.len() > 2 && rest.starts_with("//") => Ok(()),
        "file" | "http" | "https" => Err("has no path or host"),
        _ => Err("uses an unsupported scheme (only file:, http: and https: are supported)"),
    }
}

fn check_hostname(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters long");
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err("is not a valid host name (letters, digits and `-`, in dot-separated labels)")
    }
}

fn check_user_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name.len() > 32 {
        return Err("must be 1 to 32 characters long");
    }
    if name.starts_with('-')
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | '/' | ','))
    {
        return Err("is not a valid user name");
    }
    Ok(())
}

/// Anaconda commands slipway refuses outright, with the reason.
fn refused_command(name: &str) -> Option<&'static str> {
    Some(match name {
        "logvol" | "volgroup" | "raid" | "btrfs" | "reqpart" | "mount" => {
            "slipway installs plain partitions (use `part` lines or `autopart --type=plain`)"
        }
        "url" | "liveimg" | "install" | "upgrade" | "repo" | "cdrom" | "harddrive" | "nfs"
        | "module" | "ostreecontainer" => {
            "the software comes from the OSTree commit named by `ostreesetup`"
        }
        "timesource" => "use `timezone --ntpservers=` or `timezone --nontp`",
        "group" => "groups come from the commit (create them in the compose)",
        _ => return None,
    })
}

/// `--ipv6=`: `auto`, `dhcp` or `ADDR[/PREFIX]`.
fn parse_ipv6(value: &str) -> std::result::Result<Ipv6, &'static str> {
    const EXPECTED: &str = "expected auto, dhcp or an IPv6 address ADDR[/PREFIX]";
    match value {
        "auto" => return Ok(Ipv6::Auto),
        "dhcp" => return Ok(Ipv6::Dhcp),
        _ => {}
    }
    let (addr, prefix) = match value.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (value, None),
    };
    let address = addr.parse::<Ipv6Addr>().map_err(|_| EXPECTED)?;
    let prefix = match prefix {
        None => 64,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if (1..=128).contains(&n) => n,
            _ => return Err("has a prefix length that is not 1 to 128"),
        },
    };
    Ok(Ipv6::Static { address, prefix })
}

/// `--xlayouts` entry: `LAYOUT` or `LAYOUT (VARIANT)`.
fn parse_xlayout(entry: &str) -> std::result::Result<XLayout, &'static str> {
    let (layout, variant) = match entry.split_once('(') {
        Some((layout, rest)) => {
            let Some(variant) = rest.strip_suffix(')') else {
                return Err("expected LAYOUT or LAYOUT (VARIANT)");
            };
            (layout.trim(), Some(variant.trim()))
        }
        None => (entry.trim(), None),
    };
    let ok = |w: &str| is_word(w, "_-");
    if !ok(layout) || !variant.is_none_or(ok) {
        return Err("is not an X layout (LAYOUT or LAYOUT (VARIANT))");
    }
    Ok(XLayout {
        layout: layout.to_string(),
        variant: variant.map(str::to_string),
    })
}

/// Non-empty, ASCII letters and digits plus `extra`: safe as a value in a `KEY=value` file.
fn is_word(s: &str, extra: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" | "1" => Some(true),
        "no" | "off" | "false" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
