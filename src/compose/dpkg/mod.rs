//! Installing the package set into a root, with the package cache.
//!
//! The way apt2ostree and rpm-ostree build trees, for Debian: each `.deb` is unpacked once
//! into the package cache ([`cache`]), a root is assembled by copying the unpacked packages
//! into it ([`assemble`]) with dpkg's database saying they are unpacked, and dpkg itself then
//! runs what must run: every package's `preinst install` (in name order), then
//! `dpkg --configure -a` (postinsts in dependency order, conffiles, triggers). Without the
//! cache the same steps run with a cache in the work directory, so a compose gives the same
//! tree either way.
//!
//! The configured root is kept in the cache too, keyed on everything that made it. A
//! compose whose package set is one of those plus packages that only put files in place (no
//! maintainer scripts, no triggers, no debconf, no file another package's trigger watches,
//! no file already there) starts from that root, adds them, and runs `dpkg --configure -a`
//! for them alone: nothing else would have run differently for them. Any other change runs
//! everything.

pub mod assemble;
pub mod cache;
pub mod deb;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::compose::apt::{AptWorkspace, ResolvedPackage};
use crate::compose::rootfs::DRACUT_DIVERSION;
use crate::sys::cmd::CommandRunExt;
use crate::sys::tree::Tree;
use assemble::{ADMINDIR, Filters};
use cache::{DebFile, Entry, PackageCache};

/// The trees kept in the cache (the newest; older ones go when the cache is pruned).
pub const TREES_KEPT: usize = 2;

/// Everything the package stage needs.
pub struct InstallPlan<'a> {
    pub packages: &'a [ResolvedPackage],
    pub ws: &'a AptWorkspace,
    /// The package cache directory; `None`: a throwaway cache in `work`.
    pub cache: Option<&'a Path>,
    pub work: &'a Path,
    pub target: &'a Path,
    /// passwd, group, shadow, gshadow of the previous commit, to keep ids stable.
    pub seed_userdb: Option<&'a Path>,
    pub source_date_epoch: Option<u64>,
    /// dpkg `path-exclude`/`path-include` options.
    pub dpkg_path_filters: &'a [String],
}

/// How the root was made.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct InstallReport {
    /// `full` (every package configured), `added` (a cached root plus packages that only put
    /// files in place) or `cached` (the cached root of this very package set).
    pub path: String,
    /// Packages unpacked into the cache by this compose.
    pub unpacked: usize,
    /// Packages found unpacked in the cache.
    pub reused: usize,
    /// With `added`: the packages added to the cached root.
    pub added: Vec<String>,
}

