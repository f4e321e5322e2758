//! `slipway pxe`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};

use super::DEFAULT_CACHEDIR;

#[derive(Debug, Subcommand)]
pub enum PxeCommand {
    /// Write what a network boot needs for one or more refs into a directory: the commit's
    /// kernel and initramfs, the installer's live root, iPXE, PXELINUX and GRUB menus and
    /// boot programs.
    Build(PxeBuildArgs),
    /// Serve a `pxe build` directory to machines booting from the network: DHCP (proxy, full
    /// or off), TFTP and HTTP (the directory, the repository at /repo, per-machine boot
    /// scripts, kickstarts and install reports), with per-machine profiles and state.
    Serve(PxeServeArgs),
    /// Show what the machines of a running `pxe serve` are doing.
    Status(PxeStatusArgs),
}

#[derive(Debug, Args)]
pub struct PxeServeArgs {
    /// The directory `slipway pxe build` wrote.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The OSTree archive repository the installer pulls from (served at /repo).
    #[arg(long, value_name = "REPO")]
    pub repo: PathBuf,
    /// The boot network's interface: DHCP sockets are bound to it, and its IPv4 address is
    /// the server's unless --server-ip says otherwise.
    #[arg(long, value_name = "IF")]
    pub interface: Option<String>,
    /// proxy: boot information beside the site's DHCP server; full: addresses too (--range);
    /// off: no DHCP.
    #[arg(
        long,
        value_name = "MODE",
        default_value = "proxy",
        value_parser = clap::builder::PossibleValuesParser::new(["proxy", "full", "off"])
            .try_map(|s: String| s.parse::<crate::pxe::dhcp::DhcpMode>())
    )]
    pub dhcp: crate::pxe::dhcp::DhcpMode,
    /// Full DHCP's address range, A,B.
    #[arg(long, value_name = "A,B")]
    pub range: Option<String>,
    /// The HTTP port.
    #[arg(long, value_name = "N", default_value_t = 8080)]
    pub http_port: u16,
    /// The TFTP port.
    #[arg(long, value_name = "N", default_value_t = crate::pxe::tftp::DEFAULT_PORT)]
    pub tftp_port: u16,
    /// The DHCP server port (tests).
    #[arg(long, value_name = "N", default_value_t = crate::pxe::dhcp::DHCP_SERVER_PORT, hide = true)]
    pub dhcp_port: u16,
    /// The PXE boot server port (tests).
    #[arg(long, value_name = "N", default_value_t = crate::pxe::dhcp::PXE_PORT, hide = true)]
    pub pxe_port: u16,
    /// The port DHCP replies go to (tests).
    #[arg(long, value_name = "N", default_value_t = crate::pxe::dhcp::DHCP_CLIENT_PORT, hide = true)]
    pub dhcp_client_port: u16,
    /// Where broadcast DHCP replies go (tests).
    #[arg(long, value_name = "IP", default_value_t = Ipv4Addr::BROADCAST, hide = true)]
    pub dhcp_broadcast_ip: Ipv4Addr,
    /// Per-machine profiles (JSON; see README, "pxe serve").
    #[arg(long, value_name = "FILE")]
    pub profiles: Option<PathBuf>,
    /// Where each machine's state (and full DHCP's leases) is kept.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/slipway/pxe")]
    pub state_dir: PathBuf,
    /// The server's address on the boot network (default: --interface's IPv4 address).
    #[arg(long, value_name = "IP")]
    pub server_ip: Option<Ipv4Addr>,
    /// The address HTTP and TFTP listen on (default: the server's address only; 0.0.0.0 for
    /// every network this machine is on).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::IpAddr>,
    /// Serve the same routes over HTTPS too, with this certificate chain (PEM, the server's
    /// own first); kickstarts then get the repository's https URL as {{repo}}. Boot files stay
    /// on HTTP for the firmware.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The HTTPS port (0: any free one; the kickstarts name the one bound).
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 8443,
        requires = "tls_cert"
    )]
    pub https_port: u16,
}

#[derive(Debug, Args)]
pub struct PxeStatusArgs {
    /// The `pxe serve` to ask.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Print the server's JSON.
    #[arg(long)]
    pub json: bool,
    /// Ask again every 2 seconds until interrupted.
    #[arg(long)]
    pub watch: bool,
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
    #[arg(long = "trusted-key", alias = "gpg-key", value_name = "FILE")]
    pub gpg_key: Option<PathBuf>,
    /// CA certificates (PEM) the installer checks https:// servers against (an https://
    /// repository or kickstart), put into the installer image; the installed host's remote
    /// keeps them.
    #[arg(long = "tls-ca", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
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
        PxeCommand::Serve(a) => serve(a),
        PxeCommand::Status(a) => status(a),
    }
}

fn serve(a: PxeServeArgs) -> Result<()> {
    crate::pxe::serve::serve(&crate::pxe::serve::ServeOptions {
        dir: a.dir,
        repo: a.repo,
        interface: a.interface,
        dhcp: a.dhcp,
        range: a.range,
        http_port: a.http_port,
        tftp_port: a.tftp_port,
        dhcp_port: a.dhcp_port,
        pxe_port: a.pxe_port,
        dhcp_client_port: a.dhcp_client_port,
        dhcp_broadcast_ip: a.dhcp_broadcast_ip,
        profiles: a.profiles,
        state_dir: a.state_dir,
        server_ip: a.server_ip,
        listen: a.listen,
        tls: match (a.tls_cert, a.tls_key) {
            (Some(cert), Some(key)) => Some(crate::pxe::serve::ServeTls {
                cert,
                key,
                port: a.https_port,
            }),
            _ => None,
        },
    })
}

fn status(a: PxeStatusArgs) -> Result<()> {
    let client = crate::pxe::status::Client::new(&a.server);
    loop {
        let v = client.fetch()?;
        if a.json {
            crate::outln!("{}", serde_json::to_string_pretty(&v)?)?;
        } else {
            if a.watch {
                // Clear the terminal and go home, like watch(1).
                crate::sys::ui::out("\x1b[H\x1b[2J")?;
            }
            crate::sys::ui::out(crate::pxe::serve::status_table(&v))?;
        }
        if !a.watch {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn build(a: PxeBuildArgs) -> Result<()> {
    let opts = crate::pxe::build::PxeBuildOptions {
        repo: a.repo,
        refs: a.refs,
        output: a.output,
        kickstart: a.kickstart,
        gpg_key: a.gpg_key,
        tls_ca: a.tls_ca,
        installer_slipway: a.installer_slipway,
        cachedir: a.cachedir,
    };
    let summary = crate::pxe::build::build(&opts)?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(())
}
