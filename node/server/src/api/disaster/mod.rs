//! The DisasterService: declaring disasters, safety checks and facility statuses, the board and
//! its export. Rules live in `kizuna_domain::disaster`.
//!
//! A safety check or a facility status is accepted by this node even when it cannot reach a
//! quorum: it is checked against this node's copy of the state, fsynced into the node's journal,
//! and then shipped into the log — at once when the hub is reachable (the answer then says
//! APPLIED), by `disaster_shipper` later otherwise (PENDING). Apply checks it again and applies
//! it once.

mod views;

use std::time::Duration;

use kizuna_proto::disaster as pb;
use tonic::{Request, Response, Status};

use super::paging::{self, PageToken};
use super::shared::{Api, domain_status, view_status};
use crate::node::now_ms;
use kizuna_domain::commands::SESSION_ID_CHARS;
use kizuna_domain::disaster::board::{self, BoardQuery};
use kizuna_domain::disaster::{
    Fate, Observation, ObservationId, Report, SINCE_APPLY_VERSION, Subject, declare, export, observe, profile,
};
use kizuna_domain::model::*;
use kizuna_domain::{Command, CommandResult, HubView, Outcome, validate_idempotency_key};
pub(crate) use views::facility_status_view;
use views::*;

/// How long a new record waits for the hub before the answer says it is pending here (the
/// shipper goes on with it): shorter than the time a client waits for an answer (3 s in the
/// chaos harness), so a cut-off node answers PENDING before its client gives up on it.
const SHIP_NOW: Duration = Duration::from_secs(2);
/// At most this many pending records are read from the journal for one answer.
const PENDING_SHOWN: usize = 10_000;
/// A page of a subject's observations, unless the client asks for another size.
const HISTORY_SHOWN: usize = 200;
/// The largest page of a subject's observations a client may ask for.
const HISTORY_PAGE_MAX: usize = 1_000;

