//! Time as people read it.

/// A timestamp as people read it (ISO 8601, UTC).
pub fn utc(ts: u64) -> String {
    i64::try_from(ts)
        .ok()
        .and_then(|t| ostree::glib::DateTime::from_unix_utc(t).ok())
        .and_then(|d| d.format("%Y-%m-%dT%H:%M:%SZ").ok())
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("@{ts}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_utc() {
        assert_eq!(utc(1_704_067_200), "2024-01-01T00:00:00Z");
    }
}
