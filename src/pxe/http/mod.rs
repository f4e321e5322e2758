//! HTTP for network boot: what `slipway pxe serve` answers on its HTTP port.
//!
//! # Routes
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /boot.ipxe?mac=..&uuid=..` | the iPXE script [`Dynamic::boot_script`] writes for that machine |
//! | `GET /kickstart?mac=..` | the kickstart [`Dynamic::kickstart`] writes for that machine |
//! | `POST /report` | a JSON [`Report`] of the installer, given to [`Dynamic::report`]; 204 |
//! | `GET /status` | [`Dynamic::status`] as JSON |
//! | `GET /repo/PATH` | file PATH of the OSTree archive repository (`ostree pull`, host upgrades) |
//! | `GET /PATH` | file PATH of the boot directory (boot scripts, kernel, initramfs, boot programs) |
//!
//! The four dynamic names win over files of the same name in the boot directory. `HEAD` is
//! answered wherever `GET` is, with the same header fields and no body. Query parameters
//! `mac`, `uuid` and `hostname` (iPXE's `${net0/mac}`, `${uuid}`, `${hostname}`) become
//! [`RequestFacts`] on every route, so a boot script that appends `?mac=${net0/mac}` to its
//! kernel and initramfs URLs gets per-machine [`HttpEvent`]s for those downloads too.
//!
//! # Files
//!
//! Every file answer has `Content-Length`, a `Content-Type` by file name extension
//! ([`content_type`]; `application/efi` for `.efi`, which UEFI HTTP boot checks),
//! `Accept-Ranges: bytes`, `ETag` and `Last-Modified`. A `Range` header with a single byte
//! range gets `206 Partial Content` (`first-last`, `first-`, suffix `-n`); one that no byte of
//! the file satisfies gets `416` with `Content-Range: bytes */LENGTH`; a malformed one, or one
//! with several ranges, is ignored and the whole file sent (RFC 9110 lets a server ignore
//! `Range`; ostree, iPXE and firmware never send several). With [`ServeConfig::overlay_dir`], a
//! file of the overlay directory is served in place of the boot directory's file of the same
//! path (`pxe serve` keeps its filled-in menus there). `If-Range` that does not match sends
//! the whole file; `If-None-Match` and `If-Modified-Since` answer `304` (ostree asks that way
//! for a summary it already has). Per RFC 9110 `Range` applies to `GET` only, so `HEAD` always
//! describes the whole file. Directories are never listed: a directory is 404.
//!
//! # Paths
//!
//! Nothing outside a root is ever read, whatever the request says. The path is split at `/`
//! and each part percent-decoded; a request is refused (400) when a part is `..`, or decodes to
//! something with `/` (`%2F`), a backslash or NUL. The remaining parts are opened with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` on a handle to the root opened at start:
//! symbolic links are followed as if the root were `/` (`vmlinuz -> /vmlinuz-6.1` works, a
//! link to `/etc/passwd` finds the root's own `etc/passwd`, normally nothing, and a relative
//! link climbing out stops at the root). Only regular files are served. A rename inside the
//! root while a lookup runs (ostree writing objects) makes the kernel answer EAGAIN; the lookup
//! is retried. The roots are the directories that were there at start: replacing the
//! directory itself (rather than its contents) needs a restart.
//!
//! # Log and events
//!
//! Each request logs one line on stderr when its answer is done or abandoned,
//! `slipway: http: PEER GET /path 200 N bytes` (N: body bytes handed to the connection; an
//! answer cut short says so), and sends an [`HttpEvent`] on [`ServeConfig::events`], from which
//! the caller records per-machine progress (kernel fetched, initramfs fetched, report sent).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::{JoinHandle, JoinSet};

use crate::sys::ui;

/// The first path component under which the OSTree repository is served.
pub const REPO_PREFIX: &str = "repo";
/// Path of the iPXE boot script route (the DHCP side's default `boot_script_path`).
pub const BOOT_SCRIPT_PATH: &str = "/boot.ipxe";
/// Largest `POST /report` body accepted.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;
/// Bytes read from a file per step of a download.
const CHUNK: usize = 256 * 1024;
/// Connections the kernel queues before they are accepted (std's default is 128).
const LISTEN_BACKLOG: i32 = 1024;
/// A client that has not sent a whole request header by then is disconnected.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server learned about the machine behind a request: the peer address and the query
/// parameters, with the ones iPXE fills in for us checked and normalized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestFacts {
    /// Address and port the request came from.
    pub peer: SocketAddr,
    /// `mac=`: lower-case hex bytes joined by `:` (as the DHCP side's `ClientFacts::mac`);
    /// `:`, `-` or no separator and any case are accepted.
    pub mac: Option<String>,
    /// `uuid=`: a lower-case standard UUID string (iPXE's `${uuid}`: the SMBIOS UUID, as the
    /// DHCP side reports it). Empty, all zeros and all ones mean "not set" and give `None`.
    pub uuid: Option<String>,
    /// `hostname=` (iPXE's `${hostname}`, often empty): letters, digits, `.`, `-`, `_`.
    pub hostname: Option<String>,
    /// Every query parameter, decoded (`+` is a space); of repeated names the first counts.
    pub query: BTreeMap<String, String>,
}

