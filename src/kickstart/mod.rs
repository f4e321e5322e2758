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
//! Who applies what: **image** = `slipway image --kickstart` (`sysroot::hostconfig`),
//! **install** = the PXE installer. What an image build does not apply is listed by
//! [`Kickstart::image_warnings`] with its line.
//!
//! | command | options | applied by |
//! | --- | --- | --- |
//! | `ostreesetup` | `--osname` (required), `--remote` (default: osname), `--url` (required; `file:`, `http:`, `https:`), `--ref` (required), `--nogpg` | install |
//! | `zerombr` | | install |
//! | `clearpart` | `--all`, `--initlabel`, `--drives=a,b`, `--disklabel=gpt`; `--linux`, `--none`, `--list` refused (whole disks only) | install |
//! | `ignoredisk` | `--only-use=a,b` or `--drives=a,b` (`--onlyuse` alias) | install |
//! | `autopart` | `--type=plain\|lvm\|thinp\|btrfs` (plain only at install), `--nolvm`, `--fstype=`, `--nohome`, `--noboot`, `--noswap`, `--encrypted` (refused at install) | install |
//! | `part` / `partition` | `MOUNTPOINT` (`/path`, `swap`, `biosboot`), `--size=MiB`, `--grow`, `--maxsize=MiB`, `--fstype=`, `--label=`, `--ondisk=` (`--ondrive`), `--fsoptions=`; `--asprimary` warned about (GPT) | install |
//! | `bootloader` | `--append="..."` and `--timeout=N` (image, install), `--location=mbr\|partition\|none` (`boot` = partition), `--boot-drive=` (install); `--driveorder`, `--leavebootorder` warned about; `--password`, `--md5pass`, `--iscrypted`, `--disabled` refused | image, install |
//! | `network` | `--bootproto=dhcp\|static` (`bootp` = dhcp), `--device=`, `--ip=`, `--netmask=`, `--gateway=`, `--nameserver=a,b` (accumulates), `--hostname=`, `--onboot=yes\|no`, `--ipv6=auto\|dhcp\|ADDR[/PREFIX]`, `--ipv6gateway=`, `--mtu=`, `--noipv4`, `--noipv6`, `--nodns`, `--nodefroute`; `--activate`, `--no-activate` (install only) | image, install |
//! | `rootpw` | `[--iscrypted\|--plaintext] [--lock] [--allow-ssh] [PASSWORD]` (password optional with `--lock`) | image, install |
//! | `user` | `--name=` (required), `--groups=a,b`, `--password=`, `--iscrypted`, `--plaintext`, `--homedir=`, `--shell=`, `--uid=`, `--gid=`, `--gecos=`, `--lock` | image, install |
//! | `sshkey` | `--username=` (required) `"KEY"` (the whole key as one quoted argument) | image, install |
//! | `services` | `--enabled=a,b`, `--disabled=c` (several lines accumulate) | image, install |
//! | `timezone` | `[--utc\|--isUtc] [--nontp] [--ntpservers=a,b] Area/City` (without `--utc`: a warning, the clock stays UTC) | image, install |
//! | `lang` | `LANG` (`--addsupport` warned about) | image, install |
//! | `keyboard` | `LAYOUT` or `--vckeymap=`, `--xlayouts='a','b (variant)'`, `--switch=` | image, install |
//! | `reboot`, `poweroff` (`shutdown`), `halt` | `--eject`, `--kexec` warned about (last one wins) | install |
//! | `text`, `cmdline`, `graphical`, `skipx`, `eula`, `firstboot` | their usual options; accepted with a warning, no effect | |
//! | `selinux` | `--disabled`, `--permissive` with a warning; `--enforcing` (the default) refused | |
//! | `firewall` | `--disabled` with a warning; anything else refused | |
//! | `%pre`, `%post` | `--interpreter=PATH`, `--erroronfail`, `--log=PATH` (`--logfile`; a path inside the tree), `--nochroot` (`%post` only) | `%post`: image, install; `%pre`, `--nochroot`: install |
//! | `%include`, `%ksappend` | `PATH` | |
//!
//! Other Anaconda commands are refused at their line: LVM, RAID and btrfs (`logvol`,
//! `volgroup`, `raid`...), software sources (`url`, `repo`, `liveimg`...), and anything unknown.
//!
//! # Layout
//!
//! `lexer` reads lines, sections and includes; `options` is the option-spec table machinery;
//! `commands` holds the per-command parsers and the types they fill; `validate` checks a whole
//! kickstart for the installer or the image builder.

mod commands;
mod lexer;
mod options;
pub mod template;
mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

pub use commands::{
    AutoPart, AutoPartType, BootLocation, BootProto, Bootloader, ClearPart, DEFAULT_FSTYPE,
    DEFAULT_INTERPRETER, IgnoreDisk, Ipv6, Keyboard, Kickstart, Network, OstreeSetup, Part,
    PowerAction, RebootAction, RootPw, SUPPORTED_AUTOPART_FSTYPES, SUPPORTED_PART_FSTYPES, Script,
    Services, SshKey, Timezone, User, XLayout,
};
pub use lexer::Location;

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

/// The state of one parse: the lexer (`lexer`) feeds it lines, the command parsers
/// (`commands`) fill `ks`.
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

#[cfg(test)]
pub(crate) mod test_util {
    //! Helpers shared by the kickstart unit tests.

    use std::path::{Path, PathBuf};

    use super::{Kickstart, parse_str};

    pub(crate) const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test";

    pub(crate) fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("kickstart")
            .join(name)
    }

    pub(crate) fn parse(text: &str) -> Kickstart {
        parse_str(text, "test.ks").unwrap_or_else(|e| panic!("parse failed: {e:#}"))
    }

    pub(crate) fn error(text: &str) -> String {
        match parse_str(text, "test.ks") {
            Ok(ks) => panic!("expected an error, parsed {ks:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    /// Assert that parsing fails on `line` with a message containing `needle`.
    pub(crate) fn assert_error_at(text: &str, line: usize, needle: &str) {
        let msg = error(text);
        assert!(
            msg.starts_with(&format!("test.ks:{line}: ")),
            "expected error at line {line}, got: {msg}"
        );
        assert!(msg.contains(needle), "expected `{needle}` in: {msg}");
    }

    pub(crate) const INSTALLABLE: &str = "\
ostreesetup --osname=debian --url=file:///srv/repo --ref=debian/x86_64
part / --grow --fstype=xfs
";
}
