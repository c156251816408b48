//! Disaster mode through the real API on in-process hubs: declaring, care profiles, safety
//! checks and facility statuses, the board and its audited export, who may do what; and
//! store-and-forward — records made on a node cut off from the quorum are journaled there, shown
//! as pending, survive a restart of that node and reach every replica exactly once after the
//! cut heals, merged by the latest observation with what the majority recorded meanwhile.

mod common;

use std::time::{Duration, Instant};

use common::{HubSpec, TestHub, Wire, authed, channel};
use kizuna_proto::common::{FacilityStatus, Operation, Supply};
use kizuna_proto::directory::SearchFacilitiesRequest;
use kizuna_proto::directory::directory_service_client::DirectoryServiceClient;
use kizuna_proto::disaster::disaster_service_client::DisasterServiceClient;
use kizuna_proto::disaster::list_observations_request::Subject;
use kizuna_proto::disaster::*;
use kizuna_proto::posts::CreatePostRequest;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::{CreatePatientRequest, InviteMemberRequest, Role, invite_member_request::Invitee};
use tonic::transport::Channel;

async fn disaster(endpoint: &str) -> DisasterServiceClient<Channel> {
    DisasterServiceClient::new(channel(endpoint).await)
}

/// A patient of `doctor`'s with `members` on the team, living in `municipality`; (patient, room).
async fn patient(
    api: &str,
    doctor: &str,
    (name, municipality): (&str, &str),
    members: &[&str],
    devices: &[Device],
) -> (u64, u64) {
    let mut rooms = RoomServiceClient::new(channel(api).await);
    let create = CreatePatientRequest {
        idempotency_key: format!("patient-{name}"),
        name: name.into(),
        kana: "かな".into(),
        ..Default::default()
    };
    let created = rooms.create_patient(authed(create, doctor)).await.expect("patient").into_inner();
    for (i, token) in members.iter().enumerate() {
        let invite = InviteMemberRequest {
            idempotency_key: format!("invite-{name}-{i}"),
            room_id: created.room_id,
            invitee: Some(Invitee::AccountId(common::account_of(channel(api).await, token).await)),
            role: Role::Member as i32,
        };
        rooms.invite_member(authed(invite, doctor)).await.expect("invite");
    }
    let profile =
        CareProfile { municipality: municipality.into(), devices: devices.iter().map(|d| *d as i32).collect() };
    let set = SetCareProfileRequest {
        idempotency_key: format!("profile-{name}"),
        patient_id: created.patient_id,
        profile: Some(profile),
    };
    disaster(api).await.set_care_profile(authed(set, doctor)).await.expect("care profile");
    (created.patient_id, created.room_id)
}

fn check(
    key: &str,
    disaster_id: u64,
    patient_id: u64,
    status: SafetyStatus,
    needs: &[Need],
) -> RecordSafetyCheckRequest {
    RecordSafetyCheckRequest {
        idempotency_key: key.into(),
        disaster_id,
        patient_id,
        check: Some(SafetyCheck {
            status: status as i32,
            needs: needs.iter().map(|n| *n as i32).collect(),
            evacuated_to: String::new(),
        }),
        note: format!("記録 {key}"),
    }
}

async fn declare(api: &str, operator: &str, municipalities: &[&str]) -> u64 {
    let req = DeclareDisasterRequest {
        idempotency_key: "declare".into(),
        name: "令和8年台風第19号".into(),
        municipalities: municipalities.iter().map(|m| m.to_string()).collect(),
        started_at: None,
    };
    let declared = disaster(api).await.declare_disaster(authed(req, operator)).await.expect("declare");
    declared.into_inner().disaster.expect("disaster").disaster_id
}

/// The facility the signed-in professional works at.
async fn facility_of(api: &str, token: &str) -> u64 {
    let me = kizuna_proto::accounts::account_service_client::AccountServiceClient::new(channel(api).await)
        .get_me(authed(kizuna_proto::accounts::GetMeRequest {}, token))
        .await
        .expect("me")
        .into_inner();
    me.facility_id.expect("a professional's facility")
}

