//! `slipway::pxe::dhcp` from outside: property tests of the parser and the responder on any
//! bytes, and the server over real UDP on 127.0.0.1 (unprivileged ports picked by the kernel,
//! broadcasts redirected to 127.0.0.1; no root, no network, about a second), and the answer
//! to iPXE's IPv6 router solicitations over real sockets in two network namespaces (root,
//! about 5 s).

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use dhcproto::Encodable;
use dhcproto::v4::{
    Architecture, DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode,
};
use proptest::prelude::*;
use slipway::pxe::dhcp::{
    AddressPool, BootEvent, Decision, DhcpMode, Leases, ListenPort, ResponderConfig, ServeConfig,
    Server, parse, respond,
};
use tokio::net::UdpSocket;
use tokio::time::timeout;

use common::ip;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
const GUID: [u8; 17] = [
    0, 0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde,
    0xf0,
];
const WAIT: Duration = Duration::from_secs(5);

fn configs() -> Vec<ResponderConfig> {
    let proxy = ResponderConfig::new(SERVER_IP, 8080);
    let mut full = proxy.clone();
    full.mode = DhcpMode::Full;
    full.pool = Some(AddressPool::from_range("192.0.2.100,192.0.2.103").unwrap());
    let mut arm = proxy.clone();
    arm.programs.efi_arm64 = Some("ipxe-arm64.efi".into());
    vec![proxy, full, arm]
}

fn ports() -> [ListenPort; 2] {
    [
        ListenPort::Dhcp,
        ListenPort::Pxe {
            from: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 50), 4011),
        },
    ]
}

/// Parse and answer `bytes` in every mode, on both ports; check each reply decodes.
fn answer_everything(bytes: &[u8]) {
    let Ok(msg) = parse(bytes) else { return };
    for cfg in configs() {
        let mut leases = Leases::in_memory();
        for port in ports() {
            // Twice: the second sees the state the first left (offers held, leases bound).
            for _ in 0..2 {
                if let Decision::Reply(r) = respond(&msg, &cfg, &mut leases, port, 1_700_000_000) {
                    let m = parse(&r.bytes).expect("every reply decodes");
                    assert_eq!(m.xid(), msg.xid());
                    assert_eq!(m.opcode(), Opcode::BootReply);
                    assert!(r.bytes.len() >= 300);
                }
            }
        }
    }
}

/// Option codes worth hitting more often than 1 in 256: the ones the server reads, and the
/// ones whose lengths dhcproto's decoder asserts.
fn option_code() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(vec![
            1u8, 3, 12, 43, 50, 51, 53, 54, 55, 57, 60, 61, 77, 80, 81, 82, 93, 94, 97, 119,
            121, 151, 152, 153, 154, 155, 175, 0, 255,
        ]),
        1 => any::<u8>(),
    ]
}

/// A BOOTP header (random, but a request with the magic cookie) and random options.
fn dhcp_like() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), 236),
        0u8..=20,
        prop::collection::vec(
            (option_code(), prop::collection::vec(any::<u8>(), 0..24)),
            0..12,
        ),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(mut header, hlen, opts, end, trailer)| {
            header[0] = 1;
            header[2] = hlen;
            header.extend([99, 130, 83, 99]);
            for (code, data) in opts {
                header.push(code);
                if code != 0 && code != 255 {
                    header.push(data.len() as u8);
                    header.extend(data);
                }
            }
            if end {
                header.push(255);
            }
            header.extend(trailer);
            header
        })
}

/// A well-formed PXE-ish request with arbitrary values where firmware differs.
fn pxe_request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![
            MessageType::Discover,
            MessageType::Request,
            MessageType::Inform,
            MessageType::Release,
            MessageType::Decline,
        ]),
        any::<u16>(),
        prop::sample::select(vec![
            "PXEClient",
            "HTTPClient",
            "PXEClient:Arch:00007:UNDI:003000",
            "other",
        ]),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..12)),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
        prop::option::of(any::<[u8; 4]>()),
        any::<[u8; 4]>(),
        any::<bool>(),
    )
        .prop_map(
            |(kind, arch, class, user_class, vendor, requested, ciaddr, broadcast)| {
                let mut m = Message::default();
                m.set_opcode(Opcode::BootRequest)
                    .set_htype(HType::Eth)
                    .set_chaddr(&MAC)
                    .set_ciaddr(Ipv4Addr::from(ciaddr));
                if broadcast {
                    m.set_flags(Flags::default().set_broadcast());
                }
                let o = m.opts_mut();
                o.insert(DhcpOption::MessageType(kind));
                o.insert(DhcpOption::ClientSystemArchitecture(Architecture(arch)));
                o.insert(DhcpOption::ClassIdentifier(class.as_bytes().to_vec()));
                o.insert(DhcpOption::ClientMachineIdentifier(GUID.to_vec()));
                if let Some(u) = user_class {
                    o.insert(DhcpOption::UserClass(u));
                }
                if let Some(v) = vendor {
                    o.insert(DhcpOption::VendorExtensions(v));
                }
                if let Some(r) = requested {
                    o.insert(DhcpOption::RequestedIpAddress(Ipv4Addr::from(r)));
                }
                m.to_vec().unwrap()
            },
        )
}

