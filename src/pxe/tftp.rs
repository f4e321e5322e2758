//! A read-only TFTP server for network boot.
//!
//! Firmware fetches its first files over TFTP: the UEFI or BIOS PXE ROM loads a boot loader
//! (iPXE, GRUB, PXELINUX), which may fetch more the same way. This module serves the files of
//! one directory, the *root*, to many machines at once:
//!
//! - RFC 1350 read requests. Modes `octet` and `netascii` are accepted and both are sent as
//!   octet (bytes as they are on disk: boot files are binary, and no PXE client asks for
//!   netascii); `mail` and anything else is refused with ERROR 4.
//! - Option negotiation (RFC 2347): `blksize` (RFC 2348, 8..65464), `tsize` and `timeout`
//!   (RFC 2349, timeout 1..255 s), `windowsize` (RFC 7440, 1..65535). Options are matched
//!   without regard to case; unknown options and options with values out of range are left
//!   out of the answer; the first occurrence of an option counts. An OACK is sent only when
//!   at least one option was accepted, and data starts after the client's ACK 0 (RFC 7440
//!   does the same for `windowsize`). A client that ends the transfer after reading the OACK,
//!   as UEFI firmware does with ERROR 8 to learn a file's size before the real request, just
//!   ends the transfer ([`TransferResult::OptionsProbe`]): no error is sent back and nothing
//!   is logged.
//! - Windows of `windowsize` blocks: the whole window is sent, then the server waits for an
//!   ACK. An ACK of a block in the window starts the next window right after that block; with
//!   a window of more than one block, an ACK of the block just before the window (the client
//!   saw a gap) sends the window again at once. A timeout sends the whole unacknowledged
//!   window again, up to [`TftpConfig::retries`] times, then the transfer is given up (ERROR 0
//!   to the client). With a window of one block this is RFC 1350's lock-step, and duplicate
//!   ACKs are ignored (no Sorcerer's Apprentice).
//! - Block numbers wrap from 65535 to 0, so files of any size can be sent.
//! - Each transfer runs in its own tokio task on its own UDP socket, bound to an ephemeral
//!   port and connected to the client (RFC 1350's transfer identifiers): the kernel drops
//!   packets from other addresses instead of this server answering them with ERROR 5.
//! - Read-only: write requests get ERROR 2. Paths are taken relative to the root whatever
//!   they say: `\` is read as `/`, leading `/` are dropped (as most PXE servers do), and paths
//!   with a `..` component, NUL bytes or naming the root itself are refused with ERROR 2
//!   ([`request_path`], which is `sys::tree::check_path`). Files are opened through a handle
//!   on the root with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` ([`Tree::open_file`]):
//!   a symbolic link is followed, but inside the root only (a link to `/etc/passwd` names the
//!   root's `etc/passwd`, usually absent). Only regular files are sent.
//! - An overlay ([`TftpServer::with_overlay`]): a directory looked into first, with the same
//!   checks; `pxe serve` keeps the menus with `{{server}}` filled in there.
//! - Packets are parsed by the pure functions [`parse`] and [`encode`]; parsing never panics.
//!   A malformed packet is logged and dropped, and serving goes on.
//! - Every transfer ends with one [`TransferEvent`] (who, which file, how many bytes, how it
//!   ended), given to a callback ([`TftpServer::on_event`]); by default [`log_event`] writes
//!   one line on stderr.
//!
//! Not done: write requests, multicast (RFC 2090), choosing the reply's source address per
//! request on a multi-homed machine (the transfer socket is bound to the address the server
//! listens on; with `0.0.0.0` the kernel's routing picks it), a cap on concurrent transfers.
//!
//! Why not a crate: `tftpd` (threads, blocking sockets) and `async-tftp` (smol's reactor and
//! thread pool beside tokio) both serve a directory by joining the client's path onto it and
//! opening the result, so a symbolic link in the root leads out of it; neither reports how
//! each transfer ended, and both log through their own channels. Replacing their directory
//! handling and adding events would be most of the work; the protocol itself is small, and
//! here it runs on tokio, which `slipway pxe serve`'s HTTP server uses too.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

use crate::sys::tree::{self, Tree};
use crate::sys::ui;

/// The port TFTP servers listen on.
pub const DEFAULT_PORT: u16 = 69;

/// The largest block size RFC 2348 allows.
pub const MAX_BLKSIZE: u16 = 65464;

/// The block size without a `blksize` option (RFC 1350).
pub const DEFAULT_BLKSIZE: u16 = 512;

/// Error codes of ERROR packets (RFC 1350, and 8 from RFC 2347).
pub mod error_code {
    /// Not defined, see the message.
    pub const NOT_DEFINED: u16 = 0;
    /// File not found.
    pub const FILE_NOT_FOUND: u16 = 1;
    /// Access violation.
    pub const ACCESS_VIOLATION: u16 = 2;
    /// Illegal TFTP operation.
    pub const ILLEGAL_OPERATION: u16 = 4;
    /// Unknown transfer ID.
    pub const UNKNOWN_TID: u16 = 5;
    /// The transfer ends because of the option negotiation (RFC 2347).
    pub const OPTIONS_REFUSED: u16 = 8;
}

const OP_RRQ: u16 = 1;
const OP_WRQ: u16 = 2;
const OP_DATA: u16 = 3;
const OP_ACK: u16 = 4;
const OP_ERROR: u16 = 5;
const OP_OACK: u16 = 6;

/// A read or write request: the file, the transfer mode, the options in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The file name as the client sent it (never empty).
    pub filename: String,
    /// The transfer mode as the client sent it (`octet`, `netascii`...; never empty).
    pub mode: String,
    /// Option names and values (names may be in any case).
    pub options: Vec<(String, String)>,
}

