//! Serve a directory with slipway's PXE HTTP server, for benchmarks against nginx:
//!
//! ```text
//! cargo run --release --example pxe_http_serve -- DIR [ADDR] [REPO]
//! ```
//!
//! DIR is served at `/`, REPO (an OSTree archive repository) at `/repo/`; ADDR defaults to
//! 127.0.0.1:8080. No request log (it would measure stderr). One tokio thread, as
//! `slipway pxe serve` runs it; file reads go to tokio's blocking pool. Stops on Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use slipway::pxe::http::{ServeConfig, Server, SimpleDynamic};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, addr, repo) = match args.as_slice() {
        [dir] => (dir, "127.0.0.1:8080", None),
        [dir, addr] => (dir, addr.as_str(), None),
        [dir, addr, repo] => (dir, addr.as_str(), Some(repo)),
        _ => bail!("usage: pxe_http_serve DIR [ADDR] [REPO]"),
    };
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("{addr:?} is not an address:port"))?;
    let mut cfg = ServeConfig::new(addr, dir, Arc::new(SimpleDynamic::default()));
    cfg.repo_dir = repo.map(PathBuf::from);
    cfg.log_requests = false;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(async {
        let server = Server::bind(cfg)?;
        eprintln!("pxe_http_serve: http://{}/", server.local_addr()?);
        server.run().await
    })
}
