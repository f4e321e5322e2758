//! Shared helpers for slipway's integration tests.
//!
//! Every test binary that needs them declares `mod common;`; not every binary
//! uses every helper, hence the blanket `dead_code` allowance.
#![allow(dead_code)]

pub mod fixtures;
pub mod guest;
pub mod libvirt;
pub mod pxe;
pub mod tls;
pub mod vm;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable: directory where console logs of failed VMs are kept.
pub const ENV_ARTIFACTS: &str = "SLIPWAY_TEST_ARTIFACTS";
/// Environment variable: directory for caches that outlive a test run
/// (e.g. the KVM probe verdict).
pub const ENV_CACHE: &str = "SLIPWAY_TEST_CACHE";
/// Environment variable: float multiplier applied to every harness timeout.
pub const ENV_TIMEOUT_SCALE: &str = "SLIPWAY_TEST_TIMEOUT_SCALE";
/// Environment variable: a bootable Linux kernel (bzImage) for harness tests.
pub const ENV_KERNEL: &str = "SLIPWAY_TEST_KERNEL";

/// `ip ARGS...`, which must succeed (its stderr in the panic).
pub fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where logs of failed VMs are copied: `$SLIPWAY_TEST_ARTIFACTS`, else
/// `<CARGO_TARGET_TMPDIR>/vm-logs` (i.e. `target/tmp/vm-logs`), else
/// `<crate>/target/vm-logs`.
pub fn artifacts_dir() -> PathBuf {
    if let Some(dir) = non_empty_env(ENV_ARTIFACTS) {
        return PathBuf::from(dir);
    }
    match option_env!("CARGO_TARGET_TMPDIR") {
        Some(tmp) => Path::new(tmp).join("vm-logs"),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("vm-logs"),
    }
}

/// Persistent cache for test helpers: `$SLIPWAY_TEST_CACHE`, else
/// `/var/tmp/slipway-test-cache`.
pub fn test_cache_dir() -> PathBuf {
    non_empty_env(ENV_CACHE)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/slipway-test-cache"))
}

/// Parses a `SLIPWAY_TEST_TIMEOUT_SCALE` value (`None` or empty means 1.0).
pub fn parse_timeout_scale(value: Option<&str>) -> anyhow::Result<f64> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(1.0);
    };
    let scale: f64 = value
        .parse()
        .map_err(|e| anyhow::anyhow!("{ENV_TIMEOUT_SCALE}={value:?} is not a number: {e}"))?;
    anyhow::ensure!(
        scale.is_finite() && scale > 0.0,
        "{ENV_TIMEOUT_SCALE}={value:?} must be a positive number"
    );
    Ok(scale)
}

/// The timeout multiplier from `SLIPWAY_TEST_TIMEOUT_SCALE` (default 1.0).
///
/// Panics on a malformed value: a misconfigured CI job should fail loudly.
pub fn timeout_scale() -> f64 {
    let raw = std::env::var(ENV_TIMEOUT_SCALE).ok();
    parse_timeout_scale(raw.as_deref()).unwrap_or_else(|e| panic!("{e:#}"))
}

/// `d` multiplied by [`timeout_scale`]. Every wait in the VM harness goes
/// through this, so callers pass unscaled timeouts.
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(timeout_scale())
}

/// A bootable kernel for harness tests: `$SLIPWAY_TEST_KERNEL`.
///
/// Panics with instructions when none is configured.
pub fn test_kernel() -> PathBuf {
    match non_empty_env(ENV_KERNEL) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "{ENV_KERNEL}={} does not exist or is not a file",
                path.display()
            );
            path
        }
        // The kernel of the composed default host (composed first if needed).
        None => fixtures::host_kernel(),
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
