//! Fast checks of `slipway pxe serve` and `slipway pxe status` through the real binary, on
//! 127.0.0.1 and high ports, over a directory `slipway pxe build` made from tiny commits
//! (`tests/common/pxe.rs`). Runs as root (`pxe build` does).

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::fixtures::*;
use common::pxe::*;
use dhcproto::v4::{
    Architecture, DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode,
};
use dhcproto::{Decodable, Decoder, Encodable};
use serde_json::Value;

const REF_A: &str = "test/pxe/a";
const REF_B: &str = "test/pxe/b";
/// In `machines` as node1, matched by host name: REF_B, its own template.
const NODE1: &str = "52:54:00:00:00:01";
/// Matched by MAC, `reinstall: true`.
const LAB: &str = "52:54:00:00:00:02";
/// Nobody listed: the default profile (REF_A, DIR's default kickstart).
const OTHER: &str = "52:54:00:00:00:03";
/// Listed, with profiles for PXELINUX and GRUB.
const BIOS: &str = "52:54:00:00:00:04";
const UEFI: &str = "52:54:00:00:00:05";

/// A DIR with two refs and a default kickstart, and a profiles file beside it.
struct Site {
    f: Fixture,
    profiles: PathBuf,
}

fn site() -> Site {
    let f = Fixture::new();
    f.commit_with(REF_A, "1.0", add_nic_modules);
    f.commit(REF_B, "2.0");
    let ks = atomic_host_ks(f.dir.path());
    f.build_ok(&[
        "--ref",
        REF_A,
        "--ref",
        REF_B,
        "--kickstart",
        ks.to_str().unwrap(),
        "--trusted-key",
        trusted_key(f.dir.path()).to_str().unwrap(),
    ]);
    // The shipped template, installing whatever ref the profile names.
    let template = std::fs::read_to_string(source_dir().join("kickstart/atomic-host.ks"))
        .unwrap()
        .replace("--ref=slipway/bookworm/x86_64/atomic-host", "--ref={{ref}}");
    std::fs::create_dir_all(f.dir.path().join("ks")).unwrap();
    std::fs::write(f.dir.path().join("ks/node.ks"), template).unwrap();
    let profiles = f.dir.path().join("profiles.json");
    write_json(
        &profiles,
        &serde_json::json!({
            "default": {"ref": REF_A},
            "profiles": [
                {"name": "nodes", "match": {"hostname": "node1"}, "ref": REF_B,
                 "kernel-args": ["quiet"], "kickstart": "ks/node.ks"},
                {"name": "lab", "match": {"mac": LAB}, "reinstall": true, "kickstart": "ks/node.ks"},
                {"name": "bios", "match": {"labels": {"fw": "bios"}}, "bootloader": "pxelinux"},
                {"name": "uefi", "match": {"labels": {"fw": "uefi"}}, "bootloader": "grub"},
            ],
            "machines": [
                {"mac": NODE1, "hostname": "node1", "labels": {"rack": "r1"}},
                {"mac": BIOS, "labels": {"fw": "bios"}},
                {"mac": UEFI, "labels": {"fw": "uefi"}},
            ],
        }),
    );
    Site { f, profiles }
}

