//! The command line: one clap struct per verb, and the one `match` that routes each verb to
//! its module. Parsing does no I/O.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

/// Default cache directory (apt downloads, package lists, work directories).
pub const DEFAULT_CACHEDIR: &str = "/var/cache/slipway";

/// `slipway --version`: the release and the hash of the sources it was built from (the hash
/// that compose counts in every input hash).
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (source ",
    env!("SLIPWAY_SOURCE_HASH"),
    ")"
);

/// slipway builds immutable Debian container hosts with OSTree and keeps them healthy.
#[derive(Debug, Parser)]
#[command(
    name = "slipway",
    version,
    long_version = LONG_VERSION,
    help_expected = true,
    propagate_version = true
)]
pub struct Cli {
    /// Print only errors and warnings on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build OSTree commits from treefiles.
    #[command(subcommand)]
    Compose(ComposeCommand),
    /// Turn a commit into a bootable disk image (raw, qcow2) or a Vagrant box.
    Image(ImageArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    /// A raw disk image.
    Raw,
    /// A qcow2 disk image.
    Qcow2,
    /// A Vagrant box for the libvirt provider.
    VagrantLibvirt,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FirmwareArg {
    /// SeaBIOS / legacy BIOS only.
    Bios,
    /// UEFI only.
    Uefi,
    /// One GPT disk that boots under both.
    Hybrid,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The OSTree repository holding the commit.
    #[arg(long, value_name = "REPO")]
    pub repo: PathBuf,
    /// The ref to deploy.
    #[arg(long = "ref", value_name = "REF")]
    pub ostree_ref: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "raw")]
    pub format: FormatArg,
    /// Output file (written to a temporary file beside it, renamed at the end).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Firmware the image boots under.
    #[arg(long, value_enum, default_value = "hybrid")]
    pub firmware: FirmwareArg,
    /// Disk size (e.g. 8G); default: 8G, or what the commit needs if more.
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,
    /// Apply the host configuration of this kickstart (users, sshkey, rootpw, bootloader
    /// --append, network, timezone, services, %post).
    #[arg(long, value_name = "KS")]
    pub kickstart: Option<PathBuf>,
    /// URL of the OSTree repository the host upgrades from (an OSTree remote named for the OS).
    #[arg(long, value_name = "URL")]
    pub remote_url: Option<String>,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// The OS (stateroot and remote) name.
    #[arg(long, value_name = "NAME", default_value = "debian")]
    pub osname: String,
    /// Compress qcow2 clusters (default: on for Vagrant boxes, off for qcow2).
    #[arg(long, value_name = "BOOL")]
    pub compress: Option<bool>,
    /// Cache and work directory.
    #[arg(long, value_name = "DIR", env = "SLIPWAY_CACHEDIR", default_value = DEFAULT_CACHEDIR)]
    pub cachedir: PathBuf,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Compose a treefile into a commit of an OSTree repository; prints the commit id.
    Tree(ComposeTreeArgs),
    /// Commit an already prepared directory tree (like `ostree commit`, with parallel writes).
    Commit(ComposeCommitArgs),
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

/// Route a parsed command line to the library.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Compose(ComposeCommand::Tree(a)) => {
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
            };
            let cj = crate::compose::compose_tree(&opts)?;
            if let Some(c) = &cj.commit
                && !opts.dry_run
            {
                println!("{c}");
            }
            Ok(())
        }
        Command::Image(a) => {
            let size = a
                .size
                .as_deref()
                .map(crate::image::disk::parse_size)
                .transpose()?;
            let opts = crate::image::ImageOptions {
                repo: a.repo,
                ostree_ref: a.ostree_ref,
                format: match a.format {
                    FormatArg::Raw => crate::image::Format::Raw,
                    FormatArg::Qcow2 => crate::image::Format::Qcow2,
                    FormatArg::VagrantLibvirt => crate::image::Format::VagrantLibvirt,
                },
                output: a.output,
                firmware: match a.firmware {
                    FirmwareArg::Bios => crate::image::Firmware::Bios,
                    FirmwareArg::Uefi => crate::image::Firmware::Uefi,
                    FirmwareArg::Hybrid => crate::image::Firmware::Hybrid,
                },
                size,
                kickstart: a.kickstart,
                remote_url: a.remote_url,
                force: a.force,
                osname: a.osname,
                cachedir: a.cachedir,
                compress: a.compress,
            };
            let summary = crate::image::build_image(&opts)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            }
            Ok(())
        }
        Command::Compose(ComposeCommand::Commit(a)) => {
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
            let stats = crate::compose::commit::commit_tree(
                crate::compose::commit::CommitRequest {
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
            println!("{}", stats.commit);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent_and_documented() {
        Cli::command().debug_assert();
    }

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
