//! The treefile: a JSON description of a host, with rpm-ostree's key names where the meaning
//! is the same.
//!
//! Parsing is strict: every file is checked on its own (so an error names the file that holds
//! the bad key and the key's path inside it), includes are resolved depth first (scalars of the
//! including file override, arrays concatenate after the included ones, maps merge), cycles
//! are errors, and every path resolves relative to the treefile that names it. The result is a
//! flattened [`Treefile`] whose canonical JSON is part of the compose input hash and is stored
//! in each commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sys::json;

pub mod services;

use services::{ContainerImage, ImageSource, Service};

/// Default Debian suite.
pub const DEFAULT_SUITE: &str = "bookworm";

/// A file the treefile refers to: its path as shown to people (relative to the top treefile's
/// directory, so it does not depend on where the checkout lives) and its real location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub display: String,
    pub path: PathBuf,
}

impl Serialize for FileRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.display)
    }
}

/// An extra apt repository.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AptRepo {
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
    #[serde(rename = "signed-by")]
    pub signed_by: FileRef,
}

/// A file to copy into the tree: source on the build host, absolute destination in the tree.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AddFile {
    pub source: FileRef,
    pub dest: String,
}

/// An inline postprocess script, with where it was defined (for error messages).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Script {
    #[serde(skip)]
    pub origin: String,
    pub text: String,
}

/// The flattened treefile.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Treefile {
    #[serde(rename = "ref")]
    pub ostree_ref: String,
    pub suite: String,
    pub packages: Vec<String>,
    pub exclude_packages: Vec<String>,
    pub repos: Vec<AptRepo>,
    pub add_files: Vec<AddFile>,
    pub postprocess: Vec<Script>,
    pub postprocess_script: Option<FileRef>,
    pub remove_files: Vec<String>,
    pub units: Vec<String>,
    pub default_target: Option<String>,
    pub etc_group_members: Vec<String>,
    pub initramfs_args: Vec<String>,
    pub automatic_version_prefix: Option<String>,
    pub add_commit_metadata: BTreeMap<String, Value>,
    /// `documentation`: false leaves out what packages ship under /usr/share/doc (but each
    /// package's `copyright`), /usr/share/man and /usr/share/info.
    pub documentation: bool,
    /// `install-langs`: when given, only these languages' translations under
    /// /usr/share/locale are installed (none for an empty list).
    pub install_langs: Option<Vec<String>>,
    /// Images bound to the commit (`container-images`).
    pub container_images: Vec<ContainerImage>,
    /// Containers the host runs from them.
    pub services: Vec<Service>,
    /// Which treefile (and key) asked for each package, for error messages.
    #[serde(skip)]
    pub package_origins: BTreeMap<String, String>,
    /// Every treefile read, top first.
    #[serde(skip)]
    pub sources: Vec<PathBuf>,
}

/// One file as written: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Fragment {
    #[serde(rename = "ref")]
    ostree_ref: Option<String>,
    suite: Option<String>,
    packages: Option<Vec<String>>,
    exclude_packages: Option<Vec<String>>,
    repos: Option<Vec<RawRepo>>,
    include: Option<OneOrMany>,
    add_files: Option<Vec<(String, String)>>,
    postprocess: Option<Vec<String>>,
    postprocess_script: Option<String>,
    remove_files: Option<Vec<String>>,
    units: Option<Vec<String>>,
    default_target: Option<String>,
    etc_group_members: Option<Vec<String>>,
    initramfs_args: Option<Vec<String>>,
    automatic_version_prefix: Option<String>,
    add_commit_metadata: Option<BTreeMap<String, Value>>,
    documentation: Option<bool>,
    install_langs: Option<Vec<String>>,
    container_images: Option<Vec<services::RawImage>>,
    services: Option<Vec<services::RawService>>,
}

/// An apt repository as written (`repos`, and an image's `repos`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRepo {
    uri: String,
    suite: String,
    components: Vec<String>,
    signed_by: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// One treefile as written: JSON, an object, `//` comment keys removed, every key known.
fn read_fragment(file: &Path) -> Result<Fragment> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading treefile {}", file.display()))?;
    let mut value: Value = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: line {} column {}: invalid JSON: {e}",
            file.display(),
            e.line(),
            e.column()
        )
    })?;
    if !value.is_object() {
        bail!("{}: a treefile must be a JSON object", file.display());
    }
    json::strip_comments(&mut value);
    json::deserialize(value).map_err(|e| match e.path {
        None => anyhow!("{}: {}", file.display(), e.error),
        Some(path) => anyhow!("{}: {path}: {}", file.display(), e.error),
    })
}