fn write_json(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `slipway pxe serve`, killed when dropped.
struct Server {
    child: Child,
    http: u16,
    tftp: u16,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn serve_cmd(s: &Site, state: &Path, http: u16, tftp: u16, extra: &[&str]) -> Command {
    let mut c = slipway();
    c.args(["pxe", "serve", "--dir"])
        .arg(&s.f.out)
        .arg("--repo")
        .arg(&s.f.repo)
        .arg("--profiles")
        .arg(&s.profiles)
        .arg("--state-dir")
        .arg(state)
        .args(["--http-port", &http.to_string()])
        .args(["--tftp-port", &tftp.to_string()])
        .args(extra);
    c
}

/// Start the server and wait until it answers `/status`.
fn start(s: &Site, state: &Path, extra: &[&str]) -> Server {
    let (http, tftp) = (free_tcp_port(), free_udp_port());
    let log = state.with_extension(format!("log-{http}"));
    let server = spawn_server(serve_cmd(s, state, http, tftp, extra), http, tftp, log);
    server.wait_ready()
}

/// Run `cmd` (a `pxe serve`, maybe wrapped) with its stderr in `log`; killed when dropped,
/// also when an assertion fails.
fn spawn_server(mut cmd: Command, http: u16, tftp: u16, log: PathBuf) -> Server {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Server {
        child,
        http,
        tftp,
        log,
    }
}

impl Server {
    /// Wait until the server answers `/status` on its HTTP port.
    fn wait_ready(mut self) -> Server {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("pxe serve exited ({st}):\n{}", self.log());
            }
            if get(&self.url("/status")).0 == 200 {
                return self;
            }
            assert!(Instant::now() < deadline, "no answer:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .proxy(None)
        .build()
        .new_agent()
}

/// (status, body); status 0 when nothing answered.
fn get(url: &str) -> (u16, String) {
    match agent().get(url).call() {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let mut body = Vec::new();
            r.body_mut()
                .with_config()
                .limit(1 << 30)
                .reader()
                .read_to_end(&mut body)
                .unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(_) => (0, String::new()),
    }
}

fn get_ok(url: &str) -> String {
    let (status, body) = get(url);
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

fn report(s: &Server, mac: &str, step: &str, result: &str, error: Option<&str>) {
    let body = serde_json::json!({"mac": mac, "step": step, "result": result, "error": error});
    let r = agent()
        .post(&s.url("/report"))
        .content_type("application/json")
        .send(body.to_string().as_str())
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

/// `slipway pxe status --json --server URL`, machine by MAC.
fn status_json(s: &Server) -> Value {
    let out = slipway()
        .args(["pxe", "status", "--json", "--server", &s.url("")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn machine(s: &Server, mac: &str) -> Value {
    status_json(s)["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mac"] == mac)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Wait until `mac`'s record satisfies `ok` (file events arrive after the answer).
fn wait_machine(s: &Server, mac: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = machine(s, mac);
        if ok(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{mac}: {m:#}\n{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The URLs of an iPXE script's `kernel`, `initrd` and `chain` lines.
fn script_urls(script: &str) -> Vec<String> {
    script
        .lines()
        .filter(|l| {
            matches!(
                l.split_whitespace().next(),
                Some("kernel" | "initrd" | "chain")
            )
        })
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("http://"))
                .map(str::to_string)
        })
        .collect()
}

fn boot_script(s: &Server, mac: &str) -> String {
    get_ok(&s.url(&format!("/boot.ipxe?mac={mac}")))
}

fn is_install(script: &str) -> bool {
    script.contains("\nkernel ") && !script.contains("sanboot")
}

fn is_local(script: &str) -> bool {
    script.contains("sanboot --no-describe --drive 0x80") && script.contains("\nexit 1\n")
}

#[test]
fn boot_scripts_kickstarts_files_reports_and_a_restart() {
    let s = site();
    let state = s.f.dir.path().join("state");
    let srv = start(&s, &state, &["--dhcp", "off", "--server-ip", "127.0.0.1"]);
    let base = srv.url("");

    // Listed machines show before they boot.
    let m = machine(&srv, BIOS);
    assert_eq!(
        (&m["status"], &m["profile"]),
        (&"new".into(), &"bios".into()),
        "{m:#}"
    );

    // Without a MAC: a script that asks again with the machine's facts.
    let ask = get_ok(&srv.url("/boot.ipxe"));
    assert!(
        ask.contains(&format!("chain {base}/boot.ipxe?mac=${{netX/mac}}")),
        "{ask}"
    );

    // node1: profile "nodes" (by host name from `machines`), REF_B, per-machine kickstart.
    let script = boot_script(&srv, "52-54-00-00-00-01");
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    assert!(!script.contains("{{"), "{script}");
    assert!(
        script.contains(&format!("{base}/refs/test+pxe+b/vmlinuz?mac={NODE1}")),
        "{script}"
    );
    assert!(
        script.contains(&format!("slipway.ks={base}/kickstart?mac={NODE1}")),
        "{script}"
    );
    assert!(
        script.contains(&format!("slipway.report={base}/report")),
        "{script}"
    );
    assert!(
        script.contains(" root=tmpfs ") && script.contains(" quiet "),
        "{script}"
    );
    let urls = script_urls(&script);
    assert_eq!(urls.len(), 3, "{script}");
    for u in &urls {
        get_ok(u);
    }
    // The downloads count as the machine's progress.
    let m = wait_machine(&srv, NODE1, |m| m["step"] == "initramfs");
    assert_eq!(m["profile"], "nodes");
    assert_eq!(m["ref"], REF_B);
    assert!(
        srv.log().contains(&format!("pxe: {NODE1} kernel fetched")),
        "{}",
        srv.log()
    );

    // The refs' own scripts, served from DIR with {{server}} filled in.
    let a = get_ok(&srv.url("/refs/test+pxe+a/boot.ipxe"));
    assert!(!a.contains("{{server}}") && a.contains(&base), "{a}");
    for u in script_urls(&a) {
        get_ok(&u);
    }

    // The kickstart: the profile's template, rendered for node1, an installer kickstart.
    let ks = get_ok(&srv.url(&format!("/kickstart?mac={NODE1}")));
    assert!(ks.contains("--hostname=node1"), "{ks}");
    assert!(ks.contains(&format!("--url={base}/repo ")), "{ks}");
    let ref_b = format!("--ref={REF_B}");
    assert!(
        ks.lines()
            .any(|l| l.starts_with("ostreesetup ") && l.split(' ').any(|a| a == ref_b)),
        "{ks}"
    );
    slipway::kickstart::parse_str(&ks, "served")
        .unwrap()
        .validate_for_install()
        .unwrap();
    // Another machine: the default profile and DIR's default kickstart.
    let other = boot_script(&srv, OTHER);
    assert!(other.contains("/refs/test+pxe+a/vmlinuz"), "{other}");
    let ks = get_ok(&srv.url(&format!("/kickstart?mac={OTHER}")));
    slipway::kickstart::parse_str(&ks, "served")
        .unwrap()
        .validate_for_install()
        .unwrap();
    // The repository is there for the installer.
    get_ok(&srv.url("/repo/config"));

    // TFTP: the menus, {{server}} filled in where DIR has it.
    let tftp = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .arg(format!("tftp://127.0.0.1:{}/{path}", srv.tftp))
            .output()
            .unwrap();
        assert!(out.status.success(), "tftp {path}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let pxelinux = tftp("pxelinux.cfg/default");
    assert!(
        pxelinux.contains("KERNEL refs/test+pxe+a/vmlinuz"),
        "{pxelinux}"
    );
    assert!(!pxelinux.contains("{{"), "{pxelinux}");
    let menu = tftp("boot.ipxe");
    assert!(
        menu.contains(&format!("chain {base}/refs/test+pxe+b/boot.ipxe")),
        "{menu}"
    );

    // PXELINUX and GRUB machines get a configuration of their own, by MAC, over TFTP.
    let bios = tftp("pxelinux.cfg/01-52-54-00-00-00-04");
    assert!(
        bios.contains("KERNEL refs/test+pxe+a/vmlinuz")
            && bios.contains(&format!("slipway.ks={base}/kickstart?mac={BIOS}")),
        "{bios}"
    );
    let uefi = tftp("grub/grub.cfg-01-52-54-00-00-00-05");
    assert!(
        uefi.contains(&format!(
            "linux (http,{})/refs/test+pxe+a/vmlinuz",
            base.strip_prefix("http://").unwrap()
        )) && uefi.contains("/refs/test+pxe+a/initramfs.img ")
            && uefi.contains("/refs/test+pxe+a/netroot.img\n")
            && uefi.contains(&format!("'slipway.ks={base}/kickstart?mac={UEFI}'")),
        "{uefi}"
    );
    // GRUB loads netroot.img, and the initramfs fetches rootfs.img from this server by HTTP,
    // the file being named with the machine's MAC as iPXE names it.
    let rootfs_url = format!("{base}/refs/test+pxe+a/rootfs.img?mac={UEFI}");
    assert!(
        uefi.contains(&format!(
            "'slipway.rootfs={rootfs_url}' 'slipway.netif={UEFI}'"
        )),
        "{uefi}"
    );
    let fetched = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "30", "-o"])
        .arg(s.f.dir.path().join("fetched-rootfs.img"))
        .arg(&rootfs_url)
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{}", stderr(&fetched));
    assert_eq!(
        std::fs::read(s.f.dir.path().join("fetched-rootfs.img")).unwrap(),
        std::fs::read(s.f.out.join("refs/test+pxe+a/rootfs.img")).unwrap()
    );
    let check = s.f.dir.path().join("grub-check.cfg");
    std::fs::write(&check, &uefi).unwrap();
    run_ok(Command::new("grub-script-check").arg(&check));
    report(&srv, BIOS, "install-result", "ok", None);
    report(&srv, UEFI, "install-result", "ok", None);
    assert!(tftp("pxelinux.cfg/01-52-54-00-00-00-04").contains("LOCALBOOT 0"));
    let m = machine(&srv, BIOS);
    assert_eq!(
        (&m["status"], &m["profile"]),
        (&"installed".into(), &"bios".into()),
        "{m:#}"
    );
    assert!(tftp("grub/grub.cfg-01-52-54-00-00-00-05").contains("\nexit 1\n"));

    // An install that went well: installed, and the next boot is from the disk.
    report(&srv, NODE1, "install-start", "started", None);
    assert_eq!(machine(&srv, NODE1)["status"], "installing");
    report(&srv, NODE1, "install-result", "ok", None);
    let m = machine(&srv, NODE1);
    assert_eq!(m["installed"], true, "{m:#}");
    assert_eq!(m["status"], "installed", "{m:#}");
    assert!(is_local(&boot_script(&srv, NODE1)));
    let table = slipway()
        .args(["pxe", "status", "--server", &base])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let row = table.lines().find(|l| l.starts_with(NODE1)).unwrap_or("");
    assert!(
        row.contains("node1") && row.contains("nodes") && row.contains("installed"),
        "{table}"
    );

    // The host name iPXE sent with the boot script is the kickstart's too (the installer
    // asks with mac= only).
    get_ok(&srv.url(&format!("/boot.ipxe?mac={LAB}&hostname=web7")));
    let ks = get_ok(&srv.url(&format!("/kickstart?mac={LAB}")));
    assert!(ks.contains("--hostname=web7"), "{ks}");

    // --watch asks again every 2 seconds until interrupted.
    let mut watch = slipway()
        .args(["pxe", "status", "--watch", "--server", &base])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read until the second screen has come (not a fixed time): its start is at least the
    // interval after the first's.
    let mut out = watch.stdout.take().unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let t0 = std::time::Instant::now();
    let mut first_at = None;
    let second_at = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no second screen: {}",
            String::from_utf8_lossy(&bytes)
        );
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "--watch ended: {}", String::from_utf8_lossy(&bytes));
        bytes.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&bytes);
        if text.contains("\x1b[H\x1b[2J") && first_at.is_none() {
            first_at = Some(t0.elapsed());
        }
        if text.matches("\x1b[H\x1b[2JMAC ").count() >= 2 {
            break t0.elapsed();
        }
    };
    watch.kill().unwrap();
    watch.wait().unwrap();
    let interval = second_at - first_at.unwrap();
    assert!(
        interval >= Duration::from_millis(1500),
        "the second screen came {interval:?} after the first"
    );
    // Whatever it wrote before it was killed.
    out.read_to_end(&mut bytes).unwrap();
    let shown = String::from_utf8_lossy(&bytes).into_owned();
    assert_eq!(
        shown.matches("\nMAC ").count() + usize::from(shown.starts_with("MAC ")),
        0,
        "the screen is cleared first"
    );
    assert_eq!(shown.matches("\x1b[H\x1b[2JMAC ").count(), 2, "{shown}");

    // `reinstall: true` installs again.
    report(&srv, LAB, "install-result", "ok", None);
    assert_eq!(machine(&srv, LAB)["installed"], true);
    assert!(is_install(&boot_script(&srv, LAB)));

    // A failed install shows as failed with its error, and installs again.
    boot_script(&srv, OTHER);
    report(
        &srv,
        OTHER,
        "install-result",
        "failed",
        Some("no disk /dev/vda"),
    );
    let m = machine(&srv, OTHER);
    assert_eq!(m["status"], "failed", "{m:#}");
    assert_eq!(m["error"], "no disk /dev/vda", "{m:#}");
    assert!(is_install(&boot_script(&srv, OTHER)));

    // A restart keeps every record.
    drop(srv);
    let srv = start(&s, &state, &["--dhcp", "off", "--server-ip", "127.0.0.1"]);
    assert_eq!(machine(&srv, NODE1)["status"], "installed");
    assert_eq!(machine(&srv, OTHER)["error"], "no disk /dev/vda");
    assert!(is_local(&boot_script(&srv, NODE1)));
}

/// Run `pxe serve` expecting it to stop at start: its stderr.
fn fails_at_start(mut c: Command) -> String {
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let st = exit_within(&mut child, 20, "pxe serve did not stop at start");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!st.success(), "{err}");
    err
}

#[test]
fn bad_inputs_stop_the_start_with_a_message_naming_them() {
    let s = site();
    let state = s.f.dir.path().join("state");
    let args = ["--dhcp", "off", "--server-ip", "127.0.0.1"];
    let cmd = |s: &Site| serve_cmd(s, &state, free_tcp_port(), free_udp_port(), &args);

    // DIR missing.
    let missing = Site {
        f: Fixture {
            dir: tempfile::tempdir().unwrap(),
            repo: s.f.repo.clone(),
            out: s.f.dir.path().join("nowhere"),
        },
        profiles: s.profiles.clone(),
    };
    let err = fails_at_start(cmd(&missing));
    assert!(
        err.contains("nowhere") && err.contains("does not exist"),
        "{err}"
    );

    // A profile naming a ref that was not built.
    let bad = s.f.dir.path().join("bad-ref.json");
    write_json(
        &bad,
        &serde_json::json!({"profiles": [{"name": "x", "match": {"hostname": "h"}, "ref": "test/pxe/zz"}]}),
    );
    let other = Site {
        f: Fixture {
            dir: tempfile::tempdir().unwrap(),
            repo: s.f.repo.clone(),
            out: s.f.out.clone(),
        },
        profiles: bad,
    };
    let err = fails_at_start(cmd(&other));
    assert!(
        err.contains("bad-ref.json")
            && err.contains("profiles[0] (x)")
            && err.contains("test/pxe/zz"),
        "{err}"
    );

    // A template with an unknown placeholder.
    std::fs::write(s.f.dir.path().join("bad.ks"), "text\n{{nope}}\n").unwrap();
    let bad = s.f.dir.path().join("bad-ks.json");
    write_json(
        &bad,
        &serde_json::json!({"default": {"ref": REF_A, "kickstart": "bad.ks"}}),
    );
    let err = fails_at_start(cmd(&Site {
        profiles: bad,
        ..other_site(&s)
    }));
    assert!(
        err.contains("bad.ks:2") && err.contains("{{nope}}"),
        "{err}"
    );

    // Two equally specific matches.
    let bad = s.f.dir.path().join("tie.json");
    write_json(
        &bad,
        &serde_json::json!({
            "profiles": [
                {"name": "r1", "match": {"labels": {"rack": "r1"}}, "ref": REF_A},
                {"name": "gpu", "match": {"labels": {"gpu": "yes"}}, "ref": REF_B}],
            "machines": [{"mac": NODE1, "labels": {"rack": "r1", "gpu": "yes"}}]}),
    );
    let err = fails_at_start(cmd(&Site {
        profiles: bad,
        ..other_site(&s)
    }));
    assert!(
        err.contains("tie.json") && err.contains("machines[0]") && err.contains("match equally"),
        "{err}"
    );

    // The HTTP port in use.
    let busy = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let err = fails_at_start(serve_cmd(&s, &state, port, free_udp_port(), &args));
    assert!(err.contains(&format!(":{port}")), "{err}");

    // The TFTP port in use.
    let busy = UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let err = fails_at_start(serve_cmd(&s, &state, free_tcp_port(), port, &args));
    assert!(
        err.contains("TFTP") && err.contains(&format!(":{port}")),
        "{err}"
    );

    // A range without full DHCP.
    let err = fails_at_start(serve_cmd(
        &s,
        &state,
        free_tcp_port(),
        free_udp_port(),
        &[
            "--dhcp",
            "off",
            "--server-ip",
            "127.0.0.1",
            "--range",
            "10.0.0.10,10.0.0.20",
        ],
    ));
    assert!(err.contains("--range is for --dhcp full"), "{err}");

    // No address, and an interface that does not exist.
    let err = fails_at_start(serve_cmd(
        &s,
        &state,
        free_tcp_port(),
        free_udp_port(),
        &["--dhcp", "off"],
    ));
    assert!(err.contains("--server-ip"), "{err}");
    let err = fails_at_start(serve_cmd(
        &s,
        &state,
        free_tcp_port(),
        free_udp_port(),
        &["--dhcp", "off", "--interface", "nosuchif0"],
    ));
    assert!(err.contains("nosuchif0"), "{err}");

    // A repository that is not an archive repository.
    let bare = s.f.dir.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    let err = fails_at_start(cmd(&Site {
        f: Fixture {
            dir: tempfile::tempdir().unwrap(),
            repo: bare.clone(),
            out: s.f.out.clone(),
        },
        profiles: s.profiles.clone(),
    }));
    assert!(err.contains(&bare.display().to_string()), "{err}");
}

/// A `Site` sharing `s`'s DIR and repository (the profiles to be replaced).
fn other_site(s: &Site) -> Site {
    Site {
        f: Fixture {
            dir: tempfile::tempdir().unwrap(),
            repo: s.f.repo.clone(),
            out: s.f.out.clone(),
        },
        profiles: s.profiles.clone(),
    }
}

const GUID: [u8; 17] = [
    0, 0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde,
    0xf0,
];

fn discover(kind: MessageType) -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest)
        .set_htype(HType::Eth)
        .set_chaddr(&[0x52, 0x54, 0, 0, 0, 0x01])
        .set_xid(0x1234_5678)
        .set_flags(Flags::default().set_broadcast());
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ClientMachineIdentifier(GUID.to_vec()));
    o.insert(DhcpOption::ClientNetworkInterface(1, 3, 0));
    o.insert(DhcpOption::ClientSystemArchitecture(Architecture(7)));
    o.insert(DhcpOption::ClassIdentifier(
        b"PXEClient:Arch:00007:UNDI:003000".to_vec(),
    ));
    m
}

