//! `slipway compose tree` and `slipway compose commit`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::DEFAULT_CACHEDIR;

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Compose a treefile into a commit of an OSTree repository; prints the commit id.
    Tree(ComposeTreeArgs),
    /// Commit an already prepared directory tree (like `ostree commit`, with parallel writes).
    Commit(ComposeCommitArgs),
    /// Remove old entries from the package cache (composes do this too, after 30 days).
    PruneCache(PruneCacheArgs),
}

#[derive(Debug, Args)]
pub struct ComposeTreeArgs {
    /// The OSTree repository; created in `archive` mode when missing.
    #[arg(long, value_name = "REPO")]
    pub repo: PathBuf,
    /// The treefile (JSON) describing the host.
    #[arg(value_name = "TREEFILE")]
    pub treefile: PathBuf,
    /// Cache for apt downloads, package lists and work directories.
    #[arg(long, value_name = "DIR", env = "SLIPWAY_CACHEDIR", default_value = DEFAULT_CACHEDIR)]
    pub cachedir: PathBuf,
    /// Compose even when the inputs equal those of the ref's current commit.
    #[arg(long)]
    pub force_nocache: bool,
    /// Write a JSON report (commit, version, input hash, sizes, phase times) to FILE.
    #[arg(long, value_name = "FILE")]
    pub write_composejson_to: Option<PathBuf>,
    /// Sign the commit and the summary with this GPG key id.
    #[arg(long, value_name = "KEYID")]
    pub gpg_sign: Option<String>,
    /// GnuPG home directory holding the signing key.
    #[arg(long, value_name = "DIR", requires = "gpg_sign")]
    pub gpg_homedir: Option<PathBuf>,
    /// Resolve and report what would change, without building or committing.
    #[arg(long)]
    pub dry_run: bool,
    /// Add a string to the commit metadata (repeatable); `version=V` sets the version.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub add_metadata_string: Vec<(String, String)>,
    /// Host apt configuration directory whose sources are used.
    #[arg(long, value_name = "DIR", default_value = "/etc/apt", hide = true)]
    pub host_apt_dir: PathBuf,
    /// The slipway executable the host carries (stripped on the way in); default: this
    /// one. `make run` composes with the release build.
    #[arg(long, value_name = "PATH", env = "SLIPWAY_HOST_EXE")]
    pub host_slipway: Option<PathBuf>,
    /// Unpack every package afresh instead of using the package cache (`<cachedir>/packages`):
    /// the same tree, made the slow way.
    #[arg(long)]
    pub no_package_cache: bool,
}

#[derive(Debug, Args)]
pub struct PruneCacheArgs {
    /// The cache directory whose package cache (`<cachedir>/packages`) is pruned.
    #[arg(long, value_name = "DIR", env = "SLIPWAY_CACHEDIR", default_value = DEFAULT_CACHEDIR)]
    pub cachedir: PathBuf,
    /// Remove what no compose used for this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub max_age_days: u64,
    /// Then remove the least recently used until the package cache holds at most this many
    /// bytes (suffixes K, M, G).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("`{s}` is not a size (a number of bytes, or with K, M or G)"))
}

#[derive(Debug, Args)]
pub struct ComposeCommitArgs {
    /// The OSTree repository; created in `archive` mode when missing.
    #[arg(long, value_name = "REPO")]
    pub repo: PathBuf,
    /// The ref to move to the new commit.
    #[arg(long = "ref", value_name = "REF")]
    pub ostree_ref: String,
    /// The directory tree to commit.
    #[arg(value_name = "DIR")]
    pub tree: PathBuf,
    /// Commit subject.
    #[arg(long, value_name = "TEXT")]
    pub subject: Option<String>,
    /// Add a string to the commit metadata (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub add_metadata_string: Vec<(String, String)>,
    /// Worker threads writing objects (0: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Do not record the ref's current commit as the parent.
    #[arg(long)]
    pub orphan: bool,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// `slipway compose tree`: prints the commit id on stdout.
pub fn tree(a: ComposeTreeArgs) -> Result<()> {
    let opts = crate::compose::ComposeOptions {
        repo: a.repo,
        treefile: a.treefile,
        cachedir: a.cachedir,
        force_nocache: a.force_nocache,
        write_composejson_to: a.write_composejson_to,
        gpg_sign: a.gpg_sign,
        gpg_homedir: a.gpg_homedir,
        dry_run: a.dry_run,
        add_metadata: a.add_metadata_string,
        host_apt_dir: a.host_apt_dir,
        host_slipway: a.host_slipway,
        no_package_cache: a.no_package_cache,
    };
    let cj = crate::compose::compose_tree(&opts)?;
    if let Some(c) = &cj.commit
        && !opts.dry_run
    {
        crate::outln!("{c}")?;
    }
    Ok(())
}

/// `slipway compose commit`: prints the commit id on stdout.
pub fn commit(a: ComposeCommitArgs) -> Result<()> {
    if !a.tree.is_dir() {
        bail!("{}: not a directory", a.tree.display());
    }
    let repo = crate::repo::open_or_create_archive(&a.repo)?;
    let parent = if a.orphan {
        None
    } else {
        crate::repo::resolve(&repo, &a.ostree_ref)?
    };
    drop(repo);
    let dict = ostree::glib::VariantDict::new(None);
    for (k, v) in &a.add_metadata_string {
        use ostree::glib::prelude::ToVariant;
        dict.insert_value(k, &v.to_variant());
    }
    let progress = crate::sys::ui::Progress::new();
    let phase = progress.phase("commit", "writing objects", Some(0));
    let stats = crate::repo::commit::commit_tree(
        crate::repo::commit::CommitRequest {
            repo_path: &a.repo,
            tree: &a.tree,
            ostree_ref: &a.ostree_ref,
            parent: parent.as_deref(),
            subject: a.subject.as_deref().unwrap_or(&a.ostree_ref),
            metadata: dict,
            timestamp: crate::compose::commit_timestamp()?,
            threads: a.threads,
            skip_existing: parent.is_some(),
            gpg: None,
        },
        &|n, t| phase.inc_of(n, t),
    )?;
    phase.finish(&format!(
        "{} objects, {} written",
        stats.content_objects_total, stats.content_objects_written
    ));
    crate::outln!("{}", stats.commit)?;
    Ok(())
}

/// `slipway compose prune-cache`.
pub fn prune_cache(a: PruneCacheArgs) -> Result<()> {
    let dir = a.cachedir.join("packages");
    let r = crate::compose::dpkg::cache::PackageCache::prune(
        &dir,
        std::time::Duration::from_secs(a.max_age_days * 86400),
        a.max_size,
        crate::compose::dpkg::TREES_KEPT,
    )?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&r)?)?;
    } else if r.busy {
        crate::sys::ui::warn(format!(
            "{} is in use by a compose; nothing removed",
            dir.display()
        ));
    } else {
        crate::outln!(
            "removed {} entries ({} bytes) from {}{}",
            r.removed,
            r.bytes_freed,
            dir.display(),
            r.bytes_kept
                .map(|b| format!("; {b} bytes kept"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_parsing() {
        assert_eq!(
            parse_key_value("version=1.2").unwrap(),
            ("version".into(), "1.2".into())
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
