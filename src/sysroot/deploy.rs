//! Making a commit a bootable deployment in a sysroot, with libostree: used to build disk
//! images, by the PXE installer on a target disk, and by the host lifecycle.
//!
//! The sequence is Anaconda's `ostreesetup`: initialize the sysroot and the stateroot, pull
//! the commit into the sysroot's repository, deploy it with kernel arguments (`root=` by
//! label), mark `/sysroot` read-only, write the OS remote into the deployment's
//! `/etc/ostree/remotes.d` so the host can upgrade from it later, then regenerate the boot
//! loader menu from the BLS entries.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

use crate::repo::pull::{self, TempRemote};
use crate::sys::ui;
use crate::sysroot::bootloader;

/// Where a deployment's files are.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub commit: String,
    pub osname: String,
    /// The deployment's root (`<sysroot>/ostree/deploy/OS/deploy/CSUM.N`).
    pub root: PathBuf,
    /// The stateroot's `/var` (`<sysroot>/ostree/deploy/OS/var`).
    pub var: PathBuf,
    pub kernel_args: Vec<String>,
    pub version: Option<String>,
}

/// An OSTree remote for upgrades.
#[derive(Debug, Clone)]
pub struct Remote {
    pub name: String,
    pub url: String,
    pub gpg_verify: bool,
    /// The public key that verifies the remote's commits, put into the deployment's /etc
    /// (`gpgkeypath`) so that verification works offline from the first upgrade on.
    pub gpg_key: Option<PathBuf>,
    /// The CA file (PEM) an `https://` remote's certificate is checked against: copied into
    /// the deployment's /etc and named by the remote's `tls-ca-path`; `None`: the machine's
    /// CA certificates.
    pub tls_ca: Option<PathBuf>,
}

/// Where a remote's key goes in a deployment, relative to its root.
pub fn remote_key_path(name: &str) -> String {
    format!("etc/slipway/keys/{name}.gpg")
}

/// Where a remote's CA file goes in a deployment, relative to its root.
pub fn remote_ca_path(name: &str) -> String {
    format!("etc/slipway/tls/{name}-ca.pem")
}

/// What to deploy.
/// What seeds the sysroot repository before the pull. Either way every object is checksummed
/// on this machine, so nothing in a seed is trusted: the signed commit names its root tree by
/// checksum, and only objects with exactly those checksums are used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "path")]
pub enum Seed {
    /// A checkout, read where it is and copied into the repository
    /// (`repo::commit::import_tree`, `--seed DIR`).
    Tree(PathBuf),
    /// A squashfs image whose root is the tree (`--seed-image FILE`, the live root's
    /// `/run/slipway/images/root.squashfs`): `unsquashfs` unpacks it beside the repository,
    /// on the target's file system, and libostree checksums each file and renames it into
    /// the repository
    /// (`repo::commit::adopt_tree`). The data is decompressed by zstd in user space and written
    /// once; reading the mounted squashfs through the kernel was about 2.5 times slower in a
    /// TCG guest (and reading the image through its loop device about 1.8 times).
    Image(PathBuf),
}

impl Seed {
    pub fn path(&self) -> &Path {
        match self {
            Seed::Tree(p) | Seed::Image(p) => p,
        }
    }
}

#[derive(Clone)]
pub struct DeployRequest<'a> {
    pub sysroot: &'a Path,
    pub osname: &'a str,
    /// Repository to pull from (a path or URL).
    pub source: &'a str,
    pub ostree_ref: &'a str,
    pub kernel_args: Vec<String>,
    pub remote: Option<Remote>,
    /// Verify GPG signatures while pulling from `source` (an http source with signed commits).
    pub gpg_verify: bool,
    /// A trusted public key (armored or binary) for `remote`: the remote then goes into the
    /// sysroot repository's own config with `gpg-verify=true` and this key in its keyring
    /// (`<repo>/<remote>.trustedkeys.gpg`), the pull goes through it, so every commit is
    /// verified, and no `remotes.d` file is written (the host finds the remote and its key in
    /// the repository).
    pub gpg_key: Option<&'a Path>,
    /// The CA file an `https://` source's certificate is checked against while pulling.
    pub tls_ca: Option<&'a Path>,
    /// The commit's tree (or one close to it), whose objects are written into the sysroot
    /// repository before the pull, so the pull fetches only what the seed lacks (the network
    /// installer's live root: see [`Seed`]).
    pub seed: Option<&'a Seed>,
    /// Called once the seed is imported (the installer reports it).
    pub on_seeded: Option<&'a dyn Fn()>,
    /// Called once the commit is pulled, before it is deployed (the installer reports it).
    pub on_pulled: Option<&'a dyn Fn()>,
}

