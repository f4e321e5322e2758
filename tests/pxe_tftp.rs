//! slipway's TFTP server (`slipway::pxe::tftp`) against clients nobody here wrote: curl and
//! atftp, plus raw UDP from Rust for what those clients cannot be made to do (the UEFI size
//! probe, ignoring packets to force retransmissions). Each test starts its own server on
//! 127.0.0.1, port 0, with a temporary root. Seconds in all; needs `curl` and `atftp`
//! (scripts/install-deps.sh test).

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use slipway::pxe::tftp::{
    Packet, Request, TftpConfig, TftpServer, TransferEvent, TransferResult, encode, log_event,
    parse,
};

/// A server running on its own runtime, and what it reported.
struct Server {
    /// Serving; dropped with the test, which ends the server's tasks.
    _rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    root: tempfile::TempDir,
    /// Downloads land here, outside the root.
    out: tempfile::TempDir,
    events: Arc<Mutex<Vec<TransferEvent>>>,
}

fn start() -> Server {
    start_with(TftpConfig::default())
}

fn start_with(cfg: TftpConfig) -> Server {
    let root = tempfile::tempdir().unwrap();
    // One worker: the clients want the other core, and wake-ups stay on one thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let server = rt
        .block_on(TftpServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            root.path(),
            cfg,
        ))
        .unwrap()
        .on_event(move |e| {
            log_event(e);
            sink.lock().unwrap().push(e.clone());
        });
    let addr = server.local_addr();
    rt.spawn(server.serve());
    Server {
        _rt: rt,
        addr,
        root,
        out: tempfile::tempdir().unwrap(),
        events,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("tftp://{}/{path}", self.addr)
    }

    /// Write `len` bytes that differ at every offset (seeded by the name) to `name` in the root.
    fn file(&self, name: &str, len: usize) -> Vec<u8> {
        let data = pattern(name, len);
        let path = self.root.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &data).unwrap();
        data
    }

    fn sha256_in_root(&self, name: &str) -> String {
        sha256_of(&self.root.path().join(name))
    }

    fn out(&self, name: &str) -> PathBuf {
        self.out.path().join(name)
    }

    /// The event of the transfer of `path` (waits up to 10 s for it).
    fn event(&self, path: &str) -> TransferEvent {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.events.lock().unwrap().iter().find(|e| e.path == path) {
                return e.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no transfer event for {path}; events: {:#?}",
                self.events.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The events of the first `n` transfers of `path` (waits up to 10 s for them).
    fn events_for(&self, path: &str, n: usize) -> Vec<TransferEvent> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events: Vec<_> = (self.events.lock().unwrap().iter())
                .filter(|e| e.path == path)
                .cloned()
                .collect();
            if events.len() >= n || Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assert_complete(&self, path: &str, len: usize) {
        let e = self.event(path);
        assert_eq!(e.result, TransferResult::Complete, "{e:?}");
        assert_eq!(e.bytes, len as u64, "{e:?}");
    }
}

/// Bytes that differ from one 8-byte word to the next, seeded by `seed` (so files differ).
fn pattern(seed: &str, len: usize) -> Vec<u8> {
    let mut x: u64 = seed.bytes().fold(0x9e37_79b9_7f4a_7c15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The SHA-256 of a file, by coreutils' `sha256sum` (quick on 40 MiB, unlike unoptimized
/// Rust).
fn sha256_of(path: &Path) -> String {
    let o = run(Command::new("sha256sum").arg(path));
    assert!(o.status.success(), "sha256sum {}", path.display());
    let out = String::from_utf8(o.stdout).unwrap();
    out.split_whitespace().next().unwrap().to_string()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    eprintln!(
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn curl(args: &[&str]) -> Output {
    run(Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args))
}

/// `curl -o OUT URL` plus `extra`; asserts success and the file's checksum.
fn curl_get(s: &Server, name: &str, extra: &[&str]) {
    let out = s.out(name);
    let url = s.url(name);
    let mut args = extra.to_vec();
    args.extend(["-o", out.to_str().unwrap(), &url]);
    let o = curl(&args);
    assert!(o.status.success(), "curl failed for {name}");
    assert_eq!(sha256_of(&out), s.sha256_in_root(name), "{name}");
}

/// `atftp -g` with `--option` for each of `options`, traced (each packet on stderr).
fn atftp(s: &Server, name: &str, options: &[&str]) -> Output {
    let out = s.out(name);
    let mut cmd = Command::new("atftp");
    cmd.args(["--trace", "-g", "-r", name, "-l", out.to_str().unwrap()]);
    for o in options {
        cmd.args(["--option", o]);
    }
    cmd.arg(s.addr.ip().to_string())
        .arg(s.addr.port().to_string());
    run(&mut cmd)
}

#[test]
fn curl_gets_a_small_file() {
    let s = start();
    s.file("pxelinux.0", 1000);
    curl_get(&s, "pxelinux.0", &[]);
    s.assert_complete("pxelinux.0", 1000);
    // RFC 1350 only: no options, no OACK, DATA 1 at once.
    s.file("plain", 3000);
    curl_get(&s, "plain", &["--tftp-no-options"]);
    s.assert_complete("plain", 3000);
    // A file in a subdirectory, asked with a leading slash.
    s.file("boot/grub/grub.cfg", 77);
    let out = s.out("grub.cfg");
    let o = curl(&[
        "-o",
        out.to_str().unwrap(),
        &format!("tftp://{}//boot/grub/grub.cfg", s.addr),
    ]);
    assert!(o.status.success());
    assert_eq!(sha256_of(&out), s.sha256_in_root("boot/grub/grub.cfg"));
    s.assert_complete("/boot/grub/grub.cfg", 77);
}

#[test]
fn an_empty_file_and_files_ending_on_a_block_boundary() {
    let s = start();
    // The last DATA block is empty when the file is a multiple of the block size.
    // (Without options: curl 7.88 takes `tsize 0` in an OACK for an error.)
    s.file("empty", 0);
    curl_get(&s, "empty", &["--tftp-no-options"]);
    s.assert_complete("empty", 0);
    s.file("empty-too", 0);
    let o = atftp(&s, "empty-too", &["tsize 0", "blksize 1468"]);
    assert!(o.status.success());
    assert_eq!(
        sha256_of(&s.out("empty-too")),
        s.sha256_in_root("empty-too")
    );
    s.assert_complete("empty-too", 0);
    s.file("x512", 512 * 8);
    curl_get(&s, "x512", &["--tftp-no-options"]);
    s.assert_complete("x512", 512 * 8);
    s.file("x1468", 1468 * 5);
    curl_get(&s, "x1468", &["--tftp-blksize", "1468"]);
    s.assert_complete("x1468", 1468 * 5);
}

#[test]
fn curl_gets_40_mib_at_blksize_512_across_the_block_wrap() {
    let s = start();
    let len = 40 << 20;
    assert!(len / 512 > 65535);
    s.file("big.img", len);
    curl_get(&s, "big.img", &["--tftp-blksize", "512"]);
    s.assert_complete("big.img", len);
}

#[test]
fn atftp_gets_files_with_windowsize_and_blksize() {
    let s = start();
    // Three windows of 16 blocks exactly: the empty last block opens a window of its own.
    let len = 1468 * 16 * 3;
    s.file("initrd.img", len);
    let o = atftp(
        &s,
        "initrd.img",
        &["windowsize 16", "blksize 1468", "tsize 0"],
    );
    assert!(o.status.success());
    assert_eq!(
        sha256_of(&s.out("initrd.img")),
        s.sha256_in_root("initrd.img")
    );
    s.assert_complete("initrd.img", len);
    // Windows it was: ACK 0 (for the OACK), 16, 32, 48, 49; not one per block.
    let trace = String::from_utf8_lossy(&o.stderr);
    assert!(
        trace.contains("received OACK <tsize: 70464, windowsize: 16, blksize: 1468,"),
        "{trace}"
    );
    let acks: Vec<_> = trace
        .lines()
        .filter(|l| l.starts_with("sent ACK"))
        .collect();
    assert_eq!(
        acks,
        [0, 16, 32, 48, 49].map(|b| format!("sent ACK <block: {b}>")),
        "{trace}"
    );
    // A short last block in the middle of a window, and a bigger file.
    let len = 1468 * 1000 + 123;
    s.file("vmlinuz", len);
    let o = atftp(&s, "vmlinuz", &["windowsize 16", "blksize 1468"]);
    assert!(o.status.success());
    assert_eq!(sha256_of(&s.out("vmlinuz")), s.sha256_in_root("vmlinuz"));
    s.assert_complete("vmlinuz", len);
    // Plain lock-step, atftp's defaults.
    s.file("ipxe.efi", 70_000);
    let o = atftp(&s, "ipxe.efi", &[]);
    assert!(o.status.success());
    assert_eq!(sha256_of(&s.out("ipxe.efi")), s.sha256_in_root("ipxe.efi"));
    s.assert_complete("ipxe.efi", 70_000);
}

#[test]
fn twenty_transfers_at_once() {
    let s = start();
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            let name = format!("machine-{i}.efi");
            let data = s.file(&name, 300_000 + i * 1111);
            (name, data)
        })
        .collect();
    let children: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let mut cmd = Command::new("curl");
            cmd.args(["-sS", "--max-time", "60", "-o"])
                .arg(s.out(name))
                .arg(s.url(name))
                .stdin(Stdio::null());
            // Half lock-step at 512, half at 1468.
            if i % 2 == 0 {
                cmd.args(["--tftp-blksize", "1468"]);
            }
            cmd.spawn().unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    for (name, data) in &files {
        assert_eq!(sha256_of(&s.out(name)), s.sha256_in_root(name), "{name}");
        s.assert_complete(name, data.len());
    }
}

/// Twenty transfers are open together, each from its own port: every one has sent its first
/// block before any is acknowledged.
#[test]
fn transfers_run_side_by_side() {
    let s = start_with(TftpConfig {
        timeout: Duration::from_secs(5),
        ..TftpConfig::default()
    });
    let names: Vec<String> = (0..20).map(|i| format!("side-{i}")).collect();
    let files: Vec<Vec<u8>> = names.iter().map(|n| s.file(n, 2000)).collect();
    let mut clients: Vec<Raw> = names
        .iter()
        .map(|n| {
            let mut c = Raw::new(&s);
            c.rrq(n, &[]);
            c
        })
        .collect();
    let mut got: Vec<Vec<u8>> = clients
        .iter_mut()
        .map(|c| {
            let (block, d) = data(c.recv());
            assert_eq!(block, 1);
            d
        })
        .collect();
    let ports: std::collections::HashSet<_> = clients.iter().map(|c| c.tid.unwrap()).collect();
    assert_eq!(ports.len(), 20);
    for (i, c) in clients.iter_mut().enumerate() {
        let mut block = 1;
        loop {
            c.ack(block);
            block += 1;
            let (b, d) = data(c.recv());
            assert_eq!(b, block);
            let last = d.len() < 512;
            got[i].extend(d);
            if last {
                c.ack(block);
                break;
            }
        }
        assert_eq!(got[i], files[i], "{}", names[i]);
        s.assert_complete(&names[i], 2000);
    }
}

/// The host's /etc/passwd never reaches a client, whatever the path or the links in the root.
#[test]
fn nothing_outside_the_root_is_served() {
    let s = start();
    let host_passwd = std::fs::read("/etc/passwd").unwrap();
    assert!(!host_passwd.is_empty());
    let root = s.root.path();
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd-link")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../etc", root.join("up")).unwrap();
    std::fs::create_dir(root.join("boot")).unwrap();
    let first_line = host_passwd.split(|&c| c == b'\n').next().unwrap();
    let leaked = |out: &Path| {
        std::fs::read(out).is_ok_and(|got| got.windows(first_line.len()).any(|w| w == first_line))
    };
    let refused = [
        "../../etc/passwd",
        "../../../../../../../../etc/passwd",
        "boot/../../etc/passwd",
        "%2E%2E/%2E%2E/etc/passwd",
        "%5C..%5C..%5Cetc%5Cpasswd",
        "..%5C..%5Cetc%5Cpasswd",
        "boot%5C..%5C..%5Cetc%5Cpasswd",
    ];
    // No file `etc/passwd` in the root yet: absolute paths and links find nothing.
    let not_found = ["/etc/passwd", "passwd-link", "up/passwd", "%2Fetc%2Fpasswd"];
    for (i, path) in refused.iter().chain(&not_found).enumerate() {
        let out = s.out(&format!("attempt-{i}"));
        let o = curl(&[
            "--path-as-is",
            "-o",
            out.to_str().unwrap(),
            &format!("tftp://{}/{path}", s.addr),
        ]);
        assert!(!o.status.success(), "{path}: curl succeeded");
        assert!(!leaked(&out), "{path}: /etc/passwd leaked");
    }
    for path in ["../../etc/passwd", "\\..\\..\\etc\\passwd"] {
        let e = s.event(path);
        assert!(matches!(e.result, TransferResult::Refused(_)), "{e:?}");
    }
    for path in ["/etc/passwd", "passwd-link", "up/passwd"] {
        let e = s.event(path);
        assert!(matches!(e.result, TransferResult::NotFound(_)), "{e:?}");
    }
    // With an etc/passwd in the root, the same paths and links name that one.
    let inside = s.file("etc/passwd", 100);
    for path in ["etc/passwd", "/etc/passwd", "passwd-link", "up/passwd"] {
        let out = s.out("inside");
        let o = curl(&[
            "--path-as-is",
            "-o",
            out.to_str().unwrap(),
            &format!("tftp://{}/{path}", s.addr),
        ]);
        assert!(o.status.success(), "{path}");
        assert_eq!(std::fs::read(&out).unwrap(), inside, "{path}");
    }
}

#[test]
fn missing_files_and_directories_are_refused() {
    let s = start();
    std::fs::create_dir(s.root.path().join("pxelinux.cfg")).unwrap();
    for path in [
        "no-such-file",
        "pxelinux.cfg",
        "pxelinux.cfg/01-52-54-00-12-34-56",
    ] {
        let out = s.out("x");
        let o = curl(&["-o", out.to_str().unwrap(), &s.url(path)]);
        assert!(!o.status.success(), "{path}");
    }
    assert!(matches!(
        s.event("no-such-file").result,
        TransferResult::NotFound(_)
    ));
    assert!(matches!(
        s.event("pxelinux.cfg").result,
        TransferResult::Refused(_)
    ));
}

#[test]
fn write_requests_are_refused() {
    let s = start();
    let local = s.out("upload");
    std::fs::write(&local, b"not for the server").unwrap();
    let o = curl(&["-T", local.to_str().unwrap(), &s.url("upload")]);
    assert!(!o.status.success());
    // curl reports TFTP's "access violation" as its exit code 69.
    assert_eq!(o.status.code(), Some(69), "{o:?}");
    assert_eq!(
        s.event("upload").result,
        TransferResult::Refused("a write request".into())
    );
    assert!(!s.root.path().join("upload").exists());
}

#[test]
fn malformed_packets_are_dropped_and_serving_goes_on() {
    let s = start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for junk in [
        &b""[..],
        b"\xff",
        b"\0\x01no-terminator",
        b"\0\x01\0octet\0",
        b"\0\x09\0\0",
        b"\0\x04\0\x01",
        b"\0\x01f\0octet\0blksize\0",
    ] {
        sock.send_to(junk, s.addr).unwrap();
    }
    // Nothing answers them.
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 600];
    assert!(sock.recv_from(&mut buf).is_err(), "an answer to junk");
    s.file("after-junk", 5000);
    curl_get(&s, "after-junk", &["--tftp-blksize", "1468"]);
    s.assert_complete("after-junk", 5000);
}

#[test]
fn bind_errors_name_the_address_and_the_directory() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = rt
        .block_on(TftpServer::bind(addr, root.path(), TftpConfig::default()))
        .err()
        .unwrap();
    let msg = format!("{e:#}");
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert!(msg.contains("in use"), "{msg}");
    let missing = root.path().join("no-such-dir");
    let e = rt
        .block_on(TftpServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            &missing,
            TftpConfig::default(),
        ))
        .err()
        .unwrap();
    let msg = format!("{e:#}");
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
}

