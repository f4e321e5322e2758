//! Writing a directory tree as an OSTree commit, with content objects written in parallel.
//!
//! `ostree commit` (and `write_directory_to_mtree`) checksums and compresses one file at a
//! time, so an archive-mode commit keeps one core busy. Here the tree is walked once, then
//! worker threads (one per core, each with its own `OstreeRepo` and transaction) write the
//! content objects; the main thread builds the `MutableTree`, writes directory metadata, the
//! commit object and the ref in one final transaction. The ref only moves when that last
//! transaction commits: a compose killed at any point leaves the old ref and a repository
//! that `ostree fsck` accepts (at worst some unreferenced objects, which `ostree prune`
//! removes).
//!
//! When the repository already holds a commit of the ref, each file is checksummed first and
//! only written when its object is missing, so a recompose of a mostly unchanged tree
//! compresses only what changed.
//!
//! [`import_tree`] writes a tree's objects (content, directory trees and metadata) with no
//! commit: the network installer seeds its repository with the live root it booted from, a
//! checkout of the commit it is about to pull, so the pull finds every object but the commit
//! already there. Objects are addressed by their content, so nothing written this way is
//! trusted: the pull's signed commit names the root tree, and only objects with exactly those
//! checksums are used.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

/// What to commit.
pub struct CommitRequest<'a> {
    pub repo_path: &'a Path,
    pub tree: &'a Path,
    pub ostree_ref: &'a str,
    pub parent: Option<&'a str>,
    pub subject: &'a str,
    /// The commit metadata, an `a{sv}`; `ostree.bootable` and `ostree.linux` are added when the
    /// tree carries a kernel.
    pub metadata: glib::VariantDict,
    pub timestamp: u64,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Check each object's presence before writing (worth it when most objects exist).
    pub skip_existing: bool,
    pub gpg: Option<GpgSign<'a>>,
}

/// GPG signing parameters.
#[derive(Clone, Copy)]
pub struct GpgSign<'a> {
    pub key_id: &'a str,
    pub homedir: Option<&'a str>,
}

/// What was written.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CommitStats {
    pub commit: String,
    pub content_objects_total: usize,
    pub content_objects_written: usize,
    pub content_bytes_written: u64,
    pub metadata_objects_written: usize,
    pub directories: usize,
}

#[derive(Debug, Clone)]
enum Kind {
    File,
    Symlink(PathBuf),
}

#[derive(Debug, Clone)]
struct Item {
    rel: String,
    kind: Kind,
    size: u64,
    uid: u32,
    gid: u32,
    mode: u32,
    devino: (u64, u64),
}

#[derive(Debug, Clone)]
struct DirItem {
    rel: String,
    uid: u32,
    gid: u32,
    mode: u32,
}

/// The tree as a flat list; directories parent-first.
struct Walk {
    dirs: Vec<DirItem>,
    items: Vec<Item>,
    skipped: Vec<String>,
}

