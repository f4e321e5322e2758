//! Commit metadata: versions and the keys slipway records (treefile values become
//! GVariants through [`crate::repo::variant`]).

/// Metadata keys slipway writes on every commit.
pub const KEY_VERSION: &str = "version";
pub const KEY_INPUTHASH: &str = "slipway.inputhash";
pub const KEY_INDEXHASH: &str = "slipway.indexhash";
pub const KEY_PACKAGES: &str = "slipway.packages";
pub const KEY_TREEFILE: &str = "slipway.treefile";
pub const KEY_SUITE: &str = "slipway.suite";
/// The source hash of the slipway that composed the commit (`slipway --version`).
pub const KEY_SOURCE: &str = "slipway.source";
/// SHA-256 of the slipway executable the host carries (as given, before stripping).
pub const KEY_HOST_EXECUTABLE: &str = "slipway.host-executable";

/// Civil date (year, month, day) of a Unix timestamp, UTC.
pub fn civil_date(ts: u64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (ts / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Expand `<date:FORMAT>` in a version prefix (FORMAT supports %Y, %m, %d).
pub fn expand_prefix(prefix: &str, ts: u64) -> String {
    let mut out = String::new();
    let mut rest = prefix;
    while let Some(start) = rest.find("<date:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let Some(end) = after.find('>') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let (y, m, d) = civil_date(ts);
        out.push_str(
            &after[..end]
                .replace("%Y", &format!("{y:04}"))
                .replace("%m", &format!("{m:02}"))
                .replace("%d", &format!("{d:02}")),
        );
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The next version for `prefix` given the previous commit's version: `PREFIX.0` first,
/// then `PREFIX.1`, `PREFIX.2`...
pub fn next_version(prefix: &str, previous: Option<&str>) -> String {
    let n = previous
        .and_then(|p| p.strip_prefix(prefix))
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|n| n.parse::<u64>().ok())
        .map(|n| n + 1)
        .unwrap_or(0);
    format!("{prefix}.{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_within_a_prefix() {
        assert_eq!(next_version("2026.11", None), "2026.11.0");
        assert_eq!(next_version("2026.11", Some("2026.11.0")), "2026.11.1");
        assert_eq!(next_version("2026.11", Some("2026.11.9")), "2026.11.10");
        assert_eq!(next_version("2026.12", Some("2026.11.9")), "2026.12.0");
        assert_eq!(next_version("1", Some("10.0")), "1.0");
    }

    #[test]
    fn date_prefix_expands_in_utc() {
        // 2026-11-27T21:42:12Z
        assert_eq!(
            expand_prefix("<date:%Y.%m.%d>", 1_795_815_732),
            "2026.11.27"
        );
        assert_eq!(expand_prefix("host-<date:%Y%m>", 0), "host-197001");
        assert_eq!(civil_date(951_782_400), (2000, 2, 29));
    }
}
