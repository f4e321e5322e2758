//! The shape of `src/` is a test: every `crate::<module>` path in a top-level module (comments
//! left out) is an edge of the import graph, and each edge must be in the table of allowed
//! edges in `docs/architecture.md` (the fenced block after "## Allowed imports"). The table
//! itself must have no cycle. A new edge is a decision: add it to the table, with the doc.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `module: dep dep ...` lines of the fenced block after `## Allowed imports`.
fn allowed() -> Graph {
    let doc = fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let section = doc
        .split("## Allowed imports")
        .nth(1)
        .expect("docs/architecture.md has no `## Allowed imports` section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the `## Allowed imports` section has no fenced block");
    let mut g = Graph::new();
    for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (module, deps) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("docs/architecture.md: `{line}` is not `module: deps`"));
        let deps = deps.split_whitespace().map(String::from).collect();
        assert!(
            g.insert(module.trim().to_string(), deps).is_none(),
            "docs/architecture.md: module `{module}` is listed twice"
        );
    }
    g
}

/// The code of a Rust file without its comments (line comments and doc comments; block
/// comments are not used in `src/`).
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            if !in_str && c == '/' && prev == '/' {
                cut = i - 1;
                break;
            }
            prev = c;
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// Top-level modules named after `crate::` in `code`: `crate::a::...`, `crate::{a, b::c}`.
/// `crate::outln!` (a macro of `sys::ui`, exported at the root) counts as `sys`.
fn targets(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue; // `slipway_crate::` or the like
        }
        let rest = &code[i + "crate::".len()..];
        let names: Vec<&str> = if let Some(list) = rest.strip_prefix('{') {
            let list = &list[..list.find('}').unwrap_or(list.len())];
            list.split(',')
                .map(|item| item.trim().split("::").next().unwrap_or("").trim())
                .collect()
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            vec![&rest[..end]]
        };
        for name in names.into_iter().filter(|n| !n.is_empty()) {
            out.insert(if name == "outln" { "sys" } else { name }.to_string());
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The import graph of `src/`: top-level module -> modules it names, with one file that
/// names each.
fn actual() -> BTreeMap<(String, String), PathBuf> {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        for t in targets(&code_of(&fs::read_to_string(&f).unwrap())) {
            if t != module {
                edges
                    .entry((module.clone(), t))
                    .or_insert_with(|| rel.to_path_buf());
            }
        }
    }
    edges
}

/// A cycle of `g`, if it has one.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

#[test]
fn every_import_between_top_level_modules_is_in_the_allowed_table() {
    let allowed = allowed();
    let outside: Vec<String> = actual()
        .into_iter()
        .filter(|((from, to), _)| !allowed.get(from).is_some_and(|d| d.contains(to)))
        .map(|((from, to), file)| format!("{from} -> {to} (src/{})", file.display()))
        .collect();
    assert!(
        outside.is_empty(),
        "imports outside the table in docs/architecture.md (## Allowed imports):\n  {}",
        outside.join("\n  ")
    );
}

#[test]
fn the_allowed_table_has_no_cycle_and_names_only_modules_that_exist() {
    let allowed = allowed();
    assert_eq!(cycle(&allowed), None, "a cycle in the allowed imports");
    let src = root().join("src");
    for (m, deps) in &allowed {
        for name in std::iter::once(m).chain(deps) {
            assert!(
                src.join(name).is_dir() || src.join(format!("{name}.rs")).is_file(),
                "docs/architecture.md names a module `{name}` that src/ does not have"
            );
        }
    }
}

#[test]
fn the_scanner_sees_paths_lists_and_macros_and_skips_comments() {
    let code = code_of(
        "use crate::{repo, sys::cmd};\n\
         // crate::cli::ExitCode in a comment\n\
         let x = crate::compose::images::resolve(); // crate::pxe too\n\
         crate::outln!(\"a // b {}\", crate::host::utc(0));\n",
    );
    let t: Vec<String> = targets(&code).into_iter().collect();
    assert_eq!(t, ["compose", "host", "repo", "sys"]);
    let mut g = Graph::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["a".to_string()].into());
    assert_eq!(cycle(&g), Some(vec!["a".into(), "b".into(), "a".into()]));
}
