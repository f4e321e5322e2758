//! An end to iPXE's wait for an IPv6 router.
//!
//! iPXE configures a network device with DHCPv4 and IPv6 autoconfiguration at once, and its
//! `Configuring (net0 ...)` step ends only when both have ended. On a network without an
//! IPv6 router, the router solicitations go unanswered: iPXE sends them after 0.25, 0.5, 1,
//! 2, 4 and 8 s and gives up after about 16 s, long after DHCPv4 has finished (measured here:
//! the DHCP exchange took 7 ms, the whole step 16 s). A BIOS machine meets this step twice per
//! install (the boot that installs and the boot that finds its disk installed).
//!
//! iPXE ends its IPv6 autoconfiguration at the first router advertisement that asks for no
//! DHCPv6 (flags M and O clear). So the server answers a router solicitation from a machine
//! it has just answered as an iPXE client with one such advertisement: router lifetime 0 (not a
//! default router), no prefix, no option, sent **unicast to that machine only**, so no other
//! host on the network sees it and the site's own IPv6 set-up is untouched. Solicitations
//! from any other host are not answered. Where the site has an IPv6 router, its advertisement
//! ends the wait too and nothing changes.
//!
//! Pure helpers ([`parse_router_solicitation`], [`ROUTER_ADVERTISEMENT`], [`IpxeClients`])
//! and the raw ICMPv6 socket ([`NdpSocket`]) that the DHCP server's task drives.

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::net::{Ipv6Addr, SocketAddrV6};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

/// ICMPv6 type of a router solicitation (RFC 4861).
pub const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a router advertisement (RFC 4861).
pub const ROUTER_ADVERTISEMENT_TYPE: u8 = 134;
/// NDP option: source link-layer address.
const OPT_SOURCE_LL_ADDR: u8 = 1;
/// All-routers multicast group, where solicitations go.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The advertisement sent: type 134, code 0, checksum 0 (the kernel fills it in for ICMPv6
/// raw sockets), current hop limit 0 (unspecified), flags 0 (no DHCPv6), router lifetime 0
/// (not a default router), reachable time 0 and retransmission timer 0 (unspecified), no
/// options.
pub const ROUTER_ADVERTISEMENT: [u8; 16] = {
    let mut ra = [0u8; 16];
    ra[0] = ROUTER_ADVERTISEMENT_TYPE;
    ra
};

/// How long after the server's last DHCP answer to an iPXE client its solicitations are
/// answered, seconds. iPXE solicits right after its DHCP discovery; a minute is ample.
pub const ANSWER_WINDOW_S: u64 = 60;

/// The hardware address a router solicitation comes from: its source link-layer address
/// option, else the EUI-64 interface identifier of its link-local source address. `None`
/// for anything that is not a well-formed solicitation (type 133, code 0, options whose
/// lengths fit).
pub fn parse_router_solicitation(icmp: &[u8], source: &Ipv6Addr) -> Option<[u8; 6]> {
    if icmp.len() < 8 || icmp[0] != ROUTER_SOLICITATION || icmp[1] != 0 {
        return None;
    }
    let mut options = &icmp[8..];
    let mut from_option = None;
    while !options.is_empty() {
        let len = usize::from(*options.get(1)?) * 8;
        if len == 0 || len > options.len() {
            return None;
        }
        if options[0] == OPT_SOURCE_LL_ADDR && len == 8 && from_option.is_none() {
            from_option = Some(options[2..8].try_into().ok()?);
        }
        options = &options[len..];
    }
    from_option.or_else(|| mac_from_link_local(source))
}

/// The hardware address in a link-local address made by modified EUI-64 (`fe80::` with
/// `ff:fe` in the middle of the interface identifier and the universal/local bit flipped).
pub fn mac_from_link_local(addr: &Ipv6Addr) -> Option<[u8; 6]> {
    let o = addr.octets();
    if o[..8] != [0xfe, 0x80, 0, 0, 0, 0, 0, 0] || o[11] != 0xff || o[12] != 0xfe {
        return None;
    }
    Some([o[8] ^ 0x02, o[9], o[10], o[13], o[14], o[15]])
}

