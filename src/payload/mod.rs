//! The payload: what every host carries so that the host verbs and the health gate exist
//! there, put in by compose (into every host tree) and by `pxe build` (the executable, into
//! the installer's live root):
//! slipway itself (the executable that composed the host, stripped), the boot-check service
//! and `slipway-healthy.target`, the drop-ins that gate docker, containerd and kubelet (in
//! `/usr/lib/systemd/system/<unit>.d`, so they hold for a unit a repository adds later),
//! the drop-in that makes `ostree-finalize-staged.service` use slipway's boot menu
//! generator, the default checks and `health.json`, and the update agent's service, timer
//! (installed, not enabled) and `updates.json`. The files are compiled into slipway
//! (`src/payload/files/`), so a host always carries the ones of the slipway it carries.
//! The host reads them back at the paths named here ([`HEALTH_SETTINGS`],
//! [`UPDATE_SETTINGS`]); nothing here knows how the host uses them.

use std::path::Path;

use anyhow::{Context, Result};

use crate::sys::tree::Tree;

/// The health gate's shipped settings (the operator's go in `/etc/slipway/`).
pub const HEALTH_SETTINGS: &str = "usr/lib/slipway/health.json";
/// The update agent's shipped settings.
pub const UPDATE_SETTINGS: &str = "usr/lib/slipway/updates.json";
/// Where the executable goes in the tree.
pub const EXECUTABLE: &str = "usr/bin/slipway";
/// Units gated on the whole green verdict.
pub const GATED_UNITS: [&str; 1] = ["kubelet.service"];
/// Units gated on green host checks (the first stage): the second stage loads the bound
/// images into docker.
pub const HOST_CHECK_GATED_UNITS: [&str; 2] = ["docker.service", "containerd.service"];
/// Name of the gating drop-in in each gated unit's `.d` directory.
pub const GATE_DROPIN: &str = "50-slipway-health.conf";
/// Units enabled in every host.
pub const ENABLED: [&str; 5] = [
    "slipway-boot-check.service",
    "slipway-images-place.service",
    "slipway-images.service",
    "slipway-healthy.target",
    "slipway-fleetlock-steady-state.service",
];

const UNIT_DIR: &str = "usr/lib/systemd/system";

/// (path in the tree, contents, mode) of every file besides the executable.
pub fn files() -> Vec<(String, &'static str, u32)> {
    let mut v = vec![
        (
            format!("{UNIT_DIR}/slipway-boot-check.service"),
            include_str!("files/slipway-boot-check.service"),
            0o644,
        ),
        (
            format!("{UNIT_DIR}/slipway-images.service"),
            include_str!("files/slipway-images.service"),
            0o644,
        ),
        (
            format!("{UNIT_DIR}/slipway-images-place.service"),
            include_str!("files/slipway-images-place.service"),
            0o644,
        ),
        (
            format!("{UNIT_DIR}/slipway-healthy.target"),
            include_str!("files/slipway-healthy.target"),
            0o644,
        ),
        (
            format!("{UNIT_DIR}/ostree-finalize-staged.service.d/50-slipway.conf"),
            include_str!("files/finalize-staged.conf"),
            0o644,
        ),
        (
            "usr/lib/systemd/system.conf.d/50-slipway-watchdog.conf".into(),
            include_str!("files/watchdog.conf"),
            0o644,
        ),
        (
            HEALTH_SETTINGS.to_string(),
            include_str!("files/health.json"),
            0o644,
        ),
        (
            format!("{UNIT_DIR}/slipway-update-agent.service"),
            include_str!("files/slipway-update-agent.service"),
            0o644,
        ),
        (
            format!("{UNIT_DIR}/slipway-fleetlock-steady-state.service"),
            include_str!("files/slipway-fleetlock-steady-state.service"),
            0o644,
        ),
        (
            format!("{UNIT_DIR}/slipway-update-agent.timer"),
            include_str!("files/slipway-update-agent.timer"),
            0o644,
        ),
        (
            UPDATE_SETTINGS.to_string(),
            include_str!("files/updates.json"),
            0o644,
        ),
        (
            "usr/lib/slipway/checks/required.d/10-ostree-root".into(),
            include_str!("files/checks/required.d/10-ostree-root"),
            0o755,
        ),
        (
            "usr/lib/slipway/checks/required.d/20-var".into(),
            include_str!("files/checks/required.d/20-var"),
            0o755,
        ),
        (
            "usr/lib/slipway/checks/required.d/30-container-state".into(),
            include_str!("files/checks/required.d/30-container-state"),
            0o755,
        ),
        (
            "usr/lib/slipway/checks/wanted.d/40-network".into(),
            include_str!("files/checks/wanted.d/40-network"),
            0o755,
        ),
    ];
    for u in GATED_UNITS {
        v.push((
            format!("{UNIT_DIR}/{u}.d/{GATE_DROPIN}"),
            include_str!("files/workload-gate.conf"),
            0o644,
        ));
    }
    for u in HOST_CHECK_GATED_UNITS {
        v.push((
            format!("{UNIT_DIR}/{u}.d/{GATE_DROPIN}"),
            include_str!("files/host-checks-gate.conf"),
            0o644,
        ));
    }
    v
}

