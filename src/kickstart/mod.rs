//! Kickstart parsing: the one parser shared by `slipway image --kickstart` (the disk-image
//! builder) and the PXE installer.
//!
//! This module owns reading Anaconda-style kickstart files in their `ostreesetup` flavour
//! (pykickstart syntax and semantics where they make sense for an OSTree-based Debian host)
//! into a plain, serialisable [`Kickstart`] value, plus the checks each consumer needs:
//! [`Kickstart::validate_for_install`], [`Kickstart::validate_for_image`] and
//! [`Kickstart::image_warnings`]. It does not apply anything: partitioning, deploying and
//! configuring the target are the consumers' business.
//!
//! # Syntax
//!
//! * Each line is split shell-style (the `shlex` crate), so quoted values such as
//!   `--append="console=ttyS0 quiet"` or a whole quoted ssh public key are one word.
//!   A word starting with `#` starts a comment that runs to the end of the line.
//! * Options take both the `--opt=value` and the `--opt value` form. A repeated option keeps
//!   its last value, except the list options noted below, which accumulate.
//! * Sections `%pre` and `%post` run to a line whose first word is `%end`; their body is kept
//!   verbatim. `%packages` is rejected (software comes from the OSTree commit), as are
//!   `%addon`, `%anaconda`, `%onerror`, `%traceback` and any unknown `%section`.
//! * `%include PATH` (and `%ksappend PATH`) splice in another file, resolved relative to the
//!   including file's directory; include cycles are an error.
//! * Every error message starts with `SOURCE:LINE: ` (1-based, pointing at the offending line
//!   of the file it is in, included files included).
//! * A command that may appear only once and is given again keeps the last occurrence and
//!   records a warning in [`Kickstart::warnings`], as pykickstart does.
//!
//! # Supported commands
//!
//! | command | options |
//! | --- | --- |
//! | `ostreesetup` | `--osname` (required), `--remote` (default: osname), `--url` (required; `file:`, `http:`, `https:`), `--ref` (required), `--nogpg` |
//! | `zerombr` | |
//! | `clearpart` | `--all`, `--linux`, `--none`, `--initlabel`, `--drives=a,b`, `--list=a,b`, `--disklabel=` |
//! | `ignoredisk` | `--only-use=a,b` or `--drives=a,b` (`--onlyuse` alias) |
//! | `autopart` | `--type=plain\|lvm\|thinp\|btrfs`, `--nolvm`, `--fstype=`, `--nohome`, `--noboot`, `--noswap`, `--encrypted` |
//! | `part` / `partition` | `MOUNTPOINT` (`/path`, `swap`, `biosboot`), `--size=MiB`, `--grow`, `--maxsize=MiB`, `--fstype=`, `--label=`, `--ondisk=` (`--ondrive`), `--asprimary`, `--fsoptions=` |
//! | `bootloader` | `--append="..."`, `--location=mbr\|partition\|none` (`boot` = partition), `--timeout=N`, `--boot-drive=`, `--driveorder=a,b`, `--password=`, `--iscrypted`, `--md5pass=`, `--disabled`, `--leavebootorder` |
//! | `network` | `--bootproto=dhcp\|static` (`bootp` = dhcp), `--device=`, `--ip=`, `--netmask=`, `--gateway=`, `--nameserver=a,b` (accumulates), `--hostname=`, `--onboot=yes\|no`, `--activate`, `--no-activate`, `--ipv6=`, `--ipv6gateway=`, `--mtu=`, `--noipv4`, `--noipv6`, `--nodns`, `--nodefroute` |
//! | `rootpw` | `[--iscrypted\|--plaintext] [--lock] [--allow-ssh] [PASSWORD]` (password optional with `--lock`) |
//! | `user` | `--name=` (required), `--groups=a,b`, `--password=`, `--iscrypted`, `--plaintext`, `--homedir=`, `--shell=`, `--uid=`, `--gid=`, `--gecos=`, `--lock` |
//! | `sshkey` | `--username=` (required) `"KEY"` (the whole key as one quoted argument) |
//! | `services` | `--enabled=a,b`, `--disabled=c` (several lines accumulate) |
//! | `timezone` | `[--utc\|--isUtc] [--nontp] [--ntpservers=a,b] Area/City` |
//! | `lang` | `LANG` (`--addsupport` accepted and ignored with a warning) |
//! | `keyboard` | `LAYOUT` or `--vckeymap=`, `--xlayouts=a,b`, `--switch=` |
//! | `reboot`, `poweroff`, `halt`, `shutdown` | `--eject`, `--kexec` (last one wins) |
//! | `text`, `cmdline`, `graphical` | `--non-interactive` |
//! | `firstboot` | `--enable`/`--enabled`, `--disable`/`--disabled`, `--reconfig` |
//! | `selinux`, `firewall` | anything: arguments are stored raw and have no effect on Debian |
//! | `%pre`, `%post` | `--interpreter=PATH`, `--erroronfail`, `--log=PATH` (`--logfile`), `--nochroot` (`%post` only) |
//! | `%include`, `%ksappend` | `PATH` |

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Result, anyhow, bail};
use serde::Serialize;

/// Filesystem types `part --fstype` may use for an install.
pub const SUPPORTED_PART_FSTYPES: &[&str] = &["ext4", "xfs", "vfat", "efi", "biosboot", "swap"];
/// Filesystem types `autopart --fstype` may use for an install.
pub const SUPPORTED_AUTOPART_FSTYPES: &[&str] = &["ext4", "xfs"];
/// Filesystem used for a `part /path` line without `--fstype`.
pub const DEFAULT_FSTYPE: &str = "ext4";
/// Interpreter of a `%pre`/`%post` script without `--interpreter`.
pub const DEFAULT_INTERPRETER: &str = "/bin/sh";

