//! Embeds the browser client (node/web/dist, built by `make web`) into the server, so every node
//! serves it from its public port and a release is one binary.
//!
//! Writes `$OUT_DIR/web_bundle.rs`: a table of (path, content type, bytes) with one
//! `include_bytes!` per file. A missing bundle stops the build: a node that served a blank page
//! would look broken to its users in a way no log explains.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const NOT_BUILT: &str = "the browser client is not built: run `make web` (or `cd node/web && npm ci && npm run build`)";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dist = manifest.join("../web/dist");
    // Before any panic, so that cargo runs this script again once the bundle appears.
    println!("cargo:rerun-if-changed={}", dist.display());
    if !dist.join("index.html").is_file() {
        panic!("{NOT_BUILT}; {} has no index.html", dist.display());
    }
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut table = String::from("/// The browser client's files: (URL path, content type, bytes).\n");
    table.push_str("pub(crate) static BUNDLE: &[(&str, &str, &[u8])] = &[\n");
    for (url_path, file) in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let file = file.to_str().unwrap_or_else(|| panic!("{}: not a UTF-8 path", file.display()));
        writeln!(table, "    ({url_path:?}, {:?}, include_bytes!({file:?})),", content_type(url_path))
            .expect("writing to a String");
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("web_bundle.rs"), table).expect("writing web_bundle.rs");
}

/// Every file under `dir`, as (URL path from `root`, e.g. `/app.js`, absolute file path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{NOT_BUILT}; reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())).path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, files);
            continue;
        }
        let relative = path.strip_prefix(root).expect("a file under the bundle root");
        let parts: Vec<_> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        files.push((format!("/{}", parts.join("/")), path.canonicalize().unwrap_or(path)));
    }
}

/// The content type a browser needs for a bundle file; charset on text, so that Japanese text
/// never depends on the browser's guess.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).as_deref() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}
