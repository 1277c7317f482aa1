//! The code's layering, checked from its source: no import cycle between the files of a
//! crate. An edge is any `crate::` path a file names outside comments (a `use`, or a path in
//! code), resolved to the file that defines that module. A cycle means two files each need
//! the other, so neither can be read, tested or changed alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module path of every `.rs` file under `src` (`a/b.rs` and `a/b/mod.rs` are `a::b`).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// The source without comments (line comments; doc comments are line comments too).
fn code_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string literal ("http://…") is not a comment: close enough to
            // keep the text before it and drop the rest only when no quote precedes it.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path named after `crate::`, with `{a::b, c}` groups expanded one level.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `mycrate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => paths.push(std::mem::take(&mut item)),
                    _ => {}
                }
                if depth == 0 && c != ',' && c != '}' {
                    item.push(c);
                }
            }
            paths.push(item);
        } else {
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(path);
        }
    }
    paths
        .into_iter()
        .map(|p| p.split_whitespace().collect::<String>())
        .collect()
}

/// The module a path lands in: its longest prefix that is a file of the crate.
fn resolve(path: &str, modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules(src);
    modules
        .iter()
        .map(|(module, path)| {
            let to = crate_paths(&code_of(path))
                .iter()
                .filter_map(|p| resolve(p, &modules))
                .filter(|m| m != module && !m.is_empty())
                .collect();
            (module.clone(), to)
        })
        .collect()
}

/// The groups of files that import each other, directly or round a loop.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            if m == to {
                return true;
            }
            if seen.insert(m.clone()) {
                todo.extend(graph.get(&m).into_iter().flatten().cloned());
            }
        }
        false
    }
    let mut found: Vec<Vec<String>> = Vec::new();
    for module in graph.keys() {
        if found.iter().any(|group| group.contains(module)) {
            continue;
        }
        let group: Vec<String> = graph
            .keys()
            .filter(|other| {
                graph[module].iter().any(|next| reaches(graph, next, other))
                    && graph[*other]
                        .iter()
                        .any(|next| reaches(graph, next, module))
            })
            .cloned()
            .collect();
        if !group.is_empty() {
            found.push(group);
        }
    }
    found
}

fn assert_acyclic(krate: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src");
    let graph = edges(&src);
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles in {krate} (each group: files that all lead back to each other): \
         {found:?}\nedges: {graph:#?}"
    );
}

#[test]
fn no_file_of_the_broker_imports_one_that_imports_it_back() {
    assert_acyclic("broker");
}

#[test]
fn no_file_of_the_worker_imports_one_that_imports_it_back() {
    assert_acyclic("worker");
}

#[test]
fn no_file_of_the_protocol_imports_one_that_imports_it_back() {
    assert_acyclic("protocol");
}

#[test]
fn the_check_sees_a_cycle_when_there_is_one() {
    let graph = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
        ("d".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(!found[0].contains(&"d".to_string()));
    assert_eq!(
        crate_paths("use crate::{x::Y, z::{W, V}};\nlet v = crate::q::f(); // crate::no"),
        vec!["x::Y", "z::", "q::f", "no"],
        "(comments are stripped before, by code_of)"
    );
    // And it reads the real code: the server uses the spawner.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert!(edges(&src)["server"].contains("spawner"));
}

/// ARCHITECTURE.md's hop table (`GET /` to `302`) must name functions that exist where it says:
/// every `` `dir/file.rs:name` `` or `` `dir/file.rs:Type::name` `` in it is checked.
#[test]
fn the_architecture_hop_table_names_functions_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let table = doc
        .split("## 2.")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("ARCHITECTURE.md has a section 2");
    let mut checked = 0;
    for quoted in table.split('`').skip(1).step_by(2) {
        let Some((file, item)) = quoted.split_once(".rs:") else {
            continue;
        };
        let path = root.join(format!("{file}.rs"));
        let code = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("ARCHITECTURE.md names {file}.rs, which does not exist"));
        let (owner, name) = match item.rsplit_once("::") {
            Some((owner, name)) => (Some(owner), name),
            None => (None, item),
        };
        assert!(
            code.contains(&format!("fn {name}(")) || code.contains(&format!("fn {name}<")),
            "ARCHITECTURE.md names {quoted}, but {file}.rs has no fn {name}"
        );
        if let Some(owner) = owner {
            assert!(
                code.contains(&format!("impl {owner}")) || code.contains("impl<"),
                "ARCHITECTURE.md names {quoted}, but {file}.rs has no impl {owner}"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 15,
        "only {checked} hops found: did the table's format change?"
    );
}
