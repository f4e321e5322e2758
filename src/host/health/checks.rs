//! The checks: executables in `usr/lib/slipway/checks/{required.d,wanted.d}` of the
//! deployment (from the commit) and `etc/slipway/checks/{required.d,wanted.d}` (the
//! operator's). As with systemd's drop-in directories, a file in `/etc` replaces the one of
//! the same name in `/usr/lib`, and a link to `/dev/null` (or an empty file) masks it. Checks
//! run one at a time in name order, required ones first, each with the configured timeout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::CheckResult;

/// The stages, in the order they run.
pub const STAGES: [&str; 2] = ["required", "wanted"];
/// The directories, relative to a deployment's root, later ones overriding earlier ones.
pub const DIRS: [&str; 2] = ["usr/lib/slipway/checks", "etc/slipway/checks"];
/// How much of a check's output is kept.
const MAX_OUTPUT: usize = 4096;

/// A check to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub stage: &'static str,
    pub path: PathBuf,
}

/// The checks of the deployment rooted at `root`, in the order they run.
pub fn discover(root: &Path) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    for stage in STAGES {
        let mut by_name: std::collections::BTreeMap<String, Option<PathBuf>> = Default::default();
        for dir in DIRS {
            let d = root.join(dir).join(format!("{stage}.d"));
            let entries = match std::fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", d.display())),
            };
            for e in entries {
                let e = e.with_context(|| format!("reading {}", d.display()))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let path = e.path();
                let masked = std::fs::read_link(&path)
                    .map(|t| t == Path::new("/dev/null"))
                    .unwrap_or(false)
                    || std::fs::metadata(&path)
                        .map(|m| m.len() == 0)
                        .unwrap_or(false);
                by_name.insert(name, if masked { None } else { Some(path) });
            }
        }
        out.extend(
            by_name
                .into_iter()
                .filter_map(|(name, path)| path.map(|path| Check { name, stage, path })),
        );
    }
    Ok(out)
}

/// Run one check through the runner, killed (with anything it started) after `timeout`.
pub fn run(check: &Check, timeout: Duration) -> CheckResult {
    let mut cmd = Command::new(&check.path);
    cmd.env("SLIPWAY_CHECK_STAGE", check.stage);
    let (result, exit_code, output, ms) =
        match crate::sys::cmd::run_timed(&mut cmd, timeout, MAX_OUTPUT) {
            Ok(t) => {
                let ms = t.elapsed.as_millis() as u64;
                match t.status {
                    None => (
                        "timeout",
                        None,
                        format!("{}\n(killed after {} s)", t.output, timeout.as_secs()),
                        ms,
                    ),
                    Some(st) if st.success() => ("passed", Some(0), t.output, ms),
                    Some(st) => ("failed", st.code(), t.output, ms),
                }
            }
            Err(e) => ("failed", None, format!("{e:#}"), 0),
        };
    CheckResult {
        name: check.name.clone(),
        stage: check.stage.to_string(),
        path: check.path.display().to_string(),
        result: result.to_string(),
        exit_code,
        output,
        milliseconds: ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(path: &Path, body: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_operator_overrides_and_masks_by_name() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        script(&r.join("usr/lib/slipway/checks/required.d/10-a"), "exit 0");
        script(&r.join("usr/lib/slipway/checks/required.d/20-b"), "exit 0");
        script(&r.join("usr/lib/slipway/checks/wanted.d/10-w"), "exit 0");
        script(&r.join("etc/slipway/checks/required.d/20-b"), "exit 3");
        script(&r.join("etc/slipway/checks/required.d/05-own"), "exit 0");
        std::fs::create_dir_all(r.join("etc/slipway/checks/wanted.d")).unwrap();
        std::os::unix::fs::symlink("/dev/null", r.join("etc/slipway/checks/wanted.d/10-w"))
            .unwrap();
        let c = discover(r).unwrap();
        let names: Vec<_> = c.iter().map(|c| (c.stage, c.name.as_str())).collect();
        assert_eq!(
            names,
            [
                ("required", "05-own"),
                ("required", "10-a"),
                ("required", "20-b")
            ]
        );
        assert!(c[2].path.starts_with(r.join("etc")), "{:?}", c[2]);
    }

    #[test]
    fn results_carry_status_output_and_timeouts() {
        let d = tempfile::tempdir().unwrap();
        let ok = d.path().join("ok");
        let bad = d.path().join("bad");
        let slow = d.path().join("slow");
        script(&ok, "echo fine");
        script(&bad, "echo broken >&2; exit 4");
        // The sleeping child must die with the check, or the run would wait for its pipe.
        script(&slow, "sleep 30 & sleep 30");
        let check = |p: &Path| Check {
            name: p.file_name().unwrap().to_string_lossy().into(),
            stage: "required",
            path: p.to_path_buf(),
        };
        let r = run(&check(&ok), Duration::from_secs(10));
        assert_eq!((r.result.as_str(), r.exit_code), ("passed", Some(0)));
        assert_eq!(r.output, "fine\n");
        let r = run(&check(&bad), Duration::from_secs(10));
        assert_eq!((r.result.as_str(), r.exit_code), ("failed", Some(4)));
        assert_eq!(r.output, "broken\n");
        let t = std::time::Instant::now();
        let r = run(&check(&slow), Duration::from_millis(300));
        assert_eq!(r.result, "timeout");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let r = run(&check(&d.path().join("missing")), Duration::from_secs(1));
        assert_eq!(r.result, "failed");
        assert!(r.output.contains("missing"), "{}", r.output);
    }
}
