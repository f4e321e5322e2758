//! Fixtures shared by the slow suite: the slipway binary, the composed default host (cached
//! between runs, recomposed only when its inputs change), tiny treefiles, and a local signed
//! apt repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The slipway binary under test.
pub fn slipway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_slipway"))
}

/// The repository checkout (for treefiles/, kickstart/...).
pub fn source_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cache shared by slow tests across runs (`$SLIPWAY_TEST_CACHE`, default
/// `/var/tmp/slipway-test-cache`).
pub fn cache_root() -> PathBuf {
    let p = std::env::var_os("SLIPWAY_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/slipway-test-cache"));
    std::fs::create_dir_all(&p).expect("creating the test cache");
    p
}

/// The apt/work cache directory composes in tests use.
pub fn apt_cache() -> PathBuf {
    cache_root().join("slipway-cache")
}

/// Append a measurement for the benchmark script when it asks for them
/// (`SLIPWAY_BENCH_OUT`: a JSON-lines file).
pub fn record_measurement(name: &str, value: f64, unit: &str, accel: &str) {
    if let Ok(path) = std::env::var("SLIPWAY_BENCH_OUT") {
        let line = serde_json::json!({"name": name, "value": value, "unit": unit, "accel": accel});
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }
}

/// Run a command, panicking with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout_of(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).stdout).into_owned()
}

/// `ostree --repo=REPO ARGS...` stdout.
pub fn ostree(repo: &Path, args: &[&str]) -> String {
    stdout_of(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(args),
    )
}

/// The default host composed from `treefiles/atomic-host.json`.
#[derive(Debug, Clone)]
pub struct ComposedHost {
    pub repo: PathBuf,
    pub reference: String,
    pub commit: String,
    pub composejson: serde_json::Value,
}

pub const HOST_REF: &str = "slipway/bookworm/x86_64/atomic-host";

/// Compose the default treefile into the cached fixture repository (a no-op when nothing
/// changed since the last run). Serialized across test binaries by a lock file.
pub fn composed_host() -> ComposedHost {
    static HOST: OnceLock<ComposedHost> = OnceLock::new();
    HOST.get_or_init(|| {
        let root = cache_root();
        let lock = std::fs::File::create(root.join("host.lock")).unwrap();
        let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .unwrap();
        let repo = root.join("host-repo");
        let json = root.join("host-compose.json");
        let out = run_ok(
            slipway()
                .args(["compose", "tree", "--repo"])
                .arg(&repo)
                .arg("--cachedir")
                .arg(apt_cache())
                .arg("--write-composejson-to")
                .arg(&json)
                .arg(source_dir().join("treefiles/atomic-host.json")),
        );
        let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let composejson: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        ComposedHost {
            repo,
            reference: HOST_REF.to_string(),
            commit,
            composejson,
        }
    })
    .clone()
}

/// Write a small treefile (minbase plus `packages`, no kernel) with extra JSON keys merged in.
pub fn tiny_treefile(dir: &Path, reference: &str, extra: serde_json::Value) -> PathBuf {
    let mut v = serde_json::json!({
        "ref": reference,
        "packages": ["hello"],
    });
    if let serde_json::Value::Object(m) = extra {
        for (k, val) in m {
            v[k] = val;
        }
    }
    let p = dir.join("tiny.json");
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    p
}

/// A flat apt repository on disk holding one package, signed with a throwaway key.
pub struct LocalAptRepo {
    pub dir: PathBuf,
    /// The binary keyring that verifies it.
    pub key: PathBuf,
    /// A keyring of another throwaway key (which must not verify it).
    pub wrong_key: PathBuf,
    pub package: String,
    pub file_in_package: String,
    /// GnuPG home holding the good key's secret part (also usable to sign commits).
    pub gnupg_home: PathBuf,
}

/// The fingerprint of the (only) secret key in a GnuPG home.
pub fn gpg_fingerprint(home: &Path) -> String {
    let out = stdout_of(gpg(home).args(["--with-colons", "--list-secret-keys"]));
    out.lines()
        .find_map(|l| {
            l.strip_prefix("fpr:")
                .map(|r| r.trim_matches(':').to_string())
        })
        .expect("a secret key")
}

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.arg("--homedir")
        .arg(home)
        .args(["--batch", "--yes", "--quiet"]);
    c
}

/// Sign `commit` in the OSTree repository `repo` with the (only) key of GnuPG home `home`.
pub fn gpg_sign(repo: &Path, commit: &str, home: &Path) {
    ostree(
        repo,
        &[
            "gpg-sign",
            &format!("--gpg-homedir={}", home.display()),
            commit,
            &gpg_fingerprint(home),
        ],
    );
}

