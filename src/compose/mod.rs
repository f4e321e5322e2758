//! `slipway compose tree`: a treefile becomes an OSTree commit.
//!
//! Phases: resolve (treefile, apt sources, package set, input hash; stop here when nothing
//! changed) -> build (mmdebstrap) -> customize (add-files, remove-files, postprocess, units)
//! -> initramfs (dracut, generic, with the ostree module) -> layout (OSTree conversion) ->
//! commit (parallel writer, metadata, optional GPG signature, ref moved atomically) ->
//! publish (static delta from the previous commit, summary).

pub mod apt;
pub mod archive;
pub mod dpkg;
pub mod images;
pub mod inputhash;
pub mod layout;
pub mod metadata;
pub mod postprocess;
pub mod pyc;
pub mod rootfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use ostree::gio;
use ostree::glib;
use ostree::glib::prelude::*;

use crate::treefile::Treefile;
use indicatif::HumanBytes;

use fn_error_context::context;

use crate::sys::cmd::CommandRunExt;
use crate::sys::lock::{self, Wait};
use crate::sys::ui::{self, Progress};
use crate::sysroot::userdb::UserDb;

/// Everything `compose tree` is asked to do.
#[derive(Debug, Clone)]
pub struct ComposeOptions {
    pub repo: PathBuf,
    pub treefile: PathBuf,
    pub cachedir: PathBuf,
    pub force_nocache: bool,
    pub write_composejson_to: Option<PathBuf>,
    pub gpg_sign: Option<String>,
    pub gpg_homedir: Option<PathBuf>,
    pub dry_run: bool,
    /// Extra `KEY=VALUE` string metadata; `version=...` overrides the automatic version.
    pub add_metadata: Vec<(String, String)>,
    /// Where the host's apt configuration lives (normally /etc/apt).
    pub host_apt_dir: PathBuf,
    /// The slipway executable the host carries (`None`: the running one).
    pub host_slipway: Option<PathBuf>,
    /// Unpack every package afresh (a throwaway cache in the work directory): the same tree
    /// as with the package cache, made the slow way.
    pub no_package_cache: bool,
}

/// The machine-readable result (`--write-composejson-to`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ComposeJson {
    pub schema: crate::sys::ui::Schema,
    #[serde(rename = "ref")]
    pub ostree_ref: String,
    pub commit: Option<String>,
    pub parent: Option<String>,
    pub version: Option<String>,
    pub inputhash: Option<String>,
    pub changed: bool,
    pub dry_run: bool,
    pub package_count: usize,
    pub kernel_version: Option<String>,
    pub content_objects_total: usize,
    pub content_objects_written: usize,
    pub content_bytes_written: u64,
    pub metadata_objects_written: usize,
    pub static_delta: Option<String>,
    pub static_delta_size: Option<u64>,
    pub tmpfiles_entries: usize,
    /// How the package stage made the root (package cache use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<dpkg::InstallReport>,
    /// Wall time of each phase, seconds.
    pub phases: BTreeMap<String, f64>,
}

/// The commit timestamp: SOURCE_DATE_EPOCH when set (reproducible builds), else now.
pub fn commit_timestamp() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow!("SOURCE_DATE_EPOCH=`{v}` is not a number of seconds")),
        Err(_) => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("system clock before 1970")?
            .as_secs()),
    }
}

/// Installed packages (name, version) from a dpkg status file.
pub fn installed_packages(status: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for para in status.split("\n\n") {
        let (mut name, mut version, mut installed) = (None, None, false);
        for line in para.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if let (Some(n), Some(v), true) = (name, version, installed) {
            out.push((n, v));
        }
    }
    out.sort();
    out
}