fn exchange(sock: &UdpSocket, to: SocketAddr, m: &Message) -> Message {
    sock.send_to(&m.to_vec().unwrap(), to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).expect("a reply within 5 s");
    Message::decode(&mut Decoder::new(&buf[..n])).unwrap()
}

#[test]
fn proxy_dhcp_names_the_boot_program_and_records_the_machine() {
    let s = site();
    let state = s.f.dir.path().join("state");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (dhcp, pxe) = (free_udp_port(), free_udp_port());
    let srv = start(
        &s,
        &state,
        &[
            "--dhcp",
            "proxy",
            "--dhcp-port",
            &dhcp.to_string(),
            "--pxe-port",
            &pxe.to_string(),
            "--server-ip",
            "127.0.0.1",
            "--dhcp-client-port",
            &client.local_addr().unwrap().port().to_string(),
            "--dhcp-broadcast-ip",
            "127.0.0.1",
        ],
    );
    let offer = exchange(
        &client,
        SocketAddr::from((Ipv4Addr::LOCALHOST, dhcp)),
        &discover(MessageType::Discover),
    );
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED, "proxy: no address");
    assert!(offer.opts().get(OptionCode::VendorExtensions).is_some());
    wait_machine(&srv, NODE1, |m| m["step"] == "dhcp");

    // The firmware asks the boot server on the PXE port, and gets the program there.
    let mut req = discover(MessageType::Request);
    req.set_flags(Flags::default())
        .set_ciaddr(Ipv4Addr::LOCALHOST);
    req.opts_mut().insert(DhcpOption::VendorExtensions(vec![
        71, 4, 0x80, 0, 0, 0, 255,
    ]));
    let ack = exchange(&client, SocketAddr::from((Ipv4Addr::LOCALHOST, pxe)), &req);
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.siaddr(), Ipv4Addr::LOCALHOST);
    assert_eq!(
        ack.opts().get(OptionCode::BootfileName),
        Some(&DhcpOption::BootfileName(b"snponly.efi".to_vec()))
    );
    let m = wait_machine(&srv, NODE1, |m| m["step"] == "boot-program");
    assert_eq!(m["uuid"], "12345678-1234-5678-1234-56789abcdef0", "{m:#}");
    // The program is there to fetch, over TFTP and HTTP.
    get_ok(&srv.url("/snponly.efi"));
}