impl RequestFacts {
    /// The facts of a request from `peer` with query string `query` (without the `?`), and
    /// what was wrong with `mac`, `uuid` or `hostname` (such a field is then `None`). Dynamic
    /// routes refuse a request with problems (400); file routes go on without the field.
    pub fn from_query(peer: SocketAddr, query: &str) -> (Self, Vec<String>) {
        let query = parse_query(query);
        let mut problems = Vec::new();
        let get = |k: &str| query.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let mac = get("mac").and_then(|v| {
            let m = normalize_mac(v);
            if m.is_none() {
                problems.push(format!("mac={v:?} is not a hardware address"));
            }
            m
        });
        let uuid = get("uuid").and_then(|v| match normalize_uuid(v) {
            Ok(u) => u,
            Err(e) => {
                problems.push(format!("uuid: {e}"));
                None
            }
        });
        let hostname = get("hostname").and_then(|v| {
            if valid_hostname(v) {
                Some(v.to_string())
            } else {
                problems.push(format!("hostname={v:?} is not a host name"));
                None
            }
        });
        (
            Self {
                peer,
                mac,
                uuid,
                hostname,
                query,
            },
            problems,
        )
    }
}

/// Decode a query string: `&`-separated `name=value` pairs, percent-encoded, `+` a space.
fn parse_query(query: &str) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_decode_str(&s).decode_utf8_lossy().into_owned()
    };
    let mut out = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(decode(k)).or_insert_with(|| decode(v));
    }
    out
}

/// A hardware address as `52:54:00:12:34:56`: 6 to 16 bytes, written as hex pairs separated
/// by `:` or `-`, or as one run of hex digits; `None` when it is not one.
pub fn normalize_mac(s: &str) -> Option<String> {
    let s = s.trim();
    let pairs: Vec<&str> = if s.contains(':') {
        s.split(':').collect()
    } else if s.contains('-') {
        s.split('-').collect()
    } else if s.len().is_multiple_of(2) && s.is_ascii() {
        (0..s.len()).step_by(2).map(|i| &s[i..i + 2]).collect()
    } else {
        return None;
    };
    if !(6..=16).contains(&pairs.len())
        || !pairs
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(pairs.join(":").to_ascii_lowercase())
}

/// A UUID as lower-case `8-4-4-4-12` hex (hyphens optional in the input). `Ok(None)`: empty,
/// all zeros or all ones ("not set", as iPXE and firmware report a missing SMBIOS UUID).
pub fn normalize_uuid(s: &str) -> Result<Option<String>> {
    let bad = || anyhow!("{s:?} is not a UUID");
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let hex: String = if s.len() == 36 {
        for (i, c) in s.char_indices() {
            if matches!(i, 8 | 13 | 18 | 23) != (c == '-') {
                return Err(bad());
            }
        }
        s.chars().filter(|c| *c != '-').collect()
    } else {
        s.to_string()
    };
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let hex = hex.to_ascii_lowercase();
    if hex.bytes().all(|b| b == b'0') || hex.bytes().all(|b| b == b'f') {
        return Ok(None);
    }
    Ok(Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )))
}

fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// What the installer reports with `POST /report`: JSON `{mac, uuid, step, result, error}`.
/// Unknown fields are ignored (an older server, a newer installer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The reporting machine's hardware address (normalized as [`RequestFacts::mac`]).
    pub mac: String,
    /// Its SMBIOS UUID, normalized as [`RequestFacts::uuid`].
    #[serde(default)]
    pub uuid: Option<String>,
    /// Which step of the installation (`partition`, `pull`, `deploy`, ...).
    pub step: String,
    /// How it went (`started`, `ok`, `failed`, ...): the installer's and [`Dynamic`]'s words.
    pub result: String,
    /// The error, when the step failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// An error a [`Dynamic`] returns to choose the answer's status and text (404 for a machine
/// without a profile, 400 for a request missing `mac`, ...). Found anywhere in an
/// `anyhow::Error`'s chain. Any other error answers 500 with a generic text, and the whole
/// error goes to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// An HTTP status code, 400 to 599.
    pub status: u16,
    /// Sent as the answer's text (plain, one line).
    pub message: String,
}

impl HttpError {
    /// An error answering `status` with `message`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for HttpError {}

/// The per-machine answers, written by the caller of the server (profiles, templates, install
/// state). Called on tokio's blocking pool, so an implementation may read files and take
/// locks; it must be quick all the same (iPXE waits), and never panic (a panic answers 500).
pub trait Dynamic: Send + Sync + 'static {
    /// The iPXE script for `GET /boot.ipxe` (starting with `#!ipxe`).
    fn boot_script(&self, facts: &RequestFacts) -> Result<String>;
    /// The kickstart for `GET /kickstart`.
    fn kickstart(&self, facts: &RequestFacts) -> Result<String>;
    /// Take a report of `POST /report` (mac and uuid already checked and normalized).
    fn report(&self, facts: &RequestFacts, report: Report) -> Result<()>;
    /// What `GET /status` shows.
    fn status(&self) -> serde_json::Value;
}

