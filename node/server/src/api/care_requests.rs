//! The CareRequestService (リクエスト): send a care request to several facilities, answer it
//! for one's facility, cancel it, read it, list one's boxes. Rules live in
//! `kizuna_domain::requests`.

use kizuna_proto::care_requests as pb;
use tonic::{Request, Response, Status};

use super::convert::care_request_kind_from as kind_from;
use super::convert::timestamp;
use super::paging::{self, PageToken};
use super::shared::{Api, domain_status, shown, unexpected};
use kizuna_domain::directory;
use kizuna_domain::model::*;
use kizuna_domain::requests::{self, Answer, CareRequest, RequestKind};
use kizuna_domain::{Command, HubView, Outcome};

fn kind_to(kind: RequestKind) -> pb::CareRequestKind {
    match kind {
        RequestKind::Admission => pb::CareRequestKind::Admission,
        RequestKind::Discharge => pb::CareRequestKind::Discharge,
        RequestKind::HomeVisit => pb::CareRequestKind::HomeVisit,
        RequestKind::Collaboration => pb::CareRequestKind::Collaboration,
    }
}

/// Whether a list asks for the sent box (else the received one).
fn sent_box(b: i32) -> Result<bool, Status> {
    match pb::CareRequestBox::try_from(b) {
        Ok(pb::CareRequestBox::Sent) => Ok(true),
        Ok(pb::CareRequestBox::Received | pb::CareRequestBox::Unspecified) => Ok(false),
        Err(_) => Err(Status::invalid_argument(format!("box {b}: no such box"))),
    }
}

fn recipient_view(hub: &impl HubView, x: Recipient) -> pb::CareRequestRecipient {
    let (facility_name, facility_hub) = shown(directory::facility_label(hub, x.facility)).unwrap_or_default();
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
        answered_by: by.map(|a| a.0),
        answered_by_name: by.and_then(|a| shown(hub.account(a))).map(|a| a.display_name).unwrap_or_default(),
        answered_at: at.map(timestamp),
        note,
        facility_hub: facility_hub.map(|h| h.to_string()).unwrap_or_default(),
    }
}

/// A care request as its sender and recipients see it: names resolved.
fn view_of(hub: &impl HubView, r: CareRequest) -> pb::CareRequest {
    let name = |a: AccountId| shown(hub.account(a)).map(|a| a.display_name).unwrap_or_default();
    let sender = shown(hub.account(r.from));
    let from_hub = sender.as_ref().and_then(|a| a.remote_hub()).map(|h| h.to_string()).unwrap_or_default();
    // A sender of another hub: their facility as their hub named it, unless this hub's map has
    // it (`from_hub` names the hub).
    let from_facility = match (shown(directory::facility_label(hub, r.from_facility)), &sender) {
        (Some((name, _)), _) => name,
        (None, Some(Account { kind: AccountKind::Remote { facility_name, .. }, .. })) => facility_name.clone(),
        (None, _) => String::new(),
    };
    let about_patient = r.patient.is_some() || shown(hub.request_link(r.id)).is_some_and(|l| l.about_patient);
    pb::CareRequest {
        about_patient,
        care_request_id: r.id.0,
        kind: kind_to(r.kind) as i32,
        from_id: r.from.0,
        from_name: name(r.from),
        from_facility,
        patient_id: r.patient.map(|p| p.0),
        patient_name: r.patient.and_then(|p| shown(hub.patient(p))).map(|p| p.name).unwrap_or_default(),
        title: r.title,
        details: r.details,
        recipients: r.recipients.into_iter().map(|x| recipient_view(hub, x)).collect(),
        sent_at: Some(timestamp(r.sent_at_ms)),
        from_hub,
    }
}

impl Api {
    /// Reads one care request for `me`, journalling the read when it is about a patient.
    fn read_care_request(&self, me: AccountId, token_hash: &str, id: RequestId) -> Result<pb::CareRequest, Status> {
        self.query(|hub| {
            let (_, request) = requests::visible(hub, me, id).map_err(domain_status)?;
            if let Some(patient) = request.patient {
                self.audit_read(me, token_hash, Some(patient), None, format!("request #{}", id.0))?;
            }
            Ok(view_of(hub, request))
        })
    }

    /// Proposes a care request command and answers with the care request as it now stands.
    async fn care_request_write<T>(
        &self,
        req: &Request<T>,
        idempotency_key: String,
        cmd: Command,
    ) -> Result<Option<pb::CareRequest>, Status> {
        let (outcome, me, token_hash) = self.signed_write_then_catch_up(req, idempotency_key, cmd).await?;
        let Outcome::Request(id) = outcome else { return Err(unexpected(outcome)) };
        Ok(Some(self.read_care_request(me, &token_hash, id)?))
    }

