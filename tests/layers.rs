//! The crate's modules form layers in the pipeline's order; a module may use
//! only modules of earlier layers (and itself). This test reads every source
//! file and fails on a `crate::…` reference that points back up the order,
//! or sideways to another module of the same layer.

use std::path::{Path, PathBuf};

/// Earliest first. Modules on one line are independent of each other.
const LAYERS: &[&[&str]] = &[
    &["options"],
    &["nn"],
    &["positional", "tasks"],
    &["model"],
    &["training"],
    &["store"],
    &["report"],
    &["experiment"],
    &["sweep"],
    &["bench"],
];

/// `#[macro_export]` macros live at the crate root; this is where each is defined.
const MACROS: &[(&str, &str)] = &[("registry", "options")];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level modules named by `crate::` paths in `text`, with their line
/// numbers, including each name of a `use crate::{a, b::{c, d}}` group, which
/// may span lines.
fn references(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(at) = rest.find("crate::") {
        let line = text[..offset + at].matches('\n').count() + 1;
        let tail = &rest[at + "crate::".len()..];
        if let Some(group) = tail.strip_prefix('{') {
            for name in group_heads(group) {
                found.push((line, name));
            }
        } else {
            let name: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let is_macro = tail[name.len()..].starts_with('!');
            let module = match MACROS.iter().find(|(m, _)| is_macro && *m == name) {
                Some((_, defined_in)) => defined_in.to_string(),
                None => name,
            };
            if !module.is_empty() {
                found.push((line, module));
            }
        }
        offset += at + "crate::".len();
        rest = &text[offset..];
    }
    found
}

/// The first path segment of each item of a `{…}` group (the text after
/// its opening brace), up to the matching closing brace.
fn group_heads(group: &str) -> Vec<String> {
    let (mut depth, mut item, mut heads) = (0usize, String::new(), Vec::new());
    let mut push = |item: &mut String| {
        let head = item
            .trim()
            .split("::")
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if !head.is_empty() && head != "self" {
            heads.push(head);
        }
        item.clear();
    };
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => push(&mut item),
            _ if depth == 0 => item.push(c),
            _ => {}
        }
    }
    push(&mut item);
    heads
}

/// Edges that go back up the order: (line, from, to).
fn back_edges(module: &str, text: &str) -> Vec<(usize, String)> {
    let Some(own) = rank(module) else {
        return vec![(0, format!("module `{module}` is in no layer of LAYERS"))];
    };
    references(text)
        .into_iter()
        .filter(|(_, to)| to != module)
        .filter_map(|(line, to)| match rank(&to) {
            Some(r) if r < own => None,
            Some(r) if r == own => {
                Some((line, format!("`{module}` uses `{to}` of the same layer")))
            }
            Some(_) => Some((line, format!("`{module}` uses `{to}`, a later layer"))),
            None => Some((
                line,
                format!("`{module}` uses `{to}`, which is in no layer"),
            )),
        })
        .collect()
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_uses_a_later_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let first = relative.components().next().expect("a file name");
        let module = first.as_os_str().to_string_lossy();
        let module = module.trim_end_matches(".rs");
        // The crate root and the binary see everything.
        if ["lib", "main", "build"].contains(&module) {
            continue;
        }
        checked += 1;
        let text = std::fs::read_to_string(file).expect("source is UTF-8");
        for (line, problem) in back_edges(module, &text) {
            problems.push(format!("src/{}:{line}: {problem}", relative.display()));
        }
    }
    assert!(checked > 50, "only {checked} source files found");
    assert!(
        problems.is_empty(),
        "dependencies against the layer order:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("src/lib.rs");
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';'))
        .collect();
    assert!(!modules.is_empty());
    for m in modules {
        assert!(
            rank(m).is_some(),
            "lib.rs declares `{m}`, which LAYERS does not place"
        );
    }
}

#[test]
fn the_checker_catches_back_and_sideways_edges() {
    let text = "use crate::options::FieldError;\nuse crate::{model, nn::Act};\nfn f() { crate::tasks::build(); }\ncrate::registry!(X => Y);\nuse crate::{\n    nn::{hooks::Positions, Act},\n    sweep,\n};\n";
    let edges = back_edges("positional", text);
    let lines: Vec<usize> = edges.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![2, 3, 5], "{edges:?}");
    assert!(edges[2].1.contains("`sweep`"), "{edges:?}");
    assert!(edges[0].1.contains("later layer"), "{edges:?}");
    assert!(edges[1].1.contains("same layer"), "{edges:?}");
    assert!(back_edges("sweep", text).is_empty());
}