/// A [`Dynamic`] for tests and benchmarks: fixed texts with `{mac}`, `{uuid}` and
/// `{hostname}` replaced, reports kept in memory and shown by `status`. `boot_script` answers
/// 400 without a `mac`; an empty kickstart text answers 404.
#[derive(Debug, Default)]
pub struct SimpleDynamic {
    boot_script: String,
    kickstart: String,
    reports: Mutex<Vec<(RequestFacts, Report)>>,
}

impl SimpleDynamic {
    /// Answer with these texts.
    pub fn new(boot_script: impl Into<String>, kickstart: impl Into<String>) -> Self {
        Self {
            boot_script: boot_script.into(),
            kickstart: kickstart.into(),
            reports: Mutex::default(),
        }
    }

    /// The reports received so far, oldest first.
    pub fn reports(&self) -> Vec<(RequestFacts, Report)> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn fill(text: &str, facts: &RequestFacts) -> String {
        text.replace("{mac}", facts.mac.as_deref().unwrap_or(""))
            .replace("{uuid}", facts.uuid.as_deref().unwrap_or(""))
            .replace("{hostname}", facts.hostname.as_deref().unwrap_or(""))
    }
}

impl Dynamic for SimpleDynamic {
    fn boot_script(&self, facts: &RequestFacts) -> Result<String> {
        if facts.mac.is_none() {
            return Err(HttpError::bad_request("boot.ipxe needs ?mac=${net0/mac}").into());
        }
        Ok(Self::fill(&self.boot_script, facts))
    }

    fn kickstart(&self, facts: &RequestFacts) -> Result<String> {
        if self.kickstart.is_empty() {
            return Err(HttpError::not_found("no kickstart for this machine").into());
        }
        Ok(Self::fill(&self.kickstart, facts))
    }

    fn report(&self, facts: &RequestFacts, report: Report) -> Result<()> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((facts.clone(), report));
        Ok(())
    }

    fn status(&self) -> serde_json::Value {
        let guard = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let reports: Vec<&Report> = guard.iter().map(|(_, r)| r).collect();
        serde_json::json!({ "reports": reports })
    }
}

/// Which route answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// A file of the boot directory.
    BootFile,
    /// A file of the OSTree repository (`/repo/...`).
    RepoFile,
    /// `/boot.ipxe`.
    BootScript,
    /// `/kickstart`.
    Kickstart,
    /// `/report`.
    Report,
    /// `/status`.
    Status,
}

/// One answered request: sent on [`ServeConfig::events`] when the answer is done (or the
/// connection dropped it), after its log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpEvent {
    /// Who asked, with the facts from its query.
    pub facts: RequestFacts,
    /// `GET`, `HEAD`, `POST`, ...
    pub method: String,
    /// The request target as received (path and query), control characters escaped.
    pub target: String,
    /// The route, `None` when the path was refused.
    pub route: Option<Route>,
    /// For file routes: the file's path inside its root (`vmlinuz`, `objects/ab/cd.filez`).
    pub file: Option<String>,
    /// The status code sent.
    pub status: u16,
    /// Body bytes handed to the connection.
    pub bytes: u64,
    /// Body bytes the answer announced (`Content-Length`; 0 for `HEAD`).
    pub length: u64,
    /// Whether the whole body was handed over (false: the client went away, or the file
    /// shrank while being sent).
    pub complete: bool,
}

impl HttpEvent {
    /// A repository object or delta part delivered whole: an install or upgrade asks for
    /// thousands of them, so they are not logged one by one (failures are).
    pub fn routine_repo_object(&self) -> bool {
        (self.target.starts_with("/repo/objects/") || self.target.starts_with("/repo/deltas/"))
            && (200..400).contains(&self.status)
            && self.complete
    }

    /// A file route answered 200 or 206 with the whole body handed over: "kernel fetched".
    pub fn delivered_file(&self) -> Option<&str> {
        match self.route {
            Some(Route::BootFile | Route::RepoFile)
                if self.complete && (self.status == 200 || self.status == 206) =>
            {
                self.file.as_deref()
            }
            _ => None,
        }
    }
}

impl fmt::Display for HttpEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} bytes",
            self.facts.peer, self.method, self.target, self.status, self.bytes
        )?;
        if !self.complete {
            write!(f, " (cut short: {} announced)", self.length)?;
        }
        Ok(())
    }
}

