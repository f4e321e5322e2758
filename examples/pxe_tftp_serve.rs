//! Serve a directory with slipway's PXE TFTP server, for benchmarks against dnsmasq:
//!
//! ```text
//! cargo run --release --example pxe_tftp_serve -- DIR [ADDR]
//! ```
//!
//! ADDR defaults to 127.0.0.1:6969. The tokio runtime `slipway pxe serve` uses (one worker per
//! core), default options (blksize up to 65464, windowsize up to 64). Completed transfers are
//! not logged (a line per transfer would measure stderr); every other outcome is. Runs until
//! killed.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use slipway::pxe::tftp::{TftpConfig, TftpServer, TransferResult, log_event};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, addr) = match args.as_slice() {
        [dir] => (dir, "127.0.0.1:6969"),
        [dir, addr] => (dir, addr.as_str()),
        _ => bail!("usage: pxe_tftp_serve DIR [ADDR]"),
    };
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("{addr:?} is not an address:port"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(async {
        let server = TftpServer::bind(addr, dir.as_ref(), TftpConfig::default())
            .await?
            .on_event(|e| {
                if !matches!(e.result, TransferResult::Complete) {
                    log_event(e);
                }
            });
        eprintln!("pxe_tftp_serve: tftp://{}/", server.local_addr());
        server.serve().await;
        Ok(())
    })
}
