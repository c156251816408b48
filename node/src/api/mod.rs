//! The public gRPC front end of a node: the collaboration network (with requests to
//! facilities, the resource map and search), records, cluster administration, health and
//! reflection; over gRPC and gRPC-Web (browsers).

mod admin;
mod auth;
mod collab;
mod directory;
mod records;
mod requests;
mod search;

use std::sync::Arc;

use tonic::transport::ServerTlsConfig;
use tonic::transport::server::Router;

use crate::node::Node;

pub use admin::AdminService;
pub use auth::one_time_password;
pub use collab::CollabApi;
use kizuna_proto::collab as pb;
pub use records::RecordsService;

/// A requested count (`field`, e.g. a page size): 0 means `default`, 1..=`max` as asked, more is
/// refused with InvalidArgument.
pub(crate) fn bounded(field: &str, asked: u64, default: u64, max: u64) -> Result<u64, tonic::Status> {
    match asked {
        0 => Ok(default),
        n if n <= max => Ok(n),
        _ => Err(tonic::Status::invalid_argument(format!("{field} must be 0..={max}"))),
    }
}

/// The public services behind the gRPC-Web translation layer.
pub type ApiRouter = Router<tower_layer::Stack<tonic_web::GrpcWebLayer, tower_layer::Identity>>;

/// All public services of one node, ready to serve; over TLS when `tls` is given.
pub fn router(node: Arc<Node>, tls: Option<ServerTlsConfig>) -> Result<ApiRouter, tonic::transport::Error> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(kizuna_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .ok();
    let collab = CollabApi::new(node.clone());
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // The process serves as soon as it listens; Raft readiness is reported by `Status`.
    drop(health_reporter);
    // gRPC-Web next to gRPC on the same port, so a browser is enough (PRODUCT: no vendor app):
    // HTTP/1.1 for browsers that do not speak HTTP/2 to it; the layer leaves plain gRPC alone.
    let mut builder = tonic::transport::Server::builder().accept_http1(true);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    } else {
        tracing::warn!("INSECURE: the public API is served in plaintext");
    }
    Ok(builder
        .layer(tonic_web::GrpcWebLayer::new())
        .add_service(health)
        .add_optional_service(reflection)
        .add_service(kizuna_proto::records::records_server::RecordsServer::new(RecordsService::new(node.clone())))
        .add_service(kizuna_proto::admin::cluster_admin_server::ClusterAdminServer::new(AdminService::new(
            node.clone(),
        )))
        .add_service(pb::accounts_server::AccountsServer::new(collab.clone()))
        .add_service(pb::rooms_server::RoomsServer::new(collab.clone()))
        .add_service(pb::posts_server::PostsServer::new(collab.clone()))
        .add_service(pb::connections_server::ConnectionsServer::new(collab.clone()))
        .add_service(pb::audit_server::AuditServer::new(collab.clone()))
        .add_service(pb::care_requests_server::CareRequestsServer::new(collab.clone()))
        .add_service(pb::directory_server::DirectoryServer::new(collab.clone()))
        .add_service(pb::search_server::SearchServer::new(collab.clone()))
        .add_service(pb::events_server::EventsServer::new(collab)))
}