/// Default kernel arguments of a slipway host. Every failed boot must end in a reboot, so
/// that GRUB's boot counter can roll a deployment back without a person: `panic=10` reboots
/// after a kernel panic, and the initramfs reboots instead of waiting at an emergency shell
/// (`rd.shell=0 rd.emergency=reboot`), giving up on a missing root after `rd.retry` seconds.
pub fn default_kernel_args() -> Vec<String> {
    vec![
        format!("root=LABEL={}", bootloader::ROOT_LABEL),
        "rw".into(),
        "console=tty0".into(),
        "console=ttyS0,115200n8".into(),
        "panic=10".into(),
        "rd.shell=0".into(),
        "rd.emergency=reboot".into(),
        "rd.retry=60".into(),
    ]
}

/// `defaults` with `extra` appended, where an argument of `extra` replaces the default of
/// the same name (`rd.retry=10` replaces `rd.retry=60`; `console=` arguments add up).
pub fn merge_kernel_args(defaults: Vec<String>, extra: &[String]) -> Vec<String> {
    let name = |a: &str| a.split('=').next().unwrap_or(a).to_string();
    let replaced: Vec<String> = extra
        .iter()
        .map(|a| name(a))
        .filter(|n| n != "console")
        .collect();
    let mut out: Vec<String> = defaults
        .into_iter()
        .filter(|a| !replaced.contains(&name(a)))
        .collect();
    out.extend(extra.iter().cloned());
    out
}

/// Validate an OS name (the stateroot and remote name).
pub fn validate_osname(os: &str) -> Result<()> {
    if os.is_empty()
        || !os
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        bail!("`{os}` is not a valid OS name (letters, digits, `-`, `_`, `.`)");
    }
    Ok(())
}

fn source_url(source: &str) -> String {
    if source.contains("://") {
        source.to_string()
    } else {
        let abs = std::fs::canonicalize(source).unwrap_or_else(|_| PathBuf::from(source));
        format!("file://{}", abs.display())
    }
}

/// Initialize `sysroot` (a directory that will become the root file system), deploy the
/// commit and write the boot loader configuration.
pub fn deploy_new(req: &DeployRequest, settings: &bootloader::GrubSettings) -> Result<Deployed> {
    validate_osname(req.osname)?;
    let sysroot = init_sysroot(req, settings)?;
    let repo = sysroot.repo();
    let (commit, keyed_remote) = pull_commit(req, &repo)?;
    let root = deploy_commit(req, &sysroot, &commit)?;
    let var = req
        .sysroot
        .join(format!("ostree/deploy/{}/var", req.osname));
    match (&req.remote, &keyed_remote) {
        (Some(r), None) => write_remote(&root, r)?,
        (Some(r), Some(_)) => settle_remote_ca(&req.sysroot.join("ostree/repo"), &root, r)?,
        _ => {}
    }
    bootloader::finish_switch(&req.sysroot.join("boot"))?;
    let version = crate::repo::commit_meta_string(&repo, &commit, "version")?;
    Ok(Deployed {
        commit,
        osname: req.osname.to_string(),
        root,
        var,
        kernel_args: req.kernel_args.clone(),
        version,
    })
}

