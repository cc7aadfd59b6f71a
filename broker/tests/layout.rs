//! The broker's shape, checked: its top-level modules depend on each other in one direction
//! only (no import circle), and no source file of the broker or the storage crate grows past
//! [`FILE_LINES_MAX`] lines. Both are what keeps each capability in one obvious place
//! (`src/main.rs` lists the rooms and their order).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Longest source file allowed (about a thousand lines, with room for a file's tests).
const FILE_LINES_MAX: usize = 1100;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments (so a doc link does not count as a dependency).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level modules named by `crate::...` paths in `code` (including `crate::{a, b::c}`).
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            // A use list: every top-level name in it, nested braces skipped.
            let mut depth = 0;
            let mut item = String::new();
            for c in list.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.extend(first_ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            out.extend(first_ident(&item));
        } else {
            out.extend(first_ident(rest));
        }
    }
    out
}

fn first_ident(s: &str) -> Option<String> {
    let id: String = s
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!id.is_empty()).then_some(id)
}

#[test]
fn top_level_modules_depend_on_each_other_in_one_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a path").as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
        if module == "main" {
            continue;
        }
        let text = fs::read_to_string(f).expect("read source");
        let deps = graph.entry(module.clone()).or_default();
        for d in crate_refs(&code(&text)) {
            if d != module {
                deps.insert(d);
            }
        }
    }
    assert!(graph.len() > 10, "found only {:?}", graph.keys());
    // Every circle shows up as a module that reaches itself.
    let mut circles = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if next == start {
                    circles.push(path.join(" -> ") + " -> " + start);
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles among the broker's top-level modules:\n{}\n\nthe graph: {graph:#?}",
        circles.join("\n")
    );
}

#[test]
fn no_source_file_of_the_broker_or_storage_is_over_the_limit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("../storage/src"), &mut files);
    let mut long: Vec<(usize, String)> = files
        .iter()
        .map(|f| {
            let lines = fs::read_to_string(f).expect("read source").lines().count();
            (lines, f.display().to_string())
        })
        .filter(|(lines, _)| *lines > FILE_LINES_MAX)
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "source files over {FILE_LINES_MAX} lines (split them by concern): {long:?}"
    );
}

#[test]
fn the_reference_scanner_sees_use_lists_and_paths() {
    let refs = crate_refs(&code(
        "use crate::{a::X, b, c::{d, e}};\nlet x = crate::f::g();\n// crate::comment\n",
    ));
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        vec!["a", "b", "c", "f"]
    );
}