/// Settings of the HTTP server.
#[derive(Clone)]
pub struct ServeConfig {
    /// Address to listen on (`0.0.0.0:80`, `127.0.0.1:0` in tests: port 0 picks a free one).
    pub bind: SocketAddr,
    /// Served at `/`: boot scripts, kernels, initramfs, boot programs.
    pub boot_dir: PathBuf,
    /// An OSTree archive repository served at `/repo/`; `None`: `/repo/...` is 404.
    pub repo_dir: Option<PathBuf>,
    /// A directory laid over the boot directory: a file there is served instead of the boot
    /// directory's file of the same path (`pxe serve` puts the menus with `{{server}}` filled
    /// in there).
    pub overlay_dir: Option<PathBuf>,
    /// The per-machine routes.
    pub dynamic: Arc<dyn Dynamic>,
    /// Receives an [`HttpEvent`] per request.
    pub events: Option<UnboundedSender<HttpEvent>>,
    /// Log a line per request (`slipway: http: ...`); off for benchmarks. `--quiet` silences
    /// it too.
    pub log_requests: bool,
    /// Serve HTTPS instead of HTTP ([`tls::acceptor`]).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl ServeConfig {
    /// Serve `boot_dir` on `bind` with `dynamic`, no repository, no events, requests logged.
    pub fn new(bind: SocketAddr, boot_dir: impl Into<PathBuf>, dynamic: Arc<dyn Dynamic>) -> Self {
        Self {
            bind,
            boot_dir: boot_dir.into(),
            repo_dir: None,
            overlay_dir: None,
            dynamic,
            events: None,
            log_requests: true,
            tls: None,
        }
    }
}

impl fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeConfig")
            .field("bind", &self.bind)
            .field("boot_dir", &self.boot_dir)
            .field("repo_dir", &self.repo_dir)
            .field("overlay_dir", &self.overlay_dir)
            .field("events", &self.events.is_some())
            .field("log_requests", &self.log_requests)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A directory served read-only; every lookup is resolved inside it.
#[derive(Debug)]
struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// A regular file opened for an answer.
struct Opened {
    file: File,
    len: u64,
    mtime: Option<SystemTime>,
    etag: String,
}

impl Root {
    /// Open the directory `path`; `what` names it in errors.
    fn open(path: &Path, what: &str) -> Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
        .with_context(|| format!("opening the {what} {}", path.display()))?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Open regular file `rel` (relative, `/`-separated, checked by [`decode_path`]) inside
    /// the root. `Ok(None)`: nothing there, or not a regular file.
    fn open_file(&self, rel: &[u8]) -> io::Result<Option<Opened>> {
        let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
        let mut races = 0;
        let fd = loop {
            match rustix::fs::openat2(
                &self.fd,
                rel,
                // NONBLOCK: a FIFO inside the root must not hang the lookup; regular files
                // ignore it.
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => break fd,
                // A rename somewhere in the root during the lookup.
                Err(Errno::AGAIN) if races < 16 => races += 1,
                Err(
                    Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::NAMETOOLONG | Errno::NXIO,
                ) => {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        };
        let file = File::from(fd);
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(None);
        }
        let etag = format!(
            "\"{:x}-{:x}-{:x}.{:x}\"",
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec()
        );
        Ok(Some(Opened {
            len: meta.len(),
            mtime: meta.modified().ok(),
            etag,
            file,
        }))
    }

    /// Read a small file inside the root (for the start-up checks).
    fn read_small(&self, rel: &str) -> io::Result<Option<String>> {
        let Some(o) = self.open_file(rel.as_bytes())? else {
            return Ok(None);
        };
        if o.len > 1 << 20 {
            return Err(io::Error::other(format!("{rel} is over 1 MiB")));
        }
        let mut buf = vec![0; o.len as usize];
        o.file.read_exact_at(&mut buf, 0)?;
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }
}

/// Refuse a repository HTTP clients cannot pull from: no `config`, or not an archive.
fn check_archive_repo(root: &Root) -> Result<()> {
    let path = root.path.display();
    let config = root
        .read_small("config")
        .with_context(|| format!("reading {path}/config"))?
        .with_context(|| format!("{path} is not an OSTree repository (it has no config file)"))?;
    let mode = config
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "mode")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "bare".into());
    if !mode.starts_with("archive") {
        bail!(
            "{path} is an OSTree repository in mode {mode}; only archive repositories can be \
             pulled over HTTP"
        );
    }
    Ok(())
}

/// Split a request path into decoded parts; refuse what could name something outside the
/// root or mean something else on disk (see the module documentation).
fn decode_path(raw: &str) -> Result<Vec<Vec<u8>>, &'static str> {
    if !raw.starts_with('/') {
        return Err("the path does not start with /");
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        let bytes: Vec<u8> = percent_decode_str(part).collect();
        if bytes.is_empty() || bytes == b"." {
            continue;
        }
        if bytes == b".." {
            return Err("`..` in the path");
        }
        if bytes.contains(&b'/') {
            return Err("an encoded / in the path");
        }
        if bytes.contains(&b'\\') {
            return Err("a backslash in the path");
        }
        if bytes.contains(&0) {
            return Err("a NUL byte in the path");
        }
        parts.push(bytes);
    }
    Ok(parts)
}

/// The route of decoded path `parts`, and for file routes the file's path inside its root.
fn classify(parts: &[Vec<u8>]) -> (Route, Vec<u8>) {
    match parts {
        [one] if one == b"boot.ipxe" => (Route::BootScript, Vec::new()),
        [one] if one == b"kickstart" => (Route::Kickstart, Vec::new()),
        [one] if one == b"report" => (Route::Report, Vec::new()),
        [one] if one == b"status" => (Route::Status, Vec::new()),
        [first, rest @ ..] if first == REPO_PREFIX.as_bytes() => {
            (Route::RepoFile, rest.join(&b'/'))
        }
        _ => (Route::BootFile, parts.join(&b'/')),
    }
}