/// One TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Read request (opcode 1).
    Rrq(Request),
    /// Write request (opcode 2).
    Wrq(Request),
    /// A block of the file (opcode 3).
    Data {
        /// Block number (wraps from 65535 to 0).
        block: u16,
        /// The block's bytes; fewer than the block size in the last block.
        data: Vec<u8>,
    },
    /// Acknowledgement of a block (opcode 4); block 0 acknowledges an OACK.
    Ack {
        /// The block acknowledged.
        block: u16,
    },
    /// An error, which ends the transfer (opcode 5).
    Error {
        /// One of [`error_code`].
        code: u16,
        /// For people.
        message: String,
    },
    /// Option acknowledgement (opcode 6, RFC 2347).
    Oack {
        /// The options accepted, with the values granted.
        options: Vec<(String, String)>,
    },
}

/// Why bytes are not a TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than its opcode requires.
    TooShort,
    /// An opcode TFTP does not have.
    UnknownOpcode(u16),
    /// A string field without its terminating NUL.
    Unterminated,
    /// A string field that is not UTF-8.
    NotUtf8,
    /// A request with an empty file name or mode.
    EmptyField(&'static str),
    /// An option name without a value, or bytes after the options.
    BadOptions,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => write!(f, "too short"),
            Self::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            Self::Unterminated => write!(f, "a string field is not NUL-terminated"),
            Self::NotUtf8 => write!(f, "a string field is not UTF-8"),
            Self::EmptyField(what) => write!(f, "empty {what}"),
            Self::BadOptions => write!(f, "an option without a value"),
        }
    }
}

impl std::error::Error for ParseError {}

impl Packet {
    /// The packet's name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rrq(_) => "RRQ",
            Self::Wrq(_) => "WRQ",
            Self::Data { .. } => "DATA",
            Self::Ack { .. } => "ACK",
            Self::Error { .. } => "ERROR",
            Self::Oack { .. } => "OACK",
        }
    }
}

/// Parse one datagram. Never panics, whatever the bytes.
///
/// Lenient where clients are known to differ and nothing is lost: bytes after an ACK's block
/// number or after an ERROR's message are ignored, an ERROR's message may lack its NUL and is
/// read lossily, and NUL bytes padding a request after its last option are ignored.
pub fn parse(buf: &[u8]) -> Result<Packet, ParseError> {
    let (op, body) = match buf {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => return Err(ParseError::TooShort),
    };
    match op {
        OP_RRQ | OP_WRQ => {
            let fields = strings(body)?;
            let (filename, mode, opts) = match fields.as_slice() {
                [f, m, rest @ ..] => (*f, *m, rest),
                _ => return Err(ParseError::Unterminated),
            };
            if filename.is_empty() {
                return Err(ParseError::EmptyField("file name"));
            }
            if mode.is_empty() {
                return Err(ParseError::EmptyField("mode"));
            }
            let req = Request {
                filename: filename.to_string(),
                mode: mode.to_string(),
                options: option_pairs(opts)?,
            };
            Ok(if op == OP_RRQ {
                Packet::Rrq(req)
            } else {
                Packet::Wrq(req)
            })
        }
        OP_DATA => match body {
            [a, b, data @ ..] => Ok(Packet::Data {
                block: u16::from_be_bytes([*a, *b]),
                data: data.to_vec(),
            }),
            _ => Err(ParseError::TooShort),
        },
        OP_ACK => match body {
            [a, b, ..] => Ok(Packet::Ack {
                block: u16::from_be_bytes([*a, *b]),
            }),
            _ => Err(ParseError::TooShort),
        },
        OP_ERROR => match body {
            [a, b, msg @ ..] => {
                let end = msg.iter().position(|&c| c == 0).unwrap_or(msg.len());
                Ok(Packet::Error {
                    code: u16::from_be_bytes([*a, *b]),
                    message: String::from_utf8_lossy(&msg[..end]).into_owned(),
                })
            }
            _ => Err(ParseError::TooShort),
        },
        OP_OACK => Ok(Packet::Oack {
            options: option_pairs(&strings(body)?)?,
        }),
        op => Err(ParseError::UnknownOpcode(op)),
    }
}

/// NUL-terminated UTF-8 strings filling `body` exactly.
fn strings(body: &[u8]) -> Result<Vec<&str>, ParseError> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&c| c == 0)
            .ok_or(ParseError::Unterminated)?;
        let (field, tail) = rest.split_at(end);
        out.push(std::str::from_utf8(field).map_err(|_| ParseError::NotUtf8)?);
        rest = tail.get(1..).unwrap_or_default();
    }
    Ok(out)
}

/// Name/value pairs; an empty name ends them if only empty fields (padding) follow.
fn option_pairs(fields: &[&str]) -> Result<Vec<(String, String)>, ParseError> {
    let mut out = Vec::new();
    let mut rest = fields;
    loop {
        match rest {
            [] => return Ok(out),
            ["", ..] => {
                return if rest.iter().all(|f| f.is_empty()) {
                    Ok(out)
                } else {
                    Err(ParseError::BadOptions)
                };
            }
            [name, value, tail @ ..] => {
                out.push((name.to_string(), value.to_string()));
                rest = tail;
            }
            [_] => return Err(ParseError::BadOptions),
        }
    }
}

