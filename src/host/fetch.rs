//! Following a deployment's origin: its refspec (`REMOTE:REF`, or a local `REF`), the
//! remote's URL, pulls into the sysroot repository, and the ref's history.
//!
//! A remote is looked up in the sysroot repository's configuration first (on a booted host
//! libostree also reads `/etc/ostree/remotes.d` there). An offline sysroot does not see its
//! deployment's `/etc`, where `slipway image` writes the OS remote, so that file is read
//! next: then the pull goes to the URL and the remote's ref is set afterwards, as the image
//! deployment does.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use fn_error_context::context;
use ostree::gio;
use ostree::glib;

use super::Host;
use crate::repo::pull::{self, TempRemote};

/// An origin's refspec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refspec {
    /// The remote to pull from; none for a ref of the local repository.
    pub remote: Option<String>,
    pub reference: String,
}

impl Refspec {
    pub fn parse(s: &str) -> Result<Refspec> {
        let (remote, reference) = match s.split_once(':') {
            Some((r, name)) => (Some(r.to_string()), name.to_string()),
            None => (None, s.to_string()),
        };
        if reference.is_empty() || remote.as_deref() == Some("") {
            bail!("`{s}` is not a refspec (REMOTE:REF or REF)");
        }
        Ok(Refspec { remote, reference })
    }
}

impl std::fmt::Display for Refspec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.remote {
            Some(r) => write!(f, "{r}:{}", self.reference),
            None => write!(f, "{}", self.reference),
        }
    }
}

/// The refspec in a deployment's origin file (`[origin] refspec=`), if it has one.
pub fn origin_refspec_opt(dep: &ostree::Deployment) -> Option<String> {
    dep.origin()
        .and_then(|o| o.string("origin", "refspec").ok())
        .map(|s| s.to_string())
}

/// The refspec a deployment follows; an error naming the deployment when it has none.
pub fn origin_refspec(host: &Host, dep: &ostree::Deployment) -> Result<Refspec> {
    let s = origin_refspec_opt(dep).ok_or_else(|| {
        anyhow!(
            "{} of the sysroot {} has no refspec in its origin file",
            host.describe(dep),
            host.path().display()
        )
    })?;
    Refspec::parse(&s).with_context(|| format!("the origin of {}", host.describe(dep)))
}

/// Where a remote's configuration was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteSource {
    /// The sysroot repository knows it (its config, or /etc/ostree/remotes.d on a booted host).
    Repo,
    /// A `remotes.d` file in the deployment's `/etc`.
    DeploymentEtc(PathBuf),
}

/// A remote and its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub name: String,
    pub url: String,
    pub gpg_verify: bool,
    /// `gpg-verify-summary` (libostree's default: off; `slipway image` and the installer turn
    /// it on with a key).
    pub gpg_verify_summary: bool,
    /// `tls-ca-path`: the CA file an `https://` server is checked against, as configured
    /// (a path of the running host; for a deployment's remote, inside that deployment).
    pub tls_ca: Option<String>,
    pub source: RemoteSource,
}

