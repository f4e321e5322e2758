//! The client side of `slipway pxe status`: `GET {server}/status` of a running `pxe serve`,
//! through the one HTTP set-up of `sys::http`, as the JSON document (`schema` 1) the server
//! writes; [`crate::pxe::serve::status_table`] prints it for people.

use std::time::Duration;

use anyhow::{Context, Result};

/// How long one status request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A status document is one record per machine: a few KiB each.
const MAX_STATUS: u64 = 16 << 20;

pub struct Client {
    url: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the server at `server` (`http://IP:PORT`).
    pub fn new(server: &str) -> Client {
        Client {
            url: format!("{}/status", server.trim_end_matches('/')),
            agent: crate::sys::http::agent(TIMEOUT, 0),
        }
    }

    /// The server's status document.
    pub fn fetch(&self) -> Result<serde_json::Value> {
        let body = crate::sys::http::get_text(&self.agent, &self.url, MAX_STATUS)?;
        serde_json::from_str(&body).with_context(|| format!("GET {}: not JSON", self.url))
    }
}