/// A TFTP read request for `file` sent to `to`: the first answer (DATA, OACK or ERROR), or
/// `None` when nothing answers (nobody listening: ICMP port unreachable, or silence).
fn tftp_answer(to: SocketAddr, file: &str) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut rrq = vec![0, 1];
    rrq.extend_from_slice(file.as_bytes());
    rrq.extend_from_slice(b"\0octet\0");
    sock.send_to(&rrq, to).unwrap();
    let mut buf = [0u8; 1024];
    sock.recv_from(&mut buf)
        .ok()
        .map(|(n, _)| buf[..n].to_vec())
}

/// HTTP and TFTP listen on the server's address only, unless `--listen` says otherwise:
/// 127.0.0.2 (another address of this machine) reaches nothing, then, with `--listen
/// 0.0.0.0`, both.
#[test]
fn http_and_tftp_listen_on_the_server_address_unless_told_otherwise() {
    let s = site();
    let state = s.f.dir.path().join("state");
    let srv = start(&s, &state, &["--dhcp", "off", "--server-ip", "127.0.0.1"]);
    let other = |port: u16| SocketAddr::from(([127, 0, 0, 2], port));
    assert!(
        std::net::TcpStream::connect_timeout(&other(srv.http), Duration::from_secs(2)).is_err(),
        "HTTP answers on 127.0.0.2:\n{}",
        srv.log()
    );
    assert_eq!(tftp_answer(other(srv.tftp), "boot.ipxe"), None);
    let here = tftp_answer(SocketAddr::from(([127, 0, 0, 1], srv.tftp)), "boot.ipxe");
    assert_eq!(
        here.as_deref().map(|a| a[1]),
        Some(3),
        "no TFTP DATA from 127.0.0.1"
    );
    assert!(
        srv.log().contains("listening on 127.0.0.1"),
        "{}",
        srv.log()
    );
    drop(srv);

    let srv = start(
        &s,
        &state,
        &[
            "--dhcp",
            "off",
            "--server-ip",
            "127.0.0.1",
            "--listen",
            "0.0.0.0",
        ],
    );
    let (code, _) = get(&format!("http://127.0.0.2:{}/status", srv.http));
    assert_eq!(code, 200, "{}", srv.log());
    let there = tftp_answer(other(srv.tftp), "boot.ipxe");
    assert_eq!(
        there.as_deref().map(|a| a[1]),
        Some(3),
        "no TFTP DATA from 127.0.0.2"
    );
}

