//! Disaster mode: declaring, recording safety checks and facility statuses (applied once, merged
//! by the latest observation whatever order they arrive in), and the board.

use super::*;
use crate::disaster::board::{BoardQuery, StatusFilter, board};
use crate::disaster::observe::{self, Recorded};
use crate::disaster::*;

fn declare(hub: &mut Hub, who: AccountId, municipalities: &[&str]) -> DomainResult<DisasterId> {
    let municipalities = municipalities.iter().map(|m| m.to_string()).collect();
    let declare =
        Command::DeclareDisaster { name: "令和8年台風第19号".into(), municipalities, started_at_ms: None };
    match hub.run(Some(who), declare)? {
        Outcome::Disaster(id) => Ok(id),
        o => panic!("{o:?}"),
    }
}

fn patient_in(hub: &mut Hub, owner: AccountId, name: &str, municipality: &str, devices: Vec<Device>) -> PatientId {
    let timeline = patient(hub, owner, name);
    let Some(RoomKind::PatientTimeline { patient }) = hub.state.room(timeline).unwrap().map(|r| r.kind) else {
        panic!("not a timeline")
    };
    hub.ok(owner, Command::SetCareProfile { patient, municipality: municipality.into(), devices });
    patient
}

fn check(n: u8, disaster: DisasterId, patient: PatientId, safety: Safety, at: u64, author: AccountId) -> Observation {
    Observation {
        id: ObservationId([n; 16]),
        disaster,
        subject: Subject::Patient(patient),
        report: Report::Safety(safety),
        note: format!("記録{n}"),
        observed_at_ms: at,
        author,
        session: "abcd".into(),
        node: 3,
    }
}

/// Ships `observations` in one log entry, as the state machine applies them.
fn ship(hub: &mut Hub, observations: Vec<Observation>) -> Recorded {
    hub.index += 1;
    hub.now += 1000;
    observe::record(&mut hub.state, Ctx { log_index: hub.index, now_ms: hub.now }, observations).unwrap()
}

fn needs(needs: &[Need]) -> Safety {
    Safety::NeedsHelp { needs: needs.to_vec() }
}

#[test]
fn operators_declare_and_admins_only_for_their_own_municipality_when_the_hub_allows() {
    let (mut hub, op, _clinic, people) = Hub::setup(2);
    let (admin, nurse) = (people[0], people[1]);
    assert!(matches!(declare(&mut hub, admin, &["宇都宮市"]), Err(DomainError::PermissionDenied(_))));
    let by_nurse = hub.run(Some(nurse), Command::SetDisasterPolicy { admins_may_declare: true });
    assert!(matches!(by_nurse, Err(DomainError::PermissionDenied(_))));
    hub.ok(op, Command::SetDisasterPolicy { admins_may_declare: true });
    assert!(matches!(declare(&mut hub, nurse, &["宇都宮市"]), Err(DomainError::PermissionDenied(_))));
    assert!(matches!(declare(&mut hub, admin, &["宇都宮市", "鹿沼市"]), Err(DomainError::PermissionDenied(_))));
    let own = declare(&mut hub, admin, &["宇都宮市"]).unwrap();
    // It may say it began earlier (declared in the morning for a flood in the night), not later.
    let backdated = |started_at_ms| Command::DeclareDisaster {
        name: "夜間の浸水".into(),
        municipalities: vec!["宇都宮市".into()],
        started_at_ms: Some(started_at_ms),
    };
    hub.now += 30 * 24 * 3_600_000;
    let night = hub.now - 6 * 3_600_000;
    let Outcome::Disaster(id) = hub.ok(op, backdated(night)) else { panic!("no disaster") };
    assert_eq!(crate::disaster::declare::find(&hub.state, id).unwrap().started_at_ms, night);
    let future = hub.run(Some(op), backdated(hub.now + 3_600_000));
    assert!(matches!(future, Err(DomainError::InvalidArgument(_))), "{future:?}");
    assert!(matches!(declare(&mut hub, op, &[]), Err(DomainError::InvalidArgument(_))));
    let wide = declare(&mut hub, op, &["宇都宮市", "鹿沼市", " 鹿沼市 "]).unwrap();
    assert_eq!(crate::disaster::declare::find(&hub.state, wide).unwrap().municipalities, ["宇都宮市", "鹿沼市"]);

    // Whoever declared, or an operator, ends it; once.
    assert!(matches!(
        hub.run(Some(admin), Command::EndDisaster { disaster: wide }),
        Err(DomainError::PermissionDenied(_))
    ));
    hub.ok(admin, Command::EndDisaster { disaster: own });
    hub.ok(op, Command::EndDisaster { disaster: wide });
    assert!(matches!(
        hub.run(Some(op), Command::EndDisaster { disaster: wide }),
        Err(DomainError::FailedPrecondition(_))
    ));
    hub.ok(op, Command::EndDisaster { disaster: id });
    let listed = crate::disaster::declare::list(&hub.state, nurse).unwrap();
    assert!(listed.iter().all(|d| !d.is_active()) && listed.len() == 3);
}

