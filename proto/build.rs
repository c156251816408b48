//! Compiles `kizuna/<area>/v1/*.proto` with protox (pure Rust), so no system `protoc` is needed.
use std::path::PathBuf;

/// The services a node's public port serves; the internal Raft API is compiled but kept out of
/// the public descriptor set, so reflection on the public port cannot describe it.
const PUBLIC: [&str; 3] =
    ["kizuna/admin/v1/admin.proto", "kizuna/records/v1/records.proto", "kizuna/collab/v1/collab.proto"];
const INTERNAL: [&str; 1] = ["kizuna/raft/v1/raft.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for f in PUBLIC.iter().chain(&INTERNAL) {
        println!("cargo:rerun-if-changed={f}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let public = protox::compile(PUBLIC, ["."])?;
    std::fs::write(out.join("kizuna_public_descriptor.bin"), prost::Message::encode_to_vec(&public))?;
    let all = protox::compile(PUBLIC.iter().chain(&INTERNAL), ["."])?;
    tonic_prost_build::configure().compile_fds(all)?;
    Ok(())
}
