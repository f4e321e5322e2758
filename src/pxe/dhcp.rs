//! DHCP for network boot: what `slipway pxe serve --dhcp proxy|full|off` answers.
//!
//! Two layers:
//! - a pure core, [`respond`]: one decoded request in, a [`Decision`] out (the reply's bytes
//!   and where to send them, or why nothing is sent). It does no I/O and reads no clock; the
//!   caller passes the time. Leases change only in memory ([`Leases`]); the caller saves them.
//! - a socket layer, [`Server`] / [`serve`]: UDP sockets on port 67 (DHCP) and 4011 (PXE boot
//!   server), one task that answers both, leases saved before an acknowledgement leaves.
//!
//! # Modes
//! - **proxy** (default): answers PXE clients only (option 60 starting with `PXEClient`, or
//!   `HTTPClient` for UEFI HTTP boot) and never hands out an address (`yiaddr` 0), so it runs
//!   beside a site's DHCP server, which gives the address while this server names the boot
//!   program. A proxy offer carries the server identifier (54), option 60, the client's
//!   UUID/GUID (97) echoed and a PXE boot menu in option 43; firmware then asks the PXE boot
//!   server on port 4011 and takes the boot program from that acknowledgement.
//! - **full**: an address server for an isolated lab: addresses from a range, leases kept in a
//!   JSON file, and for PXE clients the boot program in the same reply (`siaddr` + `file`, and
//!   options 66/67), as dnsmasq does. Clients that are not PXE clients get an address only.
//! - **off**: nothing is answered (another DHCP server on the network names the programs).
//!
//! # Which boot program
//! By client architecture (option 93, else the `Arch:NNNNN` part of option 60):
//!
//! | arch | firmware | answer |
//! | --- | --- | --- |
//! | 0 | BIOS | `undionly.kpxe` by TFTP |
//! | 6 | UEFI ia32 | only when an ia32 EFI program is configured: Debian's `ipxe` package ships x86-64 EFI programs only, and a 64-bit program does not start on 32-bit firmware; otherwise no answer and a log line |
//! | 7, 9 | UEFI x86-64 (9 is "EBC", sent by some x86-64 firmware) | `snponly.efi` (configurable) by TFTP |
//! | 10, 11 | UEFI ARM 32/64 | only when an ARM program is configured (Debian's `ipxe` package has none); otherwise no answer and a log line |
//! | 16, 19 (option 60 `HTTPClient`) | UEFI HTTP boot, x86-64 / ARM64 | option 60 `HTTPClient` and an `http://` URL of the EFI program (19 only when an ARM64 program is configured) |
//!
//! Any client that is already iPXE (option 77 user class containing `iPXE`, in RFC 3004
//! length-prefixed form or as the raw bytes QEMU's iPXE ROM sends, or iPXE's option 175) gets
//! the HTTP boot script URL (`http://SERVER:PORT/boot.ipxe`) instead of a program, so iPXE never
//! loads iPXE again in a loop.
//!
//! # Where replies go
//! - replies to port 4011 go back to the address and port the request came from (OVMF asks
//!   from port 4011, iPXE from 68), sent from port 4011 (iPXE drops them otherwise);
//! - replies to port 67: to the relay (`giaddr`, port 67) when relayed; NAKs are broadcast;
//!   otherwise unicast to `ciaddr`, port 68, when the client has an address (`ciaddr` set) and
//!   did not ask for broadcast (flag clear); in every other case broadcast to
//!   255.255.255.255:68. A client without an address cannot be reached by unicast from a plain
//!   UDP socket (that needs an ARP entry made by hand), and RFC 2131 allows broadcast there.
//!
//! The PXE boot menu (option 43): discovery control (6) = 3 (no broadcast or multicast
//! discovery: ask the servers listed), boot servers (8) = this server for boot server type
//! 0x8000 (the first vendor-specific type; type 0 means "boot from local disk" to EDK2), boot
//! menu (9) with one entry of that type, menu prompt (10) with timeout 0 (take the first entry
//! at once). This is what dnsmasq sends for a `pxe-service`; without a boot menu, OVMF and other
//! firmware ignore a proxy offer or fall back to Microsoft's BINL variant (which port 4011
//! also answers).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use dhcproto::v4::{self, DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use crate::sys::ui;

/// The DHCP server port.
pub const DHCP_SERVER_PORT: u16 = 67;
/// The DHCP client port.
pub const DHCP_CLIENT_PORT: u16 = 68;
/// The PXE boot server port (PXE 2.1 boot server discovery, and BINL).
pub const PXE_PORT: u16 = 4011;
/// Name of full mode's lease file in the state directory.
pub const LEASE_FILE: &str = "dhcp-leases.json";

/// PXE boot server type of the one boot menu entry: the first vendor-specific type.
const BOOT_SERVER_TYPE: u16 = 0x8000;
/// PXE vendor sub-options (option 43), PXE 2.1 table 2-1.
const PXE_DISCOVERY_CONTROL: u8 = 6;
const PXE_BOOT_SERVERS: u8 = 8;
const PXE_BOOT_MENU: u8 = 9;
const PXE_MENU_PROMPT: u8 = 10;
const PXE_BOOT_ITEM: u8 = 71;
const PXE_END: u8 = 255;
/// iPXE's encapsulated options; present in every request iPXE sends.
const IPXE_ENCAP_OPTION: u8 = 175;
/// How long an offered address stays held for the client it was offered to.
const OFFER_HOLD_SECS: u64 = 60;
/// How long an address a client declined (found in use) is not offered again.
const DECLINE_HOLD_SECS: u64 = 600;
/// BOOTP's minimum message size (RFC 1542); some PXE ROMs drop shorter replies.
const MIN_REPLY_LEN: usize = 300;
/// Longest name that fits the `file` header field with its terminating NUL.
const MAX_FILE_FIELD: usize = 127;

/// What the DHCP side of `slipway pxe serve` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DhcpMode {
    /// proxyDHCP: boot information for PXE clients, no addresses.
    #[default]
    Proxy,
    /// Addresses from a range, and boot information, for an isolated network.
    Full,
    /// Answer nothing.
    Off,
}

impl FromStr for DhcpMode {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "proxy" => Ok(Self::Proxy),
            "full" => Ok(Self::Full),
            "off" => Ok(Self::Off),
            _ => bail!("unknown DHCP mode {s:?} (expected proxy, full or off)"),
        }
    }
}

impl fmt::Display for DhcpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Proxy => "proxy",
            Self::Full => "full",
            Self::Off => "off",
        })
    }
}

/// Boot program file names, as the TFTP server serves them (and the HTTP server, at its root,
/// for UEFI HTTP boot). `None`: clients of that architecture get no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPrograms {
    /// BIOS (arch 0): an iPXE UNDI loader.
    pub bios: String,
    /// UEFI x86-64 (arch 7 and 9, HTTP boot 16): `snponly.efi`, iPXE on the firmware's own
    /// network driver. `ipxe.efi` brings its own drivers and, in Debian 12's build, never
    /// returns to the firmware when a script ends with `exit` (the local-disk answer of an
    /// installed UEFI machine): OVMF hangs there.
    pub efi_x64: String,
    /// UEFI ia32 (arch 6, HTTP boot 15).
    pub efi_ia32: Option<String>,
    /// UEFI ARM 32-bit (arch 10, HTTP boot 18).
    pub efi_arm32: Option<String>,
    /// UEFI ARM 64-bit (arch 11, HTTP boot 19).
    pub efi_arm64: Option<String>,
}

impl Default for BootPrograms {
    /// The names Debian's `ipxe` package uses (`/usr/lib/ipxe`); no ia32 or ARM program.
    fn default() -> Self {
        Self {
            bios: "undionly.kpxe".into(),
            efi_x64: "snponly.efi".into(),
            efi_ia32: None,
            efi_arm32: None,
            efi_arm64: None,
        }
    }
}

/// The address range and network settings of full mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPool {
    /// First address handed out.
    pub start: Ipv4Addr,
    /// Last address handed out (inclusive).
    pub end: Ipv4Addr,
    /// Option 1.
    pub subnet_mask: Ipv4Addr,
    /// Option 3, when the lab has a router.
    pub router: Option<Ipv4Addr>,
    /// Option 6, when the lab has name servers.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 51, in seconds.
    pub lease_secs: u32,
}

impl AddressPool {
    /// A pool for `--range A,B` with a /24 mask, no router, no DNS and one-hour leases.
    pub fn from_range(range: &str) -> Result<Self> {
        let (start, end) = parse_range(range)?;
        Ok(Self {
            start,
            end,
            subnet_mask: Ipv4Addr::new(255, 255, 255, 0),
            router: None,
            dns_servers: Vec::new(),
            lease_secs: 3600,
        })
    }

    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.start)..=u32::from(self.end)).contains(&u32::from(ip))
    }

    fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.start)..=u32::from(self.end)).map(Ipv4Addr::from)
    }
}

/// Parse `--range A,B` (two IPv4 addresses, A not after B).
pub fn parse_range(range: &str) -> Result<(Ipv4Addr, Ipv4Addr)> {
    let (a, b) = range
        .split_once(',')
        .with_context(|| format!("range {range:?}: expected two addresses, A,B"))?;
    let start: Ipv4Addr = a
        .trim()
        .parse()
        .with_context(|| format!("range {range:?}: first address {a:?}"))?;
    let end: Ipv4Addr = b
        .trim()
        .parse()
        .with_context(|| format!("range {range:?}: last address {b:?}"))?;
    if u32::from(start) > u32::from(end) {
        bail!("range {range:?}: {start} comes after {end}");
    }
    Ok((start, end))
}

/// Everything [`respond`] needs besides the request and the leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponderConfig {
    /// proxy, full or off.
    pub mode: DhcpMode,
    /// This server's address on the boot network: option 54, `siaddr` (TFTP next-server), the
    /// PXE boot server in option 43 and the host of HTTP URLs.
    pub server_ip: Ipv4Addr,
    /// Port of the HTTP server (boot script, HTTP boot programs).
    pub http_port: u16,
    /// Path of the iPXE boot script on the HTTP server, starting with `/`.
    pub boot_script_path: String,
    /// Boot program names by firmware.
    pub programs: BootPrograms,
    /// Full mode's range; required in full mode, unused otherwise.
    pub pool: Option<AddressPool>,
    /// Text of the PXE boot menu entry (some firmware shows it).
    pub menu_text: String,
    /// Port clients listen on: 68; tests use a high port.
    pub client_port: u16,
    /// Where broadcast replies go: 255.255.255.255; tests use 127.0.0.1.
    pub broadcast_ip: Ipv4Addr,
}

impl ResponderConfig {
    /// Proxy mode, Debian's iPXE program names, `/boot.ipxe`, standard ports.
    pub fn new(server_ip: Ipv4Addr, http_port: u16) -> Self {
        Self {
            mode: DhcpMode::Proxy,
            server_ip,
            http_port,
            boot_script_path: "/boot.ipxe".into(),
            programs: BootPrograms::default(),
            pool: None,
            menu_text: "slipway network boot".into(),
            client_port: DHCP_CLIENT_PORT,
            broadcast_ip: Ipv4Addr::BROADCAST,
        }
    }