/// `facility`'s status as the resource map on `api` shows it.
async fn on_the_map(api: &str, token: &str, facility: u64) -> Option<FacilityStatus> {
    let search = SearchFacilitiesRequest { words: "doctor".into(), ..Default::default() };
    let map = DirectoryServiceClient::new(channel(api).await).search_facilities(authed(search, token)).await;
    let map = map.expect("the map").into_inner();
    map.facilities.into_iter().find(|f| f.facility_id == facility).and_then(|f| f.disaster_status)
}

async fn board(api: &str, token: &str, disaster_id: u64) -> GetBoardResponse {
    let req = GetBoardRequest { disaster_id, ..Default::default() };
    disaster(api).await.get_board(authed(req, token)).await.expect("board").into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declared_disaster_gets_checks_statuses_a_board_and_an_audited_export() {
    let hub = TestHub::start(3).await;
    hub.wait_apply_version(kizuna_node::domain::APPLY_VERSION).await;
    let api = hub.api(hub.leader().await);
    let op = hub.operator().await;
    let (doctor, nurse, outsider) =
        (hub.member("doctor").await, hub.member("nurse").await, hub.member("outsider").await);
    let (oxygen, _) = patient(&api, &doctor, ("酸素 太郎", "宇都宮市"), &[&nurse], &[Device::HomeOxygen]).await;
    let (quiet, _) = patient(&api, &doctor, ("静 花子", "宇都宮市"), &[], &[]).await;

    // Only an operator declares (by default).
    let by_doctor = DeclareDisasterRequest {
        idempotency_key: "d".into(),
        name: "x".into(),
        municipalities: vec!["宇都宮市".into()],
        started_at: None,
    };
    let refused = disaster(&api).await.declare_disaster(authed(by_doctor, &doctor)).await.expect_err("not an operator");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let d = declare(&api, &op, &["宇都宮市"]).await;

    // The team records; an outsider cannot; bad input changes nothing.
    let mut client = disaster(&api).await;
    let recorded = client
        .record_safety_check(authed(check("c1", d, oxygen, SafetyStatus::NeedsHelp, &[Need::Oxygen]), &nurse))
        .await
        .expect("the nurse records")
        .into_inner()
        .observation
        .expect("observation");
    assert_eq!(recorded.state, RecordState::Applied as i32);
    let outside = client.record_safety_check(authed(check("c2", d, oxygen, SafetyStatus::Safe, &[]), &outsider)).await;
    assert_eq!(outside.expect_err("an outsider").code(), tonic::Code::NotFound);
    let no_needs =
        client.record_safety_check(authed(check("c3", d, oxygen, SafetyStatus::NeedsHelp, &[]), &nurse)).await;
    assert_eq!(no_needs.expect_err("needs help without a need").code(), tonic::Code::InvalidArgument);
    // A retry of the same request is the same record.
    let again = client
        .record_safety_check(authed(check("c1", d, oxygen, SafetyStatus::NeedsHelp, &[Need::Oxygen]), &nurse))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again.observation.expect("observation").observation_id, recorded.observation_id);

    // The doctor's facility reports its status; it shows on the resource map.
    let status = FacilityStatus {
        operation: Operation::Limited as i32,
        power: Supply::Limited as i32,
        water: Supply::Normal as i32,
        staff: Supply::Limited as i32,
        available: 2,
        accepts_evacuees: true,
        ..Default::default()
    };
    let doctor_facility = facility_of(&api, &doctor).await;
    let report = ReportFacilityStatusRequest {
        idempotency_key: "f1".into(),
        disaster_id: d,
        facility_id: doctor_facility,
        status: Some(status),
        note: "自家発電で稼働".into(),
    };
    let by_nurse = client.report_facility_status(authed(report.clone(), &nurse)).await;
    assert_eq!(by_nurse.expect_err("another facility's staff").code(), tonic::Code::PermissionDenied);
    client.report_facility_status(authed(report, &doctor)).await.expect("the facility's own staff");
    let map = DirectoryServiceClient::new(channel(&api).await)
        .search_facilities(authed(SearchFacilitiesRequest { words: "doctor".into(), ..Default::default() }, &nurse))
        .await
        .expect("map")
        .into_inner();
    let shown = map.facilities.iter().find(|f| f.facility_id == doctor_facility).expect("on the map");
    assert_eq!(shown.disaster_status.as_ref().map(|s| s.operation), Some(Operation::Limited as i32));

    // The board: the nurse sees counts and her patient; the outsider counts only.
    let seen = board(&api, &nurse, d).await;
    let total = seen.total.expect("total");
    assert_eq!((total.patients, total.checked, total.needs_help, total.needs_oxygen), (2, 1, 1, 1));
    assert_eq!(seen.patients.iter().map(|p| p.patient_id).collect::<Vec<_>>(), vec![oxygen]);
    assert_eq!(seen.facility_statuses.len(), 3, "the three facilities of 宇都宮市");
    let counts_only = board(&api, &outsider, d).await;
    assert_eq!(counts_only.total.expect("total").patients, 2);
    assert!(counts_only.patients.is_empty());
    let doctors = board(&api, &doctor, d).await;
    assert_eq!(doctors.patients.iter().map(|p| p.patient_id).collect::<Vec<_>>(), vec![oxygen, quiet]);

    // The export: operators only, every row, audited.
    let export = ExportBoardRequest { disaster_id: d };
    let refused = client.export_board(authed(export, &doctor)).await.expect_err("not an operator");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let csv = client.export_board(authed(export, &op)).await.expect("export").into_inner();
    let text = String::from_utf8(csv.csv).expect("UTF-8");
    assert_eq!((csv.patients, text.lines().count()), (2, 3), "{text}");
    assert!(text.contains("酸素 太郎,在宅酸素,要支援,酸素"), "{text}");
    common::until_none_on_leader(&hub, "the export's audit entries", |state| {
        let entries = state.audit_after(0, 100_000);
        let exported = entries.iter().filter(|e| e.record.what == "安否確認の書き出し").count();
        if exported >= 2 { vec![] } else { vec![exported] }
    })
    .await;

    // Ending it: the declarer or an operator.
    let end = EndDisasterRequest { idempotency_key: "end".into(), disaster_id: d };
    let ended = client.end_disaster(authed(end, &op)).await.expect("end").into_inner().disaster.expect("disaster");
    assert!(ended.ended_at.is_some());
    let late = client.record_safety_check(authed(check("c9", d, oxygen, SafetyStatus::Safe, &[]), &nurse)).await;
    assert_eq!(late.expect_err("after the end").code(), tonic::Code::FailedPrecondition);
    hub.shutdown().await;
}

