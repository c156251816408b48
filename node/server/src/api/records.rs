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

    /// Whether the hub applies record writes as signed commands (every node runs a build of
    /// them): the operator is then checked at apply, and the request needs no current copy.
    fn signed_writes(&self) -> Result<bool, Status> {
        let active = self.node.state.apply_version().map_err(|e| Status::internal(e.to_string()))?;
        Ok(active >= records::SINCE_APPLY_VERSION)
    }

    /// A record write of a hub of older builds: the operator is checked here, on the copy
    /// made current first.
    async fn unsigned_put(&self, req: &Request<()>, envelope: Envelope) -> Result<Written, Status> {
        self.api.operator(req).await?;
        Written::of(self.node.write(envelope).await.map_err(|e| e.into_status())?)
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
        let written = if self.signed_writes()? {
            self.api.operator_write(&req, idempotency_key, Command::PutRecord { key, value }).await?
        } else {
            let command = LogCommand::PutRecord { key, value };
            self.unsigned_put(&req, Envelope { idempotency_key, proposed_at_ms: 0, command }).await?
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