#[test]
fn a_declaration_is_heard_by_every_active_account() {
    let (mut hub, op, _clinic, people) = Hub::setup(1);
    let id = declare(&mut hub, op, &["宇都宮市"]).unwrap();
    let event =
        crate::events::Event { cursor: 1, room: RoomId(0), at_ms: 0, kind: crate::events::EventKind::Disaster { id } };
    assert!(crate::events::visible_to(&hub.state, people[0], &event).unwrap());
    hub.ok(op, Command::StopAccount { account: people[0] });
    assert!(!crate::events::visible_to(&hub.state, people[0], &event).unwrap());
}

#[test]
fn only_the_patients_team_records_its_safety_check_and_each_record_applies_once() {
    let (mut hub, op, clinic, people) = Hub::setup(2);
    let (nurse, outsider) = (people[0], people[1]);
    let patient = patient_in(&mut hub, nurse, "山田 花子", "宇都宮市", vec![Device::HomeOxygen]);
    let d = declare(&mut hub, op, &["宇都宮市"]).unwrap();
    let at = hub.now;

    assert!(matches!(
        observe::check(&hub.state, &check(1, d, patient, Safety::Safe, at, outsider)),
        Err(DomainError::NotFound(_))
    ));
    assert!(matches!(
        observe::check(&hub.state, &check(1, d, patient, Safety::Safe, at, op)),
        Err(DomainError::NotFound(_))
    ));
    let empty_needs = check(1, d, patient, needs(&[]), at, nurse);
    assert!(matches!(observe::check(&hub.state, &empty_needs), Err(DomainError::InvalidArgument(_))));

    let first = check(1, d, patient, needs(&[Need::Oxygen]), at, nurse);
    let refused = check(2, d, patient, Safety::Safe, at, outsider);
    let refused_id = refused.id;
    let recorded = ship(&mut hub, vec![first.clone(), refused.clone(), first.clone()]);
    assert_eq!((recorded.applied, recorded.duplicates, recorded.refused), (1, 1, 1));
    assert_eq!(recorded.audit.len(), 1, "a safety check is a write of patient data");
    // Shipped again (a retry after a lost reply): nothing more, the refusal included.
    let again = ship(&mut hub, vec![first.clone(), refused]);
    assert_eq!((again.applied, again.duplicates, again.refused), (0, 2, 0));
    let refusal = again.fates.iter().find(|(id, _)| *id == refused_id).map(|(_, f)| f);
    assert!(matches!(refusal, Some(Fate::Refused(DomainError::NotFound(_)))), "the first outcome: {refusal:?}");
    assert_eq!(hub.state.observations_of(d, Subject::Patient(patient)).unwrap(), vec![first]);

    // A facility's status: its staff, or an operator taking it by phone.
    let status = |author, n| Observation {
        subject: Subject::Facility(clinic),
        report: Report::Facility(FacilityState {
            operation: Operation::Limited,
            power: Supply::Limited,
            water: Supply::Normal,
            staff: Supply::Limited,
            available: 3,
            accepts_evacuees: true,
            accepts_patients: false,
        }),
        ..check(n, d, patient, Safety::Safe, at, author)
    };
    assert!(observe::check(&hub.state, &status(outsider, 3)).is_ok());
    assert!(observe::check(&hub.state, &status(op, 4)).is_ok());
    let mismatched = Observation { report: Report::Safety(Safety::Safe), ..status(op, 5) };
    assert!(matches!(observe::check(&hub.state, &mismatched), Err(DomainError::InvalidArgument(_))));
}

