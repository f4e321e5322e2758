//! The boot files on the EFI system partition (ESP), taken from the deployed commit, as
//! bootupd does: never from the machine that builds the image or runs the installer.
//!
//! **Which files.** A commit that carries Debian's signed chain (`shim-signed` and
//! `grub-efi-amd64-signed`) gets it on the ESP, for Secure Boot: shim as
//! `EFI/BOOT/BOOTX64.EFI` (the firmware's fallback path, so no boot entry is needed), the
//! signed GRUB beside it as `grubx64.efi` (the name shim loads from its own directory),
//! MokManager as `mmx64.efi`, and a `grub.cfg` of three lines that finds the boot file system
//! and reads its dispatcher menu (the signed GRUB is one image with its modules built in and
//! its prefix `/EFI/debian`; when that is missing it reads `grub.cfg` beside itself). A commit
//! without the signed chain gets a GRUB image built with `grub-mkimage` around the same three
//! lines, as before (it boots only with Secure Boot off).
//!
//! **Updates survive a power cut at any point.** FAT has no journal, so the files are never
//! changed in place. [`update`] writes the new set into `EFI/slipway-new`, syncs it, then
//! swaps the two directories with one `renameat2(RENAME_EXCHANGE)` (FAT supports it from
//! Linux 6.0) and syncs again; only then is the old set (now under the temporary name)
//! removed. The firmware follows `EFI/BOOT`, which names the complete old set or the
//! complete new one at every step; a temporary directory left by a cut is removed by the
//! next update. Each step has a failpoint ([`FAILPOINTS`]).

use std::fs;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::bootloader::{self, BootSearch, Platform};
use crate::sys::tree::Tree;

/// The directory of the boot files on the ESP (the firmware's fallback path).
pub const BOOT_DIR: &str = "EFI/BOOT";
/// Where an update writes the new set before the swap.
pub const NEW_DIR: &str = "EFI/slipway-new";
/// The failpoints of an update, in order: the new set written and synced, the directories
/// swapped and synced, the old set removed.
pub const FAILPOINTS: [&str; 3] = ["esp-new-written", "esp-swapped", "esp-old-removed"];
/// The GPT partition type of an EFI system partition.
pub const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

/// Debian's signed chain: the name on the ESP and the file in the commit.
pub const SIGNED_CHAIN: [(&str, &str); 3] = [
    ("BOOTX64.EFI", "usr/lib/shim/shimx64.efi.signed"),
    (
        "grubx64.efi",
        "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
    ),
    ("mmx64.efi", "usr/lib/shim/mmx64.efi.signed"),
];

/// One boot file: its name in [`BOOT_DIR`], its bytes and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFile {
    pub name: String,
    pub data: Vec<u8>,
    /// The file in the commit (`/usr/lib/shim/shimx64.efi.signed`), or what made it.
    pub source: String,
}

impl BootFile {
    pub fn sha256(&self) -> String {
        crate::sys::file::sha256_hex(&self.data)
    }
}

/// The boot files for one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    pub files: Vec<BootFile>,
    /// Debian's signed chain (Secure Boot), or a GRUB image built here.
    pub signed: bool,
}

/// The `grub.cfg` beside the signed GRUB: find /boot, read its dispatcher.
pub fn early_cfg(search: &BootSearch) -> String {
    format!(
        "{}\nset prefix=($root)/grub\nconfigfile ($root)/grub/grub.cfg\n",
        search.command()
    )
}

/// The signed chain of the deployment whose root is `root`, or None when its commit has
/// none (all of it: a commit with shim but no signed GRUB is an error naming the missing
/// file). Builds nothing.
pub fn signed_files(root: &Path, search: &BootSearch) -> Result<Option<BootFiles>> {
    let tree = Tree::open(root)?;
    let present: Vec<bool> = SIGNED_CHAIN
        .iter()
        .map(|(_, src)| tree.exists(src))
        .collect::<Result<_>>()?;
    if present.iter().all(|p| !p) {
        return Ok(None);
    }
    let mut files = Vec::new();
    for (name, src) in SIGNED_CHAIN {
        let data = tree
            .read_named(&format!("the signed boot chain's {name}"), src)
            .with_context(|| {
                format!(
                    "the commit deployed at {} has part of Debian's signed boot chain \
                     (shim-signed, grub-efi-amd64-signed) but not /{src}",
                    root.display()
                )
            })?;
        files.push(BootFile {
            name: name.to_string(),
            data,
            source: format!("/{src}"),
        });
    }
    files.push(BootFile {
        name: "grub.cfg".into(),
        data: early_cfg(search).into_bytes(),
        source: "slipway (finds /boot, reads its menu)".into(),
    });
    Ok(Some(BootFiles {
        files,
        signed: true,
    }))
}

