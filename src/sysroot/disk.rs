//! The one GPT layout of a slipway disk, used by `slipway image` (written into an image file)
//! and by the installer (written onto a block device): BIOS boot partition, EFI system
//! partition, the boot partition (XBOOTLDR type) and the root, 1 MiB aligned, with their
//! type GUIDs, names (the file system labels) and sizes, and the `sfdisk` script for them;
//! and the writing of it, with two back-ends ([`Medium`], [`Place`]): into an image file (the
//! table with `sfdisk`, each file system at its partition's offset with `mke2fs -E offset`,
//! `mkfs.fat --offset` and mtools' `@@offset`: no loop device, no mount), or onto a block
//! device (old signatures wiped, the kernel told; file systems on the partition nodes).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::sys::cmd::CommandRunExt;

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

/// What the table is written onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// A disk image file: nothing for the kernel to re-read.
    ImageFile,
    /// A block device: signatures of what was there wiped, the kernel told of the new table.
    BlockDevice,
}

/// Write the GPT table of `parts` onto `target`.
pub fn write_table(target: &Path, medium: Medium, parts: &[Partition]) -> Result<()> {
    let mut c = Command::new("sfdisk");
    c.arg("--quiet");
    match medium {
        Medium::ImageFile => c.args(["--no-reread", "--no-tell-kernel"]),
        Medium::BlockDevice => c.args(["--wipe", "always", "--wipe-partitions", "always"]),
    };
    c.arg(target)
        .run_with_input(sfdisk_script(parts).as_bytes())
        .with_context(|| format!("partitioning {}", target.display()))?;
    Ok(())
}

/// Where a partition's file system is made.
#[derive(Debug, Clone, Copy)]
pub enum Place<'a> {
    /// Inside the image file, at the partition's offset.
    InImage {
        image: &'a Path,
        part: &'a Partition,
    },
    /// On the partition's block device node.
    Node(&'a Path),
}

impl std::fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::InImage { image, part } => {
                write!(f, "partition {} of {}", part.name, image.display())
            }
            Place::Node(node) => write!(f, "{}", node.display()),
        }
    }
}

impl Place<'_> {
    /// The file and the trailing arguments of `mke2fs`/`mkfs.fat` (the size, in KiB, that
    /// an offset into a file needs).
    fn target_and_size(&self) -> (&Path, Option<String>) {
        match self {
            Place::InImage { image, part } => (image, Some((part.bytes() / 1024).to_string())),
            Place::Node(node) => (node, None),
        }
    }

    /// mtools' name of the file system (`-i`).
    fn mtools_image(&self) -> String {
        match self {
            Place::InImage { image, part } => format!("{}@@{}", image.display(), part.offset()),
            Place::Node(node) => node.display().to_string(),
        }
    }
}

/// ext4 labelled `label`, with the file system UUID `uuid` when one is chosen, populated from
/// the directory `from` when given (`mke2fs -d`).
pub fn mkfs_ext4(place: Place, label: &str, uuid: Option<&str>, from: Option<&Path>) -> Result<()> {
    let mut c = Command::new("mke2fs");
    c.args(["-q", "-F", "-t", "ext4", "-L", label])
        // Features GRUB 2.06 cannot read stay off whatever the host's mke2fs.conf says.
        .args(["-O", "^metadata_csum_seed,^orphan_file"]);
    if let Some(u) = uuid {
        c.args(["-U", u]);
    }
    if let Place::InImage { part, .. } = place {
        c.arg("-E").arg(format!("offset={}", part.offset()));
    }
    if let Some(dir) = from {
        c.arg("-d").arg(dir);
    }
    let (target, size) = place.target_and_size();
    c.arg(target);
    if let Some(kib) = size {
        c.arg(format!("{kib}k"));
    }
    c.run().with_context(|| match from {
        Some(dir) => format!(
            "creating the {label} file system on {place} from {}",
            dir.display()
        ),
        None => format!("creating the {label} file system on {place}"),
    })
}

