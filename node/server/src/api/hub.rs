//! The HubService: what a client needs before and after login to carry on against another node
//! when its own is down or cut off: the hub's name, every node's public URL, and whether the
//! answering node is cut off. Needs no session: the URLs are the hub's published ones.

use std::sync::Arc;

use kizuna_proto::hub as pb;
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use crate::config::PublicEndpoint;
use crate::node::{Node, now_ms};

pub struct HubInfo {
    node: Arc<Node>,
    hub: String,
    endpoints: Vec<pb::Endpoint>,
}

impl HubInfo {
    pub fn new(node: Arc<Node>, hub: String, endpoints: &[PublicEndpoint]) -> Self {
        let endpoints = endpoints
            .iter()
            .map(|e| pb::Endpoint { node_id: e.id, name: e.name.clone(), region: e.region.clone(), url: e.url.clone() })
            .collect();
        Self { node, hub, endpoints }
    }

    /// Why this node is cut off, from its own view only: asking the leader would hang exactly
    /// when the answer matters. A node that stopped applying the log counts as cut off too: its
    /// answers fall behind the hub just the same.
    /// The reason goes to callers without a session: a node that stopped applying says only
    /// that (its fault is in its log), never the storage error itself.
    fn cut_off(&self) -> Option<String> {
        self.node.local_copy().unwrap_or_else(|_| Some("this node stopped applying the hub's log".into()))
    }
}

#[tonic::async_trait]
impl pb::hub_service_server::HubService for HubInfo {
    async fn get_hub_info(
        &self,
        _: Request<pb::GetHubInfoRequest>,
    ) -> Result<Response<pb::GetHubInfoResponse>, Status> {
        let cut_off = self.cut_off();
        Ok(Response::new(pb::GetHubInfoResponse {
            hub: self.hub.clone(),
            node_id: self.node.id,
            endpoints: self.endpoints.clone(),
            cut_off: cut_off.is_some(),
            cut_off_reason: cut_off.unwrap_or_default(),
            now: Some(timestamp(now_ms())),
        }))
    }
}