/// Install `plan.packages` into `plan.target` (which must not exist).
pub fn install(
    plan: &InstallPlan,
    on_line: &mut dyn FnMut(&str),
) -> Result<(InstallReport, Watch)> {
    let mut watch = Watch::default();
    let filters = Filters::parse(plan.dpkg_path_filters)?;
    let t0 = std::time::Instant::now();
    let secs = move || t0.elapsed().as_secs_f64();
    plan.ws.download(plan.packages)?;
    let debs = deb_files(plan.ws, plan.packages)?;
    on_line(&format!("{} .debs checked ({:.1}s)", debs.len(), secs()));
    let cache_dir = match plan.cache {
        Some(c) => c.to_path_buf(),
        None => plan.work.join("packages"),
    };
    let cache = PackageCache::open(&cache_dir)?;
    let entries = cache.entries(&debs, jobs())?;
    let unpacked = cache.imported.load(std::sync::atomic::Ordering::SeqCst);
    let mut report = InstallReport {
        unpacked,
        reused: entries.len() - unpacked,
        ..Default::default()
    };
    on_line(&format!(
        "{} packages: {} unpacked now, {} from the cache {} ({:.1}s)",
        entries.len(),
        report.unpacked,
        report.reused,
        cache_dir.display(),
        secs()
    ));
    let base = base_key(plan)?;
    let ids = seed_ids(plan);
    let trees = cache.root().join("trees");
    let found = find_tree(&trees, &base, &ids, &debs)?;
    let mut from_tree = None;
    match found {
        Some(Found::Exact(dir)) => {
            watch.add(&dir)?;
            link_root(&dir.join("root"), plan.target)?;
            on_line(&format!(
                "the configured root of this package set is in the cache ({})",
                dir.display()
            ));
            cache::touch(&dir);
            report.path = "cached".into();
            return Ok((report, watch));
        }
        Some(Found::Subset(dir, meta)) => {
            if let Some(added) = addable(&dir, &meta, &debs, &entries)? {
                on_line(&format!(
                    "starting from the cached root {} and adding {}",
                    dir.display(),
                    added
                        .iter()
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
                watch.add(&dir)?;
                link_root(&dir.join("root"), plan.target)?;
                on_line(&format!("cached root linked ({:.1}s)", secs()));
                let tree = Tree::open(plan.target)?;
                let lists = assemble::unpack(&tree, &added, &filters)?;
                assemble::write_database(&tree, &added, &lists)?;
                configure(plan, &tree, &[], false, on_line)?;
                report.path = "added".into();
                report.added = added.iter().map(|e| e.name.clone()).collect();
                cache::touch(&dir);
                from_tree = Some(dir);
            }
        }
        None => {}
    }
    if from_tree.is_none() {
        let tree = assemble::skeleton(plan.target, &plan.ws.arch)?;
        let all: Vec<&Entry> = entries.iter().collect();
        let lists = assemble::unpack(&tree, &all, &filters)?;
        assemble::write_database(&tree, &all, &lists)?;
        extra_files(plan, &tree)?;
        on_line(&format!(
            "{} packages unpacked into the root ({:.1}s)",
            all.len(),
            secs()
        ));
        let with_preinst: Vec<&Entry> = all
            .iter()
            .copied()
            .filter(|e| e.members.contains_key("preinst"))
            .collect();
        configure(plan, &tree, &with_preinst, true, on_line)?;
        report.path = "full".into();
    }
    on_line(&format!("packages configured ({:.1}s)", secs()));
    if plan.cache.is_some() {
        let saved = save_tree(&cache, &trees, &base, &ids, &debs, plan.target)?;
        watch.add(&saved)?;
        on_line(&format!(
            "configured root kept in the cache ({:.1}s)",
            secs()
        ));
    }
    Ok((report, watch))
}

fn jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The .deb of each package in apt's archive directory, checked against the hash apt
/// resolved it with.
fn deb_files(ws: &AptWorkspace, packages: &[ResolvedPackage]) -> Result<Vec<DebFile>> {
    packages
        .iter()
        .map(|p| {
            let path = ws.archives().join(crate::compose::rootfs::deb_filename(p));
            let sha256 = cache::sha256_file(&path)?;
            if let Some(want) = p.hash.strip_prefix("SHA256:")
                && !want.eq_ignore_ascii_case(&sha256)
            {
                bail!(
                    "{} has SHA-256 {sha256}, but the package index says {want}",
                    path.display()
                );
            }
            Ok(DebFile {
                pkg: p.clone(),
                path,
                sha256,
            })
        })
        .collect()
}

/// Everything but the package set that decides the configured root.
fn base_key(plan: &InstallPlan) -> Result<String> {
    let mut h = Sha256::new();
    h.update(b"slipway-dpkg-root-1\0");
    h.update(crate::compose::inputhash::SOURCE_HASH.as_bytes());
    for f in plan.dpkg_path_filters {
        h.update(b"\0filter\0");
        h.update(f.as_bytes());
    }
    h.update(b"\0sources\0");
    let sources = plan.ws.sources_file();
    h.update(std::fs::read(&sources).with_context(|| format!("reading {}", sources.display()))?);
    if let Some(t) = plan.source_date_epoch {
        h.update(format!("\0epoch\0{t}").as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

fn package_id(d: &DebFile) -> String {
    format!("{}:{}", d.pkg.name, d.pkg.arch)
}

fn set_key(base: &str, debs: &[DebFile]) -> String {
    let mut h = Sha256::new();
    h.update(base.as_bytes());
    let mut ids: Vec<(String, &str)> = debs
        .iter()
        .map(|d| (package_id(d), d.sha256.as_str()))
        .collect();
    ids.sort();
    for (id, sha) in ids {
        h.update(format!("\0{id}\0{sha}").as_bytes());
    }
    hex::encode(h.finalize())[..32].to_string()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TreeMeta {
    base: String,
    /// `name:arch` -> the .deb's SHA-256.
    packages: BTreeMap<String, String>,
    /// The account ids ([`account_ids`]) the root was seeded with, and those it ended with:
    /// a compose seeded with either gets the same root.
    ids: Vec<String>,
    /// [`root_digest`] when it was kept.
    digest: String,
}

/// A digest of the user and group ids in account files (`passwd`, `group` in `dir`), or
/// `none`. The seed exists to keep ids; a root whose ids equal the seed's is what a compose
/// seeded with it makes (packages create only the accounts that are missing).
fn account_ids(read: impl Fn(&str) -> Option<String>) -> String {
    let (Some(passwd), Some(group)) = (read("passwd"), read("group")) else {
        return "none".to_string();
    };
    let mut lines: Vec<String> = Vec::new();
    for l in passwd.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4 {
            lines.push(format!("u {} {} {}", f[0], f[2], f[3]));
        }
    }
    for l in group.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 3 {
            lines.push(format!("g {} {}", f[0], f[2]));
        }
    }
    lines.sort();
    hex::encode(Sha256::digest(lines.join("\n").as_bytes()))
}

fn seed_ids(plan: &InstallPlan) -> String {
    match plan.seed_userdb {
        Some(seed) => account_ids(|f| std::fs::read_to_string(seed.join(f)).ok()),
        None => "none".to_string(),
    }
}

fn root_ids(tree: &Tree) -> String {
    account_ids(|f| read_rel(tree, &format!("etc/{f}")).ok())
}

/// What the cache holds for this compose: a root of exactly this package set, or the
/// largest one of a subset.
enum Found {
    Exact(PathBuf),
    Subset(PathBuf, TreeMeta),
}

/// A cached root made with the same base and account ids from exactly `debs` or from a
/// subset of them.
fn find_tree(trees: &Path, base: &str, ids: &str, debs: &[DebFile]) -> Result<Option<Found>> {
    let want: BTreeMap<String, &str> = debs
        .iter()
        .map(|d| (package_id(d), d.sha256.as_str()))
        .collect();
    let mut best: Option<(usize, PathBuf, TreeMeta)> = None;
    let Ok(rd) = std::fs::read_dir(trees) else {
        return Ok(None);
    };
    for e in rd {
        let dir = e?.path();
        let Ok(text) = std::fs::read_to_string(dir.join("meta.json")) else {
            continue;
        };
        let Ok(meta) = serde_json::from_str::<TreeMeta>(&text) else {
            continue;
        };
        if meta.base != base
            || !meta.ids.iter().any(|i| i == ids)
            || meta.packages.len() > want.len()
            || !meta
                .packages
                .iter()
                .all(|(id, sha)| want.get(id) == Some(&sha.as_str()))
        {
            continue;
        }
        let exact = meta.packages.len() == want.len();
        if !exact && best.as_ref().is_some_and(|b| b.0 >= meta.packages.len()) {
            continue;
        }
        // A root written in place since it was kept (a compose killed before its watch
        // could drop it) is dropped now.
        if root_digest(&dir.join("root"))? != meta.digest {
            crate::sys::ui::warn(format!(
                "the cached root {} changed since it was kept; it leaves the cache",
                dir.display()
            ));
            drop_root(&dir)?;
            continue;
        }
        if exact {
            return Ok(Some(Found::Exact(dir)));
        }
        best = Some((meta.packages.len(), dir, meta));
    }
    Ok(best.map(|(_, dir, meta)| Found::Subset(dir, meta)))
}

/// The packages to add to the cached root `dir` (of `meta`), when every one of them only
/// puts files in place that nothing there watches or holds.
fn addable<'a>(
    dir: &Path,
    meta: &TreeMeta,
    debs: &[DebFile],
    entries: &'a [Entry],
) -> Result<Option<Vec<&'a Entry>>> {
    let added: Vec<&Entry> = debs
        .iter()
        .zip(entries)
        .filter(|(d, _)| !meta.packages.contains_key(&package_id(d)))
        .map(|(_, e)| e)
        .collect();
    let root = Tree::open(&dir.join("root"))?;
    let interests = trigger_interests(&root)?;
    for e in &added {
        if e.acts_when_installed() {
            return Ok(None);
        }
        for path in &e.list {
            if path == "/." {
                continue;
            }
            let merged = format!("/{}", cache::merged_rel(path));
            if interests.iter().any(|i| {
                [path.as_str(), merged.as_str()]
                    .iter()
                    .any(|p| p == i || p.starts_with(&format!("{i}/")))
            }) {
                return Ok(None);
            }
            let rel = cache::merged_rel(path);
            if root.exists(&rel)? {
                let dir_here = std::fs::symlink_metadata(e.data().join(&rel))
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
                if !dir_here || root.list(&rel).is_err() {
                    return Ok(None);
                }
            }
        }
    }
    Ok(Some(added))
}

/// The paths dpkg's file triggers watch in a root.
fn trigger_interests(root: &Tree) -> Result<Vec<String>> {
    let rel = format!("{ADMINDIR}/triggers/File");
    if !root.exists(&rel)? {
        return Ok(Vec::new());
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut root.open_file(&rel)?, &mut text)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|p| p.trim_end_matches('/').to_string())
        .collect())
}

