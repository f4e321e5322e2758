//! Many simulated PXE clients against a proxyDHCP server, for `bench/run.sh pxe`:
//!
//! ```text
//! cargo run --release --example pxe_dhcp_load -- INTERFACE SERVER_IP CLIENTS INTERVAL_US
//! ```
//!
//! Client `i` starts `i` × INTERVAL_US after the first (0: all at once) and does what PXE
//! firmware does with a proxyDHCP server: a DISCOVER broadcast to port 67 (its own MAC, GUID
//! and, alternately, BIOS or x86-64 UEFI architecture), waits for the proxy's OFFER (broadcast
//! back to port 68), then a REQUEST for boot server type 0x8000 sent to SERVER_IP:4011 and
//! waits for the ACK. No retransmissions: an answer that does not come within 2 s is counted
//! lost (and a client whose OFFER is lost or wrong sends no REQUEST). Answers are checked (message type, server identifier, `PXEClient` vendor class in
//! the OFFER, a boot file in the ACK); a wrong one is counted bad. Every socket is bound to
//! INTERFACE (root). Prints one JSON object on stdout: counts, and the answer times
//! (request sent to answer received) in milliseconds: median, 99th percentile, maximum.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dhcproto::v4::{
    Architecture, DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode,
};
use dhcproto::{Decodable, Decoder, Encodable};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(2);

/// Who waits for which transaction id.
type Waiting = Arc<Mutex<HashMap<u32, oneshot::Sender<(Instant, Message)>>>>;

fn bind(interface: &str, port: u16) -> Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.set_broadcast(true)?;
    sock.bind_device(Some(interface.as_bytes()))
        .with_context(|| format!("binding to {interface} (needs root)"))?;
    // Room for every answer at once.
    sock.set_recv_buffer_size(4 << 20)?;
    sock.set_nonblocking(true)?;
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    sock.bind(&SocketAddr::V4(addr).into())
        .with_context(|| format!("binding UDP {addr} on {interface}"))?;
    Ok(UdpSocket::from_std(sock.into())?)
}

/// Hand each answer to whoever waits for its transaction id.
async fn receive(sock: Arc<UdpSocket>, waiting: Waiting) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, _)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let at = Instant::now();
        let Ok(m) = Message::decode(&mut Decoder::new(&buf[..n])) else {
            continue;
        };
        if m.opcode() != Opcode::BootReply {
            continue;
        }
        if let Some(tx) = waiting.lock().unwrap().remove(&m.xid()) {
            let _ = tx.send((at, m));
        }
    }
}

fn request(i: u32, kind: MessageType, xid: u32) -> Message {
    let mac = [0x02, 0x00, 0x00, (i >> 16) as u8, (i >> 8) as u8, i as u8];
    let arch: u16 = if i.is_multiple_of(2) { 0 } else { 7 };
    let mut guid = vec![0u8; 17];
    guid[1..5].copy_from_slice(&i.to_le_bytes());
    guid[16] = 0x5a;
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest)
        .set_htype(HType::Eth)
        .set_chaddr(&mac)
        .set_xid(xid);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ClientMachineIdentifier(guid));
    o.insert(DhcpOption::ClientNetworkInterface(1, 2, 1));
    o.insert(DhcpOption::ClientSystemArchitecture(Architecture(arch)));
    o.insert(DhcpOption::ClassIdentifier(
        format!("PXEClient:Arch:{arch:05}:UNDI:002001").into_bytes(),
    ));
    m
}

/// Send `m` and wait for its answer: the time it took, or why there is none.
async fn ask(
    sock: &UdpSocket,
    to: SocketAddrV4,
    m: &Message,
    waiting: &Waiting,
) -> Result<(Duration, Message), &'static str> {
    let (tx, rx) = oneshot::channel();
    waiting.lock().unwrap().insert(m.xid(), tx);
    let bytes = m.to_vec().map_err(|_| "encoding")?;
    let sent = Instant::now();
    if sock.send_to(&bytes, SocketAddr::V4(to)).await.is_err() {
        return Err("send failed");
    }
    match tokio::time::timeout(WAIT, rx).await {
        Ok(Ok((at, answer))) => Ok((at.duration_since(sent), answer)),
        _ => {
            waiting.lock().unwrap().remove(&m.xid());
            Err("lost")
        }
    }
}

#[derive(Default)]
struct Outcome {
    offer: Option<Duration>,
    ack: Option<Duration>,
    /// Requests sent that got no answer in time.
    lost: usize,
    bad: Vec<String>,
}

