//! Reading requests: decoding with its option lengths checked, and the facts a request
//! gives about the machine (hardware address, UUID, architecture, iPXE or not).

use anyhow::{Result, anyhow, bail};
use dhcproto::v4::{self, DhcpOption, Message, OptionCode};
use dhcproto::{Decodable, Decoder};
use serde::Serialize;

use super::*;

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

    pub(super) fn describe(&self) -> String {
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
pub(super) fn arch_from_vendor_class(class: &str) -> Option<u16> {
    let rest = class.split(':').skip_while(|p| *p != "Arch").nth(1)?;
    rest.parse().ok()
}

/// Whether option 77 names iPXE: RFC 3004 form (length-prefixed items) or the raw bytes
/// `iPXE` that QEMU's iPXE ROM sends; both contain the four bytes.
pub(super) fn user_class_is_ipxe(raw: &[u8]) -> bool {
    raw.windows(4).any(|w| w == b"iPXE")
}

/// Hex MAC, `52:54:00:12:34:56`.
pub(super) fn format_mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Option 97 → UUID string (see [`ClientFacts::uuid`]).
pub(super) fn format_uuid(opt: &[u8]) -> Option<String> {
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

pub(super) fn client_hwaddr(req: &Message) -> Result<&[u8], String> {
    // dhcproto's chaddr() slices by hlen and panics past 16: check first.
    match req.hlen() {
        0 => Err("no hardware address (hlen 0)".into()),
        n if n > 16 => Err(format!("hardware address length {n} is over 16")),
        _ => Ok(req.chaddr()),
    }
}

pub(super) fn option_bytes(req: &Message, code: OptionCode) -> Option<&[u8]> {
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

pub(super) fn check_option_lengths(mut opts: &[u8]) -> Result<()> {
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