/// Find remote `name`: in the sysroot repository, else in `dep`'s `/etc/ostree/remotes.d`.
pub fn find_remote(host: &Host, name: &str, dep: &ostree::Deployment) -> Result<Option<Remote>> {
    let repo = host.repo();
    if repo.remote_list().iter().any(|r| r.as_str() == name) {
        let url = repo
            .remote_get_url(name)
            .with_context(|| format!("reading the URL of remote {name}"))?;
        let gpg_verify = repo
            .remote_get_gpg_verify(name)
            .with_context(|| format!("reading gpg-verify of remote {name}"))?;
        let gpg_verify_summary = repo
            .remote_get_gpg_verify_summary(name)
            .with_context(|| format!("reading gpg-verify-summary of remote {name}"))?;
        let tls_ca = repo
            .remote_option(name, "tls-ca-path", None)
            .with_context(|| format!("reading tls-ca-path of remote {name}"))?
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty());
        return Ok(Some(Remote {
            name: name.to_string(),
            url: url.to_string(),
            gpg_verify,
            gpg_verify_summary,
            tls_ca,
            source: RemoteSource::Repo,
        }));
    }
    let dir = host.deployment_root(dep).join("etc/ostree/remotes.d");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(None);
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    let group = format!("remote \"{name}\"");
    for file in files {
        let kf = glib::KeyFile::new();
        kf.load_from_file(&file, glib::KeyFileFlags::NONE)
            .with_context(|| format!("reading {}", file.display()))?;
        if !kf.has_group(&group) {
            continue;
        }
        let url = kf
            .string(&group, "url")
            .with_context(|| format!("{}: remote {name} has no url", file.display()))?;
        // libostree's default is to verify.
        let gpg_verify = kf.boolean(&group, "gpg-verify").unwrap_or(true);
        let gpg_verify_summary = kf.boolean(&group, "gpg-verify-summary").unwrap_or(false);
        let tls_ca = kf
            .string(&group, "tls-ca-path")
            .ok()
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty());
        return Ok(Some(Remote {
            name: name.to_string(),
            url: url.to_string(),
            gpg_verify,
            gpg_verify_summary,
            tls_ca,
            source: RemoteSource::DeploymentEtc(file),
        }));
    }
    Ok(None)
}

/// What to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pull {
    /// The ref's newest commit: only its commit object (`--check`), or all of it.
    Tip { metadata_only: bool },
    /// The commit objects of the ref's whole history (to find a version).
    History,
    /// One commit, by checksum, complete; the ref does not move.
    Commit(String),
}

/// Pull from the refspec's remote into the sysroot repository. A refspec without a remote
/// has nothing to pull from (its ref is local): then only [`Pull::Commit`] is an error.
#[context("Pulling {refspec} into the sysroot {}", host.path().display())]
pub fn pull(host: &Host, refspec: &Refspec, dep: &ostree::Deployment, what: &Pull) -> Result<()> {
    let Some(remote_name) = &refspec.remote else {
        if let Pull::Commit(c) = what {
            bail!(
                "commit {c} is not in the sysroot repository, and the local ref {refspec} has no remote to pull it from"
            );
        }
        return Ok(());
    };
    let remote = find_remote(host, remote_name, dep)?.ok_or_else(|| {
        anyhow!(
            "remote `{remote_name}` of {} is not configured (neither in the sysroot repository nor in the deployment's /etc/ostree/remotes.d)",
            host.describe(dep)
        )
    })?;
    let (refs, flags, depth) = match what {
        Pull::Tip { metadata_only } => (
            vec![refspec.reference.clone()],
            if *metadata_only {
                ostree::RepoPullFlags::COMMIT_ONLY
            } else {
                ostree::RepoPullFlags::NONE
            },
            0,
        ),
        Pull::History => (
            vec![refspec.reference.clone()],
            ostree::RepoPullFlags::COMMIT_ONLY,
            -1,
        ),
        Pull::Commit(c) => (vec![c.clone()], ostree::RepoPullFlags::NONE, 0),
    };
    crate::sys::ui::info(format!(
        "pulling {}{} from {}",
        match what {
            Pull::Tip {
                metadata_only: true,
            } => "the newest commit's metadata of ",
            Pull::History => "the history of ",
            _ => "",
        },
        match what {
            Pull::Commit(c) => format!("commit {c}"),
            _ => refspec.to_string(),
        },
        remote.url
    ));
    let req = pull::Request { refs, flags, depth };
    match &remote.source {
        RemoteSource::Repo => pull_through_repo(host, &remote, &req),
        RemoteSource::DeploymentEtc(file) => {
            // The remote's ref is what the origin names: moved for a tip or a history.
            let follow = matches!(what, Pull::Tip { .. } | Pull::History)
                .then_some(refspec.reference.as_str());
            pull_through_etc(host, dep, file, &remote, &req, follow)
        }
    }
}

