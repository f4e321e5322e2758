//! apt sources and package resolution.
//!
//! The host's apt sources (for the target suite) plus the treefile's `repos` become one deb822
//! sources file. A private apt state in the cache directory (`<cachedir>/apt`) is refreshed with
//! `apt-get update` and asked, without installing anything, which exact packages a minbase
//! root with the treefile's packages needs (`--print-uris`, which also gives each .deb's hash).
//! That resolved set feeds the input hash, and is handed to mmdebstrap pinned to the exact
//! versions, so what was hashed is what gets installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};

use crate::sys::cmd::CommandRunExt;
use crate::treefile::Treefile;

/// One deb822 source entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub signed_by: Option<String>,
    /// Where it came from, for error messages ("host /etc/apt/...", "treefile repos[0]").
    pub origin: String,
}

impl Source {
    fn render(&self) -> String {
        let mut s = format!(
            "Types: deb\nURIs: {}\nSuites: {}\n",
            self.uris.join(" "),
            self.suites.join(" ")
        );
        if !self.components.is_empty() {
            s.push_str(&format!("Components: {}\n", self.components.join(" ")));
        }
        if let Some(k) = &self.signed_by {
            s.push_str(&format!("Signed-By: {k}\n"));
        }
        s
    }
}

/// Render sources as one deb822 file.
pub fn render_sources(sources: &[Source]) -> String {
    sources
        .iter()
        .map(|s| format!("# {}\n{}", s.origin, s.render()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parse a deb822 `.sources` file.
fn parse_deb822(text: &str, origin: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let mut last: Option<String> = None;
        for line in para.lines() {
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                // Continuation (e.g. an embedded Signed-By key block).
                if let Some(k) = &last {
                    let v = fields.entry(k.clone()).or_default();
                    v.push('\n');
                    v.push_str(line);
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                fields.insert(k.clone(), v.trim().to_string());
                last = Some(k);
            }
        }
        let words = |k: &str| -> Vec<String> {
            fields
                .get(k)
                .map(|v| v.split_whitespace().map(String::from).collect())
                .unwrap_or_default()
        };
        if !words("types").iter().any(|t| t == "deb") {
            continue;
        }
        if fields
            .get("enabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("no"))
        {
            continue;
        }
        let signed_by = fields
            .get("signed-by")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        // An embedded key block would need the file form; keep the entry only if it is a path.
        let signed_by = signed_by.filter(|s| !s.contains('\n'));
        out.push(Source {
            uris: words("uris"),
            suites: words("suites"),
            components: words("components"),
            signed_by,
            origin: origin.to_string(),
        });
    }
    out
}

/// Parse a one-line-style `sources.list`.
fn parse_one_line(text: &str, origin: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim();
        let mut signed_by = None;
        if rest.starts_with('[') {
            let Some(end) = rest.find(']') else { continue };
            for opt in rest[1..end].split_whitespace() {
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    signed_by = Some(v.to_string());
                }
            }
            rest = rest[end + 1..].trim();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(Source {
            uris: vec![uri.to_string()],
            suites: vec![suite.to_string()],
            components: words.map(String::from).collect(),
            signed_by,
            origin: origin.to_string(),
        });
    }
    out
}

/// The host's apt sources, as configured in `etc_apt` (normally `/etc/apt`).
pub fn read_host_sources(etc_apt: &Path) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    let main = etc_apt.join("sources.list");
    if main.is_file() {
        let t = std::fs::read_to_string(&main)
            .with_context(|| format!("reading {}", main.display()))?;
        out.extend(parse_one_line(&t, &main.display().to_string()));
    }
    let dir = etc_apt.join("sources.list.d");
    if dir.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            let name = p.display().to_string();
            if name.ends_with(".sources") {
                let t = std::fs::read_to_string(&p).with_context(|| format!("reading {name}"))?;
                out.extend(parse_deb822(&t, &name));
            } else if name.ends_with(".list") {
                let t = std::fs::read_to_string(&p).with_context(|| format!("reading {name}"))?;
                out.extend(parse_one_line(&t, &name));
            }
        }
    }
    Ok(out)
}

