//! Boot loader configuration and installation, shared by disk images, the PXE installer and
//! the host lifecycle (deploy, upgrade, rollback).
//!
//! libostree is configured with `sysroot.bootloader=none`, so on every deployment change it
//! only writes Boot Loader Specification entries (`/boot/loader/entries/*.conf`, swapped
//! atomically through the `loader` symlink). Debian's GRUB reads no BLS entries, so
//! [`write_grub_cfg`] turns them into `/boot/grub/grub.cfg`, written to a temporary file and
//! renamed. Settings that must survive (timeout, console) live next to it in
//! `/boot/grub/slipway-bootloader.json`, so an upgrade on the host regenerates the same menu.
//!
//! Installation does not touch loop devices or mounts: GRUB's core images are built with
//! `grub-mkimage` around a small embedded configuration that finds the `boot` file system by
//! label; the BIOS image goes into the BIOS boot partition with the MBR boot sector pointed at
//! it (what `grub-bios-setup` does, done here on the image file), the EFI image becomes
//! `EFI/BOOT/BOOTX64.EFI` on the EFI system partition.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};

use crate::sys::cmd::CommandRunExt;

/// Label of the file system holding /boot.
pub const BOOT_LABEL: &str = "boot";
/// Label of the root file system.
pub const ROOT_LABEL: &str = "root";
/// Label of the EFI system partition.
pub const ESP_LABEL: &str = "EFI-SYSTEM";
/// Settings file, relative to the boot file system.
pub const SETTINGS_FILE: &str = "grub/slipway-bootloader.json";

/// One Boot Loader Specification entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct BootEntry {
    pub file: String,
    pub title: String,
    pub version: String,
    pub options: String,
    pub linux: String,
    pub initrd: Vec<String>,
}

/// Parse one BLS entry file.
pub fn parse_entry(file: &str, text: &str) -> BootEntry {
    let mut e = BootEntry {
        file: file.to_string(),
        ..Default::default()
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let (k, v) = match line.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => continue,
        };
        match k {
            "title" => e.title = v.to_string(),
            "version" => e.version = v.to_string(),
            "options" => e.options = v.to_string(),
            "linux" => e.linux = v.to_string(),
            "initrd" => e.initrd.push(v.to_string()),
            _ => {}
        }
    }
    e
}

/// The entries under `<boot>/loader/entries`, default (highest version) first.
pub fn read_entries(boot: &Path) -> Result<Vec<BootEntry>> {
    let dir = boot.join("loader/entries");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".conf") {
            continue;
        }
        let text = std::fs::read_to_string(e.path())
            .with_context(|| format!("reading {}", e.path().display()))?;
        let entry = parse_entry(&name, &text);
        if entry.linux.is_empty() {
            bail!("{}: boot entry without a `linux` line", e.path().display());
        }
        out.push(entry);
    }
    let key = |e: &BootEntry| e.version.parse::<u64>().unwrap_or(0);
    out.sort_by(|a, b| key(b).cmp(&key(a)).then(a.file.cmp(&b.file)));
    Ok(out)
}

/// Menu settings kept on the boot file system.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrubSettings {
    /// Menu timeout in seconds.
    pub timeout: u32,
    /// Also drive the first serial port (console=ttyS0).
    pub serial: bool,
}

impl Default for GrubSettings {
    fn default() -> Self {
        Self {
            timeout: 1,
            serial: true,
        }
    }
}