/// A TFTP client made of a UDP socket, for what real clients cannot be made to do.
struct Raw {
    sock: UdpSocket,
    server: SocketAddr,
    /// The transfer's port, once the server answered.
    tid: Option<SocketAddr>,
}

impl Raw {
    fn new(s: &Server) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Self {
            sock,
            server: s.addr,
            tid: None,
        }
    }

    fn rrq(&mut self, name: &str, options: &[(&str, &str)]) {
        self.tid = None;
        let p = Packet::Rrq(Request {
            filename: name.into(),
            mode: "octet".into(),
            options: options
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        });
        self.sock.send_to(&encode(&p), self.server).unwrap();
    }

    /// The next packet from the transfer (`None` when nothing comes within `wait`).
    fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 70_000];
        let (len, from) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.sock.recv_from(&mut buf) {
                Ok(x) => break x,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("recv: {e}"),
            }
        };
        assert_ne!(from, self.server, "answered from the server's own port");
        match self.tid {
            None => self.tid = Some(from),
            Some(tid) => assert_eq!(from, tid, "a packet from another port"),
        }
        Some(parse(&buf[..len]).unwrap())
    }

    fn recv(&mut self) -> Packet {
        self.recv_within(Duration::from_secs(5))
            .expect("nothing from the server within 5 s")
    }

    /// The next DATA packet, skipping copies of the OACK (sent again when this machine is
    /// too slow to answer within the server's timeout).
    fn recv_data(&mut self) -> (u16, Vec<u8>) {
        loop {
            match self.recv() {
                Packet::Oack { .. } => {}
                p => return data(p),
            }
        }
    }

    /// The data of block `want`, skipping copies of the OACK and of earlier blocks (no
    /// wrap in these tests).
    fn data_of(&mut self, want: u16) -> Vec<u8> {
        loop {
            let (block, d) = self.recv_data();
            if block == want {
                return d;
            }
            assert!(block < want, "block {block} before block {want}");
        }
    }

    fn send(&self, p: &Packet) {
        self.sock.send_to(&encode(p), self.tid.unwrap()).unwrap();
    }

    fn ack(&self, block: u16) {
        self.send(&Packet::Ack { block });
    }
}

