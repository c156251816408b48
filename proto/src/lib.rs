//! Kizuna's gRPC contracts, generated at build time from `kizuna/<area>/v1/*.proto`.
//!
//! The modules mirror the proto packages (`kizuna::<area>::v1`), because generated code refers
//! to another package's types by that path (`kizuna.common.v1.Post` from the posts package);
//! the short names below (`kizuna_proto::posts`, ...) are what the rest of the code uses.

#[allow(clippy::all, missing_docs)]
pub mod kizuna {
    macro_rules! package {
        ($area:ident, $package:literal) => {
            pub mod $area {
                pub mod v1 {
                    tonic::include_proto!($package);
                }
            }
        };
    }
    package!(common, "kizuna.common.v1");
    package!(accounts, "kizuna.accounts.v1");
    package!(rooms, "kizuna.rooms.v1");
    package!(connections, "kizuna.connections.v1");
    package!(posts, "kizuna.posts.v1");
    package!(events, "kizuna.events.v1");
    package!(care_requests, "kizuna.care_requests.v1");
    package!(directory, "kizuna.directory.v1");
    package!(search, "kizuna.search.v1");
    package!(audit, "kizuna.audit.v1");
    package!(records, "kizuna.records.v1");
    package!(admin, "kizuna.admin.v1");
    package!(hub, "kizuna.hub.v1");
    package!(attachments, "kizuna.attachments.v1");
    package!(disaster, "kizuna.disaster.v1");
    package!(raft, "kizuna.raft.v1");
    package!(federation, "kizuna.federation.v1");
}

/// Accounts, facility registration, sessions, the second factor, the session policy.
pub use kizuna::accounts::v1 as accounts;
/// Cluster administration.
pub use kizuna::admin::v1 as admin;
/// Files attached to posts: upload, download.
pub use kizuna::attachments::v1 as attachments;
/// The audit service (reads and verifies the audit chain).
pub use kizuna::audit::v1 as audit;
/// Care requests to facilities (リクエスト).
pub use kizuna::care_requests::v1 as care_requests;
/// Types shared by several public services (posts, facilities, professions).
pub use kizuna::common::v1 as common;
/// Connections between two professionals.
pub use kizuna::connections::v1 as connections;
/// The resource map (医療介護資源マップ).
pub use kizuna::directory::v1 as directory;
/// Disaster mode: declarations, safety checks, facility statuses, the board.
pub use kizuna::disaster::v1 as disaster;
/// Live events (server streaming).
pub use kizuna::events::v1 as events;
/// Hub-to-hub federation (its own port, mutual TLS with the configured peers).
pub use kizuna::federation::v1 as federation;
/// The hub itself: its name and the public addresses of its nodes.
pub use kizuna::hub::v1 as hub;
/// Posts, acknowledgements, read markers and timelines.
pub use kizuna::posts::v1 as posts;
/// Internal node-to-node services of one hub.
pub use kizuna::raft::v1 as raft;
/// Diagnostic records.
pub use kizuna::records::v1 as records;
/// Patients' teams, groups, sub-rooms, membership and room lists.
pub use kizuna::rooms::v1 as rooms;
/// Search (検索).
pub use kizuna::search::v1 as search;

/// Encoded file descriptors of the public services (not the internal Raft API, not
/// federation), for gRPC
/// server reflection on the public port.
pub const PUBLIC_FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("kizuna_public_descriptor");
