//! Profiles of `slipway pxe serve --profiles FILE`: which ref, kernel arguments and kickstart
//! a machine gets.
//!
//! ```json
//! {
//!   "default": {"ref": "debian/x86_64/host", "kickstart": "ks/default.ks"},
//!   "profiles": [
//!     {"name": "workers", "match": {"labels": {"role": "worker"}}, "kernel-args": ["quiet"]},
//!     {"name": "db1", "match": {"mac": "52:54:00:12:34:56"}, "ref": "debian/x86_64/db",
//!      "kickstart": "ks/db.ks", "reinstall": true}
//!   ],
//!   "machines": [
//!     {"mac": "52:54:00:12:34:57", "hostname": "node1", "labels": {"role": "worker"}}
//!   ]
//! }
//! ```
//!
//! - `machines` give host names and labels to MACs or UUIDs (each entry needs one of them).
//! - A profile's `match` has any of `mac`, `uuid`, `hostname` (the machine's entry, else what
//!   iPXE sent) and `labels` (all of them present on the machine's entry); every key given must
//!   hold. The most specific match wins: `mac`/`uuid` over `hostname` over `labels`, and
//!   `default` when nothing matches. Two profiles matching one machine equally are an error
//!   at load (checked for every `machines` entry and every profile's own `match`), and a 409
//!   answer for a machine nobody listed.
//! - `ref` must have been built into DIR (`pxe build`); `bootloader` is `ipxe` (the default),
//!   `pxelinux` or `grub`; `kernel-args` are added to the installer's; `kickstart` is a
//!   template (`kickstart::template`) that wins over the default kickstart `pxe build
//!   --kickstart` put into DIR; `reinstall: true` installs again at every network boot
//!   instead of booting an installed machine from its disk. `secure-boot: true`: UEFI
//!   machines get the ref's own signed shim (DHCP answers them with `refs/<ref>/shimx64.efi`,
//!   which loads the signed network GRUB beside it), never iPXE, and the GRUB menus; the
//!   ref must have been built from a commit with `shim-signed` and `grub-efi-amd64-signed`,
//!   and the machine must be known by its MAC (DHCP sees nothing else). A profile leaves
//!   out what the default gives.
//! - Paths are relative to the profiles file. Unknown keys are errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::build::Manifest;
use super::http::{normalize_mac, normalize_uuid};

/// Which boot loader a profile's machines use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bootloader {
    #[default]
    Ipxe,
    Pxelinux,
    Grub,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    default: Option<ProfileSpec>,
    #[serde(default)]
    profiles: Vec<ProfileSpec>,
    #[serde(default)]
    machines: Vec<MachineSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ProfileSpec {
    name: Option<String>,
    #[serde(rename = "match")]
    matcher: Option<MatchSpec>,
    #[serde(rename = "ref")]
    ostree_ref: Option<String>,
    bootloader: Option<Bootloader>,
    kernel_args: Option<Vec<String>>,
    kickstart: Option<PathBuf>,
    reinstall: Option<bool>,
    secure_boot: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    mac: Option<String>,
    uuid: Option<String>,
    hostname: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineSpec {
    mac: Option<String>,
    uuid: Option<String>,
    hostname: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// What a profile matches on (normalized).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Match {
    pub mac: Option<String>,
    pub uuid: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A kickstart template, read at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub path: PathBuf,
    pub text: String,
}

/// A profile, with the default's values filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub matcher: Match,
    pub ostree_ref: String,
    pub bootloader: Bootloader,
    pub kernel_args: Vec<String>,
    pub kickstart: Option<Template>,
    pub reinstall: bool,
    /// UEFI machines boot the ref's signed shim and GRUB (Secure Boot), never iPXE.
    pub secure_boot: bool,
}

/// A `machines` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    pub mac: Option<String>,
    pub uuid: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// What a request tells about a machine, completed from its `machines` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub mac: Option<String>,
    pub uuid: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// The loaded profiles.
#[derive(Debug, Clone)]
pub struct Profiles {
    /// The file they came from (`None`: no `--profiles`, the built-in default).
    pub source: Option<PathBuf>,
    pub default: Option<Profile>,
    pub profiles: Vec<Profile>,
    pub machines: Vec<Machine>,
}

/// How specifically a profile matched: the strongest key of its `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Labels = 1,
    Hostname = 2,
    Id = 3,
}