/// The codename of the host's Debian release (from os-release), e.g. `bookworm`.
pub fn host_codename() -> Option<String> {
    let t = std::fs::read_to_string("/etc/os-release").ok()?;
    t.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// Sources for `suite`, taken from the host's: entries for the suite family (`S`, `S-updates`,
/// `S-security`...) are kept; when the host runs another release, its own family is rewritten
/// to the target suite (same mirrors, other release).
pub fn sources_for_suite(
    host: &[Source],
    host_suite: Option<&str>,
    suite: &str,
) -> Result<Vec<Source>> {
    let in_family =
        |s: &str, fam: &str| s == fam || s.strip_prefix(fam).is_some_and(|r| r.starts_with('-'));
    let mut out = Vec::new();
    for src in host {
        let mut suites = Vec::new();
        for s in &src.suites {
            if in_family(s, suite) {
                suites.push(s.clone());
            } else if let Some(h) = host_suite.filter(|h| *h != suite && in_family(s, h)) {
                suites.push(format!("{suite}{}", &s[h.len()..]));
            }
        }
        if !suites.is_empty() {
            out.push(Source {
                suites,
                ..src.clone()
            });
        }
    }
    if out.is_empty() {
        bail!(
            "the host's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d) have no entry for suite `{suite}`; add one there, or add the archive to the treefile's `repos`"
        );
    }
    Ok(out)
}

/// Sources from the treefile's `repos`, then its package images' `repos` (one apt state
/// serves the host and its images).
pub fn treefile_sources(tf: &Treefile) -> Vec<Source> {
    let images = tf
        .container_images
        .iter()
        .flat_map(|img| match &img.source {
            crate::treefile::services::ImageSource::Packages { repos, .. } => repos
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("{} repos[{i}]", img.origin), r))
                .collect::<Vec<_>>(),
            crate::treefile::services::ImageSource::Archive(_) => Vec::new(),
        });
    tf.repos
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("treefile repos[{i}]"), r))
        .chain(images)
        .map(|(key, r)| Source {
            // apt's copy: method puts the .debs of a local repository into the chroot's
            // archive cache; with file: dpkg in the chroot would look for them at a host path.
            uris: vec![match r.uri.strip_prefix("file:") {
                Some(rest) => format!("copy:{rest}"),
                None => r.uri.clone(),
            }],
            suites: vec![r.suite.clone()],
            components: r.components.clone(),
            signed_by: Some(
                std::fs::canonicalize(&r.signed_by.path)
                    .unwrap_or_else(|_| r.signed_by.path.clone())
                    .display()
                    .to_string(),
            ),
            origin: format!("{key} (signed-by {})", r.signed_by.display),
        })
        .collect()
}

/// A package apt chose, with the hash of its .deb.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct ResolvedPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The hash apt verifies the .deb with, as `TYPE:hex`.
    pub hash: String,
}

/// A private apt state under the cache directory.
pub struct AptWorkspace {
    pub dir: PathBuf,
    pub arch: String,
}

impl AptWorkspace {
    /// Prepare `<cachedir>/apt`, writing the sources and exclude preferences for this compose.
    pub fn prepare(cachedir: &Path, sources: &[Source], exclude: &[String]) -> Result<Self> {
        // apt reads relative `Dir::` settings below its own root: the path must be absolute.
        let dir = std::path::absolute(cachedir.join("apt"))
            .with_context(|| format!("resolving {}", cachedir.display()))?;
        for sub in [
            "lists/partial",
            "cache",
            "resolve-archives/partial",
            "archives",
            "sources.list.d",
            "preferences.d",
        ] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let status = dir.join("status");
        if !status.exists() {
            std::fs::write(&status, "")
                .with_context(|| format!("creating {}", status.display()))?;
        }
        write_if_changed(
            &dir.join("sources.list.d/slipway.sources"),
            &render_sources(sources),
        )?;
        write_if_changed(
            &dir.join("preferences.d/slipway-exclude.pref"),
            &exclude_preferences(exclude),
        )?;
        let arch = Command::new("dpkg")
            .arg("--print-architecture")
            .run_get_string()?
            .trim()
            .to_string();
        Ok(Self { dir, arch })
    }

    pub fn sources_file(&self) -> PathBuf {
        self.dir.join("sources.list.d/slipway.sources")
    }

    pub fn preferences_file(&self) -> PathBuf {
        self.dir.join("preferences.d/slipway-exclude.pref")
    }

    /// The shared .deb cache mmdebstrap is seeded from.
    pub fn archives(&self) -> PathBuf {
        self.dir.join("archives")
    }