/// `de`, `pt_BR`, `sr@latin`, `zh_Hant`: a directory name of /usr/share/locale.
fn is_language(l: &str) -> bool {
    let (base, modifier) = match l.split_once('@') {
        Some((b, m)) => (b, Some(m)),
        None => (l, None),
    };
    let (lang, region) = match base.split_once('_') {
        Some((a, r)) => (a, Some(r)),
        None => (base, None),
    };
    (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_lowercase())
        && region.is_none_or(|r| {
            (2..=4).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric())
        })
        && modifier.is_none_or(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The dpkg filter that leaves the info manuals out (`documentation: false`).
pub const INFO_EXCLUDED: &str = "path-exclude=/usr/share/info/*";

impl Treefile {
    /// dpkg's `path-exclude`/`path-include` options for `documentation` and `install-langs`,
    /// in dpkg's order (the last matching pattern wins).
    pub fn dpkg_path_filters(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.documentation {
            out.push("path-exclude=/usr/share/doc/*".to_string());
            out.push("path-include=/usr/share/doc/*/copyright".to_string());
            out.push("path-exclude=/usr/share/man/*".to_string());
            out.push(INFO_EXCLUDED.to_string());
        }
        if let Some(langs) = &self.install_langs {
            out.push("path-exclude=/usr/share/locale/*".to_string());
            out.push("path-include=/usr/share/locale/locale.alias".to_string());
            for l in langs {
                // dpkg's patterns are fnmatch(3) without FNM_PATHNAME: `*` crosses `/`.
                out.push(format!("path-include=/usr/share/locale/{l}/*"));
                if !l.contains('_') && !l.contains('@') {
                    out.push(format!("path-include=/usr/share/locale/{l}_*"));
                    out.push(format!("path-include=/usr/share/locale/{l}@*"));
                }
            }
        }
        out
    }
}

/// State threaded through the include walk.
struct Loader {
    top_dir: PathBuf,
    stack: Vec<PathBuf>,
    sources: Vec<PathBuf>,
}

/// Accumulated, not yet validated result.
#[derive(Default)]
struct Acc {
    ostree_ref: Option<String>,
    suite: Option<String>,
    packages: Vec<String>,
    exclude_packages: Vec<String>,
    repos: Vec<AptRepo>,
    add_files: Vec<AddFile>,
    postprocess: Vec<Script>,
    postprocess_script: Option<FileRef>,
    remove_files: Vec<String>,
    units: Vec<String>,
    default_target: Option<String>,
    etc_group_members: Vec<String>,
    initramfs_args: Vec<String>,
    automatic_version_prefix: Option<String>,
    add_commit_metadata: BTreeMap<String, Value>,
    documentation: Option<bool>,
    install_langs: Option<Vec<String>>,
    container_images: Vec<ContainerImage>,
    services: Vec<Service>,
    package_origins: BTreeMap<String, String>,
}

impl Loader {
    fn file_ref(&self, file: &Path, key: &str, raw: &str) -> Result<FileRef> {
        let dir = file.parent().unwrap_or(Path::new("."));
        let path = dir.join(raw);
        let meta = std::fs::metadata(&path)
            .map_err(|e| anyhow!("{}: {key}: {}: {e}", file.display(), path.display()))?;
        if !meta.is_file() {
            bail!(
                "{}: {key}: {} is not a regular file",
                file.display(),
                path.display()
            );
        }
        let display = relative_display(&self.top_dir, &path);
        Ok(FileRef { display, path })
    }

    fn load(&mut self, file: &Path, acc: &mut Acc) -> Result<()> {
        let canonical = std::fs::canonicalize(file)
            .with_context(|| format!("reading treefile {}", file.display()))?;
        if let Some(pos) = self.stack.iter().position(|p| p == &canonical) {
            let mut chain: Vec<String> = self.stack[pos..]
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            chain.push(canonical.display().to_string());
            bail!("include cycle: {}", chain.join(" -> "));
        }
        let mut frag = read_fragment(file)?;

        self.stack.push(canonical.clone());
        self.sources.push(file.to_path_buf());
        let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        if let Some(inc) = frag.include.take() {
            for (i, name) in inc.into_vec().into_iter().enumerate() {
                let child = dir.join(&name);
                if !child.exists() {
                    bail!(
                        "{}: include[{i}]: {}: no such file",
                        file.display(),
                        child.display()
                    );
                }
                self.load(&child, acc)?;
            }
        }
        self.stack.pop();

        self.merge(file, frag, acc)
    }

    /// One file's keys into the accumulated treefile (after its includes: scalars override,
    /// arrays concatenate), each checked where it is written.
    fn merge(&self, file: &Path, mut frag: Fragment, acc: &mut Acc) -> Result<()> {
        self.merge_packages(file, &mut frag, acc)?;
        let fname = file.display().to_string();
        if let Some(r) = frag.ostree_ref {
            acc.ostree_ref = Some(r);
        }
        if let Some(s) = frag.suite {
            acc.suite = Some(s);
        }
        for (i, (src, dest)) in frag.add_files.unwrap_or_default().into_iter().enumerate() {
            let key = format!("{fname}: add-files[{i}][1]");
            if !dest.starts_with('/') {
                bail!("{key}: `{dest}` must be an absolute path in the tree");
            }
            let rel = crate::sys::tree::check_path(&key, &dest)?;
            if rel == "var" || rel.starts_with("var/") {
                bail!(
                    "{key}: `{dest}` is under /var, which an OSTree host never sees from a commit; use a tmpfiles.d entry instead"
                );
            }
            let source = self.file_ref(file, &format!("add-files[{i}][0]"), &src)?;
            acc.add_files.push(AddFile { source, dest });
        }
        for (i, text) in frag.postprocess.unwrap_or_default().into_iter().enumerate() {
            acc.postprocess.push(Script {
                origin: format!("{fname}: postprocess[{i}]"),
                text,
            });
        }
        if let Some(s) = frag.postprocess_script {
            acc.postprocess_script = Some(self.file_ref(file, "postprocess-script", &s)?);
        }
        for (i, f) in frag
            .remove_files
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            crate::sys::tree::check_path(&format!("{fname}: remove-files[{i}]"), &f)?;
            acc.remove_files.push(f);
        }
        for (i, u) in frag.units.unwrap_or_default().into_iter().enumerate() {
            if !u.contains('.') || u.contains('/') || u.starts_with('-') {
                bail!(
                    "{fname}: units[{i}]: `{u}` is not a systemd unit name (e.g. docker.service)"
                );
            }
            acc.units.push(u);
        }
        if let Some(t) = frag.default_target {
            if !t.ends_with(".target") || t.contains('/') || t.starts_with('-') {
                bail!("{fname}: default-target: `{t}` is not a target unit");
            }
            acc.default_target = Some(t);
        }
        acc.etc_group_members
            .extend(frag.etc_group_members.unwrap_or_default());
        acc.initramfs_args
            .extend(frag.initramfs_args.unwrap_or_default());
        if let Some(p) = frag.automatic_version_prefix {
            acc.automatic_version_prefix = Some(p);
        }
        for (k, v) in frag.add_commit_metadata.unwrap_or_default() {
            acc.add_commit_metadata.insert(k, v);
        }
        if let Some(d) = frag.documentation {
            acc.documentation = Some(d);
        }
        if let Some(langs) = frag.install_langs {
            for (i, l) in langs.iter().enumerate() {
                if !is_language(l) {
                    bail!(
                        "{fname}: install-langs[{i}]: `{l}` is not a language as /usr/share/locale names them (e.g. de, pt_BR, sr@latin)"
                    );
                }
            }
            acc.install_langs.get_or_insert_with(Vec::new).extend(langs);
        }
        for (i, raw) in frag
            .container_images
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let img = self.image(file, i, raw)?;
            acc.container_images.push(img);
        }
        for (i, raw) in frag.services.unwrap_or_default().into_iter().enumerate() {
            acc.services
                .push(services::service(&format!("{fname}: services[{i}]"), raw)?);
        }
        Ok(())
    }

    /// `packages`, `exclude-packages` and `repos` of one file.
    fn merge_packages(&self, file: &Path, frag: &mut Fragment, acc: &mut Acc) -> Result<()> {
        let fname = file.display().to_string();
        for (i, p) in frag
            .packages
            .take()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            // rpm-ostree allows several whitespace-separated names in one entry.
            for name in p.split_whitespace() {
                check_package_name(name)
                    .map_err(|why| anyhow!("{fname}: packages[{i}]: `{name}` {why}"))?;
                acc.package_origins
                    .entry(name.to_string())
                    .or_insert_with(|| format!("{fname}: packages[{i}]"));
                acc.packages.push(name.to_string());
            }
        }
        for (i, p) in frag
            .exclude_packages
            .take()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            for name in p.split_whitespace() {
                check_package_name(name)
                    .map_err(|why| anyhow!("{fname}: exclude-packages[{i}]: `{name}` {why}"))?;
                acc.exclude_packages.push(name.to_string());
            }
        }
        for (i, r) in frag
            .repos
            .take()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let repo = self.repo(file, &format!("repos[{i}]"), r)?;
            acc.repos.push(repo);
        }
        Ok(())
    }

    /// An apt repository entry (`key`: `repos[i]`, or an image's).
    fn repo(&self, file: &Path, key: &str, r: RawRepo) -> Result<AptRepo> {
        let fname = file.display();
        let scheme_ok = ["http://", "https://", "file:/"]
            .iter()
            .any(|s| r.uri.starts_with(s));
        if !scheme_ok {
            bail!(
                "{fname}: {key}.uri: `{}` must be an http, https or file URI",
                r.uri
            );
        }
        if r.components.is_empty() && !r.suite.ends_with('/') {
            bail!(
                "{fname}: {key}.components: empty (only a flat repository, whose suite ends in `/`, has no components)"
            );
        }
        let signed_by = self.file_ref(file, &format!("{key}.signed-by"), &r.signed_by)?;
        Ok(AptRepo {
            uri: r.uri,
            suite: r.suite,
            components: r.components,
            signed_by,
        })
    }

    /// A `container-images` entry: paths resolve relative to `file`, as everywhere else.
    fn image(&self, file: &Path, i: usize, raw: services::RawImage) -> Result<ContainerImage> {
        let fname = file.display().to_string();
        let key = format!("{fname}: container-images[{i}]");
        services::check_image_names(&key, &raw)?;
        let config = services::image_config(&key, &raw)?;
        let what = format!("{}:{}", raw.name, raw.tag);
        let source = match (raw.packages, raw.archive) {
            (Some(pkgs), None) => {
                let mut packages = Vec::new();
                for (j, p) in pkgs.iter().enumerate() {
                    for name in p.split_whitespace() {
                        check_package_name(name).map_err(|why| {
                            anyhow!("{key}.packages[{j}] ({what}): `{name}` {why}")
                        })?;
                        packages.push(name.to_string());
                    }
                }
                dedup_keep_order(&mut packages);
                let mut repos = Vec::new();
                for (j, r) in raw.repos.unwrap_or_default().into_iter().enumerate() {
                    repos.push(self.repo(file, &format!("container-images[{i}].repos[{j}]"), r)?);
                }
                ImageSource::Packages { packages, repos }
            }
            (None, Some(a)) => {
                let path = file.parent().unwrap_or(Path::new(".")).join(&a);
                if !path.exists() {
                    bail!("{key}.archive ({what}): {}: no such file", path.display());
                }
                ImageSource::Archive(self.file_ref(
                    file,
                    &format!("container-images[{i}].archive ({what})"),
                    &a,
                )?)
            }
            _ => unreachable!("checked by check_image_names"),
        };
        let mut add_files = Vec::new();
        for (j, (src, dest)) in raw.add_files.unwrap_or_default().into_iter().enumerate() {
            let k = format!("{key}.add-files[{j}][1] ({what})");
            if !dest.starts_with('/') {
                bail!("{k}: `{dest}` must be an absolute path in the image");
            }
            crate::sys::tree::check_path(&k, &dest)?;
            let source = self.file_ref(
                file,
                &format!("container-images[{i}].add-files[{j}][0] ({what})"),
                &src,
            )?;
            add_files.push(AddFile { source, dest });
        }
        let postprocess = raw
            .postprocess
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(j, text)| Script {
                origin: format!("{key}.postprocess[{j}] ({what})"),
                text,
            })
            .collect();
        Ok(ContainerImage {
            name: raw.name,
            tag: raw.tag,
            source,
            add_files,
            postprocess,
            config,
            origin: format!("{key} ({what})"),
        })
    }
}

