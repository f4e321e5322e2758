//! A UDP relay that delays every datagram by a fixed time in each direction, for measuring
//! TFTP over a link with latency on a kernel without netem (`bench/run.sh pxe`):
//!
//! ```text
//! cargo run --release --example udp_delay_relay -- LISTEN UPSTREAM DELAY_US
//! ```
//!
//! Clients send to LISTEN (say 127.0.0.1:7069) as if it were the server UPSTREAM (say
//! 127.0.0.1:69). TFTP answers a request from a new port per transfer, so the relay forwards
//! per flow: each client gets its own upstream socket; each server port that answers on it
//! gets its own client-facing socket on LISTEN's address, from which the client hears the
//! server and to which it sends its acknowledgements. Datagrams keep their order; each waits
//! DELAY_US microseconds after it was received before it is sent on (a delay line per
//! direction, no bandwidth limit, no loss). One thread per socket, nothing ever cleaned up:
//! for a handful of transfers, not a service. Runs until killed.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A datagram to send on `socket` to `to` once `at` has passed.
struct Delayed {
    at: Instant,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// Send what arrives in order, each datagram at its time.
fn delay_line(rx: Receiver<Delayed>) {
    for d in rx {
        let now = Instant::now();
        if d.at > now {
            std::thread::sleep(d.at - now);
        }
        // A closed port on the other side is the transfer's business, not the relay's.
        let _ = d.socket.send_to(&d.bytes, d.to);
    }
}

struct Relay {
    listen: Arc<UdpSocket>,
    upstream: SocketAddr,
    delay: Duration,
    /// Towards the server, towards the clients.
    up: Sender<Delayed>,
    down: Sender<Delayed>,
    /// Client address -> its upstream socket.
    flows: Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>,
}

impl Relay {
    fn forward(&self, tx: &Sender<Delayed>, socket: &Arc<UdpSocket>, to: SocketAddr, b: &[u8]) {
        let _ = tx.send(Delayed {
            at: Instant::now() + self.delay,
            socket: socket.clone(),
            to,
            bytes: b.to_vec(),
        });
    }

    /// The upstream socket of `client`, made (with its thread) on its first datagram.
    fn flow(self: &Arc<Self>, client: SocketAddr) -> Result<Arc<UdpSocket>> {
        let mut flows = self.flows.lock().unwrap();
        if let Some(s) = flows.get(&client) {
            return Ok(s.clone());
        }
        let bind: SocketAddr = SocketAddr::new(self.listen.local_addr()?.ip(), 0);
        let up = Arc::new(UdpSocket::bind(bind).context("binding an upstream socket")?);
        flows.insert(client, up.clone());
        let (relay, sock) = (self.clone(), up.clone());
        std::thread::spawn(move || relay.from_server(client, sock));
        Ok(up)
    }

    /// Datagrams from the server to one client's upstream socket: from the server's own port
    /// they go back through LISTEN; from a transfer port, through that port's own
    /// client-facing socket (made on first sight, with a thread for the client's answers).
    fn from_server(self: Arc<Self>, client: SocketAddr, up: Arc<UdpSocket>) {
        let mut ports: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = up.recv_from(&mut buf) else {
                continue;
            };
            let via = if from == self.upstream {
                self.listen.clone()
            } else if let Some(s) = ports.get(&from) {
                s.clone()
            } else {
                let ip = self.listen.local_addr().map(|a| a.ip());
                let Ok(s) = ip.and_then(|ip| UdpSocket::bind(SocketAddr::new(ip, 0))) else {
                    eprintln!("udp_delay_relay: no client-facing socket for {from}");
                    continue;
                };
                let s = Arc::new(s);
                ports.insert(from, s.clone());
                let (relay, down, up) = (self.clone(), s.clone(), up.clone());
                std::thread::spawn(move || relay.from_client(down, up, from));
                s
            };
            self.forward(&self.down, &via, client, &buf[..n]);
        }
    }

    /// A client's datagrams to a transfer's client-facing socket, on to the server's port.
    fn from_client(self: Arc<Self>, down: Arc<UdpSocket>, up: Arc<UdpSocket>, server: SocketAddr) {
        let mut buf = vec![0u8; 65536];
        loop {
            if let Ok((n, _)) = down.recv_from(&mut buf) {
                self.forward(&self.up, &up, server, &buf[..n]);
            }
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, delay] = args.as_slice() else {
        bail!("usage: udp_delay_relay LISTEN UPSTREAM DELAY_US");
    };
    let upstream: SocketAddr = upstream
        .parse()
        .with_context(|| format!("{upstream:?} is not an address:port"))?;
    let delay = Duration::from_micros(
        delay
            .parse()
            .with_context(|| format!("{delay:?} is not a number of microseconds"))?,
    );
    let listen =
        Arc::new(UdpSocket::bind(listen.as_str()).with_context(|| format!("binding {listen}"))?);
    let (up, up_rx) = channel();
    let (down, down_rx) = channel();
    std::thread::spawn(move || delay_line(up_rx));
    std::thread::spawn(move || delay_line(down_rx));
    let relay = Arc::new(Relay {
        listen: listen.clone(),
        upstream,
        delay,
        up,
        down,
        flows: Mutex::new(HashMap::new()),
    });
    eprintln!(
        "udp_delay_relay: {} -> {upstream}, {} us each way",
        listen.local_addr()?,
        delay.as_micros()
    );
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = listen.recv_from(&mut buf).context("receiving on LISTEN")?;
        let up = relay.flow(client)?;
        relay.forward(&relay.up, &up, upstream, &buf[..n]);
    }
}