/// Regenerate the summary of `repo`, signed with the (only) key of GnuPG home `home` if given.
pub fn update_summary(repo: &Path, home: Option<&Path>) {
    let summary = repo.join("summary");
    let before = std::fs::metadata(&summary).and_then(|m| m.modified()).ok();
    match home {
        Some(home) => ostree(
            repo,
            &[
                "summary",
                "-u",
                &format!("--gpg-homedir={}", home.display()),
                &format!("--gpg-sign={}", gpg_fingerprint(home)),
            ],
        ),
        None => ostree(repo, &["summary", "-u"]),
    };
    // An HTTP server dates a file to the second (`Last-Modified`) and answers a client that
    // has the summary of that second with 304, so libostree would keep a summary rewritten
    // within the second it last fetched one. Each new summary is dated a later second.
    if let Some(before) = before {
        let secs =
            |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let now = std::fs::metadata(&summary).unwrap().modified().unwrap();
        if secs(now) <= secs(before) {
            let later = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs(before) + 1);
            for name in ["summary", "summary.sig"] {
                if let Ok(f) = std::fs::File::options().write(true).open(repo.join(name)) {
                    f.set_modified(later).unwrap();
                }
            }
        }
    }
}

/// A throwaway signing key in a new GnuPG home `home`, its public part exported (binary) to
/// `export_to`.
pub fn new_key(home: &Path, name: &str, export_to: &Path) {
    std::fs::create_dir_all(home).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700)).unwrap();
    run_ok(gpg(home).args([
        "--passphrase",
        "",
        "--quick-gen-key",
        &format!("{name} <{name}@slipway.invalid>"),
        "ed25519",
        "sign",
        "never",
    ]));
    run_ok(gpg(home).arg("--output").arg(export_to).arg("--export"));
}

/// Build the repository under `dir`.
pub fn local_apt_repo(dir: &Path) -> LocalAptRepo {
    let repo = dir.join("apt-repo");
    let pkgroot = dir.join("pkgroot");
    let package = "slipway-test-hello".to_string();
    let file_in_package = "usr/share/slipway-test-hello/hello.txt".to_string();
    std::fs::create_dir_all(pkgroot.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkgroot.join("usr/share/slipway-test-hello")).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        pkgroot.join(&file_in_package),
        "hello from a third-party repository\n",
    )
    .unwrap();
    std::fs::write(
        pkgroot.join("DEBIAN/control"),
        format!(
            "Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: slipway tests <tests@slipway.invalid>\nDescription: slipway third-party repository test package\n"
        ),
    )
    .unwrap();
    let deb_name = format!("{package}_1.0_all.deb");
    run_ok(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&pkgroot)
            .arg(repo.join(&deb_name)),
    );
    let deb = std::fs::read(repo.join(&deb_name)).unwrap();
    let control = std::fs::read_to_string(pkgroot.join("DEBIAN/control")).unwrap();
    let packages = format!(
        "{}Filename: ./{deb_name}\nSize: {}\nSHA256: {}\n\n",
        control,
        deb.len(),
        hex::encode(Sha256::digest(&deb))
    );
    std::fs::write(repo.join("Packages"), &packages).unwrap();
    let release = format!(
        "Origin: slipway-tests\nLabel: slipway-tests\nDate: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n {} {} Packages\n",
        hex::encode(Sha256::digest(packages.as_bytes())),
        packages.len()
    );
    std::fs::write(repo.join("Release"), &release).unwrap();
    let key = dir.join("good-key.gpg");
    let wrong_key = dir.join("wrong-key.gpg");
    let home = dir.join("gnupg-good");
    new_key(&home, "slipway-test-good", &key);
    new_key(&dir.join("gnupg-wrong"), "slipway-test-wrong", &wrong_key);
    run_ok(
        gpg(&home)
            .arg("--output")
            .arg(repo.join("InRelease"))
            .arg("--clearsign")
            .arg(repo.join("Release")),
    );
    LocalAptRepo {
        dir: repo,
        key,
        wrong_key,
        package,
        file_in_package,
        gnupg_home: home,
    }
}

/// Mount points below `dir` right now.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let d = dir.display().to_string();
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| m.starts_with(&d))
        .map(String::from)
        .collect()
}

/// The composed host's kernel, extracted once per commit into the test cache.
pub fn host_kernel() -> PathBuf {
    let host = composed_host();
    let kver = ostree(
        &host.repo,
        &["show", "--print-metadata-key=ostree.linux", &host.commit],
    )
    .trim()
    .trim_matches('\'')
    .to_string();
    let dest = cache_root().join(format!("vmlinuz-{}", &host.commit[..12]));
    if !dest.exists() {
        let out = run_ok(
            Command::new("ostree")
                .arg(format!("--repo={}", host.repo.display()))
                .args([
                    "cat",
                    &host.commit,
                    &format!("/usr/lib/modules/{kver}/vmlinuz"),
                ]),
        );
        let tmp = dest.with_extension("tmp");
        std::fs::write(&tmp, out.stdout).unwrap();
        std::fs::rename(&tmp, &dest).unwrap();
    }
    dest
}