    fn options(&self) -> Vec<String> {
        let d = |s: &str| self.dir.join(s).display().to_string();
        [
            ("Dir::Etc::SourceList", "/dev/null".to_string()),
            ("Dir::Etc::SourceParts", d("sources.list.d")),
            ("Dir::Etc::PreferencesParts", d("preferences.d")),
            ("Dir::State", d(".")),
            ("Dir::State::Lists", d("lists")),
            ("Dir::State::status", d("status")),
            ("Dir::Cache", d("cache")),
            ("Dir::Cache::pkgcache", d("cache/pkgcache.bin")),
            ("Dir::Cache::srcpkgcache", d("cache/srcpkgcache.bin")),
            ("Dir::Cache::Archives", d("resolve-archives")),
            ("APT::Architecture", self.arch.clone()),
            ("APT::Architectures", self.arch.clone()),
            ("APT::Install-Recommends", "false".into()),
            ("APT::Sandbox::User", "root".into()),
            ("Acquire::Languages", "none".into()),
        ]
        .into_iter()
        .flat_map(|(k, v)| ["-o".to_string(), format!("{k}={v}")])
        .collect()
    }

    /// apt-get in a PID namespace of its own: when slipway dies, apt-get dies (the runner),
    /// and with it every download method and gpgv it started, so nothing holds the lists
    /// lock against the next compose.
    fn apt_get(&self) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--pid", "--fork", "--kill-child", "--", "apt-get"])
            .args(self.options())
            .env("LC_ALL", "C.UTF-8");
        c
    }

    /// Refresh the package lists; an unreachable or unverifiable repository is an error that
    /// names it.
    pub fn update(&self, sources: &[Source]) -> Result<()> {
        let out = self
            .apt_get()
            .args(["update", "--error-on=any", "-q"])
            .run_get_output()
            .context("running apt-get update")?;
        if out.status.success() {
            return Ok(());
        }
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let problems = problem_blocks(&text);
        // Name the source each problem is about (apt writes file: URIs with one slash).
        for src in sources {
            for uri in &src.uris {
                let u = uri.trim_end_matches('/');
                let alt = u
                    .split_once("://")
                    .map(|(scheme, p)| format!("{scheme}:{p}"));
                let hits: Vec<&String> = problems
                    .iter()
                    .filter(|b| b.contains(u) || alt.as_deref().is_some_and(|a| b.contains(a)))
                    .collect();
                if hits.is_empty() {
                    continue;
                }
                let what = if hits.iter().any(|l| {
                    l.contains("NO_PUBKEY")
                        || l.contains("not signed")
                        || l.contains("signatures couldn't be verified")
                        || l.contains("signatures were invalid")
                        || l.contains("EXPKEYSIG")
                }) {
                    format!(
                        "cannot be verified with its signing key ({})",
                        src.signed_by.as_deref().unwrap_or("no Signed-By")
                    )
                } else {
                    "cannot be reached".to_string()
                };
                let said: Vec<&str> = hits.iter().map(|s| s.as_str()).collect();
                bail!(
                    "apt repository {uri} ({}) {what}; apt said:\n{}",
                    src.origin,
                    said.join("\n")
                );
            }
        }
        bail!(
            "apt-get update failed:\n{}",
            crate::sys::cmd::Tail::from_text(&text, 20)
        )
    }

    /// Resolve what a minbase root plus `packages` installs.
    pub fn resolve(&self, tf: &Treefile) -> Result<Vec<ResolvedPackage>> {
        // mmdebstrap's minbase: Essential:yes, Priority:required and apt.
        let mut cmd = self.apt_get();
        cmd.args(["install", "--print-uris", "-qq"])
            .arg("?or(?essential,?priority(required))")
            .arg("apt")
            .args(&tf.packages);
        let out = cmd
            .run_get_output()
            .context("running apt-get install --print-uris")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(explain_resolve_failure(tf, &stdout, &stderr));
        }
        let mut pkgs = parse_print_uris(&stdout)?;
        pkgs.sort();
        if pkgs.is_empty() {
            bail!(
                "apt resolved no packages; is the apt state in {} damaged?",
                self.dir.display()
            );
        }
        Ok(pkgs)
    }

    /// Put the .debs of `pkgs` that the archive directory lacks into it: apt downloads
    /// them (and checks each against its index); a `file:` repository's, which apt reads in
    /// place and never copies, are copied from where apt says they are.
    pub fn download(&self, pkgs: &[ResolvedPackage]) -> Result<()> {
        let archives = self.archives();
        let missing = |p: &&ResolvedPackage| {
            !archives
                .join(crate::compose::rootfs::deb_filename(p))
                .exists()
        };
        if !pkgs.iter().any(|p| missing(&p)) {
            return Ok(());
        }
        let archives_opt = format!("Dir::Cache::Archives={}", archives.display());
        let uris = self
            .apt_get()
            .args(["-o", &archives_opt])
            .args(["install", "--print-uris", "-qq", "--allow-downgrades"])
            .args(pinned_includes(pkgs))
            .run_get_string()
            .context("asking apt-get where the packages come from")?;
        let mut remote = 0;
        for line in uris.lines().map(str::trim).filter(|l| l.starts_with('\'')) {
            let uri = line[1..].split('\'').next().unwrap_or("");
            let Some(file) = line.split_whitespace().nth(1) else {
                continue;
            };
            match uri.strip_prefix("file:") {
                Some(path) => {
                    let path = percent_encoding::percent_decode_str(path.trim_start_matches("//"))
                        .decode_utf8_lossy()
                        .into_owned();
                    let dest = archives.join(file);
                    let tmp = archives.join(format!(".{file}.slipway-tmp"));
                    std::fs::copy(&path, &tmp)
                        .with_context(|| format!("copying {path} into {}", archives.display()))?;
                    std::fs::rename(&tmp, &dest).with_context(|| {
                        format!("renaming {} to {}", tmp.display(), dest.display())
                    })?;
                }
                None => remote += 1,
            }
        }
        if remote > 0 {
            crate::sys::ui::info(format!("downloading {remote} packages"));
            self.apt_get()
                .args(["-o", &archives_opt])
                .args([
                    "install",
                    "--download-only",
                    "-y",
                    "-q",
                    "--allow-downgrades",
                ])
                .args(pinned_includes(pkgs))
                .run()
                .context("downloading packages with apt-get")?;
        }
        if let Some(p) = pkgs.iter().find(|p| missing(p)) {
            bail!(
                "apt-get downloaded the package set, but {} is not in {}",
                crate::compose::rootfs::deb_filename(p),
                archives.display()
            );
        }
        Ok(())
    }

    /// SHA-256 over every InRelease/Release file apt holds for the current sources: if it is
    /// unchanged, so is every package index, and so is what `resolve` would answer.
    pub fn index_digest(&self) -> Result<String> {
        let lists = self.dir.join("lists");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&lists)
            .with_context(|| format!("reading {}", lists.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with("_InRelease") || n.ends_with("_Release"))
            })
            .collect();
        names.sort();
        let mut h = Sha256::new();
        let sources = self.sources_file();
        h.update(
            std::fs::read(&sources).with_context(|| format!("reading {}", sources.display()))?,
        );
        h.update(std::fs::read(self.preferences_file()).unwrap_or_default());
        for p in names {
            h.update(p.file_name().unwrap().as_encoded_bytes());
            h.update(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?);
        }
        Ok(hex::encode(h.finalize()))
    }
}

