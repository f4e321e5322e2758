//! `slipway compose tree`: a treefile becomes an OSTree commit.
//!
//! Phases: resolve (treefile, apt sources, package set, input hash; stop here when nothing
//! changed) -> build (mmdebstrap) -> customize (add-files, remove-files, postprocess, units)
//! -> initramfs (dracut, generic, with the ostree module) -> layout (OSTree conversion) ->
//! commit (parallel writer, metadata, optional GPG signature, ref moved atomically) ->
//! publish (static delta from the previous commit, summary).

pub mod apt;
pub mod commit;
pub mod inputhash;
pub mod layout;
pub mod metadata;
pub mod postprocess;
pub mod rootfs;
pub mod treefile;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use ostree::gio;
use ostree::glib;
use ostree::glib::prelude::*;

use crate::compose::treefile::Treefile;
use indicatif::HumanBytes;

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
}

/// The machine-readable result (`--write-composejson-to`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ComposeJson {
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

/// Run a compose.
pub fn compose_tree(opts: &ComposeOptions) -> Result<ComposeJson> {
    let progress = Progress::new();
    let tf = Treefile::load(&opts.treefile)?;
    crate::sys::preflight::require_root("slipway compose tree")?;
    crate::sys::preflight::require_programs(&[
        "mmdebstrap",
        "apt-get",
        "bwrap",
        "unshare",
        "dpkg",
    ])?;
    if let (Some(_), None) = (&opts.gpg_sign, &opts.gpg_homedir) {
        ui::info("--gpg-sign without --gpg-homedir: using the default GnuPG home");
    }

    let mut cj = ComposeJson {
        ostree_ref: tf.ostree_ref.clone(),
        dry_run: opts.dry_run,
        ..Default::default()
    };

    // The repository, and a lock so two composes into it never interleave.
    let repo = if opts.dry_run && !opts.repo.exists() {
        None
    } else {
        Some(crate::repo::open_or_create_archive(&opts.repo)?)
    };
    let _repo_lock = match &repo {
        Some(_) => Some(lock::exclusive(
            &opts.repo.join("slipway-compose.lock"),
            &format!("repository {}", opts.repo.display()),
            Wait::Block,
        )?),
        None => None,
    };
    let previous = match &repo {
        Some(r) => crate::repo::resolve(r, &tf.ostree_ref)?,
        None => None,
    };
    let prev_meta = |key: &str| -> Result<Option<String>> {
        match (&repo, &previous) {
            (Some(r), Some(c)) => crate::repo::commit_meta_string(r, c, key),
            _ => Ok(None),
        }
    };
    let prev_version = prev_meta(metadata::KEY_VERSION)?;
    let prev_inputhash = prev_meta(metadata::KEY_INPUTHASH)?;
    let prev_indexhash = prev_meta(metadata::KEY_INDEXHASH)?;
    cj.parent = previous.clone();

    // Resolve.
    std::fs::create_dir_all(&opts.cachedir)
        .with_context(|| format!("creating cache directory {}", opts.cachedir.display()))?;
    let phase = progress.phase("resolve", "resolving the package set", None);
    let host = apt::read_host_sources(&opts.host_apt_dir)?;
    let mut sources = apt::sources_for_suite(&host, apt::host_codename().as_deref(), &tf.suite)?;
    sources.extend(apt::treefile_sources(&tf));
    let _apt_lock = lock::exclusive(
        &opts.cachedir.join("apt.lock"),
        "the apt cache",
        Wait::Block,
    )?;
    let ws = apt::AptWorkspace::prepare(&opts.cachedir, &sources, &tf.exclude_packages)?;
    phase.message("apt-get update");
    ws.update(&sources)?;
    let index_hash = inputhash::index_hash(&tf, &ws.index_digest()?)?;
    let unchanged_index = !opts.force_nocache
        && previous.is_some()
        && prev_indexhash.as_deref() == Some(index_hash.as_str());
    let (packages, input_hash) = if unchanged_index {
        (None, prev_inputhash.clone())
    } else {
        phase.message("resolving packages");
        let pkgs = ws.resolve(&tf)?;
        let h = inputhash::input_hash(&tf, &pkgs)?;
        (Some(pkgs), Some(h))
    };
    cj.inputhash = input_hash.clone();
    let unchanged = !opts.force_nocache && previous.is_some() && input_hash == prev_inputhash;
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

    if unchanged {
        ui::info(format!(
            "No apparent changes since previous commit {}; not composing (use --force-nocache to compose anyway)",
            previous.as_deref().unwrap_or_default()
        ));
        cj.changed = false;
        cj.commit = previous.clone();
        cj.parent = match (&repo, &previous) {
            (Some(r), Some(c)) => crate::repo::commit_parent(r, c)?,
            _ => None,
        };
        cj.version = prev_version.clone();
        finish_json(opts, &progress, &mut cj)?;
        return Ok(cj);
    }
    let packages = packages.expect("resolved when the input changed");
    cj.package_count = packages.len();
    cj.changed = true;
    if opts.dry_run {
        ui::info(format!(
            "dry run: would compose {} ({} packages, input hash {}) on top of {}",
            tf.ostree_ref,
            packages.len(),
            short(input_hash.as_deref()),
            previous.as_deref().unwrap_or("nothing")
        ));
        finish_json(opts, &progress, &mut cj)?;
        return Ok(cj);
    }
    let repo = repo.expect("opened unless dry run");
    drop(_apt_lock);

    // Build.
    let work = crate::sys::workdir::create(&opts.cachedir, "compose-")?;
    let seed = match &previous {
        Some(c) => seed_userdb(&repo, c, &work.path().join("userdb"))?,
        None => None,
    };
    let rootfs = rootfs::target_dir(work.path());
    let seed_dir = seed.as_ref().map(|_| work.path().join("userdb"));
    let ts = commit_timestamp()?;
    let plan = rootfs::RootfsPlan {
        suite: &tf.suite,
        sources_file: &ws.sources_file(),
        preferences_file: &ws.preferences_file(),
        packages: &packages,
        deb_cache: &ws.archives(),
        seed_userdb: seed_dir.as_deref(),
        target: &rootfs,
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok().map(|_| ts),
    };
    let phase = progress.phase("build", "installing packages with mmdebstrap", None);
    rootfs::build(&plan, &mut |l| phase.message(l))?;
    phase.finish(&format!("{} packages installed", packages.len()));

    let kver = rootfs::kernel_version(&rootfs)?;
    if kver.is_none() {
        ui::warn(
            "the tree has no kernel (add linux-image-amd64 to packages): the commit will not be bootable",
        );
    }
    cj.kernel_version = kver.clone();
    let phase = progress.phase(
        "customize",
        "add-files, remove-files, postprocess, units",
        None,
    );
    postprocess::add_files(&rootfs, &tf)?;
    postprocess::remove_files(&rootfs, &tf)?;
    postprocess::run_scripts(&rootfs, &tf, &mut |l| phase.message(l))?;
    postprocess::systemd_units(&rootfs, &tf)?;
    phase.finish("done");

    if let Some(kver) = &kver {
        let phase = progress.phase("initramfs", &format!("dracut for {kver}"), None);
        postprocess::build_initramfs(&rootfs, kver, &tf.initramfs_args, &mut |l| phase.message(l))?;
        phase.finish("generic initramfs with the ostree module");
    }

    let phase = progress.phase("layout", "converting to the OSTree layout", None);
    let report = layout::convert(&rootfs, kver.as_deref(), &tf.etc_group_members)?;
    cj.tmpfiles_entries = report.tmpfiles_entries;
    if let Some(old) = &seed {
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
    }
    phase.finish(&format!(
        "{} tmpfiles.d entries, {} files under /var dropped",
        report.tmpfiles_entries, report.var_files_dropped
    ));

    // Commit.
    let status = std::fs::read_to_string(rootfs.join(layout::DPKG_DATABASE).join("status"))
        .context("reading the dpkg status of the new tree")?;
    let installed = installed_packages(&status);
    let explicit_version = opts
        .add_metadata
        .iter()
        .find(|(k, _)| k == metadata::KEY_VERSION)
        .map(|(_, v)| v.clone());
    let version = match (explicit_version, &tf.automatic_version_prefix) {
        (Some(v), _) => Some(v),
        (None, Some(prefix)) => {
            let prefix = metadata::expand_prefix(prefix, ts);
            Some(metadata::next_version(&prefix, prev_version.as_deref()))
        }
        (None, None) => None,
    };
    cj.version = version.clone();
    let dict = glib::VariantDict::new(None);
    for (k, v) in &tf.add_commit_metadata {
        let var = metadata::json_to_variant(v)
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
        &input_hash.clone().unwrap_or_default().to_variant(),
    );
    dict.insert_value(metadata::KEY_INDEXHASH, &index_hash.to_variant());
    dict.insert_value(metadata::KEY_PACKAGES, &installed.to_variant());
    dict.insert_value(metadata::KEY_TREEFILE, &tf.canonical_json().to_variant());
    dict.insert_value(metadata::KEY_SUITE, &tf.suite.to_variant());

    let homedir = opts.gpg_homedir.as_ref().map(|p| p.display().to_string());
    let phase = progress.phase("commit", "writing objects", Some(0));
    let subject = match &version {
        Some(v) => format!("{} {v}", tf.ostree_ref),
        None => tf.ostree_ref.clone(),
    };
    let stats = commit::commit_tree(
        commit::CommitRequest {
            repo_path: &opts.repo,
            tree: &rootfs,
            ostree_ref: &tf.ostree_ref,
            parent: previous.as_deref(),
            subject: &subject,
            metadata: dict,
            timestamp: ts,
            threads: 0,
            skip_existing: previous.is_some(),
            gpg: opts.gpg_sign.as_deref().map(|k| commit::GpgSign {
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
    cj.commit = Some(stats.commit.clone());
    cj.content_objects_total = stats.content_objects_total;
    cj.content_objects_written = stats.content_objects_written;
    cj.content_bytes_written = stats.content_bytes_written;
    cj.metadata_objects_written = stats.metadata_objects_written;
    drop(work);

    // Publish: delta from the previous commit, then the summary (which indexes deltas).
    let phase = progress.phase("publish", "static delta and summary", None);
    if let Some(prev) = &previous {
        match generate_delta(&repo, &opts.repo, prev, &stats.commit) {
            Ok((name, size)) => {
                phase.println(&format!(
                    "static delta {} -> {}: {}",
                    &prev[..12],
                    &stats.commit[..12],
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
        repo.add_gpg_signature_summary(&[k.as_str()], homedir.as_deref(), gio::Cancellable::NONE)
            .with_context(|| format!("signing the summary with GPG key {k}"))?;
    }
    phase.finish("summary updated");
    finish_json(opts, &progress, &mut cj)?;
    Ok(cj)
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