/// `path` relative to `base` when it lies below it, else with `..` components.
fn relative_display(base: &Path, path: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (b, p) = (abs(base), abs(path));
    let bc: Vec<_> = b.components().collect();
    let pc: Vec<_> = p.components().collect();
    let common = bc.iter().zip(&pc).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..bc.len() {
        out.push("..");
    }
    for c in &pc[common..] {
        out.push(c);
    }
    out.display().to_string()
}

/// Debian package names (policy 5.6.1: lower case letters, digits, `+`, `-`, `.`; at least two
/// characters, starting with a letter or digit), optionally with `:ARCH` and `=VERSION`, as
/// apt takes them. A leading `-` would reach apt as an option.
fn check_package_name(spec: &str) -> std::result::Result<(), &'static str> {
    let (name_arch, version) = match spec.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    };
    let (name, arch) = match name_arch.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (name_arch, None),
    };
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_ok
        || name.len() < 2
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
    {
        return Err(
            "is not a Debian package name (lower case letters, digits, `+`, `-`, `.`, starting with a letter or digit)",
        );
    }
    if let Some(a) = arch
        && (a.is_empty()
            || !a
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err("has an invalid architecture after `:`");
    }
    if let Some(v) = version
        && (!v.starts_with(|c: char| c.is_ascii_digit())
            || !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c)))
    {
        return Err("has an invalid version after `=`");
    }
    Ok(())
}