    /// The iPXE boot script's URL, e.g. `http://192.0.2.1:8080/boot.ipxe`.
    pub fn boot_script_url(&self) -> String {
        self.http_url(self.boot_script_path.trim_start_matches('/'))
    }

    /// The URL of `name` at the root of the HTTP server.
    pub fn http_url(&self, name: &str) -> String {
        format!("http://{}:{}/{}", self.server_ip, self.http_port, name)
    }

    /// Check what would otherwise fail per packet: names and URLs that do not fit the `file`
    /// field, full mode without a range, a range that is not in the server's subnet.
    pub fn validate(&self) -> Result<()> {
        let p = &self.programs;
        let mut names: Vec<&str> = vec![&p.bios, &p.efi_x64];
        names.extend(
            [&p.efi_ia32, &p.efi_arm32, &p.efi_arm64]
                .into_iter()
                .flatten()
                .map(String::as_str),
        );
        for name in names {
            check_file_name(name)?;
            check_file_name(&self.http_url(name))?;
        }
        if !self.boot_script_path.starts_with('/') {
            bail!(
                "boot script path {:?} does not start with /",
                self.boot_script_path
            );
        }
        check_file_name(&self.boot_script_url())?;
        if self.menu_text.is_empty() || self.menu_text.len() > 200 {
            bail!("PXE menu text must have 1 to 200 bytes");
        }
        if self.mode == DhcpMode::Full {
            let pool = self
                .pool
                .as_ref()
                .context("full DHCP mode needs an address range (--range A,B)")?;
            let mask = u32::from(pool.subnet_mask);
            let net = u32::from(self.server_ip) & mask;
            for ip in [pool.start, pool.end] {
                if u32::from(ip) & mask != net {
                    bail!(
                        "range {}-{} is not in the subnet of {} (mask {})",
                        pool.start,
                        pool.end,
                        self.server_ip,
                        pool.subnet_mask
                    );
                }
            }
            if pool.lease_secs < 60 {
                bail!("lease time {} s is shorter than a minute", pool.lease_secs);
            }
        }
        Ok(())
    }
}

fn check_file_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_FILE_FIELD || name.contains('\0') {
        bail!(
            "boot file {name:?} must have 1 to {MAX_FILE_FIELD} bytes and no NUL to fit a DHCP reply"
        );
    }
    Ok(())
}

/// The socket a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenPort {
    /// Port 67: DHCP and proxyDHCP.
    Dhcp,
    /// Port 4011: PXE boot server. `from` is the request's source; the reply goes back there.
    Pxe {
        /// Source address and port of the request.
        from: SocketAddrV4,
    },
}

/// What the server learned about a machine from one request: the facts profiles match on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientFacts {
    /// Hardware address (`chaddr`): lower-case hex bytes joined by `:`.
    pub mac: String,
    /// Option 97 (client machine identifier: type 0 and a 16-byte GUID) as a standard UUID
    /// string, lower case. Firmware sends the GUID in EFI byte order (first three fields
    /// little-endian: EDK2 copies its EFI_GUID, iPXE converts to it), so the string matches
    /// the SMBIOS UUID that `dmidecode -s system-uuid` and QEMU's `-uuid` show. `None` when
    /// absent, malformed, or all zeros / all ones ("not set").
    pub uuid: Option<String>,
    /// Client system architecture (option 93, else `Arch:NNNNN` in option 60).
    pub arch: Option<u16>,
    /// Whether the client is iPXE (option 77 containing `iPXE`, or option 175 present).
    pub ipxe: bool,
    /// Option 60, the vendor class (lossy UTF-8).
    pub vendor_class: Option<String>,
}

impl ClientFacts {
    /// Read the facts from a request. Errors name what is missing (no hardware address).
    pub fn from_message(req: &Message) -> Result<Self, String> {
        let chaddr = client_hwaddr(req)?;
        let vendor_class = option_bytes(req, OptionCode::ClassIdentifier)
            .map(|b| String::from_utf8_lossy(b).into_owned());
        let arch = match req.opts().get(OptionCode::ClientSystemArchitecture) {
            Some(DhcpOption::ClientSystemArchitecture(a)) => Some(a.0),
            _ => vendor_class.as_deref().and_then(arch_from_vendor_class),
        };
        let uuid = option_bytes(req, OptionCode::ClientMachineIdentifier).and_then(format_uuid);
        let ipxe = option_bytes(req, OptionCode::UserClass).is_some_and(user_class_is_ipxe)
            || req
                .opts()
                .get(OptionCode::from(IPXE_ENCAP_OPTION))
                .is_some();
        Ok(Self {
            mac: format_mac(chaddr),
            uuid,
            arch,
            ipxe,
            vendor_class,
        })
    }

    fn describe(&self) -> String {
        let mut s = self.mac.clone();
        if let Some(a) = self.arch {
            s.push_str(&format!(" arch {a} ({})", arch_name(a)));
        }
        if self.ipxe {
            s.push_str(" iPXE");
        }
        s
    }
}

/// A readable name for a client architecture number (IANA "Processor Architecture Types").
pub fn arch_name(arch: u16) -> &'static str {
    match arch {
        0 => "BIOS",
        6 => "UEFI ia32",
        7 => "UEFI x86-64",
        9 => "UEFI x86-64 (EBC)",
        10 => "UEFI ARM 32-bit",
        11 => "UEFI ARM 64-bit",
        15 => "UEFI ia32 HTTP boot",
        16 => "UEFI x86-64 HTTP boot",
        18 => "UEFI ARM 32-bit HTTP boot",
        19 => "UEFI ARM 64-bit HTTP boot",
        _ => "unsupported",
    }
}

/// `Arch:00007` in `PXEClient:Arch:00007:UNDI:003000`.
fn arch_from_vendor_class(class: &str) -> Option<u16> {
    let rest = class.split(':').skip_while(|p| *p != "Arch").nth(1)?;
    rest.parse().ok()
}

/// Whether option 77 names iPXE: RFC 3004 form (length-prefixed items) or the raw bytes
/// `iPXE` that QEMU's iPXE ROM sends; both contain the four bytes.
fn user_class_is_ipxe(raw: &[u8]) -> bool {
    raw.windows(4).any(|w| w == b"iPXE")
}

/// Hex MAC, `52:54:00:12:34:56`.
fn format_mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Option 97 → UUID string (see [`ClientFacts::uuid`]).
fn format_uuid(opt: &[u8]) -> Option<String> {
    if opt.len() != 17 || opt[0] != 0 {
        return None;
    }
    let g = &opt[1..];
    if g.iter().all(|&b| b == 0) || g.iter().all(|&b| b == 0xff) {
        return None;
    }
    let h = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let rev = |b: &[u8]| h(&b.iter().rev().copied().collect::<Vec<u8>>());
    Some(format!(
        "{}-{}-{}-{}-{}",
        rev(&g[0..4]),
        rev(&g[4..6]),
        rev(&g[6..8]),
        h(&g[8..10]),
        h(&g[10..16])
    ))
}

fn client_hwaddr(req: &Message) -> Result<&[u8], String> {
    // dhcproto's chaddr() slices by hlen and panics past 16: check first.
    match req.hlen() {
        0 => Err("no hardware address (hlen 0)".into()),
        n if n > 16 => Err(format!("hardware address length {n} is over 16")),
        _ => Ok(req.chaddr()),
    }
}

fn option_bytes(req: &Message, code: OptionCode) -> Option<&[u8]> {
    match req.opts().get(code)? {
        DhcpOption::ClassIdentifier(b)
        | DhcpOption::ClientMachineIdentifier(b)
        | DhcpOption::UserClass(b)
        | DhcpOption::VendorExtensions(b) => Some(b),
        DhcpOption::Unknown(u) => Some(u.data()),
        _ => None,
    }
}

/// Decode a datagram. Checks what `dhcproto` would panic on or accept wrongly: the BOOTP
/// header's length, the magic cookie, `hlen` over 16, and option lengths its decoder asserts
/// (options 80, 81, 94, 151-155; consecutive repeats are joined first, as it does).
pub fn parse(bytes: &[u8]) -> Result<Message> {
    const HEADER: usize = 236;
    if bytes.len() < HEADER + 4 {
        bail!(
            "{} bytes, shorter than a BOOTP header and magic cookie",
            bytes.len()
        );
    }
    if bytes[HEADER..HEADER + 4] != v4::MAGIC {
        bail!("no DHCP magic cookie");
    }
    if bytes[2] > 16 {
        bail!("hardware address length {} is over 16", bytes[2]);
    }
    check_option_lengths(&bytes[HEADER + 4..])?;
    Message::decode(&mut Decoder::new(bytes)).map_err(|e| anyhow!("{e}"))
}

fn check_option_lengths(mut opts: &[u8]) -> Result<()> {
    // (code, joined length) of the run of identical options being read.
    let mut run: Option<(u8, usize)> = None;
    let check = |(code, len): (u8, usize)| -> Result<()> {
        let ok = match code {
            80 => len == 0,
            81 => len >= 3,
            94 => len == 3,
            151 => len >= 1,
            152..=155 => len == 4,
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            bail!("option {code} has a length of {len}")
        }
    };
    loop {
        match opts {
            [] | [255, ..] => break,
            [0, rest @ ..] => {
                if let Some(r) = run.take() {
                    check(r)?;
                }
                opts = rest;
            }
            [code, len, rest @ ..] if rest.len() >= *len as usize => {
                let len = *len as usize;
                run = match run {
                    Some((c, l)) if c == *code => Some((c, l + len)),
                    Some(r) => {
                        check(r)?;
                        Some((*code, len))
                    }
                    None => Some((*code, len)),
                };
                opts = &rest[len..];
            }
            // Truncated: the decoder stops there.
            _ => break,
        }
    }
    if let Some(r) = run {
        check(r)?;
    }
    Ok(())
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send a reply.
    Reply(Reply),
    /// Send nothing.
    Ignore {
        /// Why, for the log.
        reason: String,
        /// Worth a log line even when not verbose (a PXE client left without an answer, a
        /// full range); `false` for the ordinary traffic a proxy sees (non-PXE clients).
        noteworthy: bool,
    },
}

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The encoded message, at least 300 bytes.
    pub bytes: Vec<u8>,
    /// Where it goes (see the module documentation).
    pub dest: SocketAddrV4,
    /// OFFER, ACK or NAK.
    pub kind: MessageType,
    /// The client's facts.
    pub facts: ClientFacts,
    /// The boot program or URL the reply names, if any.
    pub boot: Option<String>,
    /// Address given (full mode), if any.
    pub address: Option<Ipv4Addr>,
    /// One line for the log.
    pub summary: String,
}