/// Section keywords: inside a `%pre`/`%post` body one of these (instead of `%end`) means the
/// section was not closed.
const SECTION_KEYWORDS: &[&str] = &[
    "%pre",
    "%pre-install",
    "%post",
    "%packages",
    "%addon",
    "%anaconda",
    "%onerror",
    "%traceback",
];

/// Where something was written: file (or the name given to [`parse_str`]) and 1-based line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    pub source: String,
    pub line: usize,
}

impl Location {
    pub fn new(source: &str, line: usize) -> Self {
        Location {
            source: source.to_string(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

/// A parsed kickstart. Fields left `None`/empty/`false` were not given.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Kickstart {
    pub ostreesetup: Option<OstreeSetup>,
    pub zerombr: bool,
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
    pub lang: Option<String>,
    /// Console keymap: `keyboard X`, else `--vckeymap`, else the first `--xlayouts` entry.
    pub keyboard: Option<String>,
    pub reboot: Option<RebootAction>,
    /// `text` or `cmdline` was given (and not overridden by a later `graphical`).
    pub text_mode: bool,
    /// `graphical` was given last; harmless, slipway has no graphical installer.
    pub graphical: bool,
    /// `firstboot --enable` → `Some(true)`, `--disable` → `Some(false)`.
    pub firstboot: Option<bool>,
    /// Raw (shell-quoted) arguments of `selinux`; no effect on Debian.
    pub selinux: Option<String>,
    /// Raw (shell-quoted) arguments of `firewall`; no effect on Debian.
    pub firewall: Option<String>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClearPartMode {
    All,
    Linux,
    None,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClearPart {
    /// `--all`, `--linux` or `--none`; `None` when only `--list`/`--drives` were given.
    pub mode: Option<ClearPartMode>,
    pub initlabel: bool,
    pub drives: Vec<String>,
    pub list: Vec<String>,
    pub disklabel: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IgnoreDisk {
    /// `--only-use`: install only onto these disks.
    pub only_use: Vec<String>,
    /// `--drives`: never touch these disks.
    pub drives: Vec<String>,
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
    /// Accepted for compatibility; has no effect (slipway writes GPT).
    pub asprimary: bool,
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
    pub driveorder: Vec<String>,
    /// GRUB password (`--password`/`--md5pass`). Stored only: parsing it records a warning
    /// because slipway does not configure a GRUB password.
    pub password: Option<String>,
    pub iscrypted: bool,
    pub disabled: bool,
    pub leavebootorder: bool,
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
    /// `--activate` → `Some(true)`, `--no-activate` → `Some(false)`.
    pub activate: Option<bool>,
    pub ipv6: Option<String>,
    pub ipv6gateway: Option<String>,
    pub mtu: Option<u32>,
    pub noipv4: bool,
    pub noipv6: bool,
    pub nodns: bool,
    pub nodefroute: bool,
    pub at: Location,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RootPw {
    /// `None` only together with `lock`.
    pub password: Option<String>,
    /// The password is a crypt(3) hash (`--iscrypted`); otherwise plain text.
    pub iscrypted: bool,
    pub lock: bool,
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
    /// Hardware clock in UTC (`--utc`/`--isUtc`).
    pub utc: bool,
    pub nontp: bool,
    pub ntpservers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    Reboot,
    Poweroff,
    Halt,
    Shutdown,
}

/// What to do once the installation is finished.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebootAction {
    pub action: PowerAction,
    pub eject: bool,
    pub kexec: bool,
}

/// A `%pre` or `%post` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Script {
    /// `--interpreter`, default [`DEFAULT_INTERPRETER`].
    pub interpreter: String,
    pub erroronfail: bool,
    /// `%post --nochroot`: run outside the target root.
    pub nochroot: bool,
    pub log: Option<String>,
    /// The lines between the header and `%end`, verbatim, each ending in `\n`.
    pub body: String,
    /// Where the `%pre`/`%post` header line is; the body starts on the next line.
    pub at: Location,
}

/// Parse a kickstart file. `%include`s are resolved relative to the including file.
pub fn parse_file(path: &Path) -> Result<Kickstart> {
    let mut parser = Parser::default();
    parser.parse_path(path, None)?;
    Ok(parser.ks)
}

/// Parse kickstart text. `source` names it in messages (a path, `<stdin>`...); relative
/// `%include`s are resolved against the current directory.
pub fn parse_str(text: &str, source: &str) -> Result<Kickstart> {
    parse_str_with_base(text, source, Path::new("."))
}

/// Like [`parse_str`], resolving relative `%include`s against `base_dir`.
pub fn parse_str_with_base(text: &str, source: &str, base_dir: &Path) -> Result<Kickstart> {
    let mut parser = Parser::default();
    parser.parse_text(text, source, base_dir)?;
    Ok(parser.ks)
}

// ---------------------------------------------------------------------------------------------
// Parser

#[derive(Default)]
struct Parser {
    ks: Kickstart,
    /// Canonical paths of the files being read, outermost first, for cycle detection.
    stack: Vec<(PathBuf, String)>,
    /// Where each once-only command was last given.
    once: HashMap<&'static str, Location>,
    first_part: Option<Location>,
    users_at: HashMap<String, Location>,
}

impl Parser {
    fn parse_path(&mut self, path: &Path, from: Option<&Location>) -> Result<()> {
        let name = path.display().to_string();
        let what = |err: std::io::Error| match from {
            Some(loc) => anyhow!("{loc}: cannot include `{name}`: {err}"),
            None => anyhow!("cannot read kickstart `{name}`: {err}"),
        };
        let canonical = fs::canonicalize(path).map_err(what)?;
        if let Some(pos) = self.stack.iter().position(|(p, _)| *p == canonical) {
            let mut chain: Vec<&str> = self.stack[pos..].iter().map(|(_, n)| n.as_str()).collect();
            chain.push(&name);
            let loc = from.map(ToString::to_string).unwrap_or_default();
            bail!("{loc}: %include cycle: {}", chain.join(" -> "));
        }
        let text = fs::read_to_string(path).map_err(what)?;
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        self.stack.push((canonical, name.clone()));
        let result = self.parse_text(&text, &name, &base);
        self.stack.pop();
        result
    }

    fn parse_text(&mut self, text: &str, source: &str, base: &Path) -> Result<()> {
        let lines: Vec<&str> = text.lines().collect();
        let mut idx = 0;
        while idx < lines.len() {
            let loc = Location::new(source, idx + 1);
            let tokens = tokenize(lines[idx], &loc)?;
            idx += 1;
            let Some(first) = tokens.first() else {
                continue;
            };
            match first.as_str() {
                "%include" | "%ksappend" => self.include(&loc, &tokens, base)?,
                "%pre" | "%post" => idx = self.script(&loc, &tokens, &lines, idx)?,
                "%packages" => bail!(
                    "{loc}: %packages is not supported: software comes from the OSTree commit (ostreesetup)"
                ),
                "%addon" | "%anaconda" | "%onerror" | "%traceback" | "%pre-install" => {
                    bail!("{loc}: {first} sections are not supported by slipway")
                }
                "%end" => bail!("{loc}: %end without an open section"),
                section if section.starts_with('%') => {
                    bail!("{loc}: unknown kickstart section `{section}`")
                }
                _ => self.command(&loc, &tokens)?,
            }
        }
        Ok(())
    }

    fn include(&mut self, loc: &Location, tokens: &[String], base: &Path) -> Result<()> {
        let keyword = &tokens[0];
        let [_, target] = tokens else {
            bail!("{loc}: {keyword} takes exactly one argument, the file to include");
        };
        if target.contains("://") {
            bail!("{loc}: {keyword} `{target}`: only local files can be included");
        }
        let path = base.join(target);
        self.parse_path(&path, Some(loc))
    }

    /// Read a `%pre`/`%post` section whose header is at `loc`; `idx` is the index of the line
    /// after the header. Returns the index of the line after `%end`.
    fn script(
        &mut self,
        loc: &Location,
        tokens: &[String],
        lines: &[&str],
        mut idx: usize,
    ) -> Result<usize> {
        let kind = tokens[0].as_str();
        let post = kind == "%post";
        const PRE: &[Opt] = &[
            value("--interpreter"),
            flag("--erroronfail"),
            value("--log"),
            alias("--logfile", "--log", Takes::Value),
        ];
        const POST: &[Opt] = &[
            value("--interpreter"),
            flag("--erroronfail"),
            value("--log"),
            alias("--logfile", "--log", Takes::Value),
            flag("--nochroot"),
        ];
        let args = Args::parse(loc, kind, &tokens[1..], if post { POST } else { PRE })?;
        args.no_positional()?;
        let interpreter = match args.text("--interpreter")? {
            Some(path) if !path.starts_with('/') => {
                bail!("{loc}: {kind} --interpreter: `{path}` is not an absolute path")
            }
            Some(path) => path.to_string(),
            None => DEFAULT_INTERPRETER.to_string(),
        };
        let mut body = String::new();
        loop {
            let Some(line) = lines.get(idx) else {
                bail!("{loc}: {kind} section has no matching %end");
            };
            idx += 1;
            match line.split_whitespace().next() {
                Some("%end") => break,
                Some(word) if SECTION_KEYWORDS.contains(&word) => bail!(
                    "{loc}: {kind} section has no matching %end (line {idx} starts a new section `{word}`)"
                ),
                _ => {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
        let script = Script {
            interpreter,
            erroronfail: args.flag("--erroronfail"),
            nochroot: args.flag("--nochroot"),
            log: args.text("--log")?.map(str::to_string),
            body,
            at: loc.clone(),
        };
        if post {
            self.ks.post.push(script);
        } else {
            self.ks.pre.push(script);
        }
        Ok(idx)
    }

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

    fn command(&mut self, loc: &Location, tokens: &[String]) -> Result<()> {
        let name = tokens[0].as_str();
        let rest = &tokens[1..];
        match name {
            "ostreesetup" => self.ostreesetup(loc, rest),
            "zerombr" => {
                Args::parse(loc, name, rest, &[])?.no_positional()?;
                self.once("zerombr", loc);
                self.ks.zerombr = true;
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
            "text" | "cmdline" | "graphical" => {
                let args = Args::parse(loc, name, rest, &[flag("--non-interactive")])?;
                args.no_positional()?;
                self.once("text/cmdline/graphical", loc);
                self.ks.graphical = name == "graphical";
                self.ks.text_mode = !self.ks.graphical;
                Ok(())
            }
            "firstboot" => self.firstboot(loc, rest),
            "selinux" | "firewall" => {
                let raw = shlex::try_join(rest.iter().map(String::as_str))
                    .map_err(|e| anyhow!("{loc}: {name}: {e}"))?;
                if name == "selinux" {
                    self.once("selinux", loc);
                    self.ks.selinux = Some(raw);
                } else {
                    self.once("firewall", loc);
                    self.ks.firewall = Some(raw);
                }
                self.warn(
                    loc,
                    format!("`{name}` has no effect on Debian; stored only"),
                );
                Ok(())
            }
            _ => bail!("{loc}: unknown kickstart command `{name}`"),
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
        let modes: Vec<(&str, ClearPartMode)> = [
            ("--all", ClearPartMode::All),
            ("--linux", ClearPartMode::Linux),
            ("--none", ClearPartMode::None),
        ]
        .into_iter()
        .filter(|(opt, _)| args.flag(opt))
        .collect();
        if modes.len() > 1 {
            let names: Vec<&str> = modes.iter().map(|(opt, _)| *opt).collect();
            bail!(
                "{loc}: clearpart: {} cannot be combined",
                names.join(" and ")
            );
        }
        self.once("clearpart", loc);
        self.ks.clearpart = Some(ClearPart {
            mode: modes.first().map(|(_, mode)| *mode),
            initlabel: args.flag("--initlabel"),
            drives: args.list("--drives"),
            list: args.list("--list"),
            disklabel: args.text("--disklabel")?.map(str::to_string),
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
        self.ks.ignoredisk = Some(IgnoreDisk { only_use, drives });
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
        self.first_part.get_or_insert_with(|| loc.clone());
        self.ks.parts.push(Part {
            mountpoint: mountpoint.to_string(),
            size,
            grow: args.flag("--grow"),
            maxsize,
            fstype: args.text("--fstype")?.map(str::to_string),
            label: args.text("--label")?.map(str::to_string),
            ondisk: args.text("--ondisk")?.map(str::to_string),
            asprimary: args.flag("--asprimary"),
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
        let md5pass = args.text("--md5pass")?;
        let password = args.text("--password")?.or(md5pass).map(str::to_string);
        if password.is_some() {
            self.warn(
                loc,
                "bootloader --password is stored but not applied: slipway does not set a GRUB password",
            );
        }
        self.once("bootloader", loc);
        self.ks.bootloader = Some(Bootloader {
            append,
            location,
            timeout,
            boot_drive: args.text("--boot-drive")?.map(str::to_string),
            driveorder: args.list("--driveorder"),
            password,
            iscrypted: args.flag("--iscrypted") || md5pass.is_some(),
            disabled: args.flag("--disabled"),
            leavebootorder: args.flag("--leavebootorder"),
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
            bootproto,
            device: device.map(str::to_string),
            ip: ip.map(str::to_string),
            netmask: netmask.map(str::to_string),
            gateway: gateway.map(str::to_string),
            nameservers,
            hostname: hostname.map(str::to_string),
            onboot,
            activate,
            ipv6: args.text("--ipv6")?.map(str::to_string),
            ipv6gateway: args.text("--ipv6gateway")?.map(str::to_string),
            mtu: args.number::<u32>("--mtu", "a whole number of bytes")?,
            noipv4: args.flag("--noipv4"),
            noipv6: args.flag("--noipv6"),
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
        self.once("timezone", loc);
        self.ks.timezone = Some(Timezone {
            name: name.to_string(),
            utc: args.flag("--utc"),
            nontp,
            ntpservers,
        });
        Ok(())
    }

    fn lang(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        let args = Args::parse(loc, "lang", rest, &[value("--addsupport")])?;
        let lang = args.one_positional("a locale such as en_US.UTF-8")?;
        if args.value("--addsupport").is_some() {
            self.warn(loc, "lang --addsupport is ignored");
        }
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
        let keymap = args
            .positional
            .first()
            .map(String::as_str)
            .or(args.text("--vckeymap")?)
            .map(str::to_string)
            .or_else(|| args.list("--xlayouts").into_iter().next());
        let Some(keymap) = keymap else {
            bail!("{loc}: keyboard requires a layout (e.g. `keyboard us` or --vckeymap=us)");
        };
        self.once("keyboard", loc);
        self.ks.keyboard = Some(keymap);
        Ok(())
    }

    fn reboot(&mut self, loc: &Location, name: &str, rest: &[String]) -> Result<()> {
        let args = Args::parse(loc, name, rest, &[flag("--eject"), flag("--kexec")])?;
        args.no_positional()?;
        let action = match name {
            "reboot" => PowerAction::Reboot,
            "poweroff" => PowerAction::Poweroff,
            "halt" => PowerAction::Halt,
            _ => PowerAction::Shutdown,
        };
        self.once("reboot/poweroff/halt/shutdown", loc);
        self.ks.reboot = Some(RebootAction {
            action,
            eject: args.flag("--eject"),
            kexec: args.flag("--kexec"),
        });
        Ok(())
    }

    fn firstboot(&mut self, loc: &Location, rest: &[String]) -> Result<()> {
        const OPTS: &[Opt] = &[
            flag("--enable"),
            alias("--enabled", "--enable", Takes::Nothing),
            flag("--reconfig"),
            flag("--disable"),
            alias("--disabled", "--disable", Takes::Nothing),
        ];
        let args = Args::parse(loc, "firstboot", rest, OPTS)?;
        args.no_positional()?;
        let on = args.flag("--enable") || args.flag("--reconfig");
        let off = args.flag("--disable");
        let enabled = match (on, off) {
            (true, true) => bail!("{loc}: firstboot: --enable and --disable cannot be combined"),
            (false, false) => bail!("{loc}: firstboot requires --enable or --disable"),
            (on, _) => on,
        };
        self.once("firstboot", loc);
        self.ks.firstboot = Some(enabled);
        if enabled {
            self.warn(loc, "firstboot has no effect on Debian; stored only");
        }
        Ok(())
    }
}

/// Split one line shell-style; a word starting with `#` comments out the rest of the line.
fn tokenize(line: &str, loc: &Location) -> Result<Vec<String>> {
    let mut lexer = shlex::Shlex::new(line);
    let tokens: Vec<String> = lexer.by_ref().collect();
    if lexer.had_error {
        bail!("{loc}: unbalanced quotes or trailing backslash");
    }
    Ok(tokens)
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

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" | "1" => Some(true),
        "no" | "off" | "false" | "0" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Option parsing

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    Nothing,
    Value,
}

/// One accepted spelling of an option and the canonical name it is recorded under.
struct Opt {
    spelled: &'static str,
    canonical: &'static str,
    takes: Takes,
}

const fn flag(name: &'static str) -> Opt {
    alias(name, name, Takes::Nothing)
}

const fn value(name: &'static str) -> Opt {
    alias(name, name, Takes::Value)
}

const fn alias(spelled: &'static str, canonical: &'static str, takes: Takes) -> Opt {
    Opt {
        spelled,
        canonical,
        takes,
    }
}

/// The options and positional arguments of one command line.
struct Args<'a> {
    loc: &'a Location,
    cmd: &'a str,
    opts: Vec<(&'static str, Option<String>)>,
    positional: Vec<String>,
}

impl<'a> Args<'a> {
    fn parse(loc: &'a Location, cmd: &'a str, tokens: &[String], spec: &[Opt]) -> Result<Self> {
        let mut args = Args {
            loc,
            cmd,
            opts: Vec::new(),
            positional: Vec::new(),
        };
        let mut iter = tokens.iter();
        let mut only_positional = false;
        while let Some(token) = iter.next() {
            if only_positional || !token.starts_with("--") {
                args.positional.push(token.clone());
                continue;
            }
            if token == "--" {
                only_positional = true;
                continue;
            }
            let (name, inline) = match token.split_once('=') {
                Some((name, v)) => (name, Some(v.to_string())),
                None => (token.as_str(), None),
            };
            let Some(opt) = spec.iter().find(|o| o.spelled == name) else {
                bail!("{loc}: unknown option `{name}` for `{cmd}`");
            };
            let value = match (opt.takes, inline) {
                (Takes::Nothing, None) => None,
                (Takes::Nothing, Some(_)) => {
                    bail!("{loc}: {cmd}: option {name} takes no value")
                }
                (Takes::Value, Some(v)) => Some(v),
                (Takes::Value, None) => match iter.next() {
                    Some(v) if !v.starts_with("--") => Some(v.clone()),
                    _ => bail!("{loc}: {cmd}: option {name} requires a value"),
                },
            };
            args.opts.push((opt.canonical, value));
        }
        Ok(args)
    }

    fn flag(&self, canonical: &str) -> bool {
        self.opts.iter().any(|(name, _)| *name == canonical)
    }

    /// The last value given for an option, possibly empty.
    fn value(&self, canonical: &str) -> Option<&str> {
        self.opts
            .iter()
            .rev()
            .find(|(name, _)| *name == canonical)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The last value given for an option, which must not be empty.
    fn text(&self, canonical: &str) -> Result<Option<&str>> {
        match self.value(canonical) {
            Some("") => bail!(
                "{}: {}: option {canonical} requires a non-empty value",
                self.loc,
                self.cmd
            ),
            other => Ok(other),
        }
    }

    fn required(&self, canonical: &str) -> Result<&str> {
        self.text(canonical)?
            .ok_or_else(|| anyhow!("{}: {} requires {canonical}", self.loc, self.cmd))
    }

    /// Every value of a (possibly repeated) comma-separated list option, trimmed, no empties.
    fn list(&self, canonical: &str) -> Vec<String> {
        self.opts
            .iter()
            .filter(|(name, _)| *name == canonical)
            .filter_map(|(_, v)| v.as_deref())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn number<T: FromStr>(&self, canonical: &str, what: &str) -> Result<Option<T>> {
        match self.text(canonical)? {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| self.bad(canonical, v, &format!("is not {what}"))),
        }
    }

    fn mebibytes(&self, canonical: &str) -> Result<Option<u64>> {
        let size = self.number::<u64>(canonical, "a whole number of MiB")?;
        if size == Some(0) {
            return Err(self.bad(canonical, "0", "must be at least 1 MiB"));
        }
        Ok(size)
    }

    /// `--iscrypted` → true, `--plaintext` or neither → false, both → error.
    fn crypted_or_plain(&self) -> Result<bool> {
        let crypted = self.flag("--iscrypted");
        if crypted && self.flag("--plaintext") {
            bail!(
                "{}: {}: --iscrypted and --plaintext cannot be combined",
                self.loc,
                self.cmd
            );
        }
        Ok(crypted)
    }

    fn no_positional(&self) -> Result<()> {
        match self.positional.first() {
            None => Ok(()),
            Some(extra) => bail!(
                "{}: {} takes no arguments besides options (got `{extra}`)",
                self.loc,
                self.cmd
            ),
        }
    }

    fn one_positional(&self, what: &str) -> Result<&str> {
        match self.positional.as_slice() {
            [one] => Ok(one),
            [] => bail!("{}: {} requires {what}", self.loc, self.cmd),
            [_, extra, ..] => bail!(
                "{}: {} takes one argument, {what} (unexpected `{extra}`)",
                self.loc,
                self.cmd
            ),
        }
    }

    fn bad(&self, canonical: &str, value: &str, why: &str) -> anyhow::Error {
        anyhow!("{}: {} {canonical}: `{value}` {why}", self.loc, self.cmd)
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

impl Kickstart {
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

    /// What the image builder ignores in this kickstart, one message per command or script.
    pub fn image_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut ignored = |present: bool, what: &str, why: &str| {
            if present {
                warnings.push(format!("`{what}` is ignored when building an image: {why}"));
            }
        };
        const LAYOUT: &str = "the image has a fixed partition layout";
        ignored(
            self.ostreesetup.is_some(),
            "ostreesetup",
            "the image is deployed from the compose being built",
        );
        ignored(self.zerombr, "zerombr", LAYOUT);
        ignored(self.clearpart.is_some(), "clearpart", LAYOUT);
        ignored(self.ignoredisk.is_some(), "ignoredisk", LAYOUT);
        ignored(self.autopart.is_some(), "autopart", LAYOUT);
        ignored(!self.parts.is_empty(), "part", LAYOUT);
        ignored(
            self.reboot.is_some(),
            "reboot/poweroff/halt/shutdown",
            "there is no installer run to finish",
        );
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

    /// The host name set by the last `network --hostname=` line, if any.
    pub fn hostname(&self) -> Option<&str> {
        self.network
            .iter()
            .rev()
            .find_map(|n| n.hostname.as_deref())
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
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test";

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("kickstart")
            .join(name)
    }

    fn parse(text: &str) -> Kickstart {
        parse_str(text, "test.ks").unwrap_or_else(|e| panic!("parse failed: {e:#}"))
    }

    fn error(text: &str) -> String {
        match parse_str(text, "test.ks") {
            Ok(ks) => panic!("expected an error, parsed {ks:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    /// Assert that parsing fails on `line` with a message containing `needle`.
    fn assert_error_at(text: &str, line: usize, needle: &str) {
        let msg = error(text);
        assert!(
            msg.starts_with(&format!("test.ks:{line}: ")),
            "expected error at line {line}, got: {msg}"
        );
        assert!(msg.contains(needle), "expected `{needle}` in: {msg}");
    }

    const INSTALLABLE: &str = "\
ostreesetup --osname=debian --url=file:///srv/repo --ref=debian/x86_64
part / --grow --fstype=xfs
";

    #[test]
    fn atomic_host_fixture_parses_completely() {
        let path = fixture("atomic-host.ks");
        let ks = parse_file(&path).unwrap();
        let source = path.display().to_string();

        assert!(ks.text_mode);
        assert!(!ks.graphical);
        assert_eq!(ks.lang.as_deref(), Some("en_US.UTF-8"));
        assert_eq!(ks.keyboard.as_deref(), Some("us"));
        assert_eq!(
            ks.timezone,
            Some(Timezone {
                name: "Etc/UTC".into(),
                utc: true,
                nontp: false,
                ntpservers: vec![],
            })
        );
        assert!(ks.zerombr);
        assert_eq!(
            ks.clearpart,
            Some(ClearPart {
                mode: Some(ClearPartMode::All),
                initlabel: true,
                ..Default::default()
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
        assert_eq!(ks.parts[3].at, Location::new(&source, 15));

        let ostree = ks.ostreesetup.as_ref().unwrap();
        assert_eq!(ostree.osname, "debian");
        assert_eq!(ostree.remote, "debian");
        assert_eq!(ostree.url, "http://192.168.100.1:8080/repo");
        assert_eq!(ostree.ostree_ref, "slipway/bookworm/x86_64/atomic-host");
        assert!(ostree.nogpg);
        assert_eq!(ostree.at.line, 18);

        let boot = ks.bootloader.as_ref().unwrap();
        assert_eq!(boot.append, vec!["console=ttyS0,115200", "console=tty0"]);
        assert_eq!(boot.password, None);

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
                eject: false,
                kexec: false,
            })
        );

        assert!(ks.pre.is_empty());
        assert_eq!(ks.post.len(), 1);
        let post = &ks.post[0];
        assert!(post.erroronfail);
        assert!(!post.nochroot);
        assert_eq!(post.interpreter, "/bin/sh");
        assert_eq!(post.at, Location::new(&source, 31));
        assert_eq!(
            post.body,
            "set -eu\n\
             # Let the core user use sudo without a password.\n\
             echo 'core ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/core\n\
             chmod 0440 /etc/sudoers.d/core\n"
        );
        assert!(ks.warnings.is_empty(), "{:?}", ks.warnings);

        ks.validate_for_install().unwrap();
        ks.validate_for_image().unwrap();
        let warnings = ks.image_warnings().join("\n");
        for ignored in ["ostreesetup", "zerombr", "clearpart", "part", "reboot"] {
            assert!(warnings.contains(&format!("`{ignored}")), "{warnings}");
        }
        assert!(!warnings.contains("autopart"), "{warnings}");
        assert!(!warnings.contains("ignoredisk"), "{warnings}");
    }

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
    fn parse_errors_name_the_offending_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "text\n\nfrobnicate --now\n",
                3,
                "unknown kickstart command `frobnicate`",
            ),
            (
                "# c\npart / --grow --color=red\n",
                2,
                "unknown option `--color` for `part`",
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
                "%packages\nvim\n%end\n",
                1,
                "%packages is not supported: software comes from the OSTree commit (ostreesetup)",
            ),
            (
                "text\n%addon com_redhat_kdump\n%end\n",
                2,
                "%addon sections are not supported",
            ),
            ("%onerror\n%end\n", 1, "%onerror sections are not supported"),
            (
                "\n%frobnicate\n%end\n",
                2,
                "unknown kickstart section `%frobnicate`",
            ),
            (
                "text\n%post\necho hi\n",
                2,
                "%post section has no matching %end",
            ),
            (
                "%pre\necho\n%post\necho\n%end\n",
                1,
                "line 3 starts a new section `%post`",
            ),
            ("text\n%end\n", 2, "%end without an open section"),
            (
                "%pre --nochroot\n%end\n",
                1,
                "unknown option `--nochroot` for `%pre`",
            ),
            (
                "%post --interpreter python3\n%end\n",
                1,
                "`python3` is not an absolute path",
            ),
            ("%post stuff\n%end\n", 1, "%post takes no arguments"),
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
            (
                "bootloader --append\n",
                1,
                "option --append requires a value",
            ),
            (
                "bootloader --append --timeout=1\n",
                1,
                "option --append requires a value",
            ),
            ("reboot --eject=yes\n", 1, "option --eject takes no value"),
            ("zerombr yes\n", 1, "zerombr takes no arguments"),
            (
                "clearpart --all --none\n",
                1,
                "--all and --none cannot be combined",
            ),
            (
                "ignoredisk\n",
                1,
                "ignoredisk requires --only-use or --drives",
            ),
            ("firstboot\n", 1, "firstboot requires --enable or --disable"),
            ("lang\n", 1, "lang requires a locale"),
            ("keyboard --switch=x\n", 1, "keyboard requires a layout"),
            ("user --name=\"core\n", 1, "unbalanced quotes"),
            ("%include\n", 1, "%include takes exactly one argument"),
            ("%include http://example.com/x.ks\n", 1, "only local files"),
            (
                "part / --label=\n",
                1,
                "option --label requires a non-empty value",
            ),
        ];
        for (text, line, needle) in cases {
            assert_error_at(text, *line, needle);
        }
    }

    #[test]
    fn options_accept_both_spellings() {
        let a = parse(
            "part /var --size=2048 --fstype=xfs --label=var --ondisk=vdb\n\
             bootloader --append='quiet splash' --timeout=3\n",
        );
        let b = parse(
            "part /var --size 2048 --fstype xfs --label var --ondrive vdb\n\
             bootloader --append 'quiet splash' --timeout 3\n",
        );
        assert_eq!(a.bootloader, b.bootloader);
        assert_eq!(a.parts[0].size, Some(2048));
        assert_eq!(a.parts[0].ondisk.as_deref(), Some("vdb"));
        assert_eq!(b.parts[0].ondisk.as_deref(), Some("vdb"));
        assert_eq!(a.parts[0].fstype, b.parts[0].fstype);
        assert_eq!(a.parts[0].label, b.parts[0].label);
        assert_eq!(
            a.bootloader.unwrap().append,
            vec!["quiet".to_string(), "splash".to_string()]
        );
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
    fn comments_and_blank_lines() {
        let ks = parse(
            "# leading comment\n\
             \n\
             \t  # indented comment\n\
             rootpw --plaintext pass#word # trailing comment\n\
             lang en_GB.UTF-8 #trailing\r\n\
             keyboard --vckeymap=de-nodeadkeys --xlayouts=de,us\r\n",
        );
        let rootpw = ks.rootpw.unwrap();
        assert_eq!(rootpw.password.as_deref(), Some("pass#word"));
        assert!(!rootpw.iscrypted);
        assert_eq!(ks.lang.as_deref(), Some("en_GB.UTF-8"));
        assert_eq!(ks.keyboard.as_deref(), Some("de-nodeadkeys"));
        assert_eq!(
            parse("keyboard --xlayouts=fr,us\n").keyboard.as_deref(),
            Some("fr")
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
    fn scripts_keep_options_and_verbatim_bodies() {
        let text = "text\n\
                    %pre --log=/tmp/pre.log\n\
                    echo pre\n\
                    %end\n\
                    %post --interpreter=/usr/bin/python3\n\
                    import os\n\
                    print(\"it's unbalanced: '\")\n\
                    %end\n\
                    %post --interpreter /bin/bash --nochroot --logfile /mnt/sysimage/root/post.log\n\
                    \n\
                    # a comment, kept\n\
                    \x20 # indented comment\n\
                    %notasection and %include foo.ks\n\
                    %endless is not the end\n\
                    \tcat <<'EOF'  # trailing\n\
                    EOF\n\
                    \x20 %end   # closing, indented\n\
                    rootpw --lock\n";
        let ks = parse(text);
        assert_eq!(ks.pre.len(), 1);
        assert_eq!(ks.pre[0].log.as_deref(), Some("/tmp/pre.log"));
        assert_eq!(ks.pre[0].body, "echo pre\n");
        assert_eq!(ks.pre[0].at, Location::new("test.ks", 2));

        assert_eq!(ks.post.len(), 2);
        let py = &ks.post[0];
        assert_eq!(py.interpreter, "/usr/bin/python3");
        assert!(!py.erroronfail && !py.nochroot && py.log.is_none());
        assert_eq!(py.body, "import os\nprint(\"it's unbalanced: '\")\n");
        assert_eq!(py.at.line, 5);

        let sh = &ks.post[1];
        assert_eq!(sh.interpreter, "/bin/bash");
        assert!(sh.nochroot);
        assert_eq!(sh.log.as_deref(), Some("/mnt/sysimage/root/post.log"));
        assert_eq!(sh.at.line, 9);
        assert_eq!(
            sh.body,
            "\n\
             # a comment, kept\n\
             \x20 # indented comment\n\
             %notasection and %include foo.ks\n\
             %endless is not the end\n\
             \tcat <<'EOF'  # trailing\n\
             EOF\n"
        );
        // Parsing resumes after %end.
        assert!(ks.rootpw.unwrap().lock);

        let warnings = parse(text).image_warnings().join("\n");
        assert!(
            warnings.contains("test.ks:2: %pre script is not run"),
            "{warnings}"
        );
        assert!(
            warnings.contains("test.ks:9: %post --nochroot"),
            "{warnings}"
        );
        assert!(!warnings.contains("test.ks:5:"), "{warnings}");
    }

    #[test]
    fn empty_script_body() {
        let ks = parse("%post\n%end\n");
        assert_eq!(ks.post[0].body, "");
        assert_eq!(ks.post[0].interpreter, DEFAULT_INTERPRETER);
    }

    #[test]
    fn repeated_once_only_commands_keep_the_last_with_a_warning() {
        let ks = parse(
            "rootpw --iscrypted $6$salt$hash\n\
             timezone Etc/UTC\n\
             rootpw --lock\n\
             reboot --eject\n\
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
                eject: false,
                kexec: false,
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
    fn display_mode_and_misc_commands() {
        let ks = parse(
            "graphical\n\
             firstboot --disable\n\
             selinux --enforcing\n\
             firewall --enabled --service=\"ssh http\"\n\
             clearpart --list=sda1,sda2 --drives=sda\n\
             ignoredisk --only-use=vda,vdb\n",
        );
        assert!(ks.graphical && !ks.text_mode);
        assert_eq!(ks.firstboot, Some(false));
        assert_eq!(ks.selinux.as_deref(), Some("--enforcing"));
        assert_eq!(
            ks.firewall.as_deref(),
            Some("--enabled '--service=ssh http'")
        );
        let clear = ks.clearpart.as_ref().unwrap();
        assert_eq!(clear.mode, None);
        assert_eq!(clear.list, vec!["sda1", "sda2"]);
        assert_eq!(clear.drives, vec!["sda"]);
        assert_eq!(ks.ignoredisk.as_ref().unwrap().only_use, vec!["vda", "vdb"]);
        assert_eq!(ks.warnings.len(), 2, "{:?}", ks.warnings);
        assert!(ks.warnings[0].starts_with("test.ks:3: `selinux` has no effect"));

        let cmdline = parse("graphical\ncmdline\n");
        assert!(cmdline.text_mode && !cmdline.graphical);
    }

    #[test]
    fn bootloader_password_is_stored_and_flagged() {
        let ks = parse(
            "bootloader --location=mbr --password=grub.pbkdf2.sha512.x --iscrypted --boot-drive=vda\n",
        );
        let boot = ks.bootloader.unwrap();
        assert_eq!(boot.password.as_deref(), Some("grub.pbkdf2.sha512.x"));
        assert!(boot.iscrypted);
        assert_eq!(boot.location, Some(BootLocation::Mbr));
        assert_eq!(boot.boot_drive.as_deref(), Some("vda"));
        assert_eq!(ks.warnings.len(), 1);
        assert!(ks.warnings[0].contains("--password is stored but not applied"));
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
    fn two_swaps_are_fine() {
        parse(&format!(
            "{INSTALLABLE}part swap --size=1024\npart swap --size=1024 --ondisk=vdb\n"
        ))
        .validate_for_install()
        .unwrap();
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

    #[test]
    fn include_is_relative_to_the_including_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("parts")).unwrap();
        fs::write(
            root.join("main.ks"),
            "text\n%include parts/storage.ks\nrootpw --lock\n",
        )
        .unwrap();
        fs::write(
            root.join("parts/storage.ks"),
            "# storage\npart / --grow\n%ksappend net.ks\n",
        )
        .unwrap();
        fs::write(root.join("parts/net.ks"), "network --hostname=included\n").unwrap();

        let ks = parse_file(&root.join("main.ks")).unwrap();
        assert_eq!(ks.parts.len(), 1);
        assert_eq!(
            ks.parts[0].at,
            Location::new(&root.join("parts/storage.ks").display().to_string(), 2)
        );
        assert_eq!(ks.hostname(), Some("included"));
        assert!(
            ks.rootpw.unwrap().lock,
            "parsing continues after the include"
        );

        // parse_str_with_base resolves against the given directory.
        let ks = parse_str_with_base("%include main.ks\n", "<stdin>", root).unwrap();
        assert_eq!(ks.parts.len(), 1);

        // An error inside an included file names that file and line.
        fs::write(root.join("parts/net.ks"), "\n\nnetwork --bootproto=ppp\n").unwrap();
        let err = format!("{:#}", parse_file(&root.join("main.ks")).unwrap_err());
        let net = root.join("parts").join("net.ks");
        assert!(err.starts_with(&format!("{}:3: ", net.display())), "{err}");

        // A missing include names the %include line.
        fs::write(
            root.join("parts/storage.ks"),
            "part / --grow\n\n%include nope.ks\n",
        )
        .unwrap();
        let err = format!("{:#}", parse_file(&root.join("main.ks")).unwrap_err());
        let storage = root.join("parts").join("storage.ks");
        assert!(
            err.starts_with(&format!("{}:3: cannot include", storage.display())),
            "{err}"
        );
    }

    #[test]
    fn include_cycles_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("a.ks"), "text\n%include b.ks\n").unwrap();
        fs::write(root.join("b.ks"), "lang C\n\n%include ./a.ks\n").unwrap();
        let err = format!("{:#}", parse_file(&root.join("a.ks")).unwrap_err());
        let b = root.join("b.ks").display().to_string();
        assert!(
            err.starts_with(&format!("{b}:3: %include cycle: ")),
            "{err}"
        );
        assert!(err.contains("a.ks -> "), "{err}");

        fs::write(root.join("self.ks"), "%include self.ks\n").unwrap();
        let err = format!("{:#}", parse_file(&root.join("self.ks")).unwrap_err());
        assert!(err.contains(":1: %include cycle"), "{err}");

        // Including the same file twice (not recursively) is fine.
        fs::write(
            root.join("users.ks"),
            "sshkey --username=root \"ssh-ed25519 AAAA\"\n",
        )
        .unwrap();
        fs::write(
            root.join("twice.ks"),
            "%include users.ks\n%include users.ks\n",
        )
        .unwrap();
        assert_eq!(parse_file(&root.join("twice.ks")).unwrap().sshkeys.len(), 2);
    }

    #[test]
    fn missing_top_level_file() {
        let err = format!(
            "{:#}",
            parse_file(Path::new("/nonexistent/x.ks")).unwrap_err()
        );
        assert!(
            err.contains("cannot read kickstart `/nonexistent/x.ks`"),
            "{err}"
        );
    }
}