async fn client(
    i: u32,
    server: Ipv4Addr,
    bcast: Arc<UdpSocket>,
    pxe: Arc<UdpSocket>,
    client_ip: Ipv4Addr,
    waiting: Waiting,
) -> Outcome {
    let mut out = Outcome::default();
    let mut discover = request(i, MessageType::Discover, 0x5100_0000 | i);
    discover.set_flags(Flags::default().set_broadcast());
    let to67 = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let offer = match ask(&bcast, to67, &discover, &waiting).await {
        Ok((t, m)) => m.into_ok(t, MessageType::Offer, server, &mut out.bad, i),
        Err(_) => {
            out.lost += 1;
            return out;
        }
    };
    out.offer = offer;
    if offer.is_none() {
        return out;
    }
    let mut req = request(i, MessageType::Request, 0x5200_0000 | i);
    req.set_ciaddr(client_ip);
    req.opts_mut().insert(DhcpOption::VendorExtensions(vec![
        71, 4, 0x80, 0, 0, 0, 255,
    ]));
    let to4011 = SocketAddrV4::new(server, 4011);
    match ask(&pxe, to4011, &req, &waiting).await {
        Ok((t, m)) => out.ack = m.into_ok(t, MessageType::Ack, server, &mut out.bad, i),
        Err(_) => out.lost += 1,
    }
    out
}

trait Check {
    fn into_ok(
        self,
        t: Duration,
        kind: MessageType,
        server: Ipv4Addr,
        bad: &mut Vec<String>,
        i: u32,
    ) -> Option<Duration>;
}

impl Check for Message {
    /// `Some(t)` when the answer is what a PXE client needs, else a line in `bad`.
    fn into_ok(
        self,
        t: Duration,
        kind: MessageType,
        server: Ipv4Addr,
        bad: &mut Vec<String>,
        i: u32,
    ) -> Option<Duration> {
        let o = self.opts();
        let why = if o.msg_type() != Some(kind) {
            Some(format!("{:?} instead of {kind:?}", o.msg_type()))
        } else if o.get(OptionCode::ServerIdentifier) != Some(&DhcpOption::ServerIdentifier(server))
        {
            Some("no server identifier, or another one".into())
        } else if kind == MessageType::Offer
            && !matches!(o.get(OptionCode::ClassIdentifier),
                Some(DhcpOption::ClassIdentifier(c)) if c.starts_with(b"PXEClient"))
        {
            Some("no PXEClient vendor class in the OFFER".into())
        } else if kind == MessageType::Ack
            && !matches!(o.get(OptionCode::BootfileName),
                Some(DhcpOption::BootfileName(f)) if !f.is_empty())
        {
            Some("no boot file in the ACK".into())
        } else {
            None
        };
        match why {
            Some(w) => {
                bad.push(format!("client {i}: {w}"));
                None
            }
            None => Some(t),
        }
    }
}

/// Median, 99th percentile and maximum in milliseconds (nearest rank).
fn percentiles(mut v: Vec<Duration>) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::Value::Null;
    }
    v.sort();
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    serde_json::json!({ "p50": ms(rank(0.5)), "p99": ms(rank(0.99)), "max": ms(*v.last().unwrap()) })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [interface, server, clients, interval] = args.as_slice() else {
        bail!("usage: pxe_dhcp_load INTERFACE SERVER_IP CLIENTS INTERVAL_US");
    };
    let server: Ipv4Addr = server.parse().context("SERVER_IP")?;
    let clients: u32 = clients.parse().context("CLIENTS")?;
    let interval = Duration::from_micros(interval.parse().context("INTERVAL_US")?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let bcast = Arc::new(bind(interface, 68)?);
        let pxe = Arc::new(bind(interface, 0)?);
        // The address the interface has towards the server (the REQUEST's ciaddr).
        let probe = std::net::UdpSocket::bind("0.0.0.0:0")?;
        probe.connect((server, 4011))?;
        let std::net::IpAddr::V4(client_ip) = probe.local_addr()?.ip() else {
            bail!("no IPv4 route to {server}");
        };
        let waiting: Waiting = Arc::default();
        tokio::spawn(receive(bcast.clone(), waiting.clone()));
        tokio::spawn(receive(pxe.clone(), waiting.clone()));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..clients {
            tokio::time::sleep_until((start + interval * i).into()).await;
            let (b, p, w) = (bcast.clone(), pxe.clone(), waiting.clone());
            tasks.push(tokio::spawn(client(i, server, b, p, client_ip, w)));
        }
        let (mut offers, mut acks, mut bad, mut lost) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for t in tasks {
            let o = t.await?;
            offers.extend(o.offer);
            acks.extend(o.ack);
            bad.extend(o.bad);
            lost += o.lost;
        }
        let seconds = start.elapsed().as_secs_f64();
        let all: Vec<Duration> = offers.iter().chain(&acks).copied().collect();
        let summary = serde_json::json!({
            "clients": clients,
            "interval_us": interval.as_micros() as u64,
            "offers": offers.len(),
            "acks": acks.len(),
            "lost": lost,
            "bad": bad.len(),
            "bad_examples": bad.iter().take(5).collect::<Vec<_>>(),
            "offer_ms": percentiles(offers),
            "ack_ms": percentiles(acks),
            "answer_ms": percentiles(all),
            "seconds": (seconds * 1000.0).round() / 1000.0,
        });
        println!("{summary}");
        Ok(())
    })
}
