//! Disaster-mode recorders: each records safety checks of random patients and, one record in
//! four, the status of the doctor's facility, on random nodes, each under its own idempotency
//! key (so a retry, on any node, names the same record), retried against the next node on errors
//! and timeouts for up to 15 s. A node cut off from the quorum accepts a record as pending
//! (journaled there, shipped when the quorum returns): the checker (`check::observations`)
//! requires every accepted record to end up applied exactly once on every node, merged by the
//! latest observation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kizuna_proto::accounts::GetMeRequest;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::common::{FacilityStatus, Operation, Supply};
use kizuna_proto::disaster::disaster_service_client::DisasterServiceClient;
use kizuna_proto::disaster::list_observations_request::Subject as ListSubject;
use kizuna_proto::disaster::*;
use kizuna_proto::rooms::CreatePatientRequest;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use super::{Setup, authed, channel, ms_since, on_any_node};
use crate::rng::Rng;

/// The disaster of the run, the patients checked in it and the facility reporting its status.
#[derive(Debug, Clone)]
pub struct Disaster {
    pub id: u64,
    pub patients: Vec<u64>,
    /// The doctor's.
    pub facility: u64,
}

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Subject {
    Patient(u64),
    Facility(u64),
}

impl Disaster {
    /// Every subject the run records about.
    pub fn subjects(&self) -> Vec<Subject> {
        self.patients.iter().map(|p| Subject::Patient(*p)).chain([Subject::Facility(self.facility)]).collect()
    }
}

/// The municipality the run's patients live in and its disaster covers.
const AREA: &str = "宇都宮市";

