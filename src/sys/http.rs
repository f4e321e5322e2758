//! The one HTTP client set-up (ureq, `http://` and `https://`): the installer (kickstart,
//! reports), FleetLock, the pull's explanations and `slipway pxe status` all get their agent
//! here, so they share the timeouts, no proxy from the environment, a bounded number of
//! redirects, slipway's user agent, the certificates an `https://` server is checked against
//! (a CA file the operator names, else the machine's CA bundle), and errors that name the
//! method and URL and carry the start of the response body.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// How long a connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an answer's body is read into an error or a small document.
pub const MAX_ERROR_BODY: u64 = 64 * 1024;

/// The machine's CA certificates (Debian's `ca-certificates`): what an `https://` server is
/// checked against when no CA file is named.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// An agent with slipway's settings: `total` bounds each request, `redirects` how many it
/// follows; `https://` servers are checked against the machine's CA bundle (ureq's built-in
/// roots where the machine has none). Non-2xx statuses are answers, not errors (callers
/// decide; see [`get_text`]).
pub fn agent(total: Duration, redirects: u32) -> ureq::Agent {
    static SYSTEM: std::sync::OnceLock<RootCerts> = std::sync::OnceLock::new();
    let roots = SYSTEM.get_or_init(|| {
        read_ca(Path::new(SYSTEM_CA_BUNDLE))
            .map(|c| RootCerts::new_with_certs(&c))
            .unwrap_or(RootCerts::WebPki)
    });
    build(total, redirects, roots.clone())
}

/// [`agent`], with `https://` servers checked against the certificates of `ca` only (a PEM
/// file: the CA of a site's own servers), or the machine's CA bundle for `None`.
pub fn agent_with_ca(total: Duration, redirects: u32, ca: Option<&Path>) -> Result<ureq::Agent> {
    match ca {
        None => Ok(agent(total, redirects)),
        Some(p) => Ok(agent_with_certs(total, redirects, read_ca(p)?)),
    }
}

/// [`agent`], with `https://` servers checked against `certs` only (see [`parse_ca`]).
pub fn agent_with_certs(
    total: Duration,
    redirects: u32,
    certs: Vec<Certificate<'static>>,
) -> ureq::Agent {
    build(total, redirects, RootCerts::new_with_certs(&certs))
}

/// The certificates of the PEM file `path`: at least one, or an error naming the file.
pub fn read_ca(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let pem =
        std::fs::read(path).with_context(|| format!("reading the CA file {}", path.display()))?;
    parse_ca(&pem, &path.display().to_string())
}

/// The certificates of `pem`, the contents of the CA file `what`: at least one, or an error
/// naming it.
pub fn parse_ca(pem: &[u8], what: &str) -> Result<Vec<Certificate<'static>>> {
    let mut certs = vec![];
    for item in ureq::tls::parse_pem(pem) {
        match item.with_context(|| format!("{what}: not a PEM file"))? {
            PemItem::Certificate(c) => certs.push(c),
            _ => bail!("{what}: holds a private key; a CA file holds only certificates"),
        }
    }
    if certs.is_empty() {
        bail!("{what}: no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)");
    }
    Ok(certs)
}

fn build(total: Duration, redirects: u32, roots: RootCerts) -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .timeout_connect(Some(CONNECT_TIMEOUT.min(total)))
        .timeout_global(Some(total))
        .http_status_as_error(false)
        .max_redirects(redirects)
        .proxy(None)
        .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// At most `limit` bytes of an answer's body, as text (invalid UTF-8 replaced).
pub fn body_text(resp: &mut ureq::http::Response<ureq::Body>, limit: u64) -> Result<String> {
    resp.body_mut()
        .with_config()
        .limit(limit)
        .lossy_utf8(true)
        .read_to_string()
        .map_err(|e| anyhow!("reading the answer: {e}"))
}

/// GET `url`; the body (at most `limit` bytes) of a 200 answer. Any other status is an error
/// with the status and the start of the body the server sent.
pub fn get_text(agent: &ureq::Agent, url: &str, limit: u64) -> Result<String> {
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| anyhow!("GET {url}: {e}"))?;
    let code = resp.status().as_u16();
    if code != 200 {
        let body = body_text(&mut resp, MAX_ERROR_BODY).unwrap_or_default();
        bail!("GET {url}: HTTP {code} {}", body.trim());
    }
    body_text(&mut resp, limit).map_err(|e| anyhow!("GET {url}: {e:#}"))
}

/// GET `url`: the body (at most `limit` bytes) of a 200 answer, `None` for 404; any other
/// status is an error with the status and the start of the body.
pub fn get_bytes(agent: &ureq::Agent, url: &str, limit: u64) -> Result<Option<Vec<u8>>> {
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| anyhow!("GET {url}: {e}"))?;
    match resp.status().as_u16() {
        200 => resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map(Some)
            .map_err(|e| anyhow!("GET {url}: reading the answer: {e}")),
        404 => Ok(None),
        code => {
            let body = body_text(&mut resp, MAX_ERROR_BODY).unwrap_or_default();
            bail!("GET {url}: HTTP {code} {}", body.trim())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A server that answers one request with `answer` and closes.
    fn serve_once(answer: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            s.write_all(answer.as_bytes()).unwrap();
        });
        url
    }

    #[test]
    fn a_200_gives_the_body_and_anything_else_an_error_with_it() {
        let a = agent(Duration::from_secs(5), 0);
        let url = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
        assert_eq!(get_text(&a, &url, 100).unwrap(), "hello");
        let url = serve_once("HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nno such x");
        let e = format!("{:#}", get_text(&a, &url, 100).unwrap_err());
        assert_eq!(e, format!("GET {url}: HTTP 404 no such x"));
        // Nobody listening: the error names the method and URL.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/x");
        let e = format!("{:#}", get_text(&a, &url, 100).unwrap_err());
        assert!(e.starts_with(&format!("GET {url}: ")), "{e}");
    }
}