/// One word of GRUB script, taken literally: inside single quotes nothing is special but `'`
/// itself, written as `'\''`. Kernel arguments and paths go through this, so `$`, `;`, `{` or
/// a quote in them can never be read as GRUB script.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Split a BLS `options` value into kernel arguments the way the kernel splits its command
/// line: at whitespace, except inside double quotes (which stay in the argument, for the
/// kernel to read: `foo="a b"` is one argument).
pub fn kernel_args(options: &str) -> Vec<&str> {
    let mut args = Vec::new();
    let mut start = None;
    let mut in_quotes = false;
    for (i, c) in options.char_indices() {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        if c.is_whitespace() && !in_quotes {
            if let Some(s) = start.take() {
                args.push(&options[s..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        args.push(&options[s..]);
    }
    args
}

/// The `linux` line of a menu entry: the kernel and each argument quoted for GRUB.
fn linux_line(e: &BootEntry) -> String {
    let mut line = format!("    linux {}", quote(&e.linux));
    for arg in kernel_args(&e.options) {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    line.push('\n');
    line
}

/// grub.cfg text for `entries` (the first is the default).
pub fn grub_cfg(entries: &[BootEntry], settings: &GrubSettings) -> String {
    let mut s = String::from(
        "# Generated by slipway from /boot/loader/entries; regenerated on every deployment change.\n",
    );
    s.push_str(&format!(
        "search --no-floppy --label {BOOT_LABEL} --set=root\nset default=0\nset timeout={}\n",
        settings.timeout
    ));
    if settings.serial {
        s.push_str("serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n");
    }
    for (i, e) in entries.iter().enumerate() {
        let title = if e.title.is_empty() {
            format!("OSTree deployment {i}")
        } else {
            e.title.clone()
        };
        s.push_str(&format!(
            "menuentry {} --id {} {{\n",
            quote(&title),
            quote(&format!("ostree-{i}"))
        ));
        s.push_str(&linux_line(e));
        if !e.initrd.is_empty() {
            let initrds: Vec<String> = e.initrd.iter().map(|i| quote(i)).collect();
            s.push_str(&format!("    initrd {}\n", initrds.join(" ")));
        }
        s.push_str("}\n");
    }
    s
}

/// Write `path` atomically: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    let dir = path.parent().context("path without a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| anyhow!("renaming to {}: {}", path.display(), e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// Read the settings stored on the boot file system (defaults when absent).
pub fn read_settings(boot: &Path) -> Result<GrubSettings> {
    let p = boot.join(SETTINGS_FILE);
    match std::fs::read_to_string(&p) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("parsing {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(GrubSettings::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// Store settings and regenerate `<boot>/grub/grub.cfg` from the BLS entries.
pub fn write_grub_cfg(boot: &Path, settings: Option<&GrubSettings>) -> Result<usize> {
    let settings = match settings {
        Some(s) => {
            write_atomic(
                &boot.join(SETTINGS_FILE),
                serde_json::to_string_pretty(s)?.as_bytes(),
            )?;
            s.clone()
        }
        None => read_settings(boot)?,
    };
    let entries = read_entries(boot)?;
    if entries.is_empty() {
        bail!("no boot entries in {}/loader/entries", boot.display());
    }
    write_atomic(
        &boot.join("grub/grub.cfg"),
        grub_cfg(&entries, &settings).as_bytes(),
    )?;
    Ok(entries.len())
}

/// GRUB platforms slipway installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Bios,
    Efi,
}

impl Platform {
    pub fn dir(self) -> &'static str {
        match self {
            Platform::Bios => "i386-pc",
            Platform::Efi => "x86_64-efi",
        }
    }
    fn format(self) -> &'static str {
        match self {
            Platform::Bios => "i386-pc",
            Platform::Efi => "x86_64-efi",
        }
    }
    /// The Debian package with this platform's modules.
    pub fn package(self) -> &'static str {
        match self {
            Platform::Bios => "grub-pc-bin",
            Platform::Efi => "grub-efi-amd64-bin",
        }
    }
    fn modules(self) -> Vec<&'static str> {
        let mut m = vec![
            "part_gpt",
            "part_msdos",
            "ext2",
            "fat",
            "search",
            "search_label",
            "search_fs_uuid",
            "configfile",
            "normal",
            "linux",
            "echo",
            "test",
            "serial",
            "terminal",
            "loadenv",
            "ls",
            "cat",
            "sleep",
            "reboot",
            "halt",
        ];
        if self == Platform::Bios {
            m.push("biosdisk");
        }
        m
    }
}

/// The GRUB module directory of a platform, with an error naming the package if missing.
pub fn grub_lib(platform: Platform) -> Result<PathBuf> {
    let d = Path::new("/usr/lib/grub").join(platform.dir());
    if !d.join("moddep.lst").is_file() {
        bail!(
            "GRUB for {} is not installed ({} missing); install it with `apt-get install {}`",
            platform.dir(),
            d.display(),
            platform.package()
        );
    }
    Ok(d)
}

/// Build a core image whose embedded configuration finds /boot by label and loads its
/// grub.cfg.
pub fn mkimage(platform: Platform, out: &Path) -> Result<()> {
    let lib = grub_lib(platform)?;
    let dir = tempfile::tempdir()?;
    let early = dir.path().join("early.cfg");
    std::fs::write(
        &early,
        format!(
            "search --no-floppy --label {BOOT_LABEL} --set=root\nset prefix=($root)/grub\nconfigfile ($root)/grub/grub.cfg\n"
        ),
    )?;
    Command::new("grub-mkimage")
        .arg("-d")
        .arg(&lib)
        .args(["-O", platform.format(), "-p", "/grub", "-c"])
        .arg(&early)
        .arg("-o")
        .arg(out)
        .args(platform.modules())
        .run()
        .with_context(|| format!("building the GRUB {} image", platform.dir()))
}

/// Copy a platform's modules to `<boot>/grub/<platform>` (for `insmod` of anything not
/// embedded).
pub fn install_modules(platform: Platform, boot: &Path) -> Result<()> {
    let lib = grub_lib(platform)?;
    let dest = boot.join("grub").join(platform.dir());
    std::fs::create_dir_all(&dest)?;
    for e in std::fs::read_dir(&lib)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".mod") || name.ends_with(".lst") {
            std::fs::copy(e.path(), dest.join(&name)).with_context(|| format!("copying {name}"))?;
        }
    }
    Ok(())
}

