//! `slipway::pxe::http` from outside: the server on 127.0.0.1 (a port the kernel picks), in a
//! temporary directory, driven by clients nobody here wrote: curl for files, ranges, escapes,
//! the dynamic routes and 200 parallel downloads; the ostree CLI for pulls with and without
//! static deltas. No network; root for the bare repository of the delta pulls, as a host has.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use slipway::pxe::http::{HttpEvent, Report, Route, ServeConfig, Server, SimpleDynamic};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::sync::oneshot;

const BOOT_SCRIPT: &str = "#!ipxe\necho mac {mac} uuid {uuid}\nkernel /vmlinuz?mac={mac}\n";
const KICKSTART: &str = "# kickstart for {mac}\nostreesetup --url=http://x/repo\n";
const MAC: &str = "52:54:00:ab:cd:ef";
const UUID: &str = "12345678-1234-5678-9abc-def012345678";

/// Bytes that look random and are the same on every run.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A temporary directory with `boot/` (served at `/`), a file outside it that no request may
/// reach, and room for repositories.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot");
        std::fs::create_dir_all(boot.join("sub")).unwrap();
        std::fs::write(boot.join("vmlinuz-6.1"), pseudo_random(10_000, 1)).unwrap();
        std::fs::write(boot.join("initramfs.img"), pseudo_random(5_000, 2)).unwrap();
        std::fs::write(boot.join("ipxe.efi"), pseudo_random(3_000, 3)).unwrap();
        std::fs::write(boot.join("undionly.kpxe"), pseudo_random(2_000, 4)).unwrap();
        std::fs::write(boot.join("menu.ipxe"), "#!ipxe\nshell\n").unwrap();
        std::fs::write(boot.join("empty"), "").unwrap();
        // `+` stays `+` in a path (ostree's delta names have it), `%20` is a space.
        std::fs::write(boot.join("a+b c.txt"), "plus and space\n").unwrap();
        std::fs::write(boot.join("sub/file.txt"), "in a sub directory\n").unwrap();
        // An absolute link meant for the root: resolves inside it.
        symlink("/vmlinuz-6.1", boot.join("vmlinuz")).unwrap();
        std::fs::write(dir.path().join("secret"), "SECRET-OUTSIDE-THE-ROOT\n").unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn boot(&self) -> PathBuf {
        self.path().join("boot")
    }

    fn config(&self, dynamic: Arc<SimpleDynamic>) -> ServeConfig {
        ServeConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            self.boot(),
            dynamic as Arc<dyn slipway::pxe::http::Dynamic>,
        )
    }
}

