//! `health.json`: the gate's settings. The deployment's `/usr/lib/slipway/health.json`
//! (shipped by compose) is read first, then the operator's `/etc/slipway/health.json`
//! overrides it key by key. Keys starting with `//` are comments, as in treefiles.

use std::path::Path;

use anyhow::{Result, anyhow};

/// The gate's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// How long one check may run before it counts as failed.
    pub check_timeout_secs: u64,
    /// How many boots a new default gets to reach a green verdict before GRUB boots the
    /// rollback (1..=9).
    pub boot_tries: u32,
    /// Reboot into the rollback after a red verdict rolled the default back.
    pub reboot_on_red: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            check_timeout_secs: 60,
            boot_tries: 3,
            reboot_on_red: true,
        }
    }
}

/// Where the two files live, relative to a deployment's root.
pub const SHIPPED: &str = crate::payload::HEALTH_SETTINGS;
pub const OPERATOR: &str = "etc/slipway/health.json";

/// One file's keys (all optional; unknown keys refused).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Layer {
    check_timeout_secs: Option<u64>,
    boot_tries: Option<u64>,
    reboot_on_red: Option<bool>,
}

impl HealthConfig {
    /// The settings of the deployment rooted at `root`.
    pub fn load(root: &Path) -> Result<HealthConfig> {
        const WHAT: &str = "health settings";
        let max_tries = crate::sysroot::bootloader::MAX_BOOT_TRIES;
        let mut c = HealthConfig::default();
        for (file, l) in crate::host::load_layered::<Layer>(root, [SHIPPED, OPERATOR], WHAT, &[])? {
            let bad = |key: &str, want: String| {
                anyhow!("{}: invalid {WHAT}: `{key}` must be {want}", file.display())
            };
            if let Some(n) = l.check_timeout_secs {
                if n == 0 {
                    return Err(bad("check-timeout-secs", "a positive integer".into()));
                }
                c.check_timeout_secs = n;
            }
            if let Some(n) = l.boot_tries {
                if !(1..=u64::from(max_tries)).contains(&n) {
                    return Err(bad(
                        "boot-tries",
                        format!("an integer from 1 to {max_tries}"),
                    ));
                }
                c.boot_tries = n as u32;
            }
            if let Some(b) = l.reboot_on_red {
                c.reboot_on_red = b;
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_settings_parse() {
        let d = tempfile::tempdir().unwrap();
        crate::payload::write_one(d.path(), SHIPPED);
        HealthConfig::load(d.path()).unwrap();
    }

    #[test]
    fn the_operator_overrides_the_deployment_key_by_key() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("usr/lib/slipway")).unwrap();
        std::fs::create_dir_all(d.path().join("etc/slipway")).unwrap();
        std::fs::write(
            d.path().join(SHIPPED),
            r#"{"// ": "x", "check-timeout-secs": 30, "boot-tries": 2}"#,
        )
        .unwrap();
        std::fs::write(d.path().join(OPERATOR), r#"{"boot-tries": 5}"#).unwrap();
        let c = HealthConfig::load(d.path()).unwrap();
        assert_eq!(
            c,
            HealthConfig {
                check_timeout_secs: 30,
                boot_tries: 5,
                reboot_on_red: true
            }
        );
    }

    #[test]
    fn bad_settings_name_the_file_and_key() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/slipway")).unwrap();
        for (text, want) in [
            (
                r#"{"boot-tries": 0}"#,
                "`boot-tries` must be an integer from 1 to 9",
            ),
            (r#"{"boot-tries": 10}"#, "`boot-tries`"),
            (r#"{"check-timeout-secs": "x"}"#, "`check-timeout-secs`"),
            (
                r#"{"check-timeout-secs": 0}"#,
                "`check-timeout-secs` must be a positive",
            ),
            (r#"{"reboot": true}"#, "unknown field `reboot`"),
            (r#"{"boot-tries": null}"#, "`boot-tries` is null"),
            ("[1]", "expected a JSON object"),
        ] {
            std::fs::write(d.path().join(OPERATOR), text).unwrap();
            let msg = format!("{:#}", HealthConfig::load(d.path()).unwrap_err());
            assert!(msg.contains(want), "{text}: {msg}");
            assert!(msg.contains("etc/slipway/health.json"), "{msg}");
        }
    }
}
