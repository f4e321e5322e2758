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

mod answer;
mod leases;
pub mod ndp;
mod packet;
mod server;
#[cfg(test)]
mod tests;

pub use answer::*;
pub use leases::*;
pub use ndp::{ANSWER_WINDOW_S, IpxeClients, NdpSocket, parse_router_solicitation};
pub use packet::*;
pub use server::*;

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};

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
