//! Safety-check recorders (disaster mode): each records checks of random patients on random
//! nodes, each under its own idempotency key (so a retry, on any node, names the same record),
//! retried against the next node on errors and timeouts for up to 15 s. A node cut off from the
//! quorum accepts a check as pending (journaled there, shipped when the quorum returns): the
//! checker (`check::observations`) requires every accepted check to end up applied exactly once
//! on every node, merged by the latest observation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kizuna_proto::disaster::disaster_service_client::DisasterServiceClient;
use kizuna_proto::disaster::list_observations_request::Subject;
use kizuna_proto::disaster::*;
use kizuna_proto::rooms::CreatePatientRequest;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use super::{Setup, authed, channel, ms_since, on_any_node};
use crate::rng::Rng;

/// The disaster of the run and the patients checked in it.
#[derive(Debug, Clone)]
pub struct Disaster {
    pub id: u64,
    pub patients: Vec<u64>,
}

/// The municipality the run's patients live in and its disaster covers.
const AREA: &str = "宇都宮市";

/// The doctor's `patients` patients (on a ventilator, in [`AREA`]) and a disaster declared for
/// it by the operator. Waits (like every set-up step) until the hub runs disaster mode.
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
    Ok(Disaster { id: disaster, patients: ids })
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
    pub patient: u64,
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

fn safety(rng: &mut Rng) -> SafetyCheck {
    let (status, needs) = match rng.below(3) {
        0 => (SafetyStatus::Safe, vec![]),
        1 => (SafetyStatus::NeedsHelp, vec![Need::Power as i32]),
        _ => (SafetyStatus::Unreachable, vec![]),
    };
    SafetyCheck { status: status as i32, needs, evacuated_to: String::new() }
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
        let patient = disaster.patients[rng.below(disaster.patients.len() as u64) as usize];
        let idempotency_key = format!("chaos-o{id}-{n}-{}", rng.next_u64());
        let check = safety(&mut rng);
        let note = format!("o{id}-{n}");
        let invoked_ms = ms_since(started);
        let deadline = Instant::now() + GIVE_UP;
        let (mut attempts, mut target) = (0u32, rng.below(clients.len() as u64) as usize);
        let (outcome, observation_id) = loop {
            attempts += 1;
            let req = RecordSafetyCheckRequest {
                idempotency_key: idempotency_key.clone(),
                disaster_id: disaster.id,
                patient_id: patient,
                check: Some(check.clone()),
                note: note.clone(),
            };
            let reply = match clients[target].as_mut() {
                Some(c) => {
                    let call = c.record_safety_check(authed(req, &setup.token));
                    tokio::time::timeout(setup.answer_timeout, call).await.ok()
                }
                None => None,
            };
            match reply.and_then(Result::ok).and_then(|r| r.into_inner().observation) {
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
            patient,
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

/// One patient's checks as one node holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientChecks {
    /// (observation id, observed at ms, note) of every applied check, in the node's order.
    pub applied: Vec<(String, u64, String)>,
    /// Checks this node still holds for the hub.
    pub pending: usize,
    /// The board's current check of the patient.
    pub current: Option<String>,
}

/// Every patient's checks on `endpoint`, as the doctor (on every team) reads them.
pub async fn read_checks(endpoint: &str, token: &str, d: &Disaster) -> anyhow::Result<Vec<(u64, PatientChecks)>> {
    let mut client = DisasterServiceClient::new(channel(endpoint)?);
    let board_req = GetBoardRequest { disaster_id: d.id, page_size: 500, ..Default::default() };
    let board = client.get_board(authed(board_req, token)).await?.into_inner();
    let mut out = Vec::new();
    for &patient in &d.patients {
        let req = ListObservationsRequest { disaster_id: d.id, subject: Some(Subject::PatientId(patient)) };
        let list = client.list_observations(authed(req, token)).await?.into_inner().observations;
        let mut checks = PatientChecks::default();
        for o in list {
            if o.state == RecordState::Pending as i32 {
                checks.pending += 1;
            } else {
                let at = o.observed_at.map_or(0, |t| t.seconds as u64 * 1000 + t.nanos as u64 / 1_000_000);
                checks.applied.push((o.observation_id, at, o.note));
            }
        }
        let row = board.patients.iter().find(|r| r.patient_id == patient);
        checks.current = row.and_then(|r| r.current.as_ref()).map(|o| o.observation_id.clone());
        out.push((patient, checks));
    }
    Ok(out)
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
