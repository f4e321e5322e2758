//! Run slipway's proxyDHCP and PXE boot server (ports 67 and 4011) on one interface, for the
//! load test of `bench/run.sh pxe` (the clients: `examples/pxe_dhcp_load.rs`):
//!
//! ```text
//! cargo run --release --example pxe_dhcp_serve -- INTERFACE SERVER_IP
//! ```
//!
//! Proxy mode, Debian's iPXE program names, HTTP port 8080 in the URLs; both sockets bound to
//! INTERFACE (root). A line per answer on stderr, as `slipway pxe serve` logs. The tokio
//! runtime `slipway pxe serve` uses. Runs until killed.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};
use slipway::pxe::dhcp::{ResponderConfig, ServeConfig, serve};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [interface, ip] = args.as_slice() else {
        bail!("usage: pxe_dhcp_serve INTERFACE SERVER_IP");
    };
    let ip: Ipv4Addr = ip
        .parse()
        .with_context(|| format!("{ip:?} is not an IPv4 address"))?;
    let mut cfg = ServeConfig::new(ResponderConfig::new(ip, 8080));
    cfg.interface = Some(interface.clone());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?
        .block_on(serve(cfg))
}