proptest! {
    // proptest's default: 256 cases, or PROPTEST_CASES (`bench/run.sh pxe` runs many more).
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        answer_everything(&bytes);
    }

    #[test]
    fn dhcp_like_bytes_never_panic(bytes in dhcp_like()) {
        answer_everything(&bytes);
    }

    #[test]
    fn pxe_requests_never_panic_and_replies_decode(bytes in pxe_request()) {
        answer_everything(&bytes);
    }
}

fn ovmf_discover() -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest)
        .set_htype(HType::Eth)
        .set_chaddr(&MAC)
        .set_xid(0xfeed_beef)
        .set_flags(Flags::default().set_broadcast());
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(MessageType::Discover));
    o.insert(DhcpOption::ClientMachineIdentifier(GUID.to_vec()));
    o.insert(DhcpOption::ClientNetworkInterface(1, 3, 0));
    o.insert(DhcpOption::ClientSystemArchitecture(Architecture(7)));
    o.insert(DhcpOption::ClassIdentifier(
        b"PXEClient:Arch:00007:UNDI:003000".to_vec(),
    ));
    m
}

fn test_config(mode: DhcpMode, client_port: u16) -> ServeConfig {
    let mut rc = ResponderConfig::new(SERVER_IP, 8080);
    rc.mode = mode;
    rc.client_port = client_port;
    rc.broadcast_ip = Ipv4Addr::LOCALHOST;
    if mode == DhcpMode::Full {
        rc.pool = Some(AddressPool::from_range("192.0.2.100,192.0.2.110").unwrap());
    }
    let mut sc = ServeConfig::new(rc);
    sc.bind_ip = Ipv4Addr::LOCALHOST;
    sc.dhcp_port = 0;
    sc.pxe_port = 0;
    sc
}

async fn exchange(sock: &UdpSocket, to: SocketAddr, msg: &Message) -> (Message, SocketAddr) {
    sock.send_to(&msg.to_vec().unwrap(), to).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("a reply within 5 s")
        .unwrap();
    (parse(&buf[..n]).expect("the reply decodes"), from)
}

fn option(m: &Message, code: OptionCode) -> Option<&DhcpOption> {
    m.opts().get(code)
}

#[tokio::test]
async fn proxy_over_udp_offer_then_boot_server_ack() {
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sc = test_config(DhcpMode::Proxy, client.local_addr().unwrap().port());
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    sc.events = Some(tx);
    let server = Server::bind(sc).unwrap();
    let (dhcp, pxe) = (server.dhcp_addr().unwrap(), server.pxe_addr().unwrap());
    let task = tokio::spawn(server.run());

    // Junk first: logged and dropped, the server goes on.
    client.send_to(b"not a DHCP packet", dhcp).await.unwrap();
    client.send_to(&[0u8; 240], pxe).await.unwrap();

    let (offer, from) = exchange(&client, dhcp, &ovmf_discover()).await;
    assert_eq!(from, dhcp, "the offer comes from the DHCP port");
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(offer.xid(), 0xfeed_beef);
    assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(
        option(&offer, OptionCode::VendorExtensions).is_some(),
        "boot menu"
    );
    assert_eq!(
        option(&offer, OptionCode::ClientMachineIdentifier),
        Some(&DhcpOption::ClientMachineIdentifier(GUID.to_vec()))
    );

    // OVMF's boot server discovery, from its own port (here: another socket).
    let firmware = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut req = ovmf_discover();
    req.set_flags(Flags::default())
        .set_ciaddr(Ipv4Addr::LOCALHOST);
    req.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Request));
    req.opts_mut().insert(DhcpOption::VendorExtensions(vec![
        71, 4, 0x80, 0, 0, 0, 255,
    ]));
    let (ack, from) = exchange(&firmware, pxe, &req).await;
    assert_eq!(
        from, pxe,
        "the ACK comes from port 4011 (iPXE drops it otherwise)"
    );
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.siaddr(), SERVER_IP);
    assert_eq!(
        option(&ack, OptionCode::BootfileName),
        Some(&DhcpOption::BootfileName(b"snponly.efi".to_vec()))
    );

    let first: BootEvent = timeout(WAIT, events.recv()).await.unwrap().unwrap();
    assert_eq!(first.kind, MessageType::Offer);
    assert_eq!(first.facts.mac, "52:54:00:ab:cd:ef");
    assert_eq!(
        first.facts.uuid.as_deref(),
        Some("12345678-1234-5678-1234-56789abcdef0")
    );
    assert_eq!(first.facts.arch, Some(7));
    let second = timeout(WAIT, events.recv()).await.unwrap().unwrap();
    assert_eq!(second.kind, MessageType::Ack);
    assert_eq!(second.program, "snponly.efi");
    assert!(!task.is_finished(), "still serving");
    task.abort();
}