impl Api {
    /// Records `report` about `subject` by the caller: checked here, journaled, then shipped.
    async fn observe<T>(
        &self,
        req: &Request<T>,
        key: &str,
        (disaster, subject): (DisasterId, Subject),
        (report, note): (Report, String),
    ) -> Result<pb::Observation, Status> {
        validate_idempotency_key(key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (me, token_hash, stale) = self.authenticate_fresh(req).await?;
        self.disaster_mode_on()?;
        let observation = Observation {
            id: ObservationId::of(me, key),
            disaster,
            subject,
            report,
            note,
            observed_at_ms: now_ms(),
            author: me,
            session: token_hash.chars().take(SESSION_ID_CHARS).collect(),
            node: self.node.id,
        };
        if let Some(first) = self.first_outcome(&observation)? {
            return first;
        }
        // A retry of a record still waiting here (the node is cut off): the one journaled.
        if let Some(waiting) = self.pending_here().0.into_iter().find(|o| o.id == observation.id) {
            return self.observation_answer(&waiting, true);
        }
        self.query(|hub| observe::check(hub, &observation).map_err(domain_status))?;
        let seq =
            self.node.state.observations.append(&observation).map_err(|e| Status::internal(format!("journal: {e}")))?;
        // Journaled: from here on the record is kept, so only an explicit refusal is an error.
        let pending = stale.is_some() || !self.ship_now(seq, &observation).await?;
        self.observation_answer(&observation, pending)
    }

    /// A retry of a record the hub decided: answered as it was decided (applied, as it is
    /// stored; or refused, and why). None for a record the hub has not seen.
    fn first_outcome(&self, o: &Observation) -> Result<Option<Result<pb::Observation, Status>>, Status> {
        self.query(|hub| {
            Ok(match hub.observation_fate(o.id).map_err(view_status)? {
                None => None,
                Some(Fate::Refused(refusal)) => Some(Err(domain_status(refusal))),
                Some(Fate::Applied { disaster, subject }) => {
                    let history = hub.observations_of(disaster, subject).map_err(view_status)?;
                    let first = history.into_iter().find(|h| h.id == o.id);
                    Some(Ok(observation_view(hub, first.as_ref().unwrap_or(o), false)))
                }
            })
        })
    }

    /// Ships the record journaled at `seq` now: true once the hub applied it, false if it could
    /// not in time (the shipper goes on with it); the refusal if apply refused it.
    async fn ship_now(&self, seq: u64, observation: &Observation) -> Result<bool, Status> {
        let shipping = crate::disaster_shipper::ship(&self.node, (seq, seq), vec![observation.clone()]);
        let fates = match tokio::time::timeout(SHIP_NOW, shipping).await {
            Ok(Ok(CommandResult::Observed { fates, .. })) => fates,
            Ok(Ok(_)) | Ok(Err(_)) | Err(_) => return Ok(false),
        };
        match fates.into_iter().find(|(id, _)| *id == observation.id).map(|(_, fate)| fate) {
            Some(Fate::Refused(refusal)) => Err(domain_status(refusal)),
            Some(Fate::Applied { .. }) => Ok(true),
            None => Ok(false),
        }
    }

    fn observation_answer(&self, o: &Observation, pending: bool) -> Result<pb::Observation, Status> {
        self.query(|hub| Ok(observation_view(hub, o, pending)))
    }

    /// Disaster mode needs every node of the hub to run a build of it.
    fn disaster_mode_on(&self) -> Result<(), Status> {
        let active = self.node.state.apply_version().map_err(|e| Status::internal(e.to_string()))?;
        if active < SINCE_APPLY_VERSION {
            let e = kizuna_domain::ValidationError::NotYet { needs: SINCE_APPLY_VERSION, active };
            return Err(Status::failed_precondition(e.to_string()));
        }
        Ok(())
    }

    /// The records this node holds for the hub (at most [`PENDING_SHOWN`]) and how many there
    /// are; a journal that cannot be read leaves them out, and the answer says so.
    pub(crate) fn pending_here(&self) -> (Vec<Observation>, u64, Option<String>) {
        let journal = &self.node.state.observations;
        match (journal.pending(PENDING_SHOWN), journal.backlog()) {
            (Ok(pending), Ok(journaled)) => {
                let pending = pending.map(|(_, _, o)| o).unwrap_or_default();
                // All of them read: counted without a retry journaled twice.
                let all_read = (pending.len() as u64) == journaled;
                let pending = distinct(pending);
                let count = if all_read { pending.len() as u64 } else { journaled };
                (pending, count, None)
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("reading the journal of safety checks: {e}");
                (Vec::new(), 0, Some(format!("このノードの未送信の記録を読めません: {e}")))
            }
        }
    }

    fn disaster_answer(&self, me: AccountId, id: DisasterId) -> Result<pb::Disaster, Status> {
        let d = self.query(|hub| {
            declare::list(hub, me).map_err(domain_status)?;
            declare::find(hub, id).map_err(domain_status)
        })?;
        Ok(disaster_view(&d))
    }

    /// The board, each patient row it shows journaled as a read of that patient's data.
    fn board_answer(
        &self,
        (me, token_hash): (AccountId, &str),
        r: &pb::GetBoardRequest,
    ) -> Result<pb::GetBoardResponse, Status> {
        let query = BoardQuery {
            municipality: r.municipality.clone(),
            facility: r.facility_id.map(FacilityId),
            status: status_filter_from(r.status)?,
            life_support_only: r.life_support_only,
            limit: paging::page_size(r.page_size, 100, 500)?,
        };
        let (pending, count, unreadable) = self.pending_here();
        let disaster = DisasterId(r.disaster_id);
        let b = self.query(|hub| board::board(hub, me, disaster, &query, &pending).map_err(domain_status))?;
        for row in &b.patients {
            self.audit_read(me, token_hash, Some(row.patient), None, "災害ボード".into())?;
        }
        let mut answer = self.query(|hub| Ok(board_view(hub, &b, count)))?;
        answer.stale_reason = unreadable.unwrap_or_default();
        Ok(answer)
    }
}

/// The first journaled copy of each record: two retries racing on a cut-off node may both be
/// journaled (apply takes the record once; the node shows it once).
fn distinct(mut pending: Vec<Observation>) -> Vec<Observation> {
    let mut seen = std::collections::HashSet::new();
    pending.retain(|o| seen.insert(o.id));
    pending
}

fn board_view(hub: &impl HubView, b: &board::Board, pending_here: u64) -> pb::GetBoardResponse {
    let patients = b
        .patients
        .iter()
        .map(|row| pb::PatientRow {
            patient_id: row.patient.0,
            name: row.name.clone(),
            municipality: row.municipality.clone(),
            devices: row.devices.iter().map(|d| device_to(*d)).collect(),
            current: row.current.as_ref().map(|o| observation_view(hub, o, row.pending)),
            urgency: u32::from(row.urgency()),
        })
        .collect();
    let facility_statuses = b
        .facilities
        .iter()
        .map(|f| pb::FacilityRow {
            facility_id: f.facility.0,
            name: f.name.clone(),
            municipality: f.municipality.clone(),
            current: f.current.as_ref().map(|o| observation_view(hub, o, f.pending)),
        })
        .collect();
    pb::GetBoardResponse {
        disaster: Some(disaster_view(&b.disaster)),
        total: Some(tally_view(&b.total)),
        municipalities: b
            .by_municipality
            .iter()
            .map(|(m, t)| pb::MunicipalityTally { municipality: m.clone(), tally: Some(tally_view(t)) })
            .collect(),
        facilities: b
            .by_facility
            .iter()
            .map(|(f, name, t)| pb::FacilityTally { facility_id: f.0, name: name.clone(), tally: Some(tally_view(t)) })
            .collect(),
        patients,
        matching: u32::try_from(b.matching).unwrap_or(u32::MAX),
        facility_statuses,
        pending_here: u32::try_from(pending_here).unwrap_or(u32::MAX),
        stale_reason: String::new(),
    }
}

fn disaster_of(outcome: Outcome) -> Result<DisasterId, Status> {
    match outcome {
        Outcome::Disaster(id) => Ok(id),
        other => Err(super::shared::unexpected(other)),
    }
}

#[tonic::async_trait]
impl pb::disaster_service_server::DisasterService for Api {
    async fn declare_disaster(
        &self,
        req: Request<pb::DeclareDisasterRequest>,
    ) -> Result<Response<pb::DeclareDisasterResponse>, Status> {
        let r = req.get_ref().clone();
        let started_at_ms = r.started_at.map(|t| super::convert::millis_of(&t)).transpose()?;
        let cmd = Command::DeclareDisaster { name: r.name, municipalities: r.municipalities, started_at_ms };
        let (outcome, me, _) = self.signed_write_then_catch_up(&req, r.idempotency_key, cmd).await?;
        let disaster = self.disaster_answer(me, disaster_of(outcome)?)?;
        Ok(Response::new(pb::DeclareDisasterResponse { disaster: Some(disaster) }))
    }

