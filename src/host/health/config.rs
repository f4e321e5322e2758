//! `health.json`: the gate's settings. The deployment's `/usr/lib/slipway/health.json`
//! (shipped by compose) is read first, then the operator's `/etc/slipway/health.json`
//! overrides it key by key. Keys starting with `//` are comments, as in treefiles.

use std::path::Path;

use anyhow::{Context, Result, bail};

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

impl HealthConfig {
    /// The settings of the deployment rooted at `root`.
    pub fn load(root: &Path) -> Result<HealthConfig> {
        let mut c = HealthConfig::default();
        crate::host::load_layered(root, [SHIPPED, OPERATOR], "health settings", |obj| {
            c.apply(obj)
        })?;
        Ok(c)
    }

    fn apply(&mut self, obj: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
        for (k, v) in obj {
            match k.as_str() {
                "check-timeout-secs" => {
                    self.check_timeout_secs = v
                        .as_u64()
                        .filter(|n| *n > 0)
                        .with_context(|| format!("`{k}` must be a positive integer"))?
                }
                "boot-tries" => {
                    self.boot_tries = v
                        .as_u64()
                        .filter(|n| {
                            (1..=u64::from(crate::sysroot::bootloader::MAX_BOOT_TRIES)).contains(n)
                        })
                        .map(|n| n as u32)
                        .with_context(|| {
                            format!(
                                "`{k}` must be an integer from 1 to {}",
                                crate::sysroot::bootloader::MAX_BOOT_TRIES
                            )
                        })?
                }
                "reboot-on-red" => {
                    self.reboot_on_red = v
                        .as_bool()
                        .with_context(|| format!("`{k}` must be true or false"))?
                }
                other => bail!(
                    "unknown key `{other}` (known: check-timeout-secs, boot-tries, reboot-on-red)"
                ),
            }
        }
        Ok(())
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
            (r#"{"reboot": true}"#, "unknown key `reboot`"),
            ("[1]", "expected a JSON object"),
        ] {
            std::fs::write(d.path().join(OPERATOR), text).unwrap();
            let msg = format!("{:#}", HealthConfig::load(d.path()).unwrap_err());
            assert!(msg.contains(want), "{text}: {msg}");
            assert!(msg.contains("etc/slipway/health.json"), "{msg}");
        }
    }
}
