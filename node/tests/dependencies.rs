//! What Kizuna depends on, checked in every test run (the part of `cargo deny` that needs no
//! network beyond the package registry): every crate of the build comes from crates.io or this
//! repository, under a license `ops/deny.toml` allows, and in one version unless that file lists
//! it. Advisories need the RustSec database from GitHub, which CI cannot reach
//! (docs/security.md, "Dependencies").

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

struct Policy {
    licenses: BTreeSet<String>,
    duplicates_allowed: BTreeSet<String>,
}

fn policy(top: &Path) -> Policy {
    let text = std::fs::read_to_string(top.join("ops/deny.toml")).expect("ops/deny.toml");
    let deny: toml::Table = toml::from_str(&text).expect("ops/deny.toml is TOML");
    let strings = |section: &str, key: &str| -> BTreeSet<String> {
        let list = deny[section][key].as_array().unwrap_or_else(|| panic!("[{section}] {key}"));
        list.iter().map(|v| v.as_str().expect("a string").to_owned()).collect()
    };
    Policy { licenses: strings("licenses", "allow"), duplicates_allowed: strings("bans", "skip") }
}

/// Whether an SPDX expression (as crates write them: `A OR B`, `A/B`, `(A OR B) AND C`,
/// `A WITH exception`) lets us use the crate under allowed licenses only.
fn allowed(expression: &str, allow: &BTreeSet<String>) -> bool {
    let normalized = expression.replace('/', " OR ").replace('(', " ( ").replace(')', " ) ");
    let tokens: Vec<&str> = normalized.split_whitespace().collect();
    let mut at = 0;
    let ok = any_of(&tokens, &mut at, allow);
    ok && at == tokens.len()
}

/// `all_of (OR all_of)*`: one alternative that is allowed is enough.
fn any_of(tokens: &[&str], at: &mut usize, allow: &BTreeSet<String>) -> bool {
    let mut ok = all_of(tokens, at, allow);
    while tokens.get(*at) == Some(&"OR") {
        *at += 1;
        ok |= all_of(tokens, at, allow);
    }
    ok
}

/// `term (AND term)*`: every part must be allowed.
fn all_of(tokens: &[&str], at: &mut usize, allow: &BTreeSet<String>) -> bool {
    let mut ok = term(tokens, at, allow);
    while tokens.get(*at) == Some(&"AND") {
        *at += 1;
        ok &= term(tokens, at, allow);
    }
    ok
}

/// A license (with its exception), or a parenthesised expression.
fn term(tokens: &[&str], at: &mut usize, allow: &BTreeSet<String>) -> bool {
    let Some(first) = tokens.get(*at) else { return false };
    *at += 1;
    if *first == "(" {
        let ok = any_of(tokens, at, allow);
        let closed = tokens.get(*at) == Some(&")");
        *at += 1;
        return ok && closed;
    }
    let mut license = (*first).to_owned();
    if tokens.get(*at) == Some(&"WITH") {
        license = format!("{license} WITH {}", tokens.get(*at + 1).copied().unwrap_or_default());
        *at += 2;
    }
    allow.contains(&license)
}

#[test]
fn license_expressions_are_read_as_spdx_says() {
    let allow: BTreeSet<String> =
        ["MIT", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "Unicode-3.0"].map(Into::into).into();
    for (expression, ok) in [
        ("MIT", true),
        ("MIT/Apache-2.0", true),
        ("MIT OR GPL-3.0", true),
        ("MIT AND GPL-3.0", false),
        ("GPL-3.0", false),
        ("(MIT OR Apache-2.0) AND Unicode-3.0", true),
        ("(MIT OR GPL-3.0) AND GPL-2.0", false),
        ("Apache-2.0 WITH LLVM-exception OR GPL-3.0", true),
        ("GPL-2.0 WITH Classpath-exception-2.0", false),
        ("(MIT", false),
        ("", false),
    ] {
        assert_eq!(allowed(expression, &allow), ok, "{expression:?}");
    }
}

#[test]
fn every_dependency_is_from_crates_io_under_an_allowed_license_and_in_one_version() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let policy = policy(&top);
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--filter-platform", "x86_64-unknown-linux-gnu"])
        .current_dir(&top)
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let in_build: BTreeSet<&str> =
        metadata["resolve"]["nodes"].as_array().expect("a resolve").iter().filter_map(|n| n["id"].as_str()).collect();
    let mut versions: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut problems = Vec::new();
    for package in metadata["packages"].as_array().expect("packages") {
        if !package["id"].as_str().is_some_and(|id| in_build.contains(id)) {
            continue;
        }
        let (name, version) = (package["name"].as_str().unwrap_or("?"), package["version"].as_str().unwrap_or("?"));
        versions.entry(name).or_default().insert(version);
        match package["source"].as_str() {
            None | Some(CRATES_IO) => {}
            Some(other) => problems.push(format!("{name} {version} comes from {other}")),
        }
        let license = package["license"].as_str().unwrap_or("");
        if !allowed(license, &policy.licenses) {
            problems.push(format!("{name} {version}: license {license:?} is not allowed by ops/deny.toml"));
        }
    }
    for (name, seen) in &versions {
        if seen.len() > 1 && !policy.duplicates_allowed.contains(*name) {
            problems.push(format!("{name} in versions {seen:?}: not listed in ops/deny.toml [bans] skip"));
        }
    }
    let stale: Vec<_> =
        policy.duplicates_allowed.iter().filter(|n| versions.get(n.as_str()).is_none_or(|v| v.len() < 2)).collect();
    assert!(stale.is_empty(), "no longer duplicated, remove from ops/deny.toml [bans] skip: {stale:?}");
    assert!(versions.len() > 100, "the whole build was checked: {} crates", versions.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