fn walk(tree: &Path) -> Result<Walk> {
    let mut w = Walk {
        dirs: Vec::new(),
        items: Vec::new(),
        skipped: Vec::new(),
    };
    let meta =
        std::fs::symlink_metadata(tree).with_context(|| format!("reading {}", tree.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", tree.display());
    }
    w.dirs.push(DirItem {
        rel: String::new(),
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode(),
    });
    let mut i = 0;
    while i < w.dirs.len() {
        let rel = w.dirs[i].rel.clone();
        let abs = tree.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&abs)
            .with_context(|| format!("reading {}", abs.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading {}", abs.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let name = name
                .to_str()
                .ok_or_else(|| anyhow!("{}: file name is not UTF-8", e.path().display()))?;
            let child_rel = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let m = std::fs::symlink_metadata(e.path())
                .with_context(|| format!("reading {}", e.path().display()))?;
            let ft = m.file_type();
            if ft.is_dir() {
                w.dirs.push(DirItem {
                    rel: child_rel,
                    uid: m.uid(),
                    gid: m.gid(),
                    mode: m.mode(),
                });
            } else if ft.is_file() || ft.is_symlink() {
                let kind = if ft.is_symlink() {
                    Kind::Symlink(std::fs::read_link(e.path())?)
                } else {
                    Kind::File
                };
                w.items.push(Item {
                    rel: child_rel,
                    kind,
                    size: m.len(),
                    uid: m.uid(),
                    gid: m.gid(),
                    mode: m.mode(),
                    devino: (m.dev(), m.ino()),
                });
            } else {
                w.skipped.push(child_rel);
            }
        }
        i += 1;
    }
    Ok(w)
}

/// [`walk`], with a warning for each file left out (`doing`: what is not done to it).
fn walk_warning(tree: &Path, doing: &str) -> Result<Walk> {
    let w = walk(tree)?;
    for s in &w.skipped {
        crate::sys::ui::warn(format!(
            "not {doing} {}/{s}: not a regular file, directory or symlink",
            tree.display()
        ));
    }
    Ok(w)
}

fn file_info(item: &Item) -> gio::FileInfo {
    let info = gio::FileInfo::new();
    info.set_attribute_uint32("unix::uid", item.uid);
    info.set_attribute_uint32("unix::gid", item.gid);
    info.set_attribute_uint32("unix::mode", item.mode);
    match &item.kind {
        Kind::File => {
            info.set_file_type(gio::FileType::Regular);
            info.set_size(item.size as i64);
        }
        Kind::Symlink(target) => {
            info.set_file_type(gio::FileType::SymbolicLink);
            info.set_size(0);
            info.set_symlink_target(target);
        }
    }
    info
}

fn dir_info(d: &DirItem) -> gio::FileInfo {
    let info = gio::FileInfo::new();
    info.set_file_type(gio::FileType::Directory);
    info.set_attribute_uint32("unix::uid", d.uid);
    info.set_attribute_uint32("unix::gid", d.gid);
    info.set_attribute_uint32("unix::mode", d.mode);
    info
}

fn xattrs(abs: &Path) -> Result<glib::Variant> {
    let c = CString::new(abs.as_os_str().as_bytes())?;
    ostree::fs_get_all_xattrs_at(libc::AT_FDCWD, c.to_str()?, gio::Cancellable::NONE)
        .with_context(|| format!("reading extended attributes of {}", abs.display()))
}

/// Write one content object; returns its checksum.
fn write_item(
    repo: &ostree::Repo,
    tree: &Path,
    item: &Item,
    skip_existing: bool,
) -> Result<String> {
    let abs = tree.join(&item.rel);
    let info = file_info(item);
    let xa = xattrs(&abs)?;
    let open = || -> Result<Option<gio::InputStream>> {
        Ok(match item.kind {
            Kind::File => Some(
                gio::File::for_path(&abs)
                    .read(gio::Cancellable::NONE)
                    .with_context(|| format!("opening {}", abs.display()))?
                    .upcast(),
            ),
            Kind::Symlink(_) => None,
        })
    };
    let mut expected = None;
    if skip_existing {
        let input = open()?;
        let csum = ostree::checksum_file_from_input(
            &info,
            Some(&xa),
            input.as_ref(),
            ostree::ObjectType::File,
            gio::Cancellable::NONE,
        )
        .map_err(|e| anyhow!("checksumming {}: {e}", abs.display()))?
        .to_string();
        if repo
            .has_object(ostree::ObjectType::File, &csum, gio::Cancellable::NONE)
            .with_context(|| format!("looking up object {csum}"))?
        {
            return Ok(csum);
        }
        expected = Some(csum);
    }
    let input = open()?;
    let empty: gio::InputStream = gio::MemoryInputStream::new().upcast();
    let raw = input.as_ref().unwrap_or(&empty);
    let (stream, len) =
        ostree::raw_file_to_content_stream(raw, &info, Some(&xa), gio::Cancellable::NONE)
            .with_context(|| format!("reading {}", abs.display()))?;
    let csum = repo
        .write_content(expected.as_deref(), &stream, len, gio::Cancellable::NONE)
        .with_context(|| format!("writing {} to the repository", abs.display()))?;
    Ok(csum.to_string())
}

/// The order files are read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadOrder {
    /// Big files first, so the last worker does not finish long after the others.
    BiggestFirst,
    /// Depth first, names sorted: the order mksquashfs stores file data and packs small files
    /// into shared fragment blocks, so a squashfs is read front to back and each block is
    /// decompressed once (out of order, every small file costs a whole block).
    Tree,
}

