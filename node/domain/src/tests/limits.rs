//! Limits this build added to commands that existed before: from apply version 5 on
//! (`TIGHTER_LIMITS_SINCE_APPLY_VERSION`), every replica refuses alike; below it, what the
//! older builds accepted is still accepted, so a hub rolling to this build never diverges.

use super::*;
use crate::kernel::{MAX_EDITS_PER_POST, TIGHTER_LIMITS_SINCE_APPLY_VERSION};

const BEFORE: u32 = TIGHTER_LIMITS_SINCE_APPLY_VERSION - 1;

fn create_patient(notes: String, address: String) -> Command {
    Command::CreatePatient {
        name: "佐藤 ハル".into(),
        kana: "さとう はる".into(),
        birth_date: "昭和15年3月2日".into(),
        address,
        notes,
    }
}

#[test]
fn a_patients_details_are_bounded_from_the_version_on() {
    for (version, refused) in [(BEFORE, false), (TIGHTER_LIMITS_SINCE_APPLY_VERSION, true)] {
        let (mut hub, _, _, people) = Hub::setup(1);
        hub.state.apply_version = version;
        let long_notes = hub.run(Some(people[0]), create_patient("経過".repeat(MAX_POST_CHARS), String::new()));
        let long_address = hub.run(Some(people[0]), create_patient(String::new(), "宇".repeat(201)));
        for answer in [long_notes, long_address] {
            assert_eq!(matches!(answer, Err(DomainError::InvalidArgument(_))), refused, "v{version}: {answer:?}");
        }
        hub.ok(people[0], create_patient("在宅酸素療法中".into(), "宇都宮市本町1-1".into()));
    }
}

#[test]
fn a_sessions_device_name_is_bounded_from_the_version_on() {
    for (version, refused) in [(BEFORE, false), (TIGHTER_LIMITS_SINCE_APPLY_VERSION, true)] {
        let (mut hub, ..) = Hub::setup(1);
        hub.state.apply_version = version;
        let device = "端末".repeat(51);
        let cmd = Command::CreateSession { login: "user0".into(), token_hash: "t".into(), device, totp_step: None };
        let answer = hub.run(None, cmd);
        assert_eq!(matches!(answer, Err(DomainError::InvalidArgument(_))), refused, "v{version}: {answer:?}");
    }
}

#[test]
fn a_post_is_edited_at_most_so_often_from_the_version_on() {
    for (version, limited) in [(BEFORE, false), (TIGHTER_LIMITS_SINCE_APPLY_VERSION, true)] {
        let (mut hub, _, _, people) = Hub::setup(1);
        hub.state.apply_version = version;
        let room = patient(&mut hub, people[0], "高橋 トメ");
        let seq = post(&mut hub, people[0], room, "版 0");
        for n in 1..=MAX_EDITS_PER_POST {
            hub.ok(people[0], Command::EditPost { room, seq, text: format!("版 {n}") });
        }
        let one_more = hub.run(Some(people[0]), Command::EditPost { room, seq, text: "もう一度".into() });
        assert_eq!(matches!(one_more, Err(DomainError::FailedPrecondition(_))), limited, "v{version}: {one_more:?}");
    }
}

#[test]
fn a_facility_search_is_as_short_as_people_type() {
    let (hub, _, _, people) = Hub::setup(1);
    let search = |words: String, kinds: usize| crate::directory::Search {
        kinds: vec![FacilityKind::Clinic; kinds],
        municipality: String::new(),
        service: String::new(),
        words,
        accepting_only: false,
        near: None,
    };
    let find = |s| crate::directory::search(&hub.state, people[0], &s, 50);
    assert!(find(search("在宅".into(), 1)).is_ok());
    assert!(matches!(find(search("在".repeat(101), 1)), Err(DomainError::InvalidArgument(_))));
    assert!(matches!(find(search("在宅".into(), 17)), Err(DomainError::InvalidArgument(_))));
}
