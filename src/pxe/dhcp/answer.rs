//! The pure core: one decoded request in, a [`Decision`] out (the reply and where it goes, or
//! why nothing is sent), from the [`ResponderConfig`]; no I/O, no clock.

use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Context, Result, bail};
use dhcproto::Encodable;
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};

use super::*;

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

/// The signed shim UEFI x86-64 clients get instead of [`BootPrograms::efi_x64`] when their
/// profile says `secure-boot` (Secure Boot firmware runs nothing else), worked out from the
/// profiles by `pxe serve`: DHCP knows a machine by its MAC only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecureBootPrograms {
    /// Known machines (lower-case MAC): `Some(shim)` when their profile says `secure-boot`,
    /// `None` when it does not (whatever the default says).
    pub by_mac: std::collections::BTreeMap<String, Option<String>>,
    /// Every other machine: the default profile's.
    pub default: Option<String>,
}

impl SecureBootPrograms {
    /// The shim for the client with hardware address `mac`, if it gets one.
    pub fn for_mac(&self, mac: &str) -> Option<&String> {
        match self.by_mac.get(mac) {
            Some(p) => p.as_ref(),
            None => self.default.as_ref(),
        }
    }

    fn names(&self) -> impl Iterator<Item = &String> {
        self.by_mac.values().flatten().chain(self.default.iter())
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

    pub(super) fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
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
    /// UEFI x86-64 clients whose profile says `secure-boot`: their ref's signed shim.
    pub secure_boot: SecureBootPrograms,
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
            secure_boot: SecureBootPrograms::default(),
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
        names.extend(self.secure_boot.names().map(String::as_str));
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

pub(super) fn check_file_name(name: &str) -> Result<()> {
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

pub(super) fn ignore(reason: impl Into<String>) -> Decision {
    Decision::Ignore {
        reason: reason.into(),
        noteworthy: false,
    }
}

pub(super) fn ignore_noteworthy(reason: impl Into<String>) -> Decision {
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
pub(super) enum BootClass {
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
pub(super) struct BootChoice {
    class: BootClass,
    /// TFTP file name or HTTP URL.
    file: String,
    /// Whether `file` is a TFTP name (`siaddr` and option 66 name the TFTP server).
    tftp: bool,
    /// Whether the reply carries the PXE boot menu (firmware PXE clients).
    menu: bool,
}

/// Pick the boot program for a client, or say why there is none.
pub(super) fn choose_boot(
    facts: &ClientFacts,
    cfg: &ResponderConfig,
) -> Result<BootChoice, String> {
    let Some(class) = BootClass::of(facts) else {
        return Err("not a PXE or HTTP boot client (option 60)".into());
    };
    let Some(arch) = facts.arch else {
        return Err("PXE client without an architecture (option 93)".into());
    };
    let p = &cfg.programs;
    // A Secure Boot machine's firmware runs the signed shim only, and only over TFTP: the
    // signed network GRUB has no HTTP, so over HTTP boot it would stop at its prompt.
    let shim = cfg.secure_boot.for_mac(&facts.mac);
    if shim.is_some() && class == BootClass::Http {
        return Err(
            "a Secure Boot machine: not answered for UEFI HTTP boot (its signed GRUB loads \
             over TFTP only)"
                .into(),
        );
    }
    let efi_x64 = shim.unwrap_or(&p.efi_x64).clone();
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
                16 => efi_x64,
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
                7 | 9 => efi_x64,
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
pub(super) fn pxe_menu_options(cfg: &ResponderConfig) -> Vec<u8> {
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
pub(super) fn requested_boot_item(req: &Message) -> Option<[u8; 4]> {
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
pub(super) fn reply_base(req: &Message, cfg: &ResponderConfig, kind: MessageType) -> Message {
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
pub(super) fn add_boot(m: &mut Message, req: &Message, cfg: &ResponderConfig, choice: &BootChoice) {
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
pub(super) fn encode(m: &Message) -> Result<Vec<u8>, String> {
    let mut bytes = m.to_vec().map_err(|e| format!("encoding the reply: {e}"))?;
    if bytes.len() < MIN_REPLY_LEN {
        bytes.resize(MIN_REPLY_LEN, 0);
    }
    Ok(bytes)
}

/// Destination of a reply sent from port 67 (see the module documentation).
pub(super) fn dhcp_destination(req: &Message, cfg: &ResponderConfig, nak: bool) -> SocketAddrV4 {
    if !req.giaddr().is_unspecified() {
        SocketAddrV4::new(req.giaddr(), DHCP_SERVER_PORT)
    } else if !nak && !req.ciaddr().is_unspecified() && !req.flags().broadcast() {
        SocketAddrV4::new(req.ciaddr(), cfg.client_port)
    } else {
        SocketAddrV4::new(cfg.broadcast_ip, cfg.client_port)
    }
}

pub(super) fn finish(
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

pub(super) fn respond_proxy(
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
pub(super) fn respond_boot_server(
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

pub(super) fn respond_full(
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

pub(super) fn full_reply(
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

pub(super) fn nak(req: &Message, cfg: &ResponderConfig, facts: ClientFacts, why: &str) -> Decision {
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
