//! The public gRPC front end of a node, one file per service: accounts, rooms, connections,
//! posts, live events, care requests, the resource map (directory), disaster mode, search, the audit service,
//! records, cluster administration and the hub's public endpoints; with health and reflection;
//! over gRPC and gRPC-Web (browsers), next to the browser client's own files (`web`). This layer
//! is the only one that speaks proto and `tonic::Status`.

mod accounts;
mod admin;
mod attachments;
mod audit;
mod auth;
mod care_requests;
mod connections;
pub mod convert;
mod directory;
mod disaster;
mod events;
mod health;
mod hub;
mod paging;
mod permits;
mod posts;
mod records;
mod rooms;
mod search;
pub(crate) mod shared;
mod status;
mod web;

use std::sync::Arc;

use tonic::service::Routes;
use tonic::transport::server::Router;

use crate::config::{HubConfig, PublicEndpoint};
use crate::node::Node;

pub use admin::ClusterAdmin;
pub use auth::one_time_password;
use kizuna_proto as pb;
pub use records::Records;
pub use shared::Api;
pub use status::LEADER_HINT_KEY;

/// A requested count (`field`, e.g. a page size): 0 means `default`, 1..=`max` as asked, more is
/// refused with InvalidArgument.
pub(crate) fn bounded(field: &str, asked: u64, default: u64, max: u64) -> Result<u64, tonic::Status> {
    match asked {
        0 => Ok(default),
        n if n <= max => Ok(n),
        _ => Err(tonic::Status::invalid_argument(format!("{field} must be 0..={max}"))),
    }
}

/// The public port: gRPC and gRPC-Web services and the browser client's files.
pub type ApiRouter = Router;

/// The names of the services the public port serves, as reflection advertises them: exactly
/// these and nothing of the internal Raft API.
fn served_service_names() -> [&'static str; 17] {
    use tonic_reflection::pb::{v1, v1alpha};
    [
        tonic_health::pb::health_server::SERVICE_NAME,
        v1::server_reflection_server::SERVICE_NAME,
        v1alpha::server_reflection_server::SERVICE_NAME,
        pb::accounts::account_service_server::SERVICE_NAME,
        pb::rooms::room_service_server::SERVICE_NAME,
        pb::connections::connection_service_server::SERVICE_NAME,
        pb::posts::post_service_server::SERVICE_NAME,
        pb::events::event_service_server::SERVICE_NAME,
        pb::care_requests::care_request_service_server::SERVICE_NAME,
        pb::directory::directory_service_server::SERVICE_NAME,
        pb::search::search_service_server::SERVICE_NAME,
        pb::audit::audit_service_server::SERVICE_NAME,
        pb::records::record_service_server::SERVICE_NAME,
        pb::admin::cluster_admin_service_server::SERVICE_NAME,
        pb::hub::hub_service_server::SERVICE_NAME,
        pb::attachments::attachment_service_server::SERVICE_NAME,
        pb::disaster::disaster_service_server::SERVICE_NAME,
    ]
}

/// Server reflection for the public port, configured once for both protocol versions: `v1`
/// (grpcurl, current clients) and `v1alpha` (Python's grpcio-reflection, older grpcurl).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    served_service_names().into_iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(kizuna_proto::PUBLIC_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Both reflection versions describe both, so either lists only services it can describe.
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET),
        |builder, name| builder.with_service_name(name),
    )
}

/// All public services of one node of `hub`, with the browser client, ready to serve; `tls`:
/// whether they will be served over TLS (by `node::start`, with the certificates of the moment).
pub fn router(node: Arc<Node>, hub: &HubConfig, tls: bool) -> Result<ApiRouter, RouterError> {
    let endpoints = hub.public_endpoints(tls);
    // gRPC-Web next to gRPC on the same port, so a browser is enough (PRODUCT: no vendor app):
    // HTTP/1.1 for browsers that do not speak HTTP/2 to it. The translation wraps the gRPC
    // routes only (it leaves plain gRPC alone): it answers any other HTTP/1.1 request 400,
    // which would hide the page.
    let grpc = grpc_routes(node.clone(), &hub.hub.name, &endpoints)?.prepare().into_axum_router();
    let known = crate::metrics::grpc::methods_of(&[
        pb::PUBLIC_FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]);
    let metrics = crate::metrics::grpc::GrpcMetrics::new(node.id, known);
    let native = grpc.clone().layer(metrics.clone());
    let browser = web::with_browser_client(grpc.layer(metrics).layer(tonic_web::GrpcWebLayer::new()), &endpoints, tls)?;
    let routes = web::native_grpc_first(native, browser);
    if !tls {
        tracing::warn!("INSECURE: the public API is served in plaintext");
    }
    Ok(tonic::transport::Server::builder().accept_http1(true).add_routes(Routes::from(routes)))
}

/// The largest request the public services decode (file pieces have their own, larger limit):
/// a write makes a log entry of at most `kizuna_domain::MAX_CLIENT_ENTRY_BYTES`, and a read asks
/// for little, so a larger message is refused before it is held in memory at all.
const MAX_REQUEST_BYTES: usize = 256 << 10;

/// The gRPC services of the public port.
fn grpc_routes(node: Arc<Node>, hub: &str, endpoints: &[PublicEndpoint]) -> Result<Routes, RouterError> {
    use pb::{
        accounts::account_service_server::AccountServiceServer,
        admin::cluster_admin_service_server::ClusterAdminServiceServer,
        attachments::attachment_service_server::AttachmentServiceServer,
        audit::audit_service_server::AuditServiceServer,
        care_requests::care_request_service_server::CareRequestServiceServer,
        connections::connection_service_server::ConnectionServiceServer,
        directory::directory_service_server::DirectoryServiceServer,
        disaster::disaster_service_server::DisasterServiceServer, events::event_service_server::EventServiceServer,
        hub::hub_service_server::HubServiceServer, posts::post_service_server::PostServiceServer,
        records::record_service_server::RecordServiceServer, rooms::room_service_server::RoomServiceServer,
        search::search_service_server::SearchServiceServer,
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let api = Api::new(node.clone());
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // The process serves as soon as it listens (Raft readiness is reported by `Status`), until
    // it stops applying the log.
    let kizuna_services = served_service_names().into_iter().filter(|name| name.starts_with("kizuna.")).collect();
    health::watch_apply(node.clone(), health_reporter, kizuna_services);
    Ok(Routes::new(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AccountServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(RoomServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(ConnectionServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(PostServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(AttachmentServiceServer::new(api.clone()).max_decoding_message_size(2 << 20))
        .add_service(EventServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(CareRequestServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(DirectoryServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(SearchServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(DisasterServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(AuditServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(RecordServiceServer::new(Records::new(api.clone())).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(
            ClusterAdminServiceServer::new(ClusterAdmin::new(api)).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(HubServiceServer::new(hub::HubInfo::new(node, hub.to_owned(), endpoints))))
}

/// Why the public router could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("reflection descriptors: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the browser client: {0}")]
    Web(#[from] web::WebError),
}
