//! The target disk: what the machine has (`lsblk`, `wipefs`), the rule that picks one, and
//! the acts on it (partition table, file systems, wiping).
//!
//! The selection rule, in [`choose`]: with `--device`, that device, if it is a whole disk
//! (`TYPE` `disk`), writable, holds no mounted file system or active swap, and either holds
//! nothing or the kickstart says to wipe it. Without it, the first disk by name that is of
//! type `disk`, not removable, not read-only, holds nothing mounted, and has no partition
//! table, no partitions and no signature (`wipefs -n`); when the kickstart says to wipe
//! (`clearpart --all`, or `zerombr` with `clearpart`), a disk holding data may be chosen too
//! (`clearpart --drives`/`ignoredisk --only-use` narrow the candidates).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::sys::cmd::CommandRunExt;

pub use crate::sysroot::disk::{Partition, Role};

/// lsblk's booleans: `true`/`false` (util-linux 2.37 and later) or `"0"`/`"1"` (older).
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum F {
        B(bool),
        S(String),
        N(u64),
    }
    Ok(match Option::<F>::deserialize(d)? {
        None => false,
        Some(F::B(b)) => b,
        Some(F::S(s)) => s == "1" || s == "true",
        Some(F::N(n)) => n != 0,
    })
}

/// lsblk's `-b` sizes: a number, or a string of digits in older versions.
fn bytes<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        N(u64),
        S(String),
    }
    Ok(match Option::<N>::deserialize(d)? {
        None => 0,
        Some(N::N(n)) => n,
        Some(N::S(s)) => s.trim().parse().unwrap_or(0),
    })
}

/// One device of `lsblk -J -b -o NAME,PATH,SIZE,TYPE,RO,RM,TRAN,MOUNTPOINTS,PARTUUID`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct BlockDevice {
    pub name: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default, deserialize_with = "bytes")]
    pub size: u64,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, deserialize_with = "flag")]
    pub ro: bool,
    #[serde(default, deserialize_with = "flag")]
    pub rm: bool,
    #[serde(default)]
    pub tran: Option<String>,
    /// `MOUNTPOINTS` (2.37+): a list with nulls; `MOUNTPOINT` in older versions.
    #[serde(default)]
    pub mountpoints: Vec<Option<String>>,
    #[serde(default)]
    pub mountpoint: Option<String>,
    #[serde(default)]
    pub partuuid: Option<String>,
    #[serde(default)]
    pub children: Vec<BlockDevice>,
}

impl BlockDevice {
    pub fn path(&self) -> String {
        self.path
            .clone()
            .unwrap_or_else(|| format!("/dev/{}", self.name))
    }

    /// Mount points (and `[SWAP]`) of this device and everything below it.
    pub fn mounts(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .mountpoints
            .iter()
            .flatten()
            .chain(self.mountpoint.iter())
            .filter(|m| !m.is_empty())
            .map(|m| format!("{m} ({})", self.path()))
            .collect();
        for c in &self.children {
            out.extend(c.mounts());
        }
        out
    }
}

#[derive(Debug, Deserialize)]
pub struct Lsblk {
    pub blockdevices: Vec<BlockDevice>,
}

/// `lsblk` output.
pub fn parse_lsblk(json: &str) -> Result<Vec<BlockDevice>> {
    let l: Lsblk = serde_json::from_str(json).context("parsing lsblk's JSON")?;
    Ok(l.blockdevices)
}

/// One signature of `wipefs -n -J` (empty output: none).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Signature {
    #[serde(default)]
    pub device: Option<String>,
    pub offset: String,
    #[serde(rename = "type")]
    pub kind: String,
}

pub fn parse_wipefs(json: &str) -> Result<Vec<Signature>> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    #[derive(Deserialize)]
    struct W {
        #[serde(default)]
        signatures: Vec<Signature>,
    }
    let w: W = serde_json::from_str(json).context("parsing wipefs's JSON")?;
    Ok(w.signatures)
}

/// What is known about one candidate disk.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct DiskFacts {
    pub device: BlockDevice,
    /// Signatures on the whole disk (partition tables, a file system on the bare disk).
    pub signatures: Vec<Signature>,
    /// Why the disk could not be probed (it is then never chosen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_error: Option<String>,
}

impl DiskFacts {
    /// What the disk holds, in words; empty when it is blank.
    pub fn data(&self) -> Vec<String> {
        let mut d: Vec<String> = self
            .signatures
            .iter()
            .map(|s| format!("{} signature at {}", s.kind, s.offset))
            .collect();
        for c in &self.device.children {
            d.push(format!("partition {}", c.path()));
        }
        d
    }
}