#[tokio::test]
async fn full_mode_over_udp_lease_on_disk_before_the_ack_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lease_file = dir.path().join("dhcp-leases.json");
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = client.local_addr().unwrap().port();

    let mut sc = test_config(DhcpMode::Full, port);
    sc.lease_file = Some(lease_file.clone());
    let server = Server::bind(sc.clone()).unwrap();
    let dhcp = server.dhcp_addr().unwrap();
    let task = tokio::spawn(server.run());

    let (offer, _) = exchange(&client, dhcp, &ovmf_discover()).await;
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    let ip = offer.yiaddr();
    assert_eq!(ip, Ipv4Addr::new(192, 0, 2, 100));
    assert_eq!(offer.siaddr(), SERVER_IP, "next-server in the same reply");
    let mut req = ovmf_discover();
    req.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Request));
    req.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
    req.opts_mut()
        .insert(DhcpOption::ServerIdentifier(SERVER_IP));
    let (ack, _) = exchange(&client, dhcp, &req).await;
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    // The ACK arrived, so the lease is already on disk.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lease_file).unwrap()).unwrap();
    assert_eq!(saved["leases"][0]["mac"], "52:54:00:ab:cd:ef");
    assert_eq!(saved["leases"][0]["ip"], "192.0.2.100");
    task.abort();
    let _ = task.await;

    // A new server on the same file: another client first, then ours gets its address back.
    let server = Server::bind(sc).unwrap();
    let dhcp = server.dhcp_addr().unwrap();
    let task = tokio::spawn(server.run());
    let mut other = ovmf_discover();
    other.set_chaddr(&[2, 0, 0, 0, 0, 1]);
    let (offer, _) = exchange(&client, dhcp, &other).await;
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(192, 0, 2, 101));
    let (offer, _) = exchange(&client, dhcp, &ovmf_discover()).await;
    assert_eq!(offer.yiaddr(), ip);
    task.abort();
}

#[tokio::test]
async fn bind_errors_name_the_address_and_the_interface() {
    // A socket without SO_REUSEADDR holds the port, as a DHCP server that does not share would.
    let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let mut sc = test_config(DhcpMode::Proxy, 68);
    sc.dhcp_port = port;
    let e = format!("{:#}", Server::bind(sc).err().expect("port in use"));
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");

    let mut sc = test_config(DhcpMode::Proxy, 68);
    sc.interface = Some("nosuchif0".into());
    let e = format!("{:#}", Server::bind(sc).err().expect("no such interface"));
    assert!(e.contains("nosuchif0"), "{e}");
}

/// Two network namespaces joined by a veth pair: the server's end `veth0`, the machine's
/// `veth1`; no duplicate address detection, so both link-local addresses work at once.
/// Needs root. Removed on drop.
struct VethPair {
    server: String,
    machine: String,
}

impl VethPair {
    fn new() -> Self {
        let pid = std::process::id();
        let pair = Self {
            server: format!("slwra-s-{pid}"),
            machine: format!("slwra-m-{pid}"),
        };
        for ns in [&pair.server, &pair.machine] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(std::process::Stdio::null())
                .status();
            ip(&["netns", "add", ns]);
            for key in ["all", "default"] {
                ip(&[
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{key}.accept_dad=0"),
                ]);
            }
        }
        ip(&[
            "link",
            "add",
            "veth0",
            "netns",
            &pair.server,
            "type",
            "veth",
            "peer",
            "name",
            "veth1",
            "netns",
            &pair.machine,
        ]);
        ip(&[
            "-n",
            &pair.server,
            "addr",
            "add",
            "192.0.2.1/24",
            "dev",
            "veth0",
        ]);
        ip(&["-n", &pair.server, "link", "set", "veth0", "up"]);
        ip(&["-n", &pair.machine, "link", "set", "veth1", "up"]);
        for (ns, dev) in [(&pair.server, "veth0"), (&pair.machine, "veth1")] {
            let deadline = std::time::Instant::now() + WAIT;
            loop {
                let out = std::process::Command::new("ip")
                    .args(["-n", ns, "-6", "addr", "show", "dev", dev])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                if text.contains("scope link") && !text.contains("tentative") {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{dev}: {text}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        pair
    }

    /// Run `f` on a thread inside namespace `ns` (sockets made there stay there), within the
    /// caller's tokio runtime.
    fn within<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{ns}");
        let rt = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let _rt = rt.enter();
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.server, &self.machine] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

/// A router solicitation as iPXE sends it: the header and the source link-layer address.
fn router_solicitation(mac: &[u8; 6]) -> Vec<u8> {
    let mut rs = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    rs.extend_from_slice(mac);
    rs
}

/// Send `rs` to ff02::2 out of interface `ifindex` and return the first router
/// advertisement that comes back within `wait`, with its source.
fn solicit(
    sock: &socket2::Socket,
    ifindex: u32,
    rs: &[u8],
    wait: Duration,
) -> Option<(Vec<u8>, std::net::Ipv6Addr)> {
    use std::mem::MaybeUninit;
    let all_routers = std::net::SocketAddrV6::new("ff02::2".parse().unwrap(), 0, 0, ifindex);
    sock.send_to(rs, &all_routers.into()).unwrap();
    let deadline = std::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            return None;
        };
        // SAFETY: recv_from initialised the first n bytes.
        let bytes: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        if bytes.first() == Some(&134) {
            return Some((bytes, *from.as_socket_ipv6().unwrap().ip()));
        }
    }
}

