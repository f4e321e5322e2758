//! The socket layer: UDP sockets on ports 67 and 4011, one task that answers both (and, on
//! an interface, iPXE clients' IPv6 router solicitations: see [`super::ndp`]).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use dhcproto::v4::MessageType;
use tokio::sync::mpsc::UnboundedSender;

use crate::sys::ui;

use super::*;

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
    /// With an `interface`: answer the IPv6 router solicitations of iPXE clients this server
    /// has just answered, so they stop waiting for a router ([`super::ndp`]).
    pub ipxe_router_advertisement: bool,
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
            ipxe_router_advertisement: true,
        }
    }
}

/// Bound sockets and loaded leases, ready to [`Server::run`].
pub struct Server {
    cfg: ServeConfig,
    dhcp: tokio::net::UdpSocket,
    pxe: tokio::net::UdpSocket,
    leases: Leases,
    /// The router solicitation socket, if there is one.
    ndp: Option<NdpSocket>,
    ipxe_clients: IpxeClients,
}

/// What the server's task received.
enum Received {
    Dhcp(u16, std::io::Result<(Vec<u8>, SocketAddr)>),
    Ndp(std::io::Result<(Vec<u8>, std::net::Ipv6Addr)>),
}

/// Receive buffer of the DHCP and boot server sockets, bytes.
pub(super) const RECV_BUFFER: usize = 4 << 20;

/// A UDP socket with SO_REUSEADDR and SO_BROADCAST, bound to `interface` if given.
///
/// Two DHCP servers share port 67 on one machine (say, this one for a lab bridge and the
/// host's own dnsmasq for another) only when both set SO_REUSEADDR and bind their socket to
/// their interface (SO_BINDTODEVICE), as dnsmasq does with `--bind-interfaces`: the kernel
/// then hands each datagram to the socket of the interface it arrived on. If the other
/// server's socket lacks SO_REUSEADDR, binding here fails with "address in use"; if neither
/// binds to an interface, both binds succeed but Linux gives each unicast datagram to the
/// last socket bound, so one server silently steals the other's requests.
pub(super) fn bind_udp(
    ip: Ipv4Addr,
    port: u16,
    interface: Option<&str>,
) -> Result<tokio::net::UdpSocket> {
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
        let ndp = match iface {
            Some(i) if cfg.ipxe_router_advertisement => NdpSocket::open(i)
                .map_err(|e| {
                    ui::info(format!(
                        "dhcp: not answering iPXE's IPv6 router solicitations (iPXE waits \
                         about 16 s for a router where there is none): {e:#}"
                    ))
                })
                .ok(),
            _ => None,
        };
        Ok(Self {
            cfg,
            dhcp,
            pxe,
            leases,
            ndp,
            ipxe_clients: IpxeClients::default(),
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
        if let Some(s) = &self.ndp {
            ui::info(format!(
                "dhcp: answering IPv6 router solicitations of iPXE clients on {} (unicast, \
                 no router, no prefix), so iPXE does not wait 16 s for a router",
                s.interface()
            ));
        }
        let mut buf67 = vec![0u8; 4096];
        let mut buf4011 = vec![0u8; 4096];
        let mut failures = 0u32;
        let mut ndp_failures = 0u32;
        loop {
            let ndp = async {
                match &self.ndp {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let received = tokio::select! {
                r = self.dhcp.recv_from(&mut buf67) => Received::Dhcp(DHCP_SERVER_PORT, r.map(|(n, a)| (buf67[..n].to_vec(), a))),
                r = self.pxe.recv_from(&mut buf4011) => Received::Dhcp(PXE_PORT, r.map(|(n, a)| (buf4011[..n].to_vec(), a))),
                r = ndp => Received::Ndp(r),
            };
            let (port, received) = match received {
                Received::Dhcp(port, r) => (port, r),
                Received::Ndp(Ok((icmp, from))) => {
                    ndp_failures = 0;
                    self.solicited(&icmp, from).await;
                    continue;
                }
                Received::Ndp(Err(e)) => {
                    ui::warn(format!("dhcp: receiving ICMPv6: {e}"));
                    ndp_failures += 1;
                    if ndp_failures > 100 {
                        ui::warn("dhcp: no longer answering IPv6 router solicitations");
                        self.ndp = None;
                    }
                    continue;
                }
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
        if reply.facts.ipxe {
            self.ipxe_clients.answered(&reply.facts.mac, unix_now());
        }
        if let (Some(tx), Some(program)) = (&self.cfg.events, reply.boot) {
            let _ = tx.send(BootEvent {
                facts: reply.facts,
                program,
                kind: reply.kind,
                address: reply.address,
            });
        }
    }

    /// A router solicitation arrived: answer it if it comes from an iPXE client answered
    /// within [`ANSWER_WINDOW_S`].
    async fn solicited(&self, icmp: &[u8], from: std::net::Ipv6Addr) {
        let (Some(sock), Some(mac)) = (&self.ndp, parse_router_solicitation(icmp, &from)) else {
            return;
        };
        let mac = format_mac(&mac);
        if !self.ipxe_clients.wants_answer(&mac, unix_now()) {
            return;
        }
        match sock.advertise(from).await {
            Ok(()) => ui::info(format!(
                "dhcp: {mac} (iPXE, {from}): router advertisement without router or prefix, \
                 so its IPv6 set-up ends now"
            )),
            Err(e) => ui::warn(format!(
                "dhcp: sending a router advertisement to {mac} ({from}): {e}"
            )),
        }
    }
}

/// Bind and run: [`Server::bind`] then [`Server::run`].
pub async fn serve(cfg: ServeConfig) -> Result<()> {
    Server::bind(cfg)?.run().await
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