/// What the kickstart allows.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WipePolicy {
    /// `clearpart --all`, or `zerombr` with `clearpart`.
    pub wipe: bool,
    /// `clearpart --drives` / `ignoredisk --only-use`: only these (names without /dev/).
    pub only: Vec<String>,
}

impl WipePolicy {
    pub fn from_kickstart(ks: &crate::kickstart::Kickstart) -> Self {
        let wipe = ks
            .clearpart
            .as_ref()
            .is_some_and(|c| c.all || ks.zerombr.is_some());
        let mut only: Vec<String> = Vec::new();
        if let Some(c) = &ks.clearpart {
            only.extend(c.drives.iter().cloned());
        }
        if let Some(i) = &ks.ignoredisk {
            only.extend(i.only_use.iter().cloned());
        }
        let only = only
            .into_iter()
            .map(|d| d.trim_start_matches("/dev/").to_string())
            .collect();
        WipePolicy { wipe, only }
    }
}

/// Why a disk was chosen.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Choice {
    pub facts: DiskFacts,
    pub reason: String,
    /// It holds data that will be wiped first.
    pub wipe: bool,
}

/// The selection rule (module documentation) over facts gathered by [`gather`].
pub fn choose(disks: &[DiskFacts], device: Option<&str>, policy: &WipePolicy) -> Result<Choice> {
    if let Some(dev) = device {
        let name = dev.trim_start_matches("/dev/");
        let find = |d: &BlockDevice| d.path() == dev || d.name == name;
        let Some(f) = disks.iter().find(|f| find(&f.device)) else {
            // A partition of a disk?
            for f in disks {
                if let Some(p) = f.device.children.iter().find(|c| find(c)) {
                    bail!(
                        "--device {dev} is a partition ({}) of {}: give the whole disk",
                        p.kind,
                        f.device.path()
                    );
                }
            }
            bail!("--device {dev}: no such block device (lsblk does not list it)");
        };
        let d = &f.device;
        // A loop device over a disk image is a whole disk too (named explicitly only).
        if d.kind != "disk" && d.kind != "loop" {
            bail!(
                "--device {dev} is a {} device, not a whole disk",
                if d.kind.is_empty() { "?" } else { &d.kind }
            );
        }
        if d.ro {
            bail!("--device {dev} is read-only");
        }
        if let Some(e) = &f.probe_error {
            bail!("--device {dev} cannot be probed for signatures: {e}");
        }
        let mounts = d.mounts();
        if !mounts.is_empty() {
            bail!(
                "--device {dev} is in use: {} mounted; refusing to install over it",
                mounts.join(", ")
            );
        }
        let data = f.data();
        if !data.is_empty() && !policy.wipe {
            bail!(
                "--device {dev} holds data ({}) and the kickstart does not say to wipe it \
                 (add `zerombr` and `clearpart --all`)",
                data.join(", ")
            );
        }
        return Ok(Choice {
            facts: f.clone(),
            reason: "--device".into(),
            wipe: !data.is_empty(),
        });
    }
    let mut sorted: Vec<&DiskFacts> = disks.iter().collect();
    sorted.sort_by(|a, b| a.device.name.cmp(&b.device.name));
    let mut skipped = Vec::new();
    for f in sorted {
        let d = &f.device;
        let why = if d.kind != "disk" {
            Some(format!("type {}", d.kind))
        } else if d.rm {
            Some("removable".to_string())
        } else if d.ro {
            Some("read-only".to_string())
        } else if d.size == 0 {
            Some("no medium".to_string())
        } else if !policy.only.is_empty() && !policy.only.contains(&d.name) {
            Some("not in clearpart --drives / ignoredisk --only-use".to_string())
        } else if !d.mounts().is_empty() {
            Some(format!("in use: {}", d.mounts().join(", ")))
        } else if let Some(e) = &f.probe_error {
            Some(format!("cannot be probed: {e}"))
        } else if !f.data().is_empty() && !policy.wipe {
            Some(format!(
                "holds data ({}) and the kickstart does not say to wipe",
                f.data().join(", ")
            ))
        } else {
            None
        };
        match why {
            Some(w) => skipped.push(format!("{}: {w}", d.path())),
            None => {
                let wipe = !f.data().is_empty();
                return Ok(Choice {
                    facts: f.clone(),
                    reason: if wipe {
                        "the first fixed, writable, unmounted disk by name (the kickstart says to wipe)".into()
                    } else {
                        "the first fixed, writable, unmounted, blank disk by name".into()
                    },
                    wipe,
                });
            }
        }
    }
    bail!(
        "no disk to install on{}; name one with --device",
        if skipped.is_empty() {
            " (lsblk lists no disks)".to_string()
        } else {
            format!(":\n  - {}", skipped.join("\n  - "))
        }
    )
}

