//! The image's disk: which partitions the firmware choice asks for (the layout itself, and
//! the writing of it into the image file, are `sysroot::disk`'s), the size a tree needs and
//! the parsing of `--size`.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::sysroot::disk::{self as layout, BIOS_BOOT_MIB, ESP_MIB, GPT_TAIL_MIB, Role};
pub use crate::sysroot::disk::{BOOT_MIB, MIB, Partition, SECTOR};

/// Which firmware the disk must boot under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Bios,
    Uefi,
    Hybrid,
}

impl Firmware {
    pub fn bios(self) -> bool {
        matches!(self, Firmware::Bios | Firmware::Hybrid)
    }
    pub fn uefi(self) -> bool {
        matches!(self, Firmware::Uefi | Firmware::Hybrid)
    }
}

/// The partitions of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub disk_bytes: u64,
    pub bios_boot: Option<Partition>,
    pub esp: Option<Partition>,
    pub boot: Partition,
    pub root: Partition,
}

impl Layout {
    /// Lay out `disk_bytes` for `firmware`; the root partition takes the rest. `boot_mib`
    /// grows the boot partition beyond its default when needed.
    pub fn new(disk_bytes: u64, firmware: Firmware, boot_mib: u64) -> Result<Self> {
        let sizes = layout::Sizes {
            bios_boot_mib: if firmware.bios() { BIOS_BOOT_MIB } else { 0 },
            esp_mib: if firmware.uefi() { ESP_MIB } else { 0 },
            boot_mib: boot_mib.max(BOOT_MIB),
            root_mib: None,
            root_max_mib: None,
            root_min_mib: 1,
        };
        let mut parts = layout::layout(disk_bytes, &sizes, || Ok(None))?;
        let mut take = |role| {
            parts
                .iter()
                .position(|p: &Partition| p.role == role)
                .map(|i| parts.remove(i))
        };
        let (bios_boot, esp) = (take(Role::BiosBoot), take(Role::Esp));
        let (Some(boot), Some(root)) = (take(Role::Boot), take(Role::Root)) else {
            bail!("the layout has no boot or root partition");
        };
        Ok(Self {
            disk_bytes,
            bios_boot,
            esp,
            boot,
            root,
        })
    }

    /// Bytes used before the root partition.
    pub fn overhead(firmware: Firmware, boot_mib: u64) -> u64 {
        let mut m = 1 + boot_mib.max(BOOT_MIB) + GPT_TAIL_MIB;
        if firmware.bios() {
            m += BIOS_BOOT_MIB;
        }
        if firmware.uefi() {
            m += ESP_MIB;
        }
        m * MIB
    }

    pub fn partitions(&self) -> Vec<&Partition> {
        self.bios_boot
            .iter()
            .chain(self.esp.iter())
            .chain([&self.boot, &self.root])
            .collect()
    }
}

/// Bytes a directory tree occupies (allocated blocks, each inode counted once).
pub fn tree_usage(dir: &Path) -> Result<u64> {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let m = e.metadata()?;
            if seen.insert((m.dev(), m.ino())) {
                total += m.blocks() * 512 + 256; // + an inode's worth
            }
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(total)
}

/// Parse `8G`, `8GiB`, `512M`, `1T`, or bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| t.split_at(i))
        .unwrap_or((t, ""));
    let n: f64 = num
        .parse()
        .with_context(|| format!("`{s}` is not a size (e.g. 8G, 512M)"))?;
    let mult = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1u64,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        u => bail!("`{s}`: unknown size unit `{u}` (use K, M, G or T)"),
    };
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_layout_has_all_partitions_aligned() {
        let l = Layout::new(8 << 30, Firmware::Hybrid, 0).unwrap();
        let parts = l.partitions();
        assert_eq!(parts.len(), 4);
        for p in &parts {
            assert_eq!(p.start % 2048, 0, "{p:?}");
        }
        assert_eq!(l.bios_boot.as_ref().unwrap().bytes(), MIB);
        assert_eq!(l.boot.bytes(), BOOT_MIB * MIB);
        assert!(l.root.offset() + l.root.bytes() <= (8 << 30) - MIB);
        let owned: Vec<Partition> = parts.iter().map(|p| (*p).clone()).collect();
        let s = layout::sfdisk_script(&owned);
        assert!(s.contains("type=21686148-6449-6E6F-744E-656564454649"));
        assert!(s.contains("name=\"root\""));
        // Partitions do not overlap.
        for w in parts.windows(2) {
            assert!(w[0].start + w[0].sectors <= w[1].start);
        }
    }

    #[test]
    fn bios_only_and_uefi_only_layouts() {
        let b = Layout::new(4 << 30, Firmware::Bios, 0).unwrap();
        assert!(b.esp.is_none() && b.bios_boot.is_some());
        let u = Layout::new(4 << 30, Firmware::Uefi, 0).unwrap();
        assert!(u.esp.is_some() && u.bios_boot.is_none());
        assert!(Layout::new(400 * MIB, Firmware::Hybrid, 0).is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8G").unwrap(), 8 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("8X").is_err());
        assert!(parse_size("big").is_err());
    }
}
