//! Failpoints for fault-injection tests: `SLIPWAY_FAILPOINTS=name=action[,name=action...]`
//! where action is `error` (the operation fails there) or `pause` (it announces itself on
//! stderr, and on the kernel log when it may write there, so that a VM test sees the marker
//! on the serial console, and sleeps, so a test can kill the process, or the machine, at
//! exactly that point).

use anyhow::{Result, bail};

/// The environment variable naming active failpoints.
pub const ENV: &str = "SLIPWAY_FAILPOINTS";

fn action(name: &str) -> Option<String> {
    let spec = std::env::var(ENV).ok()?;
    spec.split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_string())
}

/// Hit failpoint `name`.
pub fn hit(name: &str) -> Result<()> {
    match action(name).as_deref() {
        None => Ok(()),
        Some("error") => bail!("failpoint {name} triggered"),
        Some("pause") => {
            let marker = format!("slipway: failpoint {name}: pausing");
            eprintln!("{marker}");
            if let Ok(mut k) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
                use std::io::Write;
                let _ = writeln!(k, "{marker}");
            }
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        Some(other) => bail!("{ENV}: unknown action `{other}` for {name} (use error or pause)"),
    }
}

#[cfg(test)]
pub mod tests {
    /// Held by every unit test that sets [`super::ENV`] or runs code whose failpoints such a
    /// test sets (the environment is the process's).
    pub static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
}
