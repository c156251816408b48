//! The resource map and requests across hubs, told with two hubs in memory exchanging their
//! streams: Gunma shares its map with Tochigi, a Tochigi doctor finds a Gunma visiting-nursing
//! station on it and sends it a request, which the station answers on its own hub.

use super::federation::{deliver, exchange, name, only_patient};
use super::*;
use crate::commands::Outgoing;
use crate::directory::{self as map, Search};
use crate::error::{DomainError, precondition};
use crate::events::EventKind;
use crate::federation::map::FacilityCopy;
use crate::federation::requests::{Reply, RequestCopy};
use crate::federation::wire::{Party, Profile};
use crate::federation::{Message, outbox};
use crate::requests::{self as req, Answer, RequestKind};

struct Two {
    tochigi: Hub,
    gunma: Hub,
    /// Tochigi's operator and a doctor of its clinic (the owner of the patients below).
    tochigi_op: AccountId,
    doctor: AccountId,
    gunma_op: AccountId,
    /// Gunma's visiting-nursing station (its id on Gunma) and its two nurses.
    station: FacilityId,
    nurses: Vec<AccountId>,
    /// A professional of Gunma's clinic, not of the station.
    gunma_clinician: AccountId,
}

fn two_hubs() -> Two {
    let (tochigi, tochigi_op, _, doctors) = Hub::setup(1);
    let (mut gunma, gunma_op, _, clinicians) = Hub::setup(1);
    let (station, nurses) = facility(&mut gunma, gunma_op, "前橋訪問看護", FacilityKind::VisitingNursingStation, 2);
    Two { tochigi, gunma, tochigi_op, doctor: doctors[0], gunma_op, station, nurses, gunma_clinician: clinicians[0] }
}

fn share(peer: &str, share: bool) -> Command {
    Command::ShareDirectory { peer: name(peer), share }
}

/// Gunma shares its map with Tochigi, and Tochigi has it.
fn shared() -> Two {
    let mut t = two_hubs();
    t.gunma.ok(t.gunma_op, share("tochigi", true));
    exchange(&mut t.tochigi, &mut t.gunma);
    t
}

/// The map as `who` sees it: (name, hub) of each facility, sorted.
fn map_of(hub: &Hub, who: AccountId) -> Vec<(String, Option<String>)> {
    let found = map::search(&hub.state, who, &Search::default(), 100).unwrap();
    let mut entries: Vec<_> =
        found.into_iter().map(|f| (f.facility.name, f.hub.map(|h| h.as_str().to_owned()))).collect();
    entries.sort();
    entries
}

fn entry(name: &str, hub: Option<&str>) -> (String, Option<String>) {
    (name.to_owned(), hub.map(str::to_owned))
}

/// The id on `hub`'s map of the facility `name` of hub `of`.
fn on_map(hub: &Hub, who: AccountId, name: &str, of: &str) -> FacilityId {
    let found = map::search(&hub.state, who, &Search::default(), 100).unwrap();
    found
        .into_iter()
        .find(|f| f.facility.name == name && f.hub.as_ref().is_some_and(|h| h.as_str() == of))
        .map(|f| f.facility.id)
        .unwrap_or_else(|| panic!("{name} of {of} is not on the map"))
}

fn send(patient: Option<PatientId>, facilities: Vec<FacilityId>) -> Command {
    Command::SendRequest {
        kind: RequestKind::HomeVisit,
        patient,
        title: "訪問看護のご依頼".into(),
        details: "退院後の訪問看護をお願いします。週2回を希望します。".into(),
        facilities,
    }
}