    async fn end_disaster(
        &self,
        req: Request<pb::EndDisasterRequest>,
    ) -> Result<Response<pb::EndDisasterResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::EndDisaster { disaster: DisasterId(r.disaster_id) };
        let (outcome, me, _) = self.signed_write_then_catch_up(&req, r.idempotency_key, cmd).await?;
        let disaster = self.disaster_answer(me, disaster_of(outcome)?)?;
        Ok(Response::new(pb::EndDisasterResponse { disaster: Some(disaster) }))
    }

    async fn list_disasters(
        &self,
        req: Request<pb::ListDisastersRequest>,
    ) -> Result<Response<pb::ListDisastersResponse>, Status> {
        let (me, _, stale) = self.authenticate_fresh(&req).await?;
        let (disasters, policy) = self.query(|hub| {
            let all = declare::list(hub, me).map_err(domain_status)?;
            Ok((all, hub.disaster_policy().map_err(view_status)?))
        })?;
        Ok(Response::new(pb::ListDisastersResponse {
            disasters: disasters.iter().map(disaster_view).collect(),
            admins_may_declare: policy.admins_may_declare,
            stale_reason: stale.unwrap_or_default(),
        }))
    }

    async fn set_disaster_policy(
        &self,
        req: Request<pb::SetDisasterPolicyRequest>,
    ) -> Result<Response<pb::SetDisasterPolicyResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::SetDisasterPolicy { admins_may_declare: r.admins_may_declare };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::SetDisasterPolicyResponse {}))
    }

    async fn set_care_profile(
        &self,
        req: Request<pb::SetCareProfileRequest>,
    ) -> Result<Response<pb::SetCareProfileResponse>, Status> {
        let r = req.get_ref().clone();
        let p = r.profile.unwrap_or_default();
        let devices = p.devices.into_iter().map(device_from).collect::<Result<Vec<_>, _>>()?;
        let patient = PatientId(r.patient_id);
        let cmd = Command::SetCareProfile { patient, municipality: p.municipality, devices };
        let (_, me, _) = self.signed_write_then_catch_up(&req, r.idempotency_key, cmd).await?;
        let profile = self.query(|hub| profile::get(hub, me, patient).map_err(domain_status))?;
        Ok(Response::new(pb::SetCareProfileResponse { profile: Some(care_profile_view(&profile)) }))
    }

    async fn get_care_profile(
        &self,
        req: Request<pb::GetCareProfileRequest>,
    ) -> Result<Response<pb::GetCareProfileResponse>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        let patient = PatientId(req.get_ref().patient_id);
        let profile = self.query(|hub| profile::get(hub, me, patient).map_err(domain_status))?;
        // Which devices keep the patient alive is health data: its reads are audited.
        self.audit_read(me, &token_hash, Some(patient), None, "災害時情報の閲覧".into())?;
        Ok(Response::new(pb::GetCareProfileResponse { profile: Some(care_profile_view(&profile)) }))
    }

    async fn record_safety_check(
        &self,
        req: Request<pb::RecordSafetyCheckRequest>,
    ) -> Result<Response<pb::RecordSafetyCheckResponse>, Status> {
        let r = req.get_ref().clone();
        let report = Report::Safety(safety_from(r.check)?);
        let about = (DisasterId(r.disaster_id), Subject::Patient(PatientId(r.patient_id)));
        let observation = self.observe(&req, &r.idempotency_key, about, (report, r.note)).await?;
        Ok(Response::new(pb::RecordSafetyCheckResponse { observation: Some(observation) }))
    }

    async fn report_facility_status(
        &self,
        req: Request<pb::ReportFacilityStatusRequest>,
    ) -> Result<Response<pb::ReportFacilityStatusResponse>, Status> {
        let r = req.get_ref().clone();
        let report = Report::Facility(facility_state_from(r.status)?);
        let about = (DisasterId(r.disaster_id), Subject::Facility(FacilityId(r.facility_id)));
        let observation = self.observe(&req, &r.idempotency_key, about, (report, r.note)).await?;
        Ok(Response::new(pb::ReportFacilityStatusResponse { observation: Some(observation) }))
    }

    async fn get_board(&self, req: Request<pb::GetBoardRequest>) -> Result<Response<pb::GetBoardResponse>, Status> {
        let (me, token_hash, stale) = self.authenticate_fresh(&req).await?;
        let mut answer = self.board_answer((me, &token_hash), req.get_ref())?;
        if let Some(stale) = stale {
            answer.stale_reason = [stale, answer.stale_reason].join(" ").trim().to_owned();
        }
        Ok(Response::new(answer))
    }

    async fn export_board(
        &self,
        req: Request<pb::ExportBoardRequest>,
    ) -> Result<Response<pb::ExportBoardResponse>, Status> {
        let (me, token_hash, _) = self.authenticate_fresh(&req).await?;
        self.query(|hub| kizuna_domain::authz::operator(hub, me).map_err(domain_status))?;
        let disaster = DisasterId(req.get_ref().disaster_id);
        let (pending, _, _) = self.pending_here();
        let query = BoardQuery { limit: usize::MAX, ..BoardQuery::default() };
        let b = self.query(|hub| board::board(hub, me, disaster, &query, &pending).map_err(domain_status))?;
        for row in &b.patients {
            self.audit_read(me, &token_hash, Some(row.patient), None, "安否確認の書き出し".into())?;
        }
        let day = kizuna_domain::calendar::jst_minute(now_ms()).replace([' ', ':'], "-");
        Ok(Response::new(pb::ExportBoardResponse {
            filename: format!("anpi-{}-{day}.csv", disaster.0),
            csv: export::csv(&b).into_bytes(),
            patients: u32::try_from(b.patients.len()).unwrap_or(u32::MAX),
        }))
    }

    async fn list_observations(
        &self,
        req: Request<pb::ListObservationsRequest>,
    ) -> Result<Response<pb::ListObservationsResponse>, Status> {
        use pb::list_observations_request::Subject as S;
        let (me, token_hash) = self.authenticate(&req).await?;
        let r = req.get_ref();
        let subject = match r.subject {
            Some(S::PatientId(p)) => Subject::Patient(PatientId(p)),
            Some(S::FacilityId(f)) => Subject::Facility(FacilityId(f)),
            None => return Err(Status::invalid_argument("patient_id or facility_id is required")),
        };
        let disaster = DisasterId(r.disaster_id);
        let size = paging::page_size(r.page_size, HISTORY_SHOWN, HISTORY_PAGE_MAX)?;
        let before = older_than(&r.page_token, disaster, subject)?;
        let (pending, _, _) = if before.is_none() { self.pending_here() } else { Default::default() };
        let (history, pending) = self.query(|hub| {
            let history = board::history(hub, me, disaster, subject).map_err(domain_status)?;
            let of_disaster = declare::find(hub, disaster).map_err(domain_status)?;
            let pending = board::pending_of(hub, &of_disaster, &pending).map_err(domain_status)?;
            Ok((history, pending))
        })?;
        if let Subject::Patient(p) = subject {
            self.audit_read(me, &token_hash, Some(p), None, "安否確認の履歴".into())?;
        }
        let pending: Vec<Observation> =
            pending.into_iter().filter(|o| o.subject == subject && !history.iter().any(|h| h.id == o.id)).collect();
        let (page, next_page_token) = history_page(&history, before, size, (disaster, subject))?;
        let observations = self.query(|hub| {
            let applied = page.iter().map(|o| observation_view(hub, o, false));
            Ok(applied.chain(pending.iter().map(|o| observation_view(hub, o, true))).collect())
        })?;
        Ok(Response::new(pb::ListObservationsResponse { observations, next_page_token }))
    }
}

