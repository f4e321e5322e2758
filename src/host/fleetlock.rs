//! A FleetLock client: the reboot coordination protocol of Fedora CoreOS' zincati, so a
//! fleet of slipway hosts reboots into updates a few machines at a time, under a lock
//! server such as airlock or any FleetLock implementation.
//!
//! The protocol: `POST {base}/v1/pre-reboot` takes a reboot slot before rebooting into an
//! update, `POST {base}/v1/steady-state` gives it back after the new deployment booted
//! green. Each request carries the header `fleet-lock-protocol: true` and the JSON body
//! `{"client_params": {"id": ID, "group": GROUP}}`. A 200 answer grants (or releases); any
//! other answer means no slot, with an error object `{"kind": ..., "value": ...}` in the
//! body that is logged. Both operations are recursive on the server side: asking again for
//! a slot this client holds is granted, releasing one it does not hold is fine.
//!
//! **The client id** is derived from the machine id, the way zincati derives its own: the
//! SHA-256 of the contents of `/etc/machine-id` (trimmed: the 32 hex digits) followed by
//! [`APP_ID`], as lowercase hex, first 32 characters. The machine id itself never leaves the
//! host, and the id is stable across updates and rollbacks (`/etc/machine-id` is the
//! machine's, not the deployment's). `slipway host update-agent` prints it.
//!
//! **The group** is `default` unless `fleetlock-group` says otherwise (the protocol's
//! `^[a-zA-Z0-9.-]+$`).
//!
//! Only `http://` URLs for now: slipway is built without a TLS stack (the HTTP client is
//! `ureq` without its default TLS feature); put the lock server on a trusted network or
//! behind a local TLS-terminating proxy. No HTTP proxy from the environment is used, and
//! redirects are not followed (a redirect is "no slot", which is what the protocol header
//! is for).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};

/// The header every request carries, with the value `true`.
pub const PROTOCOL_HEADER: &str = "fleet-lock-protocol";
/// The endpoint that takes a reboot slot.
pub const PRE_REBOOT: &str = "v1/pre-reboot";
/// The endpoint that gives the slot back.
pub const STEADY_STATE: &str = "v1/steady-state";
/// Hashed with the machine id into the client id (see the module documentation). Never
/// change it: the id a host holds its slot under would change with it.
pub const APP_ID: &str = "slipway-fleetlock-4e0f9b1c2d7a4a6e";
/// The reboot group when none is configured.
pub const DEFAULT_GROUP: &str = "default";
/// How long `updates::report_steady_state` keeps trying before it gives up.
pub const STEADY_STATE_BUDGET: Duration = Duration::from_secs(5 * 60);
/// Bound of one request (connecting: `sys::http::CONNECT_TIMEOUT`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an answer's body is kept for messages.
const MAX_BODY: u64 = 64 * 1024;

/// The client id for a machine id (see the module documentation).
pub fn client_id(machine_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(machine_id.trim().as_bytes());
    h.update(APP_ID.as_bytes());
    let mut id = hex::encode(h.finalize());
    id.truncate(32);
    id
}

/// The client id of the machine whose `/etc` is `root/etc`.
pub fn machine_client_id(root: &Path) -> Result<String> {
    let p = root.join("etc/machine-id");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let mid = text.trim();
    if mid.len() != 32 || !mid.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "{} does not hold a machine id (32 hex digits) but {mid:?}; the FleetLock client \
             id is derived from it",
            p.display()
        );
    }
    Ok(client_id(mid))
}

/// Check a FleetLock base URL: `http://HOST[:PORT][/PATH]`.
pub fn check_base_url(url: &str) -> Result<()> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| anyhow!("{url} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        bail!("{url} is not an http(s)://HOST[:PORT][/PATH] URL");
    }
    if uri.query().is_some() {
        bail!("{url}: a FleetLock base URL has no query");
    }
    Ok(())
}

/// Check a reboot group name (the protocol's `^[a-zA-Z0-9.-]+$`).
pub fn check_group(group: &str) -> Result<()> {
    if group.is_empty()
        || !group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        bail!("{group:?} is not a FleetLock group (letters, digits, `.` and `-`)");
    }
    Ok(())
}

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: the slot is ours (pre-reboot) or given back (steady-state).
    Granted,
    /// Anything else: no slot.
    Denied(Denial),
}

