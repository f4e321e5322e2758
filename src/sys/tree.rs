//! Paths inside a tree (a composed root, a deployment), resolved inside that tree.
//!
//! A path that comes from a treefile or a kickstart and is used inside a tree must never reach
//! the build machine. Debian trees hold absolute symlinks (`/var/run -> /run`), and joining a
//! path onto the tree's directory lets the kernel follow them out. Here every lookup goes
//! through `openat2(2)` with `RESOLVE_IN_ROOT` on a handle to the tree's root: absolute links
//! and `..` are taken relative to the tree, as they would be on the booted host. The last
//! component is never followed: removing a link removes the link, writing over a link
//! replaces the link.
//!
//! [`check_path`] validates such a path where it is parsed (`..`, the root itself, NUL bytes
//! are refused with the key that holds them), so the plan is checked before any work.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Check a path that names something inside a tree, as written in a treefile or kickstart
/// under `key`; returns it relative to the tree root, normalized (`/usr//bin/./x` becomes
/// `usr/bin/x`). Refused: empty paths, the root itself (`/`, `.`), any `..` component, NUL.
pub fn check_path(key: &str, raw: &str) -> Result<String> {
    if raw.contains('\0') {
        bail!("{key}: `{}` contains a NUL byte", raw.escape_debug());
    }
    let mut parts = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                bail!("{key}: `{raw}` contains `..`; name the path inside the tree directly")
            }
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::Prefix(_) => bail!("{key}: `{raw}` is not a Unix path"),
        }
    }
    if parts.is_empty() {
        bail!("{key}: `{raw}` names the root of the tree itself");
    }
    Ok(parts.join("/"))
}

/// A handle on a tree's root directory; every path is resolved inside it.
#[derive(Debug)]
pub struct Tree {
    root: OwnedFd,
    path: PathBuf,
}

impl Tree {
    /// Open the tree rooted at `path` (a directory on the build machine).
    pub fn open(path: &Path) -> Result<Self> {
        let root = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening the tree {}", path.display()))?;
        Ok(Self {
            root,
            path: path.to_path_buf(),
        })
    }

    /// Where the tree is on the build machine (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For messages: `/rel` inside the tree at PATH.
    fn describe(&self, rel: &str) -> String {
        format!("/{rel} (in {})", self.path.display())
    }

    /// Open directory `rel` (relative, checked), following links inside the tree only.
    fn open_dir(&self, rel: &str) -> Result<OwnedFd, Errno> {
        let rel = if rel.is_empty() { "." } else { rel };
        rustix::fs::openat2(
            &self.root,
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// The parent directory of `rel` (opened inside the tree) and the last component.
    fn parent_of<'a>(&self, rel: &'a str) -> Result<(cap_std::fs::Dir, &'a str)> {
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", rel),
        };
        if name.is_empty() || name == "." || name == ".." {
            bail!("{}: not a name inside the tree", self.describe(rel));
        }
        let fd = self
            .open_dir(parent)
            .map_err(std::io::Error::from)
            .with_context(|| format!("opening {}", self.describe(parent)))?;
        Ok((cap_std::fs::Dir::from_std_file(File::from(fd)), name))
    }

