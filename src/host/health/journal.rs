//! Structured journal entries through journald's native socket (the protocol
//! `sd_journal_send` speaks), so verdicts can be found by MESSAGE_ID:
//! `journalctl MESSAGE_ID=<id>`. Without a journal (an offline sysroot, a container) the
//! entry is only printed on stderr.

use std::os::unix::net::UnixDatagram;

/// A boot verdict (`SLIPWAY_VERDICT=green|red`).
pub const VERDICT_ID: &str = "0b6e7f3d2a8c4f51a1d9e2c7b4f60a13";
/// The gate made another deployment the default (`SLIPWAY_REJECTED=<commit>`).
pub const ROLLBACK_ID: &str = "5d2c9a17e4b34f0c8e61b7a3d90f2c48";

const SOCKET: &str = "/run/systemd/journal/socket";

/// Send one entry: `message` plus `fields` (upper-case names), with MESSAGE_ID `id`.
pub fn send(id: &str, priority: u8, message: &str, fields: &[(&str, &str)]) {
    crate::sys::ui::info(message.trim_start_matches("slipway: "));
    let mut buf = Vec::new();
    let mut field = |k: &str, v: &str| {
        // The binary form: any value may hold newlines.
        buf.extend_from_slice(k.as_bytes());
        buf.push(b'\n');
        buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
        buf.extend_from_slice(v.as_bytes());
        buf.push(b'\n');
    };
    field("MESSAGE", message);
    field("MESSAGE_ID", id);
    field("PRIORITY", &priority.to_string());
    field("SYSLOG_IDENTIFIER", "slipway");
    for (k, v) in fields {
        field(k, v);
    }
    if let Ok(sock) = UnixDatagram::unbound() {
        let _ = sock.send_to(&buf, SOCKET);
    }
}