/// The sysroot made and loaded, the stateroot created, GRUB's files in /boot and the
/// repository configured for slipway's boot loader.
fn init_sysroot(
    req: &DeployRequest,
    settings: &bootloader::GrubSettings,
) -> Result<ostree::Sysroot> {
    std::fs::create_dir_all(req.sysroot)
        .with_context(|| format!("creating {}", req.sysroot.display()))?;
    let sysroot = ostree::Sysroot::new(Some(&gio::File::for_path(req.sysroot)));
    sysroot
        .ensure_initialized(gio::Cancellable::NONE)
        .context("initializing the sysroot")?;
    sysroot
        .load(gio::Cancellable::NONE)
        .context("loading the sysroot")?;
    sysroot
        .init_osname(req.osname, gio::Cancellable::NONE)
        .with_context(|| format!("creating stateroot {}", req.osname))?;
    let repo = sysroot.repo();

    // libostree writes the BLS entries and runs slipway's menu generator into the same new
    // loader.N before it swaps the loader link (see `bootloader`); /sysroot is read-only on
    // the running host.
    bootloader::check_generator_env()?;
    bootloader::prepare_boot(&req.sysroot.join("boot"), Some(settings))?;
    let config = repo.copy_config();
    config.set_string("sysroot", "bootloader", "grub2");
    config.set_boolean("sysroot", "readonly", true);
    repo.write_config(&config)
        .context("writing the sysroot repository config")?;
    // libostree reads `sysroot.bootloader` when the repository is opened.
    repo.reload_config(gio::Cancellable::NONE)
        .context("reloading the sysroot repository config")?;
    Ok(sysroot)
}

/// Pull the request's ref into the sysroot repository (verified when a key or
/// `gpg_verify` says so); the commit, and the name of the remote that holds the trusted key
/// (written into the repository's own config) if there is one.
fn pull_commit(req: &DeployRequest, repo: &ostree::Repo) -> Result<(String, Option<String>)> {
    let url = source_url(req.source);
    let keyed_remote = match (&req.remote, req.gpg_key) {
        (Some(r), Some(key)) => {
            add_verified_remote(&req.sysroot.join("ostree/repo"), r, key, req.tls_ca)?;
            repo.reload_config(gio::Cancellable::NONE)
                .context("reloading the sysroot repository config")?;
            Some(r.name.clone())
        }
        (None, Some(_)) => bail!("a trusted key needs a remote to belong to"),
        _ => None,
    };
    let gpg_verify = req.gpg_verify || keyed_remote.is_some();
    // libostree pulls from a `file://` URL directly, but an `http://` one only through a
    // remote (and verifies signatures only through one): a temporary one in the sysroot
    // repository's config, removed after the pull.
    let temp_remote = match &keyed_remote {
        None if !url.starts_with("file://") || gpg_verify => Some(TempRemote::add(
            repo,
            "slipway-deploy-source",
            &url,
            gpg_verify,
            false,
            &[],
            req.tls_ca,
        )?),
        _ => None,
    };
    let from = keyed_remote
        .clone()
        .or_else(|| temp_remote.as_ref().map(|t| t.name.to_string()))
        .unwrap_or_else(|| url.clone());
    let seeded = req.seed.map(|dir| seed(req.sysroot, dir)).transpose()?;
    if let Some(f) = req.on_seeded.filter(|_| seeded.is_some()) {
        f();
    }
    pull::pull(
        repo,
        &pull::Source {
            via: &from,
            name: req
                .remote
                .as_ref()
                .map_or(from.as_str(), |r| r.name.as_str()),
            url: &url,
            gpg_verify,
            tls_ca: req.tls_ca,
            tls_ca_origin: None,
        },
        &pull::Request {
            refs: vec![req.ostree_ref.to_string()],
            flags: ostree::RepoPullFlags::NONE,
            depth: 0,
        },
    )
    .with_context(|| format!("pulling {} from {url}", req.ostree_ref))?;
    if let Some(f) = req.on_pulled {
        f();
    }
    let commit = match &temp_remote {
        // The remote's ref is set in `deploy_commit`; a local ref only when there is no
        // remote to follow (one more would keep every old commit from being pruned).
        Some(t) if req.remote.is_some() => t.take(req.ostree_ref)?,
        Some(t) => t.hand_over(req.ostree_ref, None)?,
        None => repo
            .resolve_rev(req.ostree_ref, false)
            .with_context(|| format!("resolving {}", req.ostree_ref))?
            .ok_or_else(|| anyhow!("ref {} missing after pull", req.ostree_ref))?
            .to_string(),
    };
    if let (Some(s), Some(dir)) = (&seeded, req.seed.map(Seed::path)) {
        let (contents, meta) = crate::repo::commit_root(repo, &commit)?;
        if s.contents_checksum == contents && s.metadata_checksum == meta {
            ui::info(format!(
                "{} is commit {commit}'s tree: the pull fetched its commit object and no content",
                dir.display()
            ));
        } else {
            ui::info(format!(
                "{} is not commit {commit}'s tree: the pull fetched what it lacked",
                dir.display()
            ));
        }
    }
    Ok((commit, keyed_remote))
}