/// The bytes of a packet. String fields must not contain NUL bytes (they end a field); a
/// request's file name and mode must not be empty. Packets [`parse`] returns meet both.
pub fn encode(packet: &Packet) -> Vec<u8> {
    let mut out = Vec::new();
    match packet {
        Packet::Rrq(req) | Packet::Wrq(req) => {
            let op = if matches!(packet, Packet::Rrq(_)) {
                OP_RRQ
            } else {
                OP_WRQ
            };
            out.extend_from_slice(&op.to_be_bytes());
            put_str(&mut out, &req.filename);
            put_str(&mut out, &req.mode);
            put_options(&mut out, &req.options);
        }
        Packet::Data { block, data } => put_data(&mut out, *block, data),
        Packet::Ack { block } => {
            out.extend_from_slice(&OP_ACK.to_be_bytes());
            out.extend_from_slice(&block.to_be_bytes());
        }
        Packet::Error { code, message } => {
            out.extend_from_slice(&OP_ERROR.to_be_bytes());
            out.extend_from_slice(&code.to_be_bytes());
            put_str(&mut out, message);
        }
        Packet::Oack { options } => {
            out.extend_from_slice(&OP_OACK.to_be_bytes());
            put_options(&mut out, options);
        }
    }
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn put_options(out: &mut Vec<u8>, options: &[(String, String)]) {
    for (name, value) in options {
        put_str(out, name);
        put_str(out, value);
    }
}

/// A DATA packet into `out` (cleared first), without copying the block twice.
fn put_data(out: &mut Vec<u8>, block: u16, data: &[u8]) {
    out.clear();
    out.extend_from_slice(&OP_DATA.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
    out.extend_from_slice(data);
}

/// How the server answers; [`Default`] suits a LAN.
#[derive(Debug, Clone)]
pub struct TftpConfig {
    /// How long to wait for an acknowledgement before sending again, when the client does not
    /// ask for its own `timeout`. Default 1 s.
    pub timeout: Duration,
    /// How many times the same packet or window is sent again before the transfer is given
    /// up. Default 5.
    pub retries: u32,
    /// The largest `blksize` granted (8..=65464); a client asking for more gets this.
    /// Default 65464.
    pub max_blksize: u16,
    /// The largest `windowsize` granted (at least 1); a client asking for more gets this.
    /// The window is held in memory until acknowledged: up to `max_windowsize` ×
    /// `max_blksize` bytes per transfer (a file is read ahead 128 KiB at a time otherwise).
    /// Default 64.
    pub max_windowsize: u16,
}

impl Default for TftpConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            retries: 5,
            max_blksize: MAX_BLKSIZE,
            max_windowsize: 64,
        }
    }
}

impl TftpConfig {
    fn check(&self) -> Result<()> {
        if !(8..=MAX_BLKSIZE).contains(&self.max_blksize) {
            bail!(
                "TFTP: max_blksize {} is outside 8..={MAX_BLKSIZE}",
                self.max_blksize
            );
        }
        if self.max_windowsize == 0 {
            bail!("TFTP: max_windowsize must be at least 1");
        }
        if self.timeout.is_zero() {
            bail!("TFTP: the timeout must be longer than zero");
        }
        Ok(())
    }
}

/// What a read request's options settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Bytes per DATA block.
    pub blksize: u16,
    /// Blocks sent before waiting for an ACK.
    pub windowsize: u16,
    /// How long to wait for an ACK.
    pub timeout: Duration,
    /// The options accepted, for the OACK; empty means no OACK (data starts at once).
    pub oack: Vec<(String, String)>,
}

/// Settle a read request's options for a file of `file_size` bytes (see the module doc).
pub fn negotiate(options: &[(String, String)], file_size: u64, cfg: &TftpConfig) -> Negotiated {
    let mut n = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: cfg.timeout,
        oack: Vec::new(),
    };
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in options {
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            continue;
        }
        seen.push(name.clone());
        // Decimal digits only: no sign, no spaces.
        let number = if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) {
            value.parse::<u64>().ok()
        } else {
            None
        };
        let granted = match (name.as_str(), number) {
            ("blksize", Some(v)) if v >= 8 => {
                n.blksize = v.min(u64::from(cfg.max_blksize)) as u16;
                n.blksize.to_string()
            }
            ("tsize", Some(_)) => file_size.to_string(),
            ("timeout", Some(v @ 1..=255)) => {
                n.timeout = Duration::from_secs(v);
                v.to_string()
            }
            ("windowsize", Some(v @ 1..=65535)) => {
                n.windowsize = v.min(u64::from(cfg.max_windowsize)) as u16;
                n.windowsize.to_string()
            }
            _ => continue,
        };
        n.oack.push((name, granted));
    }
    n
}

/// The path inside the root that a request's file name names, or why it is refused: `\` is
/// read as `/`, leading `/` are dropped, `.` and empty components skipped; `..`, NUL and the
/// root itself are refused.
pub fn request_path(filename: &str) -> Result<String> {
    tree::check_path("TFTP file name", &filename.replace('\\', "/"))
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferResult {
    /// The whole file was sent and acknowledged.
    Complete,
    /// The client read the OACK and ended with ERROR 8, as UEFI firmware does to learn a
    /// file's size (`tsize`) before asking for it again.
    OptionsProbe,
    /// No such file (ERROR 1 sent).
    NotFound(String),
    /// Refused: a write request, a path outside the root, not a regular file, an unknown
    /// mode (ERROR 2 or 4 sent).
    Refused(String),
    /// The client ended the transfer with an ERROR packet.
    ClientError {
        /// The client's error code.
        code: u16,
        /// The client's message.
        message: String,
    },
    /// The client stopped acknowledging; given up after the retries (ERROR 0 sent).
    TimedOut,
    /// The client's port was closed during the transfer (ICMP port unreachable).
    ClientGone,
    /// A failure on this side: reading the file, the network (ERROR 0 sent when possible).
    Failed(String),
}

/// One transfer, when it has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferEvent {
    /// The client's address and port.
    pub peer: SocketAddr,
    /// The file name the client asked for, as it asked.
    pub path: String,
    /// File bytes the client acknowledged.
    pub bytes: u64,
    /// How it ended.
    pub result: TransferResult,
}