/// The block devices and each disk's signatures.
pub fn gather() -> Result<Vec<DiskFacts>> {
    let json = Command::new("lsblk")
        .args([
            "-J",
            "-b",
            "-o",
            "NAME,PATH,SIZE,TYPE,RO,RM,TRAN,MOUNTPOINTS,PARTUUID",
        ])
        .run_get_string()
        .context("listing block devices")?;
    let mut out = Vec::new();
    for d in parse_lsblk(&json)? {
        // Disks in use are never chosen: no need to probe them.
        let (signatures, probe_error) =
            if (d.kind == "disk" || d.kind == "loop") && d.size > 0 && d.mounts().is_empty() {
                match signatures(Path::new(&d.path())) {
                    Ok(s) => (s, None),
                    Err(e) => (Vec::new(), Some(format!("{e:#}"))),
                }
            } else {
                (Vec::new(), None)
            };
        out.push(DiskFacts {
            device: d,
            signatures,
            probe_error,
        });
    }
    Ok(out)
}

/// `wipefs -n -J` of a device or image file.
pub fn signatures(dev: &Path) -> Result<Vec<Signature>> {
    let out = Command::new("wipefs")
        .args(["-n", "-J"])
        .arg(dev)
        .run_get_string()
        .with_context(|| format!("probing {} for signatures", dev.display()))?;
    parse_wipefs(&out)
}

