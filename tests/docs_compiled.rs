//! Every guide in `docs/` (and the README) is included into the crate's
//! doctests by `src/lib.rs`, so `cargo test --doc` compiles its Rust
//! snippets: a new guide cannot be forgotten.

use std::collections::BTreeSet;

const LIB: &str = include_str!("../src/lib.rs");

/// Guides not included yet, each with the reason.
const NOT_YET: &[(&str, &str)] = &[(
    "strategies.md",
    "its first snippet is a call outline marked `rust`; its owner changes it to `text`",
)];

#[test]
fn every_guide_is_compiled_as_doctests() {
    let included: BTreeSet<String> = LIB
        .lines()
        .filter_map(|l| {
            let path = l.split("include_str!(\"../").nth(1)?;
            Some(path.split('"').next()?.to_string())
        })
        .collect();
    assert!(included.contains("README.md"), "README.md is not included");
    let docs = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/docs")).expect("docs/");
    let mut missing = Vec::new();
    for entry in docs {
        let name = entry.expect("docs entry").file_name();
        let name = name.to_string_lossy();
        if !name.ends_with(".md") || NOT_YET.iter().any(|(n, _)| *n == name) {
            continue;
        }
        if !included.contains(&format!("docs/{name}")) {
            missing.push(name.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "not compiled as doctests: {missing:?}; add to src/lib.rs:\n\
         #[cfg(doctest)]\n#[doc = include_str!(\"../docs/NAME.md\")]\nmod NAME_doctests {{}}"
    );
    for (name, why) in NOT_YET {
        assert!(
            !included.contains(&format!("docs/{name}")),
            "docs/{name} is included now: remove it from NOT_YET ({why})"
        );
    }
}
