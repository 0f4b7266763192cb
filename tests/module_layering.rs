//! No import circle between the files of one crate: each module can be read with only what is
//! below it. Reads every crate's `src/` tree, draws an edge from a file to every module file it
//! names (`crate::a::b`, `super::x`, a child module it declares and then uses), and fails on any
//! strongly connected group of two or more files, naming them. The crate root (lib.rs, main.rs)
//! is left out: it declares and re-exports everything by design.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's module files: module path (`a::b`) -> file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "bin") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            out.insert(parts.join("::"), p);
        }
    }
    out
}

/// The code of a file without its comments (line comments; doc comments are comments too) and
/// without its unit tests (a `#[cfg(test)]` module at the bottom: its `super::` is the file).
fn code(text: &str) -> String {
    text.lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn idents(s: &str) -> Vec<String> {
    s.split("::").map(|p| p.trim().trim_start_matches('{').to_string()).collect()
}

/// Every path the file names from `prefix` (`crate`, `super`), braces expanded one level:
/// `crate::{a::B, c}` gives `a::B` and `c`.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let pat = format!("{prefix}::");
    let mut rest = code;
    while let Some(i) = rest.find(&pat) {
        let before = rest[..i].chars().last();
        rest = &rest[i + pat.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `racelab_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    out.push(idents(item.split_whitespace().next().unwrap_or("")));
                }
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            out.push(idents(&rest[..end]));
        }
    }
    out
}

/// The longest module of `mods` that `path` starts with.
fn resolve(mods: &BTreeMap<String, PathBuf>, path: &[String]) -> Option<String> {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| mods.contains_key(m))
}

fn edges(mods: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, file) in mods {
        let text = code(&std::fs::read_to_string(file).expect("read"));
        let me: Vec<String> = m.split("::").map(str::to_string).collect();
        let is_dir_module = file.file_name().is_some_and(|f| f == "mod.rs");
        let mut targets = BTreeSet::new();
        for p in paths_after(&text, "crate") {
            targets.extend(resolve(mods, &p));
        }
        // `super` is the parent of this module.
        let parent: Vec<String> = me[..me.len() - 1].to_vec();
        for p in paths_after(&text, "super") {
            let mut full = parent.clone();
            full.extend(p);
            targets.extend(resolve(mods, &full));
        }
        // Child modules this file declares and then uses by name.
        for line in text.lines() {
            let l = line.trim();
            let decl = l
                .strip_prefix("pub(crate) mod ")
                .or(l.strip_prefix("pub mod "))
                .or(l.strip_prefix("mod "));
            let Some(name) = decl.and_then(|d| d.strip_suffix(';')) else { continue };
            let child = format!("{m}::{name}");
            let used = text
                .lines()
                .any(|u| !u.contains(&format!("mod {name};")) && u.contains(&format!("{name}::")));
            if mods.contains_key(&child) && used {
                targets.insert(child);
            }
        }
        let _ = is_dir_module;
        targets.remove(m);
        g.insert(m.clone(), targets);
    }
    g
}

/// Tarjan's strongly connected components of size two or more.
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.g.contains_key(w) {
                continue;
            }
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn crate_dirs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.clone(), root.join("races"), root.join("benches")];
    if let Ok(entries) = std::fs::read_dir(root.join("crates")) {
        let mut crates: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        crates.sort();
        dirs.extend(crates);
    }
    dirs.into_iter().filter(|d| d.join("src").is_dir()).collect()
}

/// Circles still being untangled (issue 15): each entry may only shrink. Empty when done.
const KNOWN: &[&str] = &[];

#[test]
fn no_file_of_a_crate_imports_another_that_imports_it_back() {
    let mut found = Vec::new();
    for dir in crate_dirs() {
        let mods = modules(&dir.join("src"));
        for c in circles(&edges(&mods)) {
            let name =
                dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let text = format!("{name}: {}", c.join(" <-> "));
            // A known circle may lose members; any other circle is new.
            let shrunk = KNOWN.iter().any(|k| {
                k.split_once(": ").is_some_and(|(kn, kc)| {
                    kn == name && c.iter().all(|m| kc.split(" <-> ").any(|x| x == m))
                })
            });
            if !shrunk {
                found.push(text);
            }
        }
    }
    assert!(found.is_empty(), "import circles between files:\n  {}", found.join("\n  "));
}

#[test]
fn the_checker_sees_a_circle_and_a_clean_chain() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["a".to_string()].into());
    g.insert("c".into(), ["a".to_string()].into());
    assert_eq!(circles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
    assert_eq!(
        paths_after("use crate::{x::Y, z};", "crate"),
        vec![vec!["x".to_string(), "Y".to_string()], vec!["z".to_string()]]
    );
}