/// What mmdebstrap puts in a root besides packages, which the host keeps: its apt sources and
/// an unconfigured fstab; and the previous commit's accounts, so ids stay.
fn extra_files(plan: &InstallPlan, tree: &Tree) -> Result<()> {
    let sources = plan.ws.sources_file();
    let text = std::fs::read(&sources).with_context(|| format!("reading {}", sources.display()))?;
    tree.write_file(
        "etc/apt/sources.list.d/0000slipway.sources",
        &mut &text[..],
        0o644,
    )?;
    tree.write_file(
        "etc/fstab",
        &mut &b"# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"[..],
        0o644,
    )?;
    if let Some(seed) = plan.seed_userdb {
        use std::os::unix::fs::MetadataExt;
        for f in ["passwd", "group", "shadow", "gshadow"] {
            let p = seed.join(f);
            let Ok(m) = std::fs::metadata(&p) else {
                continue;
            };
            let data = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            let rel = format!("etc/{f}");
            tree.write_file(&rel, &mut &data[..], m.mode())?;
            tree.set_owner(&rel, m.uid(), m.gid())?;
            tree.set_mode(&rel, m.mode())?;
        }
    }
    Ok(())
}

/// Run the preinsts of `preinst` (new installs), then `dpkg --configure -a`, in a sandbox on
/// the root; services are not started (policy-rc.d) and, with `divert_dracut`, dracut is
/// away while the kernel configures.
fn configure(
    plan: &InstallPlan,
    tree: &Tree,
    preinst: &[&Entry],
    divert_dracut: bool,
    on_line: &mut dyn FnMut(&str),
) -> Result<()> {
    let root = plan.target;
    tree.write_file(
        "usr/sbin/policy-rc.d",
        &mut &b"#!/bin/sh\n# slipway: no service starts while packages configure\nexit 101\n"[..],
        0o755,
    )?;
    let dracut = root.join("usr/bin/dracut");
    let diverted = root.join(DRACUT_DIVERSION.trim_start_matches('/'));
    let divert = divert_dracut && dracut.is_file();
    if divert {
        let mut div = read_rel(tree, &format!("{ADMINDIR}/diversions"))?;
        div.push_str(&format!("/usr/bin/dracut\n{DRACUT_DIVERSION}\n:\n"));
        tree.write_file(
            &format!("{ADMINDIR}/diversions"),
            &mut div.as_bytes(),
            0o644,
        )?;
        std::fs::rename(&dracut, &diverted)
            .with_context(|| format!("moving {} aside", dracut.display()))?;
    }
    let dpkg_version = preinst
        .iter()
        .find(|e| e.name == "dpkg")
        .and_then(|e| e.control.get("Version"))
        .unwrap_or("")
        .to_string();
    let mut script = String::from("set -u\n");
    for e in preinst {
        script.push_str(&format!(
            "DPKG_MAINTSCRIPT_PACKAGE={name} DPKG_MAINTSCRIPT_ARCH={arch} DPKG_MAINTSCRIPT_NAME=preinst \
             {ADMIN}/info/{db}.preinst install || {{ echo \"slipway: the preinst of {name} failed\" >&2; exit 1; }}\n",
            name = e.name,
            arch = e.arch,
            db = e.db_name(),
            ADMIN = format_args!("/{ADMINDIR}"),
        ));
    }
    script.push_str("exec dpkg --configure -a\n");
    let mut sb = crate::sys::sandbox::Sandbox::new(root)
        .env("DPKG_ROOT", "")
        .env("DPKG_ADMINDIR", &format!("/{ADMINDIR}"))
        .env("DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT", "1")
        .env("DPKG_MAINTSCRIPT_DEBUG", "0")
        .env("DEBCONF_NONINTERACTIVE_SEEN", "true")
        .env("DPKG_RUNNING_VERSION", &dpkg_version);
    if let Some(t) = plan.source_date_epoch {
        sb = sb.env("SOURCE_DATE_EPOCH", &t.to_string());
    }
    let mut cmd: Command = sb.command(&["/bin/sh", "-c", &script]);
    cmd.run_streaming(on_line)
        .context("configuring the packages (maintainer scripts and dpkg --configure -a)")?;
    if divert {
        std::fs::rename(&diverted, &dracut)
            .with_context(|| format!("moving {} back", dracut.display()))?;
        let div = read_rel(tree, &format!("{ADMINDIR}/diversions"))?;
        let lines: Vec<&str> = div.lines().collect();
        let kept: Vec<String> = lines
            .chunks(3)
            .filter(|c| c.first() != Some(&"/usr/bin/dracut"))
            .map(|c| c.join("\n") + "\n")
            .collect();
        tree.write_file(
            &format!("{ADMINDIR}/diversions"),
            &mut kept.concat().as_bytes(),
            0o644,
        )?;
    }
    tree.remove("usr/sbin/policy-rc.d")?;
    if plan
        .dpkg_path_filters
        .iter()
        .any(|f| f == crate::treefile::INFO_EXCLUDED)
    {
        // install-info's trigger writes the index of the manuals dpkg left out.
        for f in ["usr/share/info/dir", "usr/share/info/dir.old"] {
            tree.remove(f)?;
        }
    }
    Ok(())
}