/// An SSH key pair the image tests put into images through the kickstart.
pub fn test_ssh_key() -> (PathBuf, String) {
    let dir = cache_root().join("ssh");
    let key = dir.join("id_ed25519");
    if !key.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!("tmp-{}", std::process::id()));
        run_ok(
            Command::new("ssh-keygen")
                .args(["-t", "ed25519", "-N", "", "-q", "-C", "slipway-tests", "-f"])
                .arg(&tmp),
        );
        std::fs::rename(tmp.with_extension("pub"), key.with_extension("pub")).unwrap();
        std::fs::rename(&tmp, &key).unwrap();
    }
    let public = std::fs::read_to_string(key.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string();
    (key, public)
}

/// The kickstart the image tests use: a user with the test key, a kernel argument, a
/// hostname, an enabled service and a %post marker.
pub fn test_kickstart(dir: &Path) -> PathBuf {
    let (_, public) = test_ssh_key();
    let ks = format!(
        "user --name=core --groups=sudo,docker --gecos=\"slipway test user\"\n\
         sshkey --username=core \"{public}\"\n\
         sshkey --username=root \"{public}\"\n\
         bootloader --append=\"slipway.test=1\" --timeout=1\n\
         network --hostname=slipway-test\n\
         timezone --utc Europe/Berlin\n\
         services --enabled=docker,containerd\n\
         %post --erroronfail\n\
         echo from-post > /etc/slipway-post-marker\n\
         %end\n"
    );
    let p = dir.join("test.ks");
    std::fs::write(&p, ks).unwrap();
    p
}

/// The upgrade remote test images are built with.
pub const TEST_REMOTE_URL: &str = "http://192.0.2.1/repo";

/// A disk image of the composed host, built once per commit and format.
pub fn host_image(format: &str) -> PathBuf {
    let host = composed_host();
    let dir = cache_root().join("images");
    std::fs::create_dir_all(&dir).unwrap();
    let ext = match format {
        "raw" => "raw",
        "qcow2" => "qcow2",
        _ => "box",
    };
    // The name is a hash of everything that makes the image: the commit, the slipway that
    // builds it (its source hash; deploy, bootloader and hostconfig code are in it), the
    // format, the kickstart and the arguments. Any change builds a new image.
    let ks = test_kickstart(&dir);
    let args = image_args(format, &ks);
    let key = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(host.commit.as_bytes());
        h.update(env!("SLIPWAY_SOURCE_HASH").as_bytes());
        h.update(std::fs::read(&ks).unwrap());
        for a in &args {
            h.update([0u8]);
            h.update(a.as_bytes());
        }
        hex::encode(h.finalize())
    };
    let out = dir.join(format!("host-{}.{ext}", &key[..16]));
    let lock = std::fs::File::create(dir.join(format!("{ext}.lock"))).unwrap();
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    if !out.exists() {
        // Old images of earlier commits only take room.
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("host-") && n.ends_with(&format!(".{ext}")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        run_ok(
            slipway()
                .args(&args)
                .arg("-o")
                .arg(&out)
                .arg("--cachedir")
                .arg(apt_cache()),
        );
    }
    out
}

/// The arguments `host_image` builds with (all but the output and cache paths).
fn image_args(format: &str, kickstart: &Path) -> Vec<String> {
    let host = composed_host();
    vec![
        "image".into(),
        "--repo".into(),
        host.repo.display().to_string(),
        "--ref".into(),
        host.reference.clone(),
        "--format".into(),
        format.into(),
        "--kickstart".into(),
        kickstart.display().to_string(),
        // TEST-NET-1: never contacted, only recorded as the upgrade remote.
        "--remote-url".into(),
        TEST_REMOTE_URL.into(),
    ]
}

/// One HTTP/1.1 request from `r`: its head (request line and headers, up to the empty line)
/// and its body (Content-Length bytes). For the small servers tests play (FleetLock).
pub fn read_http_request(r: &mut impl std::io::BufRead) -> std::io::Result<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((head, body))
}

/// `python3 -m http.server` over a directory, on a free port of 127.0.0.1; killed on drop.
/// Its request log is kept in a file, and its tail printed when a test fails (drops it while
/// panicking), so a failed fetch can be told from a failed boot.
pub struct RepoServer {
    child: std::process::Child,
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl RepoServer {
    pub fn start(dir: &Path) -> RepoServer {
        RepoServer::start_with("http.server", |port| {
            let mut cmd = Command::new("python3");
            cmd.args(["-u", "-m", "http.server", "--bind", "127.0.0.1"])
                .arg(port.to_string())
                .arg("--directory")
                .arg(dir);
            cmd
        })
    }

    /// The server `command(port)` starts (`what` in messages), on a free port of 127.0.0.1,
    /// once it accepts connections; its output in the log.
    pub fn start_with(what: &str, command: impl FnOnce(u16) -> Command) -> RepoServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new_in(cache_root()).unwrap();
        let mut cmd = command(port);
        cmd.stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap());
        let child = slipway::sys::cmd::spawn(&mut cmd).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} did not start: {}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        RepoServer { child, port, log }
    }

    /// Everything the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for RepoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- the repository server's last requests (port {}) ---\n{}",
                self.port,
                self.log_tail(40)
            );
        }
    }
}