/// The boot files of the deployment whose root is `root`: its signed chain when it has one
/// ([`signed_files`]), else a GRUB image built in `work` with `grub-mkimage`.
pub fn boot_files(root: &Path, search: &BootSearch, work: &Path) -> Result<BootFiles> {
    if let Some(f) = signed_files(root, search)? {
        return Ok(f);
    }
    let efi = work.join("BOOTX64.EFI");
    bootloader::mkimage(Platform::Efi, &efi, search)?;
    let data = fs::read(&efi).with_context(|| format!("reading {}", efi.display()))?;
    Ok(BootFiles {
        files: vec![BootFile {
            name: "BOOTX64.EFI".into(),
            data,
            source: "grub-mkimage (no signed chain in the commit)".into(),
        }],
        signed: false,
    })
}

/// The files in `dir` (`EFI/BOOT` of a mounted ESP, or a copy), sorted by name; empty when
/// the directory does not exist.
pub fn read_dir(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for e in rd {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        if e.file_type()?.is_file() {
            let data =
                fs::read(e.path()).with_context(|| format!("reading {}", e.path().display()))?;
            out.push((e.file_name().to_string_lossy().into_owned(), data));
        }
    }
    out.sort();
    Ok(out)
}

/// Does `current` (from [`read_dir`]) hold exactly `files`? FAT names compare without case.
pub fn same(current: &[(String, Vec<u8>)], files: &BootFiles) -> bool {
    current.len() == files.files.len()
        && files.files.iter().all(|f| {
            current
                .iter()
                .any(|(n, d)| n.eq_ignore_ascii_case(&f.name) && *d == f.data)
        })
}

/// Write `files` into [`BOOT_DIR`] of a new, empty FAT file system at `place` (an image's
/// partition or a partition node), with mtools: no mount.
pub fn write_new(place: super::disk::Place, files: &BootFiles, work: &Path) -> Result<()> {
    let dir = work.join("esp-files");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for f in &files.files {
        let p = dir.join(&f.name);
        fs::write(&p, &f.data).with_context(|| format!("writing {}", p.display()))?;
        super::disk::esp_copy(place, &p, &format!("{BOOT_DIR}/{}", f.name))?;
    }
    Ok(())
}

/// What [`update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    /// The ESP already held these files (a temporary directory left by a cut is removed).
    Unchanged,
    /// The new set replaced the old one.
    Replaced,
}

fn sync_dir(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", dir.display()))?;
    rustix::fs::syncfs(f.as_fd())
        .map_err(std::io::Error::from)
        .with_context(|| format!("syncing the file system of {}", dir.display()))
}