fn read_rel(tree: &Tree, rel: &str) -> Result<String> {
    if !tree.exists(rel)? {
        return Ok(String::new());
    }
    let mut s = String::new();
    std::io::Read::read_to_string(&mut tree.open_file(rel)?, &mut s)?;
    Ok(s)
}

/// A whole root linked file by file (directories and symbolic links made anew, owners,
/// modes and times kept), but for `/etc` and `/var`, which are copied: they are where scripts
/// append to files in place, and the root `from` must not change with `to`.
fn link_root(from: &Path, to: &Path) -> Result<()> {
    Command::new("cp")
        .args(["-a", "--link", "--no-target-directory"])
        .arg(from)
        .arg(to)
        .run()
        .with_context(|| format!("linking {} to {}", from.display(), to.display()))?;
    for d in ["etc", "var"] {
        if to.join(d).is_dir() {
            crate::sys::workdir::remove_tree(&to.join(d))?;
            Command::new("cp")
                .args(["-a", "--no-target-directory"])
                .arg(from.join(d))
                .arg(to.join(d))
                .run()
                .with_context(|| format!("copying {}", from.join(d).display()))?;
        }
    }
    Ok(())
}

/// A digest of what any write changes in every regular file of `root` (path, size, mode,
/// owner, modification time): a kept root must still have the one it was kept with.
fn root_digest(root: &Path) -> Result<String> {
    let snap = snapshot(root)?;
    let mut lines: Vec<String> = snap
        .values()
        .map(|(st, path)| {
            format!(
                "{} {:?}",
                path.strip_prefix(root).unwrap_or(path).display(),
                st
            )
        })
        .collect();
    lines.sort();
    Ok(hex::encode(Sha256::digest(lines.join("\n").as_bytes())))
}

