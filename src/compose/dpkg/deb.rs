//! Reading a `.deb`: its control members and its data archive, both through `dpkg-deb`
//! (which knows every compression a Debian archive uses).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::sys::cmd::CommandRunExt;

/// A control file (`DEBIAN/control`, or one stanza of dpkg's `status`): fields in order,
/// continuation lines kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Control {
    pub fields: Vec<(String, String)>,
}

impl Control {
    /// Parse one stanza; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let mut fields: Vec<(String, String)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                let Some(last) = fields.last_mut() else {
                    bail!(
                        "{origin}: line {}: a continuation line before any field",
                        n + 1
                    );
                };
                last.1.push('\n');
                last.1.push_str(line);
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                bail!("{origin}: line {}: `{line}` is not `Field: value`", n + 1);
            };
            fields.push((k.trim().to_string(), v.trim_start().to_string()));
        }
        Ok(Self { fields })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The stanza as dpkg's `status` holds it for a package that is unpacked but not yet
    /// configured: `Status` after `Package`, new conffiles listed for dpkg to install.
    pub fn unpacked_stanza(&self, conffiles: &[String]) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.fields.iter().enumerate() {
            out.push_str(&format!("{k}: {v}\n"));
            if i == 0 {
                out.push_str("Status: install ok unpacked\n");
            }
        }
        if !conffiles.is_empty() {
            out.push_str("Conffiles:\n");
            for c in conffiles {
                out.push_str(&format!(" {c} newconffile\n"));
            }
        }
        out
    }

    /// The names in a relationship field (`Replaces`, `Depends`...), without versions or
    /// architecture qualifiers.
    pub fn relation_names(&self, key: &str) -> Vec<String> {
        self.get(key)
            .unwrap_or("")
            .split([',', '|'])
            .filter_map(|alt| {
                let name = alt.split_whitespace().next()?;
                let name = name.split(['(', ':']).next()?.trim();
                (!name.is_empty()).then(|| name.to_string())
            })
            .collect()
    }
}

/// The control members of a `.deb` (`control`, `conffiles`, `md5sums`, maintainer
/// scripts...), by name.
pub fn control_members(deb: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let out = Command::new("dpkg-deb")
        .arg("--ctrl-tarfile")
        .arg(deb)
        .run_get_output()?;
    if !out.status.success() {
        bail!(
            "{} is not a readable Debian package: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut members = BTreeMap::new();
    let mut archive = tar::Archive::new(&out.stdout[..]);
    for entry in archive
        .entries()
        .with_context(|| format!("reading the control archive of {}", deb.display()))?
    {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path()?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let name = name.to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        members.insert(name, data);
    }
    if !members.contains_key("control") {
        bail!("{} has no control file", deb.display());
    }
    Ok(members)
}

/// Stream the data archive of `deb` (its files, as a tar archive) to `each`.
pub fn with_data<T>(
    deb: &Path,
    each: impl FnOnce(&mut tar::Archive<&mut dyn Read>) -> Result<T>,
) -> Result<T> {
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = crate::sys::cmd::spawn(&mut cmd)?;
    let mut stdout = child.stdout.take().context("dpkg-deb's stdout")?;
    let mut stderr = child.stderr.take().context("dpkg-deb's stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let result = {
        let reader: &mut dyn Read = &mut stdout;
        let mut archive = tar::Archive::new(reader);
        let r = each(&mut archive);
        // Drain what is left, so dpkg-deb never dies of a closed pipe.
        let _ = std::io::copy(archive.into_inner(), &mut std::io::sink());
        r
    };
    drop(stdout);
    let status = child.wait()?;
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(crate::sys::cmd::exit_failure(&cmd, status, &err))
            .with_context(|| format!("reading the files of {}", deb.display()));
    }
    result.with_context(|| format!("unpacking {}", deb.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_keeps_order_and_continuations() {
        let c = Control::parse(
            "Package: hello\nVersion: 2.10-3\nDepends: libc6 (>= 2.34), foo:any | bar\nDescription: hi\n more\n .\n end\n",
            "hello/control",
        )
        .unwrap();
        assert_eq!(c.get("package"), Some("hello"));
        assert_eq!(c.get("Description"), Some("hi\n more\n .\n end"));
        assert_eq!(c.relation_names("Depends"), ["libc6", "foo", "bar"]);
        let s = c.unpacked_stanza(&["/etc/hello.conf".into()]);
        assert!(s.starts_with("Package: hello\nStatus: install ok unpacked\nVersion: 2.10-3\n"));
        assert!(
            s.ends_with("Conffiles:\n /etc/hello.conf newconffile\n"),
            "{s}"
        );
    }

    #[test]
    fn a_line_without_a_colon_is_named() {
        let e = Control::parse("Package: x\nbroken\n", "x/control").unwrap_err();
        assert!(e.to_string().contains("x/control: line 2"), "{e}");
    }
}