/// One line on stderr for a transfer (nothing for [`TransferResult::OptionsProbe`]); the
/// default event handler.
pub fn log_event(e: &TransferEvent) {
    let path = e.path.escape_debug();
    let peer = e.peer;
    match &e.result {
        TransferResult::Complete => {
            ui::info(format!("tftp: {peer} got {path} ({} bytes)", e.bytes))
        }
        TransferResult::OptionsProbe => {}
        TransferResult::NotFound(why) => {
            ui::info(format!("tftp: {peer} asked for {path}: not found ({why})"))
        }
        TransferResult::Refused(why) => {
            ui::info(format!("tftp: {peer} asked for {path}: refused: {why}"))
        }
        TransferResult::ClientError { code, message } => ui::info(format!(
            "tftp: {peer} ended the transfer of {path} after {} bytes with error {code} ({})",
            e.bytes,
            message.escape_debug()
        )),
        TransferResult::TimedOut => ui::info(format!(
            "tftp: {peer} stopped answering during {path}, after {} bytes",
            e.bytes
        )),
        TransferResult::ClientGone => ui::info(format!(
            "tftp: {peer} went away during {path}, after {} bytes",
            e.bytes
        )),
        TransferResult::Failed(why) => ui::warn(format!("tftp: sending {path} to {peer}: {why}")),
    }
}

type EventFn = Arc<dyn Fn(&TransferEvent) + Send + Sync>;

/// A TFTP server bound to its port, serving one root directory. Needs a tokio runtime.
pub struct TftpServer {
    socket: UdpSocket,
    addr: SocketAddr,
    tree: Tree,
    overlay: Option<Tree>,
    cfg: TftpConfig,
    on_event: EventFn,
}

/// What every transfer task shares.
struct Shared {
    tree: Tree,
    overlay: Option<Tree>,
    cfg: TftpConfig,
    on_event: EventFn,
    local_ip: IpAddr,
}

impl TftpServer {
    /// Open `root` (a directory) and bind `addr` (port 0: any free port, see
    /// [`TftpServer::local_addr`]). Errors name the directory or the address.
    pub async fn bind(addr: SocketAddr, root: &Path, cfg: TftpConfig) -> Result<Self> {
        cfg.check()?;
        let tree = Tree::open(root).with_context(|| format!("TFTP root {}", root.display()))?;
        let socket = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("binding the TFTP server to {addr}"))?;
        let addr = socket
            .local_addr()
            .with_context(|| format!("the address of the TFTP socket bound to {addr}"))?;
        Ok(Self {
            socket,
            addr,
            tree,
            overlay: None,
            cfg,
            on_event: Arc::new(log_event),
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory served.
    pub fn root(&self) -> &Path {
        self.tree.path()
    }

    /// Lay directory `dir` over the root: a file there is sent instead of the root's file of
    /// the same path (`pxe serve` puts the menus with `{{server}}` filled in there). The same
    /// path checks apply inside it.
    pub fn with_overlay(mut self, dir: &Path) -> Result<Self> {
        self.overlay =
            Some(Tree::open(dir).with_context(|| format!("TFTP overlay {}", dir.display()))?);
        Ok(self)
    }

    /// Call `f` when a transfer ends, instead of [`log_event`] (call that from `f` to keep
    /// the log line). `f` runs on the transfer's task: keep it short.
    pub fn on_event(mut self, f: impl Fn(&TransferEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Arc::new(f);
        self
    }

    /// Serve until the future is dropped; each request becomes a task of its own, which
    /// outlives this future until its transfer ends. Malformed packets and packets that are
    /// not requests are logged and dropped.
    pub async fn serve(self) {
        let addr = self.addr;
        let shared = Arc::new(Shared {
            tree: self.tree,
            overlay: self.overlay,
            cfg: self.cfg,
            on_event: self.on_event,
            local_ip: addr.ip(),
        });
        // The largest UDP payload.
        let mut buf = vec![0u8; 65536];
        loop {
            let (len, peer) = match self.socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    ui::warn(format!("tftp: receiving on {addr}: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let packet = buf.get(..len).map(parse);
            match packet {
                Some(Ok(Packet::Rrq(req))) => {
                    tokio::spawn(transfer(shared.clone(), peer, false, req));
                }
                Some(Ok(Packet::Wrq(req))) => {
                    tokio::spawn(transfer(shared.clone(), peer, true, req));
                }
                Some(Ok(p)) => ui::info(format!(
                    "tftp: dropped a {} packet from {peer} on {addr}: not a request",
                    p.kind()
                )),
                Some(Err(e)) => ui::info(format!(
                    "tftp: dropped a malformed packet from {peer} ({len} bytes): {e}"
                )),
                None => {}
            }
        }
    }
}

/// One request, from its own socket, to its event.
async fn transfer(shared: Arc<Shared>, peer: SocketAddr, write: bool, req: Request) {
    let (bytes, result) = match transfer_socket(shared.local_ip, peer).await {
        Ok(socket) => answer(&shared, &socket, peer, write, &req).await,
        Err(e) => (0, TransferResult::Failed(format!("{e:#}"))),
    };
    (shared.on_event)(&TransferEvent {
        peer,
        path: req.filename,
        bytes,
        result,
    });
}

async fn transfer_socket(ip: IpAddr, peer: SocketAddr) -> Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .with_context(|| format!("binding a transfer socket on {ip}"))?;
    socket
        .connect(peer)
        .await
        .with_context(|| format!("connecting a transfer socket to {peer}"))?;
    Ok(socket)
}

async fn send_error(socket: &UdpSocket, code: u16, message: &str) {
    let packet = encode(&Packet::Error {
        code,
        message: message.to_string(),
    });
    // The client may be gone already; an ERROR is never sent again.
    let _ = socket.send(&packet).await;
}

/// Answer a request: refuse it, or send the file. Returns the bytes acknowledged and how it
/// ended.
async fn answer(
    shared: &Arc<Shared>,
    socket: &UdpSocket,
    peer: SocketAddr,
    write: bool,
    req: &Request,
) -> (u64, TransferResult) {
    if write {
        send_error(
            socket,
            error_code::ACCESS_VIOLATION,
            "this server is read-only",
        )
        .await;
        return (0, TransferResult::Refused("a write request".into()));
    }
    let mode = req.mode.to_ascii_lowercase();
    if mode != "octet" && mode != "netascii" {
        send_error(socket, error_code::ILLEGAL_OPERATION, "mode not supported").await;
        return (
            0,
            TransferResult::Refused(format!("mode {}", req.mode.escape_debug())),
        );
    }
    let rel = match request_path(&req.filename) {
        Ok(rel) => rel,
        Err(e) => {
            send_error(socket, error_code::ACCESS_VIOLATION, "access violation").await;
            return (0, TransferResult::Refused(format!("{e:#}")));
        }
    };
    let opened = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || -> Result<(File, u64)> {
            let file = match shared.overlay.as_ref().map(|o| o.open_file(&rel)) {
                Some(Ok(f)) => f,
                Some(Err(e)) if !is_not_found(&e) => return Err(e),
                _ => shared.tree.open_file(&rel)?,
            };
            let size = file.metadata().context("the size of the file")?.len();
            Ok((file, size))
        })
        .await
    };
    let (file, size) = match opened {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            let (code, message, result) = refusal(&e);
            send_error(socket, code, message).await;
            return (0, result);
        }
        Err(e) => {
            send_error(socket, error_code::NOT_DEFINED, "server error").await;
            return (0, TransferResult::Failed(format!("opening the file: {e}")));
        }
    };
    let neg = negotiate(&req.options, size, &shared.cfg);
    let mut t = Transfer {
        socket,
        peer,
        retries: shared.cfg.retries,
        buf: vec![0u8; 2048],
    };
    if !neg.oack.is_empty()
        && let Err(result) = t.options(&neg).await
    {
        return (0, result);
    }
    t.send_file(Arc::new(file), &neg).await
}

/// The ERROR to send and the result to report when the file cannot be opened.
fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain()
        .find_map(|c| c.downcast_ref::<io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            )
        })
}

