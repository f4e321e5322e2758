//! `slipway install`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The kickstart: a file, or an http:// or https:// URL.
    #[arg(long, value_name = "URL|FILE")]
    pub kickstart: String,
    /// The whole disk to install on (default: the first fixed, writable, unmounted, blank
    /// disk by name; one holding data only when the kickstart says `clearpart --all`).
    #[arg(long, value_name = "DEV")]
    pub device: Option<String>,
    /// On failure, leave the disk as the failed install left it (default: wipe its
    /// partition table and file system signatures).
    #[arg(long)]
    pub preserve_on_error: bool,
    /// Public key that verifies the commits (default: /etc/slipway/installer-trusted.gpg
    /// when present); not needed with `ostreesetup --nogpg`.
    #[arg(long, value_name = "FILE")]
    pub trusted_key: Option<PathBuf>,
    /// CA certificates (PEM) that https:// servers (kickstart, repository) are
    /// checked against; the installed host's remote keeps them (default:
    /// /etc/slipway/installer-tls-ca.pem when present, else the machine's CA certificates).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// POST the result as JSON to this URL (default: slipway.report= on the kernel command
    /// line).
    #[arg(long, value_name = "URL")]
    pub report: Option<String>,
    /// Print the plan as JSON and stop: no script runs, no disk is touched.
    #[arg(long)]
    pub dry_run: bool,
    /// A checkout of the commit (the network installer's live root passes its own) whose
    /// objects are written into the new repository before the pull, so the pull fetches only
    /// what it lacks; the signed commit still decides what is deployed.
    #[arg(long, value_name = "DIR", conflicts_with = "seed_image")]
    pub seed: Option<PathBuf>,
    /// As --seed, from a squashfs image of the commit's tree (a file, such as the one the
    /// network installer's live root runs on, or a block device): unpacked beside the new
    /// repository and moved into it, each file checksummed. Needs unsquashfs.
    #[arg(long, value_name = "FILE")]
    pub seed_image: Option<PathBuf>,
}

pub fn run(a: InstallArgs) -> Result<()> {
    crate::install::install(&crate::install::InstallOptions {
        kickstart: a.kickstart,
        device: a.device,
        preserve_on_error: a.preserve_on_error,
        trusted_key: a.trusted_key,
        tls_ca: a.tls_ca,
        report: a.report,
        dry_run: a.dry_run,
        seed: a.seed,
        seed_image: a.seed_image,
    })
}