/// Why the server said no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The HTTP status.
    pub status: u16,
    /// The error object's `kind` and `value`, when the body is one.
    pub kind: Option<String>,
    pub value: Option<String>,
    /// The body otherwise (its start).
    pub body: String,
}

impl Denial {
    /// A denial from an answer's status and body.
    pub fn from_body(status: u16, body: &str) -> Denial {
        let obj = serde_json::from_str::<serde_json::Value>(body).ok();
        let field = |k: &str| {
            obj.as_ref()
                .and_then(|o| o.get(k))
                .and_then(|v| v.as_str())
                .map(String::from)
        };
        Denial {
            status,
            kind: field("kind"),
            value: field("value"),
            body: body.chars().take(200).collect(),
        }
    }
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        match (&self.kind, &self.value) {
            (Some(k), Some(v)) => write!(f, " ({k}: {v})"),
            (Some(k), None) => write!(f, " ({k})"),
            _ if !self.body.trim().is_empty() => write!(f, ": {}", self.body.trim()),
            _ => Ok(()),
        }
    }
}

/// A FleetLock client: one server, one id, one group.
#[derive(Debug)]
pub struct Client {
    base: String,
    id: String,
    group: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the server at `base_url` (checked with [`check_base_url`]); an
    /// `https://` server is checked against `tls_ca` when given (see
    /// [`crate::sys::http::parse_ca`]), else the machine's CA certificates.
    pub fn new(
        base_url: &str,
        id: &str,
        group: &str,
        tls_ca: Option<Vec<ureq::tls::Certificate<'static>>>,
    ) -> Result<Client> {
        check_base_url(base_url)?;
        check_group(group)?;
        if id.is_empty() {
            bail!("the FleetLock client id is empty");
        }
        let agent = match tls_ca {
            Some(certs) => crate::sys::http::agent_with_certs(REQUEST_TIMEOUT, 0, certs),
            None => crate::sys::http::agent(REQUEST_TIMEOUT, 0),
        };
        Ok(Client {
            base: base_url.trim_end_matches('/').to_string(),
            id: id.to_string(),
            group: group.to_string(),
            agent,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The URL of an endpoint ([`PRE_REBOOT`], [`STEADY_STATE`]).
    pub fn url(&self, endpoint: &str) -> String {
        format!("{}/{endpoint}", self.base)
    }

    /// Ask for a reboot slot.
    pub fn pre_reboot(&self) -> Result<Answer> {
        self.post(PRE_REBOOT)
    }

    /// Give the reboot slot back.
    pub fn steady_state(&self) -> Result<Answer> {
        self.post(STEADY_STATE)
    }

    /// One request. An error (the server cannot be reached, the answer cannot be read)
    /// names the URL.
    fn post(&self, endpoint: &str) -> Result<Answer> {
        let url = self.url(endpoint);
        let body = serde_json::json!({
            "client_params": {"id": self.id, "group": self.group}
        })
        .to_string();
        let mut resp = self
            .agent
            .post(&url)
            .header(PROTOCOL_HEADER, "true")
            .content_type("application/json")
            .send(body.as_str())
            .map_err(|e| anyhow!("POST {url}: {e}"))?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(Answer::Granted);
        }
        let text = crate::sys::http::body_text(&mut resp, MAX_BODY).unwrap_or_default();
        Ok(Answer::Denied(Denial::from_body(status, &text)))
    }
}

/// Exponential backoff: `base`, then twice the last delay, never more than `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// The delay after the `n`th failure in a row (`n` from 1).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Count one more failure; the delay before the next attempt.
    pub fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.delay(self.failures)
    }