impl Match {
    /// `None`: it does not match; else how specifically.
    pub fn level(&self, id: &Identity) -> Option<Level> {
        let mut level = None;
        if let Some(m) = &self.mac {
            if id.mac.as_ref() != Some(m) {
                return None;
            }
            level = Some(Level::Id);
        }
        if let Some(u) = &self.uuid {
            if id.uuid.as_ref() != Some(u) {
                return None;
            }
            level = Some(Level::Id);
        }
        if let Some(h) = &self.hostname {
            if id.hostname.as_ref() != Some(h) {
                return None;
            }
            level = level.max(Some(Level::Hostname));
        }
        if !self.labels.is_empty() {
            if !self.labels.iter().all(|(k, v)| id.labels.get(k) == Some(v)) {
                return None;
            }
            level = level.max(Some(Level::Labels));
        }
        level
    }
}

/// The only ref of `manifest`, for a default without one.
fn only_ref(manifest: &Manifest, what: &str) -> Result<String> {
    let refs: Vec<&String> = manifest.refs.keys().collect();
    match refs.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("the boot directory has no ref (run `slipway pxe build` first)"),
        many => bail!(
            "{what}: the boot directory has several refs ({}); name one with \"ref\"",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn norm_mac(v: &str, what: &str) -> Result<String> {
    normalize_mac(v).with_context(|| format!("{what}: {v:?} is not a hardware address"))
}

fn norm_uuid(v: &str, what: &str) -> Result<String> {
    normalize_uuid(v)
        .with_context(|| what.to_string())?
        .with_context(|| format!("{what}: {v:?} is an unset UUID (all zeros or ones)"))
}

impl Profiles {
    /// Without a profiles file: every machine gets DIR's only ref and its default kickstart.
    pub fn builtin(manifest: &Manifest) -> Result<Self> {
        if manifest.refs.len() > 1 {
            bail!(
                "the boot directory has several refs ({}): without --profiles a machine would not know which one to install; give a profiles file whose \"default\" names one",
                manifest
                    .refs
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let ostree_ref = only_ref(manifest, "without --profiles")?;
        Ok(Self {
            source: None,
            default: Some(Profile {
                name: "default".into(),
                matcher: Match::default(),
                ostree_ref,
                bootloader: Bootloader::Ipxe,
                kernel_args: Vec::new(),
                kickstart: None,
                reinstall: false,
                secure_boot: false,
            }),
            profiles: Vec::new(),
            machines: Vec::new(),
        })
    }

    /// Load and check `path` against the refs built into DIR (`manifest`). Errors name the
    /// file and the key.
    pub fn load(path: &Path, manifest: &Manifest) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let spec: FileSpec = serde_path_to_error::deserialize(de)
            .map_err(|e| anyhow::anyhow!("{}: {}: {}", path.display(), e.path(), e.inner()))?;
        Self::from_spec(spec, path, manifest).with_context(|| format!("{}", path.display()))
    }

    fn from_spec(spec: FileSpec, path: &Path, manifest: &Manifest) -> Result<Self> {
        let base = path.parent().unwrap_or(Path::new("."));
        let default = spec
            .default
            .map(|d| default_profile(d, base, manifest))
            .transpose()?;
        let mut profiles = Vec::new();
        for (i, p) in spec.profiles.into_iter().enumerate() {
            let profile = named_profile(i, p, &profiles, default.as_ref(), base, manifest)?;
            profiles.push(profile);
        }
        let mut machines: Vec<Machine> = Vec::new();
        for (i, m) in spec.machines.into_iter().enumerate() {
            let machine = machine(i, m, &machines)?;
            machines.push(machine);
        }
        let me = Self {
            source: Some(path.to_path_buf()),
            default,
            profiles,
            machines,
        };
        me.check_ambiguity()?;
        Ok(me)
    }

    /// Two profiles equally specific for one machine: every `machines` entry, and every
    /// profile's own `match` taken as a machine.
    fn check_ambiguity(&self) -> Result<()> {
        let mut ids: Vec<(String, Identity)> = self
            .machines
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("machines[{i}]"), self.identity_of(m)))
            .collect();
        for p in &self.profiles {
            ids.push((
                format!("a machine matching profile {:?}", p.name),
                Identity {
                    mac: p.matcher.mac.clone(),
                    uuid: p.matcher.uuid.clone(),
                    hostname: p.matcher.hostname.clone(),
                    labels: p.matcher.labels.clone(),
                },
            ));
        }
        for (what, id) in ids {
            if let Err(e) = self.choose(&id) {
                bail!("{what}: {e}");
            }
        }
        Ok(())
    }

    fn identity_of(&self, m: &Machine) -> Identity {
        Identity {
            mac: m.mac.clone(),
            uuid: m.uuid.clone(),
            hostname: m.hostname.clone(),
            labels: m.labels.clone(),
        }
    }

    /// The `machines` entry of a machine: by MAC, else by UUID.
    pub fn machine(&self, mac: Option<&str>, uuid: Option<&str>) -> Option<&Machine> {
        self.machines
            .iter()
            .find(|m| mac.is_some() && m.mac.as_deref() == mac)
            .or_else(|| {
                self.machines
                    .iter()
                    .find(|m| uuid.is_some() && m.uuid.as_deref() == uuid)
            })
    }

    /// The identity of a machine that sent `mac`, `uuid` and `hostname`: its `machines`
    /// entry's host name and labels win over what it sent.
    pub fn identify(
        &self,
        mac: Option<&str>,
        uuid: Option<&str>,
        hostname: Option<&str>,
    ) -> Identity {
        let entry = self.machine(mac, uuid);
        Identity {
            mac: mac.map(str::to_string),
            uuid: uuid
                .map(str::to_string)
                .or_else(|| entry.and_then(|e| e.uuid.clone())),
            hostname: entry
                .and_then(|e| e.hostname.clone())
                .or_else(|| hostname.map(str::to_string)),
            labels: entry.map(|e| e.labels.clone()).unwrap_or_default(),
        }
    }

    /// The profile for `id`: the most specific match, else the default; `Ok(None)`: none.
    /// An error when two profiles match equally.
    pub fn choose(&self, id: &Identity) -> Result<Option<&Profile>> {
        let mut best: Vec<(Level, &Profile)> = Vec::new();
        for p in &self.profiles {
            if let Some(l) = p.matcher.level(id) {
                match best.first() {
                    Some((b, _)) if *b > l => {}
                    Some((b, _)) if *b == l => best.push((l, p)),
                    _ => best = vec![(l, p)],
                }
            }
        }
        match best.as_slice() {
            [] => Ok(self.default.as_ref()),
            [(_, p)] => Ok(Some(p)),
            [(l, a), (_, b), ..] => bail!(
                "profiles {:?} and {:?} match equally ({l:?}); make one more specific",
                a.name,
                b.name
            ),
        }
    }
}

/// The file's `default`: no name and no match; its ref, or the manifest's only one.
fn default_profile(d: ProfileSpec, base: &Path, manifest: &Manifest) -> Result<Profile> {
    if d.name.is_some() || d.matcher.is_some() {
        bail!("default: has no \"name\" or \"match\"");
    }
    let ostree_ref = match d.ostree_ref.clone() {
        Some(r) => r,
        None => only_ref(manifest, "default")?,
    };
    resolve(
        "default".into(),
        Match::default(),
        d,
        None,
        ostree_ref,
        base,
        manifest,
        "default",
    )
}

/// `profiles[i]`: a name not taken by `earlier` (nor `default`), a match of at least one
/// key, its ref (else the default's, else the manifest's only one).
fn named_profile(
    i: usize,
    p: ProfileSpec,
    earlier: &[Profile],
    default: Option<&Profile>,
    base: &Path,
    manifest: &Manifest,
) -> Result<Profile> {
    let at = format!("profiles[{i}]");
    let name = p
        .name
        .clone()
        .with_context(|| format!("{at}: \"name\" is missing"))?;
    let at = format!("{at} ({name})");
    if name == "default" || earlier.iter().any(|q| q.name == name) {
        bail!("{at}: the name {name:?} is taken");
    }
    let m = p
        .matcher
        .as_ref()
        .with_context(|| format!("{at}: \"match\" is missing"))?;
    let matcher = Match {
        mac: m
            .mac
            .as_deref()
            .map(|v| norm_mac(v, &format!("{at}: match.mac")))
            .transpose()?,
        uuid: m
            .uuid
            .as_deref()
            .map(|v| norm_uuid(v, &format!("{at}: match.uuid")))
            .transpose()?,
        hostname: m.hostname.clone(),
        labels: m.labels.clone(),
    };
    if matcher == Match::default() {
        bail!("{at}: match: give at least one of mac, uuid, hostname, labels");
    }
    let ostree_ref = match (&p.ostree_ref, default) {
        (Some(r), _) => r.clone(),
        (None, Some(d)) => d.ostree_ref.clone(),
        (None, None) => only_ref(manifest, &at)?,
    };
    resolve(name, matcher, p, default, ostree_ref, base, manifest, &at)
}

/// `machines[i]`: a MAC or a UUID, not the same machine as one of `earlier`.
fn machine(i: usize, m: MachineSpec, earlier: &[Machine]) -> Result<Machine> {
    let at = format!("machines[{i}]");
    let machine = Machine {
        mac: m
            .mac
            .as_deref()
            .map(|v| norm_mac(v, &format!("{at}: mac")))
            .transpose()?,
        uuid: m
            .uuid
            .as_deref()
            .map(|v| norm_uuid(v, &format!("{at}: uuid")))
            .transpose()?,
        hostname: m.hostname,
        labels: m.labels,
    };
    if machine.mac.is_none() && machine.uuid.is_none() {
        bail!("{at}: give \"mac\" or \"uuid\"");
    }
    if let Some(j) = earlier.iter().position(|o| {
        (o.mac.is_some() && o.mac == machine.mac) || (o.uuid.is_some() && o.uuid == machine.uuid)
    }) {
        bail!("{at}: the same machine as machines[{j}]");
    }
    Ok(machine)
}

#[allow(clippy::too_many_arguments)]
fn resolve(
    name: String,
    matcher: Match,
    p: ProfileSpec,
    default: Option<&Profile>,
    ostree_ref: String,
    base: &Path,
    manifest: &Manifest,
    at: &str,
) -> Result<Profile> {
    if !manifest.refs.contains_key(&ostree_ref) {
        bail!(
            "{at}: ref {ostree_ref:?} was not built into the boot directory (built: {}); run `slipway pxe build --ref {ostree_ref}`",
            manifest
                .refs
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let kickstart = match &p.kickstart {
        Some(rel) => {
            let path = base.join(rel);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("{at}: kickstart: reading {}", path.display()))?;
            let has_key = manifest.refs[&ostree_ref].gpg_key_sha256.is_some();
            crate::kickstart::template::check(
                &text,
                &path.display().to_string(),
                &ostree_ref,
                has_key,
            )
            .with_context(|| format!("{at}: kickstart {}", path.display()))?;
            Some(Template { path, text })
        }
        None => default.and_then(|d| d.kickstart.clone()),
    };
    let secure_boot = p
        .secure_boot
        .or(default.map(|d| d.secure_boot))
        .unwrap_or(false);
    let bootloader = if secure_boot {
        // Only the signed GRUB runs under Secure Boot.
        if let Some(b) = p.bootloader.filter(|b| *b != Bootloader::Grub) {
            bail!(
                "{at}: bootloader: {} does not run under Secure Boot; a \"secure-boot\" profile boots the ref's signed shim and GRUB (leave \"bootloader\" out, or say \"grub\")",
                format!("{b:?}").to_lowercase()
            );
        }
        if !manifest.refs[&ostree_ref]
            .files
            .contains_key(super::build::SB_SHIM)
        {
            bail!(
                "{at}: secure-boot: ref {ostree_ref:?} was built without Debian's signed shim and GRUB (its commit has no shim-signed and grub-efi-amd64-signed)"
            );
        }
        Bootloader::Grub
    } else {
        p.bootloader
            .or(default.map(|d| d.bootloader))
            .unwrap_or_default()
    };
    Ok(Profile {
        name,
        matcher,
        ostree_ref,
        bootloader,
        kernel_args: p
            .kernel_args
            .or(default.map(|d| d.kernel_args.clone()))
            .unwrap_or_default(),
        kickstart,
        reinstall: p
            .reinstall
            .or(default.map(|d| d.reinstall))
            .unwrap_or(false),
        secure_boot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(refs: &[&str]) -> Manifest {
        let refs = refs
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    serde_json::from_value(serde_json::json!({
                        "dir": format!("refs/{}", r.replace('/', "+")), "commit": "c",
                        "version": null, "kernel_version": "k", "slipway_version": "v",
                        "slipway_source": "s", "options": "o", "kickstart": null,
                        "gpg_key_sha256": null, "kernel_args": [], "files": {}
                    }))
                    .unwrap(),
                )
            })
            .collect();
        Manifest {
            schema: 1,
            slipway_version: "v".into(),
            slipway_source: "s".into(),
            boot_programs: BTreeMap::new(),
            refs,
        }
    }

    fn load(json: serde_json::Value, refs: &[&str]) -> Result<Profiles> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("profiles.json");
        std::fs::write(&p, json.to_string()).unwrap();
        Profiles::load(&p, &manifest(refs))
    }

    #[test]
    fn most_specific_wins() {
        let p = load(
            serde_json::json!({
                "default": {"ref": "a"},
                "profiles": [
                    {"name": "rack", "match": {"labels": {"rack": "r1"}}},
                    {"name": "host", "match": {"hostname": "node1"}, "ref": "b"},
                    {"name": "mac", "match": {"mac": "52-54-00-00-00-01"}, "reinstall": true},
                ],
                "machines": [
                    {"mac": "52:54:00:00:00:01", "hostname": "node1", "labels": {"rack": "r1"}},
                    {"mac": "52:54:00:00:00:02", "hostname": "node1"},
                    {"mac": "52:54:00:00:00:03", "labels": {"rack": "r1", "x": "y"}},
                ]
            }),
            &["a", "b"],
        )
        .unwrap();
        let name = |mac: &str| {
            let id = p.identify(Some(mac), None, None);
            p.choose(&id).unwrap().unwrap().name.clone()
        };
        assert_eq!(name("52:54:00:00:00:01"), "mac");
        assert_eq!(name("52:54:00:00:00:02"), "host");
        assert_eq!(name("52:54:00:00:00:03"), "rack");
        assert_eq!(name("52:54:00:00:00:09"), "default");
        let id = p.identify(Some("52:54:00:00:00:01"), None, None);
        let prof = p.choose(&id).unwrap().unwrap();
        assert!(prof.reinstall);
        assert_eq!(prof.ostree_ref, "a");
    }

    #[test]
    fn secure_boot_needs_a_ref_built_with_the_signed_chain_and_grub() {
        let mut m = manifest(&["signed", "plain"]);
        m.refs.get_mut("signed").unwrap().files.insert(
            crate::pxe::build::SB_SHIM.into(),
            crate::pxe::build::Artifact {
                sha256: "x".into(),
                size: 1,
            },
        );
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("profiles.json");
        let load = |json: serde_json::Value| {
            std::fs::write(&path, json.to_string()).unwrap();
            Profiles::load(&path, &m)
        };
        let p = load(serde_json::json!({
            "default": {"ref": "plain"},
            "profiles": [{"name": "sb", "match": {"mac": "52:54:00:00:00:01"},
                          "ref": "signed", "secure-boot": true}],
        }))
        .unwrap();
        let prof = &p.profiles[0];
        assert!(prof.secure_boot);
        assert_eq!(prof.bootloader, Bootloader::Grub);
        assert!(!p.default.as_ref().unwrap().secure_boot);
        let e = load(serde_json::json!({
            "default": {"ref": "plain", "secure-boot": true},
        }))
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("profiles.json: default: secure-boot: ref \"plain\" was built without Debian's signed shim and GRUB"),
            "{e}"
        );
        let e = load(serde_json::json!({
            "default": {"ref": "signed", "secure-boot": true, "bootloader": "ipxe"},
        }))
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("bootloader: ipxe does not run under Secure Boot"),
            "{e}"
        );
    }

    #[test]
    fn without_a_file_the_only_ref() {
        let p = Profiles::builtin(&manifest(&["a"])).unwrap();
        let id = p.identify(Some("52:54:00:00:00:01"), None, None);
        assert_eq!(p.choose(&id).unwrap().unwrap().ostree_ref, "a");
        let e = Profiles::builtin(&manifest(&["a", "b"])).unwrap_err();
        assert!(e.to_string().contains("several refs (a, b)"), "{e}");
    }

    #[test]
    fn mistakes_name_the_key() {
        let e = |j: serde_json::Value| format!("{:#}", load(j, &["a", "b"]).unwrap_err());
        let s =
            e(serde_json::json!({"profiles": [{"name": "x", "match": {"mac": "zz"}, "ref": "a"}]}));
        assert!(s.contains("profiles[0] (x): match.mac"), "{s}");
        let s = e(
            serde_json::json!({"profiles": [{"name": "x", "match": {"hostname": "h"}, "ref": "c"}]}),
        );
        assert!(s.contains("ref \"c\" was not built"), "{s}");
        let s = e(serde_json::json!({"default": {"ref": "a", "kernel_args": []}}));
        assert!(s.contains("default.kernel_args"), "{s}");
        let s = e(serde_json::json!({"profiles": [
            {"name": "x", "match": {"labels": {"r": "1"}}, "ref": "a"},
            {"name": "y", "match": {"labels": {"s": "2"}}, "ref": "a"}],
            "machines": [{"mac": "52:54:00:00:00:01", "labels": {"r": "1", "s": "2"}}]}));
        assert!(
            s.contains("machines[0]") && s.contains("match equally"),
            "{s}"
        );
        let s = e(serde_json::json!({"default": {}}));
        assert!(s.contains("several refs"), "{s}");
    }
}