fn write_composejson(path: &Path, cj: &ComposeJson) -> Result<()> {
    let text = serde_json::to_string_pretty(cj)? + "\n";
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Copy the previous commit's account files out, to seed the new tree with (stable ids).
fn seed_userdb(repo: &ostree::Repo, commit: &str, dest: &Path) -> Result<Option<UserDb>> {
    std::fs::create_dir_all(dest)?;
    let mut found = false;
    for f in ["passwd", "group", "shadow", "gshadow"] {
        if let Some(data) = crate::repo::read_commit_file(repo, commit, &format!("usr/etc/{f}"))? {
            let p = dest.join(f);
            std::fs::write(&p, data).with_context(|| format!("writing {}", p.display()))?;
            use std::os::unix::fs::PermissionsExt;
            let mode = if f.contains("shadow") { 0o640 } else { 0o644 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
            found = true;
        }
    }
    if !found {
        return Ok(None);
    }
    Ok(Some(UserDb::load(dest)?))
}

/// Everything checked before any work: the treefile, the host, the signing key, the
/// repository (locked) and what its ref holds now.
struct ComposePlan {
    tf: Treefile,
    /// None only for a dry run against a repository that does not exist yet.
    repo: Option<ostree::Repo>,
    _repo_lock: Option<lock::LockGuard>,
    previous: Option<PreviousCommit>,
    sources: Vec<apt::Source>,
    timestamp: u64,
    /// The slipway executable the host carries, and its SHA-256.
    host_exe: PathBuf,
    host_exe_hash: String,
}

/// What the ref's current commit recorded.
struct PreviousCommit {
    commit: String,
    version: Option<String>,
    inputhash: Option<String>,
    indexhash: Option<String>,
}

/// The resolve phase's answer.
struct Resolution {
    ws: apt::AptWorkspace,
    index_hash: String,
    /// None when the indexes are unchanged since the previous commit (nothing was resolved).
    packages: Option<Vec<apt::ResolvedPackage>>,
    /// The package sets of the treefile's package images (`name:tag`), resolved with them.
    image_packages: BTreeMap<String, Vec<apt::ResolvedPackage>>,
    input_hash: Option<String>,
}

/// A built and converted tree, ready to commit; dropping it removes the work directory.
struct BuiltTree {
    _work: crate::sys::workdir::WorkDir,
    rootfs: PathBuf,
    installed: Vec<(String, String)>,
    /// The package cache's roots this tree shares files with, checked after the commit.
    watch: dpkg::Watch,
}

/// Run a compose: plan, resolve (stop when nothing changed), build, commit, publish.
pub fn compose_tree(opts: &ComposeOptions) -> Result<ComposeJson> {
    let progress = Progress::new();
    let plan = plan(opts)?;
    let mut cj = ComposeJson {
        schema: crate::sys::ui::Schema,
        ostree_ref: plan.tf.ostree_ref.clone(),
        dry_run: opts.dry_run,
        parent: plan.previous.as_ref().map(|p| p.commit.clone()),
        ..Default::default()
    };
    let resolution = resolve(opts, &plan, &progress)?;
    cj.inputhash = resolution.input_hash.clone();
    let previous = plan.previous.as_ref();
    let unchanged = !opts.force_nocache
        && previous.is_some_and(|p| p.inputhash.is_some() && p.inputhash == resolution.input_hash);
    if let (true, Some(prev)) = (unchanged, previous) {
        ui::info(format!(
            "No apparent changes since previous commit {}; not composing (use --force-nocache to compose anyway)",
            prev.commit
        ));
        cj.commit = Some(prev.commit.clone());
        cj.parent = match &plan.repo {
            Some(r) => crate::repo::commit_parent(r, &prev.commit)?,
            None => None,
        };
        cj.version = prev.version.clone();
        finish_json(opts, &progress, &mut cj)?;
        return Ok(cj);
    }
    let packages = resolution
        .packages
        .as_deref()
        .context("the package set was not resolved although the inputs changed")?;
    cj.package_count = packages.len();
    cj.changed = true;
    if opts.dry_run {
        ui::info(format!(
            "dry run: would compose {} ({} packages, input hash {}) on top of {}",
            plan.tf.ostree_ref,
            packages.len(),
            short(resolution.input_hash.as_deref()),
            previous.map(|p| p.commit.as_str()).unwrap_or("nothing")
        ));
        finish_json(opts, &progress, &mut cj)?;
        return Ok(cj);
    }
    let repo = plan
        .repo
        .as_ref()
        .context("the repository is open unless this is a dry run")?;
    let built = build(opts, &plan, &resolution, packages, &progress, &mut cj)?;
    let (stats, version) = commit(opts, &plan, &resolution, &built, &progress)?;
    cj.commit = Some(stats.commit.clone());
    cj.content_objects_total = stats.content_objects_total;
    cj.content_objects_written = stats.content_objects_written;
    cj.content_bytes_written = stats.content_bytes_written;
    cj.metadata_objects_written = stats.metadata_objects_written;
    cj.version = version;
    built.watch.verify()?;
    // The work directory (and the built tree in it) goes now, before the publish phase.
    drop(built._work);
    publish(opts, repo, previous, &stats.commit, &progress, &mut cj)?;
    // What no compose used for 30 days, and all but the newest configured roots (skipped
    // while another compose uses the cache).
    if !opts.no_package_cache {
        dpkg::cache::PackageCache::prune(
            &opts.cachedir.join("packages"),
            std::time::Duration::from_secs(30 * 86400),
            None,
            dpkg::TREES_KEPT,
        )?;
    }
    finish_json(opts, &progress, &mut cj)?;
    Ok(cj)
}

/// Check everything that can be checked before work starts, then open and lock the
/// repository.
#[context("Planning the compose of {}", opts.treefile.display())]
fn plan(opts: &ComposeOptions) -> Result<ComposePlan> {
    let tf = Treefile::load(&opts.treefile)?;
    crate::sys::preflight::require_root("slipway compose tree")?;
    let mut tools = vec!["mmdebstrap", "apt-get", "bwrap", "unshare", "dpkg", "strip"];
    if opts.gpg_sign.is_some() {
        tools.push("gpg");
    }
    crate::sys::preflight::require_programs(&tools)?;
    if let Some(key) = &opts.gpg_sign {
        check_signing_key(key, opts.gpg_homedir.as_deref())?;
    }
    let timestamp = commit_timestamp()?;
    let host_exe = match &opts.host_slipway {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("finding slipway's own executable")?,
    };
    let host_exe_hash = crate::repo::sha256_file(&host_exe)
        .with_context(|| format!("--host-slipway {}", host_exe.display()))?;
    let host = apt::read_host_sources(&opts.host_apt_dir)?;
    let mut sources = apt::sources_for_suite(&host, apt::host_codename().as_deref(), &tf.suite)?;
    sources.extend(apt::treefile_sources(&tf));

    // The repository, and a lock so two composes into it never interleave.
    let repo = if opts.dry_run && !opts.repo.exists() {
        None
    } else {
        Some(crate::repo::open_or_create_archive(&opts.repo)?)
    };
    let repo_lock = match &repo {
        Some(_) => Some(lock::exclusive(
            &opts.repo.join("slipway-compose.lock"),
            &format!("repository {}", opts.repo.display()),
            Wait::Block,
        )?),
        None => None,
    };
    let previous = match &repo {
        Some(r) => match crate::repo::resolve(r, &tf.ostree_ref)? {
            Some(commit) => {
                // One read of the commit's metadata for the three keys.
                let meta = crate::repo::commit_metadata(r, &commit)?;
                let get = |key: &str| meta.lookup::<String>(key).ok().flatten();
                Some(PreviousCommit {
                    version: get(metadata::KEY_VERSION),
                    inputhash: get(metadata::KEY_INPUTHASH),
                    indexhash: get(metadata::KEY_INDEXHASH),
                    commit,
                })
            }
            None => None,
        },
        None => None,
    };
    Ok(ComposePlan {
        tf,
        repo,
        _repo_lock: repo_lock,
        previous,
        sources,
        timestamp,
        host_exe,
        host_exe_hash,
    })
}

/// The signing key must be there before an hour of work, not after.
#[context("Checking the GPG signing key {key}")]
fn check_signing_key(key: &str, homedir: Option<&Path>) -> Result<()> {
    if homedir.is_none() {
        ui::info("--gpg-sign without --gpg-homedir: using the default GnuPG home");
    }
    let mut c = std::process::Command::new("gpg");
    c.args(["--batch", "--with-colons"]);
    if let Some(h) = homedir {
        c.arg("--homedir").arg(h);
    }
    let out = c.args(["--list-secret-keys", "--", key]).run_get_output()?;
    let has_secret = String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("sec:"));
    if !out.status.success() || !has_secret {
        bail!(
            "no secret key `{key}` in {} (gpg --list-secret-keys said: {})",
            homedir
                .map(|h| h.display().to_string())
                .unwrap_or_else(|| "the default GnuPG home".into()),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Refresh the package lists; when the indexes changed, resolve the package set and
/// compute the input hash.
#[context("Resolving packages")]
fn resolve(opts: &ComposeOptions, plan: &ComposePlan, progress: &Progress) -> Result<Resolution> {
    std::fs::create_dir_all(&opts.cachedir)
        .with_context(|| format!("creating cache directory {}", opts.cachedir.display()))?;
    let phase = progress.phase("resolve", "resolving the package set", None);
    let _apt_lock = lock::exclusive(
        &opts.cachedir.join("apt.lock"),
        "the apt cache",
        Wait::Block,
    )?;
    let tf = &plan.tf;
    let ws = apt::AptWorkspace::prepare(&opts.cachedir, &plan.sources, &tf.exclude_packages)?;
    phase.message("apt-get update");
    ws.update(&plan.sources)?;
    let index_hash = inputhash::index_hash(tf, &ws.index_digest()?, &plan.host_exe_hash)?;
    let prev = plan.previous.as_ref();
    let unchanged_index = !opts.force_nocache
        && prev.is_some_and(|p| p.indexhash.as_deref() == Some(index_hash.as_str()));
    let (packages, image_packages, input_hash) = if unchanged_index {
        (
            None,
            BTreeMap::new(),
            prev.and_then(|p| p.inputhash.clone()),
        )
    } else {
        phase.message("resolving packages");
        let pkgs = ws.resolve(tf)?;
        let images = self::images::resolve(&ws, tf)?;
        let h = inputhash::input_hash_with_images(tf, &pkgs, &images, &plan.host_exe_hash)?;
        (Some(pkgs), images, Some(h))
    };
    phase.finish(
        match &packages {
            Some(p) => format!(
                "{} packages, input hash {}",
                p.len(),
                short(input_hash.as_deref())
            ),
            None => "package indexes unchanged since the previous commit".to_string(),
        }
        .as_str(),
    );
    Ok(Resolution {
        ws,
        index_hash,
        packages,
        image_packages,
        input_hash,
    })
}

/// Put the host's slipway (stripped) and its health gate into the tree, and check that it
/// runs there (it links the tree's libraries, not the build machine's).
#[context("Installing slipway into the tree")]
fn install_slipway(rootfs: &Path, exe: &Path, work: &Path) -> Result<()> {
    let stripped = work.join("slipway.stripped");
    std::process::Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&stripped)
        .arg(exe)
        .run()
        .with_context(|| format!("stripping {}", exe.display()))?;
    crate::payload::install(rootfs, &stripped)?;
    let v = crate::sys::sandbox::Sandbox::new(rootfs)
        .command(&["/usr/bin/slipway", "--version"])
        .run_get_string()
        .context("running the host's slipway inside the tree")?;
    ui::info(format!("the host carries {}", v.trim()));
    Ok(())
}

/// mmdebstrap, the treefile's customisations, the initramfs, the OSTree layout.
#[context("Building the tree")]
fn build(
    opts: &ComposeOptions,
    plan: &ComposePlan,
    resolution: &Resolution,
    packages: &[apt::ResolvedPackage],
    progress: &Progress,
    cj: &mut ComposeJson,
) -> Result<BuiltTree> {
    let tf = &plan.tf;
    let work = crate::sys::workdir::create(&opts.cachedir, "compose-")?;
    let seed = match (&plan.repo, &plan.previous) {
        (Some(repo), Some(prev)) => seed_userdb(repo, &prev.commit, &work.path().join("userdb"))?,
        _ => None,
    };
    let rootfs = rootfs::target_dir(work.path());
    let seed_dir = seed.as_ref().map(|_| work.path().join("userdb"));
    let ws = &resolution.ws;
    let dpkg_path_filters = tf.dpkg_path_filters();
    let source_date_epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .map(|_| plan.timestamp);
    let package_cache = opts.cachedir.join("packages");
    let install_plan = dpkg::InstallPlan {
        packages,
        ws,
        cache: (!opts.no_package_cache).then_some(package_cache.as_path()),
        work: work.path(),
        target: &rootfs,
        seed_userdb: seed_dir.as_deref(),
        source_date_epoch,
        dpkg_path_filters: &dpkg_path_filters,
    };
    let phase = progress.phase("build", "installing packages", None);
    let (report, watch) = dpkg::install(&install_plan, &mut |l| phase.message(l))?;
    phase.finish(&format!(
        "{} packages installed ({}; {} unpacked, {} from the package cache)",
        packages.len(),
        report.path,
        report.unpacked,
        report.reused
    ));
    cj.packages = Some(report);

    let kver = rootfs::kernel_version(&rootfs)?;
    if kver.is_none() {
        ui::warn(
            "the tree has no kernel (add linux-image-amd64 to packages): the commit will not be bootable",
        );
    }
    cj.kernel_version = kver.clone();
    customize(&rootfs, plan, work.path(), progress)?;

    if let Some(kver) = &kver {
        let phase = progress.phase("initramfs", &format!("dracut for {kver}"), None);
        postprocess::build_initramfs(&rootfs, kver, &tf.initramfs_args, &mut |l| phase.message(l))?;
        phase.finish("generic initramfs with the ostree module");
    }

    let phase = progress.phase("layout", "converting to the OSTree layout", None);
    let report = layout::convert(&rootfs, kver.as_deref(), &tf.etc_group_members)?;
    cj.tmpfiles_entries = report.tmpfiles_entries;
    if let Some(old) = &seed {
        same_account_ids(&rootfs, old)?;
    }
    phase.finish(&format!(
        "{} tmpfiles.d entries, {} files under /var dropped",
        report.tmpfiles_entries, report.var_files_dropped
    ));
    if !tf.container_images.is_empty() || !tf.services.is_empty() {
        let images = images::ImagesPlan {
            tf,
            ws,
            packages: &resolution.image_packages,
            work: work.path(),
            rootfs: &rootfs,
            source_date_epoch,
        };
        build_images(&images, progress)?;
    }
    let status_path = rootfs.join(layout::DPKG_DATABASE).join("status");
    let status = std::fs::read_to_string(&status_path)
        .with_context(|| format!("reading the dpkg status {}", status_path.display()))?;
    Ok(BuiltTree {
        _work: work,
        rootfs,
        installed: installed_packages(&status),
        watch,
    })
}

/// slipway and its host payload (when the tree is a host), then the treefile's add-files,
/// remove-files, postprocess scripts and units.
fn customize(rootfs: &Path, plan: &ComposePlan, work: &Path, progress: &Progress) -> Result<()> {
    let tf = &plan.tf;
    let phase = progress.phase(
        "customize",
        "add-files, remove-files, postprocess, units",
        None,
    );
    if crate::payload::is_host(rootfs)? {
        install_slipway(rootfs, &plan.host_exe, work)?;
    } else {
        ui::warn(
            "the tree has no systemd or no libostree, so it is not a host slipway runs on: \
             slipway and its health gate are not installed",
        );
    }
    postprocess::add_files(rootfs, tf)?;
    postprocess::remove_files(rootfs, tf)?;
    postprocess::run_scripts(rootfs, tf, &mut |l| phase.message(l))?;
    postprocess::systemd_units(rootfs, tf)?;
    let n = pyc::zero_source_mtimes(rootfs)?;
    phase.finish(&format!(
        "done ({n} Python bytecode files fitted to the commit)"
    ));
    Ok(())
}

/// Refuse a tree whose accounts got other ids than in the previous commit (`old`): files
/// owned by them would change owner on upgrade.
fn same_account_ids(rootfs: &Path, old: &UserDb) -> Result<()> {
    let new = UserDb::load(&rootfs.join("usr/etc"))?;
    let changes = new.id_changes(old);
    if !changes.is_empty() {
        let list: Vec<String> = changes
            .iter()
            .map(|(k, n, a, b)| format!("{k} {n}: {a} -> {b}"))
            .collect();
        bail!(
            "account ids changed from the previous commit (files owned by them would change owner on upgrade): {}",
            list.join(", ")
        );
    }
    Ok(())
}

/// The treefile's container images unpacked in the tree, and their services.
fn build_images(plan: &images::ImagesPlan, progress: &Progress) -> Result<()> {
    let tf = plan.tf;
    let phase = progress.phase(
        "images",
        &format!(
            "{} container image(s), {} service(s)",
            tf.container_images.len(),
            tf.services.len()
        ),
        None,
    );
    let manifest = images::build_all(plan, &mut |l| phase.message(l))?;
    let bytes: u64 = manifest.images.iter().map(|i| i.bytes).sum();
    phase.finish(&format!(
        "{} image(s) unpacked in the tree ({}), {} unit(s)",
        manifest.images.len(),
        HumanBytes(bytes),
        manifest.services.len()
    ));
    Ok(())
}

/// The commit metadata, then the parallel writer; the ref moves in its final transaction.
#[context("Committing to {}", opts.repo.display())]
fn commit(
    opts: &ComposeOptions,
    plan: &ComposePlan,
    resolution: &Resolution,
    built: &BuiltTree,
    progress: &Progress,
) -> Result<(crate::repo::commit::CommitStats, Option<String>)> {
    let tf = &plan.tf;
    let ts = plan.timestamp;
    let explicit_version = opts
        .add_metadata
        .iter()
        .find(|(k, _)| k == metadata::KEY_VERSION)
        .map(|(_, v)| v.clone());
    let prev_version = plan.previous.as_ref().and_then(|p| p.version.as_deref());
    let version = match (explicit_version, &tf.automatic_version_prefix) {
        (Some(v), _) => Some(v),
        (None, Some(prefix)) => {
            let prefix = metadata::expand_prefix(prefix, ts);
            Some(metadata::next_version(&prefix, prev_version))
        }
        (None, None) => None,
    };
    let dict = glib::VariantDict::new(None);
    for (k, v) in &tf.add_commit_metadata {
        let var = crate::repo::variant::json_to_variant(v)
            .ok_or_else(|| anyhow!("add-commit-metadata.{k}: unsupported value"))?;
        dict.insert_value(k, &var);
    }
    for (k, v) in &opts.add_metadata {
        dict.insert_value(k, &v.to_variant());
    }
    if let Some(v) = &version {
        dict.insert_value(metadata::KEY_VERSION, &v.to_variant());
    }
    dict.insert_value(
        metadata::KEY_INPUTHASH,
        &resolution
            .input_hash
            .clone()
            .unwrap_or_default()
            .to_variant(),
    );
    dict.insert_value(metadata::KEY_INDEXHASH, &resolution.index_hash.to_variant());
    dict.insert_value(metadata::KEY_PACKAGES, &built.installed.to_variant());
    dict.insert_value(metadata::KEY_TREEFILE, &tf.canonical_json().to_variant());
    dict.insert_value(metadata::KEY_SUITE, &tf.suite.to_variant());
    dict.insert_value(metadata::KEY_SOURCE, &inputhash::SOURCE_HASH.to_variant());
    dict.insert_value(
        metadata::KEY_HOST_EXECUTABLE,
        &plan.host_exe_hash.to_variant(),
    );

    let homedir = opts.gpg_homedir.as_ref().map(|p| p.display().to_string());
    let phase = progress.phase("commit", "writing objects", Some(0));
    let subject = match &version {
        Some(v) => format!("{} {v}", tf.ostree_ref),
        None => tf.ostree_ref.clone(),
    };
    let previous = plan.previous.as_ref().map(|p| p.commit.as_str());
    let stats = crate::repo::commit::commit_tree(
        crate::repo::commit::CommitRequest {
            repo_path: &opts.repo,
            tree: &built.rootfs,
            ostree_ref: &tf.ostree_ref,
            parent: previous,
            subject: &subject,
            metadata: dict,
            timestamp: ts,
            threads: 0,
            skip_existing: previous.is_some(),
            gpg: opts
                .gpg_sign
                .as_deref()
                .map(|k| crate::repo::commit::GpgSign {
                    key_id: k,
                    homedir: homedir.as_deref(),
                }),
        },
        &|n, total| phase.inc_of(n, total),
    )?;
    phase.finish(&format!(
        "{} ({} objects, {} written, {})",
        stats.commit,
        stats.content_objects_total,
        stats.content_objects_written,
        HumanBytes(stats.content_bytes_written)
    ));
    Ok((stats, version))
}

/// A static delta from the previous commit, then the summary (which indexes deltas).
#[context("Publishing {commit}")]
fn publish(
    opts: &ComposeOptions,
    repo: &ostree::Repo,
    previous: Option<&PreviousCommit>,
    commit: &str,
    progress: &Progress,
    cj: &mut ComposeJson,
) -> Result<()> {
    let phase = progress.phase("publish", "static delta and summary", None);
    if let Some(prev) = previous {
        match generate_delta(repo, &opts.repo, &prev.commit, commit) {
            Ok((name, size)) => {
                phase.println(&format!(
                    "static delta {} -> {}: {}",
                    &prev.commit[..12],
                    &commit[..12],
                    HumanBytes(size)
                ));
                cj.static_delta = Some(name);
                cj.static_delta_size = Some(size);
            }
            Err(e) => ui::warn(format!("static delta not generated: {e:#}")),
        }
    }
    repo.regenerate_summary(None, gio::Cancellable::NONE)
        .context("updating the repository summary")?;
    if let Some(k) = &opts.gpg_sign {
        let homedir = opts.gpg_homedir.as_ref().map(|p| p.display().to_string());
        repo.add_gpg_signature_summary(&[k.as_str()], homedir.as_deref(), gio::Cancellable::NONE)
            .with_context(|| format!("signing the summary with GPG key {k}"))?;
    }
    phase.finish("summary updated");
    Ok(())
}

fn generate_delta(repo: &ostree::Repo, path: &Path, from: &str, to: &str) -> Result<(String, u64)> {
    // libostree dereferences `params` unconditionally: pass an empty dictionary, never NULL.
    let params = glib::VariantDict::new(None).end();
    repo.static_delta_generate(
        ostree::StaticDeltaGenerateOpt::Major,
        Some(from),
        to,
        None,
        Some(&params),
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("generating the static delta {from} -> {to}"))?;
    let dir = crate::repo::static_delta_dir(Some(from), to)?;
    let size = crate::repo::dir_size(&path.join(&dir));
    if size == 0 {
        bail!("delta directory {dir} is missing after generation");
    }
    Ok((format!("{from}-{to}"), size))
}

fn finish_json(opts: &ComposeOptions, progress: &Progress, cj: &mut ComposeJson) -> Result<()> {
    for (name, d) in progress.timings() {
        *cj.phases.entry(name).or_default() += d.as_secs_f64();
    }
    if let Some(p) = &opts.write_composejson_to {
        write_composejson(p, cj)?;
    }
    Ok(())
}

fn short(h: Option<&str>) -> &str {
    h.map(|s| &s[..s.len().min(12)]).unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compose_report_starts_with_its_schema() {
        let text = serde_json::to_string(&ComposeJson::default()).unwrap();
        assert!(text.starts_with(r#"{"schema":1,"ref":"#), "{text}");
    }

    #[test]
    fn dpkg_status_lists_only_installed_packages() {
        let s = "Package: b\nStatus: install ok installed\nVersion: 2\n\nPackage: a\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: c\nStatus: install ok installed\nVersion: 1:3\n";
        assert_eq!(
            installed_packages(s),
            vec![
                ("b".to_string(), "2".to_string()),
                ("c".to_string(), "1:3".to_string())
            ]
        );
    }
}