#[test]
fn records_from_both_sides_of_a_cut_merge_to_the_latest_in_any_order() {
    let (mut hub, op, _clinic, people) = Hub::setup(2);
    let (a, b) = (people[0], people[1]);
    let patient = patient_in(&mut hub, a, "佐藤 一郎", "宇都宮市", vec![]);
    let timeline = hub.state.patient(patient).unwrap().unwrap().timeline;
    // The owner's own invitation is its approval.
    hub.ok(a, Command::Invite { room: timeline, invitee: b, role: Role::Member });
    let d = declare(&mut hub, op, &["宇都宮市"]).unwrap();
    let t = hub.now;
    // The cut-off side saw the patient later (needs power); the majority side earlier (safe);
    // a third record at the same millisecond as the later one breaks the tie by id.
    let cut_off = check(7, d, patient, needs(&[Need::Power]), t + 500, a);
    let majority = check(9, d, patient, Safety::Safe, t + 100, b);
    let tie = check(5, d, patient, Safety::Unreachable, t + 500, b);

    let mut one = hub.state.clone();
    let mut other = hub.state.clone();
    let ctx = Ctx { log_index: hub.index + 1, now_ms: t + 10_000 };
    observe::record(&mut one, ctx, vec![majority.clone(), tie.clone()]).unwrap();
    observe::record(&mut one, ctx, vec![cut_off.clone()]).unwrap();
    observe::record(&mut other, ctx, vec![cut_off.clone(), tie.clone(), majority.clone()]).unwrap();
    for state in [&one, &other] {
        assert_eq!(state.current_observation(d, Subject::Patient(patient)).unwrap(), Some(cut_off.clone()));
        let history = state.observations_of(d, Subject::Patient(patient)).unwrap();
        assert_eq!(history, vec![majority.clone(), tie.clone(), cut_off.clone()], "every observation is kept");
    }
    // A node whose clock runs ahead cannot stay on top: its time is capped at the log's.
    let mut ahead = check(11, d, patient, Safety::Safe, t + 3_600_000, b);
    observe::record(&mut one, ctx, vec![ahead.clone()]).unwrap();
    ahead.observed_at_ms = ctx.now_ms;
    assert_eq!(one.current_observation(d, Subject::Patient(patient)).unwrap(), Some(ahead));
}

