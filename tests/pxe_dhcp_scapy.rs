//! The DHCP server against a client nobody here wrote: Debian's scapy (`python3-scapy`, from
//! `scripts/install-deps.sh test`) builds an OVMF-like DISCOVER and a boot server REQUEST with
//! its own DHCP encoder, sends them over UDP on 127.0.0.1 and decodes the replies with its own
//! parser. Catches encodings that only our decoder would accept.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use slipway::pxe::dhcp::{DhcpMode, ResponderConfig, ServeConfig, Server};

const CLIENT: &str = r#"
import json, socket, sys
from scapy.layers.dhcp import BOOTP, DHCP

dhcp_port, pxe_port, client_port = (int(a) for a in sys.argv[1:4])
mac = bytes.fromhex("525400abcdef")
guid = bytes.fromhex("00" "78563412" "3412" "7856" "1234" "56789abcdef0")
common = [
    ("pxe_client_architecture", b"\x00\x07"),
    ("pxe_client_network_interface", b"\x01\x03\x00"),
    ("pxe_client_machine_identifier", guid),
    ("vendor_class_id", b"PXEClient:Arch:00007:UNDI:003000"),
]

def ask(sock, port, pkt):
    sock.sendto(bytes(pkt), ("127.0.0.1", port))
    data, _ = sock.recvfrom(2048)
    r = BOOTP(data)
    opts = {}
    for o in r[DHCP].options:
        if isinstance(o, tuple):
            v = o[1]
            opts[o[0]] = v.hex() if isinstance(v, bytes) else v
    return {
        "op": r.op, "xid": r.xid, "yiaddr": r.yiaddr, "siaddr": r.siaddr,
        "file": r.file.rstrip(b"\0").decode(), "options": opts,
    }

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.bind(("127.0.0.1", client_port))
discover = BOOTP(op=1, chaddr=mac, xid=0x5c0ffee, flags=0x8000) / DHCP(
    options=[("message-type", "discover")] + common + ["end"])
offer = ask(s, dhcp_port, discover)

fw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fw.settimeout(5)
fw.bind(("127.0.0.1", 0))
request = BOOTP(op=1, chaddr=mac, xid=0x5c0ffef, ciaddr="127.0.0.1") / DHCP(
    options=[("message-type", "request")] + common
    + [("vendor_specific", b"\x47\x04\x80\x00\x00\x00\xff"), "end"])
ack = ask(fw, pxe_port, request)
print(json.dumps({"offer": offer, "ack": ack}))
"#;

#[tokio::test]
async fn scapy_client_gets_proxy_offer_and_boot_server_ack() {
    let python = "/usr/bin/python3";
    let probe = Command::new(python)
        .args(["-c", "import scapy.layers.dhcp"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "Debian's python3-scapy is needed (scripts/install-deps.sh test): {probe:?}"
    );

    // A free port for the client's "68", known before the server starts.
    let client_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut rc = ResponderConfig::new(Ipv4Addr::new(192, 0, 2, 1), 8080);
    rc.mode = DhcpMode::Proxy;
    rc.client_port = client_port;
    rc.broadcast_ip = Ipv4Addr::LOCALHOST;
    let mut sc = ServeConfig::new(rc);
    sc.bind_ip = Ipv4Addr::LOCALHOST;
    sc.dhcp_port = 0;
    sc.pxe_port = 0;
    let server = Server::bind(sc).unwrap();
    let (dhcp, pxe) = (server.dhcp_addr().unwrap(), server.pxe_addr().unwrap());
    let task = tokio::spawn(server.run());

    let args = [
        "-c".to_string(),
        CLIENT.to_string(),
        dhcp.port().to_string(),
        pxe.port().to_string(),
        client_port.to_string(),
    ];
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || Command::new(python).args(args).output()),
    )
    .await
    .expect("scapy client within 60 s")
    .unwrap()
    .unwrap();
    task.abort();
    assert!(
        out.status.success(),
        "scapy client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let offer = &v["offer"];
    assert_eq!(offer["op"], 2);
    assert_eq!(offer["xid"], 0x5c0ffee);
    assert_eq!(offer["yiaddr"], "0.0.0.0");
    let o = &offer["options"];
    assert_eq!(o["message-type"], 2, "{o}");
    assert_eq!(o["server_id"], "192.0.2.1");
    assert_eq!(o["vendor_class_id"], "505845436c69656e74", "PXEClient");
    assert_eq!(
        o["pxe_client_machine_identifier"],
        "007856341234127856123456789abcdef0"
    );
    let menu = o["vendor_specific"].as_str().expect("option 43");
    assert!(menu.starts_with("060103"), "discovery control 3: {menu}");
    assert!(
        menu.contains("0807800001c0000201"),
        "boot server 192.0.2.1: {menu}"
    );

    let ack = &v["ack"];
    assert_eq!(ack["options"]["message-type"], 5);
    assert_eq!(ack["xid"], 0x5c0ffef);
    assert_eq!(ack["siaddr"], "192.0.2.1");
    assert_eq!(ack["file"], "snponly.efi");
    assert_eq!(
        ack["options"]["boot-file-name"], "736e706f6e6c792e656669",
        "snponly.efi"
    );
    assert_eq!(ack["options"]["vendor_specific"], "470480000000ff");
}