fn ignore(reason: impl Into<String>) -> Decision {
    Decision::Ignore {
        reason: reason.into(),
        noteworthy: false,
    }
}

fn ignore_noteworthy(reason: impl Into<String>) -> Decision {
    Decision::Ignore {
        reason: reason.into(),
        noteworthy: true,
    }
}

/// The core: decide the reply to `req`, which arrived on `port`, at `now` (Unix seconds).
/// Full mode records offers and leases in `leases` (saving them is the caller's job, before
/// sending: see [`Leases::is_dirty`]). Never panics on any decoded message.
pub fn respond(
    req: &Message,
    cfg: &ResponderConfig,
    leases: &mut Leases,
    port: ListenPort,
    now: u64,
) -> Decision {
    if cfg.mode == DhcpMode::Off {
        return ignore("DHCP is off");
    }
    if req.opcode() != Opcode::BootRequest {
        return ignore("not a request (op is not BOOTREQUEST)");
    }
    let Some(msg_type) = req.opts().msg_type() else {
        return ignore("BOOTP request without a DHCP message type (option 53)");
    };
    let facts = match ClientFacts::from_message(req) {
        Ok(f) => f,
        Err(e) => return ignore(e),
    };
    match port {
        ListenPort::Pxe { from } => respond_boot_server(req, cfg, facts, msg_type, from),
        ListenPort::Dhcp => match cfg.mode {
            DhcpMode::Proxy => respond_proxy(req, cfg, facts, msg_type),
            DhcpMode::Full => respond_full(req, cfg, leases, facts, msg_type, now),
            DhcpMode::Off => ignore("DHCP is off"),
        },
    }
}

/// The class of client asking for a boot program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BootClass {
    Pxe,
    Http,
}

impl BootClass {
    fn of(facts: &ClientFacts) -> Option<Self> {
        let c = facts.vendor_class.as_deref()?;
        if c.starts_with("PXEClient") {
            Some(Self::Pxe)
        } else if c.starts_with("HTTPClient") {
            Some(Self::Http)
        } else {
            None
        }
    }

    fn vendor_class(self) -> &'static [u8] {
        match self {
            Self::Pxe => b"PXEClient",
            Self::Http => b"HTTPClient",
        }
    }
}

/// The answer for a boot client.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BootChoice {
    class: BootClass,
    /// TFTP file name or HTTP URL.
    file: String,
    /// Whether `file` is a TFTP name (`siaddr` and option 66 name the TFTP server).
    tftp: bool,
    /// Whether the reply carries the PXE boot menu (firmware PXE clients).
    menu: bool,
}

/// Pick the boot program for a client, or say why there is none.
fn choose_boot(facts: &ClientFacts, cfg: &ResponderConfig) -> Result<BootChoice, String> {
    let Some(class) = BootClass::of(facts) else {
        return Err("not a PXE or HTTP boot client (option 60)".into());
    };
    let Some(arch) = facts.arch else {
        return Err("PXE client without an architecture (option 93)".into());
    };
    let p = &cfg.programs;
    let need = |prog: &Option<String>, what: &str| -> Result<String, String> {
        prog.clone().ok_or_else(|| {
            format!(
                "arch {arch} ({}): no {what} boot program configured \
                 (Debian's ipxe package has none)",
                arch_name(arch)
            )
        })
    };
    match class {
        BootClass::Http => {
            let prog = match arch {
                15 => need(&p.efi_ia32, "ia32 EFI")?,
                16 => p.efi_x64.clone(),
                18 => need(&p.efi_arm32, "ARM 32-bit EFI")?,
                19 => need(&p.efi_arm64, "ARM 64-bit EFI")?,
                _ => {
                    return Err(format!(
                        "HTTP boot client with arch {arch}: not an HTTP boot architecture"
                    ));
                }
            };
            Ok(BootChoice {
                class,
                file: cfg.http_url(&prog),
                tftp: false,
                menu: false,
            })
        }
        BootClass::Pxe if facts.ipxe => Ok(BootChoice {
            class,
            file: cfg.boot_script_url(),
            tftp: false,
            menu: false,
        }),
        BootClass::Pxe => {
            let prog = match arch {
                0 => p.bios.clone(),
                6 => need(&p.efi_ia32, "ia32 EFI")?,
                7 | 9 => p.efi_x64.clone(),
                10 => need(&p.efi_arm32, "ARM 32-bit EFI")?,
                11 => need(&p.efi_arm64, "ARM 64-bit EFI")?,
                _ => {
                    return Err(format!(
                        "PXE client with arch {arch} ({}): not answered",
                        arch_name(arch)
                    ));
                }
            };
            Ok(BootChoice {
                class,
                file: prog,
                tftp: true,
                menu: true,
            })
        }
    }
}

/// The PXE vendor options of an offer: the one-entry boot menu (see the module docs).
fn pxe_menu_options(cfg: &ResponderConfig) -> Vec<u8> {
    let [th, tl] = BOOT_SERVER_TYPE.to_be_bytes();
    let mut o = vec![PXE_DISCOVERY_CONTROL, 1, 3];
    o.extend([PXE_BOOT_SERVERS, 7, th, tl, 1]);
    o.extend(cfg.server_ip.octets());
    let text = cfg.menu_text.as_bytes();
    // validate() bounds the text; cut here too so a length byte never wraps.
    let text = &text[..text.len().min(200)];
    o.extend([
        PXE_BOOT_MENU,
        (text.len() + 3) as u8,
        th,
        tl,
        text.len() as u8,
    ]);
    o.extend(text);
    o.extend([PXE_MENU_PROMPT, 1 + 7, 0]);
    o.extend(b"slipway");
    o.push(PXE_END);
    o
}

/// The boot item (option 43, sub-option 71) of a boot server request: type and layer.
fn requested_boot_item(req: &Message) -> Option<[u8; 4]> {
    let mut v = option_bytes(req, OptionCode::VendorExtensions)?;
    while let [code, rest @ ..] = v {
        match code {
            0 => v = rest,
            255 => return None,
            _ => {
                let [len, rest @ ..] = rest else { return None };
                let len = *len as usize;
                if rest.len() < len {
                    return None;
                }
                if *code == PXE_BOOT_ITEM && len == 4 {
                    return Some([rest[0], rest[1], rest[2], rest[3]]);
                }
                v = &rest[len..];
            }
        }
    }
    None
}

/// A reply with the request's transaction fields copied.
fn reply_base(req: &Message, cfg: &ResponderConfig, kind: MessageType) -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_htype(req.htype())
        .set_xid(req.xid())
        .set_flags(req.flags())
        .set_giaddr(req.giaddr());
    if req.hlen() <= 16 {
        m.set_chaddr(req.chaddr());
    }
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(cfg.server_ip));
    if let Some(relay) = req.opts().get(OptionCode::RelayAgentInformation) {
        opts.insert(relay.clone());
    }
    m
}

/// Add the boot information of `choice` to a reply.
fn add_boot(m: &mut Message, req: &Message, cfg: &ResponderConfig, choice: &BootChoice) {
    // `siaddr` goes into every boot answer, an HTTP URL's too: iPXE takes a proxy answer
    // (the offer, or the acknowledgement on port 4011) only when it has a next-server and
    // a file name, or a boot menu, and otherwise boots with no file name at all.
    m.set_siaddr(cfg.server_ip);
    if choice.tftp {
        m.opts_mut().insert(DhcpOption::TFTPServerName(
            cfg.server_ip.to_string().into_bytes(),
        ));
    }
    if choice.file.len() <= MAX_FILE_FIELD {
        m.set_fname_str(&choice.file);
    }
    let opts = m.opts_mut();
    opts.insert(DhcpOption::BootfileName(choice.file.clone().into_bytes()));
    opts.insert(DhcpOption::ClassIdentifier(
        choice.class.vendor_class().to_vec(),
    ));
    if let Some(uuid) = option_bytes(req, OptionCode::ClientMachineIdentifier) {
        opts.insert(DhcpOption::ClientMachineIdentifier(uuid.to_vec()));
    }
}

/// Encode and pad to the BOOTP minimum.
fn encode(m: &Message) -> Result<Vec<u8>, String> {
    let mut bytes = m.to_vec().map_err(|e| format!("encoding the reply: {e}"))?;
    if bytes.len() < MIN_REPLY_LEN {
        bytes.resize(MIN_REPLY_LEN, 0);
    }
    Ok(bytes)
}

/// Destination of a reply sent from port 67 (see the module documentation).
fn dhcp_destination(req: &Message, cfg: &ResponderConfig, nak: bool) -> SocketAddrV4 {
    if !req.giaddr().is_unspecified() {
        SocketAddrV4::new(req.giaddr(), DHCP_SERVER_PORT)
    } else if !nak && !req.ciaddr().is_unspecified() && !req.flags().broadcast() {
        SocketAddrV4::new(req.ciaddr(), cfg.client_port)
    } else {
        SocketAddrV4::new(cfg.broadcast_ip, cfg.client_port)
    }
}

fn finish(
    m: Message,
    dest: SocketAddrV4,
    kind: MessageType,
    facts: ClientFacts,
    boot: Option<String>,
    address: Option<Ipv4Addr>,
    what: &str,
) -> Decision {
    let bytes = match encode(&m) {
        Ok(b) => b,
        Err(e) => return ignore_noteworthy(e),
    };
    let kind_name = format!("{kind:?}").to_uppercase();
    let mut summary = format!("{}: {what} {kind_name}", facts.describe());
    if let Some(a) = address {
        summary.push_str(&format!(" {a}"));
    }
    if let Some(b) = &boot {
        summary.push_str(&format!(" boot {b}"));
    }
    summary.push_str(&format!(" to {dest}"));
    Decision::Reply(Reply {
        bytes,
        dest,
        kind,
        facts,
        boot,
        address,
        summary,
    })
}

fn respond_proxy(
    req: &Message,
    cfg: &ResponderConfig,
    facts: ClientFacts,
    msg_type: MessageType,
) -> Decision {
    if msg_type == MessageType::Request && requested_boot_item(req).is_some() {
        // Boot server discovery by broadcast: answer as the boot server would.
        let dest = dhcp_destination(req, cfg, false);
        return respond_boot_server(req, cfg, facts, msg_type, dest);
    }
    if msg_type != MessageType::Discover {
        return ignore(format!(
            "{}: {msg_type:?} on port 67 is for the site's DHCP server",
            facts.mac
        ));
    }
    let choice = match choose_boot(&facts, cfg) {
        Ok(c) => c,
        Err(e) if BootClass::of(&facts).is_none() => return ignore(format!("{}: {e}", facts.mac)),
        Err(e) => return ignore_noteworthy(format!("{}: {e}", facts.mac)),
    };
    let mut m = reply_base(req, cfg, MessageType::Offer);
    add_boot(&mut m, req, cfg, &choice);
    if choice.menu {
        m.opts_mut()
            .insert(DhcpOption::VendorExtensions(pxe_menu_options(cfg)));
    } else if choice.class == BootClass::Pxe {
        // iPXE: the file is given; no boot server discovery.
        m.opts_mut().insert(DhcpOption::VendorExtensions(vec![
            PXE_DISCOVERY_CONTROL,
            1,
            8,
            PXE_END,
        ]));
    }
    let dest = dhcp_destination(req, cfg, false);
    finish(
        m,
        dest,
        MessageType::Offer,
        facts,
        Some(choice.file),
        None,
        "proxy",
    )
}