/// Whether the tree at `root` is a host slipway can run on: systemd and libostree.
pub fn is_host(root: &Path) -> Result<bool> {
    let tree = Tree::open(root)?;
    Ok(tree.exists("usr/bin/systemctl")?
        && (tree.exists("usr/lib/x86_64-linux-gnu/libostree-1.so.1")?
            || tree.exists("usr/lib/libostree-1.so.1")?))
}

/// Put slipway (`exe`, already stripped) and its files into the tree at `root`, and enable
/// the gate's units with the tree's own systemctl.
pub fn install(root: &Path, exe: &Path) -> Result<()> {
    let tree = Tree::open(root)?;
    let mut f = std::fs::File::open(exe).with_context(|| format!("opening {}", exe.display()))?;
    tree.write_file(EXECUTABLE, &mut f, 0o755)?;
    for (path, text, mode) in files() {
        tree.write_file(&path, &mut text.as_bytes(), mode)?;
    }
    let mut argv = vec!["systemctl", "enable"];
    argv.extend(ENABLED);
    use crate::sys::cmd::CommandRunExt;
    crate::sys::sandbox::Sandbox::new(root)
        .command(&argv)
        .run()
        .context("enabling slipway's health gate units in the tree")?;
    Ok(())
}

/// Write the payload's file `path` under `root` (for the tests of the modules that read it
/// back).
#[cfg(test)]
pub(crate) fn write_one(root: &Path, path: &str) {
    let (p, text, _) = files().into_iter().find(|(p, _, _)| p == path).unwrap();
    std::fs::create_dir_all(root.join(&p).parent().unwrap()).unwrap();
    std::fs::write(root.join(&p), text).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gated_unit_requires_the_target_and_runs_the_gate() {
        let files = files();
        for u in GATED_UNITS {
            let (_, text, _) = files
                .iter()
                .find(|(p, _, _)| p.ends_with(&format!("{u}.d/{GATE_DROPIN}")))
                .unwrap();
            assert!(text.contains("Requires=slipway-healthy.target"), "{u}");
            assert!(text.contains("After=slipway-healthy.target"), "{u}");
            assert!(
                text.contains("ExecStartPre=/usr/bin/slipway host gate"),
                "{u}"
            );
        }
        for u in HOST_CHECK_GATED_UNITS {
            let (_, text, _) = files
                .iter()
                .find(|(p, _, _)| p.ends_with(&format!("{u}.d/{GATE_DROPIN}")))
                .unwrap();
            assert!(text.contains("Requires=slipway-boot-check.service"), "{u}");
            assert!(text.contains("After=slipway-boot-check.service"), "{u}");
            assert!(!text.contains("slipway-healthy.target\n"), "{u}");
            assert!(
                text.contains("ExecStartPre=/usr/bin/slipway host gate --host-checks"),
                "{u}"
            );
        }
        let (_, target, _) = files
            .iter()
            .find(|(p, _, _)| p.ends_with("slipway-healthy.target"))
            .unwrap();
        assert!(target.contains("Requires=slipway-boot-check.service slipway-images.service"));
        assert!(target.contains("After=slipway-boot-check.service slipway-images.service"));
        let (_, images, _) = files
            .iter()
            .find(|(p, _, _)| p.ends_with("slipway-images.service"))
            .unwrap();
        assert!(images.contains("After=slipway-boot-check.service docker.service"));
        assert!(images.contains("Before=slipway-healthy.target"));
        assert!(images.contains("ExecStart=/usr/bin/slipway host load-images\n"));
        // Default checks are executable, with an interpreter line.
        for (p, text, mode) in &files {
            if p.contains("/checks/") {
                assert_eq!(*mode, 0o755, "{p}");
                assert!(text.starts_with("#!/bin/sh\n"), "{p}");
            }
        }
    }

    #[test]
    fn the_update_agent_is_installed_but_not_enabled() {
        let files = files();
        let text = |name: &str| {
            files
                .iter()
                .find(|(p, _, _)| p.ends_with(name))
                .map(|(_, t, _)| *t)
                .unwrap()
        };
        let service = text("/slipway-update-agent.service");
        assert!(service.contains("Type=oneshot"));
        assert!(service.contains("ExecStart=/usr/bin/slipway host update-agent --once\n"));
        assert!(service.contains("Requires=slipway-healthy.target"));
        assert!(service.contains("After=slipway-healthy.target network-online.target"));
        assert!(!service.contains("[Install]"));
        let timer = text("/slipway-update-agent.timer");
        for line in [
            "OnBootSec=10min",
            "OnUnitInactiveSec=1h",
            "RandomizedDelaySec=10min",
            "[Install]\nWantedBy=timers.target",
        ] {
            assert!(timer.contains(line), "{line}");
        }
        assert!(
            !ENABLED
                .iter()
                .any(|u| u.starts_with("slipway-update-agent"))
        );
    }

    #[test]
    fn default_checks_are_valid_shell() {
        for (p, text, _) in files() {
            if p.contains("/checks/") {
                let out = std::process::Command::new("sh")
                    .args(["-n", "-c", text])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{p}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}