fn ifindex(name: &str) -> u32 {
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: a NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

/// iPXE waits about 16 s for an IPv6 router where there is none; the server ends that wait
/// for the machines it boots, and for no one else. Real sockets in two network namespaces
/// (root): the server on `veth0` in proxy mode, the machine's DHCP and ICMPv6 on `veth1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_solicitations_answered_for_ipxe_clients_just_booted_only() {
    let pair = VethPair::new();
    let mut rc = ResponderConfig::new(Ipv4Addr::new(192, 0, 2, 1), 8080);
    rc.mode = DhcpMode::Proxy;
    let mut sc = ServeConfig::new(rc);
    sc.interface = Some("veth0".into());
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel::<BootEvent>();
    sc.events = Some(tx);
    let server = VethPair::within(&pair.server, move || Server::bind(sc).unwrap());
    let task = tokio::spawn(server.run());

    // The machine's sockets: DHCP from port 68 and raw ICMPv6, both on veth1.
    let (dhcp, icmp, index) = VethPair::within(&pair.machine, || {
        use socket2::{Domain, Protocol, Socket, Type};
        let dhcp = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        dhcp.bind_device(Some(b"veth1")).unwrap();
        dhcp.set_broadcast(true).unwrap();
        dhcp.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)).into())
            .unwrap();
        let icmp = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).unwrap();
        icmp.bind_device(Some(b"veth1")).unwrap();
        icmp.set_multicast_hops_v6(255).unwrap();
        (dhcp, icmp, ifindex("veth1"))
    });
    let other: [u8; 6] = [0x52, 0x54, 0x00, 0x11, 0x22, 0x33];
    // The server runs on the other worker while this one waits.
    let solicit_as = |mac: &[u8; 6], wait: Duration| {
        tokio::task::block_in_place(|| solicit(&icmp, index, &router_solicitation(mac), wait))
    };
    let short = Duration::from_millis(1500);

    // Not booted by this server yet: no answer.
    assert_eq!(solicit_as(&MAC, short), None, "answered before any DHCP");

    // iPXE's discovery (BIOS, user class iPXE): the proxy names the boot script.
    let mut discover = ovmf_discover();
    discover
        .opts_mut()
        .insert(DhcpOption::ClientSystemArchitecture(Architecture(0)));
    discover.opts_mut().insert(DhcpOption::ClassIdentifier(
        b"PXEClient:Arch:00000:UNDI:002001".to_vec(),
    ));
    discover
        .opts_mut()
        .insert(DhcpOption::UserClass(b"iPXE".to_vec()));
    let to = SocketAddr::from((Ipv4Addr::BROADCAST, 67));
    dhcp.send_to(&discover.to_vec().unwrap(), &to.into())
        .unwrap();
    let event = timeout(WAIT, events.recv()).await.unwrap().unwrap();
    assert!(event.facts.ipxe, "{event:?}");

    // Now its solicitation gets the advertisement, unicast, and another machine's does not.
    let (ra, from) = solicit_as(&MAC, WAIT).expect("a router advertisement");
    assert_eq!(ra.len(), 16, "no options: {ra:?}");
    assert_eq!(ra[1], 0, "code");
    assert_eq!(ra[5], 0, "flags M and O clear (no DHCPv6): {ra:?}");
    assert_eq!(&ra[6..8], &[0, 0], "router lifetime 0: {ra:?}");
    assert!(from.is_unicast_link_local(), "{from}");
    assert_eq!(
        solicit_as(&other, short),
        None,
        "answered a machine the server never booted"
    );
    task.abort();
    drop(pair);
}
