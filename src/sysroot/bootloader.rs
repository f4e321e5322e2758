//! Boot loader configuration and installation, shared by disk images, the PXE installer and
//! the host lifecycle (deploy, upgrade, rollback).
//!
//! **The menu switches atomically with the deployments, as GRUB sees the disk.** libostree is
//! configured with `sysroot.bootloader=grub2` and `OSTREE_GRUB2_EXEC` naming slipway itself
//! (set by `main` for every slipway process, and by a drop-in for
//! `ostree-finalize-staged.service`). On every deployment change libostree writes the new Boot
//! Loader Specification entries into `/boot/loader.N/entries`, runs the generator with `-o
//! /boot/loader.N/grub.cfg` ([`generator_hook`] answers that call: [`grub_cfg`] from those
//! entries), syncs the file systems (a freeze and thaw of /boot, so every block is in place),
//! and only then swaps the `/boot/loader` link. GRUB does not replay the ext4 journal, so a
//! rename is not something GRUB can rely on after a power cut: until the journal is
//! checkpointed, GRUB may see the old directory, the new one, or a mix (seen here: `loader`
//! naming a freed inode). So GRUB never follows that link: `/boot/grub/grub.cfg` is a fixed
//! dispatcher ([`dispatcher_cfg`]) that loads `slipway_loader` (`loader.0` or `loader.1`) from
//! GRUB's environment block and reads that directory's menu. [`finish_switch`] runs after
//! libostree's swap (with libostree's clean-up held back until then): it syncs /boot and
//! rewrites the environment block **in place** (one 1 KiB block of an existing file: no
//! metadata change, so GRUB sees the old value or the new one). That write is the switch.
//! Before it GRUB boots the old menu, whose files the held-back clean-up has not removed;
//! after it, the new one, whose files were synced before libostree's swap. Settings that must
//! survive (timeout, console) live in `/boot/grub/slipway-bootloader.json`, so a regeneration
//! on the host makes the same menu.
//!
//! **Boot counting.** The menu reads `slipway_boot_left` from GRUB's environment block
//! `/boot/grub/grubenv` before it boots: while a new default is on trial (the host lifecycle
//! sets the counter before it switches the default), each boot of it counts down with
//! `save_env`, and at `0` GRUB boots entry 1 (the rollback) instead; the health check on that
//! boot sees the exhausted counter and makes the rollback the default for good. The same
//! code runs under BIOS and UEFI.
//!
//! Installation does not touch loop devices or mounts: GRUB's core images are built with
//! `grub-mkimage` around a small embedded configuration that finds the `boot` file system by
//! label; the BIOS image goes into the BIOS boot partition with the MBR boot sector pointed at
//! it (what `grub-bios-setup` does, done here on the image file). On the EFI system
//! partition a commit's own signed shim and GRUB go first; the EFI core image is for commits
//! without them (see [`super::esp`]).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::sys::cmd::CommandRunExt;
use crate::sys::file::write_atomic;

/// Label of the file system holding /boot.
pub const BOOT_LABEL: &str = "boot";
/// Label of the root file system.
pub const ROOT_LABEL: &str = "root";
/// Label of the EFI system partition.
pub const ESP_LABEL: &str = "EFI-SYSTEM";
/// Settings file, relative to the boot file system.
pub const SETTINGS_FILE: &str = "grub/slipway-bootloader.json";
/// GRUB's environment block (boot counting), relative to the boot file system.
pub const GRUBENV_FILE: &str = "grub/grubenv";
/// The menu GRUB's core image reads, relative to the boot file system: the dispatcher.
pub const GRUB_CFG: &str = "grub/grub.cfg";
/// The GRUB environment variable naming the loader directory whose menu GRUB reads.
pub const LOADER_VAR: &str = "slipway_loader";
/// The environment variable libostree's grub2 backend runs instead of `grub-mkconfig`.
pub const GENERATOR_ENV: &str = "OSTREE_GRUB2_EXEC";
/// The GRUB environment variable holding the boot tries left for a default on trial.
pub const BOOT_LEFT_VAR: &str = "slipway_boot_left";
/// The most boot tries a trial may have (the menu counts down from at most this).
pub const MAX_BOOT_TRIES: u32 = 9;

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
    read_entries_in(&boot.join("loader/entries"))
}

