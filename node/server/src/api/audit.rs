//! The AuditService: operators page through the audit log and verify its hash chain (the
//! audit chain, `kizuna_domain::audit`); a facility's admins page through their own staff's
//! entries. Not to be confused with the audit shipper
//! (`crate::audit_shipper`), the background worker that ships each node's journal of reads into
//! the chain.

use kizuna_proto::audit as pb;
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use super::paging::{self, PageToken};
use super::shared::{Api, view_status};
use kizuna_domain::HubView;
use kizuna_domain::audit::{self, AuditAction, AuditEntry};
use kizuna_domain::model::FacilityId;

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

/// Whose entries a listing covers.
#[derive(Clone, Copy)]
enum AuditScope {
    Hub,
    /// The entries by the staff of one facility.
    Staff(FacilityId),
}

/// Batches of 1,000 entries one ListAuditEntries call reads at most.
const AUDIT_SCAN_BATCHES: usize = 20;

impl Api {
    /// Operators list any entries (of one facility's staff with `facility_id`); a facility's
    /// admins those of their own facility's staff, and must say so (`facility_id`).
    async fn audit_scope(&self, req: &Request<pb::ListAuditEntriesRequest>) -> Result<AuditScope, Status> {
        let (me, _) = self.authenticate(req).await?;
        let account = self.query(|hub| hub.account(me).map_err(view_status))?;
        let account = account.ok_or_else(|| Status::unauthenticated("not signed in"))?;
        let asked = req.get_ref().facility_id.map(FacilityId);
        match asked {
            _ if account.is_operator() => Ok(asked.map_or(AuditScope::Hub, AuditScope::Staff)),
            Some(f) if account.facility_admin && account.facility() == Some(f) => Ok(AuditScope::Staff(f)),
            _ => Err(Status::permission_denied(
                "the audit log: hub operators, or a facility's admins for their own staff (facility_id)",
            )),
        }
    }

    /// Whether the entry is in `scope`: by an account of the facility, for a staff scope.
    fn in_scope(hub: &impl HubView, scope: AuditScope, e: &AuditEntry) -> Result<bool, Status> {
        match scope {
            AuditScope::Hub => Ok(true),
            AuditScope::Staff(f) => {
                let account = hub.account(e.record.account).map_err(view_status)?;
                Ok(account.is_some_and(|a| a.facility() == Some(f)))
            }
        }
    }

    /// One page of the entries `r` asks for, scanning the chain in batches from the token on. A
    /// scan stops after [`AUDIT_SCAN_BATCHES`] batches, matching or not: a filter that matches
    /// little then answers a short (even empty) page with a token to go on from, instead of
    /// reading the whole chain in one request.
    fn audit_page(
        &self,
        r: &pb::ListAuditEntriesRequest,
        scope: AuditScope,
    ) -> Result<pb::ListAuditEntriesResponse, Status> {
        let size = paging::page_size(r.page_size, 200, 1000)?;
        let mut after = paging::resume(&r.page_token, |t| match t {
            PageToken::Audit { seq } => Some(seq),
            _ => None,
        })?
        .unwrap_or(0);
        let mut entries = Vec::new();
        for _ in 0..AUDIT_SCAN_BATCHES {
            if entries.len() >= size {
                break;
            }
            let batch = self.query(|hub| {
                let batch = hub.audit_after(after, 1000);
                batch.into_iter().map(|e| Ok((Self::in_scope(hub, scope, &e)?, e))).collect::<Result<Vec<_>, Status>>()
            })?;
            if batch.is_empty() {
                return Ok(pb::ListAuditEntriesResponse { entries, next_page_token: String::new() });
            }
            for (in_scope, e) in batch {
                after = e.seq;
                if in_scope && wanted(r, &e) {
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
        let scope = self.audit_scope(&req).await?;
        Ok(Response::new(self.audit_page(req.get_ref(), scope)?))
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