/// Port 4011: a PXE boot server discovery request (option 43 with a boot item), or a BINL
/// request (none): acknowledged with the boot program, sent back to `dest`.
fn respond_boot_server(
    req: &Message,
    cfg: &ResponderConfig,
    facts: ClientFacts,
    msg_type: MessageType,
    dest: SocketAddrV4,
) -> Decision {
    if !matches!(msg_type, MessageType::Request | MessageType::Inform) {
        return ignore(format!(
            "{}: {msg_type:?} on the boot server port: only REQUEST and INFORM are answered",
            facts.mac
        ));
    }
    if let Some(DhcpOption::ServerIdentifier(sid)) = req.opts().get(OptionCode::ServerIdentifier)
        && *sid != cfg.server_ip
    {
        return ignore(format!("{}: request for server {sid}", facts.mac));
    }
    let item = requested_boot_item(req);
    if let Some(item) = item {
        let kind = u16::from_be_bytes([item[0], item[1]]);
        if kind != BOOT_SERVER_TYPE {
            return ignore(format!(
                "{}: boot server type {kind:#06x} is not this server's",
                facts.mac
            ));
        }
        if item[2] & 0x80 != 0 {
            return ignore_noteworthy(format!(
                "{}: PXE boot integrity services (BIS) are not supported",
                facts.mac
            ));
        }
    }
    let choice = match choose_boot(&facts, cfg) {
        Ok(c) => c,
        Err(e) => return ignore_noteworthy(format!("{}: {e}", facts.mac)),
    };
    let mut m = reply_base(req, cfg, MessageType::Ack);
    m.set_ciaddr(req.ciaddr());
    add_boot(&mut m, req, cfg, &choice);
    if let Some(item) = item {
        let mut v = vec![PXE_BOOT_ITEM, 4];
        v.extend(item);
        v.push(PXE_END);
        m.opts_mut().insert(DhcpOption::VendorExtensions(v));
    }
    let dest = if dest.ip().is_unspecified() {
        SocketAddrV4::new(cfg.broadcast_ip, dest.port())
    } else {
        dest
    };
    finish(
        m,
        dest,
        MessageType::Ack,
        facts,
        Some(choice.file),
        None,
        "boot server",
    )
}

fn respond_full(
    req: &Message,
    cfg: &ResponderConfig,
    leases: &mut Leases,
    facts: ClientFacts,
    msg_type: MessageType,
    now: u64,
) -> Decision {
    let Some(pool) = cfg.pool.as_ref() else {
        return ignore_noteworthy("full DHCP mode without an address range");
    };
    let requested = match req.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let server_id = match req.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    };
    let mac = facts.mac.clone();
    match msg_type {
        MessageType::Discover => {
            let Some(ip) = leases.pick(cfg, pool, &mac, requested, now) else {
                return ignore_noteworthy(format!(
                    "{mac}: no free address in {}-{}",
                    pool.start, pool.end
                ));
            };
            leases.hold_offer(&mac, ip, now);
            full_reply(req, cfg, pool, facts, MessageType::Offer, ip)
        }
        MessageType::Request => {
            if let Some(sid) = server_id
                && sid != cfg.server_ip
            {
                leases.drop_offer(&mac);
                return ignore(format!("{mac}: chose server {sid}"));
            }
            let wanted = requested.or_else(|| {
                let c = req.ciaddr();
                (!c.is_unspecified()).then_some(c)
            });
            let Some(ip) = wanted else {
                return nak(req, cfg, facts, "no address requested");
            };
            if let Err(why) = leases.can_bind(cfg, pool, &mac, ip, server_id.is_some(), now) {
                return nak(req, cfg, facts, &why);
            }
            leases.bind(&mac, ip, now + u64::from(pool.lease_secs));
            full_reply(req, cfg, pool, facts, MessageType::Ack, ip)
        }
        MessageType::Release => {
            if leases.release(&mac, req.ciaddr(), now) {
                ignore(format!("{mac}: released {}", req.ciaddr()))
            } else {
                ignore(format!(
                    "{mac}: release of {} it does not hold",
                    req.ciaddr()
                ))
            }
        }
        MessageType::Decline => {
            let ip = requested.unwrap_or(Ipv4Addr::UNSPECIFIED);
            leases.decline(&mac, ip, now);
            ignore_noteworthy(format!(
                "{mac}: declined {ip} (address in use by another host?)"
            ))
        }
        other => ignore(format!("{mac}: {other:?} is not answered")),
    }
}

fn full_reply(
    req: &Message,
    cfg: &ResponderConfig,
    pool: &AddressPool,
    facts: ClientFacts,
    kind: MessageType,
    ip: Ipv4Addr,
) -> Decision {
    let mut m = reply_base(req, cfg, kind);
    m.set_yiaddr(ip);
    if kind == MessageType::Ack {
        m.set_ciaddr(req.ciaddr());
    }
    let opts = m.opts_mut();
    opts.insert(DhcpOption::AddressLeaseTime(pool.lease_secs));
    opts.insert(DhcpOption::Renewal(pool.lease_secs / 2));
    opts.insert(DhcpOption::Rebinding(pool.lease_secs / 8 * 7));
    opts.insert(DhcpOption::SubnetMask(pool.subnet_mask));
    if let Some(r) = pool.router {
        opts.insert(DhcpOption::Router(vec![r]));
    }
    if !pool.dns_servers.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(pool.dns_servers.clone()));
    }
    let mut boot = None;
    let mut what = "full".to_string();
    match choose_boot(&facts, cfg) {
        Ok(choice) => {
            add_boot(&mut m, req, cfg, &choice);
            if choice.menu {
                m.opts_mut()
                    .insert(DhcpOption::VendorExtensions(pxe_menu_options(cfg)));
            }
            boot = Some(choice.file);
        }
        // A boot client left without a program still gets its address; say why.
        Err(e) if BootClass::of(&facts).is_some() => what = format!("full ({e})"),
        Err(_) => {}
    }
    let dest = dhcp_destination(req, cfg, false);
    finish(m, dest, kind, facts, boot, Some(ip), &what)
}

fn nak(req: &Message, cfg: &ResponderConfig, facts: ClientFacts, why: &str) -> Decision {
    let mut m = reply_base(req, cfg, MessageType::Nak);
    m.opts_mut().insert(DhcpOption::Message(why.to_string()));
    if !req.giaddr().is_unspecified() {
        m.set_flags(Flags::default().set_broadcast());
    }
    let dest = dhcp_destination(req, cfg, true);
    finish(
        m,
        dest,
        MessageType::Nak,
        facts,
        None,
        None,
        &format!("full ({why})"),
    )
}

/// One address bound to one hardware address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Hardware address, as in [`ClientFacts::mac`].
    pub mac: String,
    /// The address.
    pub ip: Ipv4Addr,
    /// When the lease ends, Unix seconds. An ended lease still reserves the address for its
    /// MAC until the range has no never-used address left.
    pub expires: u64,
}

#[derive(Serialize, Deserialize)]
struct LeaseFile {
    version: u32,
    leases: Vec<Lease>,
}

/// Full mode's leases: bound leases (saved to a JSON file), offers held for a minute and
/// declined addresses (memory only).
#[derive(Debug, Default)]
pub struct Leases {
    path: Option<PathBuf>,
    bound: BTreeMap<String, Lease>,
    offered: BTreeMap<String, (Ipv4Addr, u64)>,
    declined: BTreeMap<Ipv4Addr, u64>,
    dirty: bool,
}

impl Leases {
    /// Leases that are never saved (proxy mode, tests).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Load leases from `path` (none when the file does not exist); [`Leases::save`] writes
    /// them back there.
    pub fn load(path: &Path) -> Result<Self> {
        let mut leases = Self {
            path: Some(path.to_path_buf()),
            ..Self::default()
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(leases),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let file: LeaseFile = serde_json::from_str(&text)
            .with_context(|| format!("parsing the lease file {}", path.display()))?;
        if file.version != 1 {
            bail!(
                "lease file {}: version {} is not 1",
                path.display(),
                file.version
            );
        }
        for l in file.leases {
            leases.bound.insert(l.mac.clone(), l);
        }
        Ok(leases)
    }

    /// Write the bound leases to the file they were loaded from, atomically (temporary file,
    /// fsync, rename, fsync of the directory). No-op for in-memory leases.
    pub fn save(&mut self) -> Result<()> {
        if let Some(path) = &self.path {
            let file = LeaseFile {
                version: 1,
                leases: self.bound.values().cloned().collect(),
            };
            let json = serde_json::to_string_pretty(&file)?;
            crate::sys::file::write_atomic(path, json.as_bytes())
                .with_context(|| format!("saving leases to {}", path.display()))?;
        }
        self.dirty = false;
        Ok(())
    }

    /// Whether bound leases changed since the last load or save.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The lease file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The bound lease of `mac`.
    pub fn get(&self, mac: &str) -> Option<&Lease> {
        self.bound.get(mac)
    }

    /// All bound leases, by MAC.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.bound.values()
    }

    /// The MAC other than `mac` that holds `ip` now (bound and not ended, or offered).
    fn held_by_other(&self, ip: Ipv4Addr, mac: &str, now: u64) -> bool {
        self.bound
            .values()
            .any(|l| l.ip == ip && l.mac != mac && l.expires > now)
            || self
                .offered
                .iter()
                .any(|(m, (a, until))| *a == ip && m != mac && *until > now)
    }

    fn usable(
        &self,
        cfg: &ResponderConfig,
        pool: &AddressPool,
        mac: &str,
        ip: Ipv4Addr,
        now: u64,
    ) -> bool {
        pool.contains(ip)
            && ip != cfg.server_ip
            && Some(ip) != pool.router
            && self.declined.get(&ip).is_none_or(|until| *until <= now)
            && !self.held_by_other(ip, mac, now)
    }

    /// The address to offer `mac`: its lease (even ended), its pending offer, the address it
    /// asks for if nobody ever had it, the first never-used address, else the address of the
    /// longest-ended lease of another MAC.
    fn pick(
        &self,
        cfg: &ResponderConfig,
        pool: &AddressPool,
        mac: &str,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        let usable = |ip| self.usable(cfg, pool, mac, ip, now);
        let ever_bound_to_other = |ip| self.bound.values().any(|l| l.ip == ip && l.mac != mac);
        if let Some(l) = self.bound.get(mac).filter(|l| usable(l.ip)) {
            return Some(l.ip);
        }
        if let Some((ip, _)) = self.offered.get(mac).filter(|(ip, _)| usable(*ip)) {
            return Some(*ip);
        }
        if let Some(ip) = requested.filter(|ip| usable(*ip) && !ever_bound_to_other(*ip)) {
            return Some(ip);
        }
        if let Some(ip) = pool
            .addresses()
            .find(|ip| usable(*ip) && !ever_bound_to_other(*ip))
        {
            return Some(ip);
        }
        self.bound
            .values()
            .filter(|l| l.mac != mac && usable(l.ip))
            .min_by_key(|l| l.expires)
            .map(|l| l.ip)
    }