#[test]
fn the_board_counts_for_professionals_lists_patients_for_their_team_and_puts_life_support_first() {
    let (mut hub, op, clinic, people) = Hub::setup(2);
    let (nurse, other) = (people[0], people[1]);
    let oxygen = patient_in(&mut hub, nurse, "酸素 さん", "宇都宮市", vec![Device::HomeOxygen]);
    let safe = patient_in(&mut hub, nurse, "無事 さん", "宇都宮市", vec![]);
    let ventilator = patient_in(&mut hub, nurse, "呼吸器 さん", "鹿沼市", vec![Device::Ventilator]);
    let _elsewhere = patient_in(&mut hub, other, "遠方 さん", "日光市", vec![]);
    let d = declare(&mut hub, op, &["宇都宮市", "鹿沼市"]).unwrap();
    let t = hub.now;
    ship(
        &mut hub,
        vec![check(1, d, safe, Safety::Safe, t, nurse), check(2, d, oxygen, needs(&[Need::Oxygen]), t, nurse)],
    );
    // Recorded on this node while cut off, not yet in the log.
    let pending = vec![check(3, d, safe, Safety::Unreachable, t + 10, nurse)];

    let all = BoardQuery { limit: 100, ..BoardQuery::default() };
    let seen = board(&hub.state, nurse, d, &all, &pending).unwrap();
    assert_eq!((seen.total.patients, seen.total.checked, seen.total.needs_help), (3, 2, 1));
    assert_eq!((seen.total.life_support, seen.total.life_support_unchecked), (2, 1));
    assert_eq!(seen.total.unreachable, 1, "the pending check counts as it will once applied");
    assert_eq!(seen.total.needs[1], 1, "one needs oxygen");
    let order: Vec<PatientId> = seen.patients.iter().map(|r| r.patient).collect();
    assert_eq!(order, vec![oxygen, ventilator, safe], "needing oxygen, unchecked on a ventilator, then the rest");
    assert!(seen.patients[2].pending);
    assert_eq!(seen.by_municipality[0].0, "宇都宮市", "the municipality with patients needing help first");
    assert_eq!(seen.by_facility.iter().map(|(f, _, t)| (*f, t.patients)).collect::<Vec<_>>(), vec![(clinic, 3)]);

    // Another professional sees the counts, not the rows; the operators see every row.
    let counts_only = board(&hub.state, other, d, &all, &[]).unwrap();
    assert_eq!(counts_only.total.patients, 3);
    assert!(counts_only.patients.is_empty());
    assert_eq!(board(&hub.state, op, d, &all, &[]).unwrap().patients.len(), 3);

    // Filters and the limit.
    let urgent = BoardQuery { status: Some(StatusFilter::NeedsHelp), ..all.clone() };
    assert_eq!(board(&hub.state, op, d, &urgent, &[]).unwrap().patients.len(), 1);
    let kanuma = BoardQuery { municipality: Some("鹿沼市".into()), life_support_only: true, ..all.clone() };
    assert_eq!(board(&hub.state, op, d, &kanuma, &[]).unwrap().patients[0].patient, ventilator);
    let first = board(&hub.state, op, d, &BoardQuery { limit: 1, ..all.clone() }, &[]).unwrap();
    assert_eq!((first.patients.len(), first.matching), (1, 3));

    // The facilities of the area, with their status; the export for the disaster office.
    assert_eq!(seen.facilities.iter().map(|f| f.facility).collect::<Vec<_>>(), vec![clinic]);
    let csv = crate::disaster::export::csv(&board(&hub.state, op, d, &all, &[]).unwrap());
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[1].starts_with("宇都宮市,") && lines[1].contains("酸素 さん,在宅酸素,要支援,酸素"), "{}", lines[1]);
}

#[test]
fn family_accounts_record_their_patients_check_but_see_no_board() {
    let (mut hub, op, _clinic, people) = Hub::setup(1);
    let patient = patient_in(&mut hub, people[0], "家族 さん", "宇都宮市", vec![]);
    let family = account_of(
        hub.run(
            Some(people[0]),
            Command::CreateFamilyAccount {
                patient,
                login: "kazoku".into(),
                display_name: "家族".into(),
                password_hash: "h".into(),
            },
        )
        .unwrap(),
    );
    hub.state.passwords_issued.clear();
    let d = declare(&mut hub, op, &["宇都宮市"]).unwrap();
    assert!(observe::check(&hub.state, &check(1, d, patient, Safety::Safe, hub.now, family)).is_ok());
    let refused = board(&hub.state, family, d, &BoardQuery { limit: 10, ..BoardQuery::default() }, &[]);
    assert!(matches!(refused, Err(DomainError::PermissionDenied(_))));
}

#[test]
fn a_record_made_after_the_disaster_ended_is_refused_one_made_before_is_not() {
    let (mut hub, op, _clinic, people) = Hub::setup(1);
    let patient = patient_in(&mut hub, people[0], "終了 さん", "宇都宮市", vec![]);
    let d = declare(&mut hub, op, &["宇都宮市"]).unwrap();
    let before = hub.now + 1;
    hub.now += 10;
    hub.ok(op, Command::EndDisaster { disaster: d });
    let after = hub.now + 500;
    let records = vec![
        check(1, d, patient, Safety::Safe, before, people[0]),
        check(2, d, patient, Safety::Safe, after, people[0]),
    ];
    let recorded = ship(&mut hub, records);
    assert_eq!((recorded.applied, recorded.refused), (1, 1));
}

#[test]
fn disaster_commands_wait_for_the_version_that_brought_them() {
    let declare =
        Command::DeclareDisaster { name: "x".into(), municipalities: vec!["宇都宮市".into()], started_at_ms: None };
    assert_eq!(declare.since_apply_version(), crate::disaster::SINCE_APPLY_VERSION);
    let shipped = LogCommand::Observations { observations: vec![], origin_node: 1 };
    assert_eq!(shipped.since_apply_version(), crate::disaster::SINCE_APPLY_VERSION);
    let envelope = Envelope { idempotency_key: "k".into(), proposed_at_ms: 1, command: shipped };
    assert!(envelope.validate().is_err(), "an empty batch never reaches the log");
}

