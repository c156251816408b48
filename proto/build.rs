//! Compiles `kizuna/<area>/v1/*.proto` with protox (pure Rust), so no system `protoc` is needed.
use std::path::PathBuf;

/// The files of the services a node's public port serves (and the types they share); the
/// internal Raft API and the hub-to-hub federation API are compiled but kept out of the public
/// descriptor set, so reflection on the public port cannot describe them.
const PUBLIC: [&str; 15] = [
    "kizuna/common/v1/types.proto",
    "kizuna/accounts/v1/account_service.proto",
    "kizuna/rooms/v1/room_service.proto",
    "kizuna/connections/v1/connection_service.proto",
    "kizuna/posts/v1/post_service.proto",
    "kizuna/events/v1/event_service.proto",
    "kizuna/care_requests/v1/care_request_service.proto",
    "kizuna/directory/v1/directory_service.proto",
    "kizuna/search/v1/search_service.proto",
    "kizuna/audit/v1/audit_service.proto",
    "kizuna/records/v1/record_service.proto",
    "kizuna/admin/v1/cluster_admin_service.proto",
    "kizuna/hub/v1/hub_service.proto",
    "kizuna/attachments/v1/attachment_service.proto",
    "kizuna/disaster/v1/disaster_service.proto",
];
const INTERNAL: [&str; 2] =
    ["kizuna/raft/v1/raft_transport_service.proto", "kizuna/federation/v1/federation_service.proto"];

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
