//! Python bytecode that stays valid once committed.
//!
//! Debian's packages compile their modules at install time (`py3compile` in the postinst).
//! Each `__pycache__/NAME.cpython-XY.pyc` records the mtime and size of its source `NAME.py`,
//! and Python recompiles a module whose source differs in either. A commit keeps no mtimes:
//! mtime 0 in a deployment (and so in a bound image that docker imports from it), except
//! empty files, which libostree copies at checkout instead of linking (so they get the
//! checkout's time). Left as installed, every `.pyc` is stale there, and each Python process compiles
//! every module it imports again, in memory when it may not write `/usr`, on every start:
//! under TCG that is minutes for an OpenStack service.
//!
//! So before a tree is committed, a timestamp-based `.pyc` whose recorded size is its
//! source's gets 0 as its recorded mtime: valid exactly in the committed tree. The `.pyc` of
//! an empty source (a package's empty `__init__.py`) is removed: no recorded time can match a
//! checkout's, and compiling nothing costs nothing. A `.pyc` whose size does not match
//! (stale already), a hash-based one (PEP 552) and one without its source are left alone.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use cap_std::fs::Dir;

use crate::sys::tree::Tree;

/// Header of a `.pyc` (PEP 552): magic, flags, source mtime, source size; 4 bytes each.
const HEADER: usize = 16;

/// Give every timestamp-based `.pyc` under `root`'s `usr` whose source is beside it the
/// mtime a commit gives the source (0), or remove it when the source is empty. Symbolic links
/// are never followed (an entry is looked at without following it, and every open resolves
/// inside the tree). Returns how many were changed or removed.
pub fn zero_source_mtimes(root: &Path) -> Result<usize> {
    let usr = root.join("usr");
    if !usr.is_dir() {
        return Ok(0);
    }
    let tree = Tree::open(root)?;
    let dir = Dir::open_ambient_dir(&usr, cap_std::ambient_authority())
        .with_context(|| format!("opening {}", usr.display()))?;
    walk(&tree, &dir, "usr")
}

/// `dir` is `rel` (relative to the tree's root).
fn walk(tree: &Tree, dir: &Dir, rel: &str) -> Result<usize> {
    let mut changed = 0;
    let here = || tree.path().join(rel);
    let entries = dir
        .entries()
        .with_context(|| format!("reading {}", here().display()))?;
    for e in entries {
        let e = e.with_context(|| format!("reading {}", here().display()))?;
        let name = e.file_name();
        let sub_rel = format!("{rel}/{}", name.to_string_lossy());
        let ft = e
            .file_type()
            .with_context(|| format!("looking at {}", tree.path().join(&sub_rel).display()))?;
        if !ft.is_dir() {
            continue;
        }
        let sub = dir
            .open_dir(&name)
            .with_context(|| format!("opening {}", tree.path().join(&sub_rel).display()))?;
        if name == "__pycache__" {
            changed += fix_cache(tree, rel, &sub)?;
        } else {
            changed += walk(tree, &sub, &sub_rel)?;
        }
    }
    Ok(changed)
}