/// Content objects of the tree written by `threads` workers; returns path -> checksum.
fn write_contents(
    repo_path: &Path,
    tree: &Path,
    threads: usize,
    skip_existing: bool,
    read_order: ReadOrder,
    w: &Walk,
    on_progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<(HashMap<String, String>, CommitStats)> {
    // One object per inode: hardlinked files are written once.
    let mut order: Vec<usize> = Vec::new();
    let mut seen: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, it) in w.items.iter().enumerate() {
        if matches!(it.kind, Kind::File) {
            if seen.contains_key(&it.devino) {
                continue;
            }
            seen.insert(it.devino, i);
        }
        order.push(i);
    }
    match read_order {
        ReadOrder::BiggestFirst => order.sort_by(|a, b| w.items[*b].size.cmp(&w.items[*a].size)),
        ReadOrder::Tree => {
            order.sort_by(|a, b| w.items[*a].rel.split('/').cmp(w.items[*b].rel.split('/')))
        }
    }
    let threads = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        threads
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<HashMap<String, String>> = Mutex::new(HashMap::new());
    let stats: Mutex<CommitStats> = Mutex::new(CommitStats::default());
    std::thread::scope(|s| -> Result<()> {
        let mut handles = Vec::new();
        for _ in 0..threads {
            handles.push(s.spawn(|| -> Result<()> {
                let repo = ostree::Repo::new_for_path(repo_path);
                repo.open(gio::Cancellable::NONE)
                    .with_context(|| format!("opening {}", repo_path.display()))?;
                let txn = repo
                    .auto_transaction(gio::Cancellable::NONE)
                    .context("starting a repository transaction")?;
                let mut local = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&idx) = order.get(k) else { break };
                    let item = &w.items[idx];
                    let csum = write_item(&repo, tree, item, skip_existing)?;
                    local.push((item.rel.clone(), csum));
                    on_progress(1, order.len() as u64);
                }
                let st = txn
                    .commit(gio::Cancellable::NONE)
                    .context("committing content objects")?;
                results.lock().expect("poisoned").extend(local);
                let mut total = stats.lock().expect("poisoned");
                total.content_objects_written += st.get_content_objects_written();
                total.content_bytes_written += st.get_content_bytes_written();
                Ok(())
            }));
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow!("a commit worker panicked"))??;
        }
        Ok(())
    })?;
    let mut map = results.into_inner().expect("poisoned");
    // Hardlinks share their inode's checksum.
    for it in &w.items {
        if !map.contains_key(&it.rel) {
            let first = &w.items[seen[&it.devino]];
            let c = map[&first.rel].clone();
            map.insert(it.rel.clone(), c);
        }
    }
    Ok((map, stats.into_inner().expect("poisoned")))
}

/// The mutable tree of `rel`'s parent directory (already made: directories are walked
/// parent first) and `rel`'s own name.
fn parent_of<'a, 'r>(
    root: &'a ostree::MutableTree,
    trees: &'a HashMap<String, ostree::MutableTree>,
    rel: &'r str,
) -> (&'a ostree::MutableTree, &'r str) {
    match rel.rsplit_once('/') {
        Some((parent, name)) => (&trees[parent], name),
        None => (root, rel),
    }
}