fn refusal(e: &anyhow::Error) -> (u16, &'static str, TransferResult) {
    let io = e.chain().find_map(|c| c.downcast_ref::<io::Error>());
    let why = format!("{e:#}");
    match io.map(|io| (io.kind(), io.raw_os_error())) {
        Some((io::ErrorKind::NotFound | io::ErrorKind::NotADirectory, _)) => (
            error_code::FILE_NOT_FOUND,
            "file not found",
            TransferResult::NotFound(why),
        ),
        Some((io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput, _)) => (
            error_code::ACCESS_VIOLATION,
            "access violation",
            TransferResult::Refused(why),
        ),
        Some((_, Some(libc::ELOOP | libc::EXDEV))) => (
            error_code::ACCESS_VIOLATION,
            "access violation",
            TransferResult::Refused(why),
        ),
        _ => (
            error_code::NOT_DEFINED,
            "cannot read the file",
            TransferResult::Failed(why),
        ),
    }
}

/// How a send or receive on the transfer socket failed: the client's port closed (the
/// kernel saw an ICMP port unreachable), or something on this side.
fn net_failure(what: &str, e: io::Error) -> TransferResult {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        TransferResult::ClientGone
    } else {
        TransferResult::Failed(format!("{what}: {e}"))
    }
}

/// What came in on a transfer socket.
enum Incoming {
    Packet(Packet),
    Timeout,
    Failed(io::Error),
}

/// The sending side of one transfer.
struct Transfer<'a> {
    socket: &'a UdpSocket,
    peer: SocketAddr,
    retries: u32,
    buf: Vec<u8>,
}