/// Take a kept root out of the cache (renamed aside first, so no compose finds it half
/// removed).
fn drop_root(dir: &Path) -> Result<()> {
    let aside = dir.with_file_name(format!(
        ".tmp-dropped-{}",
        dir.file_name().unwrap_or_default().to_string_lossy()
    ));
    if std::fs::rename(dir, &aside).is_ok() {
        crate::sys::workdir::remove_tree(&aside)?;
    }
    Ok(())
}

/// The state of every regular file of a root (by inode): what any write changes.
type Snapshot = std::collections::HashMap<u64, ((i64, i64, u64, u32, u32, u32), PathBuf)>;

fn snapshot(root: &Path) -> Result<Snapshot> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Snapshot::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let m = e.metadata()?;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                out.insert(
                    m.ino(),
                    (
                        (
                            m.mtime(),
                            m.mtime_nsec(),
                            m.size(),
                            m.mode(),
                            m.uid(),
                            m.gid(),
                        ),
                        e.path(),
                    ),
                );
            }
        }
    }
    Ok(out)
}

/// The cached roots a compose shares files with (hard links): a root of the cache is
/// never to change, but the compose goes on working in its root (customisations, the
/// initramfs, the layout) and a script may write a file in place. [`Watch::verify`] after
/// the commit finds any file of a cached root that changed, and removes that root from the
/// cache (the commit itself is right: it holds what the compose wrote).
#[derive(Default)]
pub struct Watch {
    trees: Vec<(PathBuf, Snapshot)>,
}

