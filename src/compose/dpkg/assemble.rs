//! Putting unpacked packages into a root as dpkg's unpack would: files copied out of their
//! cache entries (the entries are never written through), /usr merged, dpkg's path filters
//! applied, conffiles left as `.dpkg-new` for dpkg to install, a file shipped by two packages
//! given to the one that `Replaces` the other, and dpkg's database written with every package
//! "unpacked", so that `dpkg --configure -a` finishes the job.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::cache::{Entry, merged_rel};
use crate::sys::tree::Tree;

pub const ADMINDIR: &str = "var/lib/dpkg";

/// dpkg's `path-exclude`/`path-include` options, in order (the last match decides).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    rules: Vec<(bool, String)>,
}

impl Filters {
    /// From `path-exclude=GLOB` / `path-include=GLOB` option strings.
    pub fn parse(options: &[String]) -> Result<Self> {
        let mut rules = Vec::new();
        for o in options {
            if let Some(g) = o.strip_prefix("path-exclude=") {
                rules.push((false, g.to_string()));
            } else if let Some(g) = o.strip_prefix("path-include=") {
                rules.push((true, g.to_string()));
            } else {
                bail!("`{o}` is not a dpkg path filter");
            }
        }
        Ok(Self { rules })
    }

    /// Does dpkg leave `path` (`/usr/share/doc/x`) out? A directory or link that a pattern
    /// excludes is kept when an include pattern could match below it.
    pub fn skips(&self, path: &str, dir_or_link: bool) -> bool {
        let mut skip = false;
        for (include, glob) in &self.rules {
            if fnmatch(glob, path) {
                skip = !include;
            }
        }
        if skip && dir_or_link {
            for (include, glob) in &self.rules {
                if !include {
                    continue;
                }
                // The pattern's part before its first wildcard, without trailing slashes,
                // must begin the path.
                let fixed = glob.find(['*', '?', '[', '\\']).unwrap_or(glob.len());
                let prefix = glob[..fixed].trim_end_matches('/');
                if path.starts_with(prefix) {
                    return false;
                }
            }
        }
        skip
    }
}

/// fnmatch(3) with no flags, as dpkg matches: `*` crosses `/`.
fn fnmatch(glob: &str, path: &str) -> bool {
    let (Ok(g), Ok(p)) = (CString::new(glob), CString::new(path)) else {
        return false;
    };
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    unsafe { libc::fnmatch(g.as_ptr(), p.as_ptr(), 0) == 0 }
}

/// An empty merged-/usr root with dpkg's database directories.
pub fn skeleton(root: &Path, arch: &str) -> Result<Tree> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let tree = Tree::open(root)?;
    for d in ["bin", "sbin", "lib", "lib64"] {
        tree.create_dir_all(&format!("usr/{d}"))?;
        tree.symlink(d, &format!("usr/{d}"))?;
    }
    for d in ["info", "updates", "triggers", "alternatives"] {
        tree.create_dir_all(&format!("{ADMINDIR}/{d}"))?;
    }
    tree.write_file(&format!("{ADMINDIR}/info/format"), &mut &b"1\n"[..], 0o644)?;
    tree.write_file(
        &format!("{ADMINDIR}/arch"),
        &mut format!("{arch}\n").as_bytes(),
        0o644,
    )?;
    tree.write_file(&format!("{ADMINDIR}/status"), &mut &b""[..], 0o644)?;
    Ok(tree)
}

/// Who owns each non-directory path put in so far.
#[derive(Default)]
pub struct Owners {
    by_rel: HashMap<String, (usize, String)>,
}

/// Put the files of `entries` into `tree`; returns each package's list of paths for dpkg
/// (a path given to another package by `Replaces` left out of the loser's list).
pub fn unpack(tree: &Tree, entries: &[&Entry], filters: &Filters) -> Result<Vec<Vec<String>>> {
    let mut owners = Owners::default();
    let mut lists: Vec<Vec<String>> = entries.iter().map(|e| e.list.clone()).collect();
    let mut lost: Vec<Vec<String>> = vec![Vec::new(); entries.len()];
    for (i, e) in entries.iter().enumerate() {
        unpack_one(tree, entries, i, filters, &mut owners, &mut lost)
            .with_context(|| format!("unpacking {} from {}", e.name, e.dir.display()))?;
    }
    for (list, lost) in lists.iter_mut().zip(lost) {
        if !lost.is_empty() {
            list.retain(|p| !lost.contains(p));
        }
    }
    Ok(lists)
}

