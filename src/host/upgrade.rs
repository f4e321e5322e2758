//! `slipway host upgrade`: pull the newest commit of the default deployment's refspec and
//! deploy it as the new default, the current default kept as rollback.
//!
//! The newest commit is compared with the stateroot's default deployment: the same commit is
//! "already up to date" (the CLI exits with [`crate::cli::EXIT_UNCHANGED`]); an older one
//! (an earlier commit timestamp, or a lower `version`) is a downgrade, refused unless asked
//! for. `--check` pulls only the commit object, `--download-only` the whole commit without
//! deploying it.

use std::cmp::Ordering;

use anyhow::{Result, anyhow, bail};
use fn_error_context::context;

use super::deploy::{Deployed, deploy_commit};
use super::fetch::{self, Pull};
use super::{CommitInfo, Host};
use crate::sys::time::utc;

/// What `upgrade` is asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpgradeOptions {
    /// Only report whether a newer commit exists (pulls the commit object only).
    pub check: bool,
    /// Pull the new commit completely, deploy nothing.
    pub download_only: bool,
    /// Deploy the ref's commit even when it is older than the current default.
    pub allow_downgrade: bool,
}

/// What `upgrade` found or did.
#[derive(Debug, Clone)]
pub enum UpgradeOutcome {
    /// The refspec's newest commit is the default deployment's: nothing to do.
    UpToDate(CommitInfo),
    /// `--check`: another commit is available; `downgrade` says why it is older, if it is.
    Available {
        current: CommitInfo,
        new: CommitInfo,
        downgrade: Option<String>,
    },
    /// `--download-only`: the new commit is in the sysroot repository.
    Downloaded {
        current: CommitInfo,
        new: CommitInfo,
    },
    Deployed(Deployed),
    /// The refspec's newest commit was rejected by the health gate on this host: not
    /// deployed again by `upgrade` (`deploy` can).
    Rejected {
        new: CommitInfo,
        rejection: super::health::store::Rejection,
    },
}

