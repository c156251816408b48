//! The AuditService: operators page through the audit log and verify its hash chain (the
//! audit chain, `kizuna_domain::audit`). Not to be confused with the audit shipper
//! (`crate::audit_shipper`), the background worker that ships each node's journal of reads into
//! the chain.

use kizuna_proto::audit as pb;
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use super::paging::{self, PageToken};
use super::shared::Api;
use kizuna_domain::audit::{self, AuditAction, AuditEntry};

fn audit_view(e: AuditEntry) -> pb::AuditEntry {
    let action = match e.record.action {
        AuditAction::Read => pb::AuditAction::Read,
        AuditAction::Write => pb::AuditAction::Write,
    };
    pb::AuditEntry {
        seq: e.seq,
        at: Some(timestamp(e.record.at_ms)),
        account_id: e.record.account.0,
        session: e.record.session,
        node_id: e.record.node,
        action: action as i32,
        patient_id: e.record.patient.map(|p| p.0),
        room_id: e.record.room.map(|r| r.0),
        what: e.record.what,
        prev_hash: e.prev_hash,
        hash: e.hash,
        hash_version: e.hash_version.into(),
    }
}

fn wanted(r: &pb::ListAuditEntriesRequest, e: &AuditEntry) -> bool {
    r.account_id.is_none_or(|a| e.record.account.0 == a)
        && r.patient_id.is_none_or(|p| e.record.patient.map(|x| x.0) == Some(p))
}

impl Api {
    /// One page of the entries `r` asks for, scanning the chain in batches from the token on.
    fn audit_page(&self, r: &pb::ListAuditEntriesRequest) -> Result<pb::ListAuditEntriesResponse, Status> {
        let size = paging::page_size(r.page_size, 200, 1000)?;
        let mut after = paging::resume(&r.page_token, |t| match t {
            PageToken::Audit { seq } => Some(seq),
            _ => None,
        })?
        .unwrap_or(0);
        let mut entries = Vec::new();
        while entries.len() < size {
            let batch = self.query(|hub| Ok(hub.audit_after(after, 1000)))?;
            if batch.is_empty() {
                return Ok(pb::ListAuditEntriesResponse { entries, next_page_token: String::new() });
            }
            for e in batch {
                after = e.seq;
                if wanted(r, &e) {
                    entries.push(audit_view(e));
                    if entries.len() == size {
                        break;
                    }
                }
            }
        }
        Ok(pb::ListAuditEntriesResponse { entries, next_page_token: PageToken::Audit { seq: after }.encode()? })
    }
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for Api {
    async fn list_audit_entries(
        &self,
        req: Request<pb::ListAuditEntriesRequest>,
    ) -> Result<Response<pb::ListAuditEntriesResponse>, Status> {
        self.operator(&req).await?;
        Ok(Response::new(self.audit_page(req.get_ref())?))
    }

    async fn verify_audit_chain(
        &self,
        req: Request<pb::VerifyAuditChainRequest>,
    ) -> Result<Response<pb::VerifyAuditChainResponse>, Status> {
        self.operator(&req).await?;
        let api = self.clone();
        // Walks the whole chain: off the async threads.
        let result = tokio::task::spawn_blocking(move || {
            api.query(|hub| {
                let mut after = 0;
                let mut all = Vec::new();
                loop {
                    let page = hub.audit_after(after, 10_000);
                    let Some(last) = page.last() else { break };
                    after = last.seq;
                    all.extend(page);
                }
                Ok(audit::verify(all))
            })
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(match result {
            Ok(verified) => {
                pb::VerifyAuditChainResponse { intact: true, verified, broken_at_seq: None, reason: String::new() }
            }
            Err(b) => pb::VerifyAuditChainResponse {
                intact: false,
                verified: b.seq.saturating_sub(1),
                broken_at_seq: Some(b.seq),
                reason: b.reason,
            },
        }))
    }
}
