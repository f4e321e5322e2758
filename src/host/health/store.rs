//! What the gate knows of each deployment, one JSON file per deployment in the stateroot's
//! `/var/lib/slipway/health/<commit>.<serial>.json`. `/var` is shared by every deployment of
//! a stateroot, so the record of a rejected deployment survives the rollback away from it.
//! Files are replaced atomically.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::Verdict;
use crate::host::Host;

/// Relative to a stateroot's `/var`.
pub const DIR: &str = "lib/slipway/health";

/// Why a deployment was rejected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    pub at: String,
    pub reason: String,
}

/// One deployment's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentHealth {
    pub commit: String,
    pub deployserial: i32,
    /// When it first reached a green verdict (it is then never rolled back by the gate).
    pub marked_good: Option<String>,
    /// Set when the gate rolled away from it; it never becomes the default again by itself.
    pub rejected: Option<Rejection>,
    /// The verdict of its most recent boot.
    pub last_verdict: Option<Verdict>,
}

/// The records of one stateroot.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store of `stateroot` in `host`: through `/var` on the booted host (the sysroot's
    /// own path there is a read-only mount), through the sysroot otherwise.
    pub fn open(host: &Host, stateroot: &str) -> Store {
        let var = match host.booted() {
            Some(b) if b.osname() == stateroot && host.is_running_root() => PathBuf::from("/var"),
            _ => host.path().join(format!("ostree/deploy/{stateroot}/var")),
        };
        Store::at(&var.join(DIR))
    }

    /// A store in `dir` (tests).
    pub fn at(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, commit: &str, serial: i32) -> PathBuf {
        self.dir.join(format!("{commit}.{serial}.json"))
    }

    /// The record of a deployment (an empty one when there is none).
    pub fn get(&self, commit: &str, serial: i32) -> Result<DeploymentHealth> {
        let p = self.path(commit, serial);
        match std::fs::read_to_string(&p) {
            Ok(t) => serde_json::from_str(&t).with_context(|| format!("parsing {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DeploymentHealth {
                commit: commit.to_string(),
                deployserial: serial,
                ..Default::default()
            }),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// The record of a libostree deployment.
    pub fn of(&self, dep: &ostree::Deployment) -> Result<DeploymentHealth> {
        self.get(&dep.csum(), dep.deployserial())
    }

    /// Store a record.
    pub fn put(&self, h: &DeploymentHealth) -> Result<()> {
        let p = self.path(&h.commit, h.deployserial);
        crate::sys::file::write_atomic(&p, serde_json::to_string_pretty(h)?.as_bytes())
            .with_context(|| format!("recording the health of deployment {}", h.commit))
    }

    /// Change a deployment's record.
    pub fn update(
        &self,
        dep: &ostree::Deployment,
        f: impl FnOnce(&mut DeploymentHealth),
    ) -> Result<DeploymentHealth> {
        let mut h = self.of(dep)?;
        f(&mut h);
        self.put(&h)?;
        Ok(h)
    }

    /// Whether any deployment of `commit` was rejected here (and why).
    pub fn rejected_commit(&self, commit: &str) -> Result<Option<Rejection>> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|h| h.commit == commit)
            .find_map(|h| h.rejected))
    }

    /// Every record.
    pub fn all(&self) -> Result<Vec<DeploymentHealth>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.dir.display())),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.with_context(|| format!("reading {}", self.dir.display()))?;
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let t =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            out.push(serde_json::from_str(&t).with_context(|| format!("parsing {}", p.display()))?);
        }
        Ok(out)
    }

    /// Remove the records of deployments that no longer exist (`cleanup`), except
    /// rejections.
    pub fn prune(&self, keep: &[(String, i32)]) -> Result<usize> {
        let mut n = 0;
        for h in self.all()? {
            if h.rejected.is_none()
                && !keep
                    .iter()
                    .any(|(c, s)| *c == h.commit && *s == h.deployserial)
            {
                let p = self.path(&h.commit, h.deployserial);
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_prune() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::at(&d.path().join("h"));
        assert_eq!(s.get("abc", 0).unwrap().marked_good, None);
        let mut h = s.get("abc", 0).unwrap();
        h.rejected = Some(Rejection {
            at: "now".into(),
            reason: "red".into(),
        });
        s.put(&h).unwrap();
        let mut g = s.get("def", 1).unwrap();
        g.marked_good = Some("then".into());
        s.put(&g).unwrap();
        assert_eq!(s.get("abc", 0).unwrap(), h);
        assert_eq!(s.rejected_commit("abc").unwrap().unwrap().reason, "red");
        assert_eq!(s.rejected_commit("def").unwrap(), None);
        assert_eq!(s.prune(&[]).unwrap(), 1);
        // The rejection stays: upgrade must not deploy that commit again.
        assert_eq!(s.all().unwrap(), vec![h]);
    }
}