    /// Does `rel` exist (the last component not followed)?
    pub fn exists(&self, rel: &str) -> Result<bool> {
        let (dir, name) = match self.parent_of(rel) {
            Ok(x) => x,
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        match dir.symlink_metadata(name) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("looking at {}", self.describe(rel))),
        }
    }

    /// Remove a file, a link (not what it points to) or a whole directory. Returns false when
    /// there was nothing to remove.
    pub fn remove(&self, rel: &str) -> Result<bool> {
        let (dir, name) = match self.parent_of(rel) {
            Ok(x) => x,
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        let meta = match dir.symlink_metadata(name) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("looking at {}", self.describe(rel))),
        };
        if meta.is_dir() {
            dir.remove_dir_all(name)
        } else {
            dir.remove_file(name)
        }
        .with_context(|| format!("removing {}", self.describe(rel)))?;
        Ok(true)
    }

    /// Create directory `rel` and its parents (mode 0755), links followed inside the tree.
    pub fn create_dir_all(&self, rel: &str) -> Result<()> {
        let mut done = String::new();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            let next = if done.is_empty() {
                part.to_string()
            } else {
                format!("{done}/{part}")
            };
            match self.open_dir(&next) {
                Ok(_) => {}
                Err(Errno::NOENT) => {
                    let parent = self
                        .open_dir(&done)
                        .map_err(std::io::Error::from)
                        .with_context(|| format!("opening {}", self.describe(&done)))?;
                    match rustix::fs::mkdirat(&parent, part, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(std::io::Error::from(e))
                                .with_context(|| format!("creating {}", self.describe(&next)));
                        }
                    }
                    self.open_dir(&next)
                        .map_err(std::io::Error::from)
                        .with_context(|| format!("creating {}", self.describe(&next)))?;
                }
                Err(e) => {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("opening {}", self.describe(&next)));
                }
            }
            done = next;
        }
        Ok(())
    }

    /// Write `data` to file `rel` with `mode`, creating its parents. The file is written
    /// beside its destination and renamed over it: a link at `rel` is replaced, never
    /// followed, and a reader never sees half a file. A directory at `rel` is an error.
    pub fn write_file(&self, rel: &str, data: &mut dyn Read, mode: u32) -> Result<()> {
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.create_dir_all(parent)?;
        }
        let (dir, name) = self.parent_of(rel)?;
        if let Ok(m) = dir.symlink_metadata(name)
            && m.is_dir()
        {
            bail!("{} is a directory", self.describe(rel));
        }
        let tmp = format!(".{name}.slipway-tmp");
        let result = (|| -> Result<()> {
            let mut opts = cap_std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            let mut f = dir.open_with(&tmp, &opts)?;
            std::io::copy(data, &mut f)?;
            f.flush()?;
            rustix::fs::fchmod(f.as_fd(), Mode::from_raw_mode(mode & 0o7777))?;
            dir.rename(&tmp, &dir, name)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = dir.remove_file(&tmp);
        }
        result.with_context(|| format!("writing {}", self.describe(rel)))
    }

    /// Make `rel` a symbolic link to `target` (parents created; a file or link at `rel` is
    /// replaced, never followed; a directory there is an error).
    pub fn symlink(&self, rel: &str, target: &str) -> Result<()> {
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.create_dir_all(parent)?;
        }
        let (dir, name) = self.parent_of(rel)?;
        if let Ok(m) = dir.symlink_metadata(name) {
            if m.is_dir() {
                bail!("{} is a directory", self.describe(rel));
            }
            dir.remove_file(name)
                .with_context(|| format!("removing {}", self.describe(rel)))?;
        }
        rustix::fs::symlinkat(target, dir.as_fd(), name)
            .map_err(std::io::Error::from)
            .with_context(|| format!("linking {} to {target}", self.describe(rel)))
    }

    /// Open file `rel` for appending (created with mode 0600 when missing; a link at `rel`
    /// is refused rather than followed).
    pub fn open_append(&self, rel: &str) -> Result<File> {
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.create_dir_all(parent)?;
        }
        let (dir, name) = self.parent_of(rel)?;
        let fd = rustix::fs::openat(
            dir.as_fd(),
            name,
            OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| match e {
            Errno::LOOP => anyhow!("{} is a symbolic link", self.describe(rel)),
            e => anyhow::Error::new(std::io::Error::from(e))
                .context(format!("opening {}", self.describe(rel))),
        })?;
        Ok(File::from(fd))
    }

    /// Open regular file `rel` (relative, checked) for reading. Unlike the other lookups the
    /// last component is followed too, but like them only inside the tree: a link to
    /// `/etc/passwd` names the tree's `/etc/passwd`. Anything but a regular file is refused
    /// (opened without blocking, so a FIFO cannot hang the caller). The error keeps the
    /// `std::io::Error` in its chain (`NotFound`, `PermissionDenied`...) for callers that
    /// answer by kind.
    pub fn open_file(&self, rel: &str) -> Result<File> {
        let fd = rustix::fs::openat2(
            &self.root,
            rel,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("opening {}", self.describe(rel)))?;
        let st = rustix::fs::fstat(&fd)
            .map_err(std::io::Error::from)
            .with_context(|| format!("looking at {}", self.describe(rel)))?;
        if !rustix::fs::FileType::from_raw_mode(st.st_mode).is_file() {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput))
                .with_context(|| format!("{} is not a regular file", self.describe(rel)));
        }
        Ok(File::from(fd))
    }

    /// The contents of the regular file `raw`, a path as some input names it under `key`
    /// (checked with [`check_path`]; `key` in every error), opened inside the tree.
    pub fn read_named(&self, key: &str, raw: &str) -> Result<Vec<u8>> {
        let rel = check_path(key, raw)?;
        let mut bytes = vec![];
        self.open_file(&rel)
            .and_then(|mut f| Ok(f.read_to_end(&mut bytes)?))
            .with_context(|| key.to_string())?;
        Ok(bytes)
    }

    /// Is `rel` a directory (the last component not followed)? False when it does not exist.
    pub fn is_dir(&self, rel: &str) -> Result<bool> {
        let (dir, name) = match self.parent_of(rel) {
            Ok(x) => x,
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(
            rustix::fs::statat(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir())
                .unwrap_or(false),
        )
    }
}