/// The walked tree as an OSTree mutable tree: each directory with its metadata object
/// (written once per owner, mode and xattrs), each file with its content checksum.
fn mutable_tree(
    repo: &ostree::Repo,
    tree: &Path,
    w: &Walk,
    contents: &HashMap<String, String>,
) -> Result<ostree::MutableTree> {
    let root = ostree::MutableTree::new();
    let mut trees: HashMap<String, ostree::MutableTree> = HashMap::new();
    let mut dirmeta_cache: HashMap<(u32, u32, u32, Vec<u8>), String> = HashMap::new();
    for d in &w.dirs {
        let abs = tree.join(&d.rel);
        let xa = xattrs(&abs)?;
        let key = (d.uid, d.gid, d.mode, xa.data().to_vec());
        let meta_csum = match dirmeta_cache.get(&key) {
            Some(c) => c.clone(),
            None => {
                let v = ostree::create_directory_metadata(&dir_info(d), Some(&xa));
                let c = repo
                    .write_metadata(
                        ostree::ObjectType::DirMeta,
                        None,
                        &v,
                        gio::Cancellable::NONE,
                    )
                    .with_context(|| format!("writing directory metadata of {}", abs.display()))?
                    .to_string();
                dirmeta_cache.insert(key, c.clone());
                c
            }
        };
        let mt = if d.rel.is_empty() {
            root.clone()
        } else {
            let (parent_tree, name) = parent_of(&root, &trees, &d.rel);
            parent_tree
                .ensure_dir(name)
                .with_context(|| format!("adding directory {}", d.rel))?
        };
        mt.set_metadata_checksum(&meta_csum);
        trees.insert(d.rel.clone(), mt);
    }
    for it in &w.items {
        let (parent_tree, name) = parent_of(&root, &trees, &it.rel);
        parent_tree
            .replace_file(name, &contents[&it.rel])
            .with_context(|| format!("adding {}", it.rel))?;
    }
    Ok(root)
}

/// Commit `req.tree` to `req.repo_path` and move `req.ostree_ref` to it.
pub fn commit_tree(
    req: CommitRequest,
    on_progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<CommitStats> {
    let w = walk_warning(req.tree, "committing")?;
    crate::sys::failpoint::hit("commit-start")?;
    let (contents, mut stats) = write_contents(
        req.repo_path,
        req.tree,
        req.threads,
        req.skip_existing,
        ReadOrder::BiggestFirst,
        &w,
        on_progress,
    )?;

    let repo = crate::repo::open(req.repo_path)?;
    let txn = repo
        .auto_transaction(gio::Cancellable::NONE)
        .context("starting the commit transaction")?;
    let root = mutable_tree(&repo, req.tree, &w, &contents)?;
    let root_file = repo
        .write_mtree(&root, gio::Cancellable::NONE)
        .context("writing directory trees")?;
    let root_file = root_file
        .downcast::<ostree::RepoFile>()
        .map_err(|_| anyhow!("write_mtree returned no RepoFile"))?;
    // ostree.bootable / ostree.linux when the tree has a kernel in /usr/lib/modules.
    if req.tree.join("usr/lib/modules").is_dir() {
        ostree::commit_metadata_for_bootable(&root_file, &req.metadata, gio::Cancellable::NONE)
            .context("detecting the kernel for ostree.linux")?;
    }
    let metadata = req.metadata.end();
    let commit = repo
        .write_commit_with_time(
            req.parent,
            Some(req.subject),
            None,
            Some(&metadata),
            &root_file,
            req.timestamp,
            gio::Cancellable::NONE,
        )
        .context("writing the commit object")?
        .to_string();
    if let Some(g) = req.gpg {
        repo.sign_commit(&commit, g.key_id, g.homedir, gio::Cancellable::NONE)
            .with_context(|| format!("signing commit {commit} with GPG key {}", g.key_id))?;
    }
    crate::sys::failpoint::hit("commit-before-ref")?;
    repo.transaction_set_ref(None, req.ostree_ref, Some(&commit));
    let st = txn
        .commit(gio::Cancellable::NONE)
        .context("committing the transaction")?;
    stats.metadata_objects_written = st.get_metadata_objects_written();
    stats.content_objects_total = w.items.len();
    stats.directories = w.dirs.len();
    stats.commit = commit;
    Ok(stats)
}

/// What [`import_tree`] wrote: the tree's root (its `dirtree` and `dirmeta` checksums, as a
/// commit names them) and counts.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportedTree {
    pub contents_checksum: String,
    pub metadata_checksum: String,
    pub files: usize,
    pub directories: usize,
    pub content_objects_written: usize,
    pub content_bytes_written: u64,
}