// Offsets in GRUB's i386-pc boot sector and core image (grub/include/grub/i386/pc/boot.h).
const BPB_START: usize = 0x3;
const BPB_END: usize = 0x5a;
const KERNEL_SECTOR: usize = 0x5c;
const DRIVE_CHECK: usize = 0x66;
const WINDOWS_NT_MAGIC: usize = 0x1b8;
const PART_END: usize = 0x1fe;
const SECTOR: u64 = 512;
/// Segment the first blocklist loads to (GRUB_BOOT_I386_PC_KERNEL_SEG + 0x20).
const CORE_SEGMENT: u16 = 0x820;

/// Install GRUB for BIOS on a disk image: `core.img` into the BIOS boot partition that starts at
/// sector `part_start` (`part_sectors` long), and `boot.img` into the MBR pointing at it. The
/// partition table in the MBR is kept.
pub fn install_bios(
    disk: &Path,
    core_img: &Path,
    part_start: u64,
    part_sectors: u64,
) -> Result<()> {
    let lib = grub_lib(Platform::Bios)?;
    let boot_img = std::fs::read(lib.join("boot.img")).context("reading boot.img")?;
    if boot_img.len() != SECTOR as usize {
        bail!("boot.img is {} bytes, expected 512", boot_img.len());
    }
    let mut core = std::fs::read(core_img).context("reading core.img")?;
    let core_sectors = (core.len() as u64).div_ceil(SECTOR);
    if core_sectors > part_sectors {
        bail!(
            "GRUB core image needs {core_sectors} sectors but the BIOS boot partition has {part_sectors}"
        );
    }
    core.resize((core_sectors * SECTOR) as usize, 0);
    // The first sector of core.img (diskboot) ends with a blocklist telling it where the rest
    // is: one contiguous run right after it, then a terminator.
    let bl = SECTOR as usize - 12;
    core[bl..bl + 8].copy_from_slice(&(part_start + 1).to_le_bytes());
    core[bl + 8..bl + 10].copy_from_slice(&((core_sectors - 1) as u16).to_le_bytes());
    core[bl + 10..bl + 12].copy_from_slice(&CORE_SEGMENT.to_le_bytes());
    core[bl - 12..bl].fill(0);

    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .with_context(|| format!("opening {}", disk.display()))?;
    let mut mbr = vec![0u8; SECTOR as usize];
    f.read_exact(&mut mbr).context("reading the MBR")?;
    let mut new = boot_img.clone();
    new[BPB_START..BPB_END].copy_from_slice(&mbr[BPB_START..BPB_END]);
    new[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&part_start.to_le_bytes());
    // A hard disk: skip boot.img's floppy probe.
    new[DRIVE_CHECK] = 0x90;
    new[DRIVE_CHECK + 1] = 0x90;
    new[WINDOWS_NT_MAGIC..PART_END].copy_from_slice(&mbr[WINDOWS_NT_MAGIC..PART_END]);
    f.seek(SeekFrom::Start(part_start * SECTOR))?;
    f.write_all(&core).context("writing core.img")?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&new).context("writing the MBR boot code")?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = "title Debian GNU/Linux 12 (bookworm) 2026.11.27.0 (ostree:0)\nversion 2\noptions root=LABEL=root rw ostree=/ostree/boot.1/debian/abc/0\nlinux /ostree/debian-abc/vmlinuz-6.1.0-9-amd64\ninitrd /ostree/debian-abc/initramfs-6.1.0-9-amd64.img\n";
    const OLD: &str = "title Debian (ostree:1)\nversion 1\noptions root=LABEL=root rw ostree=/ostree/boot.1/debian/def/0\nlinux /ostree/debian-def/vmlinuz\ninitrd /ostree/debian-def/initramfs.img\n";

    #[test]
    fn entries_sort_default_first_and_render() {
        let d = tempfile::tempdir().unwrap();
        let entries = d.path().join("loader/entries");
        std::fs::create_dir_all(&entries).unwrap();
        std::fs::write(entries.join("ostree-1-debian.conf"), OLD).unwrap();
        std::fs::write(entries.join("ostree-2-debian.conf"), ENTRY).unwrap();
        let n = write_grub_cfg(
            d.path(),
            Some(&GrubSettings {
                timeout: 5,
                serial: true,
            }),
        )
        .unwrap();
        assert_eq!(n, 2);
        let cfg = std::fs::read_to_string(d.path().join("grub/grub.cfg")).unwrap();
        let first = cfg.find("ostree:0").unwrap();
        let second = cfg.find("ostree:1").unwrap();
        assert!(first < second, "{cfg}");
        assert!(cfg.contains("set timeout=5"));
        assert!(cfg.contains("linux '/ostree/debian-abc/vmlinuz-6.1.0-9-amd64' 'root=LABEL=root' 'rw' 'ostree=/ostree/boot.1/debian/abc/0'"), "{cfg}");
        assert!(cfg.contains("initrd '/ostree/debian-abc/initramfs-6.1.0-9-amd64.img'"));
        // Settings persist: regenerating without them keeps the timeout.
        std::fs::remove_file(entries.join("ostree-1-debian.conf")).unwrap();
        write_grub_cfg(d.path(), None).unwrap();
        let cfg = std::fs::read_to_string(d.path().join("grub/grub.cfg")).unwrap();
        assert!(cfg.contains("set timeout=5"));
        assert!(!cfg.contains("ostree:1"));
    }

    #[test]
    fn titles_with_quotes_are_escaped() {
        let e = parse_entry("x.conf", "title It's here\nlinux /k\n");
        let cfg = grub_cfg(&[e], &GrubSettings::default());
        assert!(cfg.contains(r"menuentry 'It'\''s here'"), "{cfg}");
    }

    /// `grub-script-check` (grub-common) on a generated grub.cfg.
    fn grub_script_check(cfg: &str) -> std::process::Output {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("grub.cfg");
        std::fs::write(&path, cfg).unwrap();
        Command::new("grub-script-check")
            .arg(&path)
            .output()
            .expect("grub-script-check (package grub-common) is required for this test")
    }

    #[test]
    fn kernel_arguments_are_quoted_for_grub_script() {
        let e = parse_entry(
            "x.conf",
            "title T\nlinux /vmlinuz\ninitrd /initrd.img\n\
             options root=LABEL=root foo=$bar;reboot it's {x} msg=\"a b\"  rw\n",
        );
        let cfg = grub_cfg(&[e], &GrubSettings::default());
        let linux = cfg
            .lines()
            .find(|l| l.trim_start().starts_with("linux "))
            .unwrap();
        assert_eq!(
            linux.trim(),
            r#"linux '/vmlinuz' 'root=LABEL=root' 'foo=$bar;reboot' 'it'\''s' '{x}' 'msg="a b"' 'rw'"#,
            "{cfg}"
        );
        // GRUB's single quotes follow the POSIX shell's: read back, each word is the
        // argument exactly as written in the BLS entry.
        assert_eq!(
            shlex::split(linux).unwrap(),
            [
                "linux",
                "/vmlinuz",
                "root=LABEL=root",
                "foo=$bar;reboot",
                "it's",
                "{x}",
                "msg=\"a b\"",
                "rw"
            ]
        );
        let out = grub_script_check(&cfg);
        assert!(
            out.status.success(),
            "grub-script-check: {}\n{cfg}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The check itself catches what unquoted arguments would do.
        let out = grub_script_check("menuentry 'x' {\n    linux /vmlinuz it's\n}\n");
        assert!(!out.status.success());
    }

    #[test]
    fn kernel_arguments_split_like_the_kernel() {
        assert_eq!(
            kernel_args("  a  b=\"c d\"\te \"f g\"h "),
            ["a", "b=\"c d\"", "e", "\"f g\"h"]
        );
        assert!(kernel_args("").is_empty());
    }

    #[test]
    fn no_entries_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("loader/entries")).unwrap();
        assert!(write_grub_cfg(d.path(), None).is_err());
    }

    #[test]
    fn bios_install_points_mbr_at_core_and_keeps_partition_table() {
        if grub_lib(Platform::Bios).is_err() {
            panic!("grub-pc-bin is required for this test");
        }
        let d = tempfile::tempdir().unwrap();
        let disk = d.path().join("disk");
        let mut img = vec![0u8; 4 << 20];
        img[0x1be] = 0x00;
        img[0x1c2] = 0xee; // protective MBR partition type
        img[0x1fe] = 0x55;
        img[0x1ff] = 0xaa;
        std::fs::write(&disk, &img).unwrap();
        let core = d.path().join("core.img");
        mkimage(Platform::Bios, &core).unwrap();
        install_bios(&disk, &core, 2048, 2048).unwrap();
        let out = std::fs::read(&disk).unwrap();
        assert_eq!(
            u64::from_le_bytes(out[0x5c..0x64].try_into().unwrap()),
            2048
        );
        assert_eq!(out[0x1c2], 0xee);
        assert_eq!(&out[0x1fe..0x200], &[0x55, 0xaa]);
        let bl = 2048 * 512 + 500;
        assert_eq!(
            u64::from_le_bytes(out[bl..bl + 8].try_into().unwrap()),
            2049
        );
        let core_len = std::fs::metadata(&core).unwrap().len().div_ceil(512);
        assert_eq!(
            u16::from_le_bytes(out[bl + 8..bl + 10].try_into().unwrap()) as u64,
            core_len - 1
        );
    }
}