/// The partition nodes of `dev`, found by their GPT partition UUIDs once udev has settled.
pub fn partition_nodes(dev: &Path, parts: &[Partition]) -> Result<Vec<PathBuf>> {
    let mut last = String::new();
    for _ in 0..20 {
        let _ = Command::new("udevadm")
            .args(["settle", "--timeout=10"])
            .run();
        let json = Command::new("lsblk")
            .args(["-J", "-b", "-o", "NAME,PATH,TYPE,PARTUUID"])
            .arg(dev)
            .run_get_string()
            .with_context(|| format!("listing the partitions of {}", dev.display()))?;
        let devs = parse_lsblk(&json)?;
        let children: Vec<&BlockDevice> = devs.iter().flat_map(|d| d.children.iter()).collect();
        let found: Vec<Option<PathBuf>> = parts
            .iter()
            .map(|p| {
                children
                    .iter()
                    .find(|c| {
                        c.partuuid.as_deref().is_some_and(|u| {
                            p.partuuid
                                .as_deref()
                                .is_some_and(|want| u.eq_ignore_ascii_case(want))
                        })
                    })
                    .map(|c| PathBuf::from(c.path()))
            })
            .collect();
        if found.iter().all(Option::is_some) {
            return Ok(found.into_iter().flatten().collect());
        }
        last = json;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    bail!(
        "the partitions of {} did not appear (lsblk: {})",
        dev.display(),
        last.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

/// Wipe what slipway wrote: every signature on each partition (file systems), then on the
/// disk (protective MBR, primary and backup GPT headers), GRUB's boot code in the MBR; then
/// check with `wipefs -n` that the disk shows no signature. `partitions` may be empty (a disk
/// image file has no partition nodes).
pub fn wipe(dev: &Path, partitions: &[PathBuf]) -> Result<()> {
    let mut errors = Vec::new();
    for p in partitions {
        if let Err(e) = Command::new("wipefs")
            .args(["--all", "--force", "--quiet"])
            .arg(p)
            .run()
        {
            errors.push(format!("{}: {e:#}", p.display()));
        }
    }
    Command::new("wipefs")
        .args(["--all", "--force", "--quiet"])
        .arg(dev)
        .run()
        .with_context(|| format!("wiping {}", dev.display()))?;
    // The rest of the MBR (GRUB's boot.img and the protective partition entry): without the
    // 0x55AA signature no BIOS runs it, but nothing of slipway's stays behind.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(dev)
            .with_context(|| format!("opening {}", dev.display()))?;
        f.write_all(&[0u8; 512])
            .with_context(|| format!("clearing the boot code of {}", dev.display()))?;
        f.sync_all()?;
    }
    let _ = Command::new("udevadm")
        .args(["settle", "--timeout=10"])
        .run();
    let left = signatures(dev)?;
    if !left.is_empty() {
        bail!(
            "{} still shows signatures after wiping: {}",
            dev.display(),
            left.iter()
                .map(|s| format!("{} at {}", s.kind, s.offset))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !errors.is_empty() {
        bail!("wiping partitions: {}", errors.join("; "));
    }
    Ok(())
}

/// Mounts made by the installer, unmounted in reverse order when dropped (also on error).
#[derive(Debug, Default)]
pub struct Mounts {
    points: Vec<PathBuf>,
}

impl Mounts {
    pub fn mount(&mut self, node: &Path, at: &Path) -> Result<()> {
        std::fs::create_dir_all(at).with_context(|| format!("creating {}", at.display()))?;
        Command::new("mount")
            .arg(node)
            .arg(at)
            .run()
            .with_context(|| format!("mounting {} on {}", node.display(), at.display()))?;
        self.points.push(at.to_path_buf());
        Ok(())
    }

    /// Unmount everything now, reporting the first failure.
    pub fn unmount_all(&mut self) -> Result<()> {
        let mut first = None;
        while let Some(p) = self.points.pop() {
            let r = Command::new("umount").arg(&p).run().or_else(|e| {
                // Something still holds it open: detach it so the disk can be wiped.
                Command::new("umount")
                    .arg("--lazy")
                    .arg(&p)
                    .run()
                    .map_err(|_| e)
            });
            if let Err(e) = r
                && first.is_none()
            {
                first = Some(e.context(format!("unmounting {}", p.display())));
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_all() {
            crate::sys::ui::warn(format!("{e:#}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lsblk -J -b -o NAME,PATH,SIZE,TYPE,RO,RM,TRAN,MOUNTPOINTS,PARTUUID` of a machine with a
    /// system disk (mounted), a disk with an old partition table, a blank disk, a USB stick,
    /// a CD-ROM and a read-only disk.
    const LSBLK: &str = r#"{
   "blockdevices": [
      {"name":"sr0", "path":"/dev/sr0", "size":1073741312, "type":"rom", "ro":false, "rm":true, "tran":"sata", "mountpoints":[null], "partuuid":null},
      {"name":"vda", "path":"/dev/vda", "size":10737418240, "type":"disk", "ro":false, "rm":false, "tran":null, "mountpoints":[null], "partuuid":null,
         "children": [
            {"name":"vda1", "path":"/dev/vda1", "size":1048576, "type":"part", "ro":false, "rm":false, "tran":null, "mountpoints":[null], "partuuid":"a"},
            {"name":"vda3", "path":"/dev/vda3", "size":402653184, "type":"part", "ro":false, "rm":false, "tran":null, "mountpoints":["/boot"], "partuuid":"b"},
            {"name":"vda4", "path":"/dev/vda4", "size":9000000000, "type":"part", "ro":false, "rm":false, "tran":null, "mountpoints":["/sysroot", "/usr"], "partuuid":"c"}
         ]
      },
      {"name":"vdb", "path":"/dev/vdb", "size":8589934592, "type":"disk", "ro":false, "rm":false, "tran":null, "mountpoints":[null], "partuuid":null,
         "children": [
            {"name":"vdb1", "path":"/dev/vdb1", "size":8000000000, "type":"part", "ro":false, "rm":false, "tran":null, "mountpoints":[null], "partuuid":"d"}
         ]
      },
      {"name":"vdc", "path":"/dev/vdc", "size":8589934592, "type":"disk", "ro":false, "rm":false, "tran":null, "mountpoints":[null], "partuuid":null},
      {"name":"sda", "path":"/dev/sda", "size":16000000000, "type":"disk", "ro":false, "rm":true, "tran":"usb", "mountpoints":[null], "partuuid":null},
      {"name":"vde", "path":"/dev/vde", "size":8589934592, "type":"disk", "ro":true, "rm":false, "tran":null, "mountpoints":[null], "partuuid":null}
   ]
}"#;

    const WIPEFS_GPT: &str = r#"{
   "signatures": [
      {"device":"vdb", "offset":"0x200", "type":"gpt", "uuid":"0f5d", "label":null},
      {"device":"vdb", "offset":"0x1fffffe00", "type":"gpt", "uuid":"0f5d", "label":null},
      {"device":"vdb", "offset":"0x1fe", "type":"PMBR", "uuid":null, "label":null}
   ]
}"#;

    fn facts(lsblk: &str) -> Vec<DiskFacts> {
        parse_lsblk(lsblk)
            .unwrap()
            .into_iter()
            .map(|d| DiskFacts {
                signatures: if d.name == "vdb" || d.name == "vda" {
                    parse_wipefs(WIPEFS_GPT).unwrap()
                } else {
                    parse_wipefs("").unwrap()
                },
                device: d,
                probe_error: None,
            })
            .collect()
    }

    fn wipe_all() -> WipePolicy {
        WipePolicy {
            wipe: true,
            only: vec![],
        }
    }

    #[test]
    fn the_first_blank_fixed_disk_is_chosen() {
        let f = facts(LSBLK);
        let c = choose(&f, None, &WipePolicy::default()).unwrap();
        assert_eq!(c.facts.device.path(), "/dev/vdc");
        assert!(!c.wipe);
    }

    #[test]
    fn a_disk_with_data_is_chosen_only_when_the_kickstart_wipes() {
        let f = facts(LSBLK);
        // vda is mounted (never), vdb holds a partition table: chosen only with clearpart.
        let c = choose(&f, None, &wipe_all()).unwrap();
        assert_eq!(c.facts.device.path(), "/dev/vdb");
        assert!(c.wipe);
        // Signatures alone (no partitions listed) count as data too.
        let mut only_sig = f.clone();
        for d in &mut only_sig {
            d.device.children.clear();
        }
        let c = choose(&only_sig, None, &WipePolicy::default()).unwrap();
        assert_eq!(c.facts.device.path(), "/dev/vdc");
        // Nothing blank and no wipe: an error listing why each disk was passed over.
        let no_blank: Vec<DiskFacts> = f
            .iter()
            .filter(|d| d.device.name != "vdc")
            .cloned()
            .collect();
        let err = format!(
            "{:#}",
            choose(&no_blank, None, &WipePolicy::default()).unwrap_err()
        );
        assert!(
            err.contains("/dev/vdb: holds data (gpt signature at 0x200"),
            "{err}"
        );
        assert!(err.contains("/dev/vda: in use: /boot (/dev/vda3)"), "{err}");
        assert!(err.contains("/dev/sda: removable"), "{err}");
        assert!(err.contains("/dev/vde: read-only"), "{err}");
        assert!(err.contains("/dev/sr0: type rom"), "{err}");
        // A disk that cannot be probed is not chosen.
        let mut unprobed = f.clone();
        for d in &mut unprobed {
            if d.device.name == "vdc" {
                d.probe_error = Some("Operation not permitted".into());
            }
        }
        let e = format!(
            "{:#}",
            choose(&unprobed, None, &WipePolicy::default()).unwrap_err()
        );
        assert!(e.contains("/dev/vdc: cannot be probed"), "{e}");
        // clearpart --drives narrows the candidates.
        let c = choose(
            &f,
            None,
            &WipePolicy {
                wipe: true,
                only: vec!["vdc".into()],
            },
        )
        .unwrap();
        assert_eq!(c.facts.device.name, "vdc");
    }

    #[test]
    fn a_mounted_disk_is_never_chosen() {
        let f = facts(LSBLK);
        let only_vda: Vec<DiskFacts> = f
            .iter()
            .filter(|d| d.device.name == "vda")
            .cloned()
            .collect();
        let err = format!("{:#}", choose(&only_vda, None, &wipe_all()).unwrap_err());
        assert!(err.contains("in use"), "{err}");
        let err = format!(
            "{:#}",
            choose(&f, Some("/dev/vda"), &wipe_all()).unwrap_err()
        );
        assert!(
            err.contains("--device /dev/vda is in use: /boot (/dev/vda3), /sysroot (/dev/vda4)"),
            "{err}"
        );
    }

    #[test]
    fn device_must_be_a_whole_writable_disk() {
        let f = facts(LSBLK);
        let err = format!(
            "{:#}",
            choose(&f, Some("/dev/vdb1"), &wipe_all()).unwrap_err()
        );
        assert!(err.contains("is a partition (part) of /dev/vdb"), "{err}");
        let err = format!(
            "{:#}",
            choose(&f, Some("/dev/sr0"), &wipe_all()).unwrap_err()
        );
        assert!(err.contains("not a whole disk"), "{err}");
        let err = format!(
            "{:#}",
            choose(&f, Some("/dev/vde"), &wipe_all()).unwrap_err()
        );
        assert!(err.contains("read-only"), "{err}");
        let err = format!(
            "{:#}",
            choose(&f, Some("/dev/nope"), &wipe_all()).unwrap_err()
        );
        assert!(err.contains("no such block device"), "{err}");
        let err = format!(
            "{:#}",
            choose(&f, Some("/dev/vdb"), &WipePolicy::default()).unwrap_err()
        );
        assert!(
            err.contains("holds data") && err.contains("clearpart --all"),
            "{err}"
        );
        let c = choose(&f, Some("vdb"), &wipe_all()).unwrap();
        assert!(c.wipe);
        let c = choose(&f, Some("/dev/vdc"), &WipePolicy::default()).unwrap();
        assert!(!c.wipe);
        // A removable disk named explicitly is fine.
        choose(&f, Some("/dev/sda"), &WipePolicy::default()).unwrap();
    }

    #[test]
    fn old_lsblk_output_parses() {
        let old = r#"{"blockdevices": [
            {"name":"sda", "size":"8589934592", "type":"disk", "ro":"0", "rm":"1", "mountpoint":null}
        ]}"#;
        let d = parse_lsblk(old).unwrap();
        assert_eq!(d[0].size, 8 << 30);
        assert!(d[0].rm && !d[0].ro);
        assert_eq!(d[0].path(), "/dev/sda");
        assert!(parse_wipefs("\n").unwrap().is_empty());
    }

    /// Loop devices over parts of a file, detached when dropped.
    struct Loops(Vec<PathBuf>);

    impl Drop for Loops {
        fn drop(&mut self) {
            for l in &self.0 {
                let _ = Command::new("losetup").arg("-d").arg(l).run();
            }
        }
    }

    /// A file made into a GPT disk with file systems (sfdisk and mkfs at offsets), then
    /// wiped: nothing is left for `wipefs -n`, `sfdisk -d` finds no table, and no partition
    /// holds a file system signature any more.
    #[test]
    fn wiping_a_file_backed_disk_leaves_no_table_and_no_signatures() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("disk.raw");
        let size = 3u64 << 30;
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        let parts = crate::install::plan::layout(
            size,
            &crate::install::plan::sizes(&crate::kickstart::Kickstart::default()).unwrap(),
        )
        .unwrap();
        use crate::sysroot::disk::{Medium, Place, mkfs_esp, mkfs_ext4, write_table};
        write_table(&img, Medium::ImageFile, &parts).unwrap();
        for p in &parts[1..] {
            let at = Place::InImage {
                image: &img,
                part: p,
            };
            if p.role == Role::Esp {
                mkfs_esp(at, "ESP", None).unwrap();
            } else {
                mkfs_ext4(at, p.name, None, None).unwrap();
            }
        }
        let probe = |p: &Partition| {
            Command::new("blkid")
                .args(["-p", "-O", &p.offset().to_string(), "-o", "export"])
                .arg(&img)
                .run_get_string()
                .unwrap_or_default()
        };
        assert!(
            probe(&parts[2]).contains("TYPE=ext4"),
            "{}",
            probe(&parts[2])
        );
        let before = signatures(&img).unwrap();
        assert!(before.iter().any(|s| s.kind == "gpt"), "{before:?}");
        assert!(before.iter().any(|s| s.kind == "PMBR"), "{before:?}");

        // The partitions as block devices where loop devices can be made (root), so the
        // file systems go too; else the disk-level wipe only.
        let mut loops = Loops(Vec::new());
        for p in &parts {
            match Command::new("losetup")
                .args(["--find", "--show"])
                .arg(format!("--offset={}", p.offset()))
                .arg(format!("--sizelimit={}", p.bytes()))
                .arg(&img)
                .run_get_string()
            {
                Ok(l) => loops.0.push(PathBuf::from(l.trim())),
                Err(e) => {
                    eprintln!("no loop devices ({e:#}): wiping the disk level only");
                    loops.0.clear();
                    break;
                }
            }
        }
        let whole = !loops.0.is_empty();
        wipe(&img, &loops.0).unwrap();
        drop(loops);
        assert_eq!(signatures(&img).unwrap(), vec![]);
        assert!(
            Command::new("sfdisk").arg("-d").arg(&img).run().is_err(),
            "sfdisk still finds a partition table"
        );
        let mbr = std::fs::read(&img).unwrap();
        assert!(mbr[..512].iter().all(|b| *b == 0), "the MBR is not blank");
        if whole {
            for p in &parts[1..] {
                assert_eq!(probe(p), "", "{:?} still holds a file system", p.role);
            }
        }
        assert_eq!(std::fs::metadata(&img).unwrap().len(), size);
    }
}
