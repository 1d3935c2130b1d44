//! docs/architecture.md lists every source file under `src/`, and nothing that is not there:
//! the module tree in the doc is read and compared with the tree on disk.

use std::collections::BTreeSet;
use std::path::Path;

/// The paths (relative to `src/`) the doc's module tree names.
fn paths_in_doc(doc: &str) -> BTreeSet<String> {
    let start = doc.find("## Modules").expect("a '## Modules' section");
    let block = doc[start..]
        .split("```")
        .nth(1)
        .expect("a code block under '## Modules'");
    let mut stack: Vec<String> = Vec::new();
    let mut paths = BTreeSet::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let depth = (line.len() - line.trim_start().len()) / 2;
        // Names come first, separated by ", "; the description follows two spaces.
        let names = line.trim_start().split("  ").next().unwrap_or("");
        stack.truncate(depth);
        for name in names.split(", ").map(str::trim) {
            if let Some(dir) = name.strip_suffix('/') {
                stack.push(dir.to_owned());
            } else {
                let mut parts = stack.clone();
                parts.push(name.to_owned());
                paths.insert(parts[1..].join("/"));
            }
        }
    }
    paths
}

fn paths_on_disk(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}{name}");
        if entry.file_type().unwrap().is_dir() {
            paths_on_disk(&entry.path(), &format!("{path}/"), out);
        } else if name.ends_with(".rs") {
            out.insert(path);
        }
    }
}

#[test]
fn the_module_tree_in_the_architecture_doc_is_the_tree_in_src() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let in_doc = paths_in_doc(&doc);
    let mut on_disk = BTreeSet::new();
    paths_on_disk(&root.join("src"), "", &mut on_disk);
    let missing: Vec<_> = on_disk.difference(&in_doc).collect();
    let stale: Vec<_> = in_doc.difference(&on_disk).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/architecture.md is out of date.\n  not in the doc: {missing:?}\n  in the doc but not in src/: {stale:?}"
    );
}