/// Write every object of `tree` into `repo_path`, with no commit and no ref: a seed for a
/// pull (see the module's documentation).
pub fn import_tree(repo_path: &Path, tree: &Path, threads: usize) -> Result<ImportedTree> {
    let w = walk_warning(tree, "importing")?;
    // Each file is read once: checksumming it first to skip objects already present would
    // read and hash it twice, and the installer imports into an empty repository (an object
    // written again is dropped by libostree).
    let (contents, stats) = write_contents(
        repo_path,
        tree,
        threads,
        false,
        ReadOrder::Tree,
        &w,
        &|_, _| {},
    )?;
    let repo = crate::repo::open(repo_path)?;
    let txn = repo
        .auto_transaction(gio::Cancellable::NONE)
        .context("starting the import transaction")?;
    let root = mutable_tree(&repo, tree, &w, &contents)?;
    repo.write_mtree(&root, gio::Cancellable::NONE)
        .context("writing directory trees")?;
    let imported = ImportedTree {
        contents_checksum: root.contents_checksum().to_string(),
        metadata_checksum: root.metadata_checksum().to_string(),
        files: w.items.len(),
        directories: w.dirs.len(),
        content_objects_written: stats.content_objects_written,
        content_bytes_written: stats.content_bytes_written,
    };
    txn.commit(gio::Cancellable::NONE)
        .with_context(|| format!("committing the objects of {}", tree.display()))?;
    Ok(imported)
}