/// Import the seed into the sysroot's repository (objects only, no commit).
fn seed(sysroot: &Path, seed: &Seed) -> Result<crate::repo::commit::ImportedTree> {
    let started = std::time::Instant::now();
    let repo = sysroot.join("ostree/repo");
    let imported = match seed {
        Seed::Tree(dir) => {
            ui::info(format!("importing {} into the repository", dir.display()));
            crate::repo::commit::import_tree(&repo, dir, 0)
        }
        Seed::Image(image) => adopt_image(sysroot, &repo, image),
    }
    .with_context(|| format!("importing the seed {}", seed.path().display()))?;
    match seed {
        Seed::Tree(_) => ui::info(format!(
            "imported {}: {} files, {} content objects written ({}) in {:.1} s",
            seed.path().display(),
            imported.files,
            imported.content_objects_written,
            indicatif::HumanBytes(imported.content_bytes_written),
            started.elapsed().as_secs_f64()
        )),
        // libostree's statistics do not count adopted files.
        Seed::Image(_) => ui::info(format!(
            "imported {} in {:.1} s",
            seed.path().display(),
            started.elapsed().as_secs_f64()
        )),
    }
    Ok(imported)
}

/// [`Seed::Image`]: unpack `image` into a directory beside the repository (removed whatever
/// happens), then adopt its files.
fn adopt_image(
    sysroot: &Path,
    repo: &Path,
    image: &Path,
) -> Result<crate::repo::commit::ImportedTree> {
    use crate::sys::cmd::CommandRunExt;
    let beside = sysroot.join("ostree");
    let work = tempfile::Builder::new()
        .prefix("slipway-seed-")
        .tempdir_in(&beside)
        .with_context(|| format!("creating a directory in {}", beside.display()))?;
    let root = work.path().join("root");
    let started = std::time::Instant::now();
    ui::info(format!(
        "unpacking {} into {}",
        image.display(),
        root.display()
    ));
    std::process::Command::new("unsquashfs")
        .args(["-n", "-q", "-d"])
        .arg(&root)
        .arg(image)
        .run()
        .with_context(|| format!("unpacking {}", image.display()))?;
    ui::info(format!(
        "unpacked {} in {:.1} s; checksumming and moving its files into the repository",
        image.display(),
        started.elapsed().as_secs_f64()
    ));
    crate::repo::commit::adopt_tree(repo, &root)
}

/// Deploy `commit` with an origin that follows the request's remote (its ref set to the
/// commit) or the local ref, and write it as the only deployment; its root directory.
fn deploy_commit(req: &DeployRequest, sysroot: &ostree::Sysroot, commit: &str) -> Result<PathBuf> {
    let repo = sysroot.repo();
    let refspec = match &req.remote {
        Some(r) => {
            // The ref as the remote's, so `upgrade` follows the remote.
            repo.set_ref_immediate(
                Some(&r.name),
                req.ostree_ref,
                Some(commit),
                gio::Cancellable::NONE,
            )
            .with_context(|| format!("setting {}:{}", r.name, req.ostree_ref))?;
            format!("{}:{}", r.name, req.ostree_ref)
        }
        None => req.ostree_ref.to_string(),
    };
    let origin = sysroot.origin_new_from_refspec(&refspec);
    let kargs: Vec<&str> = req.kernel_args.iter().map(String::as_str).collect();
    let dep = sysroot
        .deploy_tree(
            Some(req.osname),
            commit,
            Some(&origin),
            None,
            &kargs,
            gio::Cancellable::NONE,
        )
        .with_context(|| format!("deploying {commit}"))?;
    sysroot
        .simple_write_deployment(
            Some(req.osname),
            &dep,
            None,
            ostree::SysrootSimpleWriteDeploymentFlags::NONE,
            gio::Cancellable::NONE,
        )
        .context("writing the deployment")?;
    Ok(req.sysroot.join(sysroot.deployment_dirpath(&dep).as_str()))
}