/// Compare two version strings the way people read them: runs of digits compare as
/// numbers, runs of letters as text, other characters only separate (`2026.11.27.10` is
/// newer than `2026.11.27.9`; `1.0.1` newer than `1.0`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn segments(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        // Start and kind (digits or not) of the run being read.
        let mut run: Option<(usize, bool)> = None;
        for (i, c) in s.char_indices() {
            let kind = if c.is_ascii_digit() {
                Some(true)
            } else if c.is_alphanumeric() {
                Some(false)
            } else {
                None
            };
            if let Some((start, k)) = run
                && kind != Some(k)
            {
                out.push(&s[start..i]);
                run = None;
            }
            if run.is_none() {
                run = kind.map(|k| (i, k));
            }
        }
        if let Some((start, _)) = run {
            out.push(&s[start..]);
        }
        out
    }
    let (sa, sb) = (segments(a), segments(b));
    for (x, y) in sa.iter().zip(sb.iter()) {
        let xn = x.bytes().all(|c| c.is_ascii_digit());
        let yn = y.bytes().all(|c| c.is_ascii_digit());
        let o = match (xn, yn) {
            (true, true) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            (false, false) => x.cmp(y),
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    sa.len().cmp(&sb.len())
}

/// Why `new` is older than `current`, if it is: an earlier commit timestamp, or a lower
/// `version` when both have one.
pub fn downgrade_reason(current: &CommitInfo, new: &CommitInfo) -> Option<String> {
    let mut why = Vec::new();
    if new.timestamp < current.timestamp {
        why.push(format!(
            "its timestamp {} is older than {}",
            utc(new.timestamp),
            utc(current.timestamp)
        ));
    }
    if let (Some(n), Some(c)) = (&new.version, &current.version)
        && compare_versions(n, c) == Ordering::Less
    {
        why.push(format!("its version {n} is lower than {c}"));
    }
    (!why.is_empty()).then(|| why.join(" and "))
}

/// `slipway host upgrade` on `host` (locked for writing).
#[context("Upgrading the sysroot {}", host.path().display())]
pub fn upgrade(host: &Host, os: Option<&str>, opts: UpgradeOptions) -> Result<UpgradeOutcome> {
    let stateroot = host.stateroot(os)?;
    let default = host.default_of(&stateroot)?;
    let refspec = fetch::origin_refspec(host, &default)?;
    fetch::pull(
        host,
        &refspec,
        &default,
        &Pull::Tip {
            metadata_only: opts.check,
        },
    )?;
    let newest = fetch::resolve(host, &refspec)?.ok_or_else(|| {
        anyhow!(
            "{refspec}, the origin of {}, is not in the sysroot repository",
            host.describe(&default)
        )
    })?;
    let current = host.commit_info(&default.csum())?;
    if newest == current.checksum {
        return Ok(UpgradeOutcome::UpToDate(current));
    }
    let new = host.commit_info(&newest)?;
    if let Some(rej) =
        super::health::Store::open(host, &stateroot).rejected_commit(&new.checksum)?
    {
        return Ok(UpgradeOutcome::Rejected {
            new,
            rejection: rej,
        });
    }
    let downgrade = downgrade_reason(&current, &new);
    let forward = downgrade.is_none();
    if opts.check {
        return Ok(UpgradeOutcome::Available {
            current,
            new,
            downgrade,
        });
    }
    if let Some(why) = downgrade
        && !opts.allow_downgrade
    {
        bail!(
            "refusing to downgrade stateroot {stateroot} from {current} to {new} ({refspec}): \
             {why}; pass --allow-downgrade to deploy it anyway"
        );
    }
    if opts.download_only {
        return Ok(UpgradeOutcome::Downloaded { current, new });
    }
    Ok(UpgradeOutcome::Deployed(deploy_commit(
        host,
        &stateroot,
        &new.checksum,
        &[],
        // A downgrade keeps the newer boot files (see host::esp).
        forward,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically_by_segment() {
        use Ordering::*;
        for (a, b, o) in [
            ("2", "1", Greater),
            ("10", "9", Greater),
            ("2026.11.27.10", "2026.11.27.9", Greater),
            ("2026.11.27.0", "2026.11.27.1", Less),
            ("1.0", "1.0.1", Less),
            ("1.0", "1.0", Equal),
            ("01", "1", Equal),
            ("1.0a", "1.0", Greater),
            ("1.0~rc1", "1.0.1", Less),
            ("2", "10", Less),
        ] {
            assert_eq!(compare_versions(a, b), o, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), o.reverse(), "{b} vs {a}");
        }
    }

    fn info(version: Option<&str>, timestamp: u64) -> CommitInfo {
        CommitInfo {
            checksum: "c".repeat(64),
            version: version.map(String::from),
            timestamp,
        }
    }

    #[test]
    fn downgrades_are_older_timestamps_or_lower_versions() {
        let current = info(Some("2"), 2000);
        assert_eq!(downgrade_reason(&current, &info(Some("3"), 3000)), None);
        let why = downgrade_reason(&current, &info(Some("3"), 1000)).unwrap();
        assert!(
            why.contains("timestamp") && !why.contains("version"),
            "{why}"
        );
        let why = downgrade_reason(&current, &info(Some("1"), 3000)).unwrap();
        assert!(why.contains("version 1 is lower than 2"), "{why}");
        let why = downgrade_reason(&current, &info(Some("1"), 1000)).unwrap();
        assert!(
            why.contains("timestamp") && why.contains("version"),
            "{why}"
        );
        // Without versions, the timestamp decides.
        assert_eq!(downgrade_reason(&info(None, 1), &info(None, 2)), None);
        assert!(downgrade_reason(&info(None, 2), &info(Some("9"), 1)).is_some());
    }
}
