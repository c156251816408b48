//! Kizuna's gRPC contracts, generated at build time from `kizuna/v1/*.proto`.

/// Internal node-to-node services of one hub.
pub mod raft {
    tonic::include_proto!("kizuna.v1.raft");
}

/// Cluster administration.
pub mod admin {
    tonic::include_proto!("kizuna.v1.admin");
}

/// The public records API.
pub mod records {
    tonic::include_proto!("kizuna.v1.records");
}

/// The collaboration network's public API.
pub mod collab {
    tonic::include_proto!("kizuna.v1.collab");
}

/// Encoded file descriptors of the public services (not the internal Raft API), for gRPC
/// server reflection on the public port.
pub const PUBLIC_FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("kizuna_public_descriptor");