fn data(p: Packet) -> (u16, Vec<u8>) {
    match p {
        Packet::Data { block, data } => (block, data),
        p => panic!("expected DATA, got {p:?}"),
    }
}

/// UEFI (OVMF) asks for `tsize 0 blksize 1468 windowsize 4`, reads the OACK for the size,
/// ends with ERROR 8, then asks again and downloads in windows of 4.
#[test]
fn uefi_size_probe_then_windowed_download() {
    let s = start_with(TftpConfig {
        timeout: Duration::from_millis(200),
        ..TftpConfig::default()
    });
    let len = 1468 * 10 + 100;
    let file = s.file("grubx64.efi", len);
    let options = [("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")];
    let mut c = Raw::new(&s);
    c.rrq("grubx64.efi", &options);
    let len_s = len.to_string();
    assert_eq!(
        c.recv(),
        Packet::Oack {
            options: vec![
                ("tsize".into(), len_s.clone()),
                ("blksize".into(), "1468".into()),
                ("windowsize".into(), "4".into()),
            ]
        }
    );
    c.send(&Packet::Error {
        code: 8,
        message: "User aborted the transfer".into(),
    });
    // The server stops: no OACK again, no DATA, no ERROR, through several of its timeouts.
    assert_eq!(c.recv_within(Duration::from_millis(800)), None);
    assert_eq!(s.event("grubx64.efi").result, TransferResult::OptionsProbe);

    c.rrq("grubx64.efi", &options);
    assert!(matches!(c.recv(), Packet::Oack { .. }));
    c.ack(0);
    let mut got = Vec::new();
    let mut next: u16 = 1;
    loop {
        let chunk = c.data_of(next);
        let block = next;
        let last = chunk.len() < 1468;
        got.extend_from_slice(&chunk);
        if last || block.is_multiple_of(4) {
            c.ack(block);
        }
        if last {
            break;
        }
        next += 1;
    }
    assert_eq!(next, 11);
    assert_eq!(sha256(&got), sha256(&file));
    let events = s.events_for("grubx64.efi", 2);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].result, TransferResult::Complete);
    assert_eq!(events[1].bytes, len as u64);
}

