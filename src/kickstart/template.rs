//! Kickstart templates: the per-machine kickstarts of `slipway pxe serve`.
//!
//! A template is a kickstart with `{{name}}` placeholders, filled per machine:
//!
//! | placeholder | value |
//! | --- | --- |
//! | `{{mac}}` | the machine's hardware address, `52:54:00:12:34:56` |
//! | `{{uuid}}` | its SMBIOS UUID (lower case), empty when unknown |
//! | `{{hostname}}` | its host name: the `machines` entry, else what iPXE sent, else `slipway-` and the MAC's hex digits |
//! | `{{ip}}` | the address its request came from |
//! | `{{server}}` | the URL the boot server serves its directory at, `http://HOST:PORT` |
//! | `{{repo}}` | the URL of the repository it serves: `https://HOST:PORT/repo` when it serves HTTPS, else `{{server}}/repo` |
//! | `{{ref}}` | the OSTree ref its profile installs |
//!
//! Any other `{{...}}`, or a `{{` without its `}}`, is an error naming the file and line; the
//! server renders every template once with dummy values at start ([`check`]), so a mistake
//! stops it there rather than at a machine's install.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

/// The placeholders a kickstart template may use.
pub const PLACEHOLDERS: [&str; 7] = ["mac", "uuid", "hostname", "ip", "server", "repo", "ref"];

/// Fill `text`'s placeholders from `values` (keys from [`PLACEHOLDERS`]; a missing key is
/// filled with nothing). `source` names the template in errors.
pub fn render(text: &str, source: &str, values: &BTreeMap<&str, String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("{source}:{}: `{{{{` without its `}}}}`", i + 1);
            };
            let name = after[..end].trim();
            if !PLACEHOLDERS.contains(&name) {
                bail!(
                    "{source}:{}: unknown placeholder {{{{{name}}}}} (known: {})",
                    i + 1,
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{{{p}}}}}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            out.push_str(values.get(name).map(String::as_str).unwrap_or(""));
            rest = &after[end + 2..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// Dummy values for [`check`], with `ostree_ref` as `{{ref}}`.
pub fn dummy_values(ostree_ref: &str) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("mac", "52:54:00:00:00:01".to_string()),
        ("uuid", "00000000-0000-4000-8000-000000000001".to_string()),
        ("hostname", "slipway-check".to_string()),
        ("ip", "192.0.2.10".to_string()),
        ("server", "http://192.0.2.1:8080".to_string()),
        ("repo", "http://192.0.2.1:8080/repo".to_string()),
        ("ref", ostree_ref.to_string()),
    ])
}

/// Render `text` with dummy values and check the result as an installer kickstart: unknown
/// placeholders, syntax errors and what the installer would refuse, named by `source`; for
/// an installer with a trusted key (`has_key`) or without one.
pub fn check(text: &str, source: &str, ostree_ref: &str, has_key: bool) -> Result<()> {
    let rendered = render(text, source, &dummy_values(ostree_ref))?;
    let ks = super::parse_str(&rendered, source)?;
    ks.validate_for_install()?;
    ks.check_trusted_key(has_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_refuses() {
        let v = dummy_values("r");
        assert_eq!(
            render("a {{mac}} {{ ref }}\n{{server}}/repo", "t", &v).unwrap(),
            "a 52:54:00:00:00:01 r\nhttp://192.0.2.1:8080/repo"
        );
        let e = render("x\n{{nope}}\n", "t.ks", &v).unwrap_err().to_string();
        assert!(e.starts_with("t.ks:2: unknown placeholder {{nope}}"), "{e}");
        let e = render("{{mac\n", "t.ks", &v).unwrap_err().to_string();
        assert!(e.starts_with("t.ks:1:"), "{e}");
    }

    #[test]
    fn the_shipped_atomic_host_template_renders_to_an_installer_kickstart() {
        let path = crate::kickstart::test_util::fixture("atomic-host.ks");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut v = dummy_values("slipway/bookworm/x86_64/atomic-host");
        v.insert("hostname", "node7".into());
        let rendered = render(&text, "atomic-host.ks", &v).unwrap();
        let ks = crate::kickstart::parse_str(&rendered, "atomic-host.ks").unwrap();
        ks.validate_for_install().unwrap();
        assert_eq!(ks.hostname(), Some("node7"));
        let o = ks.ostreesetup.as_ref().unwrap();
        assert_eq!(o.url, "http://192.0.2.1:8080/repo");
        assert_eq!(o.ostree_ref, "slipway/bookworm/x86_64/atomic-host");
        check(&text, "atomic-host.ks", "x", true).unwrap();
        let e = check(&text, "atomic-host.ks", "x", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("atomic-host.ks:21: ostreesetup verifies the commit's signature"),
            "{e}"
        );
    }
}
