//! Pulls from a remote, with signatures checked where the remote has a key: the one way
//! `host upgrade`, `host deploy`, the update agent and the installer fetch commits.
//!
//! libostree checks a commit's GPG signatures against the keys of the remote the pull goes
//! through (`gpgkeypath`, or the keyring `remote gpg-import` wrote). Two things make that
//! fail on good commits, and both are handled here:
//! - A pull by URL has no remote, so no keys: every pull goes through a remote configured in
//!   the repository, a [`TempRemote`] when the remote lives elsewhere (a deployment's /etc).
//! - A static delta carries the detached metadata (the signatures) its commit had when the
//!   delta was made; signing a commit after its compose (`ostree gpg-sign`) leaves a delta
//!   without signatures, which libostree refuses. The commit objects are therefore pulled
//!   first on their own (no deltas; each with its `.commitmeta`), then the content.
//!
//! A refused pull says which commit (or the summary, where the remote verifies its signatures:
//! `gpg-verify-summary`), which remote, and what was wrong: no signature at all, or signatures
//! only by keys the remote does not trust (named by fingerprint).

use anyhow::{Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::glib::translate::IntoGlib;
use ostree::prelude::*;

/// Where a pull comes from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The remote configured in the repository that the pull goes through (its keys verify).
    pub via: &'a str,
    /// The remote's name as the operator knows it, and its URL: for messages.
    pub name: &'a str,
    pub url: &'a str,
    /// Whether `via` verifies GPG signatures.
    pub gpg_verify: bool,
    /// The CA file `via` checks an `https://` server against (its `tls-ca-path`); `None`:
    /// the machine's CA certificates.
    pub tls_ca: Option<&'a std::path::Path>,
    /// Where that CA file comes from, for messages (`None`: its path).
    pub tls_ca_origin: Option<&'a str>,
}

/// What to pull: refs or commit checksums, flags and history depth (as libostree takes them).
#[derive(Debug, Clone)]
pub struct Request {
    pub refs: Vec<String>,
    pub flags: ostree::RepoPullFlags,
    pub depth: i32,
}

/// Pull `req` from `src` into `repo`.
pub fn pull(repo: &ostree::Repo, src: &Source, req: &Request) -> Result<()> {
    let commit_only = req.flags.contains(ostree::RepoPullFlags::COMMIT_ONLY);
    if src.gpg_verify && !commit_only {
        // The commit objects with their own signatures, never from a delta's copy.
        run(
            repo,
            src,
            &Request {
                flags: req.flags | ostree::RepoPullFlags::COMMIT_ONLY,
                depth: 0,
                ..req.clone()
            },
        )?;
    }
    run(repo, src, req)
}

fn run(repo: &ostree::Repo, src: &Source, req: &Request) -> Result<()> {
    let opts = glib::VariantDict::new(None);
    opts.insert_value("refs", &req.refs.to_variant());
    opts.insert_value("flags", &(req.flags.bits() as i32).to_variant());
    opts.insert_value("depth", &req.depth.to_variant());
    match repo.pull_with_options(src.via, &opts.end(), None, gio::Cancellable::NONE) {
        Ok(()) => Ok(()),
        Err(e) => {
            let tls = tls_refusal(src, &e.to_string());
            let err = anyhow::Error::new(e).context(format!("pulling from {}", src.url));
            if let Some(why) = tls {
                return Err(err.context(why));
            }
            if !src.gpg_verify {
                return Err(err);
            }
            let why = match summary_refusal(repo, src) {
                Ok(None) => refusal(repo, src, &req.refs),
                other => other,
            };
            match why {
                Ok(Some(why)) => Err(err.context(why)),
                Ok(None) => Err(err),
                Err(e) => {
                    crate::sys::ui::warn(format!("could not tell why the pull failed: {e:#}"));
                    Err(err)
                }
            }
        }
    }
}

