//! What Kizuna depends on, checked in every test run (the part of `cargo deny` that needs no
//! network beyond the package registry): every crate of the build comes from crates.io or this
//! repository, under a license `ops/deny.toml` allows, and in one version unless that file lists
//! it; and no crate is at a version a RustSec advisory names, by the snapshot of the advisory
//! database vendored in `ops/advisories` (CI cannot reach GitHub; docs/security.md,
//! "Dependencies").

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

struct Policy {
    licenses: BTreeSet<String>,
    duplicates_allowed: BTreeSet<String>,
    /// Advisories judged not to concern Kizuna, each with its reason in ops/deny.toml.
    advisories_ignored: BTreeSet<String>,
}

fn policy(top: &Path) -> Policy {
    let text = std::fs::read_to_string(top.join("ops/deny.toml")).expect("ops/deny.toml");
    let deny: toml::Table = toml::from_str(&text).expect("ops/deny.toml is TOML");
    let strings = |section: &str, key: &str| -> BTreeSet<String> {
        let list = deny[section][key].as_array().unwrap_or_else(|| panic!("[{section}] {key}"));
        list.iter().map(|v| v.as_str().expect("a string").to_owned()).collect()
    };
    let ignored = deny["advisories"]["ignore"].as_array().expect("[advisories] ignore");
    let advisories_ignored = ignored
        .iter()
        .map(|entry| {
            let reason = entry.get("reason").and_then(|r| r.as_str()).unwrap_or_default();
            assert!(!reason.trim().is_empty(), "every ignored advisory states why: {entry}");
            entry["id"].as_str().expect("an advisory id").to_owned()
        })
        .collect();
    Policy { licenses: strings("licenses", "allow"), duplicates_allowed: strings("bans", "skip"), advisories_ignored }
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

/// The packages of the build for Linux, from `cargo metadata` (`--locked`: Cargo.lock as committed).
fn packages_in_build(top: &Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--filter-platform", "x86_64-unknown-linux-gnu"])
        .current_dir(top)
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let in_build: BTreeSet<&str> =
        metadata["resolve"]["nodes"].as_array().expect("a resolve").iter().filter_map(|n| n["id"].as_str()).collect();
    let packages = metadata["packages"].as_array().expect("packages");
    let built: Vec<_> =
        packages.iter().filter(|p| p["id"].as_str().is_some_and(|id| in_build.contains(id))).cloned().collect();
    assert!(built.len() > 100, "the whole build was read: {} packages", built.len());
    built
}

fn name_and_version(package: &serde_json::Value) -> (&str, &str) {
    (package["name"].as_str().unwrap_or("?"), package["version"].as_str().unwrap_or("?"))
}

#[test]
fn every_dependency_is_from_crates_io_under_an_allowed_license_and_in_one_version() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let policy = policy(&top);
    let packages = packages_in_build(&top);
    let mut versions: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut problems = Vec::new();
    for package in &packages {
        let (name, version) = name_and_version(package);
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
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// One RustSec advisory: the TOML block its Markdown file starts with.
struct Advisory {
    id: String,
    withdrawn: bool,
    /// Versions that are not affected: `patched` and `unaffected` together.
    safe: Vec<semver::VersionReq>,
}

impl Advisory {
    fn read(path: &Path) -> Advisory {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let block = text
            .strip_prefix("```toml\n")
            .and_then(|rest| rest.split_once("\n```").map(|(block, _)| block))
            .unwrap_or_else(|| panic!("{}: no TOML block", path.display()));
        let table: toml::Table = toml::from_str(block).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let reqs = |key: &str| -> Vec<semver::VersionReq> {
            let list = table.get("versions").and_then(|v| v.get(key)).and_then(|v| v.as_array());
            list.into_iter()
                .flatten()
                .map(|r| {
                    let r = r.as_str().expect("a version requirement");
                    semver::VersionReq::parse(r).unwrap_or_else(|e| panic!("{}: {r:?}: {e}", path.display()))
                })
                .collect()
        };
        let mut safe = reqs("patched");
        safe.extend(reqs("unaffected"));
        Advisory {
            id: table["advisory"]["id"].as_str().expect("an id").to_owned(),
            withdrawn: table["advisory"].get("withdrawn").is_some(),
            safe,
        }
    }

    fn affects(&self, version: &semver::Version) -> bool {
        !self.withdrawn && !self.safe.iter().any(|req| req.matches(version))
    }
}

/// The vendored advisories of one crate (none when the database has none for it).
fn advisories_of(snapshot: &Path, name: &str) -> Vec<Advisory> {
    let Ok(files) = std::fs::read_dir(snapshot.join("crates").join(name)) else { return Vec::new() };
    files.map(|f| Advisory::read(&f.expect("a directory entry").path())).collect()
}

#[test]
fn advisories_are_judged_by_their_patched_and_unaffected_versions() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rustls = Advisory::read(&top.join("ops/advisories/crates/rustls/RUSTSEC-2024-0336.md"));
    for (version, affected) in
        [("0.23.4", true), ("0.23.5", false), ("0.22.3", true), ("0.22.4", false), ("0.20.9", true)]
    {
        let v = semver::Version::parse(version).expect("a version");
        assert_eq!(rustls.affects(&v), affected, "rustls {version} by {}", rustls.id);
    }
}

#[test]
fn no_dependency_is_at_a_version_an_advisory_names() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let snapshot = top.join("ops/advisories");
    let index = std::fs::read_to_string(snapshot.join("index.txt")).expect("ops/advisories/index.txt");
    let with_advisories: BTreeSet<&str> = index.lines().collect();
    assert!(with_advisories.len() > 500, "the snapshot's index lists the database's crates");
    let ignored = policy(&top).advisories_ignored;
    let mut problems = Vec::new();
    for package in packages_in_build(&top) {
        let (name, version) = name_and_version(&package);
        let vendored = snapshot.join("crates").join(name).is_dir();
        if with_advisories.contains(name) && !vendored {
            problems.push(format!("{name} has advisories not vendored: run ops/scripts/refresh-advisories.sh"));
        }
        let version = semver::Version::parse(version).expect("cargo metadata gives semver versions");
        for advisory in advisories_of(&snapshot, name) {
            if advisory.affects(&version) && !ignored.contains(&advisory.id) {
                problems.push(format!("{name} {version} is named by {} (ops/advisories)", advisory.id));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
