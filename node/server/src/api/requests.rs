//! The CareRequests service (リクエスト): send a request to several facilities, answer it for
//! one's facility, cancel it, read it. Rules live in `kizuna_domain::collab::requests`.

use kizuna_proto::collab as pb;
use tonic::{Request, Response, Status};

use super::collab::{CollabApi, domain_status};
use super::records::timestamp;
use kizuna_domain::collab::model::*;
use kizuna_domain::collab::requests::{self, Answer, CareRequest, RequestKind};
use kizuna_domain::collab::{Command, HubView, Outcome};

fn kind_from(kind: i32) -> Result<RequestKind, Status> {
    match pb::RequestKind::try_from(kind) {
        Ok(pb::RequestKind::Admission) => Ok(RequestKind::Admission),
        Ok(pb::RequestKind::Discharge) => Ok(RequestKind::Discharge),
        Ok(pb::RequestKind::HomeVisit) => Ok(RequestKind::HomeVisit),
        Ok(pb::RequestKind::Collaboration) => Ok(RequestKind::Collaboration),
        _ => Err(Status::invalid_argument("kind must be admission, discharge, home visit or collaboration")),
    }
}

fn kind_to(kind: RequestKind) -> pb::RequestKind {
    match kind {
        RequestKind::Admission => pb::RequestKind::Admission,
        RequestKind::Discharge => pb::RequestKind::Discharge,
        RequestKind::HomeVisit => pb::RequestKind::HomeVisit,
        RequestKind::Collaboration => pb::RequestKind::Collaboration,
    }
}

/// A request as its sender and recipients see it: names resolved.
fn view_of(hub: &impl HubView, r: CareRequest) -> pb::CareRequest {
    let name = |a: AccountId| hub.account(a).map(|a| a.display_name).unwrap_or_default();
    let recipients = r
        .recipients
        .into_iter()
        .map(|x| {
            let facility_name = hub.facility(x.facility).map(|f| f.name).unwrap_or_default();
            let (state, by, at, note) = match x.answer {
                Answer::Pending => (pb::AnswerState::Pending, None, None, String::new()),
                Answer::Cancelled => (pb::AnswerState::Cancelled, None, None, String::new()),
                Answer::Accepted { by, at_ms, note } => (pb::AnswerState::Accepted, Some(by), Some(at_ms), note),
                Answer::Declined { by, at_ms, note } => (pb::AnswerState::Declined, Some(by), Some(at_ms), note),
            };
            pb::CareRequestRecipient {
                facility_id: x.facility.0,
                facility_name,
                state: state as i32,
                answered_by: by.map_or(0, |a| a.0),
                answered_by_name: by.map(name).unwrap_or_default(),
                answered_at: at.map(timestamp),
                note,
            }
        })
        .collect();
    pb::CareRequest {
        care_request_id: r.id.0,
        kind: kind_to(r.kind) as i32,
        kind_label: r.kind.label().to_owned(),
        from_id: r.from.0,
        from_name: name(r.from),
        from_facility: hub.facility(r.from_facility).map(|f| f.name).unwrap_or_default(),
        patient_id: r.patient.map_or(0, |p| p.0),
        patient_name: r.patient.and_then(|p| hub.patient(p)).map(|p| p.name).unwrap_or_default(),
        title: r.title,
        details: r.details,
        recipients,
        sent_at: Some(timestamp(r.sent_at_ms)),
    }
}

impl CollabApi {
    /// Reads one request for `me`, journalling the read when it is about a patient.
    fn read_request(&self, me: AccountId, token_hash: &str, id: RequestId) -> Result<pb::CareRequest, Status> {
        self.query(|hub| {
            let (_, request) = requests::visible(hub, me, id).map_err(domain_status)?;
            if let Some(patient) = request.patient {
                self.audit_read(me, token_hash, Some(patient), None, format!("request #{}", id.0))?;
            }
            Ok(view_of(hub, request))
        })
    }

    /// Proposes a request command and answers with the request as it now stands.
    async fn request_write<T>(
        &self,
        req: &Request<T>,
        request_id: String,
        cmd: Command,
    ) -> Result<pb::CareRequest, Status> {
        let (outcome, me, token_hash) = self.signed_write_then_catch_up(req, request_id, cmd).await?;
        let Outcome::Request(id) = outcome else {
            return Err(Status::internal(format!("unexpected outcome {outcome:?}")));
        };
        self.read_request(me, &token_hash, id)
    }
}

#[tonic::async_trait]
impl pb::care_requests_server::CareRequests for CollabApi {
    async fn send(&self, req: Request<pb::SendCareRequestRequest>) -> Result<Response<pb::CareRequest>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::SendRequest {
            kind: kind_from(r.kind)?,
            patient: (r.patient_id != 0).then_some(PatientId(r.patient_id)),
            title: r.title,
            details: r.details,
            facilities: r.facility_ids.into_iter().map(FacilityId).collect(),
        };
        Ok(Response::new(self.request_write(&req, r.request_id, cmd).await?))
    }

    async fn answer(&self, req: Request<pb::AnswerCareRequestRequest>) -> Result<Response<pb::CareRequest>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::AnswerRequest { request: RequestId(r.care_request_id), accept: r.accept, note: r.note };
        Ok(Response::new(self.request_write(&req, r.request_id, cmd).await?))
    }

    async fn cancel(&self, req: Request<pb::CareRequestRef>) -> Result<Response<pb::CareRequest>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::CancelRequest { request: RequestId(r.care_request_id) };
        Ok(Response::new(self.request_write(&req, r.request_id, cmd).await?))
    }

    async fn get(&self, req: Request<pb::GetCareRequestRequest>) -> Result<Response<pb::CareRequest>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        Ok(Response::new(self.read_request(me, &token_hash, RequestId(req.get_ref().care_request_id))?))
    }

    async fn list(
        &self,
        req: Request<pb::ListCareRequestsRequest>,
    ) -> Result<Response<pb::ListCareRequestsResponse>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        let r = req.into_inner();
        let limit = super::bounded("limit", u64::from(r.limit), 50, 200)? as usize;
        self.query(|hub| {
            let all = if r.sent { requests::sent(hub, me) } else { requests::received(hub, me) };
            let mut page: Vec<CareRequest> =
                all.map_err(domain_status)?.into_iter().filter(|x| r.before_id == 0 || x.id.0 < r.before_id).collect();
            let more = page.len() > limit;
            page.truncate(limit);
            let next_before_id = if more { page.last().map_or(0, |x| x.id.0) } else { 0 };
            for x in &page {
                if let Some(patient) = x.patient {
                    self.audit_read(me, &token_hash, Some(patient), None, format!("request #{} in a list", x.id.0))?;
                }
            }
            let requests = page.into_iter().map(|x| view_of(hub, x)).collect();
            Ok(Response::new(pb::ListCareRequestsResponse { requests, next_before_id }))
        })
    }
}