/// If the pull failed on the server's TLS certificate (libcurl's message), why, in words: the
/// URL and what its certificate was checked against.
fn tls_refusal(src: &Source, message: &str) -> Option<String> {
    let host = src.url.strip_prefix("https://")?.split('/').next()?;
    if !["SSL", "certificate", "TLS"]
        .iter()
        .any(|w| message.contains(w))
    {
        return None;
    }
    Some(format!(
        "the TLS certificate of {host} (remote {}) is not trusted: it was checked against {}; \
         give the CA that signed the server's certificate (the remote's tls-ca-path)",
        src.name,
        match (src.tls_ca_origin, src.tls_ca) {
            (Some(o), _) => format!("the CA file of {o}"),
            (None, Some(p)) => format!("the CA file {}", p.display()),
            (None, None) => "the machine's CA certificates".to_string(),
        }
    ))
}

/// If the pull of `refs` failed on signatures, why, in words: each commit is fetched on its
/// own (commit object and detached metadata only, into a throw-away repository; the target
/// repository is not touched) and its signatures checked against `src.via`'s keys.
fn refusal(repo: &ostree::Repo, src: &Source, refs: &[String]) -> Result<Option<String>> {
    let tmp = tempfile::Builder::new()
        .prefix("slipway-signatures-")
        .tempdir()
        .context("creating a directory to look at the refused commit")?;
    let probe = ostree::Repo::new_for_path(tmp.path());
    probe
        .create(ostree::RepoMode::Archive, gio::Cancellable::NONE)
        .context("creating a repository to look at the refused commit")?;
    let opts = glib::VariantDict::new(None);
    opts.insert_value("gpg-verify", &false.to_variant());
    opts.insert_value("gpg-verify-summary", &false.to_variant());
    if let Some(ca) = src.tls_ca {
        opts.insert_value("tls-ca-path", &ca.display().to_string().to_variant());
    }
    probe
        .remote_add(
            "probe",
            Some(src.url),
            Some(&opts.end()),
            gio::Cancellable::NONE,
        )
        .context("adding the remote to look at the refused commit")?;
    let opts = glib::VariantDict::new(None);
    opts.insert_value("refs", &refs.to_variant());
    opts.insert_value(
        "flags",
        &(ostree::RepoPullFlags::COMMIT_ONLY.bits() as i32).to_variant(),
    );
    probe
        .pull_with_options("probe", &opts.end(), None, gio::Cancellable::NONE)
        .with_context(|| format!("fetching the commit objects of {} alone", refs.join(", ")))?;
    for r in refs {
        let commit = if ostree::validate_checksum_string(r).is_ok() {
            r.clone()
        } else {
            super::resolve_required(&probe, &format!("probe:{r}"))?
        };
        let (object, _) = probe
            .load_commit(&commit)
            .with_context(|| format!("reading commit {commit}"))?;
        let sigs: Vec<u8> = probe
            .read_commit_detached_metadata(&commit, gio::Cancellable::NONE)
            .with_context(|| format!("reading the detached metadata of {commit}"))?
            .and_then(|m| glib::VariantDict::new(Some(&m)).lookup_value("ostree.gpgsigs", None))
            .map(|v| {
                v.iter()
                    .flat_map(|s| {
                        s.fixed_array::<u8>()
                            .map(<[u8]>::to_vec)
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let whose = format!("commit {commit} from remote {} ({})", src.name, src.url);
        if sigs.is_empty() {
            return Ok(Some(format!(
                "{whose} has no signature, and the remote takes only commits signed by a key it trusts"
            )));
        }
        let result = repo
            .gpg_verify_data(
                Some(src.via),
                &object.data_as_bytes(),
                &glib::Bytes::from_owned(sigs),
                None::<&gio::File>,
                None::<&gio::File>,
                gio::Cancellable::NONE,
            )
            .with_context(|| format!("checking the signatures of {commit}"))?;
        if result.count_valid() == 0 {
            return Ok(Some(format!(
                "{whose} is signed only by {}, not by a key the remote trusts",
                signers(&result)
            )));
        }
    }
    Ok(None)
}

/// The fingerprints of the keys that made the signatures of `result`.
fn signers(result: &ostree::GpgVerifyResult) -> String {
    let fingerprint = ostree::GpgSignatureAttr::Fingerprint.into_glib() as usize;
    let keys: Vec<String> = (0..result.count_all())
        .filter_map(|i| {
            result
                .all(i)
                .try_child_value(fingerprint)
                .and_then(|v| v.str().map(String::from))
        })
        .collect();
    if keys.is_empty() {
        "unknown keys".to_string()
    } else {
        keys.join(", ")
    }
}

/// If `src.via` verifies the summary's signatures (`gpg-verify-summary`) and the pull failed
/// on them, why, in words: the remote's `summary` and `summary.sig` are fetched again and
/// checked against `src.via`'s keys.
fn summary_refusal(repo: &ostree::Repo, src: &Source) -> Result<Option<String>> {
    if !repo
        .remote_get_gpg_verify_summary(src.via)
        .with_context(|| format!("reading gpg-verify-summary of remote {}", src.via))?
    {
        return Ok(None);
    }
    let whose = format!("the summary of remote {} ({})", src.name, src.url);
    let Some(summary) = fetch(src, "summary")? else {
        return Ok(Some(format!(
            "{whose} is missing, and the remote verifies the summary's signatures \
             (gpg-verify-summary): run `ostree summary -u --gpg-sign=KEY` on the repository"
        )));
    };
    let Some(sigs) = fetch(src, "summary.sig")? else {
        return Ok(Some(format!(
            "{whose} has no signature, and the remote takes only a summary signed by a key it \
             trusts: sign it (`ostree summary -u --gpg-sign=KEY`), or set \
             gpg-verify-summary=false for this remote"
        )));
    };
    let valid = repo.verify_summary(
        src.via,
        &glib::Bytes::from_owned(summary),
        &glib::Bytes::from_owned(sigs),
        gio::Cancellable::NONE,
    );
    Ok(match valid {
        Ok(r) if r.count_valid() > 0 => None,
        Ok(r) => Some(format!(
            "{whose} is signed only by {}, not by a key the remote trusts",
            signers(&r)
        )),
        Err(e) => Some(format!(
            "{whose} is not signed by a key the remote trusts: {e}"
        )),
    })
}

/// The repository file `name` at the source's URL (`file://`, `http://` or `https://`, the
/// latter checked against the source's CA); `None` if it is not there.
fn fetch(src: &Source, name: &str) -> Result<Option<Vec<u8>>> {
    const LIMIT: u64 = 64 << 20;
    let url = src.url.trim_end_matches('/');
    if let Some(path) = url.strip_prefix("file://") {
        let p = std::path::Path::new(path).join(name);
        return match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        };
    }
    let agent = crate::sys::http::agent_with_ca(std::time::Duration::from_secs(60), 3, src.tls_ca)?;
    crate::sys::http::get_bytes(&agent, &format!("{url}/{name}"), LIMIT)
}

/// A remote that exists for one pull, in the repository's own config: deleted again on drop
/// (with its refs).
pub struct TempRemote<'a> {
    repo: &'a ostree::Repo,
    pub name: &'static str,
}

impl<'a> TempRemote<'a> {
    /// Add remote `name` for `url`; `gpg_keys`, when given, are the key files that verify it
    /// (`gpgkeypath`), and signatures are then checked: the commits' when `gpg_verify`, the
    /// summary's when `gpg_verify_summary`; an `https://` server is checked against `tls_ca`
    /// (`tls-ca-path`) when given.
    pub fn add(
        repo: &'a ostree::Repo,
        name: &'static str,
        url: &str,
        gpg_verify: bool,
        gpg_verify_summary: bool,
        gpg_keys: &[&std::path::Path],
        tls_ca: Option<&std::path::Path>,
    ) -> Result<TempRemote<'a>> {
        let opts = glib::VariantDict::new(None);
        if let Some(ca) = tls_ca {
            let ca = std::path::absolute(ca).with_context(|| format!("{}", ca.display()))?;
            opts.insert_value("tls-ca-path", &ca.display().to_string().to_variant());
        }
        opts.insert_value("gpg-verify", &gpg_verify.to_variant());
        opts.insert_value("gpg-verify-summary", &gpg_verify_summary.to_variant());
        if !gpg_keys.is_empty() {
            let paths: Vec<String> = gpg_keys.iter().map(|p| p.display().to_string()).collect();
            opts.insert_value("gpgkeypath", &paths.join(";").to_variant());
        }
        // A remote of this name left behind by a process that was killed, and the summary
        // libostree cached for it: a remote's cache outlives the remote, and a summary
        // another URL served under this name must never stand for this one's.
        let _ = repo.remote_delete(name, gio::Cancellable::NONE);
        forget_summary(repo, name)?;
        repo.remote_change(
            None::<&gio::File>,
            ostree::RepoRemoteChange::AddIfNotExists,
            name,
            Some(url),
            Some(&opts.end()),
            gio::Cancellable::NONE,
        )
        .with_context(|| format!("adding a temporary remote for {url}"))?;
        Ok(TempRemote { repo, name })
    }

    /// The commit the pull set `NAME:REF` to; the ref is removed.
    pub fn take(&self, reference: &str) -> Result<String> {
        let pulled = format!("{}:{reference}", self.name);
        let commit = super::resolve_required(self.repo, &pulled)?;
        self.repo
            .set_ref_immediate(Some(self.name), reference, None, gio::Cancellable::NONE)
            .with_context(|| format!("removing {pulled}"))?;
        Ok(commit)
    }

    /// [`TempRemote::take`], then `REF` of `remote` (a local ref for `None`) set to the commit.
    pub fn hand_over(&self, reference: &str, remote: Option<&str>) -> Result<String> {
        let commit = self.take(reference)?;
        self.repo
            .set_ref_immediate(remote, reference, Some(&commit), gio::Cancellable::NONE)
            .with_context(|| format!("setting {reference} to {commit}"))?;
        Ok(commit)
    }
}

impl Drop for TempRemote<'_> {
    fn drop(&mut self) {
        if let Ok(refs) = self
            .repo
            .list_refs(Some(&format!("{}:", self.name)), gio::Cancellable::NONE)
        {
            for r in refs.keys() {
                let reference = r.split_once(':').map_or(r.as_str(), |(_, r)| r);
                let _ = self.repo.set_ref_immediate(
                    Some(self.name),
                    reference,
                    None,
                    gio::Cancellable::NONE,
                );
            }
        }
        if let Err(e) = self.repo.remote_delete(self.name, gio::Cancellable::NONE) {
            crate::sys::ui::warn(format!("removing the temporary remote {}: {e}", self.name));
        }
        if let Err(e) = forget_summary(self.repo, self.name) {
            crate::sys::ui::warn(format!("{e:#}"));
        }
    }
}

