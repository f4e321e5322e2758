//! The EFI system partition of the running host: `host upgrade` copies the new deployment's
//! signed chain there (see [`crate::sysroot::esp`] for how an update survives a power cut),
//! and `host status` says which files are there and which deployment they came from.
//!
//! Only a commit that carries Debian's signed chain updates the ESP: a commit without it
//! leaves the ESP as it is (a GRUB built on the host would not boot under Secure Boot, and
//! would replace the firmware's view of a machine that works). `host deploy` (going back to
//! an older commit) and `host rollback` leave the ESP alone: the newer shim and GRUB boot the
//! older deployments (Debian's kernels are all signed), while an older GRUB may be one the
//! firmware has since revoked (SBAT).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::Host;
use crate::sysroot::bootloader;
use crate::sysroot::esp::{self, BootFiles, EspMount, Updated};

/// What an upgrade did to the ESP.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum EspUpdate {
    /// The new deployment's boot files replaced those on `device`.
    Replaced { device: PathBuf },
    /// `device` already held them.
    Unchanged { device: PathBuf },
    /// Left alone, and why.
    Left { why: String },
}

impl std::fmt::Display for EspUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EspUpdate::Replaced { device } => write!(
                f,
                "boot files: the new deployment's signed shim and GRUB written to {}",
                device.display()
            ),
            EspUpdate::Unchanged { device } => write!(
                f,
                "boot files: {} already holds the new deployment's",
                device.display()
            ),
            EspUpdate::Left { why } => write!(f, "boot files: left as they are ({why})"),
        }
    }
}

/// Is `host` the running system (so that its /boot and ESP are this machine's)?
fn is_running_system(host: &Host) -> bool {
    host.path() == Path::new("/")
}

/// The ESP beside /boot, or why there is none to use.
fn esp_device(host: &Host) -> Result<std::result::Result<PathBuf, String>> {
    if !is_running_system(host) {
        return Ok(Err(format!(
            "{} is not the running system's sysroot",
            host.path().display()
        )));
    }
    Ok(esp::find_esp(&host.boot_dir())?.ok_or_else(|| {
        "the disk holding /boot has no EFI system partition (a BIOS machine)".to_string()
    }))
}

/// Copy the signed chain of the deployment rooted at `new_root` to the ESP.
pub fn update(host: &Host, new_root: &Path) -> Result<EspUpdate> {
    let device = match esp_device(host)? {
        Ok(d) => d,
        Err(why) => return Ok(EspUpdate::Left { why }),
    };
    let settings = bootloader::read_settings(&host.boot_dir())?;
    let Some(files) = esp::signed_files(new_root, &settings.boot_search)? else {
        return Ok(EspUpdate::Left {
            why: "the new deployment carries no signed shim and GRUB".into(),
        });
    };
    let mount = EspMount::mount(&device, false)?;
    match esp::update(mount.path(), &files)
        .with_context(|| format!("updating the boot files on {}", device.display()))?
    {
        Updated::Replaced => Ok(EspUpdate::Replaced { device }),
        Updated::Unchanged => Ok(EspUpdate::Unchanged { device }),
    }
}

/// The ESP's boot files, for `host status --json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EspStatus {
    pub device: String,
    /// `EFI/BOOT/BOOTX64.EFI` is a deployment's signed shim.
    pub signed_chain: bool,
    pub files: Vec<EspFile>,
}

/// One file of `EFI/BOOT`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EspFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Where the same bytes are: `/usr/lib/shim/shimx64.efi.signed of deployment 0`.
    pub matches: Option<String>,
}

/// The ESP's files and where they came from; None when the host has no ESP to read, or
/// the caller may not mount it (not root); a warning says why when reading it failed.
pub fn status(host: &Host) -> Option<EspStatus> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    match read_status(host) {
        Ok(s) => s,
        Err(e) => {
            crate::sys::ui::warn(format!("reading the EFI system partition: {e:#}"));
            None
        }
    }
}

fn read_status(host: &Host) -> Result<Option<EspStatus>> {
    let Ok(device) = esp_device(host)? else {
        return Ok(None);
    };
    let mount = EspMount::mount(&device, true)?;
    let found = esp::read_dir(&mount.path().join(esp::BOOT_DIR))?;
    drop(mount);
    let settings = bootloader::read_settings(&host.boot_dir())?;
    // Each deployment's chain, by the hash of its bytes.
    let mut known: Vec<(String, String)> = Vec::new();
    for (i, d) in host.deployments().iter().enumerate() {
        let root = host.deployment_root(d);
        if let Ok(Some(BootFiles { files, .. })) = esp::signed_files(&root, &settings.boot_search) {
            for f in files {
                known.push((f.sha256(), format!("{} of deployment {i}", f.source)));
            }
        }
    }
    let files: Vec<EspFile> = found
        .iter()
        .map(|(name, data)| {
            let sha = crate::sys::file::sha256_hex(data);
            EspFile {
                name: name.clone(),
                size: data.len() as u64,
                matches: known
                    .iter()
                    .find(|(h, _)| *h == sha)
                    .map(|(_, w)| w.clone()),
                sha256: sha,
            }
        })
        .collect();
    let signed_chain = files.iter().any(|f| {
        f.name.eq_ignore_ascii_case("BOOTX64.EFI")
            && f.matches
                .as_deref()
                .is_some_and(|m| m.starts_with("/usr/lib/shim/"))
    });
    Ok(Some(EspStatus {
        device: device.display().to_string(),
        signed_chain,
        files,
    }))
}

impl EspStatus {
    /// Lines for `host status`.
    pub fn lines(&self) -> String {
        let mut s = format!(
            "boot files on {} (EFI/BOOT): {}\n",
            self.device,
            if self.signed_chain {
                "Debian's signed shim and GRUB (Secure Boot)"
            } else {
                "no signed chain (boots with Secure Boot off only)"
            }
        );
        for f in &self.files {
            s.push_str(&format!(
                "  {} {} {}\n",
                f.name,
                &f.sha256[..12],
                f.matches.as_deref().unwrap_or("(from no deployment)")
            ));
        }
        s
    }
}