/// `--http-port 0`: the kernel picks the port, and the boot scripts name that port.
#[test]
fn http_port_0_announces_the_port_it_got() {
    let s = site();
    let state = s.f.dir.path().join("state");
    let log = state.with_extension("log-port0");
    let tftp = free_udp_port();
    let args = ["--dhcp", "off", "--server-ip", "127.0.0.1"];
    let mut srv = spawn_server(serve_cmd(&s, &state, 0, tftp, &args), 0, tftp, log.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    let port = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("http: listening on 127.0.0.1:").nth(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            break digits.parse::<u16>().unwrap();
        }
        if let Some(st) = srv.child.try_wait().unwrap() {
            panic!("pxe serve exited ({st}):\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "no HTTP address in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(port, 0);
    srv.http = port;
    let script = get_ok(&srv.url("/boot.ipxe"));
    drop(srv);
    assert!(
        script.contains(&format!("http://127.0.0.1:{port}/")),
        "the boot script does not name port {port}:\n{script}"
    );
    assert!(!script.contains("127.0.0.1:0/"), "{script}");
}

/// Wait for `child` to exit: its status; past `secs`, kill it and panic with `late`.
fn exit_within(child: &mut Child, secs: u64, late: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{late} (still running after {secs} s)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM and SIGINT stop the server with status 0 and a last line; so does SIGTERM when it
/// is PID 1 of a PID namespace (the kernel drops signals PID 1 has no handler for).
#[test]
fn sigterm_and_sigint_stop_it_cleanly_also_as_pid_1() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let s = site();
    let state = s.f.dir.path().join("state");
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut srv = start(&s, &state, &["--dhcp", "off", "--server-ip", "127.0.0.1"]);
        kill(Pid::from_raw(srv.child.id() as i32), sig).unwrap();
        let st = exit_within(&mut srv.child, 20, "no exit after the signal");
        assert_eq!(st.code(), Some(0), "{sig}: {st}\n{}", srv.log());
        assert!(
            srv.log().contains(&format!("stopped by {}", sig.as_str())),
            "{}",
            srv.log()
        );
    }

    // PID 1: `unshare --fork --pid` runs slipway as the namespace's first process and exits
    // with its status.
    let (http, tftp) = (free_tcp_port(), free_udp_port());
    let inner = serve_cmd(
        &s,
        &state,
        http,
        tftp,
        &["--dhcp", "off", "--server-ip", "127.0.0.1"],
    );
    let mut c = Command::new("unshare");
    c.args(["--fork", "--pid", "--kill-child"])
        .arg(inner.get_program())
        .args(inner.get_args());
    let log = state.with_extension("log-pid1");
    // unshare killed when dropped (also on a failed assertion), and slipway with it
    // (`--kill-child`).
    let mut srv = spawn_server(c, http, tftp, log.clone()).wait_ready();
    // unshare's one child is slipway, PID 1 inside.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", srv.child.id())).unwrap();
    let pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")),
        "{status}"
    );
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let st = exit_within(&mut srv.child, 20, "no exit after the signal");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(st.code(), Some(0), "{st}\n{text}");
    assert!(text.contains("stopped by SIGTERM"), "{text}");
}

/// `--tls-cert --tls-key`: the same routes over HTTPS on a port of their own (0: any; the
/// kickstarts and `/status` name the one bound), the repository's URL in a kickstart
/// (`{{repo}}`) is the https one while boot scripts stay on HTTP; a client that trusts
/// another CA, or speaks plain HTTP to the HTTPS port, gets nothing.
#[test]
fn https_serves_the_repository_and_kickstarts_name_it() {
    use common::tls::TestCa;
    let s = site();
    let state = s.f.dir.path().join("state");
    let tls = s.f.dir.path().join("tls");
    let ca = TestCa::new(&tls, "slipway-serve-ca");
    let other = TestCa::new(&tls.join("other"), "slipway-other-ca");
    let (cert, key) = ca.issue("server", &["127.0.0.1"]);
    let srv = start(
        &s,
        &state,
        &[
            "--dhcp",
            "off",
            "--server-ip",
            "127.0.0.1",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--https-port",
            "0",
        ],
    );
    let repo = status_json(&srv)["repo"].as_str().unwrap().to_string();
    let port: u16 = repo
        .strip_prefix("https://127.0.0.1:")
        .and_then(|r| r.strip_suffix("/repo"))
        .unwrap_or_else(|| panic!("status names no https repository: {repo}"))
        .parse()
        .unwrap();
    assert!(
        srv.log()
            .contains(&format!("https: listening on 127.0.0.1:{port}")),
        "{}",
        srv.log()
    );
    let ks = get_ok(&srv.url(&format!("/kickstart?mac={NODE1}")));
    assert!(ks.contains(&format!("--url={repo} ")), "{ks}");
    let script = boot_script(&srv, "52-54-00-00-00-01");
    assert!(
        script.contains(&format!("{}/refs/", srv.url(""))),
        "the boot files left HTTP: {script}"
    );

    let a = |ca: &Path| {
        slipway::sys::http::agent_with_ca(Duration::from_secs(10), 0, Some(ca)).unwrap()
    };
    let config =
        slipway::sys::http::get_text(&a(&ca.cert), &format!("{repo}/config"), 1 << 20).unwrap();
    assert!(config.contains("[core]"), "{config}");
    let e = format!(
        "{:#}",
        slipway::sys::http::get_text(&a(&other.cert), &format!("{repo}/config"), 1 << 20)
            .unwrap_err()
    );
    assert!(e.contains("ertificate") || e.contains("issuer"), "{e}");
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/repo/config")).0,
        0,
        "plain HTTP answered on the HTTPS port"
    );
}