/// A DATA block that is not acknowledged is sent again after the timeout.
#[test]
fn unacknowledged_data_is_sent_again() {
    let s = start_with(TftpConfig {
        timeout: Duration::from_millis(200),
        ..TftpConfig::default()
    });
    let file = s.file("kernel", 700);
    let mut c = Raw::new(&s);
    c.rrq("kernel", &[]);
    let first = c.recv();
    let t0 = Instant::now();
    // Not acknowledged: the same block comes again, after the server's timeout.
    let again = c.recv();
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(first, again);
    let (block, mut got) = data(again);
    assert_eq!(block, 1);
    c.ack(1);
    got.extend(c.data_of(2));
    c.ack(2);
    assert_eq!(got, file);
    s.assert_complete("kernel", 700);
}

/// In lock-step a duplicate ACK sends nothing (no Sorcerer's Apprentice): only the timeout
/// sends a block again.
#[test]
fn a_duplicate_ack_sends_nothing_in_lock_step() {
    let s = start_with(TftpConfig {
        timeout: Duration::from_secs(5),
        ..TftpConfig::default()
    });
    let file = s.file("sas", 2000);
    let mut c = Raw::new(&s);
    c.rrq("sas", &[]);
    let mut got = c.data_of(1);
    c.ack(1);
    c.ack(1);
    got.extend(c.data_of(2));
    assert_eq!(c.recv_within(Duration::from_secs(1)), None, "block 2 twice");
    for block in 2..=4 {
        c.ack(block);
        if block < 4 {
            got.extend(c.data_of(block + 1));
        }
    }
    assert_eq!(got, file);
    s.assert_complete("sas", 2000);
}