/// FAT32 for the EFI system partition, labelled `label`, with the volume serial `serial`
/// (`XXXXXXXX`) when one is chosen.
pub fn mkfs_esp(place: Place, label: &str, serial: Option<&str>) -> Result<()> {
    let mut c = Command::new("mkfs.fat");
    // One sector per cluster keeps a 127 MiB FAT32 above its minimum cluster count.
    c.args(["-F", "32", "-s", "1", "-n", label]);
    if let Some(id) = serial {
        c.args(["-i", id]);
    }
    if let Place::InImage { part, .. } = place {
        c.arg(format!("--offset={}", part.start));
    }
    let (target, size) = place.target_and_size();
    c.arg(target);
    if let Some(kib) = size {
        c.arg(kib);
    }
    c.run()
        .with_context(|| format!("creating the EFI system partition on {place}"))
}

/// Copy `src` to `dest` (e.g. `EFI/BOOT/BOOTX64.EFI`) on the FAT file system at `place`,
/// making the directories on the way.
pub fn esp_copy(place: Place, src: &Path, dest: &str) -> Result<()> {
    let image = place.mtools_image();
    let comps: Vec<&str> = dest.trim_start_matches('/').split('/').collect();
    let mut dir = String::new();
    for c in &comps[..comps.len().saturating_sub(1)] {
        dir.push('/');
        dir.push_str(c);
        // An existing directory is an error to mmd, and not one here.
        let _ = Command::new("mmd")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-D", "s", "-i", &image, &format!("::{dir}")])
            .run();
    }
    // A partition node's geometry (from the kernel) need not divide its size: mtools'
    // consistency check would refuse it.
    Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-o", "-i", &image])
        .arg(src)
        .arg(format!("::/{}", comps.join("/")))
        .run()
        .with_context(|| format!("copying {dest} to the EFI system partition on {place}"))
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

    /// The image back-end: a table and file systems written into a file at their offsets,
    /// found there by mtools and sfdisk; the file keeps its size.
    #[test]
    fn filesystems_are_written_into_an_image_at_their_offsets() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("disk.raw");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let parts = layout(1 << 30, &sizes(BIOS_BOOT_MIB, ESP_MIB), || Ok(None)).unwrap();
        write_table(&img, Medium::ImageFile, &parts).unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("grub")).unwrap();
        std::fs::write(src.join("grub/grub.cfg"), "set timeout=1\n").unwrap();
        let at = |role| Place::InImage {
            image: &img,
            part: parts.iter().find(|p| p.role == role).unwrap(),
        };
        mkfs_ext4(at(Role::Boot), BOOT_LABEL, None, Some(&src)).unwrap();
        mkfs_esp(at(Role::Esp), ESP_LABEL, Some("1234ABCD")).unwrap();
        let efi = d.path().join("BOOTX64.EFI");
        std::fs::write(&efi, "not really an EFI binary").unwrap();
        esp_copy(at(Role::Esp), &efi, "EFI/BOOT/BOOTX64.EFI").unwrap();
        let out = Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-i", &at(Role::Esp).mtools_image(), "::/EFI/BOOT"])
            .run_get_string()
            .unwrap();
        assert!(out.contains("BOOTX64"), "{out}");
        let boot = parts.iter().find(|p| p.role == Role::Boot).unwrap();
        let probe = Command::new("blkid")
            .args(["-p", "-O", &boot.offset().to_string(), "-o", "export"])
            .arg(&img)
            .run_get_string()
            .unwrap();
        assert!(
            probe.contains("TYPE=ext4") && probe.contains(&format!("LABEL={BOOT_LABEL}")),
            "{probe}"
        );
        assert_eq!(std::fs::metadata(&img).unwrap().len(), 1 << 30);
        let table = Command::new("sfdisk")
            .arg("--json")
            .arg(&img)
            .run_get_string()
            .unwrap();
        assert!(table.contains("\"name\": \"boot\""), "{table}");
        // A failure names the place.
        let e = mkfs_esp(Place::Node(&d.path().join("missing")), ESP_LABEL, None).unwrap_err();
        assert!(format!("{e:#}").contains("missing"), "{e:#}");
    }
}