/// apt's error and warning lines, each with the indented lines that continue it.
fn problem_blocks(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        if line.starts_with("E:") || line.starts_with("W:") || line.starts_with("Err:") {
            out.push(line.to_string());
            open = true;
        } else if open && line.starts_with(' ') {
            let last = out.last_mut().expect("open block");
            last.push('\n');
            last.push_str(line);
        } else {
            open = false;
        }
    }
    out
}

fn write_if_changed(path: &Path, content: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// apt preferences that forbid excluded packages.
pub fn exclude_preferences(exclude: &[String]) -> String {
    exclude
        .iter()
        .map(|p| format!("Package: {p}\nPin: release *\nPin-Priority: -1\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parse `apt-get install --print-uris` lines:
/// `'URI' FILENAME SIZE HASHTYPE:HEX`, where FILENAME is `name_version_arch.deb` with the
/// version's epoch colon escaped as `%3a`.
pub fn parse_print_uris(text: &str) -> Result<Vec<ResolvedPackage>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with('\'') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3 {
            bail!("unexpected apt output line: {line}");
        }
        let file = fields[1];
        let stem = file
            .strip_suffix(".deb")
            .ok_or_else(|| anyhow!("unexpected apt file name {file}"))?;
        let parts: Vec<&str> = stem.splitn(3, '_').collect();
        if parts.len() != 3 {
            bail!("unexpected apt file name {file}");
        }
        out.push(ResolvedPackage {
            name: parts[0].to_string(),
            version: parts[1].replace("%3a", ":"),
            arch: parts[2].to_string(),
            // apt omits the hash for some indexes; the size still identifies a rebuild.
            hash: fields
                .get(3)
                .map(|h| h.to_string())
                .unwrap_or_else(|| format!("size:{}", fields[2])),
        });
    }
    Ok(out)
}

fn explain_resolve_failure(tf: &Treefile, stdout: &str, stderr: &str) -> anyhow::Error {
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("E: Unable to locate package ") {
            let pkg = rest.trim();
            let origin = tf
                .origin_of(pkg)
                .map(|o| format!(" (asked for in {o})"))
                .unwrap_or_default();
            return anyhow!(
                "package `{pkg}`{origin} does not exist in any configured apt source (the host's sources for suite {} plus the treefile's repos)",
                tf.suite
            );
        }
        if line.starts_with("E: Version '") {
            return anyhow!("{}", line.trim_start_matches("E: "));
        }
    }
    let text = format!("{stdout}\n{stderr}");
    anyhow!(
        "apt could not resolve the package set; apt said:\n{}",
        crate::sys::cmd::Tail::from_text(&text, 25)
    )
}

/// A printable list `name=version` for mmdebstrap's `--include`.
pub fn pinned_includes(pkgs: &[ResolvedPackage]) -> Vec<String> {
    pkgs.iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_and_one_line_sources_parse() {
        let d822 = "Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/k.gpg\n\nTypes: deb-src\nURIs: http://x\nSuites: bookworm\nComponents: main\n\nTypes: deb\nEnabled: no\nURIs: http://off\nSuites: bookworm\nComponents: main\n";
        let s = parse_deb822(d822, "f");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(s[0].signed_by.as_deref(), Some("/usr/share/keyrings/k.gpg"));
        let one = "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m/debian bookworm main contrib\ndeb-src http://m bookworm main\n";
        let s = parse_one_line(one, "f");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].components, ["main", "contrib"]);
        assert_eq!(s[0].signed_by.as_deref(), Some("/k.gpg"));
    }

    #[test]
    fn suite_family_is_kept_and_other_releases_are_rewritten() {
        let host = vec![
            Source {
                uris: vec!["http://m/debian".into()],
                suites: vec!["bookworm".into(), "bookworm-updates".into()],
                components: vec!["main".into()],
                signed_by: None,
                origin: "h".into(),
            },
            Source {
                uris: vec!["https://vendor".into()],
                suites: vec!["nodistro".into()],
                components: vec!["main".into()],
                signed_by: None,
                origin: "h2".into(),
            },
        ];
        let same = sources_for_suite(&host, Some("bookworm"), "bookworm").unwrap();
        assert_eq!(same.len(), 1);
        assert_eq!(same[0].suites, ["bookworm", "bookworm-updates"]);
        let other = sources_for_suite(&host, Some("bookworm"), "trixie").unwrap();
        assert_eq!(other[0].suites, ["trixie", "trixie-updates"]);
        assert!(sources_for_suite(&host, None, "sid").is_err());
    }

    #[test]
    fn print_uris_lines_parse_with_epochs() {
        let t = "'http://m/pool/main/g/gcc/gcc-12-base_12.2.0-14%2bdeb12u1_amd64.deb' gcc-12-base_12.2.0-14+deb12u1_amd64.deb 37596 MD5Sum:8e7e\n'http://m/pool/x/libx_1%3a2.0-1_all.deb' libx_1%3a2.0-1_all.deb 10 SHA256:abcd\n'http://s/pool/y_1_amd64.deb' y_1_amd64.deb 205796\n";
        let p = parse_print_uris(t).unwrap();
        assert_eq!(p[0].name, "gcc-12-base");
        assert_eq!(p[0].version, "12.2.0-14+deb12u1");
        assert_eq!(p[1].version, "1:2.0-1");
        assert_eq!(p[1].arch, "all");
        assert_eq!(p[1].hash, "SHA256:abcd");
        assert_eq!(p[2].hash, "size:205796");
    }

    #[test]
    fn problem_blocks_keep_continuation_lines() {
        let t = "Get:1 file:/r ./ InRelease\nErr:1 file:/r ./ InRelease\n  The following signatures couldn't be verified: NO_PUBKEY 6B\nReading package lists...\nE: The repository 'file:/r ./ InRelease' is not signed.\n";
        let b = problem_blocks(t);
        assert_eq!(b.len(), 2);
        assert!(b[0].contains("NO_PUBKEY"));
        assert!(b[1].starts_with("E: The repository"));
    }

    #[test]
    fn exclusions_become_negative_pins() {
        let p = exclude_preferences(&["nano".into()]);
        assert!(p.contains("Package: nano\nPin: release *\nPin-Priority: -1"));
    }
}