/// With a window, the whole unacknowledged window is sent again; an ACK inside the window
/// starts the next window after the acknowledged block.
#[test]
fn an_unacknowledged_window_is_sent_again() {
    let s = start_with(TftpConfig {
        timeout: Duration::from_millis(200),
        ..TftpConfig::default()
    });
    let file = s.file("rootfs", 512 * 6 + 10);
    let mut c = Raw::new(&s);
    c.rrq("rootfs", &[("windowsize", "4")]);
    assert!(matches!(c.recv(), Packet::Oack { .. }));
    c.ack(0);
    let blocks = |w: &[(u16, Vec<u8>)]| w.iter().map(|(b, _)| *b).collect::<Vec<_>>();
    let window: Vec<_> = (0..4).map(|_| c.recv_data()).collect();
    assert_eq!(blocks(&window), [1, 2, 3, 4]);
    // Ignored: all four again.
    let again: Vec<_> = (0..4).map(|_| c.recv_data()).collect();
    assert_eq!(again, window);
    // Blocks 3 and 4 "lost": ACK 2, and the next window starts at 3. Whole copies of the
    // first window may come first, sent before the ACK arrived.
    c.ack(2);
    let mut seen = Vec::new();
    while seen.last().is_none_or(|(b, _)| *b != 6) {
        seen.push(c.recv_data());
    }
    let mut rest = &seen[..];
    while rest.len() > 4 && blocks(&rest[..4]) == [1, 2, 3, 4] {
        rest = &rest[4..];
    }
    assert_eq!(blocks(rest), [3, 4, 5, 6], "{:?}", blocks(&seen));
    c.ack(6);
    let last = c.data_of(7);
    assert_eq!(last.len(), 10);
    c.ack(7);
    let got: Vec<u8> = window[..2]
        .iter()
        .chain(rest)
        .flat_map(|(_, d)| d.clone())
        .chain(last)
        .collect();
    assert_eq!(got, file);
    s.assert_complete("rootfs", file.len());
}