/// A subject's history page: the newest `size` records older than `before` (all when None),
/// oldest first, and the token of the older ones.
fn history_page(
    history: &[Observation],
    before: Option<(u64, ObservationId)>,
    size: usize,
    (disaster, subject): (DisasterId, Subject),
) -> Result<(&[Observation], String), Status> {
    // `history` is in merge order: (observed at, id) ascending.
    let end = before.map_or(history.len(), |b| history.partition_point(|o| (o.observed_at_ms, o.id) < b));
    let start = end.saturating_sub(size);
    let page = &history[start..end];
    let token = match page.first() {
        Some(oldest) if start > 0 => PageToken::Observations {
            disaster: disaster.0,
            subject: subject_label(subject),
            observed_at_ms: oldest.observed_at_ms,
            id: oldest.id.to_string(),
        }
        .encode()?,
        _ => String::new(),
    };
    Ok((page, token))
}

/// Where a page of `subject`'s history ends (exclusive), from the request's token.
fn older_than(text: &str, disaster: DisasterId, subject: Subject) -> Result<Option<(u64, ObservationId)>, Status> {
    let label = subject_label(subject);
    let bound = paging::resume(text, |t| match t {
        PageToken::Observations { disaster: d, subject: s, observed_at_ms, id } if d == disaster.0 && s == label => {
            Some((observed_at_ms, id))
        }
        _ => None,
    })?;
    bound
        .map(|(at, id)| {
            let id = ObservationId::from_hex(&id)
                .ok_or_else(|| Status::invalid_argument("page_token is not a token this list gave out"))?;
            Ok((at, id))
        })
        .transpose()
}

