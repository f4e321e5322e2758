use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};

use super::*;
use dhcproto::v4::{Architecture, HType, UnknownOption};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Option 97 as firmware sends it: type 0, then the GUID in EFI byte order.
const GUID_OPT: [u8; 17] = [
    0, 0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde,
    0xf0,
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
            1u8, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59,
            60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135,
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

#[test]
fn secure_boot_machines_get_their_refs_signed_shim_never_ipxe() {
    let mac = MAC
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let mut cfg = proxy_cfg();
    cfg.secure_boot
        .by_mac
        .insert(mac.clone(), Some("refs/a/shimx64.efi".into()));
    let program = |cfg: &ResponderConfig, arch: u16| {
        let (r, _) = reply(run(
            &ovmf(MessageType::Discover, arch),
            cfg,
            &mut Leases::in_memory(),
            ListenPort::Dhcp,
        ));
        r.boot.unwrap()
    };
    assert_eq!(program(&cfg, 7), "refs/a/shimx64.efi");
    assert_eq!(program(&cfg, 9), "refs/a/shimx64.efi");
    // BIOS machines have no Secure Boot.
    assert_eq!(program(&cfg, 0), "undionly.kpxe");
    // UEFI HTTP boot: not answered (the signed network GRUB has no HTTP; the firmware goes
    // on to the disk).
    let mut m = ovmf(MessageType::Discover, 16);
    m.opts_mut().insert(DhcpOption::ClassIdentifier(
        b"HTTPClient:Arch:00016:UNDI:003001".to_vec(),
    ));
    let (why, _) = ignored(run(&m, &cfg, &mut Leases::in_memory(), ListenPort::Dhcp));
    assert!(why.contains("Secure Boot machine"), "{why}");
    // A known machine whose profile does not say secure-boot keeps iPXE, whatever the
    // default says; an unknown one gets the default's.
    cfg.secure_boot.by_mac.insert(mac, None);
    cfg.secure_boot.default = Some("refs/b/shimx64.efi".into());
    assert_eq!(program(&cfg, 7), "snponly.efi");
    cfg.secure_boot.by_mac.clear();
    assert_eq!(program(&cfg, 7), "refs/b/shimx64.efi");
}
