//! The house as drawn (DESIGN.md, README "Layout"): a room may use its own floor and the floors
//! below it, never one above. Reads the `crate::` paths of every file under src/ (test modules
//! left out) and fails naming the file and the import that climbs.

use std::path::{Path, PathBuf};

/// Floors, top first: front doors > app > the rooms an operation runs through > exec and
/// config > pure leaves and OS plumbing.
const FLOORS: &[(&str, u8)] = &[
    ("front", 4),
    ("app", 3),
    ("engine", 2),
    ("guards", 2),
    ("record", 2),
    ("sinks", 2),
    ("download", 2),
    ("exec", 1),
    ("config", 1),
    ("classify", 0),
    ("policy", 0),
    ("log", 0),
    ("sys", 0),
    ("exit", 0),
];

fn floor(room: &str) -> Option<u8> {
    FLOORS.iter().find(|(r, _)| *r == room).map(|(_, f)| *f)
}

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

/// The rooms a file names through `crate::room` (in `use` lines and in paths).
fn rooms_used(text: &str) -> Vec<String> {
    let mut used = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            // `crate::{a, b}`: every name in the braces.
            if let Some(group) = rest.strip_prefix('{').and_then(|g| g.split('}').next()) {
                used.extend(group.split(',').filter_map(|s| {
                    let n = s.trim().split("::").next()?.trim().to_string();
                    (!n.is_empty()).then_some(n)
                }));
            }
        } else {
            used.push(name);
        }
    }
    used
}

#[test]
fn no_room_imports_a_floor_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut climbs = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let room = first.trim_end_matches(".rs");
        if room == "lib" || room == "main" {
            continue;
        }
        let here = floor(room).unwrap_or_else(|| {
            panic!(
                "src/{}: room {room:?} has no floor in FLOORS",
                rel.display()
            )
        });
        let text = std::fs::read_to_string(file).unwrap();
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(&text);
        for used in rooms_used(code) {
            let there = floor(&used).unwrap_or_else(|| {
                panic!("src/{}: crate::{used} is no room in FLOORS", rel.display())
            });
            if there > here {
                climbs.push(format!("src/{} ({room}) uses crate::{used}", rel.display()));
            }
            checked += 1;
        }
    }
    assert!(
        checked > 100,
        "only {checked} imports read: is the scan still right?"
    );
    assert!(
        climbs.is_empty(),
        "imports that climb a floor:\n{}",
        climbs.join("\n")
    );
}

#[test]
fn the_scan_sees_paths_and_groups() {
    let used = rooms_used(
        "use crate::app::Answer;\nlet x = crate::exit::USAGE; use crate::{front, sys::stop};",
    );
    assert_eq!(used, ["app", "exit", "front", "sys"]);
}