/// The entries in one entries directory, default (highest version) first.
pub fn read_entries_in(dir: &Path) -> Result<Vec<BootEntry>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
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
    /// How GRUB finds the boot file system (settings written before this field existed
    /// read as [`BootSearch::Label`]).
    #[serde(default)]
    pub boot_search: BootSearch,
}

impl Default for GrubSettings {
    fn default() -> Self {
        Self {
            timeout: 1,
            serial: true,
            boot_search: BootSearch::Label,
        }
    }
}

/// How GRUB's embedded configuration and the menu find the boot file system: by the label
/// `boot` (disk images: every copy of an image carries the same file systems), or by the
/// file system UUID the installer generated (a second disk with another slipway install,
/// also labelled `boot`, cannot be picked up instead).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootSearch {
    #[default]
    Label,
    Uuid(String),
}

impl BootSearch {
    /// The GRUB `search` command that sets `root` to the boot file system.
    pub fn command(&self) -> String {
        match self {
            BootSearch::Label => format!("search --no-floppy --label {BOOT_LABEL} --set=root"),
            BootSearch::Uuid(u) => format!("search --no-floppy --fs-uuid {u} --set=root"),
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
        "{}\nset default=0\nset timeout={}\n",
        settings.boot_search.command(),
        settings.timeout
    ));
    if settings.serial {
        // Under UEFI the firmware carries its console (ConOut/ConIn) to the serial port
        // itself; GRUB's own UART driver on the same port as well made GRUB hang now and then
        // under OVMF (polling the line status register, nothing more printed). So GRUB drives
        // the port only under BIOS.
        s.push_str(concat!(
            "if [ \"${grub_platform}\" = \"efi\" ]; then\n",
            "    terminal_input console\n",
            "    terminal_output console\n",
            "else\n",
            "    serial --unit=0 --speed=115200\n",
            "    terminal_input serial console\n",
            "    terminal_output serial console\n",
            "fi\n",
        ));
    }
    if entries.len() > 1 {
        s.push_str(&boot_counting_script());
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

/// The part of the menu that counts the boots of a default on trial down and, when none are
/// left, boots entry 1 (the rollback) instead; a default whose kernel GRUB cannot even load
/// falls back to entry 1 as well. GRUB has no arithmetic, hence one branch per value.
fn boot_counting_script() -> String {
    let env = format!("($root)/{GRUBENV_FILE}");
    let mut s = format!(
        "set fallback=1\nif [ -f {env} ]; then\n    load_env --file {env} {BOOT_LEFT_VAR}\nfi\n"
    );
    s.push_str(&format!(
        "if [ \"${{{BOOT_LEFT_VAR}}}\" = \"0\" ]; then\n    set default=1\n"
    ));
    for n in 1..=MAX_BOOT_TRIES {
        s.push_str(&format!(
            "elif [ \"${{{BOOT_LEFT_VAR}}}\" = \"{n}\" ]; then\n    set {BOOT_LEFT_VAR}={}\n    save_env --file {env} {BOOT_LEFT_VAR}\n",
            n - 1
        ));
    }
    s.push_str("fi\n");
    s
}

/// Size of GRUB's environment block: GRUB rewrites it in place, so it never changes size.
const GRUBENV_SIZE: usize = 1024;
const GRUBENV_HEADER: &str = "# GRUB Environment Block\n";

/// Read GRUB's environment block on the boot file system (empty when there is none).
pub fn read_grubenv(boot: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    let p = boot.join(GRUBENV_FILE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// Write GRUB's environment block on the boot file system, padded to its fixed size: in place
/// when the block exists (GRUB sees the old or the new block, whatever the journal holds),
/// else as a new file, synced. Names and values are restricted to what GRUB's parser reads
/// back unchanged.
pub fn write_grubenv(boot: &Path, vars: &std::collections::BTreeMap<String, String>) -> Result<()> {
    let mut text = String::from(GRUBENV_HEADER);
    for (k, v) in vars {
        let ok = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
        };
        if k.is_empty() || !ok(k) || !ok(v) {
            bail!("GRUB environment variable {k:?}={v:?} has characters slipway does not write");
        }
        text.push_str(&format!("{k}={v}\n"));
    }
    if text.len() > GRUBENV_SIZE {
        bail!(
            "GRUB environment block would be {} bytes, more than {GRUBENV_SIZE}",
            text.len()
        );
    }
    let mut bytes = text.into_bytes();
    bytes.resize(GRUBENV_SIZE, b'#');
    let p = boot.join(GRUBENV_FILE);
    let in_place = std::fs::symlink_metadata(&p)
        .map(|m| m.is_file() && m.len() == GRUBENV_SIZE as u64)
        .unwrap_or(false);
    if in_place {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .with_context(|| format!("opening {}", p.display()))?;
        f.write_all_at(&bytes, 0)
            .and_then(|_| f.sync_data())
            .with_context(|| format!("rewriting {} in place", p.display()))
    } else {
        write_atomic(&p, &bytes)?;
        sync_fs(boot)
    }
}

/// `syncfs` of the file system holding `path`: on ext4 this also writes the journal's
/// metadata to its home blocks, where GRUB reads it.
pub fn sync_fs(path: &Path) -> Result<()> {
    let d = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: a plain syscall on an open descriptor.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&d)) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("syncing the file system of {}", path.display()));
    }
    Ok(())
}

