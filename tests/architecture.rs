//! The module map holds: no import cycle between modules, and `lib.rs`'s
//! map names every top-level module.
//!
//! Run it alone with `cargo test --test tests architecture`. The check reads
//! `src/` as text: for every group of sibling modules (the top-level ones
//! under the crate root, the children of `github`, of `remediate`…) it draws
//! an arrow from `a` to `b` when code anywhere inside `a` names `b` (through
//! `crate::`, `super::` or a re-export of the parent), then looks for a
//! circle. A parent and its own children are not siblings: a module is the
//! namespace of its children, and children using their parent's items is no
//! cycle. A file's unit tests (`#[cfg(test)]` at its bottom, as STYLE asks)
//! are left out: a test may build what it needs from anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path below the crate root: `["github", "deliveries"]`.
type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/github/deliveries.rs` → `github::deliveries`; `src/github/mod.rs`
/// and `src/github.rs` → `github`; `src/lib.rs` → the root.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// The text without comments and string literals, so that a path in a doc
/// comment or a message is not read as an import.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i..].starts_with(b"r#\"") {
            i += 3;
            while i < b.len() && !b[i..].starts_with(b"\"#") {
                i += 1;
            }
            i += 2;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal such as '"' or '\n' (not a lifetime).
            let end = b[i + 1..]
                .iter()
                .position(|&c| c == b'\'')
                .map(|p| i + 2 + p);
            i = end.unwrap_or(i + 1);
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The file without its unit tests: a `#[cfg(test)] mod name;` line goes,
/// and an inline `#[cfg(test)] mod name { … }` ends the file's code (tests
/// sit at the bottom).
fn without_tests(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            match lines.peek().map(|l| l.trim()) {
                Some(next) if next.starts_with("mod ") && next.ends_with(';') => {
                    lines.next();
                    continue;
                }
                Some(next) if next.starts_with("mod ") => break,
                _ => {}
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every path a `use` tree names, braces expanded:
/// `crate::{a::X, b::{c, d}}` → `crate::a::X`, `crate::b::c`, `crate::b::d`.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    expand_into("", &tree, &mut out);
    out
}

fn expand_into(prefix: &str, tree: &str, out: &mut Vec<String>) {
    match tree.find('{') {
        None => {
            for item in split_top(tree) {
                out.push(format!("{prefix}{item}"));
            }
        }
        Some(open) => {
            let head = &tree[..open];
            let close = matching(tree, open);
            let inner = &tree[open + 1..close];
            for part in split_top(inner) {
                expand_into(&format!("{prefix}{head}"), part, out);
            }
        }
    }
}

fn matching(s: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// Splits on commas outside braces.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The absolute module paths (as `a::b::Item` segments) that `code`, written
/// in module `here`, refers to.
fn references(code: &str, here: &ModPath) -> Vec<Vec<String>> {
    let mut raw = Vec::new();
    // `use` statements (possibly multi-line, with braces).
    let mut rest = code;
    while let Some(pos) = find_word(rest, "use") {
        let after = &rest[pos + 3..];
        let end = after.find(';').unwrap_or(after.len());
        raw.extend(expand_use(&after[..end]));
        rest = &after[end.min(after.len())..];
    }
    // Inline paths: `crate::a::b`, `super::a`.
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(pos) = code[from..].find(start) {
            let at = from + pos;
            let before = code[..at].chars().next_back();
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                let path: String = code[at..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                raw.push(path);
            }
            from = at + start.len();
        }
    }
    raw.iter().filter_map(|p| resolve(p, here)).collect()
}

fn find_word(s: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(pos) = s[from..].find(word) {
        let at = from + pos;
        let before = s[..at].chars().next_back();
        let after = s[at + word.len()..].chars().next();
        let boundary = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if boundary(before) && after.is_some_and(char::is_whitespace) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// `crate::a::b` or `super::x` (from `here`) as an absolute path; `None`
/// for paths into other crates.
fn resolve(path: &str, here: &ModPath) -> Option<Vec<String>> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = match segs.first() {
        Some(&"crate") => {
            segs.remove(0);
            Vec::new()
        }
        Some(&"super") | Some(&"self") => here.clone(),
        _ => return None,
    };
    while let Some(&first) = segs.first() {
        match first {
            "super" => {
                base.pop();
                segs.remove(0);
            }
            "self" => {
                segs.remove(0);
            }
            _ => break,
        }
    }
    base.extend(segs.iter().map(|s| s.to_string()));
    Some(base)
}

struct Crate {
    /// Every module and the absolute paths its own file refers to.
    refs: BTreeMap<ModPath, Vec<Vec<String>>>,
    /// Per module, the names it re-exports from a child (`pub use x::Y`)
    /// → that child.
    reexports: BTreeMap<ModPath, BTreeMap<String, String>>,
}

fn read_crate(src: &Path) -> Crate {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut refs = BTreeMap::new();
    let mut reexports: BTreeMap<ModPath, BTreeMap<String, String>> = BTreeMap::new();
    for f in files {
        let m = module_of(src, &f);
        if m.first().is_some_and(|s| s == "bin") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read source");
        let code = code_only(&without_tests(&text));
        // `pub use child::{A, B}` (or `pub(crate) use`) in this module.
        for line in code.split(';') {
            let line = line.trim();
            let Some(tree) = line
                .strip_prefix("pub use ")
                .or_else(|| line.strip_prefix("pub(crate) use "))
            else {
                continue;
            };
            for p in expand_use(tree) {
                let segs: Vec<&str> = p.split("::").collect();
                if segs.len() >= 2 && !matches!(segs[0], "crate" | "super" | "self") {
                    let name = segs[segs.len() - 1].split(" as ").last().unwrap_or("");
                    reexports
                        .entry(m.clone())
                        .or_default()
                        .insert(name.to_string(), segs[0].to_string());
                }
            }
        }
        refs.insert(m.clone(), references(&code, &m));
    }
    Crate { refs, reexports }
}

/// The arrows between the children of `parent`.
fn sibling_edges(c: &Crate, parent: &ModPath) -> BTreeMap<String, BTreeSet<String>> {
    let children: BTreeSet<String> = c
        .refs
        .keys()
        .filter(|m| m.len() == parent.len() + 1 && m.starts_with(parent))
        .map(|m| m[parent.len()].clone())
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, targets) in &c.refs {
        if m.len() <= parent.len() || !m.starts_with(parent) {
            continue;
        }
        let from = &m[parent.len()];
        for t in targets {
            if t.len() <= parent.len() || !t.starts_with(parent) {
                continue;
            }
            let mut to = t[parent.len()].clone();
            // `parent::Item` re-exported from a child counts as that child.
            if !children.contains(&to) {
                match c.reexports.get(parent).and_then(|r| r.get(&to)) {
                    Some(child) => to = child.clone(),
                    None => continue,
                }
            }
            if &to != from && children.contains(&to) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// The groups of modules that reach each other (strongly connected
/// components of more than one module), each in a stable order, with one
/// circle through each to show.
fn find_cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = edges.keys().chain(edges.values().flatten()).collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for next in edges.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut placed = BTreeSet::new();
    for n in &nodes {
        if placed.contains(*n) || !reaches[n].contains(*n) {
            continue;
        }
        let group: Vec<String> = nodes
            .iter()
            .filter(|m| reaches[n].contains(**m) && reaches[*m].contains(*n))
            .map(|m| m.to_string())
            .collect();
        placed.extend(group.iter().cloned());
        groups.push(group);
    }
    groups
}

fn all_cycles(src: &Path) -> Vec<String> {
    let c = read_crate(src);
    let mut parents: BTreeSet<ModPath> = c
        .refs
        .keys()
        .filter(|m| !m.is_empty())
        .map(|m| m[..m.len() - 1].to_vec())
        .collect();
    parents.insert(Vec::new());
    let mut found = Vec::new();
    for p in parents {
        let edges = sibling_edges(&c, &p);
        let at = if p.is_empty() {
            "crate".to_string()
        } else {
            p.join("::")
        };
        for group in find_cycles(&edges) {
            // Name the arrows inside the group, so the fix is visible.
            let arrows: Vec<String> = group
                .iter()
                .flat_map(|a| {
                    let targets = edges.get(a).cloned().unwrap_or_default();
                    group
                        .iter()
                        .filter(move |b| targets.contains(*b))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            found.push(format!(
                "in {at}: {{{}}}: {}",
                group.join(", "),
                arrows.join(", ")
            ));
        }
    }
    found
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let cycles = all_cycles(&src_dir());
    assert!(
        cycles.is_empty(),
        "module cycles (each arrow: the first module names the second):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle_through_crate_super_and_a_reexport() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "mod x;\nmod y;\npub use y::Why;\n").unwrap();
    // a::x -> a::y through the parent's re-export; a::y -> a::x through super.
    std::fs::write(src.join("a/x.rs"), "use super::Why;\n").unwrap();
    std::fs::write(
        src.join("a/y.rs"),
        "pub struct Why;\nfn f() { super::x::g(); }\n",
    )
    .unwrap();
    // b -> c in a use tree; c -> b inline; a comment naming crate::a is no arrow.
    std::fs::write(src.join("b.rs"), "use crate::{c::{One, Two}};\n").unwrap();
    std::fs::write(
        src.join("c.rs"),
        "// crate::a::x is only named here\nfn f() -> crate::b::Z { todo!() }\n",
    )
    .unwrap();
    let cycles = all_cycles(src);
    assert_eq!(cycles.len(), 2, "{cycles:?}");
    assert!(
        cycles.iter().any(|c| c.starts_with("in a: {x, y}")),
        "{cycles:?}"
    );
    assert!(
        cycles
            .iter()
            .any(|c| c == "in crate: {b, c}: b -> c, c -> b"),
        "{cycles:?}"
    );
    // An arrow back from a file's tests is no cycle.
    std::fs::write(
        src.join("c.rs"),
        "#[cfg(test)]\nmod t;\nfn f() {}\n#[cfg(test)]\nmod tests { use crate::b::Z; }\n",
    )
    .unwrap();
    assert!(!all_cycles(src).iter().any(|c| c.contains("{b, c}")));
    // Without the arrows back, no cycle.
    std::fs::write(src.join("c.rs"), "fn f() {}\n").unwrap();
    std::fs::write(src.join("a/y.rs"), "pub struct Why;\n").unwrap();
    assert!(all_cycles(src).is_empty());
}

#[test]
fn lib_rs_map_names_every_top_level_module() {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    let (docs, code): (Vec<&str>, Vec<&str>) = lib.lines().partition(|l| l.starts_with("//!"));
    let docs = docs.join("\n");
    let modules: Vec<&str> = code
        .iter()
        .filter_map(|l| {
            let l = l.trim();
            let l = l
                .strip_prefix("pub ")
                .or(l.strip_prefix("pub(crate) "))
                .unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';')
        })
        .collect();
    assert!(modules.len() > 5, "modules read from lib.rs: {modules:?}");
    let missing: Vec<&&str> = modules
        .iter()
        .filter(|m| !docs.contains(&format!("[`{m}`]")))
        .collect();
    assert!(missing.is_empty(), "lib.rs's map does not name {missing:?}");
}
