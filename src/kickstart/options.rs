//! The option-spec machinery every command parser uses: a table of accepted spellings
//! ([`Opt`]: flags, options taking a value, aliases onto a canonical name) and the parsed
//! [`Args`] of one line, with typed accessors whose errors name the line, command and option.
//! Both `--opt=value` and `--opt value` are accepted; a repeated option keeps its last value,
//! except list options, which accumulate.

use std::str::FromStr;

use anyhow::{Result, anyhow, bail};

use super::Location;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Takes {
    Nothing,
    Value,
}

/// One accepted spelling of an option and the canonical name it is recorded under.
pub(super) struct Opt {
    spelled: &'static str,
    canonical: &'static str,
    takes: Takes,
}

pub(super) const fn flag(name: &'static str) -> Opt {
    alias(name, name, Takes::Nothing)
}

pub(super) const fn value(name: &'static str) -> Opt {
    alias(name, name, Takes::Value)
}

pub(super) const fn alias(spelled: &'static str, canonical: &'static str, takes: Takes) -> Opt {
    Opt {
        spelled,
        canonical,
        takes,
    }
}

/// The options and positional arguments of one command line.
pub(super) struct Args<'a> {
    loc: &'a Location,
    cmd: &'a str,
    opts: Vec<(&'static str, Option<String>)>,
    pub(super) positional: Vec<String>,
}

impl<'a> Args<'a> {
    pub(super) fn parse(
        loc: &'a Location,
        cmd: &'a str,
        tokens: &[String],
        spec: &[Opt],
    ) -> Result<Self> {
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

    /// The line these arguments are on.
    pub(super) fn loc(&self) -> &Location {
        self.loc
    }

    /// The command, as written.
    pub(super) fn cmd(&self) -> &str {
        self.cmd
    }

    pub(super) fn flag(&self, canonical: &str) -> bool {
        self.opts.iter().any(|(name, _)| *name == canonical)
    }

    /// The last value given for an option, possibly empty.
    pub(super) fn value(&self, canonical: &str) -> Option<&str> {
        self.opts
            .iter()
            .rev()
            .find(|(name, _)| *name == canonical)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The last value given for an option, which must not be empty.
    pub(super) fn text(&self, canonical: &str) -> Result<Option<&str>> {
        match self.value(canonical) {
            Some("") => bail!(
                "{}: {}: option {canonical} requires a non-empty value",
                self.loc,
                self.cmd
            ),
            other => Ok(other),
        }
    }

    pub(super) fn required(&self, canonical: &str) -> Result<&str> {
        self.text(canonical)?
            .ok_or_else(|| anyhow!("{}: {} requires {canonical}", self.loc, self.cmd))
    }

    /// Every value of a (possibly repeated) comma-separated list option, trimmed, no empties.
    pub(super) fn list(&self, canonical: &str) -> Vec<String> {
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

    pub(super) fn number<T: FromStr>(&self, canonical: &str, what: &str) -> Result<Option<T>> {
        match self.text(canonical)? {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| self.bad(canonical, v, &format!("is not {what}"))),
        }
    }

    pub(super) fn mebibytes(&self, canonical: &str) -> Result<Option<u64>> {
        let size = self.number::<u64>(canonical, "a whole number of MiB")?;
        if size == Some(0) {
            return Err(self.bad(canonical, "0", "must be at least 1 MiB"));
        }
        Ok(size)
    }

    /// `--iscrypted` → true, `--plaintext` or neither → false, both → error.
    pub(super) fn crypted_or_plain(&self) -> Result<bool> {
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

    pub(super) fn no_positional(&self) -> Result<()> {
        match self.positional.first() {
            None => Ok(()),
            Some(extra) => bail!(
                "{}: {} takes no arguments besides options (got `{extra}`)",
                self.loc,
                self.cmd
            ),
        }
    }

    pub(super) fn one_positional(&self, what: &str) -> Result<&str> {
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

    /// An error if the option was given: accepted spellings that slipway refuses, with why.
    pub(super) fn refuse(&self, canonical: &str, why: &str) -> Result<()> {
        if self.flag(canonical) {
            bail!(
                "{}: {} {canonical} is not supported: {why}",
                self.loc,
                self.cmd
            );
        }
        Ok(())
    }

    pub(super) fn bad(&self, canonical: &str, value: &str, why: &str) -> anyhow::Error {
        anyhow!("{}: {} {canonical}: `{value}` {why}", self.loc, self.cmd)
    }
}

#[cfg(test)]
mod tests {
    use crate::kickstart::test_util::*;

    #[test]
    fn option_errors_name_the_offending_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "# c\npart / --grow --color=red\n",
                2,
                "unknown option `--color` for `part`",
            ),
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
}