fn remove_tree(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// Replace the boot files of the ESP mounted at `esp` with `files`, so that a power cut at
/// any point leaves `EFI/BOOT` holding the complete old set or the complete new one (see
/// the module's documentation).
pub fn update(esp: &Path, files: &BootFiles) -> Result<Updated> {
    let boot = esp.join(BOOT_DIR);
    let new = esp.join(NEW_DIR);
    let efi = esp.join("EFI");
    // What an earlier update left when it was cut: a half-written new set, or the old set
    // after the swap. Either way `EFI/BOOT` is whole.
    let stale = new.exists();
    remove_tree(&new)?;
    if same(&read_dir(&boot)?, files) {
        if stale {
            sync_dir(&efi)?;
        }
        return Ok(Updated::Unchanged);
    }
    fs::create_dir_all(&new).with_context(|| format!("creating {}", new.display()))?;
    for f in &files.files {
        let p = new.join(&f.name);
        let mut out = fs::File::create(&p).with_context(|| format!("creating {}", p.display()))?;
        out.write_all(&f.data)
            .and_then(|_| out.sync_all())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    sync_dir(&new)?;
    crate::sys::failpoint::hit(FAILPOINTS[0])?;
    if boot.exists() {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &new,
            rustix::fs::CWD,
            &boot,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(std::io::Error::from)
        .with_context(|| {
            format!(
                "swapping {} and {} (renameat2 RENAME_EXCHANGE; FAT has it from Linux 6.0)",
                new.display(),
                boot.display()
            )
        })?;
    } else {
        fs::rename(&new, &boot)
            .with_context(|| format!("renaming {} to {}", new.display(), boot.display()))?;
    }
    sync_dir(&efi)?;
    crate::sys::failpoint::hit(FAILPOINTS[1])?;
    remove_tree(&new)?;
    sync_dir(&efi)?;
    crate::sys::failpoint::hit(FAILPOINTS[2])?;
    Ok(Updated::Replaced)
}

/// The EFI system partition on the disk that holds the file system of `boot` (a mounted
/// directory): the partition of GPT type [`ESP_TYPE`] beside it. None when the disk has
/// none (a BIOS-only disk).
pub fn find_esp(boot: &Path) -> Result<Option<PathBuf>> {
    use std::process::Command;

    use crate::sys::cmd::CommandRunExt;
    let source = Command::new("findmnt")
        .args(["--noheadings", "--output", "SOURCE", "--target"])
        .arg(boot)
        .run_get_string()
        .with_context(|| format!("finding the device of {}", boot.display()))?;
    let source = source.trim();
    let disk = Command::new("lsblk")
        .args([
            "--noheadings",
            "--nodeps",
            "--output",
            "PKNAME",
            "--paths",
            source,
        ])
        .run_get_string()
        .with_context(|| format!("finding the disk of {source}"))?;
    let disk = disk.trim();
    if disk.is_empty() {
        bail!(
            "{} is on {source}, which is not a partition of a disk",
            boot.display()
        );
    }
    let list = Command::new("lsblk")
        .args(["--json", "--paths", "--output", "PATH,PARTTYPE,TYPE", disk])
        .run_get_string()
        .with_context(|| format!("listing the partitions of {disk}"))?;
    let v: serde_json::Value =
        serde_json::from_str(&list).with_context(|| format!("reading lsblk's list of {disk}"))?;
    let mut found = None;
    let mut walk = vec![&v["blockdevices"]];
    while let Some(node) = walk.pop() {
        for d in node.as_array().into_iter().flatten() {
            if d["type"] == "part"
                && d["parttype"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case(ESP_TYPE))
                && found.is_none()
            {
                found = d["path"].as_str().map(PathBuf::from);
            }
            walk.push(&d["children"]);
        }
    }
    Ok(found)
}

/// The ESP `device` mounted on a new directory under `/run` (no exec, no devices, no
/// set-id), unmounted and removed when dropped.
#[derive(Debug)]
pub struct EspMount {
    dir: Option<tempfile::TempDir>,
    device: PathBuf,
}

impl EspMount {
    pub fn mount(device: &Path, read_only: bool) -> Result<Self> {
        use nix::mount::MsFlags;
        let dir = tempfile::Builder::new()
            .prefix("slipway-esp-")
            .tempdir_in("/run")
            .context("creating a mount point under /run")?;
        let mut flags = MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        nix::mount::mount(Some(device), dir.path(), Some("vfat"), flags, None::<&str>)
            .with_context(|| {
                format!(
                    "mounting the EFI system partition {} on {}",
                    device.display(),
                    dir.path().display()
                )
            })?;
        Ok(Self {
            dir: Some(dir),
            device: device.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/"))
    }

    pub fn device(&self) -> &Path {
        &self.device
    }
}

impl Drop for EspMount {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take()
            && let Err(e) = nix::mount::umount2(dir.path(), nix::mount::MntFlags::empty())
        {
            crate::sys::ui::warn(format!(
                "unmounting the EFI system partition from {}: {e}",
                dir.path().display()
            ));
            // Still mounted: leave the directory rather than empty a mounted ESP.
            let _ = dir.keep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[(&str, &str)]) -> BootFiles {
        BootFiles {
            files: names
                .iter()
                .map(|(n, d)| BootFile {
                    name: n.to_string(),
                    data: d.as_bytes().to_vec(),
                    source: "test".into(),
                })
                .collect(),
            signed: true,
        }
    }

    fn names_and_data(dir: &Path) -> Vec<(String, String)> {
        read_dir(dir)
            .unwrap()
            .into_iter()
            .map(|(n, d)| (n, String::from_utf8(d).unwrap()))
            .collect()
    }

    fn tree_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, data) in files {
            let p = d.path().join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
        d
    }

    #[test]
    fn a_commit_with_the_signed_chain_gives_shim_grub_and_the_early_config() {
        let root = tree_with(&[
            ("usr/lib/shim/shimx64.efi.signed", "shim"),
            ("usr/lib/shim/mmx64.efi.signed", "mm"),
            ("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "grub"),
        ]);
        let work = tempfile::tempdir().unwrap();
        let f = boot_files(root.path(), &BootSearch::Uuid("abcd".into()), work.path()).unwrap();
        assert!(f.signed);
        let got: Vec<(&str, &[u8])> = f
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.data.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("BOOTX64.EFI", &b"shim"[..]),
                ("grubx64.efi", b"grub"),
                ("mmx64.efi", b"mm"),
                (
                    "grub.cfg",
                    b"search --no-floppy --fs-uuid abcd --set=root\nset prefix=($root)/grub\nconfigfile ($root)/grub/grub.cfg\n"
                ),
            ]
        );
    }

    #[test]
    fn half_a_signed_chain_is_an_error_naming_the_missing_file() {
        let root = tree_with(&[("usr/lib/shim/shimx64.efi.signed", "shim")]);
        let work = tempfile::tempdir().unwrap();
        let e = boot_files(root.path(), &BootSearch::Label, work.path()).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
            "{e}"
        );
    }

    #[test]
    fn the_signed_chain_is_read_inside_the_tree() {
        // An absolute link in the commit names the commit's own file, never the build
        // machine's.
        let root = tree_with(&[
            ("usr/lib/shim/mmx64.efi.signed", "mm"),
            ("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "grub"),
            ("etc/hostname", "inside"),
        ]);
        std::os::unix::fs::symlink(
            "/etc/hostname",
            root.path().join("usr/lib/shim/shimx64.efi.signed"),
        )
        .unwrap();
        let work = tempfile::tempdir().unwrap();
        let f = boot_files(root.path(), &BootSearch::Label, work.path()).unwrap();
        assert_eq!(f.files[0].data, b"inside");
    }

    #[test]
    fn an_update_swaps_whole_sets_and_a_second_is_a_no_op() {
        let _env = crate::sys::failpoint::tests::LOCK.lock().unwrap();
        let esp = tempfile::tempdir().unwrap();
        let old = set(&[("BOOTX64.EFI", "shim1"), ("grubx64.efi", "grub1")]);
        let new = set(&[
            ("BOOTX64.EFI", "shim2"),
            ("grubx64.efi", "grub2"),
            ("grub.cfg", "c"),
        ]);
        assert_eq!(update(esp.path(), &old).unwrap(), Updated::Replaced);
        assert_eq!(update(esp.path(), &old).unwrap(), Updated::Unchanged);
        assert_eq!(update(esp.path(), &new).unwrap(), Updated::Replaced);
        assert_eq!(
            names_and_data(&esp.path().join(BOOT_DIR)),
            [
                ("BOOTX64.EFI".to_string(), "shim2".to_string()),
                ("grub.cfg".into(), "c".into()),
                ("grubx64.efi".into(), "grub2".into()),
            ]
        );
        assert!(!esp.path().join(NEW_DIR).exists());
        assert_eq!(update(esp.path(), &new).unwrap(), Updated::Unchanged);
    }

    /// A process killed at each step (the failpoint's `error` stops the update there):
    /// `EFI/BOOT` is a whole set every time, and the next update finishes the job.
    #[test]
    fn an_update_stopped_at_each_step_leaves_a_whole_set() {
        let _env = crate::sys::failpoint::tests::LOCK.lock().unwrap();
        let old = set(&[("BOOTX64.EFI", "shim1"), ("grubx64.efi", "grub1")]);
        let new = set(&[("BOOTX64.EFI", "shim2"), ("grubx64.efi", "grub2")]);
        for (i, fp) in FAILPOINTS.iter().enumerate() {
            let esp = tempfile::tempdir().unwrap();
            update(esp.path(), &old).unwrap();
            // SAFETY: the failpoint lock serialises the tests that touch the environment.
            unsafe { std::env::set_var(crate::sys::failpoint::ENV, format!("{fp}=error")) };
            let e = update(esp.path(), &new).unwrap_err();
            unsafe { std::env::remove_var(crate::sys::failpoint::ENV) };
            assert!(format!("{e:#}").contains(fp), "{e:#}");
            let now = read_dir(&esp.path().join(BOOT_DIR)).unwrap();
            let want = if i == 0 { &old } else { &new };
            assert!(same(&now, want), "after {fp}: {now:?}");
            assert_eq!(esp.path().join(NEW_DIR).exists(), i < 2, "after {fp}");
            let again = update(esp.path(), &new).unwrap();
            assert_eq!(
                again,
                if i == 0 {
                    Updated::Replaced
                } else {
                    Updated::Unchanged
                }
            );
            assert!(same(&read_dir(&esp.path().join(BOOT_DIR)).unwrap(), &new));
            assert!(!esp.path().join(NEW_DIR).exists());
        }
    }
}