/// Write every object of `tree` into the bare repository `repo_path`, as [`import_tree`] does,
/// but moving the files instead of copying them: libostree checksums each regular file and
/// renames it into `objects/` ("adopt", `OSTREE_REPO_COMMIT_MODIFIER_FLAGS_CONSUME`), so a tree
/// unpacked on the repository's file system is written once. `tree` must be on that file
/// system, outside the repository (libostree empties its `tmp` at each commit); what is left of it afterwards (directories, symbolic
/// links) is the caller's to remove. Checksums are computed here, as with [`import_tree`], so
/// nothing in `tree` is trusted.
pub fn adopt_tree(repo_path: &Path, tree: &Path) -> Result<ImportedTree> {
    let repo = crate::repo::open(repo_path)?;
    if repo.mode() != ostree::RepoMode::Bare {
        bail!(
            "{}: adopting files needs a bare repository (this one is {:?})",
            repo_path.display(),
            repo.mode()
        );
    }
    let txn = repo
        .auto_transaction(gio::Cancellable::NONE)
        .context("starting the import transaction")?;
    let mtree = ostree::MutableTree::new();
    let modifier = ostree::RepoCommitModifier::new(ostree::RepoCommitModifierFlags::CONSUME, None);
    repo.write_directory_to_mtree(
        &gio::File::for_path(tree),
        &mtree,
        Some(&modifier),
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("importing {}", tree.display()))?;
    repo.write_mtree(&mtree, gio::Cancellable::NONE)
        .context("writing directory trees")?;
    let contents_checksum = mtree.contents_checksum().to_string();
    let metadata_checksum = mtree.metadata_checksum().to_string();
    let stats = txn
        .commit(gio::Cancellable::NONE)
        .with_context(|| format!("committing the objects of {}", tree.display()))?;
    // libostree's statistics count the objects it wrote, not the files it adopted.
    Ok(ImportedTree {
        contents_checksum,
        metadata_checksum,
        files: stats.get_content_objects_total() as usize,
        directories: stats.get_metadata_objects_total() as usize,
        content_objects_written: stats.get_content_objects_written() as usize,
        content_bytes_written: stats.get_content_bytes_written(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::cmd::CommandRunExt;
    use std::process::Command;

    /// `ostree CMD --repo REPO REST...`, its standard output.
    fn ostree(cmd: &str, repo: &Path, rest: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
        Command::new("ostree")
            .arg(cmd)
            .arg("--repo")
            .arg(repo)
            .args(rest.iter().map(|a| a.as_ref()))
            .run_get_string()
            .unwrap()
    }

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("usr/share/empty")).unwrap();
        std::fs::write(root.join("usr/bin/tool"), vec![7u8; 300_000]).unwrap();
        std::fs::write(root.join("usr/share/a"), "hello").unwrap();
        std::fs::hard_link(root.join("usr/share/a"), root.join("usr/share/a-link")).unwrap();
        std::os::unix::fs::symlink("../share/a", root.join("usr/bin/a")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
    }

    fn request<'a>(
        repo: &'a Path,
        tree: &'a Path,
        parent: Option<&'a str>,
        skip: bool,
    ) -> CommitRequest<'a> {
        CommitRequest {
            repo_path: repo,
            tree,
            ostree_ref: "test/ref",
            parent,
            subject: "test",
            metadata: glib::VariantDict::new(None),
            timestamp: 1_700_000_000,
            threads: 2,
            skip_existing: skip,
            gpg: None,
        }
    }

    #[test]
    fn parallel_commit_matches_ostree_commit_content() {
        let d = tempfile::tempdir().unwrap();
        let (repo, t) = (d.path().join("repo"), d.path().join("tree"));
        tree(&t);
        crate::repo::open_or_create_archive(&repo).unwrap();
        let stats = commit_tree(request(&repo, &t, None, false), &|_, _| {}).unwrap();
        assert_eq!(stats.content_objects_total, 4);
        // Same tree through the ostree CLI: the content must be identical.
        ostree(
            "commit",
            &repo,
            &[&"--branch=cli/ref", &format!("--tree=dir={}", t.display())],
        );
        let diff = ostree("diff", &repo, &[&"test/ref", &"cli/ref"]);
        assert_eq!(diff.trim(), "", "trees differ:\n{diff}");
        let ls = ostree("ls", &repo, &[&"test/ref", &"/usr/bin/tool"]);
        assert!(ls.starts_with("-04755"), "{ls}");
        ostree("fsck", &repo, &[]);
    }

    #[test]
    fn recommit_writes_only_changed_objects() {
        let d = tempfile::tempdir().unwrap();
        let (repo, t) = (d.path().join("repo"), d.path().join("tree"));
        tree(&t);
        crate::repo::open_or_create_archive(&repo).unwrap();
        let first = commit_tree(request(&repo, &t, None, false), &|_, _| {}).unwrap();
        std::fs::write(t.join("usr/share/new"), "new file").unwrap();
        let second =
            commit_tree(request(&repo, &t, Some(&first.commit), true), &|_, _| {}).unwrap();
        assert_eq!(second.content_objects_written, 1);
        assert_ne!(first.commit, second.commit);
        let parent =
            crate::repo::commit_parent(&crate::repo::open(&repo).unwrap(), &second.commit).unwrap();
        assert_eq!(parent.as_deref(), Some(first.commit.as_str()));
    }

    fn objects(repo: &Path) -> usize {
        fn count(p: &Path) -> usize {
            std::fs::read_dir(p).map_or(0, |rd| {
                rd.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            count(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
        }
        count(&repo.join("objects"))
    }

    /// `tree` committed into a new archive repository: the directory, the repository, the
    /// tree, the commit and its root's (contents, metadata) checksums.
    fn committed_tree() -> (tempfile::TempDir, PathBuf, PathBuf, String, String, String) {
        let d = tempfile::tempdir().unwrap();
        let (src, t) = (d.path().join("src"), d.path().join("tree"));
        tree(&t);
        crate::repo::open_or_create_archive(&src).unwrap();
        let commit = commit_tree(request(&src, &t, None, false), &|_, _| {})
            .unwrap()
            .commit;
        let (contents, meta) =
            crate::repo::commit_root(&crate::repo::open(&src).unwrap(), &commit).unwrap();
        (d, src, t, commit, contents, meta)
    }

    /// A checkout of a commit imported into a fresh bare repository is that commit's tree,
    /// and a pull of the commit then fetches its commit object and nothing else; a changed
    /// file in the seed is a different tree, and the pull fetches what differs.
    #[test]
    fn imported_checkout_is_the_commits_tree_and_leaves_the_pull_only_the_commit() {
        let (d, src, _, commit, root_contents, root_meta) = committed_tree();
        let seed = d.path().join("seed");
        ostree("checkout", &src, &[&commit, &seed]);

        for (name, change) in [("exact", false), ("changed", true)] {
            if change {
                std::fs::write(seed.join("usr/share/a"), "changed").unwrap();
            }
            let dst = d.path().join(name);
            ostree("init", &dst, &[&"--mode=bare"]);
            let imported = import_tree(&dst, &seed, 2).unwrap();
            assert_eq!(imported.files, 4, "{imported:?}");
            assert_eq!(
                (imported.contents_checksum == root_contents)
                    && (imported.metadata_checksum == root_meta),
                !change,
                "{name}: {imported:?}"
            );
            let before = objects(&dst);
            ostree("pull-local", &dst, &[&src, &commit]);
            // exact: the commit object only. changed: the commit and the directory trees
            // from usr/share up (the old content of `a` came with `a-link`, a copy in an
            // archive checkout).
            let fetched = objects(&dst) - before;
            assert_eq!(fetched, if change { 4 } else { 1 }, "{name}");
            ostree("fsck", &dst, &[]);
        }
    }
    /// A tree unpacked beside a bare repository is adopted: its regular files move into
    /// `objects/` (none is left behind), the root checksums are the commit's, and a pull
    /// then fetches the commit object alone. A changed file gives another tree: the
    /// checksums are computed, not taken from the file names.
    #[test]
    fn adopted_tree_moves_its_files_and_is_the_commits_tree() {
        let (d, src, t, commit, root_contents, root_meta) = committed_tree();
        for (name, change) in [("exact", false), ("changed", true)] {
            let dst = d.path().join(name);
            ostree("init", &dst, &[&"--mode=bare"]);
            // Beside the repository, on its file system (libostree empties `tmp` itself).
            let seed = d.path().join(format!("seed-{name}"));
            ostree("checkout", &src, &[&commit, &seed]);
            if change {
                std::fs::write(seed.join("usr/share/a"), "changed").unwrap();
            }
            let imported = adopt_tree(&dst, &seed).unwrap();
            assert_eq!(
                (imported.contents_checksum == root_contents)
                    && (imported.metadata_checksum == root_meta),
                !change,
                "{name}: {imported:?}"
            );
            let left: Vec<_> = walkdir(&seed)
                .into_iter()
                .filter(|p| p.symlink_metadata().unwrap().is_file())
                .collect();
            assert!(left.is_empty(), "{name}: files not adopted: {left:?}");
            let before = objects(&dst);
            ostree("pull-local", &dst, &[&src, &commit]);
            assert_eq!(objects(&dst) - before, if change { 4 } else { 1 }, "{name}");
            ostree("fsck", &dst, &[]);
        }
        // An archive repository cannot adopt files: refused before anything moves.
        let err = adopt_tree(&src, &t).unwrap_err();
        assert!(format!("{err:#}").contains("bare repository"), "{err:#}");
        assert!(t.join("usr/bin/tool").is_file());
    }

    fn walkdir(p: &Path) -> Vec<PathBuf> {
        let Ok(meta) = p.symlink_metadata() else {
            return Vec::new();
        };
        let mut out = vec![p.to_path_buf()];
        if meta.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                out.extend(walkdir(&e.unwrap().path()));
            }
        }
        out
    }
}