impl Watch {
    fn add(&mut self, dir: &Path) -> Result<()> {
        let snap = snapshot(&dir.join("root"))?;
        self.trees.push((dir.to_path_buf(), snap));
        Ok(())
    }

    /// Check every watched root; a changed one leaves the cache. Returns those removed.
    pub fn verify(self) -> Result<Vec<PathBuf>> {
        let mut dropped = Vec::new();
        for (dir, before) in self.trees {
            if !dir.is_dir() {
                continue;
            }
            let now = snapshot(&dir.join("root"))?;
            let changed = before
                .iter()
                .find(|(ino, (st, _))| now.get(ino).map(|n| &n.0) != Some(st));
            if let Some((_, (_, path))) = changed {
                crate::sys::ui::warn(format!(
                    "{} of the cached root {} changed while composing (written in place); \
                     the root leaves the cache (the commit is not affected)",
                    path.display(),
                    dir.display()
                ));
                drop_root(&dir)?;
                dropped.push(dir);
            }
        }
        Ok(dropped)
    }
}

/// Keep the configured root for the next compose (linked aside, renamed into place);
/// returns its directory.
fn save_tree(
    cache: &PackageCache,
    trees: &Path,
    base: &str,
    seed_ids: &str,
    debs: &[DebFile],
    root: &Path,
) -> Result<PathBuf> {
    let own_ids = root_ids(&Tree::open(root)?);
    let dest = trees.join(format!(
        "{}-{}",
        set_key(base, debs),
        &seed_ids[..seed_ids.len().min(12)]
    ));
    if dest.is_dir() {
        return Ok(dest);
    }
    let tmp = cache.temp_dir("tree")?;
    let result = (|| -> Result<()> {
        link_root(root, &tmp.join("root"))?;
        let meta = TreeMeta {
            base: base.to_string(),
            packages: debs
                .iter()
                .map(|d| (package_id(d), d.sha256.clone()))
                .collect(),
            ids: vec![seed_ids.to_string(), own_ids],
            digest: root_digest(&tmp.join("root"))?,
        };
        std::fs::write(tmp.join("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => Ok(()),
            Err(_) if dest.is_dir() => crate::sys::workdir::remove_tree(&tmp),
            Err(e) => Err(e).with_context(|| format!("renaming into {}", dest.display())),
        }
    })();
    if result.is_err() {
        let _ = crate::sys::workdir::remove_tree(&tmp);
    }
    result.map(|_| dest)
}

#[cfg(test)]
mod tests;