/// The server on its own thread and tokio runtime; stopped when dropped.
struct Running {
    addr: SocketAddr,
    events: UnboundedReceiver<HttpEvent>,
    dynamic: Arc<SimpleDynamic>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn start(fixture: &Fixture, repo: Option<PathBuf>) -> Running {
    start_with(fixture, repo, SimpleDynamic::new(BOOT_SCRIPT, KICKSTART))
}

fn start_with(fixture: &Fixture, repo: Option<PathBuf>, dynamic: SimpleDynamic) -> Running {
    let dynamic = Arc::new(dynamic);
    let mut cfg = fixture.config(dynamic.clone());
    cfg.repo_dir = repo;
    let (tx, events) = unbounded_channel();
    cfg.events = Some(tx);
    let (stop, stopped) = oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = match Server::bind(cfg) {
                Ok(s) => s,
                Err(e) => {
                    addr_tx.send(Err(format!("{e:#}"))).unwrap();
                    return;
                }
            };
            addr_tx.send(Ok(server.local_addr().unwrap())).unwrap();
            tokio::select! {
                r = server.run() => panic!("server stopped: {r:?}"),
                _ = stopped => {}
            }
        });
    });
    let addr = addr_rx.recv().unwrap().unwrap();
    Running {
        addr,
        events,
        dynamic,
        stop: Some(stop),
        thread: Some(thread),
    }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Wait until `n` more events arrived (an answer's event follows its last byte), and
    /// return them.
    fn wait_events(&mut self, n: usize) -> Vec<HttpEvent> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut out = Vec::new();
        while out.len() < n {
            match self.events.try_recv() {
                Ok(e) => out.push(e),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => panic!("{} of {n} events after 20 s: {out:#?}", out.len()),
            }
        }
        out
    }

    /// Every event that arrives within a moment.
    fn drain_events(&mut self) -> Vec<HttpEvent> {
        std::thread::sleep(Duration::from_millis(200));
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One answer as curl saw it.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Run curl with `args` (the URL among them), headers and body to files.
fn curl(args: &[&str]) -> Resp {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().join("headers");
    let b = tmp.path().join("body");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-D"])
        .arg(&h)
        .arg("-o")
        .arg(&b)
        .args(args)
        .output()
        .expect("curl runs (package curl)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = std::fs::read_to_string(&h).unwrap();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = std::fs::read(&b).unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

#[test]
fn files_have_length_type_and_validators() {
    let f = Fixture::new();
    let mut s = start(&f, None);
    for (path, file, ctype) in [
        ("/vmlinuz-6.1", "vmlinuz-6.1", "application/octet-stream"),
        (
            "/initramfs.img",
            "initramfs.img",
            "application/octet-stream",
        ),
        ("/ipxe.efi", "ipxe.efi", "application/efi"),
        (
            "/undionly.kpxe",
            "undionly.kpxe",
            "application/octet-stream",
        ),
        ("/menu.ipxe", "menu.ipxe", "text/plain; charset=utf-8"),
        ("/sub/file.txt", "sub/file.txt", "text/plain; charset=utf-8"),
        // A link to /vmlinuz-6.1, taken inside the root.
        ("/vmlinuz", "vmlinuz-6.1", "application/octet-stream"),
        ("/empty", "empty", "application/octet-stream"),
        ("/a+b%20c.txt", "a+b c.txt", "text/plain; charset=utf-8"),
    ] {
        let want = std::fs::read(f.boot().join(file)).unwrap();
        let r = curl(&[&s.url(path)]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, want, "{path}");
        assert_eq!(
            r.header("content-length"),
            Some(want.len().to_string().as_str()),
            "{path}"
        );
        assert_eq!(r.header("content-type"), Some(ctype), "{path}");
        assert_eq!(r.header("accept-ranges"), Some("bytes"), "{path}");
        assert!(
            r.header("etag").is_some_and(|e| e.starts_with('"')),
            "{path}"
        );
        assert!(r.header("last-modified").is_some(), "{path}");
    }
    let events = s.wait_events(9);
    let e = events.iter().find(|e| e.target == "/vmlinuz").unwrap();
    assert_eq!(e.route, Some(Route::BootFile));
    assert_eq!(e.file.as_deref(), Some("vmlinuz"));
    assert_eq!((e.status, e.bytes, e.length), (200, 10_000, 10_000));
    assert!(e.complete);
    assert_eq!(e.facts.peer.ip(), s.addr.ip());
    assert_eq!(e.delivered_file(), Some("vmlinuz"));

    // A conditional request for what the client has: 304, no body.
    let etag = curl(&[&s.url("/ipxe.efi")])
        .header("etag")
        .unwrap()
        .to_string();
    let r = curl(&["-H", &format!("If-None-Match: {etag}"), &s.url("/ipxe.efi")]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = curl(&["-H", "If-None-Match: \"other\"", &s.url("/ipxe.efi")]);
    assert_eq!(r.status, 200);
}

#[test]
fn ranges_first_bytes_suffix_open_invalid_unsatisfiable() {
    let f = Fixture::new();
    let _s = start(&f, None);
    let s = &_s;
    let data = std::fs::read(f.boot().join("vmlinuz-6.1")).unwrap();
    let len = data.len();
    let url = s.url("/vmlinuz-6.1");

    let r = curl(&["-r", "0-99", &url]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[..100]);
    assert_eq!(r.header("content-length"), Some("100"));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-99/{len}").as_str())
    );
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));

    let r = curl(&["-r", "-100", &url]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[len - 100..]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{len}", len - 100, len - 1).as_str())
    );

    let r = curl(&["-r", "9000-", &url]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[9000..]);

    let r = curl(&["-r", "9990-20000", &url]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[9990..]);

    // Invalid (last before first), several ranges, another unit: the whole file.
    for range in ["bytes=5-2", "bytes=0-1,5-6", "items=0-1", "bytes=x-"] {
        let r = curl(&["-H", &format!("Range: {range}"), &url]);
        assert_eq!(r.status, 200, "{range}");
        assert_eq!(r.body, data, "{range}");
        assert_eq!(r.header("content-range"), None, "{range}");
    }

    // Nothing of the file: 416 with the length.
    for range in ["bytes=10000-", "bytes=20000-30000", "bytes=-0"] {
        let r = curl(&["-H", &format!("Range: {range}"), &url]);
        assert_eq!(r.status, 416, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{len}").as_str()),
            "{range}"
        );
    }
    let r = curl(&["-r", "0-0", &s.url("/empty")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */0"));

    // If-Range: the range only while the file is the one the client knows.
    let etag = curl(&[&url]).header("etag").unwrap().to_string();
    let r = curl(&["-r", "0-9", "-H", &format!("If-Range: {etag}"), &url]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[..10]);
    let r = curl(&["-r", "0-9", "-H", "If-Range: \"changed\"", &url]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
}

#[test]
fn head_is_get_without_a_body() {
    let f = Fixture::new();
    let mut s = start(&f, None);
    let r = curl(&["-I", &s.url("/vmlinuz-6.1")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10000"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    // Nothing after the header block (curl -I would not say).
    let raw = raw_request(s.addr, "HEAD /vmlinuz-6.1 HTTP/1.1");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("content-length: 10000"), "{head}");
    assert_eq!(body, "");
    // Range applies to GET only (RFC 9110 14.2): HEAD describes the whole file.
    let r = curl(&["-I", "-r", "0-9", &s.url("/vmlinuz-6.1")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10000"));
    let r = curl(&["-I", &s.url("/missing")]);
    assert_eq!(r.status, 404);
    let r = curl(&["-I", &s.url(&format!("/boot.ipxe?mac={MAC}"))]);
    assert_eq!(r.status, 200);
    let script = curl(&[&s.url(&format!("/boot.ipxe?mac={MAC}"))]);
    assert_eq!(
        r.header("content-length"),
        Some(script.body.len().to_string().as_str())
    );
    let events = s.wait_events(6);
    assert_eq!(events[0].method, "HEAD");
    assert_eq!((events[0].bytes, events[0].length), (0, 0));
    assert!(events[0].complete);
}

#[test]
fn not_found_directories_and_methods() {
    let f = Fixture::new();
    let s = start(&f, None);
    for path in [
        "/missing",
        "/",
        "/sub",
        "/sub/",
        "/repo/config",
        "/repo",
        "/sub/missing",
    ] {
        let r = curl(&[&s.url(path)]);
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains("file.txt"), "{path}: no listing");
    }
    let r = curl(&["-X", "POST", "-d", "x", &s.url("/vmlinuz")]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = curl(&["-X", "DELETE", &s.url("/vmlinuz")]);
    assert_eq!(r.status, 405);
    let r = curl(&[&s.url("/report")]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = curl(&["-X", "POST", &s.url("/status")]);
    assert_eq!(r.status, 405);
}

/// `/etc/passwd`'s first line, and the file beside the root.
fn assert_nothing_leaked(what: &str, r: &Resp) {
    assert_ne!(r.status, 200, "{what}: {}", r.text());
    let t = r.text();
    assert!(!t.contains("root:x:0:0"), "{what}: {t}");
    assert!(!t.contains("SECRET-OUTSIDE"), "{what}: {t}");
}

#[test]
fn nothing_outside_the_roots() {
    let f = Fixture::new();
    let boot = f.boot();
    // Links out of the root, absolute and relative, to a file and to a directory.
    symlink("/etc/passwd", boot.join("passwd-link")).unwrap();
    symlink("/etc", boot.join("etc-link")).unwrap();
    symlink("../secret", boot.join("secret-link")).unwrap();
    symlink("../../../../../../..", boot.join("up")).unwrap();
    symlink(f.path(), boot.join("fixture-link")).unwrap();
    symlink("/proc/self/root/etc/passwd", boot.join("magic")).unwrap();
    let repo = make_repo(f.path());
    symlink("/etc/passwd", repo.join("passwd-link")).unwrap();
    symlink("../secret", repo.join("secret-link")).unwrap();
    let s = start(&f, Some(repo));
    let fixture_rel = f.path().strip_prefix("/").unwrap().display().to_string();
    let escapes = [
        "/../../etc/passwd".to_string(),
        "/../secret".into(),
        "/%2e%2e/%2e%2e/etc/passwd".into(),
        "/.%2e/secret".into(),
        "/repo/../../etc/passwd".into(),
        "/repo/%2e%2e/%2e%2e/etc/passwd".into(),
        "/repo/%2e%2e/secret".into(),
        "/..%2f..%2fetc%2fpasswd".into(),
        "/repo/..%2F..%2Fsecret".into(),
        "/..\\..\\etc\\passwd".into(),
        "/..%5c..%5cetc%5cpasswd".into(),
        "/passwd-link%00".into(),
        "/etc/passwd%00.efi".into(),
        "//etc/passwd".into(),
        "/passwd-link".into(),
        "/etc-link/passwd".into(),
        "/secret-link".into(),
        "/up/etc/passwd".into(),
        format!("/up/{fixture_rel}/secret"),
        "/fixture-link/secret".into(),
        "/magic".into(),
        "/repo/passwd-link".into(),
        "/repo/secret-link".into(),
        "/repo/../secret".into(),
        "/repo/%2e%2e/boot/../secret".into(),
    ];
    for path in &escapes {
        let r = curl(&["--path-as-is", &s.url(path)]);
        assert_nothing_leaked(path, &r);
    }
    // Raw requests curl would not send: a NUL and a backslash in the request line, absolute
    // form, no leading slash.
    for line in [
        "GET /..\\..\\etc\\passwd HTTP/1.1",
        "GET http://x/../../etc/passwd HTTP/1.1",
        "GET ../../etc/passwd HTTP/1.1",
        "GET /passwd-link\0 HTTP/1.1",
    ] {
        let text = raw_request(s.addr, line);
        assert!(!text.contains("root:x:0:0"), "{line:?}: {text}");
        assert!(!text.starts_with("HTTP/1.1 200"), "{line:?}: {text}");
    }

    // Links are taken inside the root: with an etc/passwd of its own, the root's is served.
    std::fs::create_dir_all(boot.join("etc")).unwrap();
    std::fs::write(boot.join("etc/passwd"), "the root's own passwd\n").unwrap();
    let r = curl(&[&s.url("/passwd-link")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "the root's own passwd\n");
}

/// Send one request line by hand and read the whole answer.
fn raw_request(addr: SocketAddr, line: &str) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "{line}\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn two_hundred_parallel_downloads() {
    const N: usize = 200;
    let f = Fixture::new();
    let data = pseudo_random(4 << 20, 42);
    std::fs::write(f.boot().join("big.img"), &data).unwrap();
    let mut s = start(&f, None);
    // 800 MiB of downloads: in memory when /dev/shm is there, not on a disk shared with VMs.
    let out = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    // One curl, 200 transfers at once (HTTP/1.1: 200 connections).
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--no-progress-meter",
        // A correct server takes seconds; one that serves connections one at a time never
        // finishes (each kept-alive connection holds it for the header timeout).
        "--max-time",
        "120",
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        "200",
        "--fail",
    ]);
    for i in 0..N {
        cmd.arg("-o")
            .arg(out.path().join(i.to_string()))
            .arg(s.url(&format!("/big.img?n={i}")));
    }
    let result = cmd.output().unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    // Byte for byte (stronger than a checksum, and a SHA-256 of 800 MiB in an unoptimized
    // test build takes half a minute).
    for i in 0..N {
        let got = std::fs::read(out.path().join(i.to_string())).unwrap();
        assert_eq!(got.len(), data.len(), "download {i}: length");
        assert!(got == data, "download {i}: content differs");
    }
    let events = s.wait_events(N);
    assert!(
        events
            .iter()
            .all(|e| e.complete && e.status == 200 && e.bytes == 4 << 20)
    );
    let peers: BTreeSet<u16> = events.iter().map(|e| e.facts.peer.port()).collect();
    assert!(
        peers.len() > 1,
        "parallel transfers use several connections"
    );
}

#[test]
fn an_abandoned_download_is_reported_cut_short() {
    let f = Fixture::new();
    std::fs::write(f.boot().join("big.img"), pseudo_random(8 << 20, 7)).unwrap();
    let mut s = start(&f, None);
    let mut c = TcpStream::connect(s.addr).unwrap();
    write!(c, "GET /big.img?mac={MAC} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let mut got = 0;
    while got < 100_000 {
        got += c.read(&mut buf).unwrap();
    }
    drop(c);
    let e = s.wait_events(1).remove(0);
    assert_eq!(e.status, 200);
    assert!(!e.complete, "{e:?}");
    assert!(e.bytes < e.length, "{e:?}");
    assert_eq!(e.length, 8 << 20);
    assert_eq!(
        e.facts.mac.as_deref(),
        Some(MAC),
        "file URLs carry the machine"
    );
    assert_eq!(e.delivered_file(), None);
    assert!(e.to_string().contains("cut short"), "{e}");
}

#[test]
fn dynamic_routes() {
    let f = Fixture::new();
    let mut s = start(&f, None);
    // iPXE's ${net0/mac} and ${uuid}, as it sends them.
    let r = curl(&[&s.url(&format!(
        "/boot.ipxe?mac={MAC}&uuid={}",
        UUID.to_uppercase()
    ))]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        r.text(),
        format!("#!ipxe\necho mac {MAC} uuid {UUID}\nkernel /vmlinuz?mac={MAC}\n")
    );
    let e = s.wait_events(1).remove(0);
    assert_eq!(e.route, Some(Route::BootScript));
    assert_eq!(e.facts.mac.as_deref(), Some(MAC));
    assert_eq!(e.facts.uuid.as_deref(), Some(UUID));

    // The Dynamic's own refusal (no mac), and malformed facts refused before it.
    let r = curl(&[&s.url("/boot.ipxe")]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("mac"), "{}", r.text());
    let r = curl(&[&s.url("/boot.ipxe?mac=00:11")]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("not a hardware address"), "{}", r.text());
    let r = curl(&[&s.url("/kickstart?mac=52:54:00:ab:cd:ef&uuid=nope")]);
    assert_eq!(r.status, 400);

    let r = curl(&[&s.url("/kickstart?mac=52-54-00-AB-CD-EF")]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!("# kickstart for {MAC}\nostreesetup --url=http://x/repo\n")
    );

    // Reports: normalized, handed over, shown by /status.
    let body = r#"{"mac":"52-54-00-AB-CD-EF","uuid":"12345678-1234-5678-9ABC-DEF012345678","step":"pull","result":"failed","error":"no space","extra":1}"#;
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
        &s.url("/report"),
    ]);
    assert_eq!(r.status, 204, "{}", r.text());
    let reports = s.dynamic.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].1,
        Report {
            mac: MAC.into(),
            uuid: Some(UUID.into()),
            step: "pull".into(),
            result: "failed".into(),
            error: Some("no space".into()),
        }
    );
    assert_eq!(reports[0].0.peer.ip(), s.addr.ip());
    let r = curl(&[&s.url("/status")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["reports"][0]["step"], "pull");
    assert_eq!(v["reports"][0]["mac"], MAC);

    // Bad reports: a missing field named, a bad MAC, not JSON, too large.
    for (body, says) in [
        (r#"{"mac":"52:54:00:ab:cd:ef","result":"ok"}"#, "step"),
        (
            r#"{"mac":"x","step":"a","result":"ok"}"#,
            "hardware address",
        ),
        (
            r#"{"mac":"52:54:00:ab:cd:ef","step":1,"result":"ok"}"#,
            "step",
        ),
        ("not json", "report"),
    ] {
        let r = curl(&["--data-binary", body, &s.url("/report")]);
        assert_eq!(r.status, 400, "{body}");
        assert!(r.text().contains(says), "{body}: {}", r.text());
    }
    let big = f.path().join("big.json");
    std::fs::write(&big, vec![b' '; 100_000]).unwrap();
    let r = curl(&[
        "--data-binary",
        &format!("@{}", big.display()),
        &s.url("/report"),
    ]);
    assert_eq!(r.status, 413);
    // Chunked: no length known before the body.
    let r = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", big.display()),
        &s.url("/report"),
    ]);
    assert_eq!(r.status, 413);
    assert_eq!(s.dynamic.reports().len(), 1);

    // A Dynamic's own status: no kickstart for this machine.
    let s2 = start_with(&f, None, SimpleDynamic::new(BOOT_SCRIPT, ""));
    let r = curl(&[&s2.url(&format!("/kickstart?mac={MAC}"))]);
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "no kickstart for this machine\n");
}

#[test]
fn errors_at_start_name_the_address_and_the_directory() {
    let f = Fixture::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut cfg = f.config(Arc::new(SimpleDynamic::default()));
    cfg.bind = addr;
    let e = format!("{:#}", Server::bind(cfg).err().unwrap());
    assert!(e.contains(&addr.to_string()), "{e}");
    assert!(e.contains("in use"), "{e}");

    let mut cfg = f.config(Arc::new(SimpleDynamic::default()));
    cfg.boot_dir = f.path().join("no-such-dir");
    let e = format!("{:#}", Server::bind(cfg).err().unwrap());
    assert!(
        e.contains("boot directory") && e.contains("no-such-dir"),
        "{e}"
    );

    let mut cfg = f.config(Arc::new(SimpleDynamic::default()));
    cfg.repo_dir = Some(f.path().join("no-repo"));
    let e = format!("{:#}", Server::bind(cfg).err().unwrap());
    assert!(e.contains("repository") && e.contains("no-repo"), "{e}");

    let mut cfg = f.config(Arc::new(SimpleDynamic::default()));
    cfg.repo_dir = Some(f.boot());
    let e = format!("{:#}", Server::bind(cfg).err().unwrap());
    assert!(e.contains("not an OSTree repository"), "{e}");

    let bare = f.path().join("bare");
    ostree(&bare, &["init", "--mode=bare-user"]);
    let mut cfg = f.config(Arc::new(SimpleDynamic::default()));
    cfg.repo_dir = Some(bare);
    let e = format!("{:#}", Server::bind(cfg).err().unwrap());
    assert!(e.contains("only archive repositories"), "{e}");

    let mut cfg = f.config(Arc::new(SimpleDynamic::default()));
    cfg.boot_dir = f.boot().join("menu.ipxe");
    let e = format!("{:#}", Server::bind(cfg).err().unwrap());
    assert!(
        e.contains("menu.ipxe") && e.contains("Not a directory"),
        "{e}"
    );
}

fn ostree(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .expect("ostree runs (package ostree)");
    assert!(
        out.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const REF: &str = "slipway/test/x86_64";

/// A tree to commit: some small files, a larger pseudo-random one, a link.
fn write_tree(dir: &Path, version: u64) {
    std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
    std::fs::write(dir.join("usr/bin/tool"), format!("tool v{version}\n")).unwrap();
    std::fs::write(dir.join("usr/big"), pseudo_random(300_000, 9 + version)).unwrap();
    std::fs::write(dir.join("usr/same"), pseudo_random(100_000, 5)).unwrap();
    let _ = std::fs::remove_file(dir.join("usr/link"));
    symlink("bin/tool", dir.join("usr/link")).unwrap();
}

/// An archive repository at `base/srv` with one commit on [`REF`] and a summary.
fn make_repo(base: &Path) -> PathBuf {
    let repo = base.join("srv");
    ostree(&repo, &["init", "--mode=archive"]);
    let tree = base.join("tree");
    write_tree(&tree, 1);
    commit(&repo, &tree, "one");
    repo
}

fn commit(repo: &Path, tree: &Path, subject: &str) -> String {
    let rev = ostree(
        repo,
        &[
            "commit",
            "-b",
            REF,
            &format!("--tree=dir={}", tree.display()),
            "-s",
            subject,
        ],
    );
    ostree(repo, &["summary", "-u"]);
    rev
}

fn client(base: &Path, name: &str, mode: &str, url: &str) -> PathBuf {
    let repo = base.join(name);
    ostree(&repo, &["init", &format!("--mode={mode}")]);
    ostree(&repo, &["remote", "add", "--no-gpg-verify", "x", url]);
    repo
}

fn checked_out(repo: &Path, base: &Path, name: &str) -> String {
    let dir = base.join(name);
    ostree(
        repo,
        &[
            "checkout",
            "-U",
            &format!("x:{REF}"),
            &dir.display().to_string(),
        ],
    );
    std::fs::read_to_string(dir.join("usr/bin/tool")).unwrap()
}

#[test]
fn ostree_pull() {
    let f = Fixture::new();
    let repo = make_repo(f.path());
    let rev = ostree(&repo, &["rev-parse", REF]);
    let mut s = start(&f, Some(repo.clone()));
    let url = s.url("/repo");
    let c = client(f.path(), "client", "archive", &url);
    ostree(&c, &["pull", "x", REF]);
    assert_eq!(ostree(&c, &["rev-parse", &format!("x:{REF}")]), rev);
    ostree(&c, &["fsck"]);
    // An upgrade: a second commit pulled object by object.
    let tree = f.path().join("tree");
    write_tree(&tree, 2);
    let rev2 = commit(&repo, &tree, "two");
    ostree(&c, &["pull", "x", REF]);
    assert_eq!(ostree(&c, &["rev-parse", &format!("x:{REF}")]), rev2);
    ostree(&c, &["fsck"]);
    assert_eq!(checked_out(&c, f.path(), "co"), "tool v2\n");
    let events = s.drain_events();
    assert!(events.iter().all(|e| e.route == Some(Route::RepoFile)));
    let fetched = |suffix: &str| {
        events
            .iter()
            .filter(|e| e.status == 200 && e.file.as_deref().is_some_and(|p| p.ends_with(suffix)))
            .count()
    };
    assert!(fetched(".filez") >= 4, "{events:#?}");
    assert_eq!(fetched(".commit"), 2, "{events:#?}");
}

#[test]
fn ostree_pull_with_static_deltas() {
    let f = Fixture::new();
    let repo = make_repo(f.path());
    let rev1 = ostree(&repo, &["rev-parse", REF]);
    // From nothing to the first commit.
    ostree(
        &repo,
        &["static-delta", "generate", "--empty", "--to", &rev1],
    );
    ostree(&repo, &["summary", "-u"]);
    let mut s = start(&f, Some(repo.clone()));
    let url = s.url("/repo");
    // Archive repositories cannot apply deltas, and bare-user ones fetch some content loose
    // beside them; hosts' repositories are bare (root).
    let c = client(f.path(), "client", "bare", &url);
    ostree(&c, &["pull", "--require-static-deltas", "x", REF]);
    assert_eq!(ostree(&c, &["rev-parse", &format!("x:{REF}")]), rev1);
    ostree(&c, &["fsck"]);
    let events = s.drain_events();
    let deltas = |events: &[HttpEvent]| {
        events
            .iter()
            .filter(|e| {
                e.status == 200 && e.file.as_deref().is_some_and(|p| p.starts_with("deltas/"))
            })
            .count()
    };
    // ostree 2022.7 may also fetch a few objects loose while it applies the part (it scans
    // the commit concurrently), so only the delta files are counted.
    assert!(deltas(&events) >= 2, "superblock and a part: {events:#?}");

    // An upgrade from the first to the second commit through a delta.
    let tree = f.path().join("tree");
    write_tree(&tree, 2);
    let rev2 = commit(&repo, &tree, "two");
    ostree(
        &repo,
        &["static-delta", "generate", "--from", &rev1, "--to", &rev2],
    );
    ostree(&repo, &["summary", "-u"]);
    ostree(&c, &["pull", "--require-static-deltas", "x", REF]);
    assert_eq!(ostree(&c, &["rev-parse", &format!("x:{REF}")]), rev2);
    ostree(&c, &["fsck"]);
    assert_eq!(checked_out(&c, f.path(), "co"), "tool v2\n");
    let events = s.drain_events();
    assert!(deltas(&events) >= 2, "{events:#?}");
}