/// The doctor's `patients` patients (on a ventilator, in [`AREA`]), her facility, and a disaster
/// declared for the area by the operator. Waits (like every set-up step) until the hub runs
/// disaster mode.
pub async fn setup(s: &Setup, seed: u64, patients: usize) -> anyhow::Result<Disaster> {
    let within = Duration::from_secs(60);
    let id = |step: &str| format!("chaos-{seed}-disaster-{step}");
    let mut ids = Vec::new();
    for p in 0..patients {
        let patient = on_any_node(&s.endpoints, within, "create patient", |ch| {
            let req = CreatePatientRequest {
                idempotency_key: id(&format!("patient-{p}")),
                name: format!("安否{p}"),
                kana: "あんぴ".into(),
                ..Default::default()
            };
            let req = authed(req, &s.token);
            async move { RoomServiceClient::new(ch).create_patient(req).await.map(|r| r.into_inner().patient_id) }
        })
        .await?;
        on_any_node(&s.endpoints, within, "care profile", |ch| {
            let profile = CareProfile { municipality: AREA.into(), devices: vec![Device::Ventilator as i32] };
            let req = SetCareProfileRequest {
                idempotency_key: id(&format!("profile-{p}")),
                patient_id: patient,
                profile: Some(profile),
            };
            let req = authed(req, &s.token);
            async move { DisasterServiceClient::new(ch).set_care_profile(req).await }
        })
        .await?;
        ids.push(patient);
    }
    let disaster = on_any_node(&s.endpoints, within, "declare", |ch| {
        let req = DeclareDisasterRequest {
            idempotency_key: id("declare"),
            name: "カオス台風".into(),
            municipalities: vec![AREA.into()],
            started_at: None,
        };
        let req = authed(req, &s.operator);
        async move {
            let declared = DisasterServiceClient::new(ch).declare_disaster(req).await?.into_inner();
            declared.disaster.map(|d| d.disaster_id).ok_or_else(|| tonic::Status::internal("no disaster"))
        }
    })
    .await?;
    let facility = on_any_node(&s.endpoints, within, "the doctor's facility", |ch| {
        let req = authed(GetMeRequest {}, &s.token);
        async move {
            let me = AccountServiceClient::new(ch).get_me(req).await?.into_inner();
            me.facility_id.ok_or_else(|| tonic::Status::failed_precondition("the doctor has no facility"))
        }
    })
    .await?;
    Ok(Disaster { id: disaster, patients: ids, facility })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CheckOutcome {
    /// In the hub's log when answered.
    Applied,
    /// Journaled on the node that answered, waiting for the hub.
    Pending,
    /// Never answered: it may or may not be recorded.
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckOp {
    pub recorder: usize,
    pub subject: Subject,
    pub idempotency_key: String,
    /// Unique in the run: the checker finds the record by it, also one never answered.
    pub note: String,
    /// The record's id, from its answer (None: never answered).
    pub observation_id: Option<String>,
    pub outcome: CheckOutcome,
    /// The node that answered last.
    pub node: usize,
    pub invoked_ms: u64,
    pub completed_ms: u64,
    pub attempts: u32,
}

const GIVE_UP: Duration = Duration::from_secs(15);

fn facility_status(rng: &mut Rng) -> FacilityStatus {
    let (operation, power) = match rng.below(3) {
        0 => (Operation::Operating, Supply::Normal),
        1 => (Operation::Limited, Supply::Limited),
        _ => (Operation::Closed, Supply::Out),
    };
    FacilityStatus {
        operation: operation as i32,
        power: power as i32,
        water: Supply::Normal as i32,
        staff: Supply::Limited as i32,
        available: rng.below(10) as u32,
        ..Default::default()
    }
}

fn safety(rng: &mut Rng) -> SafetyCheck {
    let (status, needs) = match rng.below(3) {
        0 => (SafetyStatus::Safe, vec![]),
        1 => (SafetyStatus::NeedsHelp, vec![Need::Power as i32]),
        _ => (SafetyStatus::Unreachable, vec![]),
    };
    SafetyCheck { status: status as i32, needs, evacuated_to: String::new() }
}

/// One record a recorder sends.
#[derive(Clone)]
enum Record {
    Check(u64, SafetyCheck),
    Status(u64, FacilityStatus),
}

impl Record {
    /// One record in four is the facility's status, the others a random patient's check.
    fn draw(d: &Disaster, rng: &mut Rng) -> Self {
        if rng.below(4) == 0 {
            return Record::Status(d.facility, facility_status(rng));
        }
        Record::Check(d.patients[rng.below(d.patients.len() as u64) as usize], safety(rng))
    }

    fn subject(&self) -> Subject {
        match self {
            Record::Check(p, _) => Subject::Patient(*p),
            Record::Status(f, _) => Subject::Facility(*f),
        }
    }

    /// Sends it to `client` once: the observation the node answered with.
    async fn send(
        &self,
        client: &mut DisasterServiceClient<Channel>,
        (disaster_id, key, note): (u64, &str, &str),
        token: &str,
    ) -> Result<Option<Observation>, tonic::Status> {
        let (idempotency_key, note) = (key.to_owned(), note.to_owned());
        Ok(match self {
            Record::Check(patient_id, check) => {
                let check = Some(check.clone());
                let req =
                    RecordSafetyCheckRequest { idempotency_key, disaster_id, patient_id: *patient_id, check, note };
                client.record_safety_check(authed(req, token)).await?.into_inner().observation
            }
            Record::Status(facility_id, status) => {
                let status = Some(*status);
                let req = ReportFacilityStatusRequest {
                    idempotency_key,
                    disaster_id,
                    facility_id: *facility_id,
                    status,
                    note,
                };
                client.report_facility_status(authed(req, token)).await?.into_inner().observation
            }
        })
    }
}

pub async fn run(
    id: usize,
    (setup, disaster): (Setup, Disaster),
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    started: Instant,
) -> Vec<CheckOp> {
    let mut clients: Vec<Option<DisasterServiceClient<Channel>>> =
        setup.endpoints.iter().map(|e| channel(e).ok().map(DisasterServiceClient::new)).collect();
    let mut history = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let record = Record::draw(&disaster, &mut rng);
        let idempotency_key = format!("chaos-o{id}-{n}-{}", rng.next_u64());
        let note = format!("o{id}-{n}");
        let invoked_ms = ms_since(started);
        let deadline = Instant::now() + GIVE_UP;
        let (mut attempts, mut target) = (0u32, rng.below(clients.len() as u64) as usize);
        let (outcome, observation_id) = loop {
            attempts += 1;
            let reply = match clients[target].as_mut() {
                Some(c) => {
                    let call = record.send(c, (disaster.id, &idempotency_key, &note), &setup.token);
                    tokio::time::timeout(setup.answer_timeout, call).await.ok()
                }
                None => None,
            };
            match reply.and_then(Result::ok).flatten() {
                Some(o) if o.state == RecordState::Pending as i32 => {
                    break (CheckOutcome::Pending, Some(o.observation_id));
                }
                Some(o) => break (CheckOutcome::Applied, Some(o.observation_id)),
                None if Instant::now() >= deadline => break (CheckOutcome::Unknown, None),
                None => {
                    target = (target + 1) % clients.len();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        history.push(CheckOp {
            recorder: id,
            subject: record.subject(),
            idempotency_key,
            note,
            observation_id,
            outcome,
            node: target,
            invoked_ms,
            completed_ms: ms_since(started),
            attempts,
        });
        n += 1;
        // Checks are human actions: far fewer than posts.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    history
}

/// One subject's records as one node holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientChecks {
    /// (observation id, observed at ms, note) of every applied record, in the node's order.
    pub applied: Vec<(String, u64, String)>,
    /// Records this node still holds for the hub.
    pub pending: usize,
    /// The board's current record of the subject.
    pub current: Option<String>,
}

/// Every subject's records on `endpoint`, as the doctor (on every team) reads them.
pub async fn read_checks(endpoint: &str, token: &str, d: &Disaster) -> anyhow::Result<Vec<(Subject, PatientChecks)>> {
    let mut client = DisasterServiceClient::new(channel(endpoint)?);
    let board_req = GetBoardRequest { disaster_id: d.id, page_size: 500, ..Default::default() };
    let board = client.get_board(authed(board_req, token)).await?.into_inner();
    let mut out = Vec::new();
    for subject in d.subjects() {
        let mut checks = PatientChecks::default();
        for o in history(&mut client, token, d.id, subject).await? {
            if o.state == RecordState::Pending as i32 {
                checks.pending += 1;
            } else {
                let at = o.observed_at.map_or(0, |t| t.seconds as u64 * 1000 + t.nanos as u64 / 1_000_000);
                checks.applied.push((o.observation_id, at, o.note));
            }
        }
        let current = match subject {
            Subject::Patient(p) => board.patients.iter().find(|r| r.patient_id == p).and_then(|r| r.current.as_ref()),
            Subject::Facility(f) => {
                board.facility_statuses.iter().find(|r| r.facility_id == f).and_then(|r| r.current.as_ref())
            }
        };
        checks.current = current.map(|o| o.observation_id.clone());
        out.push((subject, checks));
    }
    Ok(out)
}

/// A subject's whole history on one node, page by page (oldest first), then what it holds.
async fn history(
    client: &mut DisasterServiceClient<Channel>,
    token: &str,
    disaster_id: u64,
    subject: Subject,
) -> anyhow::Result<Vec<Observation>> {
    let subject = Some(match subject {
        Subject::Patient(p) => ListSubject::PatientId(p),
        Subject::Facility(f) => ListSubject::FacilityId(f),
    });
    let (mut pages, mut page_token) = (Vec::new(), String::new());
    loop {
        let req = ListObservationsRequest { disaster_id, subject, page_size: 1000, page_token };
        let page = client.list_observations(authed(req, token)).await?.into_inner();
        pages.push(page.observations);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    // Each later page is older.
    Ok(pages.into_iter().rev().flatten().collect())
}

/// Waits (at most `within`) until no node holds a check for the hub.
pub async fn drained(endpoints: &[String], token: &str, d: &Disaster, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    for e in endpoints {
        loop {
            let req = GetBoardRequest { disaster_id: d.id, page_size: 1, ..Default::default() };
            let mut client = DisasterServiceClient::new(channel(e)?);
            let pending = client.get_board(authed(req, token)).await.map(|b| b.into_inner().pending_here);
            match pending {
                Ok(0) => break,
                _ if Instant::now() > deadline => anyhow::bail!("{e} still holds checks for the hub: {pending:?}"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}