impl Tree {
    /// Set the mode of `rel` (not a symbolic link; the last component is not followed).
    pub fn set_mode(&self, rel: &str, mode: u32) -> Result<()> {
        let (dir, name) = self.parent_of(rel)?;
        let fd = rustix::fs::openat(
            dir.as_fd(),
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("opening {}", self.describe(rel)))?;
        // fchmod refuses O_PATH descriptors; chmod through /proc/self/fd does not follow
        // anything but this very file.
        rustix::fs::chmodat(
            rustix::fs::CWD,
            format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)),
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("setting the mode of {}", self.describe(rel)))
    }

    /// Set the owner of `rel` (a link itself, not what it points to).
    pub fn set_owner(&self, rel: &str, uid: u32, gid: u32) -> Result<()> {
        let (dir, name) = self.parent_of(rel)?;
        rustix::fs::chownat(
            dir.as_fd(),
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("setting the owner of {}", self.describe(rel)))
    }

    /// Set the modification (and access) time of `rel` to `secs` since the epoch (a link
    /// itself, not what it points to).
    pub fn set_mtime(&self, rel: &str, secs: i64) -> Result<()> {
        let (dir, name) = self.parent_of(rel)?;
        let t = rustix::time::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            dir.as_fd(),
            name,
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("setting the time of {}", self.describe(rel)))
    }

    /// Make `rel` a hard link to the existing `target` (both inside the tree; neither's last
    /// component followed; a file or link at `rel` is replaced).
    pub fn hard_link(&self, target: &str, rel: &str) -> Result<()> {
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.create_dir_all(parent)?;
        }
        let (tdir, tname) = self.parent_of(target)?;
        let (dir, name) = self.parent_of(rel)?;
        if let Ok(m) = dir.symlink_metadata(name) {
            if m.is_dir() {
                bail!("{} is a directory", self.describe(rel));
            }
            dir.remove_file(name)
                .with_context(|| format!("removing {}", self.describe(rel)))?;
        }
        rustix::fs::linkat(tdir.as_fd(), tname, dir.as_fd(), name, AtFlags::empty())
            .map_err(std::io::Error::from)
            .with_context(|| {
                format!(
                    "linking {} to {}",
                    self.describe(rel),
                    self.describe(target)
                )
            })
    }

    /// The names in directory `rel` (links inside the tree followed), sorted.
    pub fn list(&self, rel: &str) -> Result<Vec<String>> {
        let fd = self
            .open_dir(rel)
            .map_err(std::io::Error::from)
            .with_context(|| format!("opening {}", self.describe(rel)))?;
        let dir = cap_std::fs::Dir::from_std_file(File::from(fd));
        let mut names = Vec::new();
        for e in dir
            .entries()
            .with_context(|| format!("reading {}", self.describe(rel)))?
        {
            let e = e.with_context(|| format!("reading {}", self.describe(rel)))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A tree whose links point at absolute paths and out of it, and a "build machine"
    /// directory those links would reach if they were followed on the host.
    struct Fixture {
        _host: tempfile::TempDir,
        host: PathBuf,
        _tree: tempfile::TempDir,
        tree: PathBuf,
    }

    fn fixture() -> Fixture {
        let host = tempfile::tempdir().unwrap();
        let hp = host.path().to_path_buf();
        std::fs::create_dir_all(hp.join("run/sshd")).unwrap();
        std::fs::write(hp.join("run/sshd/pid"), "host").unwrap();
        std::fs::write(hp.join("victim"), "host").unwrap();
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path().to_path_buf();
        // Mirror the host's layout inside the tree, so a correct resolution finds the tree's
        // copy and a wrong one the host's.
        let inner = t.join(hp.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inner.join("run/sshd")).unwrap();
        std::fs::write(inner.join("run/sshd/pid"), "tree").unwrap();
        std::fs::write(inner.join("victim"), "tree").unwrap();
        std::fs::create_dir_all(t.join("var")).unwrap();
        // Absolute link, as Debian's /var/run -> /run.
        symlink(hp.join("run"), t.join("var/run")).unwrap();
        // Relative link climbing out of the tree.
        symlink("../../../../../../../../..", t.join("var/up")).unwrap();
        // A link as the last component, pointing at a host file.
        symlink(hp.join("victim"), t.join("link-to-victim")).unwrap();
        Fixture {
            _host: host,
            host: hp,
            _tree: tree,
            tree: t,
        }
    }

    fn host_intact(f: &Fixture) {
        assert_eq!(
            std::fs::read_to_string(f.host.join("run/sshd/pid")).unwrap(),
            "host"
        );
        assert_eq!(
            std::fs::read_to_string(f.host.join("victim")).unwrap(),
            "host"
        );
    }

    #[test]
    fn paths_are_checked() {
        assert_eq!(check_path("k", "/usr//bin/./x").unwrap(), "usr/bin/x");
        assert_eq!(check_path("k", "etc/x").unwrap(), "etc/x");
        for bad in [
            "",
            "/",
            ".",
            "./",
            "..",
            "a/../../b",
            "a/..",
            "/../etc",
            "a\0b",
        ] {
            let e = check_path("remove-files[3]", bad).unwrap_err().to_string();
            assert!(e.starts_with("remove-files[3]: "), "{bad:?}: {e}");
        }
    }

    #[test]
    fn removal_through_absolute_link_stays_in_the_tree() {
        let f = fixture();
        let t = Tree::open(&f.tree).unwrap();
        assert!(t.remove("var/run/sshd").unwrap());
        host_intact(&f);
        let inner = f.tree.join(f.host.strip_prefix("/").unwrap());
        assert!(!inner.join("run/sshd").exists());
    }

    #[test]
    fn removal_through_climbing_link_stays_in_the_tree() {
        let f = fixture();
        let t = Tree::open(&f.tree).unwrap();
        let rel = format!(
            "var/up/{}/victim",
            f.host.strip_prefix("/").unwrap().display()
        );
        assert!(t.remove(&rel).unwrap());
        host_intact(&f);
        assert!(
            !f.tree
                .join(f.host.strip_prefix("/").unwrap())
                .join("victim")
                .exists()
        );
    }

    #[test]
    fn removing_a_link_removes_the_link_only() {
        let f = fixture();
        let t = Tree::open(&f.tree).unwrap();
        assert!(t.remove("link-to-victim").unwrap());
        assert!(!f.tree.join("link-to-victim").is_symlink());
        host_intact(&f);
        assert!(!t.remove("link-to-victim").unwrap(), "already gone");
        assert!(!t.remove("no/such/dir/file").unwrap());
    }

    #[test]
    fn writing_through_links_stays_in_the_tree() {
        let f = fixture();
        let t = Tree::open(&f.tree).unwrap();
        t.write_file("var/run/sshd/pid", &mut "new".as_bytes(), 0o600)
            .unwrap();
        t.write_file("link-to-victim", &mut "new".as_bytes(), 0o644)
            .unwrap();
        t.write_file("var/run/new/dir/file", &mut "x".as_bytes(), 0o755)
            .unwrap();
        host_intact(&f);
        assert!(!f.host.join("run/new").exists());
        let inner = f.tree.join(f.host.strip_prefix("/").unwrap());
        assert_eq!(
            std::fs::read_to_string(inner.join("run/sshd/pid")).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::read_to_string(inner.join("run/new/dir/file")).unwrap(),
            "x"
        );
        assert!(!f.tree.join("link-to-victim").is_symlink());
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(inner.join("run/new/dir/file")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755);
        let e = t.write_file("var", &mut "x".as_bytes(), 0o644).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
    }

    #[test]
    fn open_file_follows_links_inside_the_tree_only() {
        let f = fixture();
        let t = Tree::open(&f.tree).unwrap();
        let read = |rel: &str| {
            let mut s = String::new();
            t.open_file(rel).unwrap().read_to_string(&mut s).unwrap();
            s
        };
        // An absolute link as the last component, and one in the middle.
        assert_eq!(read("link-to-victim"), "tree");
        assert_eq!(read("var/run/sshd/pid"), "tree");
        let climbing = format!(
            "var/up/{}/victim",
            f.host.strip_prefix("/").unwrap().display()
        );
        assert_eq!(read(&climbing), "tree");
        let e = t.open_file("var").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        nix::unistd::mkfifo(
            &f.tree.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let e = t.open_file("fifo").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = t.open_file("no/such/file").unwrap_err();
        assert!(is_not_found(&e), "{e:#}");
    }

    #[test]
    fn append_refuses_a_link_and_stays_in_the_tree() {
        let f = fixture();
        let t = Tree::open(&f.tree).unwrap();
        let e = t.open_append("link-to-victim").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let mut w = t.open_append("var/run/post.log").unwrap();
        w.write_all(b"log").unwrap();
        host_intact(&f);
        assert!(!f.host.join("run/post.log").exists());
    }
}
