//! The files the validator reads ([`Sources`]), loaded from a checkout or mutated in memory by
//! the tests, and repository-relative path resolution.

use std::collections::BTreeMap;
use std::path::Path;

use super::catalog::OPERATION_TABLES;

/// The files the validator reads, by repository-relative path.
#[derive(Clone, Default)]
pub(crate) struct Sources {
    pub files: BTreeMap<String, String>,
}

impl Sources {
    /// Reads `infra/**/*.bicep` (and the infra README and example YAML), the manifest(s) and the
    /// operation tables from a checkout.
    pub fn load(root: &Path) -> Sources {
        let mut files = BTreeMap::new();
        let mut stack = vec![root.join("infra")];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
            for entry in entries {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path
                    .extension()
                    .is_some_and(|e| e == "bicep" || e == "bicepparam" || e == "yaml" || e == "md")
                {
                    add(&mut files, root, &path);
                }
            }
        }
        for manifest in std::fs::read_dir(root.join("shipper/manifest")).expect("manifest dir") {
            let path = manifest.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                add(&mut files, root, &path);
            }
        }
        for (_, table) in OPERATION_TABLES {
            add(&mut files, root, &root.join(table));
        }
        Sources { files }
    }

    pub fn get(&self, path: &str) -> &str {
        self.files
            .get(path)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {path}"))
    }

    /// A copy with `from` replaced by `to` in `path`; panics when `from` is absent, so a broken
    /// copy can never silently equal the original.
    pub fn mutated(&self, path: &str, from: &str, to: &str) -> Sources {
        let text = self.get(path);
        assert!(text.contains(from), "{path} does not contain {from:?}");
        let mut copy = self.clone();
        copy.files
            .insert(path.to_string(), text.replacen(from, to, 1));
        copy
    }
}

pub(crate) fn add(files: &mut BTreeMap<String, String>, root: &Path, path: &Path) {
    let rel = path
        .strip_prefix(root)
        .expect("under root")
        .to_string_lossy()
        .replace('\\', "/");
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    files.insert(rel, text);
}

/// Joins a path relative to `file`'s directory, resolving `..`.
pub(crate) fn resolve(file: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = file.split('/').collect();
    parts.pop();
    for seg in rel.split('/') {
        match seg {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}