/// Add `r` to the repository at `repo_path` (its own config, not `remotes.d`) with
/// `gpg-verify=true` and `key` imported as its only trusted key; `tls_ca`, a CA file of this
/// machine, checks an `https://` server for the pull (see [`settle_remote_ca`]).
fn add_verified_remote(
    repo_path: &Path,
    r: &Remote,
    key: &Path,
    tls_ca: Option<&Path>,
) -> Result<()> {
    let repo = ostree::Repo::new(&gio::File::for_path(repo_path));
    repo.open(gio::Cancellable::NONE)
        .with_context(|| format!("opening {}", repo_path.display()))?;
    let opts = glib::VariantDict::new(None);
    opts.insert_value("gpg-verify", &true.to_variant());
    // With a key, the summary too (it says which commit is the newest).
    opts.insert_value("gpg-verify-summary", &true.to_variant());
    if let Some(ca) = tls_ca {
        let ca = std::path::absolute(ca).with_context(|| format!("{}", ca.display()))?;
        opts.insert_value("tls-ca-path", &ca.display().to_string().to_variant());
    }
    repo.remote_add(
        &r.name,
        Some(&r.url),
        Some(&opts.end()),
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("adding the remote {} ({})", r.name, r.url))?;
    let stream = gio::File::for_path(key)
        .read(gio::Cancellable::NONE)
        .with_context(|| format!("reading the trusted key {}", key.display()))?;
    let n = import_every_key(&repo, &r.name, stream.upcast_ref())
        .with_context(|| format!("importing {} for the remote {}", key.display(), r.name))?;
    if n == 0 {
        bail!("{} holds no public key", key.display());
    }
    Ok(())
}

/// After the pull: `r`'s CA file copied into the deployment at `root` and the remote in the
/// repository at `repo_path` pointed at it there (`/etc/...`, where the booted host finds
/// it), instead of at the installer's file the pull used.
fn settle_remote_ca(repo_path: &Path, root: &Path, r: &Remote) -> Result<()> {
    let Some(ca) = &r.tls_ca else {
        return Ok(());
    };
    let rel = copy_ca(root, &r.name, ca)?;
    let repo = ostree::Repo::new(&gio::File::for_path(repo_path));
    repo.open(gio::Cancellable::NONE)
        .with_context(|| format!("opening {}", repo_path.display()))?;
    let config = repo.copy_config();
    config.set_string(
        &format!("remote \"{}\"", r.name),
        "tls-ca-path",
        &format!("/{rel}"),
    );
    repo.write_config(&config)
        .with_context(|| format!("writing the config of {}", repo_path.display()))
}

/// `ca` copied into the deployment at `root` (inside its tree); the path there.
fn copy_ca(root: &Path, name: &str, ca: &Path) -> Result<String> {
    let pem = std::fs::read(ca).with_context(|| format!("reading the CA file {}", ca.display()))?;
    crate::sys::http::parse_ca(&pem, &ca.display().to_string())?;
    let rel = remote_ca_path(name);
    crate::sys::tree::Tree::open(root)?.write_file(&rel, &mut pem.as_slice(), 0o644)?;
    Ok(rel)
}

/// Import every key of `stream` as trusted keys of remote `name`; how many were imported.
/// libostree imports every key when its list of key ids is NULL; the binding passes a slice
/// (an empty one is an empty list, and imports nothing: "Unable to export keys: No data"),
/// so this calls the C function itself.
fn import_every_key(
    repo: &ostree::Repo,
    name: &str,
    stream: &gio::InputStream,
) -> std::result::Result<u32, glib::Error> {
    use ostree::glib::translate::{FromGlibPtrFull, ToGlibPtr};
    let mut imported: std::os::raw::c_uint = 0;
    let mut error: *mut glib::ffi::GError = std::ptr::null_mut();
    let name: glib::GString = name.into();
    // SAFETY: every pointer is valid for the call (the repository and stream are borrowed,
    // `name` lives to the end of the function); NULL key ids and cancellable are allowed; on
    // failure libostree hands over a new GError, which `from_glib_full` takes.
    let ok = unsafe {
        ostree::ffi::ostree_repo_remote_gpg_import(
            repo.to_glib_none().0,
            name.as_ptr(),
            stream.to_glib_none().0,
            std::ptr::null(),
            &mut imported,
            std::ptr::null_mut(),
            &mut error,
        )
    };
    if ok == glib::ffi::GFALSE {
        // SAFETY: libostree set `error` when it returned FALSE.
        return Err(unsafe { glib::Error::from_glib_full(error) });
    }
    Ok(imported)
}