/// The iPXE clients the DHCP server answered lately, by hardware address as
/// [`super::ClientFacts::mac`] writes it.
#[derive(Debug, Default)]
pub struct IpxeClients {
    answered: HashMap<String, u64>,
}

impl IpxeClients {
    /// The server answered `mac`, an iPXE client, at `now` (Unix seconds).
    pub fn answered(&mut self, mac: &str, now: u64) {
        self.answered
            .retain(|_, t| now.saturating_sub(*t) <= ANSWER_WINDOW_S);
        self.answered.insert(mac.to_string(), now);
    }

    /// Whether a solicitation from `mac` at `now` is answered.
    pub fn wants_answer(&self, mac: &str, now: u64) -> bool {
        self.answered
            .get(mac)
            .is_some_and(|t| now.saturating_sub(*t) <= ANSWER_WINDOW_S)
    }
}

/// A raw ICMPv6 socket on one interface that receives router solicitations only.
pub struct NdpSocket {
    fd: AsyncFd<Socket>,
    interface: String,
    ifindex: u32,
}

impl NdpSocket {
    /// Open it on `interface`: bound to the device, in the all-routers group, hop limit 255
    /// (receivers drop neighbour discovery with any other), filtered to type 133. Needs root
    /// (CAP_NET_RAW) and IPv6 on the interface. Must be called inside a tokio runtime.
    pub fn open(interface: &str) -> Result<Self> {
        let on = format!("ICMPv6 socket on interface {interface}");
        let name = std::ffi::CString::new(interface)
            .with_context(|| format!("interface name {interface:?}"))?;
        // SAFETY: a NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {interface}");
        }
        let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
            .with_context(|| format!("creating the {on} (needs root)"))?;
        sock.bind_device(Some(interface.as_bytes()))
            .with_context(|| format!("binding the {on}"))?;
        sock.join_multicast_v6(&ALL_ROUTERS, ifindex)
            .with_context(|| format!("joining ff02::2 with the {on} (is IPv6 disabled?)"))?;
        sock.set_unicast_hops_v6(255)
            .with_context(|| format!("setting the hop limit of the {on}"))?;
        set_icmp6_filter(&sock, ROUTER_SOLICITATION)
            .with_context(|| format!("filtering the {on} to router solicitations"))?;
        sock.set_nonblocking(true)
            .with_context(|| format!("making the {on} non-blocking"))?;
        // SAFETY: the Socket owns its descriptor, which stays open and the same until the
        // AsyncFd (its owner from here on) is dropped.
        let fd = unsafe { AsyncFd::register(sock) }
            .map_err(std::io::Error::from)
            .with_context(|| format!("registering the {on} with tokio"))?;
        Ok(Self {
            fd,
            interface: interface.to_string(),
            ifindex,
        })
    }

    /// The next datagram: its ICMPv6 bytes and its source address.
    pub async fn recv(&self) -> std::io::Result<(Vec<u8>, Ipv6Addr)> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
            match guard.try_io(|s| s.get_ref().recv_from(&mut buf)) {
                Ok(Ok((n, from))) => {
                    // SAFETY: recv_from initialised the first n bytes.
                    let bytes: Vec<u8> = buf[..n]
                        .iter()
                        .map(|b| unsafe { b.assume_init() })
                        .collect();
                    let Some(from) = from.as_socket_ipv6() else {
                        continue;
                    };
                    return Ok((bytes, *from.ip()));
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Send [`ROUTER_ADVERTISEMENT`] to `to` (a link-local address on this interface).
    pub async fn advertise(&self, to: Ipv6Addr) -> std::io::Result<()> {
        let dest = SockAddr::from(SocketAddrV6::new(to, 0, 0, self.ifindex));
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|s| s.get_ref().send_to(&ROUTER_ADVERTISEMENT, &dest)) {
                Ok(r) => return r.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }
}

/// ICMP6_FILTER (RFC 3542): pass `pass` only. The kernel's filter is 256 bits, a set bit
/// blocks that type.
fn set_icmp6_filter(sock: &Socket, pass: u8) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const ICMP6_FILTER: libc::c_int = 1;
    let mut filter = [u32::MAX; 8];
    filter[usize::from(pass >> 5)] &= !(1u32 << (pass & 31));
    // SAFETY: a valid socket and a 32-byte buffer of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            filter.as_ptr().cast(),
            std::mem::size_of_val(&filter) as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x77, 0x00, 0x0b];

    fn link_local() -> Ipv6Addr {
        "fe80::5054:ff:fe77:b".parse().unwrap()
    }

    #[test]
    fn solicitation_with_source_link_layer_option() {
        // As iPXE sends it: header, then option 1 of one 8-byte block.
        let mut rs = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1];
        rs.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
        let other: Ipv6Addr = "fe80::1".parse().unwrap();
        assert_eq!(
            parse_router_solicitation(&rs, &other),
            Some([0x02, 0, 0, 0, 0, 1])
        );
    }

    #[test]
    fn solicitation_without_option_takes_the_eui64_address() {
        let rs = [133, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_router_solicitation(&rs, &link_local()), Some(MAC));
        let random: Ipv6Addr = "fe80::b0de:d2ff:fea2:21eb".parse().unwrap();
        assert_eq!(
            parse_router_solicitation(&rs, &random),
            Some([0xb2, 0xde, 0xd2, 0xa2, 0x21, 0xeb])
        );
        let not_eui64: Ipv6Addr = "fe80::1".parse().unwrap();
        assert_eq!(parse_router_solicitation(&rs, &not_eui64), None);
        let global: Ipv6Addr = "2001:db8::5054:ff:fe77:b".parse().unwrap();
        assert_eq!(parse_router_solicitation(&rs, &global), None);
    }

    #[test]
    fn malformed_or_other_messages_are_not_solicitations() {
        let ll = link_local();
        assert_eq!(parse_router_solicitation(&[], &ll), None);
        assert_eq!(parse_router_solicitation(&[133, 0, 0, 0], &ll), None);
        assert_eq!(
            parse_router_solicitation(&[134, 0, 0, 0, 0, 0, 0, 0], &ll),
            None
        );
        assert_eq!(
            parse_router_solicitation(&[133, 1, 0, 0, 0, 0, 0, 0], &ll),
            None
        );
        // An option of length 0, and one longer than the packet.
        let zero = [133, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_router_solicitation(&zero, &ll), None);
        let long = [133, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_router_solicitation(&long, &ll), None);
        let truncated = [133, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(parse_router_solicitation(&truncated, &ll), None);
    }

    #[test]
    fn advertisement_asks_for_nothing() {
        let ra = ROUTER_ADVERTISEMENT;
        assert_eq!(ra[0], 134);
        assert_eq!(ra[5], 0, "flags M and O clear: no DHCPv6");
        assert_eq!(
            &ra[6..8],
            &[0, 0],
            "router lifetime 0: not a default router"
        );
        assert_eq!(ra.len(), 16, "no options");
    }

    #[test]
    fn answered_clients_within_the_window_only() {
        let mac = "52:54:00:77:00:0b";
        assert_eq!(super::super::format_mac(&MAC), mac, "as DHCP writes it");
        let mut c = IpxeClients::default();
        assert!(!c.wants_answer(mac, 100));
        c.answered(mac, 100);
        assert!(c.wants_answer(mac, 100 + ANSWER_WINDOW_S));
        assert!(!c.wants_answer(mac, 101 + ANSWER_WINDOW_S));
        assert!(!c.wants_answer("52:54:00:00:00:01", 100));
        // Old entries go when others come.
        c.answered("01:02:03:04:05:06", 500);
        assert!(!c.wants_answer(mac, 500));
        assert_eq!(c.answered.len(), 1);
    }
}