fn request_of(o: Outcome) -> RequestId {
    match o {
        Outcome::Request(r) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn patient_of(hub: &Hub, room: RoomId) -> PatientId {
    match hub.state.room(room).unwrap().map(|r| r.kind) {
        Some(RoomKind::PatientTimeline { patient }) => patient,
        other => panic!("{other:?}"),
    }
}

fn login(hub: &Hub, id: AccountId) -> String {
    hub.state.account(id).unwrap().unwrap().login
}

fn answers(hub: &Hub, id: RequestId) -> Vec<Answer> {
    hub.state.care_request(id).unwrap().unwrap().recipients.into_iter().map(|r| r.answer).collect()
}

/// Queues `message` from `from` to hub `to` as if `from` had decided it: what a faulty or
/// hostile peer could send.
fn forge(from: &mut Hub, to: &str, message: Message) {
    let queued = outbox::enqueue(&from.state, from.now, vec![Outgoing { to: name(to), message }]).unwrap();
    from.state.apply(queued);
}

#[test]
fn a_shared_map_shows_the_other_hubs_facilities_marked_with_their_hub() {
    let mut t = two_hubs();
    let ours = vec![entry("宇都宮在宅クリニック", None)];
    assert_eq!(map_of(&t.tochigi, t.doctor), ours, "nothing crosses before sharing");
    assert!(t.gunma.state.outbox.is_empty());

    t.gunma.ok(t.gunma_op, share("tochigi", true));
    exchange(&mut t.tochigi, &mut t.gunma);
    let mut both = vec![
        entry("宇都宮在宅クリニック", None),
        entry("宇都宮在宅クリニック", Some("gunma")),
        entry("前橋訪問看護", Some("gunma")),
    ];
    both.sort();
    assert_eq!(map_of(&t.tochigi, t.doctor), both);
    // Gunma's facilities get ids of their own on Tochigi (the clinics have the same id on
    // their hubs), and their page shows no staff: staff never cross.
    let station = on_map(&t.tochigi, t.doctor, "前橋訪問看護", "gunma");
    assert!(t.tochigi.state.facility(station).unwrap().is_none(), "not one of Tochigi's facilities");
    let (page, staff) = map::page(&t.tochigi.state, t.doctor, station).unwrap();
    assert_eq!((page.hub.map(|h| h.to_string()), staff.len()), (Some("gunma".to_owned()), 0));
    assert!(t.tochigi.state.accounts.values().all(|a| a.remote_hub().is_none()), "no account crossed");

    // A profile updated (or a facility approved) while shared follows.
    let profile =
        FacilityProfile {
            services: vec!["看取り".into()], accepting_new_patients: true, ..FacilityProfile::default()
        };
    t.gunma.ok(t.nurses[0], Command::UpdateFacilityProfile { facility: t.station, profile });
    facility(&mut t.gunma, t.gunma_op, "高崎薬局", FacilityKind::Pharmacy, 0);
    exchange(&mut t.tochigi, &mut t.gunma);
    let accepting = Search { accepting_only: true, service: "看取り".into(), ..Search::default() };
    let found = map::search(&t.tochigi.state, t.doctor, &accepting, 10).unwrap();
    assert_eq!(found.iter().map(|f| f.facility.id).collect::<Vec<_>>(), vec![station]);
    assert!(map_of(&t.tochigi, t.doctor).contains(&entry("高崎薬局", Some("gunma"))));

    // Stopping withdraws them.
    t.gunma.ok(t.gunma_op, share("tochigi", false));
    exchange(&mut t.tochigi, &mut t.gunma);
    assert_eq!(map_of(&t.tochigi, t.doctor), ours);
    assert_eq!(map::page(&t.tochigi.state, t.doctor, station).unwrap_err(), not_found("facility"));
}

#[test]
fn a_hub_shares_only_its_own_facilities_never_those_it_received() {
    let mut t = shared();
    t.tochigi.ok(t.tochigi_op, share("ibaraki", true));
    let sent: Vec<Message> = t
        .tochigi
        .state
        .outbox
        .iter()
        .filter(|((hub, _), _)| hub.as_str() == "ibaraki")
        .map(|(_, m)| Message::decode(&m.body).unwrap())
        .collect();
    let names: Vec<&str> = sent
        .iter()
        .map(|m| match m {
            Message::Facility(f) => f.name.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["宇都宮在宅クリニック"]);
}

#[test]
fn sharing_is_for_operators_and_refused_twice_changing_nothing() {
    let mut t = two_hubs();
    let by_staff = t.gunma.run(Some(t.nurses[0]), share("tochigi", true));
    assert!(matches!(by_staff, Err(DomainError::PermissionDenied(_))), "{by_staff:?}");
    let not_shared = t.gunma.run(Some(t.gunma_op), share("tochigi", false));
    assert_eq!(not_shared.unwrap_err(), precondition("the resource map is not shared with tochigi"));
    t.gunma.ok(t.gunma_op, share("tochigi", true));
    let twice = t.gunma.run(Some(t.gunma_op), share("tochigi", true));
    assert_eq!(twice.unwrap_err(), precondition("the resource map is already shared with tochigi"));
}

#[test]
fn a_request_to_another_hubs_facility_is_answered_there_and_the_answer_shows_on_the_sender_hub() {
    let mut t = shared();
    let room = patient(&mut t.tochigi, t.doctor, "渡良瀬 花子");
    let station = on_map(&t.tochigi, t.doctor, "前橋訪問看護", "gunma");
    let request = send(Some(patient_of(&t.tochigi, room)), vec![station]);
    let ctx = Ctx { log_index: t.tochigi.index + 1, now_ms: t.tochigi.now };
    let trail = execute(&t.tochigi.state, ctx, Some(t.doctor), request.clone()).unwrap().audit.unwrap();
    assert_eq!(trail.what, "send request, also to facilities of another hub", "the sender's hub audits it");
    let sent = request_of(t.tochigi.ok(t.doctor, request));

    let applied = deliver(&mut t.tochigi, "tochigi", &mut t.gunma, "gunma").unwrap();
    // On Gunma: addressed to the station, from the doctor's shadow with her facility, and
    // nothing of the patient.
    let inbox = req::received(&t.gunma.state, t.nurses[0]).unwrap();
    assert_eq!(inbox.len(), 1);
    let there = inbox[0].clone();
    assert!(applied.events.iter().any(|e| e.kind == EventKind::Request { id: there.id }), "live event on Gunma");
    assert_eq!((there.title.as_str(), there.patient), ("訪問看護のご依頼", None));
    assert_eq!(there.recipients.iter().map(|r| r.facility).collect::<Vec<_>>(), vec![t.station]);
    let from = t.gunma.state.account(there.from).unwrap().unwrap();
    assert_eq!(from.login, "user0@tochigi");
    assert!(matches!(&from.kind, AccountKind::Remote { facility_name, .. } if facility_name == "宇都宮在宅クリニック"));
    assert!(!format!("{:?}", t.gunma.state).contains("渡良瀬"), "the patient's name did not cross");
    assert!(t.gunma.state.request_link(there.id).unwrap().is_some_and(|l| l.about_patient), "only that there is one");
    // Gunma's other facility does not see it.
    assert_eq!(req::visible(&t.gunma.state, t.gunma_clinician, there.id).unwrap_err(), not_found("request"));

    let accept = Command::AnswerRequest { request: there.id, accept: true, note: "水曜から伺えます".into() };
    t.gunma.ok(t.nurses[1], accept);
    let applied = deliver(&mut t.gunma, "gunma", &mut t.tochigi, "tochigi").unwrap();
    assert!(applied.events.iter().any(|e| e.kind == EventKind::Request { id: sent }), "live event on Tochigi");
    let got = answers(&t.tochigi, sent);
    let [Answer::Accepted { by, note, .. }] = got.as_slice() else { panic!("{got:?}") };
    assert_eq!((login(&t.tochigi, *by).as_str(), note.as_str()), ("前橋訪問看護1@gunma", "水曜から伺えます"));
    // The doctor owns the team: accepting opened it to the nurse, who now has it on her hub.
    exchange(&mut t.tochigi, &mut t.gunma);
    let (_, title, _) = only_patient(&t.gunma, t.nurses[1]);
    assert_eq!(title, "渡良瀬 花子");
    assert!(matches!(answers(&t.gunma, there.id).as_slice(), [Answer::Accepted { by, .. }] if *by == t.nurses[1]));
}

#[test]
fn a_cancellation_crosses_and_an_answer_given_before_it_arrived_stands_on_both_hubs() {
    let mut t = shared();
    let station = on_map(&t.tochigi, t.doctor, "前橋訪問看護", "gunma");
    let clinic = on_map(&t.tochigi, t.doctor, "宇都宮在宅クリニック", "gunma");
    let sent = request_of(t.tochigi.ok(t.doctor, send(None, vec![station, clinic])));
    exchange(&mut t.tochigi, &mut t.gunma);
    let there = req::received(&t.gunma.state, t.nurses[0]).unwrap()[0].id;
    // The station declines on Gunma while the doctor cancels on Tochigi, before either hears.
    t.gunma.ok(t.nurses[0], Command::AnswerRequest { request: there, accept: false, note: "満床です".into() });
    t.tochigi.ok(t.doctor, Command::CancelRequest { request: sent });
    exchange(&mut t.tochigi, &mut t.gunma);
    for (hub, id) in [(&t.tochigi, sent), (&t.gunma, there)] {
        let got = answers(hub, id);
        assert!(matches!(&got[0], Answer::Declined { note, .. } if note == "満床です"), "{got:?}");
        assert_eq!(got[1], Answer::Cancelled);
    }
    let late = t
        .gunma
        .run(Some(t.gunma_clinician), Command::AnswerRequest { request: there, accept: true, note: String::new() });
    assert!(matches!(late, Err(DomainError::FailedPrecondition(_))), "{late:?}");
}

#[test]
fn without_sharing_nothing_is_sent_and_a_request_racing_the_withdrawal_is_refused_there() {
    let mut t = two_hubs();
    // Gunma's station id means nothing on Tochigi.
    let unknown = t.tochigi.run(Some(t.doctor), send(None, vec![t.station]));
    assert_eq!(unknown.unwrap_err(), not_found("facility"));

    let mut t = shared();
    let station = on_map(&t.tochigi, t.doctor, "前橋訪問看護", "gunma");
    t.gunma.ok(t.gunma_op, share("tochigi", false));
    // Sent before the withdrawal arrives: Gunma refuses it, and Tochigi shows why.
    let sent = request_of(t.tochigi.ok(t.doctor, send(None, vec![station])));
    exchange(&mut t.tochigi, &mut t.gunma);
    assert!(t.gunma.state.requests.is_empty(), "not created on Gunma");
    let got = answers(&t.tochigi, sent);
    assert!(
        matches!(&got[0], Answer::Declined { by: AccountId(0), note, .. } if note.starts_with("gunma: ")),
        "{got:?}"
    );
    // Withdrawn now: a request to it is refused here, changing nothing.
    let withdrawn = t.tochigi.run(Some(t.doctor), send(None, vec![station]));
    assert_eq!(withdrawn.unwrap_err(), not_found("facility"));
}

#[test]
fn a_peers_bad_messages_are_refused_and_change_nothing() {
    let mut t = shared();
    let station = on_map(&t.tochigi, t.doctor, "前橋訪問看護", "gunma");
    let sent = request_of(t.tochigi.ok(t.doctor, send(None, vec![station])));
    exchange(&mut t.tochigi, &mut t.gunma);
    let (facilities, requests) = (t.tochigi.state.remote_facilities.clone(), t.tochigi.state.requests.clone());
    let profile = |party: Party| Profile {
        party,
        display_name: "偽".into(),
        facility_name: String::new(),
        profession: Profession::Other,
    };
    let bad_phone = FacilityCopy {
        id: FacilityId(77),
        name: "偽施設".into(),
        kind: FacilityKind::Clinic,
        municipality: "前橋市".into(),
        profile: FacilityProfile { phone: "call me".into(), ..FacilityProfile::default() },
    };
    forge(&mut t.gunma, "tochigi", Message::Facility(bad_phone));
    // An answer for a facility Gunma never shared, one naming a Tochigi account as Gunma's,
    // and one for a request that does not exist.
    let accepted = |party| Reply::Accepted { by: profile(party), at_ms: 1, note: String::new() };
    let answered = |request, facility, reply| Message::RequestAnswered { request, facility, reply };
    forge(&mut t.gunma, "tochigi", answered(sent, FacilityId(999), accepted(Party::Sender("x".into()))));
    forge(&mut t.gunma, "tochigi", answered(sent, t.station, accepted(Party::Receiver("user0".into()))));
    forge(&mut t.gunma, "tochigi", answered(RequestId(999), t.station, accepted(Party::Sender("x".into()))));
    let applied = deliver(&mut t.gunma, "gunma", &mut t.tochigi, "tochigi").unwrap();
    assert_eq!(applied.audit.iter().filter(|a| a.what.contains("refused")).count(), 4, "{:?}", applied.audit);
    assert_eq!((&t.tochigi.state.remote_facilities, &t.tochigi.state.requests), (&facilities, &requests));

    // A request from Tochigi naming a Gunma account as its sender is refused on Gunma.
    let before = t.gunma.state.requests.clone();
    let forged = RequestCopy {
        id: RequestId(5),
        kind: RequestKind::Admission,
        from: profile(Party::Receiver("user0".into())),
        from_facility: FacilityId(1),
        about_patient: false,
        title: "偽".into(),
        details: "偽".into(),
        to: vec![t.station],
        sent_at_ms: 1,
    };
    forge(&mut t.tochigi, "gunma", Message::Request(forged));
    let applied = deliver(&mut t.tochigi, "tochigi", &mut t.gunma, "gunma").unwrap();
    assert_eq!(applied.audit.iter().filter(|a| a.what.contains("refused")).count(), 1);
    assert_eq!(t.gunma.state.requests, before);
}

#[test]
fn the_new_messages_round_trip() {
    let by = Profile {
        party: Party::Sender("sato".into()),
        display_name: "佐藤".into(),
        facility_name: "前橋訪問看護".into(),
        profession: Profession::VisitingNurse,
    };
    let messages = [
        Message::Facility(FacilityCopy {
            id: FacilityId(3),
            name: "前橋訪問看護".into(),
            kind: FacilityKind::VisitingNursingStation,
            municipality: "前橋市".into(),
            profile: FacilityProfile { services: vec!["看取り".into()], ..FacilityProfile::default() },
        }),
        Message::DirectoryWithdrawn,
        Message::Request(RequestCopy {
            id: RequestId(5),
            kind: RequestKind::HomeVisit,
            from: by.clone(),
            from_facility: FacilityId(1),
            about_patient: true,
            title: "訪問看護のご依頼".into(),
            details: "週2回".into(),
            to: vec![FacilityId(3)],
            sent_at_ms: 9,
        }),
        Message::RequestAnswered {
            request: RequestId(5),
            facility: FacilityId(3),
            reply: Reply::Accepted { by, at_ms: 10, note: "伺えます".into() },
        },
        Message::RequestCancelled { request: RequestId(5), from: "user0".into() },
    ];
    for message in messages {
        assert_eq!(Message::decode(&message.encode()), Ok(message.clone()));
    }
}