/// The `Content-Type` of a file, by its name's extension (case-insensitive):
/// `application/efi` for EFI programs (UEFI HTTP boot looks at it), `application/vnd.efi-iso`
/// for ISO images (EDK2 boots them as a RAM disk), text types for scripts and kickstarts,
/// `application/octet-stream` for everything else (kernels, initramfs, `.kpxe`, ostree
/// objects, deltas, the summary).
pub fn content_type(name: &[u8]) -> &'static str {
    let ext = Path::new(OsStr::from_bytes(name))
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("efi") => "application/efi",
        Some("iso") => "application/vnd.efi-iso",
        Some("ipxe" | "txt" | "cfg" | "conf" | "ks" | "sh" | "log") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("xml") => "application/xml",
        _ => "application/octet-stream",
    }
}

/// What to send for a `Range` header on a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeAnswer {
    /// Ignore it: the whole file, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// Read a `Range` header (RFC 9110 14.1.2) for a file of `len` bytes: one byte range, else the
/// whole file (malformed, another unit, several ranges).
fn parse_range(value: &[u8], len: u64) -> RangeAnswer {
    let Ok(value) = std::str::from_utf8(value) else {
        return RangeAnswer::Full;
    };
    let Some((unit, set)) = value.split_once('=') else {
        return RangeAnswer::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeAnswer::Full;
    }
    let specs: Vec<&str> = set
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let [spec] = specs.as_slice() else {
        return RangeAnswer::Full;
    };
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    let num = |t: &str| -> Option<u64> {
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            t.parse().ok()
        }
    };
    if a.is_empty() {
        // The last n bytes.
        let Some(n) = num(b) else {
            return RangeAnswer::Full;
        };
        if n == 0 || len == 0 {
            return RangeAnswer::Unsatisfiable;
        }
        let n = n.min(len);
        return RangeAnswer::Partial {
            start: len - n,
            end: len - 1,
        };
    }
    let Some(first) = num(a) else {
        return RangeAnswer::Full;
    };
    let last = if b.is_empty() {
        None
    } else {
        match num(b) {
            Some(l) if l >= first => Some(l),
            _ => return RangeAnswer::Full,
        }
    };
    if first >= len {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial {
        start: first,
        end: last.map_or(len - 1, |l| l.min(len - 1)),
    }
}

/// `t` cut to whole seconds (HTTP dates have no more).
fn whole_seconds(t: SystemTime) -> Option<SystemTime> {
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `If-None-Match` (weak comparison) or, without it, `If-Modified-Since`: answer 304.
fn not_modified(headers: &HeaderMap, etag: &str, mtime: Option<SystemTime>) -> bool {
    if headers.contains_key(header::IF_NONE_MATCH) {
        let Some(v) = header_str(headers, header::IF_NONE_MATCH) else {
            return false;
        };
        let ours = etag.trim_start_matches("W/");
        return v
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == ours);
    }
    let since = header_str(headers, header::IF_MODIFIED_SINCE)
        .and_then(|s| httpdate::parse_http_date(s).ok());
    match (since, mtime.and_then(whole_seconds)) {
        (Some(since), Some(m)) => m <= since,
        _ => false,
    }
}

/// Whether a `Range` header may be used: no `If-Range`, or one that matches (an entity tag,
/// strong comparison, or the exact `Last-Modified` date).
fn if_range_holds(headers: &HeaderMap, etag: &str, mtime: Option<SystemTime>) -> bool {
    if !headers.contains_key(header::IF_RANGE) {
        return true;
    }
    let Some(v) = header_str(headers, header::IF_RANGE).map(str::trim) else {
        return false;
    };
    if v.starts_with('"') {
        return v == etag;
    }
    if v.starts_with("W/") {
        return false;
    }
    match (
        httpdate::parse_http_date(v).ok(),
        mtime.and_then(whole_seconds),
    ) {
        (Some(d), Some(m)) => d == m,
        _ => false,
    }
}

/// The body of an answer: nothing, bytes, or a slice of an open file read in chunks on the
/// blocking pool.
enum Inner {
    Empty,
    Bytes(Option<Bytes>),
    File(FileBody),
}

struct FileBody {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
}