fn unpack_one(
    tree: &Tree,
    entries: &[&Entry],
    i: usize,
    filters: &Filters,
    owners: &mut Owners,
    lost: &mut [Vec<String>],
) -> Result<()> {
    let e = entries[i];
    let data = e.data();
    let conffiles: Vec<String> = e.conffiles();
    let mut links: HashMap<u64, String> = HashMap::new();
    for path in &e.list {
        if path == "/." {
            continue;
        }
        let rel = merged_rel(path);
        let src = data.join(&rel);
        let m = std::fs::symlink_metadata(&src)
            .with_context(|| format!("{path} is listed but missing from {}", data.display()))?;
        let ft = m.file_type();
        if filters.skips(path, ft.is_dir() || ft.is_symlink()) {
            continue;
        }
        if ft.is_dir() {
            if tree.is_dir(&rel).unwrap_or(false) {
                continue;
            }
            if tree.exists(&rel)? {
                // A link to a directory stays, and the directory's files go through it.
                if tree.list(&rel).is_ok() {
                    continue;
                }
                bail!("{path} is a directory in {} but not in the root", e.name);
            }
            tree.create_dir_all(&rel)?;
            set_meta(tree, &rel, &m)?;
            continue;
        }
        let dest = if conffiles.iter().any(|c| c == path) {
            format!("{rel}.dpkg-new")
        } else {
            rel.clone()
        };
        if let Some((j, their_path)) = owners.by_rel.get(&rel).cloned()
            && j != i
        {
            let them = entries[j];
            if e.control.relation_names("Replaces").contains(&them.name) {
                lost[j].push(their_path);
            } else if them.control.relation_names("Replaces").contains(&e.name) {
                lost[i].push(path.clone());
                continue;
            } else {
                bail!(
                    "{path} is in both {} and {}, and neither replaces the other",
                    them.name,
                    e.name
                );
            }
        }
        owners.by_rel.insert(rel.clone(), (i, path.clone()));
        if tree.is_dir(&dest).unwrap_or(false) && !ft.is_dir() {
            bail!("{path} of {} would replace a directory", e.name);
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(&src)?;
            tree.symlink(&dest, &target.to_string_lossy())?;
            if (m.uid(), m.gid()) != (0, 0) {
                tree.set_owner(&dest, m.uid(), m.gid())?;
            }
            tree.set_mtime(&dest, m.mtime())?;
        } else if ft.is_file() {
            if m.nlink() > 1
                && let Some(first) = links.get(&m.ino())
            {
                tree.hard_link(first, &dest)?;
                continue;
            }
            let mut f =
                std::fs::File::open(&src).with_context(|| format!("opening {}", src.display()))?;
            tree.write_file(&dest, &mut f, m.mode())?;
            set_meta(tree, &dest, &m)?;
            tree.set_mtime(&dest, m.mtime())?;
            if m.nlink() > 1 {
                links.insert(m.ino(), dest.clone());
            }
        } else {
            bail!(
                "{} is neither a file, a link nor a directory",
                src.display()
            );
        }
    }
    Ok(())
}

fn set_meta(tree: &Tree, rel: &str, m: &std::fs::Metadata) -> Result<()> {
    if (m.uid(), m.gid()) != (0, 0) {
        tree.set_owner(rel, m.uid(), m.gid())?;
    }
    tree.set_mode(rel, m.mode())
}

/// dpkg's files for `entries` (`info/<pkg>.list`, `.md5sums`, `.conffiles`, scripts...) and
/// their `status` stanzas, marked unpacked, added to the status already there.
pub fn write_database(tree: &Tree, entries: &[&Entry], lists: &[Vec<String>]) -> Result<()> {
    for (e, list) in entries.iter().zip(lists) {
        let db = e.db_name();
        tree.write_file(
            &format!("{ADMINDIR}/info/{db}.list"),
            &mut (list.join("\n") + "\n").as_bytes(),
            0o644,
        )?;
        for (member, data) in &e.members {
            if member == "control" {
                continue;
            }
            let mode = match member.as_str() {
                "preinst" | "postinst" | "prerm" | "postrm" | "config" => 0o755,
                _ => 0o644,
            };
            tree.write_file(
                &format!("{ADMINDIR}/info/{db}.{member}"),
                &mut &data[..],
                mode,
            )?;
        }
    }
    let status_rel = format!("{ADMINDIR}/status");
    let mut old = Vec::new();
    std::io::Read::read_to_end(&mut tree.open_file(&status_rel)?, &mut old)?;
    let old = String::from_utf8_lossy(&old).into_owned();
    let mut stanzas: Vec<(String, String)> = old
        .split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let name = s
                .lines()
                .find_map(|l| l.strip_prefix("Package: "))
                .unwrap_or("")
                .to_string();
            (name, format!("{}\n", s.trim_end_matches('\n')))
        })
        .collect();
    for e in entries {
        stanzas.push((e.db_name(), e.control.unpacked_stanza(&e.conffiles())));
    }
    stanzas.sort_by(|a, b| a.0.cmp(&b.0));
    let text: Vec<String> = stanzas.into_iter().map(|(_, s)| s).collect();
    tree.write_file(&status_rel, &mut text.join("\n").as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_filters() -> Filters {
        Filters::parse(&[
            "path-exclude=/usr/share/doc/*".into(),
            "path-include=/usr/share/doc/*/copyright".into(),
            "path-exclude=/usr/share/man/*".into(),
            "path-exclude=/usr/share/locale/*".into(),
            "path-include=/usr/share/locale/locale.alias".into(),
        ])
        .unwrap()
    }

    #[test]
    fn filters_match_as_dpkg_does() {
        let f = host_filters();
        assert!(f.skips("/usr/share/doc/less/NEWS.gz", false));
        assert!(!f.skips("/usr/share/doc/less/copyright", false));
        // The directory stays: an include pattern reaches below it.
        assert!(!f.skips("/usr/share/doc/less", true));
        assert!(!f.skips("/usr/share/doc/grub-pc-bin", true));
        assert!(f.skips("/usr/share/man/man1", true));
        assert!(!f.skips("/usr/share/man", true));
        assert!(f.skips("/usr/share/locale/de", true));
        // A directory named like the start of an included file is not kept for it.
        assert!(f.skips("/usr/share/locale/lo", true));
        assert!(!f.skips("/usr/share/locale/locale.alias", false));
        assert!(!f.skips("/usr/bin/less", false));
        assert!(Filters::parse(&["exclude=/x".into()]).is_err());
    }
}