/// The remote's configuration file inside a deployment's /etc, with its key and CA file
/// beside it; everything written inside the deployment's tree.
pub fn write_remote(deployment_root: &Path, r: &Remote) -> Result<()> {
    let tree = crate::sys::tree::Tree::open(deployment_root)?;
    let mut text = format!(
        "[remote \"{}\"]\nurl={}\ngpg-verify={}\n",
        r.name, r.url, r.gpg_verify
    );
    if let Some(key) = &r.gpg_key {
        let rel = remote_key_path(&r.name);
        let mut f =
            std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?;
        tree.write_file(&rel, &mut f, 0o644)?;
        text.push_str(&format!("gpgkeypath=/{rel}\ngpg-verify-summary=true\n"));
    }
    if let Some(ca) = &r.tls_ca {
        let rel = copy_ca(deployment_root, &r.name, ca)?;
        text.push_str(&format!("tls-ca-path=/{rel}\n"));
    }
    let rel = format!("etc/ostree/remotes.d/{}.conf", r.name);
    tree.write_file(&rel, &mut text.as_bytes(), 0o644)
}

/// Append to a deployment's `/etc/fstab`.
pub fn add_fstab_lines(deployment_root: &Path, lines: &[String]) -> Result<()> {
    let p = deployment_root.join("etc/fstab");
    let mut text = std::fs::read_to_string(&p).unwrap_or_default();
    text = text
        .lines()
        .filter(|l| !l.starts_with("# UNCONFIGURED FSTAB"))
        .map(|l| format!("{l}\n"))
        .collect();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A remote slipway defines with a key verifies commits and the summary: in a
    /// repository's config (the installer) and in a deployment's remotes.d (the image).
    #[test]
    fn remotes_with_a_key_verify_the_summary_too() {
        let d = tempfile::tempdir().unwrap();
        let repo_path = d.path().join("repo");
        let repo = ostree::Repo::new_for_path(&repo_path);
        repo.create(ostree::RepoMode::Archive, gio::Cancellable::NONE)
            .unwrap();
        let key = d.path().join("key.gpg");
        // Any OpenPGP public key block will do for the import; none is needed for the file.
        let r = Remote {
            name: "debian".into(),
            url: "http://192.0.2.1/repo".into(),
            gpg_verify: true,
            gpg_key: Some(key.clone()),
            tls_ca: None,
        };
        // A real public key, as `pxe build --trusted-key` puts into the installer.
        let home = d.path().join("gnupg");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let gpg = |args: &[&str]| {
            let o = std::process::Command::new("gpg")
                .arg("--homedir")
                .arg(&home)
                .args(["--batch", "--passphrase", "", "--quiet"])
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            o.stdout
        };
        gpg(&[
            "--quick-gen-key",
            "slipway-deploy-test",
            "ed25519",
            "sign",
            "never",
        ]);
        std::fs::write(&key, gpg(&["--export", "slipway-deploy-test"])).unwrap();
        add_verified_remote(&repo_path, &r, &key, None).unwrap();
        let _ = std::process::Command::new("gpgconf")
            .arg("--homedir")
            .arg(&home)
            .args(["--kill", "all"])
            .status();
        let repo = ostree::Repo::new_for_path(&repo_path);
        repo.open(gio::Cancellable::NONE).unwrap();
        assert!(repo.remote_get_gpg_verify("debian").unwrap());
        assert!(repo.remote_get_gpg_verify_summary("debian").unwrap());
        let keyring = repo_path.join("debian.trustedkeys.gpg");
        assert!(
            std::fs::metadata(&keyring).is_ok_and(|m| m.len() > 0),
            "no key imported into {}",
            keyring.display()
        );
        // Something that is no key: refused, naming the file.
        std::fs::write(&key, b"not a key").unwrap();
        let other = Remote {
            name: "other".into(),
            ..r.clone()
        };
        let e = add_verified_remote(&repo_path, &other, &key, None).unwrap_err();
        assert!(
            format!("{e:#}").contains(&key.display().to_string()),
            "{e:#}"
        );

        let root = d.path().join("deployment");
        std::fs::create_dir_all(&root).unwrap();
        write_remote(&root, &r).unwrap();
        let conf = std::fs::read_to_string(root.join("etc/ostree/remotes.d/debian.conf")).unwrap();
        assert!(conf.contains("gpg-verify-summary=true"), "{conf}");
        let without = Remote { gpg_key: None, ..r };
        write_remote(&root, &without).unwrap();
        let conf = std::fs::read_to_string(root.join("etc/ostree/remotes.d/debian.conf")).unwrap();
        assert!(!conf.contains("gpg-verify-summary"), "{conf}");
    }

    #[test]
    fn appended_kernel_arguments_replace_defaults_by_name() {
        let d = vec![
            "root=LABEL=root".to_string(),
            "rd.retry=60".into(),
            "console=tty0".into(),
        ];
        assert_eq!(
            merge_kernel_args(
                d,
                &["rd.retry=10".into(), "console=ttyS1".into(), "quiet".into()]
            ),
            [
                "root=LABEL=root",
                "console=tty0",
                "rd.retry=10",
                "console=ttyS1",
                "quiet"
            ]
        );
    }

    #[test]
    fn osnames_are_validated() {
        validate_osname("debian").unwrap();
        validate_osname("fedora-coreos").unwrap();
        assert!(validate_osname("a/b").is_err());
        assert!(validate_osname("").is_err());
    }

    #[test]
    fn remote_file_is_written_into_the_deployment() {
        let d = tempfile::tempdir().unwrap();
        write_remote(
            d.path(),
            &Remote {
                name: "debian".into(),
                url: "http://10.0.0.1/repo".into(),
                gpg_verify: false,
                gpg_key: None,
                tls_ca: None,
            },
        )
        .unwrap();
        let t = std::fs::read_to_string(d.path().join("etc/ostree/remotes.d/debian.conf")).unwrap();
        assert_eq!(
            t,
            "[remote \"debian\"]\nurl=http://10.0.0.1/repo\ngpg-verify=false\n"
        );
    }

    /// An `https://` remote's CA goes into the deployment, inside its tree (an absolute
    /// symlink on the way is the deployment's, not this machine's), and the remote names it;
    /// a file that is no CA is refused, naming it.
    #[test]
    fn a_remote_ca_is_copied_into_the_deployment_and_named() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("usr/etc")).unwrap();
        std::os::unix::fs::symlink("/usr/etc", root.join("etc")).unwrap();
        let ca = d.path().join("ca.pem");
        let pem = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        std::fs::write(&ca, pem).unwrap();
        let r = Remote {
            name: "debian".into(),
            url: "https://10.0.0.1/repo".into(),
            gpg_verify: false,
            gpg_key: None,
            tls_ca: Some(ca.clone()),
        };
        write_remote(&root, &r).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("usr/etc/slipway/tls/debian-ca.pem")).unwrap(),
            pem
        );
        let t = std::fs::read_to_string(root.join("usr/etc/ostree/remotes.d/debian.conf"));
        assert!(
            t.unwrap()
                .ends_with("tls-ca-path=/etc/slipway/tls/debian-ca.pem\n"),
            "no tls-ca-path"
        );
        std::fs::write(&ca, "not a certificate").unwrap();
        let e = format!("{:#}", write_remote(&root, &r).unwrap_err());
        assert!(e.contains(&ca.display().to_string()), "{e}");
    }

    #[test]
    fn fstab_drops_the_unconfigured_marker() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/fstab"),
            "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n",
        )
        .unwrap();
        add_fstab_lines(d.path(), &["LABEL=boot /boot ext4 defaults 0 2".into()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("etc/fstab")).unwrap(),
            "LABEL=boot /boot ext4 defaults 0 2\n"
        );
    }
}
