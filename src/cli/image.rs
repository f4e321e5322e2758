//! `slipway image`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::DEFAULT_CACHEDIR;

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
    /// The public GPG key (binary or armored) that verifies the commit: the remote checks
    /// signatures, with this key in the image. Required when the commit is signed.
    #[arg(
        long = "trusted-key",
        alias = "remote-gpg-key",
        value_name = "FILE",
        requires = "remote_url"
    )]
    pub remote_gpg_key: Option<PathBuf>,
    /// CA certificates (PEM) that an https:// --remote-url's server is checked against: put
    /// into the image for the remote (tls-ca-path). Default: the host's CA certificates.
    #[arg(long = "tls-ca", value_name = "FILE", requires = "remote_url")]
    pub remote_tls_ca: Option<PathBuf>,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// The stateroot (and remote) name.
    #[arg(
        long = "stateroot",
        alias = "osname",
        value_name = "NAME",
        default_value = "debian"
    )]
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

/// `slipway image`: the summary goes to stdout with `--json`.
pub fn run(a: ImageArgs) -> Result<()> {
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
        remote_gpg_key: a.remote_gpg_key,
        remote_tls_ca: a.remote_tls_ca,
        force: a.force,
        osname: a.osname,
        cachedir: a.cachedir,
        compress: a.compress,
    };
    let summary = crate::image::build_image(&opts)?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(())
}
