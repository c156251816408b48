//! The two etcd v3 calls the side-by-side of docs/benchmarks.md needs: `KV.Put` (the write both
//! stores are loaded with) and `Maintenance.Status` (to find the leader, where the load goes as
//! it goes to Kizuna's leader). The messages are etcd's own, field numbers as in etcd's
//! `api/etcdserverpb/rpc.proto` (v3.4, the version Debian ships), with only the fields used.
//!
//! Why not the `etcd-client` crate: its build script compiles etcd's protos with a system
//! `protoc`, which this project never needs (protox builds our own contracts). Two unary calls
//! over tonic's generic client are less than that dependency.

use anyhow::Context;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    /// The store's revision after the call: one more per committed put.
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(string, tag = "2")]
    pub version: String,
    /// The member id of the leader this member knows.
    #[prost(uint64, tag = "4")]
    pub leader: u64,
}

async fn unary<Req, Resp>(channel: Channel, path: &'static str, req: Req) -> Result<Resp, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| Status::unavailable(format!("etcd is not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    Ok(grpc.unary(Request::new(req), PathAndQuery::from_static(path), codec).await?.into_inner())
}

/// Puts `value` under `key`; committed on a majority when it answers.
pub async fn put(channel: Channel, key: Vec<u8>, value: Vec<u8>) -> Result<PutResponse, Status> {
    unary(channel, "/etcdserverpb.KV/Put", PutRequest { key, value }).await
}

pub async fn status(channel: Channel) -> Result<StatusResponse, Status> {
    unary(channel, "/etcdserverpb.Maintenance/Status", StatusRequest {}).await
}

/// The member of `endpoints` (host:port, plaintext) that leads, and a channel to it.
pub async fn leader(endpoints: &[String]) -> anyhow::Result<(String, Channel)> {
    for endpoint in endpoints {
        let Ok(channel) = Endpoint::from_shared(format!("http://{endpoint}"))?.connect().await else {
            continue;
        };
        let Ok(answer) = status(channel.clone()).await else { continue };
        if answer.header.is_some_and(|h| h.member_id == answer.leader && answer.leader != 0) {
            return Ok((endpoint.clone(), channel));
        }
    }
    Err(anyhow::anyhow!("no etcd member of {endpoints:?} answers as the leader")).context("finding etcd's leader")
}
