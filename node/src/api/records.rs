//! The public records service: validate, propose or read, map results to gRPC.

use std::sync::Arc;

use kizuna_proto::records::records_server::Records;
use kizuna_proto::records::{Consistency, GetRecordRequest, GetRecordResponse, PutRecordRequest, PutRecordResponse};
use tonic::{Request, Response, Status};

use crate::domain::{Command, CommandResult, Envelope, records};
use crate::node::Node;

pub(crate) fn timestamp(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: (ms / 1000) as i64, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

pub struct RecordsService {
    node: Arc<Node>,
}

impl RecordsService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Records for RecordsService {
    async fn put(&self, req: Request<PutRecordRequest>) -> Result<Response<PutRecordResponse>, Status> {
        let req = req.into_inner();
        let envelope = Envelope {
            request_id: req.request_id,
            proposed_at_ms: 0,
            command: Command::PutRecord { key: req.key, value: req.value },
        };
        let applied = self.node.write(envelope).await.map_err(|e| e.into_status())?;
        match applied.result {
            CommandResult::RecordPut { version } => Ok(Response::new(PutRecordResponse {
                version,
                log_index: applied.log_index,
                duplicate: applied.duplicate,
            })),
            other => Err(Status::internal(format!("unexpected result for a record write: {other:?}"))),
        }
    }

    async fn get(&self, req: Request<GetRecordRequest>) -> Result<Response<GetRecordResponse>, Status> {
        let req = req.into_inner();
        records::validate_key(&req.key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let consistency = Consistency::try_from(req.consistency)
            .map_err(|_| Status::invalid_argument(format!("unknown consistency {}", req.consistency)))?;
        let (stale, stale_reason) = match consistency {
            Consistency::Linearizable => {
                self.node.linearizable_barrier().await.map_err(|e| e.into_status())?;
                (false, String::new())
            }
            Consistency::Unspecified => match self.node.linearizable_barrier().await {
                Ok(()) => (false, String::new()),
                // Cut off from the quorum: serve this node's own copy, marked stale.
                Err(e) if e.is_quorum_unreachable() => (true, format!("no quorum reachable ({e}); local copy")),
                Err(e) => return Err(e.into_status()),
            },
            Consistency::Local => match self.node.metrics().current_leader {
                Some(_) => (false, String::new()),
                None => (true, "this node currently has no leader; local copy".to_owned()),
            },
        };
        let state = &self.node.state;
        let internal = |e: std::io::Error| Status::internal(format!("reading state: {e}"));
        let applied_index = state.applied().map_err(internal)?.map_or(0, |l| l.index);
        let record = state
            .record(&req.key)
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no record with key {:?}", req.key)))?;
        let as_of_ms = state.clock_ms().map_err(internal)?;
        Ok(Response::new(GetRecordResponse {
            value: record.value,
            version: record.version,
            applied_index,
            node_id: self.node.id,
            stale,
            stale_reason,
            as_of: Some(timestamp(as_of_ms)),
        }))
    }
}