fn read_chunk(file: &File, offset: u64, n: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

impl FileBody {
    fn poll_chunk(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if self.pending.is_none() {
            let file = self.file.clone();
            let offset = self.offset;
            let n = self.remaining.min(CHUNK as u64) as usize;
            self.pending = Some(tokio::task::spawn_blocking(move || {
                read_chunk(&file, offset, n)
            }));
        }
        let Some(handle) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let result = match Pin::new(handle).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        self.pending = None;
        let chunk = match result {
            Ok(Ok(b)) if b.is_empty() => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while being sent",
            )),
            Ok(r) => r,
            Err(e) => Err(io::Error::other(e)),
        };
        match chunk {
            Ok(b) => {
                self.offset += b.len() as u64;
                self.remaining -= (b.len() as u64).min(self.remaining);
                Poll::Ready(Some(Ok(b)))
            }
            Err(e) => {
                self.remaining = 0;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

/// An answer's body; logs its request and sends its event when dropped (done or abandoned).
pub struct ResponseBody {
    inner: Inner,
    sent: u64,
    log: Option<Box<LogOnDrop>>,
}

struct LogOnDrop {
    state: Arc<State>,
    event: HttpEvent,
}

impl Inner {
    fn remaining(&self) -> u64 {
        match self {
            Inner::Empty => 0,
            Inner::Bytes(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            Inner::File(f) => f.remaining,
        }
    }
}

impl ResponseBody {
    fn remaining(&self) -> u64 {
        self.inner.remaining()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let next = match &mut this.inner {
            Inner::Empty => Poll::Ready(None),
            Inner::Bytes(b) => Poll::Ready(b.take().map(Ok)),
            Inner::File(f) => f.poll_chunk(cx),
        };
        match next {
            Poll::Ready(Some(Ok(b))) => {
                this.sent += b.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining())
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            let LogOnDrop { state, mut event } = *log;
            event.bytes = self.sent;
            event.complete = self.sent == event.length;
            if state.log_requests && !event.routine_repo_object() {
                ui::info(format!("{}: {event}", state.scheme));
            }
            if let Some(tx) = &state.events {
                let _ = tx.send(event);
            }
        }
    }
}

/// What every request handler shares.
struct State {
    boot: Arc<Root>,
    overlay: Option<Arc<Root>>,
    repo: Option<Arc<Root>>,
    dynamic: Arc<dyn Dynamic>,
    events: Option<UnboundedSender<HttpEvent>>,
    log_requests: bool,
    /// `http` or `https`: the log lines say which server answered.
    scheme: &'static str,
}

/// An answer before its body is wrapped for the log.
type Answer = Response<Inner>;

fn answer(status: StatusCode, content_type: &str, body: Bytes, head: bool) -> Answer {
    let len = body.len();
    let inner = if head || body.is_empty() {
        Inner::Empty
    } else {
        Inner::Bytes(Some(body))
    };
    let mut r = Response::new(inner);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// A plain-text answer: `message` and a newline.
fn text(status: StatusCode, message: &str, head: bool) -> Answer {
    answer(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(format!("{message}\n")),
        head,
    )
}

fn method_not_allowed(allow: &'static str, head: bool) -> Answer {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("only {allow} here"),
        head,
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Make a printable log form of a request target.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let method = req.method().clone();
    let head = method == Method::HEAD;
    let target = printable(
        req.uri()
            .path_and_query()
            .map_or(req.uri().path(), |p| p.as_str()),
    );
    let (facts, problems) = RequestFacts::from_query(peer, req.uri().query().unwrap_or(""));
    let mut event = HttpEvent {
        facts: facts.clone(),
        method: method.to_string(),
        target,
        route: None,
        file: None,
        status: 0,
        bytes: 0,
        length: 0,
        complete: false,
    };
    let answer = match decode_path(req.uri().path()) {
        Err(why) => text(StatusCode::BAD_REQUEST, &format!("bad path: {why}"), head),
        Ok(parts) => {
            let (route, rel) = classify(&parts);
            event.route = Some(route);
            match route {
                Route::BootFile | Route::RepoFile => {
                    event.file = Some(String::from_utf8_lossy(&rel).into_owned());
                    let (root, overlay) = if route == Route::BootFile {
                        (Some(state.boot.clone()), state.overlay.clone())
                    } else {
                        (state.repo.clone(), None)
                    };
                    match root {
                        None => text(StatusCode::NOT_FOUND, "no repository is served here", head),
                        Some(root) => {
                            serve_file(root, overlay, rel, &method, req.headers(), &event).await
                        }
                    }
                }
                _ if !problems.is_empty() => {
                    text(StatusCode::BAD_REQUEST, &problems.join("; "), head)
                }
                Route::BootScript | Route::Kickstart | Route::Status => {
                    if method != Method::GET && !head {
                        method_not_allowed("GET, HEAD", head)
                    } else {
                        dynamic_get(&state, route, facts, head, &event).await
                    }
                }
                Route::Report => {
                    if method != Method::POST {
                        method_not_allowed("POST", head)
                    } else {
                        report(&state, facts, req.into_body(), &event).await
                    }
                }
            }
        }
    };
    let (parts, inner) = answer.into_parts();
    event.status = parts.status.as_u16();
    event.length = inner.remaining();
    let body = ResponseBody {
        inner,
        sent: 0,
        log: Some(Box::new(LogOnDrop {
            state: state.clone(),
            event,
        })),
    };
    Response::from_parts(parts, body)
}

/// Log a failed handler with the request, and pick the answer: an [`HttpError`]'s status and
/// text, else 500.
fn failure(e: &anyhow::Error, event: &HttpEvent, head: bool) -> Answer {
    if let Some(h) = e.chain().find_map(|c| c.downcast_ref::<HttpError>())
        && let Ok(status) = StatusCode::from_u16(h.status)
        && (status.is_client_error() || status.is_server_error())
    {
        return text(status, &h.message, head);
    }
    ui::warn(format!(
        "http: {} {} {}: {e:#}",
        event.facts.peer, event.method, event.target
    ));
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error (the server's log says more)",
        head,
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("the handler did not finish: {e}"))?
}

async fn dynamic_get(
    state: &State,
    route: Route,
    facts: RequestFacts,
    head: bool,
    event: &HttpEvent,
) -> Answer {
    let dynamic = state.dynamic.clone();
    let result = blocking(move || match route {
        Route::BootScript => dynamic
            .boot_script(&facts)
            .map(|s| (s, "text/plain; charset=utf-8")),
        Route::Kickstart => dynamic
            .kickstart(&facts)
            .map(|s| (s, "text/plain; charset=utf-8")),
        _ => {
            let mut s = serde_json::to_string_pretty(&dynamic.status())?;
            s.push('\n');
            Ok((s, "application/json"))
        }
    })
    .await;
    match result {
        Ok((text, ctype)) => answer(StatusCode::OK, ctype, Bytes::from(text), head),
        Err(e) => failure(&e, event, head),
    }
}

/// Read a request body of at most `limit` bytes.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Vec<u8>, Answer> {
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("a report has at most {limit} bytes"),
            false,
        )
    };
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => return Ok(buf),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > limit {
                        return Err(too_large());
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => {
                return Err(text(
                    StatusCode::BAD_REQUEST,
                    &format!("reading the body: {e}"),
                    false,
                ));
            }
        }
    }
}

async fn report(state: &State, facts: RequestFacts, body: Incoming, event: &HttpEvent) -> Answer {
    let bytes = match read_body(body, MAX_REPORT_BYTES).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    let mut r: Report = match serde_path_to_error::deserialize(de) {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("report: {}: {}", e.path(), e.inner()),
                false,
            );
        }
    };
    let Some(mac) = normalize_mac(&r.mac) else {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("report: mac {:?} is not a hardware address", r.mac),
            false,
        );
    };
    r.mac = mac;
    r.uuid = match r.uuid.as_deref().map(normalize_uuid) {
        None => None,
        Some(Ok(u)) => u,
        Some(Err(e)) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("report: uuid: {e}"),
                false,
            );
        }
    };
    let dynamic = state.dynamic.clone();
    match blocking(move || dynamic.report(&facts, r)).await {
        Ok(()) => {
            let mut a = Response::new(Inner::Empty);
            *a.status_mut() = StatusCode::NO_CONTENT;
            a
        }
        Err(e) => failure(&e, event, false),
    }
}