/// A client that never acknowledges gets the block 1 + retries times, then ERROR 0.
#[test]
fn a_silent_client_is_given_up() {
    let s = start_with(TftpConfig {
        timeout: Duration::from_millis(100),
        retries: 3,
        ..TftpConfig::default()
    });
    s.file("silent", 2000);
    let mut c = Raw::new(&s);
    c.rrq("silent", &[]);
    let mut copies = 0;
    loop {
        match c.recv() {
            Packet::Data { block: 1, .. } => copies += 1,
            Packet::Error { code: 0, .. } => break,
            p => panic!("unexpected {p:?}"),
        }
    }
    assert_eq!(copies, 4);
    let e = s.event("silent");
    assert_eq!((e.result, e.bytes), (TransferResult::TimedOut, 0));
}

/// A client whose port closes ends its transfer at the next packet the server sends.
#[test]
fn a_vanished_client_ends_its_transfer() {
    let s = start_with(TftpConfig {
        timeout: Duration::from_millis(100),
        retries: 50,
        ..TftpConfig::default()
    });
    s.file("vanish", 2000);
    let mut c = Raw::new(&s);
    c.rrq("vanish", &[]);
    assert!(matches!(c.recv(), Packet::Data { block: 1, .. }));
    let t0 = Instant::now();
    drop(c);
    let e = s.event("vanish");
    assert_eq!(e.result, TransferResult::ClientGone);
    // Not the 50 retries of 100 ms.
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

/// `netascii` is sent as octet (bytes as on disk); `mail` and other modes get ERROR 4.
#[test]
fn netascii_is_sent_as_octet_and_other_modes_are_refused() {
    let s = start();
    let text = b"menu\nboot\r\nend\n".to_vec();
    std::fs::write(s.root.path().join("menu.cfg"), &text).unwrap();
    let mut c = Raw::new(&s);
    let rrq = |c: &mut Raw, mode: &str| {
        c.tid = None;
        let p = Packet::Rrq(Request {
            filename: "menu.cfg".into(),
            mode: mode.into(),
            options: vec![],
        });
        c.sock.send_to(&encode(&p), c.server).unwrap();
    };
    rrq(&mut c, "NetASCII");
    assert_eq!(data(c.recv()), (1, text));
    c.ack(1);
    s.assert_complete("menu.cfg", 15);
    let mut c = Raw::new(&s);
    rrq(&mut c, "mail");
    assert!(
        matches!(c.recv(), Packet::Error { code: 4, .. }),
        "mode mail"
    );
    let events = s.events_for("menu.cfg", 2);
    assert!(
        matches!(&events[1].result, TransferResult::Refused(why) if why == "mode mail"),
        "{events:?}"
    );
}
