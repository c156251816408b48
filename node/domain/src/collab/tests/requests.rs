//! Requests to facilities: sending to several, answering per facility, cancelling, who sees
//! them, and accepting a request about a patient opening the patient's team.

use super::*;
use crate::collab::requests::{self as req, Answer, RequestKind};

fn request_of(o: Outcome) -> RequestId {
    match o {
        Outcome::Request(r) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn send(patient: Option<PatientId>, facilities: Vec<FacilityId>) -> Command {
    Command::SendRequest {
        kind: RequestKind::Admission,
        patient,
        title: "入院のご相談".into(),
        details: "誤嚥性肺炎の疑い。本日中の入院を希望します。".into(),
        facilities,
    }
}

fn patient_id(hub: &Hub, room: RoomId) -> PatientId {
    match hub.state.room(room).unwrap().map(|r| r.kind) {
        Some(RoomKind::PatientTimeline { patient }) => patient,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_request_goes_to_several_facilities_and_each_answers_for_itself() {
    let (mut hub, op, _clinic, people) = Hub::setup(2);
    let (sender, colleague) = (people[0], people[1]);
    let (hospital, hs) = facility(&mut hub, op, "県立病院", FacilityKind::Hospital, 2);
    let (ward, ws) = facility(&mut hub, op, "済生会病院", FacilityKind::Hospital, 1);
    let (_, outsiders) = facility(&mut hub, op, "みどり薬局", FacilityKind::Pharmacy, 1);
    let room = patient(&mut hub, sender, "山田 太郎");
    let p = patient_id(&hub, room);

    let id = request_of(hub.ok(sender, send(Some(p), vec![hospital, ward])));
    // Both recipient facilities see it in their inbox; the sender in the sent list.
    assert_eq!(req::received(&hub.state, hs[1]).unwrap().len(), 1);
    assert_eq!(req::received(&hub.state, ws[0]).unwrap().len(), 1);
    assert_eq!(req::sent(&hub.state, sender).unwrap()[0].id, id);
    // Nobody else does: not the sender's colleague, not another facility.
    for stranger in [colleague, outsiders[0]] {
        assert_eq!(req::visible(&hub.state, stranger, id).unwrap_err(), not_found("request"));
        assert!(req::received(&hub.state, stranger).unwrap().is_empty());
        let answer = Command::AnswerRequest { request: id, accept: true, note: String::new() };
        assert_eq!(hub.run(Some(stranger), answer).unwrap_err(), not_found("request"));
    }

    // One hospital accepts (any of its professionals answers for it), the other declines.
    hub.ok(hs[1], Command::AnswerRequest { request: id, accept: true, note: "本日14時に受け入れます".into() });
    hub.ok(ws[0], Command::AnswerRequest { request: id, accept: false, note: "満床です".into() });
    let seen = req::visible(&hub.state, sender, id).unwrap().1;
    assert!(
        matches!(&seen.recipients[0].answer, Answer::Accepted { by, note, .. } if *by == hs[1] && note.contains("14時"))
    );
    assert!(matches!(&seen.recipients[1].answer, Answer::Declined { by, .. } if *by == ws[0]));
    // A facility answers once.
    let again = hub.run(Some(hs[0]), Command::AnswerRequest { request: id, accept: false, note: String::new() });
    assert!(matches!(again, Err(DomainError::FailedPrecondition(_))), "{again:?}");
    // The sender cannot answer for a recipient.
    let own = hub.run(Some(sender), Command::AnswerRequest { request: id, accept: true, note: String::new() });
    assert!(matches!(own, Err(DomainError::PermissionDenied(_))), "{own:?}");

    // Accepting opened the patient's team to the hospital doctor (the sender owns it).
    assert!(hub.state.member(room, hs[1]).unwrap().is_some_and(|m| m.is_active()));
    assert!(hub.state.member(room, ws[0]).unwrap().is_none());
}

#[test]
fn a_member_who_is_not_an_owner_opens_the_team_only_by_invitation() {
    let (mut hub, op, _clinic, people) = Hub::setup(2);
    let (owner, nurse) = (people[0], people[1]);
    let (hospital, hs) = facility(&mut hub, op, "県立病院", FacilityKind::Hospital, 1);
    let room = patient(&mut hub, owner, "佐藤 花子");
    hub.ok(owner, Command::Invite { room, invitee: nurse, role: Role::Member });
    let p = patient_id(&hub, room);
    let id = request_of(hub.ok(nurse, send(Some(p), vec![hospital])));
    hub.ok(hs[0], Command::AnswerRequest { request: id, accept: true, note: String::new() });
    assert_eq!(hub.state.member(room, hs[0]).unwrap().map(|m| m.state), Some(MemberState::Invited { by: nurse }));
}

#[test]
fn the_sender_cancels_what_is_unanswered() {
    let (mut hub, op, _clinic, people) = Hub::setup(1);
    let (a, a_staff) = facility(&mut hub, op, "県立病院", FacilityKind::Hospital, 1);
    let (b, b_staff) = facility(&mut hub, op, "済生会病院", FacilityKind::Hospital, 1);
    let id = request_of(hub.ok(people[0], send(None, vec![a, b])));
    hub.ok(a_staff[0], Command::AnswerRequest { request: id, accept: true, note: String::new() });
    let not_sender = hub.run(Some(a_staff[0]), Command::CancelRequest { request: id });
    assert!(matches!(not_sender, Err(DomainError::PermissionDenied(_))), "{not_sender:?}");
    hub.ok(people[0], Command::CancelRequest { request: id });
    let r = req::visible(&hub.state, people[0], id).unwrap().1;
    assert!(matches!(r.recipients[0].answer, Answer::Accepted { .. }));
    assert_eq!(r.recipients[1].answer, Answer::Cancelled);
    let late = hub.run(Some(b_staff[0]), Command::AnswerRequest { request: id, accept: true, note: String::new() });
    assert!(matches!(late, Err(DomainError::FailedPrecondition(_))), "{late:?}");
    let twice = hub.run(Some(people[0]), Command::CancelRequest { request: id });
    assert!(matches!(twice, Err(DomainError::FailedPrecondition(_))), "{twice:?}");
}

#[test]
fn bad_requests_change_nothing() {
    let (mut hub, op, clinic, people) = Hub::setup(2);
    let (hospital, _) = facility(&mut hub, op, "県立病院", FacilityKind::Hospital, 1);
    let pending = match hub.ok(
        op,
        Command::RegisterFacility {
            name: "未承認".into(),
            kind: FacilityKind::Clinic,
            municipality: "宇都宮市".into(),
        },
    ) {
        Outcome::Facility(f) => f,
        o => panic!("{o:?}"),
    };
    let room = patient(&mut hub, people[0], "鈴木 一郎");
    let other_patient = patient_id(&hub, room);
    let too_many: Vec<FacilityId> = (0..=req::MAX_RECIPIENTS as u64).map(|i| FacilityId(10_000 + i)).collect();
    for (cmd, expected) in [
        (send(None, vec![]), "InvalidArgument"),
        (send(None, too_many), "InvalidArgument"),
        (send(None, vec![hospital, hospital]), "InvalidArgument"),
        (send(None, vec![clinic]), "InvalidArgument"),
        (send(None, vec![pending]), "NotFound"),
        (send(None, vec![FacilityId(999_999)]), "NotFound"),
        // A patient the sender is not in the team of.
        (send(Some(other_patient), vec![hospital]), "NotFound"),
        (
            Command::SendRequest {
                kind: RequestKind::HomeVisit,
                patient: None,
                title: " ".into(),
                details: "x".into(),
                facilities: vec![hospital],
            },
            "InvalidArgument",
        ),
    ] {
        let e = hub.run(Some(people[1]), cmd).unwrap_err();
        assert!(format!("{e:?}").starts_with(expected), "{e:?}, expected {expected}");
    }
    // The operator is not a professional.
    assert!(matches!(hub.run(Some(op), send(None, vec![hospital])), Err(DomainError::InvalidArgument(_))));
    assert!(hub.state.requests.is_empty());
}

#[test]
fn a_command_decides_its_events_and_its_audit_entry_with_its_changes() {
    use crate::collab::events::{self, EventKind};
    use crate::collab::{Raised, Trail};
    let (mut hub, op, _clinic, people) = Hub::setup(1);
    let sender = people[0];
    let (hospital, hs) = facility(&mut hub, op, "県立病院", FacilityKind::Hospital, 1);
    let room = patient(&mut hub, sender, "山田 太郎");
    let p = patient_id(&hub, room);
    let id = request_of(hub.ok(sender, send(Some(p), vec![hospital])));
    let ctx = Ctx { log_index: hub.index + 1, now_ms: hub.now + 1000 };

    // Accepting a request about a patient: the request's event, then the team's.
    let accept = Command::AnswerRequest { request: id, accept: true, note: String::new() };
    let effects = execute(&hub.state, ctx, Some(hs[0]), accept).unwrap();
    let request_event = Raised { room: RoomId(0), kind: EventKind::Request { id } };
    assert_eq!(effects.events, vec![request_event, Raised { room, kind: EventKind::Membership }]);
    assert_eq!(effects.audit, Some(Trail { patient: Some(p), room: None, what: "answer request" }));
    assert!(effects.outbound.is_empty());
    // The store stamps them: log index × 16 + position.
    let cursors: Vec<u64> = events::stamp(effects.events, 9, ctx.now_ms).iter().map(|e| e.cursor).collect();
    assert_eq!(cursors, vec![9 * events::EVENTS_PER_ENTRY, 9 * events::EVENTS_PER_ENTRY + 1]);

    // A post in the patient's timeline is patient data; one in a group is not.
    let post = |room| Command::Post { room, text: "訪問しました".into(), reply_to: None, mentions: vec![] };
    let effects = execute(&hub.state, ctx, Some(sender), post(room)).unwrap();
    assert_eq!(effects.events, vec![Raised { room, kind: EventKind::Posted { seq: 1 } }]);
    assert_eq!(effects.audit, Some(Trail { patient: Some(p), room: Some(room), what: "post" }));
    let group = match hub.ok(sender, Command::CreateGroup { name: "勉強会".into() }) {
        Outcome::Room(r) => r,
        o => panic!("{o:?}"),
    };
    let effects = execute(&hub.state, ctx, Some(sender), post(group)).unwrap();
    assert_eq!(effects.events, vec![Raised { room: group, kind: EventKind::Posted { seq: 1 } }]);
    assert_eq!(effects.audit, None);
}