async fn serve_file(
    root: Arc<Root>,
    overlay: Option<Arc<Root>>,
    rel: Vec<u8>,
    method: &Method,
    headers: &HeaderMap,
    event: &HttpEvent,
) -> Answer {
    let head = method == Method::HEAD;
    if method != Method::GET && !head {
        return method_not_allowed("GET, HEAD", head);
    }
    let ctype = content_type(&rel);
    let opened = tokio::task::spawn_blocking(move || {
        if let Some(o) = overlay.map(|o| o.open_file(&rel)).transpose()?.flatten() {
            return Ok(Some(o));
        }
        root.open_file(&rel)
    })
    .await;
    let o = match opened {
        Ok(Ok(Some(o))) => o,
        Ok(Ok(None)) => return text(StatusCode::NOT_FOUND, "not found", head),
        Ok(Err(e)) if e.kind() == io::ErrorKind::PermissionDenied => {
            return text(StatusCode::FORBIDDEN, "forbidden", head);
        }
        Ok(Err(e)) => return failure(&anyhow!(e).context("opening the file"), event, head),
        Err(e) => return failure(&anyhow!("opening the file: {e}"), event, head),
    };
    let validators = |h: &mut HeaderMap| {
        if let Ok(v) = HeaderValue::from_str(&o.etag) {
            h.insert(header::ETAG, v);
        }
        if let Some(m) = o.mtime
            && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(m))
        {
            h.insert(header::LAST_MODIFIED, v);
        }
    };
    if not_modified(headers, &o.etag, o.mtime) {
        let mut r = Response::new(Inner::Empty);
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        validators(r.headers_mut());
        return r;
    }
    let range = match headers.get(header::RANGE) {
        Some(v) if !head && if_range_holds(headers, &o.etag, o.mtime) => {
            parse_range(v.as_bytes(), o.len)
        }
        _ => RangeAnswer::Full,
    };
    let (status, start, count) = match range {
        RangeAnswer::Full => (StatusCode::OK, 0, o.len),
        RangeAnswer::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            let mut r = text(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range not satisfiable",
                head,
            );
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{}", o.len))
                    .unwrap_or(HeaderValue::from_static("bytes */0")),
            );
            return r;
        }
    };
    let inner = if head || count == 0 {
        Inner::Empty
    } else {
        Inner::File(FileBody {
            file: Arc::new(o.file),
            offset: start,
            remaining: count,
            pending: None,
        })
    };
    let mut r = Response::new(inner);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{}", start + count - 1, o.len))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    validators(h);
    r
}