fn dedup_keep_order(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

impl Treefile {
    /// Load, resolve includes, and validate.
    pub fn load(path: &Path) -> Result<Self> {
        let top_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut loader = Loader {
            top_dir,
            stack: Vec::new(),
            sources: Vec::new(),
        };
        let mut acc = Acc::default();
        loader.load(path, &mut acc)?;
        let top = path.display().to_string();

        let ostree_ref = acc.ostree_ref.ok_or_else(|| {
            anyhow!("{top}: ref: missing (no treefile in the include chain sets it)")
        })?;
        ostree::validate_rev(&ostree_ref).map_err(|e| anyhow!("{top}: ref: {e}"))?;
        let suite = acc.suite.unwrap_or_else(|| DEFAULT_SUITE.to_string());
        if suite.is_empty() || suite.contains(['/', ' ']) {
            bail!("{top}: suite: `{suite}` is not a Debian suite name");
        }
        dedup_keep_order(&mut acc.packages);
        if acc.packages.is_empty() {
            bail!("{top}: packages: no packages listed");
        }
        for p in &acc.exclude_packages {
            if acc.packages.contains(p) {
                bail!("{top}: exclude-packages: `{p}` is also listed in packages");
            }
        }
        dedup_keep_order(&mut acc.units);
        dedup_keep_order(&mut acc.etc_group_members);
        if let Some(p) = &acc.automatic_version_prefix
            && p.trim().is_empty()
        {
            bail!("{top}: automatic-version-prefix: empty");
        }
        for (k, v) in &acc.add_commit_metadata {
            if k.is_empty() {
                bail!("{top}: add-commit-metadata: empty key");
            }
            if crate::repo::variant::json_to_variant(v).is_none() {
                bail!(
                    "{top}: add-commit-metadata.{k}: only strings, booleans, numbers and arrays of strings are supported"
                );
            }
        }

        services::check_all(&top, &acc.container_images, &acc.services)?;

        Ok(Treefile {
            ostree_ref,
            suite,
            packages: acc.packages,
            exclude_packages: acc.exclude_packages,
            repos: acc.repos,
            add_files: acc.add_files,
            postprocess: acc.postprocess,
            postprocess_script: acc.postprocess_script,
            remove_files: acc.remove_files,
            units: acc.units,
            default_target: acc.default_target,
            etc_group_members: acc.etc_group_members,
            initramfs_args: acc.initramfs_args,
            automatic_version_prefix: acc.automatic_version_prefix,
            add_commit_metadata: acc.add_commit_metadata,
            documentation: acc.documentation.unwrap_or(true),
            install_langs: acc.install_langs.map(|mut l| {
                dedup_keep_order(&mut l);
                l
            }),
            container_images: acc.container_images,
            services: acc.services,
            package_origins: acc.package_origins,
            sources: loader.sources,
        })
    }

    /// Canonical JSON of the flattened treefile (sorted keys, no host paths).
    pub fn canonical_json(&self) -> String {
        let v = serde_json::to_value(self).expect("treefile serializes");
        // serde_json's default map is a BTreeMap, so object keys come out sorted.
        serde_json::to_string(&v).expect("value serializes")
    }

    /// Every external file the treefile refers to, in a stable order.
    pub fn referenced_files(&self) -> Vec<&FileRef> {
        let mut v: Vec<&FileRef> = self
            .repos
            .iter()
            .map(|r| &r.signed_by)
            .chain(self.add_files.iter().map(|f| &f.source))
            .chain(self.postprocess_script.iter())
            .chain(self.container_images.iter().flat_map(|img| {
                let own: Vec<&FileRef> = match &img.source {
                    ImageSource::Packages { repos, .. } => {
                        repos.iter().map(|r| &r.signed_by).collect()
                    }
                    ImageSource::Archive(f) => vec![f],
                };
                own.into_iter()
                    .chain(img.add_files.iter().map(|f| &f.source))
            }))
            .collect();
        v.sort_by(|a, b| a.display.cmp(&b.display));
        v.dedup_by(|a, b| a.display == b.display);
        v
    }

    /// Where a package was asked for, if the treefile names it directly.
    pub fn origin_of(&self, package: &str) -> Option<&str> {
        self.package_origins.get(package).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn includes_merge_scalars_override_arrays_concatenate() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "base.json",
            r#"{"ref": "base/ref", "packages": ["systemd", "dracut"], "units": ["ssh.service"], "add-commit-metadata": {"a": "1", "b": "base"}}"#,
        );
        write(
            d.path(),
            "docker.json",
            r#"{"packages": ["docker.io"], "units": ["docker.service"], "default-target": "graphical.target"}"#,
        );
        let top = write(
            d.path(),
            "top.json",
            r#"{"include": ["base.json", "docker.json"], "ref": "top/ref", "packages": ["systemd", "vim"], "default-target": "multi-user.target", "add-commit-metadata": {"b": "top"}}"#,
        );
        let t = Treefile::load(&top).unwrap();
        assert_eq!(t.ostree_ref, "top/ref");
        assert_eq!(t.suite, DEFAULT_SUITE);
        assert_eq!(t.packages, ["systemd", "dracut", "docker.io", "vim"]);
        assert_eq!(t.units, ["ssh.service", "docker.service"]);
        assert_eq!(t.default_target.as_deref(), Some("multi-user.target"));
        assert_eq!(t.add_commit_metadata["a"], "1");
        assert_eq!(t.add_commit_metadata["b"], "top");
        assert!(
            t.origin_of("docker.io")
                .unwrap()
                .contains("docker.json: packages[0]")
        );
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "inc.json",
            r#"{"repos": [{"uri": "http://x", "suite": "s", "components": ["main"], "signed-by": "k.gpg", "colour": 1}]}"#,
        );
        write(d.path(), "k.gpg", "key");
        let top = write(
            d.path(),
            "top.json",
            r#"{"include": "inc.json", "ref": "r", "packages": ["aa"]}"#,
        );
        let err = format!("{:#}", Treefile::load(&top).unwrap_err());
        assert!(err.contains("inc.json"), "{err}");
        assert!(err.contains("repos[0]"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn wrong_type_names_key_path() {
        let d = tempfile::tempdir().unwrap();
        let top = write(d.path(), "t.json", r#"{"ref": "r", "packages": ["aa", 3]}"#);
        let err = format!("{:#}", Treefile::load(&top).unwrap_err());
        assert!(err.contains("t.json: packages[1]"), "{err}");
    }

    #[test]
    fn missing_file_names_key() {
        let d = tempfile::tempdir().unwrap();
        let top = write(
            d.path(),
            "t.json",
            r#"{"ref": "r", "packages": ["aa"], "add-files": [["nope.conf", "/etc/nope.conf"]]}"#,
        );
        let err = format!("{:#}", Treefile::load(&top).unwrap_err());
        assert!(err.contains("add-files[0][0]"), "{err}");
        assert!(err.contains("nope.conf"), "{err}");
    }

    #[test]
    fn include_cycle_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.json", r#"{"include": "b.json"}"#);
        write(d.path(), "b.json", r#"{"include": "a.json"}"#);
        let top = write(
            d.path(),
            "top.json",
            r#"{"include": "a.json", "ref": "r", "packages": ["xx"]}"#,
        );
        let err = format!("{:#}", Treefile::load(&top).unwrap_err());
        assert!(err.contains("include cycle"), "{err}");
    }

    #[test]
    fn paths_resolve_relative_to_the_naming_file() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "sub/files/daemon.json", "{}");
        write(
            d.path(),
            "sub/docker.json",
            r#"{"add-files": [["files/daemon.json", "/etc/docker/daemon.json"]]}"#,
        );
        let top = write(
            d.path(),
            "top.json",
            r#"{"include": "sub/docker.json", "ref": "r", "packages": ["xx"]}"#,
        );
        let t = Treefile::load(&top).unwrap();
        assert_eq!(t.add_files[0].source.display, "sub/files/daemon.json");
        assert!(t.add_files[0].source.path.exists());
        // The flattened form carries no absolute host paths.
        assert!(!t.canonical_json().contains(d.path().to_str().unwrap()));
    }

    #[test]
    fn add_files_into_var_is_refused() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "f", "x");
        let top = write(
            d.path(),
            "t.json",
            r#"{"ref": "r", "packages": ["aa"], "add-files": [["f", "/var/lib/f"]]}"#,
        );
        let err = format!("{:#}", Treefile::load(&top).unwrap_err());
        assert!(err.contains("/var"), "{err}");
    }

    #[test]
    fn errors_in_an_include_name_that_file_and_its_own_index() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "f", "x");
        write(
            d.path(),
            "inc.json",
            r#"{"packages": ["systemd"], "remove-files": ["usr/share/doc", "a/../../b"]}"#,
        );
        let top = write(
            d.path(),
            "t.json",
            r#"{"include": "inc.json", "ref": "r", "packages": ["vim"], "remove-files": ["x", "y", "z"]}"#,
        );
        let err = format!("{:#}", Treefile::load(&top).unwrap_err());
        assert!(
            err.contains("inc.json: remove-files[1]: `a/../../b`"),
            "{err}"
        );
        assert!(!err.contains("t.json"), "{err}");
        write(
            d.path(),
            "inc.json",
            r#"{"packages": ["systemd", "docker.io -oops"]}"#,
        );
        let err = format!("{:#}", Treefile::load(&top).unwrap_err());
        assert!(err.contains("inc.json: packages[1]: `-oops`"), "{err}");
    }

    #[test]
    fn package_names_that_apt_would_take_as_options_are_refused() {
        for good in [
            "systemd",
            "linux-image-amd64",
            "g++",
            "libc6:amd64",
            "docker.io=20.10.24+dfsg1-1+b3",
        ] {
            check_package_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "-o",
            "--allow-unauthenticated",
            "Vim",
            "a",
            "x y",
            "pkg=",
            "pkg:",
            "p/q",
            "ab;rm",
        ] {
            assert!(check_package_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tree_paths_that_leave_or_name_the_root_are_refused_by_key() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "f", "x");
        for (key, entry) in [
            ("remove-files[0]", r#""remove-files": ["/"]"#),
            ("remove-files[0]", r#""remove-files": ["."]"#),
            ("remove-files[0]", r#""remove-files": [".."]"#),
            ("remove-files[0]", r#""remove-files": ["a/../../b"]"#),
            ("add-files[0][1]", r#""add-files": [["f", "/"]]"#),
            ("add-files[0][1]", r#""add-files": [["f", "/etc/../../x"]]"#),
            ("add-files[0][1]", r#""add-files": [["f", "/."]]"#),
        ] {
            let top = write(
                d.path(),
                "t.json",
                &format!(r#"{{"ref": "r", "packages": ["vim"], {entry}}}"#),
            );
            let err = format!("{:#}", Treefile::load(&top).unwrap_err());
            assert!(err.contains(&format!("t.json: {key}: ")), "{entry}: {err}");
        }
    }

    #[test]
    fn comments_are_ignored_and_json_errors_have_lines() {
        let d = tempfile::tempdir().unwrap();
        let top = write(
            d.path(),
            "t.json",
            "{\"// note\": \"hello\", \"ref\": \"r\", \"packages\": [\"aa\"]}",
        );
        Treefile::load(&top).unwrap();
        let bad = write(
            d.path(),
            "bad.json",
            "{\n\"ref\": \"r\",\n\"packages\": [\"a\",]\n}",
        );
        let err = format!("{:#}", Treefile::load(&bad).unwrap_err());
        assert!(err.contains("bad.json: line 3"), "{err}");
    }

    #[test]
    fn canonical_json_is_stable_and_sensitive() {
        let d = tempfile::tempdir().unwrap();
        let top = write(
            d.path(),
            "t.json",
            r#"{"ref": "r", "packages": ["aa", "bb"]}"#,
        );
        let a = Treefile::load(&top).unwrap().canonical_json();
        let b = Treefile::load(&top).unwrap().canonical_json();
        assert_eq!(a, b);
        write(
            d.path(),
            "t.json",
            r#"{"ref": "r", "packages": ["aa", "cc"]}"#,
        );
        let c = Treefile::load(&top).unwrap().canonical_json();
        assert_ne!(a, c);
    }

    fn services_treefile(d: &Path, images: &str, services: &str) -> PathBuf {
        write(d, "index.html", "v1");
        write(
            d,
            "svc.json",
            &format!(
                r#"{{"ref": "a/b", "packages": ["systemd"], "container-images": {images}, "services": {services}}}"#
            ),
        )
    }

    const WEB: &str = r#"[{"name": "web", "tag": "v1", "packages": ["busybox-static"],
        "add-files": [["index.html", "/srv/index.html"]],
        "cmd": ["busybox", "httpd", "-f", "-p", "8080", "-h", "/srv"], "exposed-ports": [8080]}]"#;

    #[test]
    fn container_images_and_services_load_with_the_issue_keys() {
        let d = tempfile::tempdir().unwrap();
        let t = services_treefile(
            d.path(),
            WEB,
            r#"[{"name": "web", "image": "web:v1", "ports": ["8080:8080"],
                "volumes": ["/var/lib/web:/data"], "environment": {"MODE": "prod"}, "restart": "always"}]"#,
        );
        let tf = Treefile::load(&t).unwrap();
        assert_eq!(tf.container_images.len(), 1);
        let img = &tf.container_images[0];
        assert_eq!(img.reference(), "web:v1");
        assert_eq!(img.add_files[0].dest, "/srv/index.html");
        assert_eq!(img.config.exposed_ports, [8080]);
        assert_eq!(tf.services[0].restart, "always");
        assert_eq!(tf.services[0].volumes[0].host, "/var/lib/web");
        // The image's files are inputs of the compose.
        assert!(
            tf.referenced_files()
                .iter()
                .any(|f| f.display == "index.html")
        );
        assert!(tf.canonical_json().contains("\"container-images\""));
    }

    #[test]
    fn service_errors_name_the_service_and_the_image() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            (
                WEB,
                r#"[{"name": "web", "image": "db:v1"}]"#,
                "service web runs image db:v1, which the treefile does not bind (container-images has: web:v1)",
            ),
            (
                WEB,
                r#"[{"name": "a", "image": "web:v1", "ports": ["80:8080"]}, {"name": "b", "image": "web:v1", "ports": ["80:9090"]}]"#,
                "services a and b both publish host port 80/tcp",
            ),
            (
                WEB,
                r#"[{"name": "a", "image": "web:v1", "volumes": ["/etc/a:/a"]}]"#,
                "services[0] (service a).volumes[0]: `/etc/a` is not under /var",
            ),
            (
                WEB,
                r#"[{"name": "a", "image": "web:v1", "restart": "unless-stopped"}]"#,
                "(service a).restart: `unless-stopped` is not one of",
            ),
            (
                WEB,
                r#"[{"name": "a", "image": "web:v1", "needs": ["b"]}, {"name": "b", "image": "web:v1", "needs": ["a"]}]"#,
                "goes round in a circle: a -> b -> a",
            ),
            (
                r#"[{"name": "tool", "tag": "1.0", "archive": "images/tool.oci.tar"}]"#,
                "[]",
                "container-images[0].archive (tool:1.0):",
            ),
            (
                r#"[{"name": "tool", "tag": "1.0"}]"#,
                "[]",
                "container-images[0] (tool:1.0): neither `packages` nor `archive`",
            ),
            (
                r#"[{"name": "Tool", "tag": "1.0", "packages": ["x1"]}]"#,
                "[]",
                "container-images[0].name: `Tool` is not an image name",
            ),
            (
                r#"[{"name": "tool", "tag": "1.0", "packages": ["-o=x"]}]"#,
                "[]",
                "container-images[0].packages[0] (tool:1.0): `-o=x` is not a Debian package name",
            ),
            (
                r#"[{"name": "web", "tag": "v1", "packages": ["a1"]}, {"name": "web", "tag": "v1", "packages": ["b1"]}]"#,
                "[]",
                "image web:v1 is bound twice",
            ),
        ];
        for (images, services, want) in cases {
            let t = services_treefile(d.path(), images, services);
            let e = format!("{:#}", Treefile::load(&t).unwrap_err());
            assert!(e.contains(want), "want `{want}` in: {e}");
            assert!(e.contains("svc.json"), "the file is named: {e}");
        }
    }

    #[test]
    fn documentation_and_install_langs_become_dpkg_filters() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("base.json");
        std::fs::write(
            &base,
            r#"{"packages": ["systemd"], "documentation": true, "install-langs": ["de"]}"#,
        )
        .unwrap();
        let top = d.path().join("top.json");
        std::fs::write(
            &top,
            r#"{"ref": "r", "include": "base.json", "documentation": false, "install-langs": ["pt_BR", "de"]}"#,
        )
        .unwrap();
        let tf = Treefile::load(&top).unwrap();
        assert!(!tf.documentation, "the including file's scalar wins");
        assert_eq!(
            tf.install_langs.as_deref(),
            Some(&["de".to_string(), "pt_BR".to_string()][..])
        );
        let f = tf.dpkg_path_filters();
        assert_eq!(f[0], "path-exclude=/usr/share/doc/*");
        assert!(f.contains(&"path-include=/usr/share/doc/*/copyright".to_string()));
        assert!(f.contains(&"path-exclude=/usr/share/man/*".to_string()));
        let excl = f
            .iter()
            .position(|l| l == "path-exclude=/usr/share/locale/*")
            .unwrap();
        let de = f
            .iter()
            .position(|l| l == "path-include=/usr/share/locale/de/*")
            .unwrap();
        assert!(
            excl < de,
            "an include must follow the exclude it narrows: {f:?}"
        );
        assert!(f.contains(&"path-include=/usr/share/locale/de_*".to_string()));
        assert!(f.contains(&"path-include=/usr/share/locale/pt_BR/*".to_string()));
        assert!(!f.contains(&"path-include=/usr/share/locale/pt_BR_*".to_string()));

        std::fs::write(&top, r#"{"ref": "r", "packages": ["systemd"]}"#).unwrap();
        let tf = Treefile::load(&top).unwrap();
        assert!(tf.documentation && tf.install_langs.is_none());
        assert!(tf.dpkg_path_filters().is_empty());
    }

    #[test]
    fn a_bad_language_is_named_with_its_file_and_index() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("top.json");
        for bad in ["../x", "DE", "de_", "d", "de@", "de/x"] {
            std::fs::write(
                &top,
                format!(
                    r#"{{"ref": "r", "packages": ["systemd"], "install-langs": ["en", "{bad}"]}}"#
                ),
            )
            .unwrap();
            let e = format!("{:#}", Treefile::load(&top).unwrap_err());
            assert!(e.contains("top.json: install-langs[1]"), "{bad}: {e}");
        }
        for good in ["de", "pt_BR", "sr@latin", "zh_Hant", "ast"] {
            std::fs::write(
                &top,
                format!(r#"{{"ref": "r", "packages": ["systemd"], "install-langs": ["{good}"]}}"#),
            )
            .unwrap();
            Treefile::load(&top).unwrap_or_else(|e| panic!("{good}: {e:#}"));
        }
    }
}
