//! Build script: a hash of slipway's own sources, `SLIPWAY_SOURCE_HASH`.
//!
//! slipway's code decides what a compose produces (the layout conversion, postprocessing,
//! the initramfs arguments) as much as the treefile does, so the input hash counts it, as
//! rpm-ostree counts its own version. The hash covers every file below `src/` and `pxe/`
//! (the PXE templates and live-root files compiled in) plus the build files, by path and
//! content, in sorted order: a clean clone anywhere gives the same value, and any change to
//! the code gives a new one.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_below(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let mut files = Vec::new();
    files_below(&root.join("src"), &mut files);
    // The PXE templates and live-root files are compiled in (`include_str!`).
    files_below(&root.join("pxe"), &mut files);
    for f in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        files.push(root.join(f));
    }
    let mut h = Sha256::new();
    for f in &files {
        let rel = f.strip_prefix(&root).expect("below the manifest dir");
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0u8]);
        h.update((data.len() as u64).to_le_bytes());
        h.update(&data);
    }
    let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=SLIPWAY_SOURCE_HASH={digest}");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=pxe");
    for f in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        println!("cargo:rerun-if-changed={f}");
    }
}