/// A pull through a remote the sysroot repository knows (its keys and `tls-ca-path` are
/// libostree's to use).
fn pull_through_repo(host: &Host, remote: &Remote, req: &pull::Request) -> Result<()> {
    // libostree opens `tls-ca-path` on this machine: right for the booted host, the build
    // machine's file for a sysroot elsewhere.
    if let Some(ca) = &remote.tls_ca
        && !host.is_running_root()
    {
        bail!(
            "remote {} checks its server against tls-ca-path={ca}, a file of the running \
             host: pull on the booted host, not into the sysroot {}",
            remote.name,
            host.path().display()
        );
    }
    pull::pull(
        host.repo(),
        &pull::Source {
            via: &remote.name,
            name: &remote.name,
            url: &remote.url,
            gpg_verify: remote.gpg_verify,
            tls_ca: remote.tls_ca.as_deref().map(Path::new),
            tls_ca_origin: None,
        },
        req,
    )
}

/// A pull of a remote that `file` in `dep`'s /etc defines: its keys and CA file read inside
/// the deployment, through a remote of the sysroot repository's own for this pull (libostree
/// verifies only through one); `follow`: the ref the remote's ref is then set for.
fn pull_through_etc(
    host: &Host,
    dep: &ostree::Deployment,
    file: &Path,
    remote: &Remote,
    req: &pull::Request,
    follow: Option<&str>,
) -> Result<()> {
    let keys = tempfile::Builder::new()
        .prefix("slipway-keys-")
        .tempdir()
        .context("creating a directory for the remote's keys")?;
    let key_files = copy_keys(host, dep, file, remote, keys.path())?;
    let key_refs: Vec<&Path> = key_files.iter().map(PathBuf::as_path).collect();
    let ca = copy_ca(host, dep, file, remote, keys.path())?;
    let ca_origin = remote
        .tls_ca
        .as_ref()
        .map(|p| format!("{}: tls-ca-path={p}", file.display()));
    let temp = TempRemote::add(
        host.repo(),
        "slipway-pull",
        &remote.url,
        remote.gpg_verify,
        remote.gpg_verify_summary,
        &key_refs,
        ca.as_deref(),
    )?;
    pull::pull(
        host.repo(),
        &pull::Source {
            via: temp.name,
            name: &remote.name,
            url: &remote.url,
            gpg_verify: remote.gpg_verify,
            tls_ca: ca.as_deref(),
            tls_ca_origin: ca_origin.as_deref(),
        },
        req,
    )?;
    if let Some(reference) = follow {
        temp.hand_over(reference, Some(&remote.name))?;
    }
    Ok(())
}

