//! The records service: a diagnostic key/value space in the replicated state, for operators
//! to check a hub's write and read paths end to end (`kizuna put/get`) and to measure write
//! throughput (`kizuna load`). It holds no patient data; only a hub operator may use it.

use std::sync::Arc;

use kizuna_proto::records::record_service_server::RecordService;
use kizuna_proto::records::{Consistency, GetRecordRequest, GetRecordResponse, PutRecordRequest, PutRecordResponse};
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use super::shared::{Api, ReadFrom, Written, unexpected};
use crate::node::Node;
use kizuna_domain::commands::{Command, Outcome};
use kizuna_domain::{Envelope, LogCommand, records};

pub struct Records {
    api: Api,
    node: Arc<Node>,
}

impl Records {
    pub fn new(api: Api) -> Self {
        let node = api.node.clone();
        Self { api, node }
    }

    /// Whether this record write goes as a signed command, its operator checked at apply:
    /// once the hub applies version 7 (every node runs a build of it). A copy that says
    /// otherwise may be behind: it is made current (checking the operator there, as the
    /// unsigned write needs) and asked again, so a node behind the hub does not propose the
    /// unsigned write long after the hub moved on.
    async fn signed(&self, req: &Request<()>) -> Result<bool, Status> {
        if self.api.hub_applies(records::SINCE_APPLY_VERSION)? {
            return Ok(true);
        }
        self.api.operator(req).await?;
        self.api.hub_applies(records::SINCE_APPLY_VERSION)
    }
}

#[tonic::async_trait]
impl RecordService for Records {
    async fn put_record(&self, req: Request<PutRecordRequest>) -> Result<Response<PutRecordResponse>, Status> {
        // The body apart from the caller's credentials, without copying the value.
        let (metadata, extensions, body) = req.into_parts();
        let req = Request::from_parts(metadata, extensions, ());
        let PutRecordRequest { key, value, idempotency_key } = body;
        records::validate_put(&key, &value).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let written = if self.signed(&req).await? {
            self.api.operator_write(&req, idempotency_key, Command::PutRecord { key, value }).await?
        } else {
            // The operator was checked on the copy made current (`signed`).
            let command = LogCommand::PutRecord { key, value };
            let envelope = Envelope { idempotency_key, proposed_at_ms: 0, command };
            Written::of(self.node.write(envelope).await.map_err(|e| e.into_status())?)?
        };
        match written.outcome {
            Outcome::RecordPut { version } => Ok(Response::new(PutRecordResponse {
                version,
                log_index: written.log_index,
                duplicate: written.duplicate,
            })),
            other => Err(unexpected(other)),
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