    fn hold_offer(&mut self, mac: &str, ip: Ipv4Addr, now: u64) {
        self.offered
            .insert(mac.to_string(), (ip, now + OFFER_HOLD_SECS));
    }

    fn drop_offer(&mut self, mac: &str) {
        self.offered.remove(mac);
    }

    /// Why `mac` may not have `ip` (a REQUEST to NAK), if so. `selecting`: the request
    /// answers our offer (it names our server identifier).
    fn can_bind(
        &self,
        cfg: &ResponderConfig,
        pool: &AddressPool,
        mac: &str,
        ip: Ipv4Addr,
        selecting: bool,
        now: u64,
    ) -> Result<(), String> {
        if !self.usable(cfg, pool, mac, ip, now) {
            return Err(format!("{ip} is not available"));
        }
        if selecting {
            return match self.offered.get(mac) {
                Some((offered, _)) if *offered == ip => Ok(()),
                _ if self.bound.get(mac).is_some_and(|l| l.ip == ip) => Ok(()),
                _ => Err(format!("{ip} was not offered to this client")),
            };
        }
        // INIT-REBOOT or renewal: its own lease, or a free address nobody else had (the
        // server is authoritative on its isolated network, so a lost lease file heals).
        match self.bound.get(mac) {
            Some(l) if l.ip == ip => Ok(()),
            Some(l) => Err(format!("{ip} is not this client's lease ({})", l.ip)),
            None if self.bound.values().any(|l| l.ip == ip) => {
                Err(format!("{ip} is leased to another client"))
            }
            None => Ok(()),
        }
    }

    fn bind(&mut self, mac: &str, ip: Ipv4Addr, expires: u64) {
        self.offered.remove(mac);
        // An ended lease of another MAC on this address is taken over.
        self.bound.retain(|m, l| m == mac || l.ip != ip);
        self.bound.insert(
            mac.to_string(),
            Lease {
                mac: mac.to_string(),
                ip,
                expires,
            },
        );
        self.dirty = true;
    }

    /// End `mac`'s lease of `ip` now; the binding stays so the MAC gets the address back.
    fn release(&mut self, mac: &str, ip: Ipv4Addr, now: u64) -> bool {
        match self.bound.get_mut(mac) {
            Some(l) if l.ip == ip => {
                l.expires = l.expires.min(now);
                self.dirty = true;
                true
            }
            _ => false,
        }
    }

    fn decline(&mut self, mac: &str, ip: Ipv4Addr, now: u64) {
        self.offered.remove(mac);
        if self.bound.get(mac).is_some_and(|l| l.ip == ip) {
            self.bound.remove(mac);
            self.dirty = true;
        }
        if !ip.is_unspecified() {
            self.declined.insert(ip, now + DECLINE_HOLD_SECS);
        }
    }
}

/// "Offered boot program X" to a machine: sent on [`ServeConfig::events`] after each reply
/// that names a program left (so a PXE client yields one for the OFFER and one for the ACK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEvent {
    /// Who asked.
    pub facts: ClientFacts,
    /// The boot program's name or URL.
    pub program: String,
    /// OFFER or ACK.
    pub kind: MessageType,
    /// Address given in full mode.
    pub address: Option<Ipv4Addr>,
}

impl fmt::Display for BootEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.facts.mac)?;
        if let Some(u) = &self.facts.uuid {
            write!(f, " uuid {u}")?;
        }
        if let Some(a) = self.facts.arch {
            write!(f, " arch {a} ({})", arch_name(a))?;
        }
        write!(f, ": offered boot program {}", self.program)
    }
}

/// Settings of the socket layer.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// What to answer.
    pub responder: ResponderConfig,
    /// `--interface`: both sockets are bound to it (SO_BINDTODEVICE), so requests from other
    /// networks are not seen and broadcasts leave through it. Needs root (CAP_NET_RAW).
    pub interface: Option<String>,
    /// Address the sockets bind to: 0.0.0.0 (broadcasts arrive only there); tests use
    /// 127.0.0.1.
    pub bind_ip: Ipv4Addr,
    /// DHCP port: 67; 0 picks a free port (tests).
    pub dhcp_port: u16,
    /// PXE boot server port: 4011; 0 picks a free port (tests).
    pub pxe_port: u16,
    /// Full mode's lease file (`STATE_DIR/`[`LEASE_FILE`]); `None` keeps leases in memory.
    pub lease_file: Option<PathBuf>,
    /// Receives a [`BootEvent`] per boot program offered.
    pub events: Option<UnboundedSender<BootEvent>>,
    /// Log ordinary ignored packets too (non-PXE clients in proxy mode).
    pub verbose: bool,
}

impl ServeConfig {
    /// Standard ports, all addresses, no interface, leases in memory.
    pub fn new(responder: ResponderConfig) -> Self {
        Self {
            responder,
            interface: None,
            bind_ip: Ipv4Addr::UNSPECIFIED,
            dhcp_port: DHCP_SERVER_PORT,
            pxe_port: PXE_PORT,
            lease_file: None,
            events: None,
            verbose: false,
        }
    }
}

/// Bound sockets and loaded leases, ready to [`Server::run`].
pub struct Server {
    cfg: ServeConfig,
    dhcp: tokio::net::UdpSocket,
    pxe: tokio::net::UdpSocket,
    leases: Leases,
}

/// Receive buffer of the DHCP and boot server sockets, bytes.
const RECV_BUFFER: usize = 4 << 20;

/// A UDP socket with SO_REUSEADDR and SO_BROADCAST, bound to `interface` if given.
///
/// Two DHCP servers share port 67 on one machine (say, this one for a lab bridge and the
/// host's own dnsmasq for another) only when both set SO_REUSEADDR and bind their socket to
/// their interface (SO_BINDTODEVICE), as dnsmasq does with `--bind-interfaces`: the kernel
/// then hands each datagram to the socket of the interface it arrived on. If the other
/// server's socket lacks SO_REUSEADDR, binding here fails with "address in use"; if neither
/// binds to an interface, both binds succeed but Linux gives each unicast datagram to the
/// last socket bound, so one server silently steals the other's requests.
fn bind_udp(ip: Ipv4Addr, port: u16, interface: Option<&str>) -> Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = SocketAddrV4::new(ip, port);
    let on = interface
        .map(|i| format!(" on interface {i}"))
        .unwrap_or_default();
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .with_context(|| format!("creating a UDP socket for {addr}{on}"))?;
    sock.set_reuse_address(true)
        .with_context(|| format!("setting SO_REUSEADDR on {addr}{on}"))?;
    sock.set_broadcast(true)
        .with_context(|| format!("setting SO_BROADCAST on {addr}{on}"))?;
    if let Some(i) = interface {
        sock.bind_device(Some(i.as_bytes()))
            .with_context(|| format!("binding to interface {i} (SO_BINDTODEVICE needs root)"))?;
    }
    // A rack powered on at once sends its DISCOVERs in one burst: the default receive
    // buffer (about 200 KiB) drops most of a thousand. Beyond net.core.rmem_max needs root
    // (SO_RCVBUFFORCE); without it, as much as the kernel allows.
    if nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBufForce, &RECV_BUFFER)
        .is_err()
    {
        let _ = sock.set_recv_buffer_size(RECV_BUFFER);
    }
    sock.set_nonblocking(true)
        .with_context(|| format!("making {addr}{on} non-blocking"))?;
    sock.bind(&SocketAddr::V4(addr).into())
        .with_context(|| format!("binding UDP {addr}{on}"))?;
    tokio::net::UdpSocket::from_std(sock.into())
        .with_context(|| format!("registering UDP {addr}{on} with tokio"))
}

impl Server {
    /// Check the configuration, load the leases (full mode) and bind both sockets. Must be
    /// called inside a tokio runtime.
    pub fn bind(cfg: ServeConfig) -> Result<Self> {
        cfg.responder.validate()?;
        let leases = match (&cfg.lease_file, cfg.responder.mode) {
            (Some(path), DhcpMode::Full) => Leases::load(path)?,
            _ => Leases::in_memory(),
        };
        let iface = cfg.interface.as_deref();
        let dhcp = bind_udp(cfg.bind_ip, cfg.dhcp_port, iface)?;
        let pxe = bind_udp(cfg.bind_ip, cfg.pxe_port, iface)?;
        Ok(Self {
            cfg,
            dhcp,
            pxe,
            leases,
        })
    }

    /// The bound DHCP (67) socket's address.
    pub fn dhcp_addr(&self) -> Result<SocketAddr> {
        self.dhcp
            .local_addr()
            .context("reading the DHCP socket's address")
    }

    /// The bound PXE boot server (4011) socket's address.
    pub fn pxe_addr(&self) -> Result<SocketAddr> {
        self.pxe
            .local_addr()
            .context("reading the PXE socket's address")
    }

    /// Answer requests until the task is cancelled. Malformed packets, send errors and lease
    /// file errors are logged and the server goes on; it returns only if a socket fails to
    /// receive for good.
    pub async fn run(mut self) -> Result<()> {
        let r = &self.cfg.responder;
        ui::info(format!(
            "dhcp: {} mode, server {}, listening on {} and {}{}",
            r.mode,
            r.server_ip,
            self.dhcp_addr()?,
            self.pxe_addr()?,
            self.cfg
                .interface
                .as_deref()
                .map(|i| format!(" (interface {i})"))
                .unwrap_or_default()
        ));
        let mut buf67 = vec![0u8; 4096];
        let mut buf4011 = vec![0u8; 4096];
        let mut failures = 0u32;
        loop {
            let (port, received) = tokio::select! {
                r = self.dhcp.recv_from(&mut buf67) => (DHCP_SERVER_PORT, r.map(|(n, a)| (buf67[..n].to_vec(), a))),
                r = self.pxe.recv_from(&mut buf4011) => (PXE_PORT, r.map(|(n, a)| (buf4011[..n].to_vec(), a))),
            };
            match received {
                Ok((bytes, from)) => {
                    failures = 0;
                    self.handle(port, &bytes, from).await;
                }
                Err(e) => {
                    // Linux reports ICMP errors of earlier sends here (connection refused);
                    // they say nothing about this socket.
                    ui::warn(format!("dhcp: receiving on port {port}: {e}"));
                    failures += 1;
                    if failures > 100 {
                        bail!("receiving on port {port} keeps failing: {e}");
                    }
                }
            }
        }
    }