/// The key files `gpgkeypath` names in `file` (a `remotes.d` file of `dep`), read inside the
/// deployment (an absolute path there is the deployment's, never this machine's) and copied
/// into `dir`. None when the remote does not verify signatures.
fn copy_keys(
    host: &Host,
    dep: &ostree::Deployment,
    file: &Path,
    remote: &Remote,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    if !remote.gpg_verify {
        return Ok(vec![]);
    }
    let kf = glib::KeyFile::new();
    kf.load_from_file(file, glib::KeyFileFlags::NONE)
        .with_context(|| format!("reading {}", file.display()))?;
    let group = format!("remote \"{}\"", remote.name);
    let paths = kf
        .string(&group, "gpgkeypath")
        .map(|s| s.to_string())
        .unwrap_or_default();
    let tree = crate::sys::tree::Tree::open(&host.deployment_root(dep))?;
    let mut out = vec![];
    for (i, p) in paths
        .split([';', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let key = format!("{}: gpgkeypath of remote {}", file.display(), remote.name);
        let bytes = tree.read_named(&key, p)?;
        let dest = dir.join(format!("key-{i}.gpg"));
        std::fs::write(&dest, bytes).with_context(|| format!("writing {}", dest.display()))?;
        out.push(dest);
    }
    if out.is_empty() {
        bail!(
            "{}: remote {} verifies signatures (gpg-verify=true) but names no key (gpgkeypath)",
            file.display(),
            remote.name
        );
    }
    Ok(out)
}

/// The CA file `tls-ca-path` names in `file` (a `remotes.d` file of `dep`), read inside the
/// deployment (as the booted host would) and copied into `dir`; `None` when there is none.
fn copy_ca(
    host: &Host,
    dep: &ostree::Deployment,
    file: &Path,
    remote: &Remote,
    dir: &Path,
) -> Result<Option<PathBuf>> {
    let Some(p) = &remote.tls_ca else {
        return Ok(None);
    };
    let key = format!("{}: tls-ca-path of remote {}", file.display(), remote.name);
    let tree = crate::sys::tree::Tree::open(&host.deployment_root(dep))?;
    let pem = tree.read_named(&key, p)?;
    crate::sys::http::parse_ca(&pem, &key)?;
    let dest = dir.join("tls-ca.pem");
    std::fs::write(&dest, &pem).with_context(|| format!("writing {}", dest.display()))?;
    Ok(Some(dest))
}

/// The commit the refspec points at in the sysroot repository.
pub fn resolve(host: &Host, refspec: &Refspec) -> Result<Option<String>> {
    crate::repo::resolve(host.repo(), &refspec.to_string())
}

/// True if the commit and everything it references are in the repository (not only the
/// commit object, as after a metadata-only pull).
pub fn is_complete(repo: &ostree::Repo, commit: &str) -> bool {
    match repo.load_commit(commit) {
        Ok((_, state)) => !state.contains(ostree::RepoCommitState::PARTIAL),
        Err(_) => false,
    }
}

/// `tip` and its ancestors whose commit objects are in the repository, newest first.
pub fn history(repo: &ostree::Repo, tip: &str) -> Result<Vec<String>> {
    let mut out = vec![];
    let mut next = Some(tip.to_string());
    while let Some(c) = next.take() {
        let present = repo
            .has_object(ostree::ObjectType::Commit, &c, gio::Cancellable::NONE)
            .with_context(|| format!("looking up commit {c}"))?;
        if !present || out.contains(&c) {
            break;
        }
        next = crate::repo::commit_parent(repo, &c)?;
        out.push(c);
    }
    Ok(out)
}

/// How `slipway host deploy` names a commit.
fn looks_like_checksum_prefix(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Among `candidates`, the commit whose checksum starts with `target` or whose `version` is
/// `target`. `None` when nothing matches; an error when several do.
pub fn find_commit(
    repo: &ostree::Repo,
    candidates: &[String],
    target: &str,
) -> Result<Option<String>> {
    let prefix = target.to_ascii_lowercase();
    let mut found: Vec<String> = Vec::new();
    for c in candidates {
        let by_checksum = looks_like_checksum_prefix(target) && c.starts_with(&prefix);
        let by_version = !by_checksum
            && crate::repo::commit_meta_string(repo, c, "version")?.as_deref() == Some(target);
        if (by_checksum || by_version) && !found.contains(c) {
            found.push(c.clone());
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => bail!(
            "`{target}` names {} commits ({}); give more of the checksum",
            found.len(),
            found.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refspecs_parse() {
        assert_eq!(
            Refspec::parse("debian:a/b").unwrap(),
            Refspec {
                remote: Some("debian".into()),
                reference: "a/b".into()
            }
        );
        assert_eq!(Refspec::parse("a/b").unwrap().remote, None);
        assert_eq!(
            Refspec::parse("debian:a/b").unwrap().to_string(),
            "debian:a/b"
        );
        assert!(Refspec::parse("debian:").is_err());
        assert!(Refspec::parse(":a").is_err());
    }

    #[test]
    fn checksum_prefixes_need_four_hex_digits() {
        assert!(looks_like_checksum_prefix("d4ab"));
        assert!(!looks_like_checksum_prefix("d4a"));
        assert!(!looks_like_checksum_prefix("2.0"));
        assert!(!looks_like_checksum_prefix(&"a".repeat(65)));
    }
}
