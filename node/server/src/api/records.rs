//! The records service: a diagnostic key/value space in the replicated state, for operators
//! to check a hub's write and read paths end to end (`kizuna put/get`) and to measure write
//! throughput (`kizuna load`). It holds no patient data; only a hub operator may use it.

use std::sync::Arc;

use kizuna_proto::records::record_service_server::RecordService;
use kizuna_proto::records::{Consistency, GetRecordRequest, GetRecordResponse, PutRecordRequest, PutRecordResponse};
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use super::shared::{Api, ReadFrom};
use crate::node::Node;
use kizuna_domain::{Command, CommandResult, Envelope, records};

pub struct Records {
    api: Api,
    node: Arc<Node>,
}

impl Records {
    pub fn new(api: Api) -> Self {
        let node = api.node.clone();
        Self { api, node }
    }
}

#[tonic::async_trait]
impl RecordService for Records {
    async fn put_record(&self, req: Request<PutRecordRequest>) -> Result<Response<PutRecordResponse>, Status> {
        self.api.operator(&req).await?;
        let req = req.into_inner();
        let envelope = Envelope {
            request_id: req.idempotency_key,
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

    async fn get_record(&self, req: Request<GetRecordRequest>) -> Result<Response<GetRecordResponse>, Status> {
        let consistency = Consistency::try_from(req.get_ref().consistency)
            .map_err(|_| Status::invalid_argument(format!("unknown consistency {}", req.get_ref().consistency)))?;
        let from = if consistency == Consistency::Local { ReadFrom::Local } else { ReadFrom::Current };
        let (_, stale) = self.api.operator_on(&req, from).await?;
        if let (Consistency::Linearizable, Some(reason)) = (consistency, &stale) {
            return Err(Status::unavailable(format!("a linearizable read needs a quorum: {reason}")));
        }
        let req = req.into_inner();
        records::validate_key(&req.key).map_err(|e| Status::invalid_argument(e.to_string()))?;
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
            stale: stale.is_some(),
            stale_reason: stale.unwrap_or_default(),
            as_of: Some(timestamp(as_of_ms)),
        }))
    }
}