fn tochigi() -> HubSpec {
    HubSpec {
        nodes: vec![("utsunomiya", true), ("oyama", true), ("tokyo", true), ("osaka", true), ("nasu", false)],
        preferred_regions: vec!["utsunomiya".into(), "oyama".into()],
        wire: Wire::Faulty,
    }
}

/// Every observation of `patient` on node `api`, page by page, waiting until `n` are applied.
async fn history_on(api: &str, token: &str, (d, patient): (u64, u64), n: usize) -> Vec<Observation> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let history = all_observations(api, token, d, Subject::PatientId(patient)).await;
        let applied = history.iter().filter(|o| o.state == RecordState::Applied as i32).count();
        if applied >= n || Instant::now() > deadline {
            return history;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every observation of `subject` on `api`, following `next_page_token` to the oldest, in the
/// merge order, then the ones pending on that node.
async fn all_observations(api: &str, token: &str, d: u64, subject: Subject) -> Vec<Observation> {
    let (mut pages, mut pending, mut page_token) = (Vec::new(), Vec::new(), String::new());
    loop {
        let req = ListObservationsRequest {
            disaster_id: d,
            subject: Some(subject),
            page_size: 100,
            page_token: page_token.clone(),
        };
        let got = disaster(api).await.list_observations(authed(req, token)).await.expect("history").into_inner();
        let (waiting, applied): (Vec<_>, Vec<_>) =
            got.observations.into_iter().partition(|o| o.state == RecordState::Pending as i32);
        assert!(pages.is_empty() || waiting.is_empty(), "pending records on the first page only");
        pending.extend(waiting);
        pages.push(applied);
        if got.next_page_token.is_empty() {
            break;
        }
        page_token = got.next_page_token;
    }
    pages.into_iter().rev().flatten().chain(pending).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_made_on_a_cut_off_node_survive_its_restart_and_arrive_once_merged_by_time() {
    let mut hub = TestHub::start_spec(tochigi()).await;
    hub.wait_apply_version(kizuna_node::domain::APPLY_VERSION).await;
    let leader = hub.leader().await;
    let api = hub.api(leader);
    let op = hub.operator().await;
    let (doctor, nurse) = (hub.member("doctor").await, hub.member("nurse").await);
    let (mut patients, mut rooms) = (Vec::new(), Vec::new());
    for i in 0..5 {
        let (p, room) = patient(&api, &doctor, (&format!("患者{i}"), "那須町"), &[&nurse], &[Device::Ventilator]).await;
        patients.push(p);
        rooms.push(room);
    }
    let (shioya, _) = patient(&api, &doctor, ("塩谷 さん", "塩谷町"), &[&nurse], &[]).await;
    let d = declare(&api, &op, &["那須町"]).await;
    // The learner in 那須 (nasu) serves the region; it is cut off with it.
    let cut = hub.ids_in_region("nasu")[0];
    // The majority side checks patient 1 first: the cut-off node's later record of that patient
    // reaches the log after it, and wins.
    let first = check("majority-1", d, patients[1], SafetyStatus::Unreachable, &[]);
    disaster(&api).await.record_safety_check(authed(first, &doctor)).await.expect("majority records");
    let ready = hub.running(leader).node.metrics().last_applied.map_or(0, |l| l.index);
    hub.wait_applied(ready).await;
    hub.isolate(cut);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // On the cut-off node: every patient checked, accepted as pending, at once.
    let cut_api = hub.api(cut);
    let started = Instant::now();
    for (i, p) in patients.iter().enumerate() {
        let req = check(&format!("cut-{i}"), d, *p, SafetyStatus::NeedsHelp, &[Need::Power]);
        let o = disaster(&cut_api).await.record_safety_check(authed(req, &nurse)).await.expect("accepted here");
        assert_eq!(o.into_inner().observation.expect("observation").state, RecordState::Pending as i32);
    }
    eprintln!("FIGURE 5 checks accepted on a cut-off node in {:?}", started.elapsed());
    // A retry there answers the record it holds, and holds it once.
    let retry = check("cut-0", d, patients[0], SafetyStatus::NeedsHelp, &[Need::Power]);
    let retried = disaster(&cut_api).await.record_safety_check(authed(retry, &nurse)).await.expect("a retry");
    assert_eq!(retried.into_inner().observation.expect("observation").state, RecordState::Pending as i32);
    let here = board(&cut_api, &nurse, d).await;
    assert_eq!(here.pending_here, 5, "a retry is held once");
    assert!(!here.stale_reason.is_empty(), "the cut-off node says its copy may be stale");
    assert_eq!(here.total.expect("total").needs_power, 5, "pending records count on the node that holds them");
    // Ordinary posts are still refused there.
    let post = CreatePostRequest {
        idempotency_key: "cut-post".into(),
        room_id: rooms[0],
        text: "停電中".into(),
        ..Default::default()
    };
    let refused = PostServiceClient::new(channel(&cut_api).await).create_post(authed(post, &nurse)).await;
    assert_eq!(refused.expect_err("no quorum").code(), tonic::Code::Unavailable);

    // The doctor, on the same node, sees the nurse's pending checks, and reports the status of
    // her facility there: pending too, on the board and on the resource map of that node.
    let seen = board(&cut_api, &doctor, d).await;
    let pending_rows =
        seen.patients.iter().filter(|r| r.current.as_ref().is_some_and(|o| o.state == RecordState::Pending as i32));
    assert_eq!(pending_rows.count(), 5, "another user of the node sees them pending: {seen:?}");
    let clinic = facility_of(&api, &doctor).await;
    let outage = FacilityStatus {
        operation: Operation::Limited as i32,
        power: Supply::Out as i32,
        water: Supply::Normal as i32,
        staff: Supply::Limited as i32,
        available: 1,
        ..Default::default()
    };
    let report = ReportFacilityStatusRequest {
        idempotency_key: "cut-clinic".into(),
        disaster_id: d,
        facility_id: clinic,
        status: Some(outage),
        note: "停電、発電機で一部稼働".into(),
    };
    let reported = disaster(&cut_api).await.report_facility_status(authed(report, &doctor)).await.expect("accepted");
    assert_eq!(reported.into_inner().observation.expect("observation").state, RecordState::Pending as i32);
    let by_nurse = board(&cut_api, &nurse, d).await;
    let row = by_nurse.facility_statuses.iter().find(|f| f.facility_id == clinic).expect("the clinic's row");
    assert_eq!(row.current.as_ref().map(|o| o.state), Some(RecordState::Pending as i32), "{row:?}");
    let shown = on_the_map(&cut_api, &nurse, clinic).await.expect("on the cut-off node's map");
    assert!(shown.pending && shown.power == Supply::Out as i32, "{shown:?}");
    assert!(on_the_map(&api, &nurse, clinic).await.is_none(), "the majority has not heard of it yet");

    // A patient in 塩谷町, where no disaster is declared yet: the cut-off node files the check
    // under none (disaster 0), and the office declares one for 塩谷町 while the cut lasts.
    let undeclared = check("cut-shioya", 0, shioya, SafetyStatus::Evacuated, &[]);
    let undeclared = RecordSafetyCheckRequest {
        check: Some(SafetyCheck {
            evacuated_to: "塩谷町公民館".into(), ..undeclared.check.clone().expect("check")
        }),
        ..undeclared
    };
    let o = disaster(&cut_api).await.record_safety_check(authed(undeclared, &nurse)).await.expect("accepted here");
    assert_eq!(o.into_inner().observation.expect("observation").state, RecordState::Pending as i32);
    let d2 = {
        let req = DeclareDisasterRequest {
            idempotency_key: "declare-shioya".into(),
            name: "塩谷町の土砂災害".into(),
            municipalities: vec!["塩谷町".into()],
            started_at: None,
        };
        let declared = disaster(&api).await.declare_disaster(authed(req, &op)).await.expect("declare");
        declared.into_inner().disaster.expect("disaster").disaster_id
    };

    // Meanwhile the majority records patient 0 again (safe), after the cut-off node did: its
    // record reaches the log first, and the cut-off node's older one must not override it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let majority = check("majority-0", d, patients[0], SafetyStatus::Safe, &[]);
    disaster(&api).await.record_safety_check(authed(majority, &doctor)).await.expect("majority records");

    // The cut-off node restarts before the cut heals: nothing it holds is lost.
    hub.stop(cut).await;
    hub.restart(cut).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(board(&cut_api, &nurse, d).await.pending_here, 7, "the journal survived the restart");

    let healed = Instant::now();
    hub.heal(cut);
    for id in hub.running_ids() {
        let node_api = hub.api(id);
        for (i, p) in patients.iter().enumerate() {
            let expected = if i < 2 { 2 } else { 1 };
            let history = history_on(&node_api, &nurse, (d, *p), expected).await;
            let applied: Vec<&Observation> =
                history.iter().filter(|o| o.state == RecordState::Applied as i32).collect();
            assert_eq!(applied.len(), expected, "node {id}, patient {i}: {history:?}");
            assert_eq!(history.len(), expected, "nothing left pending on node {id}");
        }
    }
    eprintln!("FIGURE heal to all 6 pending checks applied on every node: {:?}", healed.elapsed());
    for id in hub.running_ids() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let states = loop {
            let statuses = all_observations(&hub.api(id), &doctor, d, Subject::FacilityId(clinic)).await;
            let states: Vec<i32> = statuses.iter().map(|o| o.state).collect();
            if states == [RecordState::Applied as i32] || Instant::now() > deadline {
                break states;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(states, vec![RecordState::Applied as i32], "node {id}: the clinic's status, once");
        let shown = on_the_map(&hub.api(id), &nurse, clinic).await.expect("on every node's map");
        assert!(!shown.pending && shown.power == Supply::Out as i32, "node {id}: {shown:?}");
    }
    for id in hub.running_ids() {
        let filed = history_on(&hub.api(id), &nurse, (d2, shioya), 1).await;
        assert_eq!(filed.len(), 1, "node {id}: the undeclared check is filed under 塩谷町's disaster: {filed:?}");
    }
    // The merge rule, the same on every node: the latest observation is the current state.
    for id in hub.running_ids() {
        let b = board(&hub.api(id), &doctor, d).await;
        let total = b.total.expect("total");
        assert_eq!((total.safe, total.needs_help, total.needs_power, total.unreachable), (1, 4, 4, 0), "node {id}");
        assert_eq!(b.pending_here, 0);
    }
    hub.shutdown().await;
}

const KIZUNA: &str = env!("CARGO_BIN_EXE_kizuna");

/// The CLI in `dir`, signed in as `login` with `token`, talking to `api`.
async fn kizuna(dir: &std::path::Path, (login, token): (&str, &str), api: &str, args: &[&str]) -> String {
    let session = dir.join(format!("{login}.json"));
    std::fs::write(&session, serde_json::json!({ "login": login, "token": token }).to_string()).expect("session file");
    let out = tokio::process::Command::new(KIZUNA)
        .current_dir(dir)
        .env("KIZUNA_SESSION_FILE", &session)
        .env_remove("KIZUNA_CA")
        .args(["--endpoint", api])
        .args(args)
        .output()
        .await
        .expect("run kizuna");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kizuna {args:?}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_declares_records_shows_the_board_and_exports_it() {
    let hub = TestHub::start(3).await;
    hub.wait_apply_version(kizuna_node::domain::APPLY_VERSION).await;
    let api = hub.api(hub.leader().await);
    let (op, nurse) = (hub.operator().await, hub.member("nurse").await);
    let (patient, _) = patient(&api, &nurse, ("木村 一", ""), &[], &[]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (op, nurse) = (("test-operator", op.as_str()), ("nurse", nurse.as_str()));
    let p = patient.to_string();

    let declared =
        kizuna(dir.path(), op, &api, &["disaster", "declare", "関東・東北豪雨", "--municipalities", "常総市"]).await;
    let d = declared.split_whitespace().nth(1).expect("the disaster's id").to_owned();
    let profile = ["disaster", "profile", &p, "--municipality", "常総市", "--devices", "home-oxygen"];
    assert!(kizuna(dir.path(), nurse, &api, &profile).await.contains("在宅酸素"));
    let check =
        ["disaster", "check", &d, &p, "--status", "needs-help", "--needs", "oxygen,power", "--note", "ボンベ残り2時間"];
    assert!(kizuna(dir.path(), nurse, &api, &check).await.contains("記録しました"));
    let board = kizuna(dir.path(), nurse, &api, &["disaster", "board", &d]).await;
    assert!(board.contains("木村 一") && board.contains("要支援 (酸素・電源)"), "{board}");
    let her_facility = facility_of(&api, nurse.1).await.to_string();
    let hers = kizuna(dir.path(), nurse, &api, &["disaster", "board", &d, "--facility", &her_facility]).await;
    assert!(hers.contains("木村 一"), "her facility's staff are on the team: {hers}");
    let other = kizuna(dir.path(), nurse, &api, &["disaster", "board", &d, "--facility", "999999"]).await;
    assert!(!other.contains("木村 一"), "no one of that facility is on the team: {other}");
    let listed = kizuna(dir.path(), nurse, &api, &["disaster", "list"]).await;
    assert!(listed.contains("発令中") && listed.contains("関東・東北豪雨"), "{listed}");
    kizuna(dir.path(), op, &api, &["disaster", "export", &d, "--out", "anpi.csv"]).await;
    let csv = std::fs::read_to_string(dir.path().join("anpi.csv")).expect("the export");
    assert!(csv.contains("常総市,") && csv.contains("ボンベ残り2時間"), "{csv}");
    hub.shutdown().await;
}

/// The figure of docs/benchmarks.md ("Disaster mode"): a few thousand safety checks recorded on
/// a cut-off node, then the time from healing until the last of them is applied on every node.
/// `cargo test --release --test disaster -- --ignored --nocapture heal_figure` (the count:
/// KIZUNA_PENDING_CHECKS, 3000 by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: prints figures"]
async fn heal_figure_pending_checks_applied_after_a_cut() {
    let count: usize = std::env::var("KIZUNA_PENDING_CHECKS").ok().and_then(|n| n.parse().ok()).unwrap_or(3000);
    let hub = TestHub::start_spec(tochigi()).await;
    hub.wait_apply_version(kizuna_node::domain::APPLY_VERSION).await;
    let leader = hub.leader().await;
    let api = hub.api(leader);
    let op = hub.operator().await;
    let nurse = hub.member("nurse").await;
    let mut patients = Vec::new();
    for i in 0..20 {
        patients.push(patient(&api, &nurse, (&format!("患者{i}"), "那須町"), &[], &[Device::HomeOxygen]).await.0);
    }
    let d = declare(&api, &op, &["那須町"]).await;
    let cut = hub.ids_in_region("nasu")[0];
    let ready = hub.running(leader).node.metrics().last_applied.map_or(0, |l| l.index);
    hub.wait_applied(ready).await;
    hub.isolate(cut);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let recording = Instant::now();
    let cut_api = hub.api(cut);
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let (cut_api, nurse, patients) = (cut_api.clone(), nurse.clone(), patients.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = disaster(&cut_api).await;
            for n in (worker..count).step_by(16) {
                let req = check(&format!("fig-{n}"), d, patients[n % patients.len()], SafetyStatus::Safe, &[]);
                let o = client.record_safety_check(authed(req, &nurse)).await.expect("accepted on the cut-off node");
                assert_eq!(o.into_inner().observation.expect("observation").state, RecordState::Pending as i32);
            }
        }));
    }
    for t in tasks {
        t.await.expect("recorder");
    }
    let took = recording.elapsed();
    eprintln!(
        "FIGURE {count} checks accepted on the cut-off node in {took:?} ({:.0}/s)",
        count as f64 / took.as_secs_f64()
    );

    let healed = Instant::now();
    hub.heal(cut);
    let journal = &hub.running(cut).node.state.observations;
    while journal.pending(1).expect("journal").is_some() {
        assert!(healed.elapsed() < Duration::from_secs(300), "still pending after 5 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shipped = healed.elapsed();
    let last = hub.running(hub.leader().await).node.metrics().last_applied.map_or(0, |l| l.index);
    hub.wait_applied(last).await;
    let everywhere = healed.elapsed();
    eprintln!("FIGURE heal to {count} pending checks committed: {shipped:?}; applied on every node: {everywhere:?}");
    let b = board(&api, &nurse, d).await;
    assert_eq!(b.total.expect("total").checked, 20, "every patient checked");
    let history = history_on(&api, &nurse, (d, patients[0]), count / patients.len()).await;
    assert_eq!(history.len(), count / patients.len(), "each check applied once");
    hub.shutdown().await;
}
