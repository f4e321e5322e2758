//! The one GPT layout of a slipway disk, used by `slipway image` (written into an image file)
//! and by the installer (written onto a block device): BIOS boot partition, EFI system
//! partition, the boot partition (XBOOTLDR type) and the root, 1 MiB aligned, with their
//! type GUIDs, names (the file system labels) and sizes, and the `sfdisk` script for them.
//! Each back-end runs `sfdisk` and `mkfs` its own way (at offsets in a file; on partition
//! nodes found by their UUIDs).

use anyhow::{Result, bail};

use super::bootloader::{BOOT_LABEL, ESP_LABEL, ROOT_LABEL};

pub const MIB: u64 = 1024 * 1024;
pub const SECTOR: u64 = 512;

pub const BIOS_BOOT_TYPE: &str = "21686148-6449-6E6F-744E-656564454649";
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
pub const LINUX_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
/// The boot partition: "Linux extended boot" (XBOOTLDR), as systemd's partition spec says.
pub const XBOOTLDR_TYPE: &str = "BC13C2FF-59E6-4262-A352-B275FD6F7172";

/// Sizes chosen for the fixed partitions.
pub const BIOS_BOOT_MIB: u64 = 1;
pub const ESP_MIB: u64 = 127;
pub const BOOT_MIB: u64 = 384;
/// Room GPT needs at the end of the disk (backup header and table).
pub const GPT_TAIL_MIB: u64 = 1;

/// What a partition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    BiosBoot,
    Esp,
    Boot,
    Root,
}

/// One partition, in sectors, with its GPT partition UUID when one is chosen (the
/// installer's; an image lets sfdisk pick).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Partition {
    pub role: Role,
    pub name: &'static str,
    pub type_guid: &'static str,
    pub start: u64,
    pub sectors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partuuid: Option<String>,
}

impl Partition {
    pub fn offset(&self) -> u64 {
        self.start * SECTOR
    }
    pub fn bytes(&self) -> u64 {
        self.sectors * SECTOR
    }
}

/// The sizes to lay out, in MiB; a fixed partition of 0 MiB is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub bios_boot_mib: u64,
    pub esp_mib: u64,
    pub boot_mib: u64,
    /// `Some`: exactly this; `None`: the rest of the disk, at most `root_max_mib`.
    pub root_mib: Option<u64>,
    pub root_max_mib: Option<u64>,
    /// Refuse a disk that leaves the root less than this.
    pub root_min_mib: u64,
}

/// The partitions of a disk of `disk_bytes`, in order, 1 MiB aligned; `uuid` gives each its
/// partition UUID (or none). The error says how much the root needs and how much is left.
pub fn layout(
    disk_bytes: u64,
    s: &Sizes,
    mut uuid: impl FnMut() -> Result<Option<String>>,
) -> Result<Vec<Partition>> {
    const ALIGN: u64 = MIB / SECTOR;
    let mut next = ALIGN;
    let mut parts = Vec::new();
    for (role, name, type_guid, mib) in [
        (Role::BiosBoot, "BIOS-BOOT", BIOS_BOOT_TYPE, s.bios_boot_mib),
        (Role::Esp, ESP_LABEL, ESP_TYPE, s.esp_mib),
        (Role::Boot, BOOT_LABEL, XBOOTLDR_TYPE, s.boot_mib),
    ] {
        if mib == 0 {
            continue;
        }
        let p = Partition {
            role,
            name,
            type_guid,
            start: next,
            sectors: mib * MIB / SECTOR,
            partuuid: uuid()?,
        };
        next += p.sectors;
        parts.push(p);
    }
    let end = (disk_bytes / SECTOR).saturating_sub(GPT_TAIL_MIB * ALIGN);
    let room = end.saturating_sub(next) / ALIGN * ALIGN;
    let want = match (s.root_mib, s.root_max_mib) {
        (Some(m), _) => m * ALIGN,
        (None, Some(max)) => room.min(max * ALIGN),
        (None, None) => room,
    };
    let min = s.root_min_mib.max(1) * ALIGN;
    if want > room || room < min {
        bail!(
            "the disk ({} MiB) is too small: the root partition needs {} MiB and {} MiB are left",
            disk_bytes / MIB,
            want.max(min) / ALIGN,
            room / ALIGN
        );
    }
    parts.push(Partition {
        role: Role::Root,
        name: ROOT_LABEL,
        type_guid: LINUX_TYPE,
        start: next,
        sectors: want,
        partuuid: uuid()?,
    });
    Ok(parts)
}

/// The `sfdisk` script for `parts`.
pub fn sfdisk_script(parts: &[Partition]) -> String {
    let mut s = String::from("label: gpt\n");
    for p in parts {
        s.push_str(&format!(
            "start={}, size={}, type={}, ",
            p.start, p.sectors, p.type_guid
        ));
        if let Some(u) = &p.partuuid {
            s.push_str(&format!("uuid={u}, "));
        }
        s.push_str(&format!("name=\"{}\"\n", p.name));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(bios: u64, esp: u64) -> Sizes {
        Sizes {
            bios_boot_mib: bios,
            esp_mib: esp,
            boot_mib: BOOT_MIB,
            root_mib: None,
            root_max_mib: None,
            root_min_mib: 1,
        }
    }

    #[test]
    fn the_root_takes_the_rest_one_mib_aligned() {
        let parts = layout(4 << 30, &sizes(BIOS_BOOT_MIB, ESP_MIB), || Ok(None)).unwrap();
        let roles: Vec<Role> = parts.iter().map(|p| p.role).collect();
        assert_eq!(roles, [Role::BiosBoot, Role::Esp, Role::Boot, Role::Root]);
        assert_eq!(parts[0].start, 2048);
        for w in parts.windows(2) {
            assert_eq!(w[0].start + w[0].sectors, w[1].start);
        }
        let root = &parts[3];
        assert_eq!(root.start * SECTOR, (1 + 1 + 127 + 384) * MIB);
        assert_eq!(root.bytes(), (4096 - 1 - 1 - 127 - 384 - 1) * MIB);
        // A UEFI-only disk has no BIOS boot partition.
        let parts = layout(4 << 30, &sizes(0, ESP_MIB), || Ok(None)).unwrap();
        assert_eq!(parts[0].role, Role::Esp);
        let script = sfdisk_script(&parts);
        assert!(script.starts_with("label: gpt\nstart=2048, size=260096, type=C12A7328"));
        assert!(!script.contains("uuid="), "{script}");
    }

    #[test]
    fn a_disk_without_room_for_the_root_is_refused() {
        let e = layout(500 * MIB, &sizes(1, 127), || Ok(None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the disk (500 MiB) is too small: the root partition needs 1 MiB and 0 MiB are left"
        );
        let mut s = sizes(1, 127);
        s.root_min_mib = 2048;
        let e = layout(2 << 30, &s, || Ok(None)).unwrap_err();
        assert!(
            e.to_string()
                .contains("needs 2048 MiB and 1534 MiB are left"),
            "{e}"
        );
    }
}
