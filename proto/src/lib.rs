//! Kizuna's gRPC contracts, generated at build time from `kizuna/<area>/v1/*.proto`.

/// Internal node-to-node services of one hub.
pub mod raft {
    tonic::include_proto!("kizuna.raft.v1");
}

/// Cluster administration.
pub mod admin {
    tonic::include_proto!("kizuna.admin.v1");
}

/// The public records API.
pub mod records {
    tonic::include_proto!("kizuna.records.v1");
}

/// The collaboration network's public API.
pub mod collab {
    tonic::include_proto!("kizuna.collab.v1");
}

/// Encoded file descriptors of the public services (not the internal Raft API), for gRPC
/// server reflection on the public port.
pub const PUBLIC_FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("kizuna_public_descriptor");
