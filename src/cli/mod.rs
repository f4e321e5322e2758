//! The command line: one file per verb with its clap types and the few lines that call the
//! library, and here the one `match` that routes each verb. Parsing does no I/O.

pub mod compose;
pub mod generate;
pub mod host;
pub mod image;
pub mod install;
pub mod pxe;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Default cache directory (apt downloads, package lists, work directories).
pub const DEFAULT_CACHEDIR: &str = "/var/cache/slipway";

/// Exit status when a verb had nothing to do: `host upgrade` already up to date (or
/// `--check` found nothing newer), `host deploy` of the current default. rpm-ostree uses 77
/// the same way (`--unchanged-exit-77`).
pub const EXIT_UNCHANGED: i32 = 77;

/// Ends slipway with this exit status after a verb has printed its result: returned as an
/// error through `anyhow` so the verb stops there, and matched in `main`, which prints
/// nothing more. Errors are status 1, command line mistakes 2 (clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCode(pub i32);

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitCode {}

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
    Compose(compose::ComposeCommand),
    /// Turn a commit into a bootable disk image (raw, qcow2) or a Vagrant box.
    Image(image::ImageArgs),
    /// Install a commit onto a disk of this machine as a kickstart says (the network
    /// installer).
    Install(install::InstallArgs),
    /// Upgrade, roll back, pin and clean up the deployments of a host (or an offline
    /// sysroot).
    #[command(subcommand)]
    Host(host::HostCommand),
    /// Network boot: the installer's boot files for refs of a repository.
    #[command(subcommand)]
    Pxe(pxe::PxeCommand),
    /// Man pages and shell completions.
    #[command(subcommand)]
    Generate(generate::GenerateCommand),
}

/// Route a parsed command line to the library.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Compose(compose::ComposeCommand::Tree(a)) => compose::tree(a),
        Command::Compose(compose::ComposeCommand::Commit(a)) => compose::commit(a),
        Command::Compose(compose::ComposeCommand::PruneCache(a)) => compose::prune_cache(a),
        Command::Image(a) => image::run(a),
        Command::Install(a) => install::run(a),
        Command::Host(c) => host::run(c),
        Command::Pxe(c) => pxe::run(c),
        Command::Generate(c) => generate::run(c),
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
}