    /// One page of a box, newest first, each read journalled when it is about a patient.
    fn care_requests_page(
        &self,
        me: AccountId,
        token_hash: &str,
        r: &pb::ListCareRequestsRequest,
    ) -> Result<pb::ListCareRequestsResponse, Status> {
        let sent = sent_box(r.r#box)?;
        let size = paging::page_size(r.page_size, 50, 200)?;
        let before = paging::resume(&r.page_token, |t| match t {
            PageToken::CareRequests { sent: s, id } if s == sent => Some(id),
            _ => None,
        })?;
        self.query(|hub| {
            let all = if sent { requests::sent(hub, me) } else { requests::received(hub, me) };
            let rest = all.map_err(domain_status)?.into_iter().filter(|x| before.is_none_or(|b| x.id.0 < b));
            let (page, more) = paging::take_page(rest, size);
            let next_page_token = paging::next_token(&page, more, |x| PageToken::CareRequests { sent, id: x.id.0 })?;
            for x in &page {
                if let Some(patient) = x.patient {
                    self.audit_read(me, token_hash, Some(patient), None, format!("request #{} in a list", x.id.0))?;
                }
            }
            let care_requests = page.into_iter().map(|x| view_of(hub, x)).collect();
            Ok(pb::ListCareRequestsResponse { care_requests, next_page_token })
        })
    }
}

#[tonic::async_trait]
impl pb::care_request_service_server::CareRequestService for Api {
    async fn send_care_request(
        &self,
        req: Request<pb::SendCareRequestRequest>,
    ) -> Result<Response<pb::SendCareRequestResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::SendRequest {
            kind: kind_from(r.kind)?,
            patient: r.patient_id.map(PatientId),
            title: r.title,
            details: r.details,
            facilities: r.facility_ids.into_iter().map(FacilityId).collect(),
        };
        let care_request = self.care_request_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::SendCareRequestResponse { care_request }))
    }

    async fn answer_care_request(
        &self,
        req: Request<pb::AnswerCareRequestRequest>,
    ) -> Result<Response<pb::AnswerCareRequestResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::AnswerRequest { request: RequestId(r.care_request_id), accept: r.accept, note: r.note };
        let care_request = self.care_request_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::AnswerCareRequestResponse { care_request }))
    }

    async fn cancel_care_request(
        &self,
        req: Request<pb::CancelCareRequestRequest>,
    ) -> Result<Response<pb::CancelCareRequestResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::CancelRequest { request: RequestId(r.care_request_id) };
        let care_request = self.care_request_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::CancelCareRequestResponse { care_request }))
    }

    async fn get_care_request(
        &self,
        req: Request<pb::GetCareRequestRequest>,
    ) -> Result<Response<pb::GetCareRequestResponse>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        let care_request = self.read_care_request(me, &token_hash, RequestId(req.get_ref().care_request_id))?;
        Ok(Response::new(pb::GetCareRequestResponse { care_request: Some(care_request) }))
    }

    async fn list_care_requests(
        &self,
        req: Request<pb::ListCareRequestsRequest>,
    ) -> Result<Response<pb::ListCareRequestsResponse>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        Ok(Response::new(self.care_requests_page(me, &token_hash, req.get_ref())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kizuna_domain::federation::HubName;
    use kizuna_domain::{Change, MemHub};

    fn facility(id: u64, name: &str) -> Facility {
        Facility {
            id: FacilityId(id),
            name: name.into(),
            kind: FacilityKind::VisitingNursingStation,
            municipality: "前橋市".into(),
            status: FacilityStatus::Approved,
            profile: Default::default(),
        }
    }

    #[test]
    fn a_request_names_the_hubs_of_its_sender_and_of_its_recipients() {
        let hub_name = |h: &str| HubName::new(h).unwrap();
        let theirs = RemoteFacility {
            facility: facility(1 << 63, "前橋訪問看護"),
            hub: hub_name("gunma"),
            home_id: FacilityId(4),
            shared: true,
        };
        let sender = Account {
            id: AccountId(7),
            login: "sato@tochigi".into(),
            display_name: "佐藤 医師".into(),
            kind: AccountKind::Remote {
                hub: hub_name("tochigi"),
                facility_name: "小山在宅クリニック".into(),
                profession: Profession::Doctor,
            },
            status: AccountStatus::Active,
            password_hash: String::new(),
            facility_admin: false,
            totp: None,
        };
        let mut hub = MemHub::default();
        hub.apply(vec![
            Change::Facility(facility(1, "宇都宮訪問看護")),
            Change::RemoteFacility(theirs),
            Change::Account(sender),
        ]);
        let request = CareRequest {
            id: RequestId(9),
            kind: RequestKind::HomeVisit,
            from: AccountId(7),
            from_facility: FacilityId(0),
            patient: None,
            title: "訪問看護のご依頼".into(),
            details: "週2回".into(),
            recipients: [1, 1 << 63].map(|id| Recipient { facility: FacilityId(id), answer: Answer::Pending }).to_vec(),
            sent_at_ms: 0,
        };
        hub.apply(vec![Change::RequestLink(RequestLink {
            local: RequestId(9),
            hub: hub_name("tochigi"),
            home_id: RequestId(2),
            about_patient: true,
        })]);
        let shown = view_of(&hub, request);
        assert_eq!(shown.from_hub, "tochigi");
        assert!(shown.about_patient && shown.patient_name.is_empty(), "only that it is about a patient");
        assert_eq!(shown.from_facility, "小山在宅クリニック");
        let recipients: Vec<(&str, &str)> =
            shown.recipients.iter().map(|r| (r.facility_name.as_str(), r.facility_hub.as_str())).collect();
        assert_eq!(recipients, [("宇都宮訪問看護", ""), ("前橋訪問看護", "gunma")]);
    }
}