#[test]
fn a_declaration_notifies_the_area_at_once_even_in_quiet_hours_and_ending_it_drops_the_notice() {
    use crate::notify::{self, DISASTER_ROOM, NotificationPrefs, QuietHours, Timing};
    let (mut hub, op, _clinic, people) = Hub::setup(2);
    let (nurse, far) = (people[0], people[1]);
    let quiet_all_day = Some(QuietHours { start_hour: 0, end_hour: 23 });
    let prefs =
        |email: &str| NotificationPrefs { email: email.into(), email_on: true, quiet: quiet_all_day, digest: true };
    hub.ok(nurse, Command::SetNotificationSettings { prefs: prefs("nurse@example.jp") });
    hub.ok(far, Command::SetNotificationSettings { prefs: prefs("far@example.jp") });
    // The clinic is in 宇都宮市: its staff are concerned by a disaster there, not by one elsewhere.
    declare(&mut hub, op, &["日光市"]).unwrap();
    assert!(hub.state.notices().unwrap().is_empty(), "nobody of the hub lives or works in 日光市");
    let d = declare(&mut hub, op, &["宇都宮市"]).unwrap();
    let notices = hub.state.notices().unwrap();
    assert_eq!(
        notices.iter().map(|n| (n.account, n.room, n.seq)).collect::<Vec<_>>(),
        vec![(nurse, DISASTER_ROOM, d.0), (far, DISASTER_ROOM, d.0)]
    );

    let timing = Timing { delay_ms: 600_000, digest_ms: 3_600_000, retry_first_ms: notify::RETRY_FIRST_MS };
    let url =
        |room: RoomId| if room == DISASTER_ROOM { "https://k.example.jp/#/disaster".to_owned() } else { String::new() };
    let plan = notify::plan(&hub.state, hub.now, timing, &url).unwrap();
    assert_eq!(plan.mails.len(), 2, "due at once, in quiet hours, for digest readers too");
    let mail = &plan.mails[0];
    assert!(mail.subject.contains("令和8年台風第19号") && mail.body.contains("宇都宮市"), "{mail:?}");
    assert!(mail.body.contains("https://k.example.jp/#/disaster"), "{}", mail.body);

    hub.ok(op, Command::EndDisaster { disaster: d });
    let plan = notify::plan(&hub.state, hub.now, timing, &url).unwrap();
    assert!(plan.mails.is_empty() && plan.drop.len() == 2, "an ended disaster's notices are dropped: {plan:?}");
}

#[test]
fn a_check_made_before_its_node_heard_of_the_declaration_is_filed_under_the_disaster_covering_the_patient() {
    let (mut hub, op, _clinic, people) = Hub::setup(1);
    let nurse = people[0];
    let kanuma = patient_in(&mut hub, nurse, "鹿沼 さん", "鹿沼市", vec![]);
    let elsewhere = patient_in(&mut hub, nurse, "日光 さん", "日光市", vec![]);
    let made_at = hub.now;
    // Recorded on a cut-off node that knew of no disaster; the office declares meanwhile.
    let before = check(1, observe::UNDECLARED, kanuma, needs(&[Need::Medicine]), made_at, nurse);
    assert!(observe::check(&hub.state, &before).is_ok(), "accepted where it is made");
    let unrelated = check(2, observe::UNDECLARED, elsewhere, Safety::Safe, made_at, nurse);
    let d = declare(&mut hub, op, &["鹿沼市"]).unwrap();
    let recorded = ship(&mut hub, vec![before, unrelated]);
    assert_eq!((recorded.applied, recorded.refused), (1, 1), "日光市 has no disaster: {:?}", recorded.fates);
    let current =
        hub.state.current_observation(d, Subject::Patient(kanuma)).unwrap().expect("filed under the disaster");
    assert_eq!((current.disaster, current.id), (d, ObservationId([1; 16])));
}