    async fn handle(&mut self, port: u16, bytes: &[u8], from: SocketAddr) {
        let SocketAddr::V4(from) = from else {
            return;
        };
        let req = match parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                ui::info(format!(
                    "dhcp: dropped a malformed packet from {from} on port {port}: {e:#}"
                ));
                return;
            }
        };
        let listen = if port == PXE_PORT {
            ListenPort::Pxe { from }
        } else {
            ListenPort::Dhcp
        };
        let decision = respond(
            &req,
            &self.cfg.responder,
            &mut self.leases,
            listen,
            unix_now(),
        );
        let reply = match decision {
            Decision::Reply(r) => r,
            Decision::Ignore { reason, noteworthy } => {
                if noteworthy || self.cfg.verbose {
                    ui::info(format!("dhcp: ignored: {reason}"));
                }
                return;
            }
        };
        if self.leases.is_dirty() {
            // RFC 2131: the lease is on disk before the client hears of it.
            if let Err(e) = self.leases.save() {
                ui::warn(format!("dhcp: not answering {}: {e:#}", reply.facts.mac));
                return;
            }
        }
        let sock = if port == PXE_PORT {
            &self.pxe
        } else {
            &self.dhcp
        };
        if let Err(e) = sock.send_to(&reply.bytes, SocketAddr::V4(reply.dest)).await {
            ui::warn(format!("dhcp: sending to {}: {e}", reply.dest));
            return;
        }
        ui::info(format!("dhcp: {}", reply.summary));
        if let (Some(tx), Some(program)) = (&self.cfg.events, reply.boot) {
            let _ = tx.send(BootEvent {
                facts: reply.facts,
                program,
                kind: reply.kind,
                address: reply.address,
            });
        }
    }
}