    /// After a success: start from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Call `attempt` until it is granted, waiting the backoff's delay after each denial or
/// error (each logged). Gives up with the last reason when the next attempt would start
/// more than `budget` after the first. Returns how many attempts it took.
pub fn retry_until_granted(
    what: &str,
    mut attempt: impl FnMut() -> Result<Answer>,
    backoff: &mut Backoff,
    budget: Duration,
) -> Result<u32> {
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let why = match attempt() {
            Ok(Answer::Granted) => {
                backoff.reset();
                return Ok(attempts);
            }
            Ok(Answer::Denied(d)) => format!("refused: {d}"),
            Err(e) => format!("{e:#}"),
        };
        let delay = backoff.fail();
        if start.elapsed() + delay > budget {
            bail!("{what}: {why}; giving up after {attempts} attempts");
        }
        crate::sys::ui::warn(format!(
            "{what}: {why}; trying again in {} s",
            delay.as_secs_f32()
        ));
        std::thread::sleep(delay);
    }
}

#[cfg(test)]
pub(crate) mod testserver {
    //! A tiny HTTP server for the tests: answers each request with the next (status, body)
    //! of its script and records what it received.

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    /// One request as the server saw it.
    #[derive(Debug, Clone)]
    pub struct Request {
        pub method: String,
        pub path: String,
        /// Header names in lower case.
        pub headers: Vec<(String, String)>,
        pub body: String,
        /// When the answer was sent, and its status.
        pub answered: Instant,
        pub status: u16,
    }

    impl Request {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    pub struct Server {
        pub base: String,
        pub requests: Arc<Mutex<Vec<Request>>>,
    }

    /// Serve `script` on 127.0.0.1 (one connection per request); after the script, close
    /// connections without an answer.
    pub fn start(script: Vec<(u16, &'static str)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/base", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let rec = requests.clone();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_string();
                let path = parts.next().unwrap_or_default().to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                }
                let len = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let Some((status, answer)) = script.next() else {
                    continue;
                };
                // Recorded before the answer goes out: the client cannot see it earlier.
                rec.lock().unwrap().push(Request {
                    method,
                    path,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                    answered: Instant::now(),
                    status,
                });
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = conn.flush();
            }
        });
        Server { base, requests }
    }
}

#[cfg(test)]
mod tests {
    use super::testserver::*;
    use super::*;

    const FULL: &str =
        r#"{"kind": "failed_lock_semaphore_full", "value": "semaphore currently full"}"#;

    #[test]
    fn the_id_is_the_machine_id_hashed_with_the_app_id() {
        let mid = "0123456789abcdef0123456789abcdef";
        let id = client_id(mid);
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_eq!(client_id(&format!("{mid}\n")), id);
        assert!(!id.contains(mid));
        let mut h = Sha256::new();
        h.update(format!("{mid}{APP_ID}").as_bytes());
        assert_eq!(id, hex::encode(h.finalize())[..32]);
        assert_ne!(client_id("fedcba9876543210fedcba9876543210"), id);

        let d = tempfile::tempdir().unwrap();
        let err = machine_client_id(d.path()).unwrap_err();
        assert!(format!("{err:#}").contains("etc/machine-id"), "{err:#}");
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/machine-id"), "uninitialized\n").unwrap();
        let err = machine_client_id(d.path()).unwrap_err();
        assert!(format!("{err:#}").contains("uninitialized"), "{err:#}");
        std::fs::write(d.path().join("etc/machine-id"), format!("{mid}\n")).unwrap();
        assert_eq!(machine_client_id(d.path()).unwrap(), id);
    }