/// A listening TCP socket on `addr` with SO_REUSEADDR (a restarted server binds at once while
/// old connections linger; a live listener on the port still makes it fail) and a backlog of
/// [`LISTEN_BACKLOG`] (a rack of machines booting at once connects at once).
pub fn listen(addr: SocketAddr) -> Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .with_context(|| format!("creating a TCP socket for {addr}"))?;
    sock.set_reuse_address(true)
        .with_context(|| format!("setting SO_REUSEADDR on {addr}"))?;
    sock.set_nonblocking(true)
        .with_context(|| format!("making {addr} non-blocking"))?;
    sock.bind(&addr.into()).with_context(|| {
        format!("binding the HTTP server to {addr} (is another server listening there?)")
    })?;
    sock.listen(LISTEN_BACKLOG)
        .with_context(|| format!("listening on {addr}"))?;
    Ok(sock.into())
}

/// A bound listening socket and opened roots, ready to [`Server::run`].
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    boot_dir: PathBuf,
    repo_dir: Option<PathBuf>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Server {
    /// Open the boot directory and the repository (refused unless it is an OSTree archive
    /// repository) and bind the listening socket; errors name the directory or the address.
    /// Must be called inside a tokio runtime.
    pub fn bind(cfg: ServeConfig) -> Result<Self> {
        let listener = listen(cfg.bind)?;
        Self::bind_on(cfg, listener)
    }

    /// [`Server::bind`] on a socket already listening ([`listen`]): `cfg.bind` only names it.
    pub fn bind_on(cfg: ServeConfig, listener: std::net::TcpListener) -> Result<Self> {
        let boot = Root::open(&cfg.boot_dir, "boot directory")?;
        let repo = match &cfg.repo_dir {
            Some(p) => {
                let root = Root::open(p, "OSTree repository")?;
                check_archive_repo(&root)?;
                Some(Arc::new(root))
            }
            None => None,
        };
        let overlay = match &cfg.overlay_dir {
            Some(p) => Some(Arc::new(Root::open(p, "overlay directory")?)),
            None => None,
        };
        let listener = tokio::net::TcpListener::from_std(listener)
            .with_context(|| format!("registering HTTP {} with tokio", cfg.bind))?;
        Ok(Self {
            listener,
            state: Arc::new(State {
                boot: Arc::new(boot),
                overlay,
                repo,
                dynamic: cfg.dynamic,
                events: cfg.events,
                log_requests: cfg.log_requests,
                scheme: if cfg.tls.is_some() { "https" } else { "http" },
            }),
            boot_dir: cfg.boot_dir,
            repo_dir: cfg.repo_dir,
            tls: cfg.tls,
        })
    }

    /// The bound address (the port the kernel picked for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("reading the HTTP socket's address")
    }

    /// Answer requests until the task is cancelled; dropping the future closes every
    /// connection. Errors of single connections are not fatal; nor is a failing `accept`
    /// (out of file descriptors): it is logged and retried.
    pub async fn run(self) -> Result<()> {
        let addr = self.local_addr()?;
        ui::info(format!(
            "{}: listening on {addr}: {} at /{}",
            if self.tls.is_some() { "https" } else { "http" },
            self.boot_dir.display(),
            self.repo_dir
                .as_deref()
                .map(|r| format!(", the repository {} at /{REPO_PREFIX}/", r.display()))
                .unwrap_or_default()
        ));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .keep_alive(true);
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let state = self.state.clone();
                        let service = hyper::service::service_fn(move |req| {
                            let state = state.clone();
                            async move { Ok::<_, Infallible>(handle(state, peer, req).await) }
                        });
                        let builder = builder.clone();
                        let tls = self.tls.clone();
                        // A client that goes away mid-answer (or mid-handshake) is the
                        // client's business; the answer's log line says it was cut short.
                        connections.spawn(async move {
                            match tls {
                                None => {
                                    let _ = builder
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                }
                                Some(tls) => {
                                    let shake =
                                        tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream));
                                    match shake.await {
                                        Ok(Ok(s)) => {
                                            let _ = builder
                                                .serve_connection(TokioIo::new(s), service)
                                                .await;
                                        }
                                        Ok(Err(e)) => ui::warn(format!(
                                            "https: handshake with {peer} failed: {e}"
                                        )),
                                        Err(_) => ui::warn(format!(
                                            "https: no handshake from {peer} within {} s",
                                            HEADER_TIMEOUT.as_secs()
                                        )),
                                    }
                                }
                            }
                        });
                    }
                    Err(e) => {
                        ui::warn(format!("http: accepting a connection on {addr}: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
}

/// Bind and run: [`Server::bind`] then [`Server::run`].
pub async fn serve(cfg: ServeConfig) -> Result<()> {
    Server::bind(cfg)?.run().await
}

/// Serve `dir` at `/` on `addr` with the [`SimpleDynamic`] routes, no repository and no
/// request log, until cancelled: the hook a benchmark uses to compare this server with nginx
/// (`cargo run --release --example pxe_http_serve -- DIR ADDR`).
pub async fn serve_dir(dir: &Path, addr: SocketAddr) -> Result<()> {
    let mut cfg = ServeConfig::new(addr, dir, Arc::new(SimpleDynamic::default()));
    cfg.log_requests = false;
    serve(cfg).await
}

#[cfg(test)]
mod tests;
pub mod tls;