/// Bind and run: [`Server::bind`] then [`Server::run`].
pub async fn serve(cfg: ServeConfig) -> Result<()> {
    Server::bind(cfg)?.run().await
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{Architecture, HType, UnknownOption};

    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    /// Option 97 as firmware sends it: type 0, then the GUID in EFI byte order.
    const GUID_OPT: [u8; 17] = [
        0, 0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc,
        0xde, 0xf0,
    ];
    const UUID: &str = "12345678-1234-5678-1234-56789abcdef0";
    const NOW: u64 = 1_700_000_000;

    fn raw(code: u8, data: &[u8]) -> DhcpOption {
        DhcpOption::Unknown(UnknownOption::new(OptionCode::from(code), data.to_vec()))
    }

    fn proxy_cfg() -> ResponderConfig {
        ResponderConfig::new(SERVER, 8080)
    }

    fn full_cfg(start: u8, end: u8) -> ResponderConfig {
        let mut c = proxy_cfg();
        c.mode = DhcpMode::Full;
        let mut pool = AddressPool::from_range(&format!("192.0.2.{start},192.0.2.{end}")).unwrap();
        pool.router = Some(SERVER);
        c.pool = Some(pool);
        c.validate().unwrap();
        c
    }

    fn base(mac: &[u8], kind: MessageType, broadcast: bool) -> Message {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_chaddr(mac)
            .set_xid(0x1234_5678);
        if broadcast {
            m.set_flags(Flags::default().set_broadcast());
        }
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m
    }

    /// OVMF's PXE DISCOVER (EDK2 PxeBcBuildDhcp4Options): arch 7, UNDI 3.0, GUID, broadcast.
    fn ovmf(kind: MessageType, arch: u16) -> Message {
        let mut m = base(&MAC, kind, true);
        let o = m.opts_mut();
        o.insert(DhcpOption::MaxMessageSize(1464));
        o.insert(DhcpOption::ParameterRequestList(
            [
                1u8, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58,
                59, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135,
            ]
            .into_iter()
            .map(OptionCode::from)
            .collect(),
        ));
        o.insert(DhcpOption::ClientMachineIdentifier(GUID_OPT.to_vec()));
        o.insert(DhcpOption::ClientNetworkInterface(1, 3, 0));
        o.insert(DhcpOption::ClientSystemArchitecture(Architecture(arch)));
        o.insert(DhcpOption::ClassIdentifier(
            format!("PXEClient:Arch:{arch:05}:UNDI:003000").into_bytes(),
        ));
        m
    }

    /// OVMF's boot server discovery: REQUEST from its new address, port 4011, boot item
    /// 0x8000 layer 0 in option 43, no broadcast flag.
    fn ovmf_discovery(ciaddr: Ipv4Addr) -> Message {
        let mut m = ovmf(MessageType::Request, 7);
        m.set_flags(Flags::default()).set_ciaddr(ciaddr);
        m.opts_mut().insert(DhcpOption::VendorExtensions(vec![
            71, 4, 0x80, 0x00, 0, 0, 255,
        ]));
        m
    }

    /// QEMU's iPXE ROM: arch 0, option 77 as the raw bytes "iPXE", no broadcast flag.
    fn ipxe_rom(kind: MessageType) -> Message {
        let mut m = base(&MAC, kind, false);
        let o = m.opts_mut();
        o.insert(DhcpOption::MaxMessageSize(1472));
        o.insert(DhcpOption::ClientSystemArchitecture(Architecture(0)));
        o.insert(DhcpOption::ClientNetworkInterface(1, 2, 1));
        o.insert(DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00000:UNDI:002001".to_vec(),
        ));
        o.insert(DhcpOption::UserClass(b"iPXE".to_vec()));
        o.insert(DhcpOption::ClientMachineIdentifier(GUID_OPT.to_vec()));
        m
    }

    fn plain_client(mac: &[u8], kind: MessageType) -> Message {
        let mut m = base(mac, kind, true);
        m.opts_mut()
            .insert(DhcpOption::ClassIdentifier(b"android-dhcp-13".to_vec()));
        m
    }

    fn reply(d: Decision) -> (Reply, Message) {
        match d {
            Decision::Reply(r) => {
                let m = parse(&r.bytes).expect("reply decodes");
                (r, m)
            }
            Decision::Ignore { reason, .. } => panic!("ignored: {reason}"),
        }
    }

    fn ignored(d: Decision) -> (String, bool) {
        match d {
            Decision::Ignore { reason, noteworthy } => (reason, noteworthy),
            Decision::Reply(r) => panic!("answered: {}", r.summary),
        }
    }

    fn opt(m: &Message, code: u8) -> Option<&[u8]> {
        option_bytes(m, OptionCode::from(code))
    }

    fn bootfile(m: &Message) -> String {
        match m.opts().get(OptionCode::BootfileName) {
            Some(DhcpOption::BootfileName(b)) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("no option 67: {other:?}"),
        }
    }

    fn file_field(m: &Message) -> String {
        let f = m.fname().unwrap_or_default();
        String::from_utf8(f.iter().copied().take_while(|b| *b != 0).collect()).unwrap()
    }

    /// Sub-options of option 43 as (code, data).
    fn pxe_subopts(m: &Message) -> BTreeMap<u8, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut v = opt(m, 43).expect("option 43");
        while let [code, rest @ ..] = v {
            if *code == 255 {
                break;
            }
            let len = rest[0] as usize;
            out.insert(*code, rest[1..1 + len].to_vec());
            v = &rest[1 + len..];
        }
        out
    }

    fn run(m: &Message, cfg: &ResponderConfig, leases: &mut Leases, port: ListenPort) -> Decision {
        // Through the wire format, as the server sees it.
        let m = parse(&m.to_vec().unwrap()).unwrap();
        respond(&m, cfg, leases, port, NOW)
    }

    fn pxe_port_from(ip: Ipv4Addr, port: u16) -> ListenPort {
        ListenPort::Pxe {
            from: SocketAddrV4::new(ip, port),
        }
    }

    #[test]
    fn ovmf_discover_gets_proxy_offer_with_boot_menu() {
        let cfg = proxy_cfg();
        let (r, m) = reply(run(
            &ovmf(MessageType::Discover, 7),
            &cfg,
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        assert_eq!(r.kind, MessageType::Offer);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(m.opcode(), Opcode::BootReply);
        assert_eq!(m.xid(), 0x1234_5678);
        assert_eq!(m.chaddr(), MAC);
        assert_eq!(
            m.yiaddr(),
            Ipv4Addr::UNSPECIFIED,
            "a proxy hands out no address"
        );
        assert_eq!(
            m.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
        assert_eq!(opt(&m, 60), Some(&b"PXEClient"[..]));
        assert_eq!(opt(&m, 97), Some(&GUID_OPT[..]), "option 97 echoed");
        let sub = pxe_subopts(&m);
        assert_eq!(sub[&6], vec![3], "discovery control: use the server list");
        assert_eq!(
            sub[&8],
            vec![0x80, 0x00, 1, 192, 0, 2, 1],
            "boot server: us"
        );
        assert_eq!(&sub[&9][..3], &[0x80, 0x00, cfg.menu_text.len() as u8]);
        assert_eq!(&sub[&9][3..], cfg.menu_text.as_bytes());
        assert_eq!(sub[&10][0], 0, "prompt timeout 0: first entry at once");
        assert_eq!(r.dest, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
        assert!(r.bytes.len() >= 300);
        assert_eq!(r.boot.as_deref(), Some("snponly.efi"));
    }

    #[test]
    fn ovmf_request_on_4011_gets_ack_with_snponly_efi() {
        let cfg = proxy_cfg();
        let client = Ipv4Addr::new(192, 0, 2, 57);
        let (r, m) = reply(run(
            &ovmf_discovery(client),
            &cfg,
            &mut Leases::in_memory(),
            pxe_port_from(client, 4011),
        ));
        assert_eq!(r.kind, MessageType::Ack);
        assert_eq!(
            r.dest,
            SocketAddrV4::new(client, 4011),
            "back to the asking port"
        );
        assert_eq!(file_field(&m), "snponly.efi");
        assert_eq!(bootfile(&m), "snponly.efi");
        assert_eq!(m.siaddr(), SERVER);
        assert_eq!(
            m.opts().get(OptionCode::TFTPServerName),
            Some(&DhcpOption::TFTPServerName(b"192.0.2.1".to_vec()))
        );
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(opt(&m, 60), Some(&b"PXEClient"[..]));
        assert_eq!(opt(&m, 97), Some(&GUID_OPT[..]));
        assert_eq!(
            pxe_subopts(&m)[&71],
            vec![0x80, 0, 0, 0],
            "boot item echoed"
        );
    }

    #[test]
    fn x64_program_is_configurable() {
        let mut cfg = proxy_cfg();
        cfg.programs.efi_x64 = "snponly.efi".into();
        let client = Ipv4Addr::new(192, 0, 2, 57);
        let (_, m) = reply(run(
            &ovmf_discovery(client),
            &cfg,
            &mut Leases::in_memory(),
            pxe_port_from(client, 4011),
        ));
        assert_eq!(file_field(&m), "snponly.efi");
        // Arch 9 (EBC, sent by some x86-64 firmware) gets the same.
        let (r, _) = reply(run(
            &ovmf(MessageType::Discover, 9),
            &cfg,
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        assert_eq!(r.boot.as_deref(), Some("snponly.efi"));
    }

    #[test]
    fn bios_gets_undionly() {
        let (r, m) = reply(run(
            &ovmf(MessageType::Discover, 0),
            &proxy_cfg(),
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        assert_eq!(r.boot.as_deref(), Some("undionly.kpxe"));
        assert_eq!(file_field(&m), "undionly.kpxe");
    }

    #[test]
    fn ipxe_raw_user_class_gets_boot_script_url() {
        let cfg = proxy_cfg();
        let (r, m) = reply(run(
            &ipxe_rom(MessageType::Discover),
            &cfg,
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        assert!(r.facts.ipxe);
        assert_eq!(bootfile(&m), "http://192.0.2.1:8080/boot.ipxe");
        assert_eq!(file_field(&m), "http://192.0.2.1:8080/boot.ipxe");
        assert_eq!(m.siaddr(), SERVER, "next-server");
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            pxe_subopts(&m)[&6],
            vec![8],
            "no boot server discovery for iPXE"
        );
        // No broadcast flag, no ciaddr: broadcast all the same (no address to unicast to).
        assert_eq!(r.dest, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    }

    #[test]
    fn ipxe_rfc3004_user_class_gets_boot_script_url() {
        let mut m = ovmf(MessageType::Discover, 7);
        m.opts_mut()
            .insert(DhcpOption::UserClass(b"\x04iPXE\x07slipway".to_vec()));
        let (r, reply_msg) = reply(run(
            &m,
            &proxy_cfg(),
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        assert!(r.facts.ipxe);
        assert_eq!(bootfile(&reply_msg), "http://192.0.2.1:8080/boot.ipxe");
    }

    #[test]
    fn ipxe_option_175_counts_as_ipxe() {
        let mut m = ovmf(MessageType::Discover, 7);
        m.opts_mut()
            .insert(raw(175, &[177, 5, 1, 0x1a, 0xf4, 1, 0]));
        let (r, _) = reply(run(
            &m,
            &proxy_cfg(),
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        assert_eq!(r.boot.as_deref(), Some("http://192.0.2.1:8080/boot.ipxe"));
    }

    #[test]
    fn ipxe_proxy_request_on_4011_from_port_68_gets_url_back_on_68() {
        let client = Ipv4Addr::new(192, 0, 2, 58);
        let mut m = ipxe_rom(MessageType::Request);
        m.set_ciaddr(client);
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        let (r, ack) = reply(run(
            &m,
            &proxy_cfg(),
            &mut Leases::in_memory(),
            pxe_port_from(client, 68),
        ));
        assert_eq!(r.dest, SocketAddrV4::new(client, 68));
        assert_eq!(bootfile(&ack), "http://192.0.2.1:8080/boot.ipxe");
        // iPXE drops a proxy answer without a boot menu unless it has next-server and file.
        assert_eq!(ack.siaddr(), SERVER, "next-server");
        assert_eq!(
            ack.opts().get(OptionCode::VendorExtensions),
            None,
            "no boot item asked, none echoed"
        );
    }

    #[test]
    fn request_on_4011_for_another_server_is_ignored() {
        let client = Ipv4Addr::new(192, 0, 2, 58);
        let mut m = ipxe_rom(MessageType::Request);
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 0, 2, 9)));
        let (reason, _) = ignored(run(
            &m,
            &proxy_cfg(),
            &mut Leases::in_memory(),
            pxe_port_from(client, 68),
        ));
        assert!(reason.contains("192.0.2.9"), "{reason}");
    }

    #[test]
    fn http_boot_arch16_gets_url_and_httpclient() {
        let mut m = ovmf(MessageType::Discover, 16);
        m.opts_mut().insert(DhcpOption::ClassIdentifier(
            b"HTTPClient:Arch:00016:UNDI:003001".to_vec(),
        ));
        let (r, o) = reply(run(
            &m,
            &proxy_cfg(),
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        assert_eq!(opt(&o, 60), Some(&b"HTTPClient"[..]));
        assert_eq!(bootfile(&o), "http://192.0.2.1:8080/snponly.efi");
        assert_eq!(r.boot.as_deref(), Some("http://192.0.2.1:8080/snponly.efi"));
        assert_eq!(o.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            o.opts().get(OptionCode::VendorExtensions),
            None,
            "no PXE menu for HTTP boot"
        );
        assert_eq!(opt(&o, 97), Some(&GUID_OPT[..]));
    }

    #[test]
    fn arm_without_program_is_ignored_with_reason() {
        let mut leases = Leases::in_memory();
        for arch in [10, 11] {
            let (reason, noteworthy) = ignored(run(
                &ovmf(MessageType::Discover, arch),
                &proxy_cfg(),
                &mut leases,
                ListenPort::Dhcp,
            ));
            assert!(noteworthy, "a PXE client left without an answer is logged");
            assert!(reason.contains("ARM") && reason.contains("no "), "{reason}");
            assert!(reason.contains("52:54:00:12:34:56"), "{reason}");
        }
        let mut m = ovmf(MessageType::Discover, 19);
        m.opts_mut().insert(DhcpOption::ClassIdentifier(
            b"HTTPClient:Arch:00019:UNDI:003001".to_vec(),
        ));
        let (reason, _) = ignored(run(&m, &proxy_cfg(), &mut leases, ListenPort::Dhcp));
        assert!(reason.contains("ARM 64-bit"), "{reason}");
    }

    #[test]
    fn arm_with_program_is_answered() {
        let mut cfg = proxy_cfg();
        cfg.programs.efi_arm64 = Some("ipxe-arm64.efi".into());
        let (r, _) = reply(run(
            &ovmf(MessageType::Discover, 11),
            &cfg,
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        assert_eq!(r.boot.as_deref(), Some("ipxe-arm64.efi"));
        let mut m = ovmf(MessageType::Discover, 19);
        m.opts_mut()
            .insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
        let (r, _) = reply(run(&m, &cfg, &mut Leases::in_memory(), ListenPort::Dhcp));
        assert_eq!(
            r.boot.as_deref(),
            Some("http://192.0.2.1:8080/ipxe-arm64.efi")
        );
    }

    #[test]
    fn ia32_uefi_needs_its_own_program() {
        let (reason, _) = ignored(run(
            &ovmf(MessageType::Discover, 6),
            &proxy_cfg(),
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        assert!(reason.contains("ia32"), "{reason}");
        let mut cfg = proxy_cfg();
        cfg.programs.efi_ia32 = Some("ipxe-i386.efi".into());
        let (r, _) = reply(run(
            &ovmf(MessageType::Discover, 6),
            &cfg,
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        assert_eq!(r.boot.as_deref(), Some("ipxe-i386.efi"));
    }

    #[test]
    fn non_pxe_client_is_ignored_in_proxy_mode() {
        let (reason, noteworthy) = ignored(run(
            &plain_client(&MAC, MessageType::Discover),
            &proxy_cfg(),
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        assert!(reason.contains("not a PXE"), "{reason}");
        assert!(!noteworthy, "ordinary traffic is not logged by default");
    }

    #[test]
    fn proxy_leaves_requests_on_67_to_the_site_server() {
        let (reason, _) = ignored(run(
            &ovmf(MessageType::Request, 7),
            &proxy_cfg(),
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        assert!(reason.contains("site's DHCP server"), "{reason}");
    }

    #[test]
    fn off_mode_answers_nothing() {
        let mut cfg = proxy_cfg();
        cfg.mode = DhcpMode::Off;
        ignored(run(
            &ovmf(MessageType::Discover, 7),
            &cfg,
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        ignored(run(
            &ovmf_discovery(SERVER),
            &cfg,
            &mut Leases::in_memory(),
            pxe_port_from(SERVER, 4011),
        ));
    }

    #[test]
    fn destination_rules() {
        let cfg = proxy_cfg();
        let mut leases = Leases::in_memory();
        let client = Ipv4Addr::new(192, 0, 2, 70);
        // ciaddr set, broadcast flag clear: unicast.
        let mut m = ovmf(MessageType::Discover, 7);
        m.set_flags(Flags::default()).set_ciaddr(client);
        let (r, _) = reply(run(&m, &cfg, &mut leases, ListenPort::Dhcp));
        assert_eq!(r.dest, SocketAddrV4::new(client, 68));
        // ciaddr set, broadcast flag set: broadcast.
        m.set_flags(Flags::default().set_broadcast());
        let (r, o) = reply(run(&m, &cfg, &mut leases, ListenPort::Dhcp));
        assert_eq!(r.dest, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
        assert!(o.flags().broadcast(), "flags copied");
        // Relayed: to the relay's server port.
        let relay = Ipv4Addr::new(198, 51, 100, 1);
        m.set_giaddr(relay);
        let (r, o) = reply(run(&m, &cfg, &mut leases, ListenPort::Dhcp));
        assert_eq!(r.dest, SocketAddrV4::new(relay, 67));
        assert_eq!(o.giaddr(), relay);
    }

    #[test]
    fn facts_of_ovmf() {
        let f = ClientFacts::from_message(&ovmf(MessageType::Discover, 7)).unwrap();
        assert_eq!(f.mac, "52:54:00:12:34:56");
        assert_eq!(f.uuid.as_deref(), Some(UUID));
        assert_eq!(f.arch, Some(7));
        assert!(!f.ipxe);
        // Arch from option 60 when option 93 is missing.
        let mut m = ovmf(MessageType::Discover, 7);
        m.opts_mut().remove(OptionCode::ClientSystemArchitecture);
        assert_eq!(ClientFacts::from_message(&m).unwrap().arch, Some(7));
    }

    #[test]
    fn uuid_string_and_unset_guids() {
        assert_eq!(format_uuid(&GUID_OPT).as_deref(), Some(UUID));
        assert_eq!(format_uuid(&[0; 17]), None);
        let mut ones = [0xff; 17];
        ones[0] = 0;
        assert_eq!(format_uuid(&ones), None);
        assert_eq!(format_uuid(&GUID_OPT[..16]), None, "wrong length");
        let mut bad = GUID_OPT;
        bad[0] = 1;
        assert_eq!(format_uuid(&bad), None, "type must be 0");
    }

    #[test]
    fn parse_refuses_what_the_decoder_would_panic_on() {
        let good = ovmf(MessageType::Discover, 7).to_vec().unwrap();
        parse(&good).unwrap();
        assert!(parse(&good[..200]).is_err(), "short");
        let mut no_magic = good.clone();
        no_magic[236] = 0;
        assert!(parse(&no_magic).is_err());
        let mut long_hlen = good.clone();
        long_hlen[2] = 17;
        assert!(parse(&long_hlen).is_err(), "hlen over 16");
        // Option 94 with two bytes (dhcproto asserts three), and two 3-byte option 94 in a
        // row (joined to six by the decoder).
        let mut header = good[..240].to_vec();
        header.extend([53, 1, 1, 94, 2, 1, 3, 255]);
        assert!(
            parse(&header)
                .unwrap_err()
                .to_string()
                .contains("option 94")
        );
        let mut header = good[..240].to_vec();
        header.extend([53, 1, 1, 94, 3, 1, 3, 0, 94, 3, 1, 3, 0, 255]);
        assert!(parse(&header).is_err());
        let mut header = good[..240].to_vec();
        header.extend([53, 1, 1, 81, 1, 0, 255]);
        assert!(parse(&header).is_err(), "option 81 shorter than 3");
    }

    #[test]
    fn respond_survives_a_constructed_message_with_a_bad_hlen() {
        // A Message decoded without parse() may carry hlen > 16.
        let mut bytes = ovmf(MessageType::Discover, 7).to_vec().unwrap();
        bytes[2] = 200;
        let m = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        let (reason, _) = ignored(respond(
            &m,
            &proxy_cfg(),
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
            NOW,
        ));
        assert!(reason.contains("over 16"), "{reason}");
    }

    #[test]
    fn config_validation() {
        let mut c = proxy_cfg();
        c.validate().unwrap();
        c.programs.efi_x64 = "x".repeat(128);
        assert!(
            c.validate().is_err(),
            "file name too long for the file field"
        );
        let mut c = full_cfg(100, 110);
        c.pool = None;
        assert!(c.validate().unwrap_err().to_string().contains("--range"));
        let mut c = full_cfg(100, 110);
        c.server_ip = Ipv4Addr::new(198, 51, 100, 1);
        assert!(c.validate().unwrap_err().to_string().contains("subnet"));
        assert!(parse_range("192.0.2.9,192.0.2.1").is_err());
        assert!(parse_range("192.0.2.9").is_err());
        assert_eq!("full".parse::<DhcpMode>().unwrap(), DhcpMode::Full);
        assert!("fool".parse::<DhcpMode>().is_err());
    }

    fn full_dora(cfg: &ResponderConfig, leases: &mut Leases, m: &Message) -> (Reply, Message) {
        let (offer_r, offer) = reply(run(m, cfg, leases, ListenPort::Dhcp));
        assert_eq!(offer_r.kind, MessageType::Offer);
        let mut req = m.clone();
        let o = req.opts_mut();
        o.insert(DhcpOption::MessageType(MessageType::Request));
        o.insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
        o.insert(DhcpOption::ServerIdentifier(SERVER));
        let (ack_r, ack) = reply(run(&req, cfg, leases, ListenPort::Dhcp));
        assert_eq!(ack_r.kind, MessageType::Ack);
        assert_eq!(ack.yiaddr(), offer.yiaddr());
        (ack_r, ack)
    }

    #[test]
    fn full_mode_offer_request_ack_with_boot_file() {
        let cfg = full_cfg(100, 110);
        let mut leases = Leases::in_memory();
        let (r, o) = reply(run(
            &ovmf(MessageType::Discover, 7),
            &cfg,
            &mut leases,
            ListenPort::Dhcp,
        ));
        assert_eq!(o.yiaddr(), Ipv4Addr::new(192, 0, 2, 100));
        assert_eq!(r.address, Some(o.yiaddr()));
        assert_eq!(
            o.opts().get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(3600))
        );
        assert_eq!(
            o.opts().get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            o.opts().get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![SERVER]))
        );
        assert_eq!(o.siaddr(), SERVER, "next-server");
        assert_eq!(file_field(&o), "snponly.efi");
        assert_eq!(bootfile(&o), "snponly.efi");
        assert!(!leases.is_dirty(), "an offer is not a lease");
        assert!(leases.get("52:54:00:12:34:56").is_none());

        let (_, ack) = full_dora(&cfg, &mut leases, &ovmf(MessageType::Discover, 7));
        assert_eq!(file_field(&ack), "snponly.efi");
        assert!(leases.is_dirty(), "an ACK must be saved before it is sent");
        let l = leases.get("52:54:00:12:34:56").unwrap();
        assert_eq!(l.ip, Ipv4Addr::new(192, 0, 2, 100));
        assert_eq!(l.expires, NOW + 3600);
    }

    #[test]
    fn full_mode_plain_client_gets_address_only() {
        let cfg = full_cfg(100, 110);
        let (r, ack) = full_dora(
            &cfg,
            &mut Leases::in_memory(),
            &plain_client(&[2, 0, 0, 0, 0, 1], MessageType::Discover),
        );
        assert_eq!(r.boot, None);
        assert_eq!(ack.fname(), None);
        assert_eq!(ack.opts().get(OptionCode::BootfileName), None);
        assert_eq!(ack.opts().get(OptionCode::ClassIdentifier), None);
    }

    #[test]
    fn full_mode_naks_a_wrong_address() {
        let cfg = full_cfg(100, 110);
        let mut leases = Leases::in_memory();
        reply(run(
            &ovmf(MessageType::Discover, 7),
            &cfg,
            &mut leases,
            ListenPort::Dhcp,
        ));
        // SELECTING with an address that was not offered.
        let mut req = ovmf(MessageType::Request, 7);
        req.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                192, 0, 2, 105,
            )));
        req.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        let (r, nak) = reply(run(&req, &cfg, &mut leases, ListenPort::Dhcp));
        assert_eq!(r.kind, MessageType::Nak);
        assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.dest, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
        // INIT-REBOOT with an address outside the range.
        let mut req = ovmf(MessageType::Request, 7);
        req.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 1, 1, 1)));
        let (r, _) = reply(run(&req, &cfg, &mut leases, ListenPort::Dhcp));
        assert_eq!(r.kind, MessageType::Nak);
        assert!(!leases.is_dirty());
        // A request that names another server drops our offer, and is not answered.
        let mut req = ovmf(MessageType::Request, 7);
        req.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                192, 0, 2, 100,
            )));
        req.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 0, 2, 2)));
        ignored(run(&req, &cfg, &mut leases, ListenPort::Dhcp));
    }

    #[test]
    fn full_mode_lease_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/dhcp-leases.json");
        let cfg = full_cfg(100, 110);
        let mut leases = Leases::load(&path).unwrap();
        let other = plain_client(&[2, 0, 0, 0, 0, 1], MessageType::Discover);
        full_dora(&cfg, &mut leases, &other);
        full_dora(&cfg, &mut leases, &ovmf(MessageType::Discover, 7));
        leases.save().unwrap();
        assert!(!leases.is_dirty());
        drop(leases);

        // A new process: the same MAC gets the same address, a new MAC another one.
        let mut leases = Leases::load(&path).unwrap();
        assert_eq!(leases.iter().count(), 2);
        let (_, o) = reply(run(
            &ovmf(MessageType::Discover, 7),
            &cfg,
            &mut leases,
            ListenPort::Dhcp,
        ));
        assert_eq!(o.yiaddr(), Ipv4Addr::new(192, 0, 2, 101));
        let (_, o) = reply(run(
            &plain_client(&[2, 0, 0, 0, 0, 9], MessageType::Discover),
            &cfg,
            &mut leases,
            ListenPort::Dhcp,
        ));
        assert_eq!(o.yiaddr(), Ipv4Addr::new(192, 0, 2, 102));
        // No temporary files left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("dhcp-leases.json")]);
    }

    #[test]
    fn a_mac_gets_its_ended_lease_back() {
        let cfg = full_cfg(100, 101);
        let mut leases = Leases::in_memory();
        let a = plain_client(&[2, 0, 0, 0, 0, 0xa], MessageType::Discover);
        let b = plain_client(&[2, 0, 0, 0, 0, 0xb], MessageType::Discover);
        full_dora(&cfg, &mut leases, &a);
        // Much later, after the lease ended, B comes first: it gets the never-used address.
        let later = NOW + 100_000;
        let (_, o) = reply(respond(
            &parse(&b.to_vec().unwrap()).unwrap(),
            &cfg,
            &mut leases,
            ListenPort::Dhcp,
            later,
        ));
        assert_eq!(o.yiaddr(), Ipv4Addr::new(192, 0, 2, 101));
        let (_, o) = reply(respond(
            &parse(&a.to_vec().unwrap()).unwrap(),
            &cfg,
            &mut leases,
            ListenPort::Dhcp,
            later,
        ));
        assert_eq!(o.yiaddr(), Ipv4Addr::new(192, 0, 2, 100));
    }

    #[test]
    fn full_mode_range_exhaustion() {
        let cfg = full_cfg(100, 101);
        let mut leases = Leases::in_memory();
        full_dora(
            &cfg,
            &mut leases,
            &plain_client(&[2, 0, 0, 0, 0, 1], MessageType::Discover),
        );
        full_dora(
            &cfg,
            &mut leases,
            &plain_client(&[2, 0, 0, 0, 0, 2], MessageType::Discover),
        );
        let (reason, noteworthy) = ignored(run(
            &plain_client(&[2, 0, 0, 0, 0, 3], MessageType::Discover),
            &cfg,
            &mut leases,
            ListenPort::Dhcp,
        ));
        assert!(
            reason.contains("no free address in 192.0.2.100-192.0.2.101"),
            "{reason}"
        );
        assert!(noteworthy);
        // An outstanding offer holds its address too.
        let cfg = full_cfg(100, 100);
        let mut leases = Leases::in_memory();
        reply(run(
            &plain_client(&[2, 0, 0, 0, 0, 1], MessageType::Discover),
            &cfg,
            &mut leases,
            ListenPort::Dhcp,
        ));
        ignored(run(
            &plain_client(&[2, 0, 0, 0, 0, 2], MessageType::Discover),
            &cfg,
            &mut leases,
            ListenPort::Dhcp,
        ));
    }

    #[test]
    fn full_mode_release_keeps_the_binding() {
        let cfg = full_cfg(100, 110);
        let mut leases = Leases::in_memory();
        let (_, ack) = full_dora(&cfg, &mut leases, &ovmf(MessageType::Discover, 7));
        leases.save().unwrap();
        let mut rel = ovmf(MessageType::Release, 7);
        rel.set_ciaddr(ack.yiaddr());
        ignored(run(&rel, &cfg, &mut leases, ListenPort::Dhcp));
        assert!(leases.is_dirty());
        assert_eq!(leases.get("52:54:00:12:34:56").unwrap().expires, NOW);
    }

    #[test]
    fn lease_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dhcp-leases.json");
        std::fs::write(&path, "{not json").unwrap();
        let e = Leases::load(&path).unwrap_err();
        assert!(format!("{e:#}").contains("dhcp-leases.json"), "{e:#}");
    }

    #[test]
    fn boot_event_line() {
        let facts = ClientFacts::from_message(&ovmf(MessageType::Discover, 7)).unwrap();
        let e = BootEvent {
            facts,
            program: "snponly.efi".into(),
            kind: MessageType::Ack,
            address: None,
        };
        assert_eq!(
            e.to_string(),
            format!(
                "52:54:00:12:34:56 uuid {UUID} arch 7 (UEFI x86-64): offered boot program snponly.efi"
            )
        );
    }
}