    #[test]
    fn urls_and_groups_are_checked() {
        for ok in [
            "http://lock.example.org",
            "http://10.0.0.1:8080/",
            "http://lock:80/base/path",
            "https://lock.example.org:8443",
        ] {
            check_base_url(ok).unwrap();
        }
        for (bad, want) in [
            ("ftp://lock", "not an http(s)://"),
            ("lock:8080", "not an http(s)://"),
            ("http://", "not a URL"),
            ("http://lock/?a=b", "no query"),
        ] {
            let msg = format!("{:#}", check_base_url(bad).unwrap_err());
            assert!(msg.contains(want), "{bad}: {msg}");
        }
        check_group("workers.eu-1").unwrap();
        for bad in ["", "a b", "a/b", "ä"] {
            assert!(check_group(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(5));
        let v: Vec<_> = (0..5).map(|_| b.fail()).collect();
        assert_eq!(v, [s(1), s(2), s(4), s(5), s(5)]);
        b.reset();
        assert_eq!(b.fail(), s(1));
        assert_eq!(Backoff::new(s(30), s(900)).delay(100), s(900));
    }

    #[test]
    fn requests_carry_the_protocol_header_and_the_client_params() {
        let srv = start(vec![(200, ""), (200, "")]);
        let c = Client::new(&format!("{}/", srv.base), "abc123", "workers", None).unwrap();
        assert_eq!(c.pre_reboot().unwrap(), Answer::Granted);
        assert_eq!(c.steady_state().unwrap(), Answer::Granted);
        let reqs = srv.requests.lock().unwrap().clone();
        assert_eq!(reqs.len(), 2);
        for (r, path) in reqs
            .iter()
            .zip(["/base/v1/pre-reboot", "/base/v1/steady-state"])
        {
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, path);
            assert_eq!(r.header("fleet-lock-protocol"), Some("true"));
            assert_eq!(r.header("content-type"), Some("application/json"));
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"client_params": {"id": "abc123", "group": "workers"}})
            );
        }
    }

    #[test]
    fn anything_but_200_is_no_slot_and_says_why() {
        let srv = start(vec![(409, FULL), (500, "oops"), (201, ""), (302, "")]);
        let c = Client::new(&srv.base, "id", DEFAULT_GROUP, None).unwrap();
        let Answer::Denied(d) = c.pre_reboot().unwrap() else {
            panic!("409 granted")
        };
        assert_eq!(d.status, 409);
        assert_eq!(d.kind.as_deref(), Some("failed_lock_semaphore_full"));
        assert_eq!(
            d.to_string(),
            "HTTP 409 (failed_lock_semaphore_full: semaphore currently full)"
        );
        let Answer::Denied(d) = c.pre_reboot().unwrap() else {
            panic!("500 granted")
        };
        assert_eq!(d.to_string(), "HTTP 500: oops");
        for _ in 0..2 {
            assert!(matches!(c.pre_reboot().unwrap(), Answer::Denied(_)));
        }
    }

    #[test]
    fn an_unreachable_server_is_an_error_naming_the_url() {
        // A port nobody listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), "id", "g", None).unwrap();
        let msg = format!("{:#}", c.pre_reboot().unwrap_err());
        assert!(
            msg.contains(&format!("POST http://127.0.0.1:{port}/v1/pre-reboot")),
            "{msg}"
        );
    }

    /// The slot is taken twice, then free: with a 1 s backoff the client asks three times,
    /// waiting 1 s and then 2 s, and succeeds only with the answer that gave it the slot.
    #[test]
    fn a_taken_slot_is_waited_for() {
        let srv = start(vec![(409, FULL), (409, FULL), (200, "")]);
        let c = Client::new(&srv.base, "id", DEFAULT_GROUP, None).unwrap();
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(60));
        let attempts = retry_until_granted("lock", || c.pre_reboot(), &mut b, s(60)).unwrap();
        let done = Instant::now();
        assert_eq!(attempts, 3);
        let reqs = srv.requests.lock().unwrap().clone();
        let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [409, 409, 200]);
        assert!(done >= reqs[2].answered);
        assert!(reqs[1].answered - reqs[0].answered >= s(1));
        assert!(reqs[2].answered - reqs[1].answered >= s(2));
    }

    #[test]
    fn giving_up_after_the_budget_names_the_reason() {
        let srv = start(vec![(409, FULL); 10]);
        let c = Client::new(&srv.base, "id", DEFAULT_GROUP, None).unwrap();
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(1));
        let t = Instant::now();
        let err = retry_until_granted("lock at X", || c.pre_reboot(), &mut b, s(2)).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("lock at X: refused: HTTP 409"), "{msg}");
        // At 0 s and 1 s; a third would start at 2 s or a little later: past the budget.
        assert!(msg.contains("after 2 attempts"), "{msg}");
        assert!(t.elapsed() < s(5));
    }
}