impl Transfer<'_> {
    /// The next packet from the client before `deadline`; malformed ones are logged and
    /// skipped.
    async fn recv(&mut self, deadline: Instant) -> Incoming {
        loop {
            match timeout_at(deadline, self.socket.recv(&mut self.buf)).await {
                Err(_) => return Incoming::Timeout,
                Ok(Err(e)) => return Incoming::Failed(e),
                Ok(Ok(len)) => match self.buf.get(..len).map(parse) {
                    Some(Ok(p)) => return Incoming::Packet(p),
                    Some(Err(e)) => ui::info(format!(
                        "tftp: dropped a malformed packet from {} ({len} bytes): {e}",
                        self.peer
                    )),
                    None => {}
                },
            }
        }
    }

    /// Send the OACK until the client's ACK 0; `Err` ends the transfer.
    async fn options(&mut self, neg: &Negotiated) -> Result<(), TransferResult> {
        let oack = encode(&Packet::Oack {
            options: neg.oack.clone(),
        });
        for _ in 0..=self.retries {
            if let Err(e) = self.socket.send(&oack).await {
                return Err(net_failure("sending the OACK", e));
            }
            let deadline = Instant::now() + neg.timeout;
            loop {
                match self.recv(deadline).await {
                    Incoming::Timeout => break,
                    Incoming::Failed(e) => {
                        return Err(net_failure("waiting for ACK 0", e));
                    }
                    Incoming::Packet(Packet::Ack { block: 0 }) => return Ok(()),
                    Incoming::Packet(Packet::Error { code, message }) => {
                        return Err(if code == error_code::OPTIONS_REFUSED {
                            TransferResult::OptionsProbe
                        } else {
                            TransferResult::ClientError { code, message }
                        });
                    }
                    Incoming::Packet(_) => {}
                }
            }
        }
        send_error(self.socket, error_code::NOT_DEFINED, "timed out").await;
        Err(TransferResult::TimedOut)
    }

    /// Send the file window by window; returns the bytes acknowledged and how it ended.
    async fn send_file(&mut self, file: Arc<File>, neg: &Negotiated) -> (u64, TransferResult) {
        let bs = usize::from(neg.blksize);
        let ws = usize::from(neg.windowsize);
        let mut reader = ReadAhead::new(file);
        // The first block not acknowledged, counted from 1 without wrapping.
        let mut base: u64 = 1;
        let mut acked: u64 = 0;
        let mut tries = 0;
        let mut packet = Vec::with_capacity(4 + bs);
        loop {
            let offset = (base - 1) * bs as u64;
            let window = match reader.get(offset, ws * bs).await {
                Ok(w) => w,
                Err(e) => {
                    send_error(self.socket, error_code::NOT_DEFINED, "cannot read the file").await;
                    return (
                        acked,
                        TransferResult::Failed(format!("reading the file: {e}")),
                    );
                }
            };
            let blocks = window_blocks(window.len(), bs, ws);
            let last_in_window = window.len() < ws * bs;
            for (i, range) in blocks.iter().enumerate() {
                put_data(
                    &mut packet,
                    (base + i as u64) as u16,
                    &window[range.clone()],
                );
                if let Err(e) = self.socket.send(&packet).await {
                    return (acked, net_failure("sending data", e));
                }
            }
            let deadline = Instant::now() + neg.timeout;
            // Wait for an ACK that moves the window (or asks for it again).
            let advanced = loop {
                match self.recv(deadline).await {
                    Incoming::Timeout => break None,
                    Incoming::Failed(e) => {
                        return (acked, net_failure("waiting for an ACK", e));
                    }
                    Incoming::Packet(Packet::Ack { block }) => {
                        if let Some(k) = acked_blocks(base, blocks.len(), block) {
                            break Some(k);
                        }
                        if ws > 1 && block == (base - 1) as u16 {
                            // The client missed the window's first block: send it again now.
                            break Some(0);
                        }
                        // Lock-step duplicate or stray: wait on (no Sorcerer's Apprentice).
                    }
                    Incoming::Packet(Packet::Error { code, message }) => {
                        return (acked, TransferResult::ClientError { code, message });
                    }
                    Incoming::Packet(_) => {}
                }
            };
            match advanced {
                Some(0) => {}
                Some(k) => {
                    tries = 0;
                    acked += blocks[..k].iter().map(|r| r.len() as u64).sum::<u64>();
                    base += k as u64;
                    if last_in_window && k == blocks.len() {
                        return (acked, TransferResult::Complete);
                    }
                }
                None => {
                    tries += 1;
                    if tries > self.retries {
                        send_error(self.socket, error_code::NOT_DEFINED, "timed out").await;
                        return (acked, TransferResult::TimedOut);
                    }
                }
            }
        }
    }
}

/// The byte ranges of the blocks in a window of `len` bytes read for `ws` blocks of `bs`
/// bytes: `ws` full blocks when the window is full, else the full blocks and the last, short
/// (maybe empty) block of the file.
fn window_blocks(len: usize, bs: usize, ws: usize) -> Vec<std::ops::Range<usize>> {
    let full = len / bs;
    let mut out: Vec<_> = (0..full).map(|i| i * bs..(i + 1) * bs).collect();
    if full < ws {
        out.push(full * bs..len);
    }
    out
}

/// How many blocks of the window starting at block `base` (`n` blocks) an ACK of `block`
/// acknowledges, if it names one of them. Block numbers wrap; `n` is at most 65535.
fn acked_blocks(base: u64, n: usize, block: u16) -> Option<usize> {
    let d = usize::from(block.wrapping_sub(base as u16));
    (d < n).then_some(d + 1)
}

/// Reads a file ahead in large chunks, on tokio's blocking threads.
struct ReadAhead {
    file: Arc<File>,
    start: u64,
    data: Vec<u8>,
    eof: bool,
}

const READ_AHEAD: usize = 128 * 1024;

impl ReadAhead {
    fn new(file: Arc<File>) -> Self {
        Self {
            file,
            start: 0,
            data: Vec::new(),
            eof: false,
        }
    }

    /// Bytes `offset..offset + len` of the file, fewer at its end.
    async fn get(&mut self, offset: u64, len: usize) -> io::Result<&[u8]> {
        let end = self.start + self.data.len() as u64;
        let held = offset >= self.start && (self.eof || offset + len as u64 <= end);
        if !held {
            let file = self.file.clone();
            let want = len.max(READ_AHEAD);
            let data = tokio::task::spawn_blocking(move || read_at_most(&file, offset, want))
                .await
                .map_err(io::Error::other)??;
            self.eof = data.len() < want;
            self.start = offset;
            self.data = data;
        }
        let from = usize::try_from(offset - self.start)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        let to = from.saturating_add(len).min(self.data.len());
        Ok(&self.data[from..to])
    }
}

