//! The house rules of docs/ARCHITECTURE.md, checked on the source: no file over 450 lines,
//! main.rs dispatch only (<= 150), and no import circle, neither between the library's top-level
//! modules nor between sibling files of one module; and a README and docs/ a newcomer can read.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `a/b.rs` -> ["a", "b"]; `a/mod.rs` -> ["a"]; `lib.rs` -> [].
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The module names that follow `prefix` in the file's code (comments left out).
fn referenced(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// A cycle in `graph`, if any, as the nodes along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].iter().cloned().chain([node.to_string()]).collect());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

#[test]
fn files_are_short_and_main_only_dispatches() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for file in &files {
        let lines = std::fs::read_to_string(file).unwrap().lines().count();
        let limit = if file.ends_with("main.rs") { 150 } else { 450 };
        assert!(lines <= limit, "{} has {lines} lines (at most {limit}): split it by concern", file.display());
    }
}

#[test]
fn no_import_circles() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut siblings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let path = module_path(file);
        // The binary (main.rs, cli/) sits above the library; test files are not part of it.
        if path.is_empty() || path[0] == "main" || path[0] == "cli" || path.last().is_some_and(|p| p == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let own = path[0].clone();
        let uses = referenced(&text, "crate::");
        top.entry(own.clone()).or_default().extend(uses.iter().filter(|m| **m != own).cloned());
        // Sibling files: `super::x` from a file (not a mod.rs) of module `m` is file `m/x`.
        let is_mod_file = file.ends_with("mod.rs");
        if path.len() >= 2 && !is_mod_file {
            let parent = path[..path.len() - 1].join("::");
            let here = path.join("::");
            let dir = file.parent().unwrap();
            let sibling = |name: &String| dir.join(format!("{name}.rs")).is_file() && *name != path[path.len() - 1];
            let mut deps: BTreeSet<String> =
                referenced(&text, "super::").into_iter().filter(sibling).map(|n| format!("{parent}::{n}")).collect();
            let crate_prefix = format!("crate::{parent}::");
            deps.extend(referenced(&text, &crate_prefix).into_iter().filter(sibling).map(|n| format!("{parent}::{n}")));
            siblings.entry(here).or_default().extend(deps);
        }
    }
    assert!(cycle(&top).is_none(), "import circle between top-level modules: {:?}", cycle(&top).unwrap());
    assert!(cycle(&siblings).is_none(), "import circle between files: {:?}", cycle(&siblings).unwrap());
}

fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| if p.is_dir() { bytes_under(&p) } else { std::fs::metadata(&p).unwrap().len() })
        .sum()
}

/// README.md stays a page (150 lines) and docs/ a download (5 MB: pictures are saved compressed,
/// and a study commits its tables and a few plots, not every run's pictures).
#[test]
fn readme_and_docs_stay_small() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lines = std::fs::read_to_string(root.join("README.md")).unwrap().lines().count();
    assert!(lines <= 150, "README.md has {lines} lines; at most 150 (move detail to docs/)");
    let mb = bytes_under(&root.join("docs")) as f64 / 1e6;
    assert!(mb < 5.0, "docs/ holds {mb:.1} MB; under 5 (compress pictures, commit fewer)");
}
