//! The suites are complete: every `#[ignore]`d test of `tests/` and `src/` is listed in
//! `tests/suites.txt` (so `make test` or `make test-full` runs it), and every line there names
//! a test that exists, once, with a known suite and a time limit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The names of the functions marked `#[ignore...]` in `text`.
fn ignored_fns(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut pending = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("#[ignore") {
            pending = true;
        } else if pending && let Some(rest) = l.strip_prefix("fn ") {
            out.push(rest.split('(').next().unwrap().trim().to_string());
            pending = false;
        } else if pending && !l.starts_with("#[") && !l.starts_with("//") && !l.is_empty() {
            pending = false;
        }
    }
    out
}

/// (binary, test) of every ignored test: `tests/NAME.rs` tests under NAME, unit tests of
/// `src/a/b.rs` under `lib` as `a::b::tests::NAME`.
fn ignored_tests(root: &Path) -> BTreeSet<(String, String)> {
    let mut set = BTreeSet::new();
    for e in std::fs::read_dir(root.join("tests")).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "rs") {
            let bin = p.file_stem().unwrap().to_string_lossy().into_owned();
            for f in ignored_fns(&std::fs::read_to_string(&p).unwrap()) {
                set.insert((bin.clone(), f));
            }
        }
    }
    let mut files = vec![];
    rust_files(&root.join("src"), &mut files);
    for p in files {
        let rel = p.strip_prefix(root.join("src")).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
            parts.pop();
        }
        let module = parts.join("::");
        for f in ignored_fns(&std::fs::read_to_string(&p).unwrap()) {
            set.insert(("lib".to_string(), format!("{module}::tests::{f}")));
        }
    }
    set
}

#[test]
fn every_ignored_test_is_in_exactly_one_suite() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let list = std::fs::read_to_string(root.join("tests/suites.txt")).unwrap();
    let mut listed: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut longs = Vec::new();
    for (n, line) in list.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = l.split_whitespace().collect();
        assert!(
            w.len() == 4 || (w.len() == 5 && w[0] == "short"),
            "tests/suites.txt:{}: `{l}` (a long form only on a `short` line)",
            n + 1
        );
        if w[0] == "short" {
            assert_eq!(
                w.len(),
                5,
                "tests/suites.txt:{}: a short test names its long form",
                n + 1
            );
            longs.push((n + 1, w[1].to_string(), w[4].to_string()));
        }
        assert!(
            ["ci", "short", "full", "bench", "helper"].contains(&w[0]),
            "tests/suites.txt:{}: unknown suite `{}`",
            n + 1,
            w[0]
        );
        let limit: u32 = w[3]
            .parse()
            .unwrap_or_else(|_| panic!("tests/suites.txt:{}: limit `{}`", n + 1, w[3]));
        assert!(
            w[0] == "helper" || limit > 0,
            "tests/suites.txt:{}: a test needs a limit",
            n + 1
        );
        let key = (w[1].to_string(), w[2].to_string());
        assert!(
            listed.insert(key, w[0].to_string()).is_none(),
            "tests/suites.txt:{}: {}::{} is listed twice",
            n + 1,
            w[1],
            w[2]
        );
    }
    for (line, bin, long) in longs {
        assert_eq!(
            listed.get(&(bin.clone(), long.clone())).map(String::as_str),
            Some("full"),
            "tests/suites.txt:{line}: the long form {bin}::{long} is not a `full` test"
        );
    }
    let found = ignored_tests(&root);
    let missing: Vec<_> = found.iter().filter(|k| !listed.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "ignored tests no suite runs (add them to tests/suites.txt): {missing:?}"
    );
    let stale: Vec<_> = listed.keys().filter(|k| !found.contains(*k)).collect();
    assert!(
        stale.is_empty(),
        "tests/suites.txt names tests that are not #[ignore]d tests: {stale:?}"
    );
}

#[test]
fn ignored_functions_are_found() {
    let text = "#[test]\n#[ignore = \"slow\"]\nfn a() {}\n#[test]\nfn b() {}\n#[ignore]\n// why\nfn c() {}\n";
    assert_eq!(ignored_fns(text), ["a", "c"]);
}