/// Remove the summary (and its signatures) libostree cached for remote `name` in `repo`
/// (`tmp/cache/summaries/NAME` and `NAME.sig`); deleting a remote leaves them.
fn forget_summary(repo: &ostree::Repo, name: &str) -> Result<()> {
    let Some(root) = repo.path().path() else {
        return Ok(());
    };
    let dir = root.join("tmp/cache/summaries");
    for file in [name.to_string(), format!("{name}.sig")] {
        let p = dir.join(file);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e)
                    .with_context(|| format!("removing the cached summary {}", p.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary libostree cached under a temporary remote's name is gone when the remote
    /// is added and again when it is dropped: never taken for another URL's.
    #[test]
    fn temporary_remote_starts_and_ends_without_a_cached_summary() {
        let dir = tempfile::tempdir().unwrap();
        let repo = ostree::Repo::new(&gio::File::for_path(dir.path().join("repo")));
        repo.create(ostree::RepoMode::BareUser, gio::Cancellable::NONE)
            .unwrap();
        let cache = dir.path().join("repo/tmp/cache/summaries");
        let leave_cache = || {
            std::fs::create_dir_all(&cache).unwrap();
            std::fs::write(cache.join("slipway-pull"), b"summary").unwrap();
            std::fs::write(cache.join("slipway-pull.sig"), b"signatures").unwrap();
            std::fs::write(cache.join("other"), b"another remote's").unwrap();
        };
        let cached = || {
            let mut names: Vec<String> = std::fs::read_dir(&cache)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        leave_cache();
        let temp = TempRemote::add(
            &repo,
            "slipway-pull",
            "http://127.0.0.1:1/repo",
            false,
            false,
            &[],
            None,
        )
        .unwrap();
        assert_eq!(cached(), ["other"]);
        leave_cache();
        drop(temp);
        assert_eq!(cached(), ["other"]);
        assert!(repo.remote_list().is_empty());
    }
}
