//! `slipway pxe`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::DEFAULT_CACHEDIR;

#[derive(Debug, Subcommand)]
pub enum PxeCommand {
    /// Write what a network boot needs for one or more refs into a directory: the commit's
    /// kernel and initramfs, the installer's live root, iPXE, PXELINUX and GRUB menus and
    /// boot programs.
    Build(PxeBuildArgs),
}

#[derive(Debug, Args)]
pub struct PxeBuildArgs {
    /// The OSTree repository holding the commits.
    #[arg(long, value_name = "REPO")]
    pub repo: PathBuf,
    /// A ref to build the installer for (repeatable; refs built before stay in DIR).
    #[arg(long = "ref", value_name = "REF", required = true)]
    pub refs: Vec<String>,
    /// The output directory (created; one that `pxe build` wrote before is updated).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// The installer's default kickstart (checked before any work; must be one file).
    #[arg(long, value_name = "KS")]
    pub kickstart: Option<PathBuf>,
    /// The public key that verifies commits, put into the installer image (never fetched
    /// over the network).
    #[arg(long, value_name = "FILE")]
    pub gpg_key: Option<PathBuf>,
    /// The slipway executable the installer carries (stripped on the way in); default: this
    /// one.
    #[arg(long, value_name = "PATH", env = "SLIPWAY_HOST_EXE")]
    pub installer_slipway: Option<PathBuf>,
    /// Cache and work directory (checkouts, downloaded Debian packages).
    #[arg(long, value_name = "DIR", env = "SLIPWAY_CACHEDIR", default_value = DEFAULT_CACHEDIR)]
    pub cachedir: PathBuf,
    /// Print what was built as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `slipway pxe VERB`.
pub fn run(c: PxeCommand) -> Result<()> {
    match c {
        PxeCommand::Build(a) => build(a),
    }
}

fn build(a: PxeBuildArgs) -> Result<()> {
    let opts = crate::pxe::build::PxeBuildOptions {
        repo: a.repo,
        refs: a.refs,
        output: a.output,
        kickstart: a.kickstart,
        gpg_key: a.gpg_key,
        installer_slipway: a.installer_slipway,
        cachedir: a.cachedir,
    };
    let summary = crate::pxe::build::build(&opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}