/// Set (or with `None` remove) one variable of GRUB's environment block.
pub fn set_grubenv_var(boot: &Path, name: &str, value: Option<&str>) -> Result<()> {
    let mut vars = read_grubenv(boot)?;
    match value {
        Some(v) => vars.insert(name.to_string(), v.to_string()),
        None => vars.remove(name),
    };
    write_grubenv(boot, &vars)
        .with_context(|| format!("updating the GRUB environment block on {}", boot.display()))
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

/// The fixed menu GRUB's core image reads (`/boot/grub/grub.cfg`): it loads `slipway_loader`
/// from the environment block and reads that loader directory's menu; without it (an older
/// boot file system) it follows the `loader` link.
pub fn dispatcher_cfg() -> String {
    let env = format!("($root)/{GRUBENV_FILE}");
    format!(
        "# slipway: the menu of the loader directory that {LOADER_VAR} in grubenv names.\n\
         # Written once; every deployment change rewrites only grubenv, in place.\n\
         if [ -f {env} ]; then\n    load_env --file {env} {LOADER_VAR}\nfi\n\
         if [ \"${{{LOADER_VAR}}}\" = \"loader.0\" ]; then\n    configfile ($root)/loader.0/grub.cfg\nfi\n\
         if [ \"${{{LOADER_VAR}}}\" = \"loader.1\" ]; then\n    configfile ($root)/loader.1/grub.cfg\nfi\n\
         configfile ($root)/loader/grub.cfg\n"
    )
}

/// Get a boot file system ready for libostree's grub2 backend: the settings stored (when
/// given), GRUB's environment block (GRUB's `save_env` and [`finish_switch`] only rewrite an
/// existing one) and the dispatcher menu, synced.
pub fn prepare_boot(boot: &Path, settings: Option<&GrubSettings>) -> Result<()> {
    if let Some(s) = settings {
        write_atomic(
            &boot.join(SETTINGS_FILE),
            serde_json::to_string_pretty(s)?.as_bytes(),
        )?;
    }
    let mut changed = false;
    if !boot.join(GRUBENV_FILE).exists() {
        write_grubenv(boot, &Default::default())?;
    }
    let cfg = boot.join(GRUB_CFG);
    let current = std::fs::symlink_metadata(&cfg)
        .ok()
        .filter(|m| m.is_file())
        .and_then(|_| std::fs::read_to_string(&cfg).ok());
    if current.as_deref() != Some(dispatcher_cfg().as_str()) {
        write_atomic(&cfg, dispatcher_cfg().as_bytes())?;
        changed = true;
    }
    if changed {
        sync_fs(boot)?;
    }
    Ok(())
}

/// After libostree swapped `/boot/loader` to a new `loader.N` (its clean-up held back): sync
/// /boot, then name `loader.N` in GRUB's environment block, in place. That write is the
/// switch GRUB sees. Returns how many entries the new menu has.
pub fn finish_switch(boot: &Path) -> Result<usize> {
    let link = boot.join("loader");
    let target = std::fs::read_link(&link)
        .with_context(|| format!("reading the link {}", link.display()))?;
    let target = target.to_string_lossy().into_owned();
    if target != "loader.0" && target != "loader.1" {
        bail!(
            "{} points to `{target}`, not loader.0 or loader.1",
            link.display()
        );
    }
    let menu = boot.join(&target).join("grub.cfg");
    if !menu.is_file() {
        // Written without slipway's generator (`ostree admin` with `sysroot.bootloader`
        // none, an older slipway): GRUB still reads the old menu, so making this one now is
        // safe.
        crate::sys::ui::warn(format!(
            "{} is missing (the deployments were written without slipway's menu generator, \
             {GENERATOR_ENV}): generating it",
            menu.display()
        ));
        generate_loader_cfg(&menu)?;
    }
    sync_fs(boot)?;
    set_grubenv_var(boot, LOADER_VAR, Some(&target))?;
    Ok(read_entries_in(&boot.join(&target).join("entries"))?.len())
}

/// The loader directory GRUB reads (`slipway_loader`), if the environment block names one.
pub fn grub_loader(boot: &Path) -> Result<Option<String>> {
    Ok(read_grubenv(boot)?.get(LOADER_VAR).cloned())
}

/// Write the menu for the entries of one `loader.N` (libostree's `-o BOOT/loader.N/grub.cfg`).
pub fn generate_loader_cfg(out: &Path) -> Result<usize> {
    let loader = out
        .parent()
        .with_context(|| format!("{} has no parent directory", out.display()))?;
    let boot = loader
        .parent()
        .with_context(|| format!("{} has no parent directory", loader.display()))?;
    let settings = read_settings(boot)?;
    let entries = read_entries_in(&loader.join("entries"))?;
    if entries.is_empty() {
        bail!("no boot entries in {}/entries", loader.display());
    }
    write_atomic(out, grub_cfg(&entries, &settings).as_bytes())?;
    // Inside libostree's switch: the new loader.N is complete, the link not swapped yet.
    crate::sys::failpoint::hit("grub-menu-written")?;
    Ok(entries.len())
}

/// libostree runs `$OSTREE_GRUB2_EXEC -o PATH` with `_OSTREE_GRUB2_BOOTVERSION` set. When this
/// process was started that way, write the menu and return the exit status; otherwise `None`.
/// Called first thing in `main`.
pub fn generator_hook() -> Option<i32> {
    std::env::var_os("_OSTREE_GRUB2_BOOTVERSION")?;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let [flag, out] = args.as_slice() else {
        return None;
    };
    if flag != "-o" {
        return None;
    }
    match generate_loader_cfg(Path::new(out)) {
        Ok(_) => Some(0),
        Err(e) => {
            eprintln!("slipway (boot menu generator): {e:#}");
            Some(1)
        }
    }
}

/// Point libostree's grub2 backend at this executable (see [`generator_hook`]) unless the
/// environment already names a generator. Call before any thread starts (`main` does).
pub fn set_generator_env() {
    if std::env::var_os(GENERATOR_ENV).is_some() {
        return;
    }
    if let Ok(exe) = std::env::current_exe() {
        // SAFETY: called from `main` before slipway starts any thread.
        unsafe { std::env::set_var(GENERATOR_ENV, exe) };
    }
}

/// Refuse to let libostree write deployments when it would run `grub-mkconfig` instead of
/// slipway's generator (a library caller that skipped [`set_generator_env`]).
pub fn check_generator_env() -> Result<()> {
    match std::env::var_os(GENERATOR_ENV) {
        Some(p) if Path::new(&p).is_absolute() => Ok(()),
        _ => bail!(
            "{GENERATOR_ENV} must name slipway's executable before deployments are written \
             (slipway's `main` sets it; library callers call \
             `slipway::sysroot::bootloader::set_generator_env`)"
        ),
    }
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

/// Build a core image whose embedded configuration finds /boot (by label or file system UUID,
/// `search`) and loads its grub.cfg.
pub fn mkimage(platform: Platform, out: &Path, search: &BootSearch) -> Result<()> {
    let lib = grub_lib(platform)?;
    let dir = tempfile::tempdir()?;
    let early = dir.path().join("early.cfg");
    std::fs::write(
        &early,
        format!(
            "{}\nset prefix=($root)/grub\nconfigfile ($root)/grub/grub.cfg\n",
            search.command()
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
        let entries = d.path().join("loader.1/entries");
        std::fs::create_dir_all(&entries).unwrap();
        std::os::unix::fs::symlink("loader.1", d.path().join("loader")).unwrap();
        std::fs::write(entries.join("ostree-1-debian.conf"), OLD).unwrap();
        std::fs::write(entries.join("ostree-2-debian.conf"), ENTRY).unwrap();
        prepare_boot(
            d.path(),
            Some(&GrubSettings {
                timeout: 5,
                serial: true,
                ..Default::default()
            }),
        )
        .unwrap();
        let n = generate_loader_cfg(&d.path().join("loader.1/grub.cfg")).unwrap();
        assert_eq!(n, 2);
        let env = std::fs::metadata(d.path().join(GRUBENV_FILE)).unwrap();
        assert_eq!(finish_switch(d.path()).unwrap(), 2);
        // GRUB reads the menu of the loader directory grubenv names, rewritten in place.
        assert_eq!(grub_loader(d.path()).unwrap().as_deref(), Some("loader.1"));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(d.path().join(GRUBENV_FILE))
                .unwrap()
                .ino(),
            env.ino(),
            "the environment block must be rewritten in place"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join(GRUB_CFG)).unwrap(),
            dispatcher_cfg()
        );
        let out = grub_script_check(&dispatcher_cfg());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg = std::fs::read_to_string(d.path().join("loader.1/grub.cfg")).unwrap();
        let first = cfg.find("ostree:0").unwrap();
        let second = cfg.find("ostree:1").unwrap();
        assert!(first < second, "{cfg}");
        assert!(cfg.contains("set timeout=5"));
        assert!(cfg.contains("linux '/ostree/debian-abc/vmlinuz-6.1.0-9-amd64' 'root=LABEL=root' 'rw' 'ostree=/ostree/boot.1/debian/abc/0'"), "{cfg}");
        assert!(cfg.contains("initrd '/ostree/debian-abc/initramfs-6.1.0-9-amd64.img'"));
        // Settings persist: a menu for the next loader without them keeps the timeout.
        let entries = d.path().join("loader.0/entries");
        std::fs::create_dir_all(&entries).unwrap();
        std::fs::write(entries.join("ostree-1-debian.conf"), ENTRY).unwrap();
        generate_loader_cfg(&d.path().join("loader.0/grub.cfg")).unwrap();
        let cfg = std::fs::read_to_string(d.path().join("loader.0/grub.cfg")).unwrap();
        assert!(cfg.contains("set timeout=5"));
        assert!(!cfg.contains("ostree:1"));
        // One entry: nothing to fall back to, so no boot counting.
        assert!(!cfg.contains(BOOT_LEFT_VAR), "{cfg}");
    }

    #[test]
    fn a_menu_libostree_did_not_generate_is_made_before_the_switch() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("loader.0/entries")).unwrap();
        std::os::unix::fs::symlink("loader.0", d.path().join("loader")).unwrap();
        prepare_boot(d.path(), None).unwrap();
        // No entries: nothing to boot, refused.
        let err = finish_switch(d.path()).unwrap_err();
        assert!(format!("{err:#}").contains("no boot entries"), "{err:#}");
        assert_eq!(grub_loader(d.path()).unwrap(), None);
        std::fs::write(
            d.path().join("loader.0/entries/ostree-1-debian.conf"),
            ENTRY,
        )
        .unwrap();
        assert_eq!(finish_switch(d.path()).unwrap(), 1);
        assert!(d.path().join("loader.0/grub.cfg").is_file());
        assert_eq!(grub_loader(d.path()).unwrap().as_deref(), Some("loader.0"));
    }

    #[test]
    fn grubenv_is_a_fixed_size_block_that_reads_back() {
        let d = tempfile::tempdir().unwrap();
        prepare_boot(d.path(), None).unwrap();
        let raw = std::fs::read(d.path().join(GRUBENV_FILE)).unwrap();
        assert_eq!(raw.len(), GRUBENV_SIZE);
        assert!(raw.starts_with(GRUBENV_HEADER.as_bytes()));
        set_grubenv_var(d.path(), BOOT_LEFT_VAR, Some("3")).unwrap();
        set_grubenv_var(d.path(), "other", Some("x")).unwrap();
        let raw = std::fs::read(d.path().join(GRUBENV_FILE)).unwrap();
        assert_eq!(raw.len(), GRUBENV_SIZE);
        let vars = read_grubenv(d.path()).unwrap();
        assert_eq!(vars.get(BOOT_LEFT_VAR).map(String::as_str), Some("3"));
        set_grubenv_var(d.path(), BOOT_LEFT_VAR, None).unwrap();
        let vars = read_grubenv(d.path()).unwrap();
        assert_eq!(vars.get(BOOT_LEFT_VAR), None);
        assert_eq!(vars.get("other").map(String::as_str), Some("x"));
        assert!(set_grubenv_var(d.path(), "bad", Some("a b\nc")).is_err());
        // GRUB's own tool reads what slipway wrote.
        let out = Command::new("grub-editenv")
            .arg(d.path().join(GRUBENV_FILE))
            .arg("list")
            .output()
            .expect("grub-editenv (grub-common)");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "other=x\n");
    }

    #[test]
    fn boot_counting_counts_down_and_falls_back_to_the_rollback() {
        let cfg = grub_cfg(
            &[parse_entry("a.conf", ENTRY), parse_entry("b.conf", OLD)],
            &GrubSettings::default(),
        );
        assert!(
            cfg.contains("load_env --file ($root)/grub/grubenv slipway_boot_left"),
            "{cfg}"
        );
        assert!(
            cfg.contains("= \"0\" ]; then\n    set default=1\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("= \"3\" ]; then\n    set slipway_boot_left=2\n    save_env"),
            "{cfg}"
        );
        assert!(cfg.contains("set fallback=1"), "{cfg}");
        // The counting comes before the first entry, and it is valid GRUB script.
        assert!(cfg.find("save_env").unwrap() < cfg.find("menuentry").unwrap());
        let out = grub_script_check(&cfg);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
        std::fs::create_dir_all(d.path().join("loader.0/entries")).unwrap();
        let err = generate_loader_cfg(&d.path().join("loader.0/grub.cfg")).unwrap_err();
        assert!(format!("{err:#}").contains("no boot entries"), "{err:#}");
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
        mkimage(Platform::Bios, &core, &BootSearch::Label).unwrap();
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

    #[test]
    fn boot_search_by_uuid_in_the_menu_and_the_core_image() {
        let entries = [parse_entry("ostree-1-debian.conf", ENTRY)];
        let label = grub_cfg(&entries, &GrubSettings::default());
        assert!(
            label.contains("search --no-floppy --label boot --set=root\n"),
            "{label}"
        );
        let uuid = "0b7c2c38-6ef1-4f5b-9d0a-6a5c3b1d2e4f";
        let settings = GrubSettings {
            boot_search: BootSearch::Uuid(uuid.into()),
            ..Default::default()
        };
        let cfg = grub_cfg(&entries, &settings);
        assert!(
            cfg.contains(&format!("search --no-floppy --fs-uuid {uuid} --set=root\n")),
            "{cfg}"
        );
        assert!(!cfg.contains("--label"), "{cfg}");
        // Settings stored by older slipway (no boot_search) still read, as Label.
        let old: GrubSettings = serde_json::from_str(r#"{"timeout": 3, "serial": false}"#).unwrap();
        assert_eq!(old.boot_search, BootSearch::Label);
        let back: GrubSettings =
            serde_json::from_str(&serde_json::to_string(&settings).unwrap()).unwrap();
        assert_eq!(back, settings);
        // The EFI core image keeps its embedded configuration uncompressed.
        if grub_lib(Platform::Efi).is_ok() {
            let d = tempfile::tempdir().unwrap();
            let efi = d.path().join("BOOTX64.EFI");
            mkimage(Platform::Efi, &efi, &settings.boot_search).unwrap();
            let bytes = std::fs::read(&efi).unwrap();
            let needle = format!("--fs-uuid {uuid}");
            assert!(
                bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "the embedded config does not search by UUID"
            );
        }
    }
}
