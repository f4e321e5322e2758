//! TLS for tests: a certificate authority made for the run (`openssl`), server certificates
//! it signs for the addresses a test names, and an HTTPS server (Python's `http.server` in
//! an `ssl` context) that serves a directory for GET and answers every POST with `200 {}`
//! (enough for a FleetLock client).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::fixtures::{RepoServer, run_ok};

/// A CA: its key and certificate (PEM) in a directory of the test's.
pub struct TestCa {
    pub cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its files in `dir`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        std::fs::create_dir_all(dir).unwrap();
        let (key, cert) = (
            dir.join(format!("{name}.key")),
            dir.join(format!("{name}.pem")),
        );
        run_ok(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
                .args(["-subj", &format!("/CN={name}"), "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        TestCa {
            cert,
            key,
            dir: dir.to_path_buf(),
        }
    }

    /// A server certificate for the IP addresses `ips` signed by this CA: (certificate, key).
    pub fn issue(&self, name: &str, ips: &[&str]) -> (PathBuf, PathBuf) {
        let d = &self.dir;
        let (key, csr, cert, ext) = (
            d.join(format!("{name}.key")),
            d.join(format!("{name}.csr")),
            d.join(format!("{name}.pem")),
            d.join(format!("{name}.ext")),
        );
        let sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        )
        .unwrap();
        run_ok(
            Command::new("openssl")
                .args([
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                ])
                .args(["-nodes", "-subj", &format!("/CN={name}"), "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&csr),
        );
        run_ok(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&self.cert)
                .arg("-CAkey")
                .arg(&self.key)
                .arg("-CAcreateserial")
                .arg("-out")
                .arg(&cert)
                .arg("-extfile")
                .arg(&ext),
        );
        (cert, key)
    }
}

/// The server's program: `python3 -c SCRIPT ADDR PORT DIR CERT KEY`.
pub const SERVER_SCRIPT: &str = r#"
import functools, http.server, ssl, sys
addr, port, root, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
class Handler(http.server.SimpleHTTPRequestHandler):
    # Keep-alive: a pull asks for thousands of objects, each a new TLS handshake otherwise.
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server = http.server.ThreadingHTTPServer((addr, port), functools.partial(Handler, directory=root))
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("serving", flush=True)
server.serve_forever()
"#;

/// An HTTPS server over `dir` on a free port of 127.0.0.1 ([`SERVER_SCRIPT`]); killed on
/// drop.
pub fn start_server(dir: &Path, cert: &Path, key: &Path) -> RepoServer {
    RepoServer::start_with("the TLS server", |port| {
        let mut cmd = Command::new("python3");
        cmd.args(["-u", "-c", SERVER_SCRIPT, "127.0.0.1", &port.to_string()])
            .arg(dir)
            .arg(cert)
            .arg(key);
        cmd
    })
}