fn subject_label(subject: Subject) -> String {
    match subject {
        Subject::Patient(p) => format!("Patient:{}", p.0),
        Subject::Facility(f) => format!("Facility:{}", f.0),
    }
}

fn care_profile_view(p: &kizuna_domain::disaster::CareProfile) -> pb::CareProfile {
    pb::CareProfile { municipality: p.municipality.clone(), devices: p.devices.iter().map(|d| device_to(*d)).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kizuna_domain::disaster::Safety;

    fn observation(i: u8, at: u64) -> Observation {
        Observation {
            id: ObservationId([i; 16]),
            disaster: DisasterId(1),
            subject: Subject::Patient(PatientId(7)),
            report: Report::Safety(Safety::Safe),
            note: format!("{i}"),
            observed_at_ms: at,
            author: AccountId(1),
            session: String::new(),
            node: 1,
        }
    }

    #[test]
    fn a_history_pages_from_the_newest_to_the_oldest_without_gaps_or_repeats() {
        // Merge order: (observed at, id); two share a time.
        let history: Vec<Observation> =
            [(1, 10), (2, 20), (3, 20), (4, 30), (5, 40)].iter().map(|(i, at)| observation(*i, *at)).collect();
        let about = (DisasterId(1), Subject::Patient(PatientId(7)));
        let (mut token, mut pages) = (String::new(), Vec::new());
        loop {
            let before = older_than(&token, about.0, about.1).expect("a token this list gave out");
            let (page, next) = history_page(&history, before, 2, about).expect("a page");
            pages.push(page.iter().map(|o| o.note.clone()).collect::<Vec<_>>());
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(pages, [vec!["4", "5"], vec!["2", "3"], vec!["1"]]);
        let (all, none) = history_page(&history, None, 200, about).expect("one page");
        assert_eq!((all.len(), none.as_str()), (5, ""));
    }

    #[test]
    fn a_token_of_another_subject_or_disaster_is_refused() {
        let history: Vec<Observation> = (1..=3).map(|i| observation(i, u64::from(i))).collect();
        let about = (DisasterId(1), Subject::Patient(PatientId(7)));
        let (_, token) = history_page(&history, None, 1, about).expect("a page");
        assert!(older_than(&token, DisasterId(1), Subject::Patient(PatientId(7))).is_ok());
        for (d, s) in [
            (2, Subject::Patient(PatientId(7))),
            (1, Subject::Patient(PatientId(8))),
            (1, Subject::Facility(FacilityId(7))),
        ] {
            let refused = older_than(&token, DisasterId(d), s).expect_err("another list's token");
            assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        }
    }
}