/// Up to `len` bytes at `offset`; fewer only at the end of the file.
fn read_at_most(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut data = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut data[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    data.truncate(got);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn rrq(filename: &str, mode: &str, options: &[(&str, &str)]) -> Packet {
        Packet::Rrq(Request {
            filename: filename.into(),
            mode: mode.into(),
            options: opts(options),
        })
    }

    #[test]
    fn parses_requests_as_clients_send_them() {
        assert_eq!(
            parse(b"\0\x01pxelinux.0\0octet\0").unwrap(),
            rrq("pxelinux.0", "octet", &[])
        );
        // OVMF's first request for a file.
        assert_eq!(
            parse(b"\0\x01grubx64.efi\0octet\0tsize\x000\0blksize\x001468\0windowsize\x004\0")
                .unwrap(),
            rrq(
                "grubx64.efi",
                "octet",
                &[("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")]
            )
        );
        // Padding after the last option.
        assert_eq!(
            parse(b"\0\x01f\0octet\0blksize\x001468\0\0\0\0").unwrap(),
            rrq("f", "octet", &[("blksize", "1468")])
        );
        assert!(
            matches!(parse(b"\0\x02up\0octet\0").unwrap(), Packet::Wrq(r) if r.filename == "up")
        );
    }

    #[test]
    fn parses_the_other_packets() {
        assert_eq!(
            parse(b"\0\x04\x01\x02").unwrap(),
            Packet::Ack { block: 0x0102 }
        );
        assert_eq!(
            parse(b"\0\x04\xff\xff\0").unwrap(),
            Packet::Ack { block: 65535 }
        );
        assert_eq!(
            parse(b"\0\x03\0\x01abc").unwrap(),
            Packet::Data {
                block: 1,
                data: b"abc".to_vec()
            }
        );
        assert_eq!(
            parse(b"\0\x03\0\x02").unwrap(),
            Packet::Data {
                block: 2,
                data: vec![]
            }
        );
        assert_eq!(
            parse(b"\0\x05\0\x08User aborted the transfer\0").unwrap(),
            Packet::Error {
                code: 8,
                message: "User aborted the transfer".into()
            }
        );
        // No NUL after the message, and a message that is not UTF-8.
        assert_eq!(
            parse(b"\0\x05\0\x01gone").unwrap(),
            Packet::Error {
                code: 1,
                message: "gone".into()
            }
        );
        assert!(matches!(
            parse(b"\0\x05\0\x00\xff\0"),
            Ok(Packet::Error { code: 0, .. })
        ));
        assert_eq!(
            parse(b"\0\x06tsize\x00123\0").unwrap(),
            Packet::Oack {
                options: opts(&[("tsize", "123")])
            }
        );
    }

    #[test]
    fn refuses_malformed_packets() {
        for (bytes, want) in [
            (&b""[..], ParseError::TooShort),
            (b"\0", ParseError::TooShort),
            (b"\0\x04\0", ParseError::TooShort),
            (b"\0\x03\0", ParseError::TooShort),
            (b"\0\x05\0", ParseError::TooShort),
            (b"\0\x07", ParseError::UnknownOpcode(7)),
            (b"\xff\xff\0\0", ParseError::UnknownOpcode(65535)),
            (b"\0\x01file", ParseError::Unterminated),
            (b"\0\x01file\0octet", ParseError::Unterminated),
            (b"\0\x01file\0", ParseError::Unterminated),
            (b"\0\x01", ParseError::Unterminated),
            (b"\0\x01\0octet\0", ParseError::EmptyField("file name")),
            (b"\0\x01f\0\0", ParseError::EmptyField("mode")),
            (b"\0\x01f\xff\0octet\0", ParseError::NotUtf8),
            (b"\0\x01f\0octet\0blksize\0", ParseError::BadOptions),
            (b"\0\x01f\0octet\0\0blksize\0", ParseError::BadOptions),
            (b"\0\x06tsize\0", ParseError::BadOptions),
        ] {
            assert_eq!(parse(bytes), Err(want.clone()), "{bytes:?}");
        }
    }

    #[test]
    fn encodes_the_wire_format() {
        assert_eq!(
            encode(&rrq("a", "octet", &[("tsize", "0")])),
            b"\0\x01a\0octet\0tsize\x000\0"
        );
        assert_eq!(encode(&Packet::Ack { block: 258 }), b"\0\x04\x01\x02");
        assert_eq!(
            encode(&Packet::Data {
                block: 65535,
                data: b"xy".to_vec()
            }),
            b"\0\x03\xff\xffxy"
        );
        assert_eq!(
            encode(&Packet::Error {
                code: 2,
                message: "no".into()
            }),
            b"\0\x05\0\x02no\0"
        );
        assert_eq!(
            encode(&Packet::Oack {
                options: opts(&[("blksize", "1468")])
            }),
            b"\0\x06blksize\x001468\0"
        );
    }

    #[test]
    fn negotiates_what_it_accepts_only() {
        let cfg = TftpConfig::default();
        // OVMF.
        let n = negotiate(
            &opts(&[("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")]),
            1234,
            &cfg,
        );
        assert_eq!(
            n,
            Negotiated {
                blksize: 1468,
                windowsize: 4,
                timeout: cfg.timeout,
                oack: opts(&[("tsize", "1234"), ("blksize", "1468"), ("windowsize", "4")]),
            }
        );
        // Nothing asked, or nothing acceptable: no OACK, RFC 1350 defaults.
        for asked in [
            opts(&[]),
            opts(&[("multicast", ""), ("blksize", "7"), ("blksize", "x")]),
            opts(&[("timeout", "0"), ("timeout", "256"), ("windowsize", "0")]),
            opts(&[
                ("windowsize", "65536"),
                ("tsize", "-1"),
                ("blksize", "+512"),
            ]),
            opts(&[("blksize", " 512"), ("blksize", "")]),
        ] {
            let n = negotiate(&asked, 5, &cfg);
            assert!(n.oack.is_empty(), "{asked:?}: {n:?}");
            assert_eq!((n.blksize, n.windowsize, n.timeout), (512, 1, cfg.timeout));
        }
        // Clamped to the limits; names in any case; the first occurrence counts.
        let cfg = TftpConfig {
            max_blksize: 1024,
            max_windowsize: 8,
            ..TftpConfig::default()
        };
        let n = negotiate(
            &opts(&[
                ("BlkSize", "99999999999999"),
                ("WINDOWSIZE", "65535"),
                ("timeout", "3"),
                ("timeout", "7"),
                ("blksize", "8"),
            ]),
            0,
            &cfg,
        );
        assert_eq!((n.blksize, n.windowsize), (1024, 8));
        assert_eq!(n.timeout, Duration::from_secs(3));
        assert_eq!(
            n.oack,
            opts(&[("blksize", "1024"), ("windowsize", "8"), ("timeout", "3")])
        );
        let n = negotiate(&opts(&[("blksize", "65535")]), 0, &TftpConfig::default());
        assert_eq!(n.blksize, MAX_BLKSIZE);
    }

    #[test]
    fn request_paths_stay_relative_to_the_root() {
        for (asked, want) in [
            ("pxelinux.0", "pxelinux.0"),
            ("/pxelinux.0", "pxelinux.0"),
            ("//boot///grub/./x64.efi", "boot/grub/x64.efi"),
            ("\\boot\\grub\\grub.cfg", "boot/grub/grub.cfg"),
            ("/etc/passwd", "etc/passwd"),
        ] {
            assert_eq!(request_path(asked).unwrap(), want, "{asked}");
        }
        for asked in [
            "../../etc/passwd",
            "/../etc/passwd",
            "a/../../b",
            "a/..",
            "\\..\\..\\etc\\passwd",
            "boot\\..\\..\\x",
            "/",
            "\\",
            ".",
            "a\0b",
        ] {
            assert!(request_path(asked).is_err(), "{asked:?}");
        }
    }

    #[test]
    fn windows_split_into_blocks() {
        // A full window: no last block in it.
        assert_eq!(window_blocks(8, 4, 2), vec![0..4, 4..8]);
        // The file ends inside the window: the short last block.
        assert_eq!(window_blocks(6, 4, 2), vec![0..4, 4..6]);
        // The file ends on a block boundary inside the window: an empty last block.
        assert_eq!(window_blocks(4, 4, 2), vec![0..4, 4..4]);
        assert_eq!(window_blocks(0, 512, 1), vec![0..0]);
        assert_eq!(window_blocks(512, 512, 1), vec![0..512]);
    }

    #[test]
    fn acks_are_matched_across_the_wrap() {
        assert_eq!(acked_blocks(1, 1, 1), Some(1));
        assert_eq!(acked_blocks(1, 1, 0), None);
        assert_eq!(acked_blocks(1, 4, 3), Some(3));
        assert_eq!(acked_blocks(1, 4, 5), None);
        // Blocks 65535, 0, 1, 2 of a window past the wrap.
        assert_eq!(acked_blocks(65535, 4, 65535), Some(1));
        assert_eq!(acked_blocks(65535, 4, 0), Some(2));
        assert_eq!(acked_blocks(65535, 4, 2), Some(4));
        assert_eq!(acked_blocks(65535, 4, 3), None);
        assert_eq!(acked_blocks(65535, 4, 65534), None);
        // The second time around.
        assert_eq!(acked_blocks(65536 + 65536 + 7, 2, 8), Some(2));
        // The largest window never mistakes the block before it for one of its own.
        assert_eq!(acked_blocks(10, 65535, 9), None);
        assert_eq!(acked_blocks(10, 65535, 8), Some(65535));
    }

    fn field() -> impl Strategy<Value = String> {
        "[^\0]{1,20}"
    }

    fn options() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec((field(), "[^\0]{0,8}"), 0..5)
    }

    fn request() -> impl Strategy<Value = Request> {
        (field(), field(), options()).prop_map(|(filename, mode, options)| Request {
            filename,
            mode,
            options,
        })
    }

    fn packet() -> impl Strategy<Value = Packet> {
        prop_oneof![
            request().prop_map(Packet::Rrq),
            request().prop_map(Packet::Wrq),
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..600))
                .prop_map(|(block, data)| Packet::Data { block, data }),
            any::<u16>().prop_map(|block| Packet::Ack { block }),
            (any::<u16>(), "[^\0]{0,40}")
                .prop_map(|(code, message)| Packet::Error { code, message }),
            options().prop_map(|options| Packet::Oack { options }),
        ]
    }

    proptest! {
        // proptest's default: 256 cases, or PROPTEST_CASES (`bench/run.sh pxe` runs many more).
        #![proptest_config(ProptestConfig::default())]

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_near_requests(
            op in 0u16..8,
            body in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..64),
        ) {
            let mut bytes = op.to_be_bytes().to_vec();
            bytes.extend(body);
            let _ = parse(&bytes);
        }

        #[test]
        fn encode_then_parse_round_trips(p in packet()) {
            prop_assert_eq!(parse(&encode(&p)), Ok(p));
        }
    }
}
