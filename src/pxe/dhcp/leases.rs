//! Full mode's leases: kept in memory by [`Leases`], saved as JSON by the caller before an
//! acknowledgement leaves.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::*;

/// One address bound to one hardware address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Hardware address, as in [`ClientFacts::mac`].
    pub mac: String,
    /// The address.
    pub ip: Ipv4Addr,
    /// When the lease ends, Unix seconds. An ended lease still reserves the address for its
    /// MAC until the range has no never-used address left.
    pub expires: u64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct LeaseFile {
    version: u32,
    leases: Vec<Lease>,
}

/// Full mode's leases: bound leases (saved to a JSON file), offers held for a minute and
/// declined addresses (memory only).
#[derive(Debug, Default)]
pub struct Leases {
    path: Option<PathBuf>,
    bound: BTreeMap<String, Lease>,
    offered: BTreeMap<String, (Ipv4Addr, u64)>,
    declined: BTreeMap<Ipv4Addr, u64>,
    dirty: bool,
}

impl Leases {
    /// Leases that are never saved (proxy mode, tests).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Load leases from `path` (none when the file does not exist); [`Leases::save`] writes
    /// them back there.
    pub fn load(path: &Path) -> Result<Self> {
        let mut leases = Self {
            path: Some(path.to_path_buf()),
            ..Self::default()
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(leases),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let file: LeaseFile = serde_json::from_str(&text)
            .with_context(|| format!("parsing the lease file {}", path.display()))?;
        if file.version != 1 {
            bail!(
                "lease file {}: version {} is not 1",
                path.display(),
                file.version
            );
        }
        for l in file.leases {
            leases.bound.insert(l.mac.clone(), l);
        }
        Ok(leases)
    }

    /// Write the bound leases to the file they were loaded from, atomically (temporary file,
    /// fsync, rename, fsync of the directory). No-op for in-memory leases.
    pub fn save(&mut self) -> Result<()> {
        if let Some(path) = &self.path {
            let file = LeaseFile {
                version: 1,
                leases: self.bound.values().cloned().collect(),
            };
            let json = serde_json::to_string_pretty(&file)?;
            crate::sys::file::write_atomic(path, json.as_bytes())
                .with_context(|| format!("saving leases to {}", path.display()))?;
        }
        self.dirty = false;
        Ok(())
    }

    /// Whether bound leases changed since the last load or save.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The lease file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The bound lease of `mac`.
    pub fn get(&self, mac: &str) -> Option<&Lease> {
        self.bound.get(mac)
    }

    /// All bound leases, by MAC.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.bound.values()
    }

    /// The MAC other than `mac` that holds `ip` now (bound and not ended, or offered).
    fn held_by_other(&self, ip: Ipv4Addr, mac: &str, now: u64) -> bool {
        self.bound
            .values()
            .any(|l| l.ip == ip && l.mac != mac && l.expires > now)
            || self
                .offered
                .iter()
                .any(|(m, (a, until))| *a == ip && m != mac && *until > now)
    }

    fn usable(
        &self,
        cfg: &ResponderConfig,
        pool: &AddressPool,
        mac: &str,
        ip: Ipv4Addr,
        now: u64,
    ) -> bool {
        pool.contains(ip)
            && ip != cfg.server_ip
            && Some(ip) != pool.router
            && self.declined.get(&ip).is_none_or(|until| *until <= now)
            && !self.held_by_other(ip, mac, now)
    }

    /// The address to offer `mac`: its lease (even ended), its pending offer, the address it
    /// asks for if nobody ever had it, the first never-used address, else the address of the
    /// longest-ended lease of another MAC.
    pub(super) fn pick(
        &self,
        cfg: &ResponderConfig,
        pool: &AddressPool,
        mac: &str,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        let usable = |ip| self.usable(cfg, pool, mac, ip, now);
        let ever_bound_to_other = |ip| self.bound.values().any(|l| l.ip == ip && l.mac != mac);
        if let Some(l) = self.bound.get(mac).filter(|l| usable(l.ip)) {
            return Some(l.ip);
        }
        if let Some((ip, _)) = self.offered.get(mac).filter(|(ip, _)| usable(*ip)) {
            return Some(*ip);
        }
        if let Some(ip) = requested.filter(|ip| usable(*ip) && !ever_bound_to_other(*ip)) {
            return Some(ip);
        }
        if let Some(ip) = pool
            .addresses()
            .find(|ip| usable(*ip) && !ever_bound_to_other(*ip))
        {
            return Some(ip);
        }
        self.bound
            .values()
            .filter(|l| l.mac != mac && usable(l.ip))
            .min_by_key(|l| l.expires)
            .map(|l| l.ip)
    }

    pub(super) fn hold_offer(&mut self, mac: &str, ip: Ipv4Addr, now: u64) {
        self.offered
            .insert(mac.to_string(), (ip, now + OFFER_HOLD_SECS));
    }

    pub(super) fn drop_offer(&mut self, mac: &str) {
        self.offered.remove(mac);
    }

    /// Why `mac` may not have `ip` (a REQUEST to NAK), if so. `selecting`: the request
    /// answers our offer (it names our server identifier).
    pub(super) fn can_bind(
        &self,
        cfg: &ResponderConfig,
        pool: &AddressPool,
        mac: &str,
        ip: Ipv4Addr,
        selecting: bool,
        now: u64,
    ) -> Result<(), String> {
        if !self.usable(cfg, pool, mac, ip, now) {
            return Err(format!("{ip} is not available"));
        }
        if selecting {
            return match self.offered.get(mac) {
                Some((offered, _)) if *offered == ip => Ok(()),
                _ if self.bound.get(mac).is_some_and(|l| l.ip == ip) => Ok(()),
                _ => Err(format!("{ip} was not offered to this client")),
            };
        }
        // INIT-REBOOT or renewal: its own lease, or a free address nobody else had (the
        // server is authoritative on its isolated network, so a lost lease file heals).
        match self.bound.get(mac) {
            Some(l) if l.ip == ip => Ok(()),
            Some(l) => Err(format!("{ip} is not this client's lease ({})", l.ip)),
            None if self.bound.values().any(|l| l.ip == ip) => {
                Err(format!("{ip} is leased to another client"))
            }
            None => Ok(()),
        }
    }

    pub(super) fn bind(&mut self, mac: &str, ip: Ipv4Addr, expires: u64) {
        self.offered.remove(mac);
        // An ended lease of another MAC on this address is taken over.
        self.bound.retain(|m, l| m == mac || l.ip != ip);
        self.bound.insert(
            mac.to_string(),
            Lease {
                mac: mac.to_string(),
                ip,
                expires,
            },
        );
        self.dirty = true;
    }

    /// End `mac`'s lease of `ip` now; the binding stays so the MAC gets the address back.
    pub(super) fn release(&mut self, mac: &str, ip: Ipv4Addr, now: u64) -> bool {
        match self.bound.get_mut(mac) {
            Some(l) if l.ip == ip => {
                l.expires = l.expires.min(now);
                self.dirty = true;
                true
            }
            _ => false,
        }
    }

    pub(super) fn decline(&mut self, mac: &str, ip: Ipv4Addr, now: u64) {
        self.offered.remove(mac);
        if self.bound.get(mac).is_some_and(|l| l.ip == ip) {
            self.bound.remove(mac);
            self.dirty = true;
        }
        if !ip.is_unspecified() {
            self.declined.insert(ip, now + DECLINE_HOLD_SECS);
        }
    }
}