/// The `.pyc`s of `cache`, the `__pycache__` of `parent` (relative to the tree's root).
fn fix_cache(tree: &Tree, parent: &str, cache: &Dir) -> Result<usize> {
    let mut changed = 0;
    let path = tree.path().join(parent).join("__pycache__");
    for e in cache
        .entries()
        .with_context(|| format!("reading {}", path.display()))?
    {
        let e = e.with_context(|| format!("reading {}", path.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let file = path.join(&name);
        if !name.ends_with(".pyc")
            || !e
                .file_type()
                .with_context(|| format!("looking at {}", file.display()))?
                .is_file()
        {
            continue;
        }
        // `mod.cpython-311.pyc`, `mod.cpython-311.opt-1.pyc`: the module is up to the first dot.
        let Some(module) = name.split('.').next() else {
            continue;
        };
        // The source as Python sees it: a link is followed (inside the tree, where it
        // points in the committed tree too; Debian links `sitecustomize.py` into /etc).
        let source = match tree
            .open_file(&format!("{parent}/{module}.py"))
            .and_then(|f| f.metadata().context("looking at the source"))
        {
            Ok(m) => m.len(),
            Err(_) => continue,
        };
        let mut f = cache
            .open_with(
                &name,
                cap_std::fs::OpenOptions::new().read(true).write(true),
            )
            .with_context(|| format!("opening {}", file.display()))?;
        let mut header = [0u8; HEADER];
        if f.read_exact(&mut header).is_err() {
            continue;
        }
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap());
        let (flags, mtime, size) = (word(4), word(8), word(12));
        if flags != 0 || u64::from(size) != source & 0xffff_ffff {
            continue;
        }
        if source == 0 {
            drop(f);
            cache
                .remove_file(&name)
                .with_context(|| format!("removing {}", file.display()))?;
            changed += 1;
            continue;
        }
        if mtime == 0 {
            continue;
        }
        // Replaced, never written in place: the file may be a hard link that the package
        // cache's kept root shares (compose::dpkg).
        let mut data = header.to_vec();
        f.read_to_end(&mut data)
            .with_context(|| format!("reading {}", file.display()))?;
        data[8..12].fill(0);
        let meta = f.into_std().metadata()?;
        let tmp = format!(".{name}.slipway-tmp");
        let written = (|| -> std::io::Result<()> {
            let mut out = cache.open_with(
                &tmp,
                cap_std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true),
            )?;
            out.write_all(&data)?;
            use std::os::unix::fs::MetadataExt;
            rustix::fs::fchown(
                &out,
                Some(rustix::fs::Uid::from_raw(meta.uid())),
                Some(rustix::fs::Gid::from_raw(meta.gid())),
            )?;
            rustix::fs::fchmod(&out, rustix::fs::Mode::from_raw_mode(meta.mode() & 0o7777))?;
            cache.rename(&tmp, cache, &name)
        })();
        if written.is_err() {
            let _ = cache.remove_file(&tmp);
        }
        written.with_context(|| format!("writing {}", file.display()))?;
        changed += 1;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pyc(flags: u32, mtime: u32, size: u32) -> Vec<u8> {
        let mut v = vec![0xa7, 0x0d, 0x0d, 0x0a];
        for w in [flags, mtime, size] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v.extend_from_slice(b"code");
        v
    }

    fn mtime_of(p: &Path) -> u32 {
        let b = std::fs::read(p).unwrap();
        u32::from_le_bytes(b[8..12].try_into().unwrap())
    }

    #[test]
    fn timestamped_bytecode_matching_its_source_gets_mtime_zero() {
        let t = tempfile::tempdir().unwrap();
        let pkg = t.path().join("usr/lib/python3/dist-packages/pkg");
        let cache = pkg.join("__pycache__");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(pkg.join("mod.py"), b"x = 1\n").unwrap();
        std::fs::write(pkg.join("__init__.py"), b"").unwrap();
        // Matches its source (6 bytes): fixed, also the optimized one.
        std::fs::write(cache.join("mod.cpython-311.pyc"), pyc(0, 1_700_000_000, 6)).unwrap();
        std::fs::write(
            cache.join("mod.cpython-311.opt-1.pyc"),
            pyc(0, 1_700_000_000, 6),
        )
        .unwrap();
        std::fs::write(
            cache.join("__init__.cpython-311.pyc"),
            pyc(0, 1_700_000_000, 0),
        )
        .unwrap();
        // Stale already (another size), hash-based, or without a source: left alone.
        std::fs::write(
            cache.join("stale.cpython-311.pyc"),
            pyc(0, 1_700_000_000, 99),
        )
        .unwrap();
        std::fs::write(pkg.join("stale.py"), b"x = 2\n").unwrap();
        std::fs::write(cache.join("hashed.cpython-311.pyc"), pyc(1, 1234, 5678)).unwrap();
        std::fs::write(pkg.join("hashed.py"), b"x = 3\n").unwrap();
        std::fs::write(
            cache.join("orphan.cpython-311.pyc"),
            pyc(0, 1_700_000_000, 6),
        )
        .unwrap();
        // A source that is an absolute link (Debian's sitecustomize.py -> /etc/...): sized
        // through the link, inside the tree.
        std::fs::create_dir_all(t.path().join("etc/python3")).unwrap();
        std::fs::write(t.path().join("etc/python3/site.py"), b"x = 10\n").unwrap();
        std::os::unix::fs::symlink("/etc/python3/site.py", pkg.join("site.py")).unwrap();
        std::fs::write(cache.join("site.cpython-311.pyc"), pyc(0, 1_700_000_000, 7)).unwrap();
        // A link to a directory outside the tree is not followed.
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("__pycache__")).unwrap();
        std::fs::write(outside.path().join("o.py"), b"x = 1\n").unwrap();
        let out_pyc = outside.path().join("__pycache__/o.cpython-311.pyc");
        std::fs::write(&out_pyc, pyc(0, 1_700_000_000, 6)).unwrap();
        std::os::unix::fs::symlink(outside.path(), pkg.join("link")).unwrap();

        assert_eq!(zero_source_mtimes(t.path()).unwrap(), 4);
        assert_eq!(mtime_of(&cache.join("site.cpython-311.pyc")), 0);
        assert_eq!(mtime_of(&cache.join("mod.cpython-311.pyc")), 0);
        assert_eq!(mtime_of(&cache.join("mod.cpython-311.opt-1.pyc")), 0);
        assert!(!cache.join("__init__.cpython-311.pyc").exists());
        assert_eq!(
            mtime_of(&cache.join("stale.cpython-311.pyc")),
            1_700_000_000
        );
        assert_eq!(mtime_of(&cache.join("hashed.cpython-311.pyc")), 1234);
        assert_eq!(
            mtime_of(&cache.join("orphan.cpython-311.pyc")),
            1_700_000_000
        );
        assert_eq!(mtime_of(&out_pyc), 1_700_000_000);
        let code = std::fs::read(cache.join("mod.cpython-311.pyc")).unwrap();
        assert_eq!(&code[16..], b"code");
        // Again: nothing left to change.
        assert_eq!(zero_source_mtimes(t.path()).unwrap(), 0);
    }

    /// With the build machine's own Python: a module compiled as a postinst does, its source
    /// then dated 0 as in a deployment, is recompiled (stale) before and loaded from its
    /// `.pyc` after.
    #[test]
    fn python_loads_the_bytecode_of_a_committed_tree() {
        use std::process::Command;
        let t = tempfile::tempdir().unwrap();
        let lib = t.path().join("usr/lib/python3/dist-packages");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("slipmod.py"), b"VALUE = 42\n").unwrap();
        let status = Command::new("python3")
            .args(["-m", "py_compile"])
            .arg(lib.join("slipmod.py"))
            .status()
            .unwrap();
        assert!(status.success());
        // What a checkout of a commit gives every file.
        std::fs::File::options()
            .write(true)
            .open(lib.join("slipmod.py"))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH)
            .unwrap();
        let from_bytecode = || {
            let o = Command::new("python3")
                .args([
                    "-v",
                    "-B",
                    "-c",
                    "import slipmod; assert slipmod.VALUE == 42",
                ])
                .env("PYTHONPATH", &lib)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let e = String::from_utf8_lossy(&o.stderr).into_owned();
            e.lines()
                .any(|l| l.starts_with("# code object from") && l.contains("slipmod.cpython-"))
        };
        assert!(!from_bytecode(), "the .pyc was taken before it was fixed");
        assert_eq!(zero_source_mtimes(t.path()).unwrap(), 1);
        assert!(from_bytecode(), "the fixed .pyc was not taken");
    }

    #[test]
    fn bytecode_is_replaced_not_written_through_a_hard_link() {
        // The package cache's kept roots share files with a compose's tree by hard links:
        // a fitted .pyc is a new file, and the other link keeps the old content.
        let t = tempfile::tempdir().unwrap();
        let pkg = t.path().join("usr/lib/python3/dist-packages/pkg");
        let cache = pkg.join("__pycache__");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(pkg.join("mod.py"), b"x = 1\n").unwrap();
        let file = cache.join("mod.cpython-311.pyc");
        std::fs::write(&file, pyc(0, 1_700_000_000, 6)).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o640))
            .unwrap();
        let kept = t.path().join("kept.pyc");
        std::fs::hard_link(&file, &kept).unwrap();
        assert_eq!(zero_source_mtimes(t.path()).unwrap(), 1);
        assert_eq!(mtime_of(&file), 0);
        assert_eq!(mtime_of(&kept), 1_700_000_000);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        assert_eq!(
            std::fs::read_dir(&cache).unwrap().count(),
            1,
            "a temporary file is left"
        );
    }
}
