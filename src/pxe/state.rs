//! What `slipway pxe serve` knows about each machine: one JSON file per machine under
//! `STATE_DIR/machines/` (`52-54-00-12-34-56.json`, the lower-case MAC with `-`), written
//! atomically after every change and read back at start, so a restarted server knows which
//! machines are installed.
//!
//! Steps, in the order a network install goes through them: `dhcp` (a boot program offered),
//! `boot-program` (offered in the acknowledgement, or fetched by TFTP), `script` (the iPXE
//! script handed out), `kernel`, `initramfs` (the kernel, the initramfs and the live root
//! fetched), `kickstart`, then what the installer reports (`install-start`, `install-result`
//! with `ok` or `failed` and its error; other steps it reports are recorded as they come).
//! Each change is one log line per machine: `slipway: pxe: 52:54:00:12:34:56 kernel fetched`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::sys::ui;

/// The state file's format version.
pub const SCHEMA: u32 = 1;

/// One machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MachineState {
    pub schema: u32,
    /// Lower-case, `:`-separated.
    pub mac: String,
    pub uuid: Option<String>,
    /// From the profiles' `machines` entry, or what iPXE sent.
    pub hostname: Option<String>,
    /// The profile that matched when the machine last asked for its boot script.
    pub profile: Option<String>,
    #[serde(rename = "ref")]
    pub ostree_ref: Option<String>,
    /// The last step (see the module documentation).
    pub step: String,
    /// How it went: `offered`, `fetched`, `served`, `local-boot`, `started`, `ok`, `failed`...
    pub result: String,
    /// The error of the last report that had one; kept through later boot steps, cleared
    /// when an install starts (`install-start`) or a report without an error comes.
    pub error: Option<String>,
    /// An install reported `install-result` `ok` (and no install started since).
    pub installed: bool,
    /// The last address the machine asked from.
    pub ip: Option<String>,
    /// When the record last changed, Unix seconds.
    pub updated: u64,
    /// When each step was last recorded, Unix seconds: an install's progress over time
    /// (`kickstart`, `install-start`, `seeded`, `pulled`, `deployed`, `install-result`...).
    #[serde(default)]
    pub steps: std::collections::BTreeMap<String, u64>,
}

impl MachineState {
    /// `installed`, `failed`, `installing` or `new`: one word for tables.
    pub fn summary(&self) -> &'static str {
        if self.installed {
            "installed"
        } else if self.result == "failed" {
            "failed"
        } else if self.step.is_empty() {
            "new"
        } else {
            "installing"
        }
    }
}

/// Every machine, in memory and on disk.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    machines: Mutex<BTreeMap<String, MachineState>>,
}

/// The file name of `mac`'s record.
pub fn file_name(mac: &str) -> String {
    format!("{}.json", mac.replace(':', "-"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Store {
    /// Load the records under `state_dir/machines` (created when missing). A file that does
    /// not parse is an error naming it: a server that forgot an installed machine would
    /// install it again.
    pub fn load(state_dir: &Path) -> Result<Self> {
        let dir = state_dir.join("machines");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut machines = BTreeMap::new();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let m: MachineState = serde_json::from_str(&text)
                .with_context(|| format!("parsing the machine state {}", path.display()))?;
            machines.insert(m.mac.clone(), m);
        }
        Ok(Self {
            dir,
            machines: Mutex::new(machines),
        })
    }

    /// The record of `mac`, if any.
    pub fn get(&self, mac: &str) -> Option<MachineState> {
        self.lock().get(mac).cloned()
    }

    /// Every record, by MAC.
    pub fn all(&self) -> Vec<MachineState> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, MachineState>> {
        self.machines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change `mac`'s record with `f` (a new record when there is none), stamp it, write it
    /// and log `what` (`kernel fetched`). The file is written under the lock, so records on
    /// disk follow the order of the changes.
    pub fn update(
        &self,
        mac: &str,
        what: &str,
        f: impl FnOnce(&mut MachineState),
    ) -> Result<MachineState> {
        let mut all = self.lock();
        let m = all.entry(mac.to_string()).or_insert_with(|| MachineState {
            schema: SCHEMA,
            mac: mac.to_string(),
            ..Default::default()
        });
        f(m);
        m.updated = now();
        if !m.step.is_empty() {
            m.steps.insert(m.step.clone(), m.updated);
        }
        let m = m.clone();
        let path = self.dir.join(file_name(mac));
        let mut json = serde_json::to_vec_pretty(&m)?;
        json.push(b'\n');
        crate::sys::file::write_atomic(&path, &json)
            .with_context(|| format!("writing the machine state {}", path.display()))?;
        ui::info(format!("pxe: {mac} {what}"));
        Ok(m)
    }

    /// Record step `step` with `result`, logging `what`.
    pub fn step(&self, mac: &str, step: &str, result: &str, what: &str) -> Result<()> {
        self.update(mac, what, |m| {
            m.step = step.into();
            m.result = result.into();
        })
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reload() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::load(d.path()).unwrap();
        s.step("52:54:00:12:34:56", "kernel", "fetched", "kernel fetched")
            .unwrap();
        s.update("52:54:00:12:34:56", "installed", |m| m.installed = true)
            .unwrap();
        assert!(d.path().join("machines/52-54-00-12-34-56.json").is_file());
        let s = Store::load(d.path()).unwrap();
        let m = s.get("52:54:00:12:34:56").unwrap();
        assert!(m.installed);
        assert_eq!(m.step, "kernel");
        assert_eq!(s.all().len(), 1);
        // Each step keeps its time, through later steps and the reload.
        assert!(m.steps["kernel"] > 0, "{:?}", m.steps);
        s.step(
            "52:54:00:12:34:56",
            "install-start",
            "ok",
            "install started",
        )
        .unwrap();
        let m = Store::load(d.path())
            .unwrap()
            .get("52:54:00:12:34:56")
            .unwrap();
        assert_eq!(
            m.steps.keys().collect::<Vec<_>>(),
            ["install-start", "kernel"]
        );
    }
}
