//! A record write is an operator's signed command from apply version 7 on: the operator is
//! checked when it applies, versions count writes, and bad input or anyone else changes nothing.

use super::*;

fn put(key: &str, value: &str) -> Command {
    Command::PutRecord { key: key.into(), value: value.into() }
}

#[test]
fn an_operators_writes_count_versions() {
    let (mut hub, op, _, _) = Hub::setup(1);
    assert_eq!(hub.ok(op, put("患者/1", "a")), Outcome::RecordPut { version: 1 });
    assert_eq!(hub.ok(op, put("患者/1", "b")), Outcome::RecordPut { version: 2 });
    let record = hub.state.record("患者/1").unwrap().expect("written");
    assert_eq!((record.value.as_str(), record.version, record.updated_at_ms), ("b", 2, hub.now));
}

#[test]
fn anyone_else_or_bad_input_is_refused_and_changes_nothing() {
    let (mut hub, op, _, people) = Hub::setup(1);
    hub.ok(op, put("k", "first"));
    let before = hub.state.records.clone();
    let refusals = [
        (None, put("k", "anonymous")),
        (Some(people[0]), put("k", "a professional")),
        (Some(op), put("", "empty key")),
        (Some(op), put("k", &"v".repeat(crate::records::MAX_VALUE_BYTES + 1))),
    ];
    for (actor, command) in refusals {
        let refused = hub.run(actor, command).expect_err("accepted");
        assert!(
            matches!(
                refused,
                DomainError::Unauthenticated | DomainError::PermissionDenied(_) | DomainError::InvalidArgument(_)
            ),
            "{refused:?}"
        );
    }
    assert_eq!(hub.state.records, before);
}

#[test]
fn it_came_with_apply_version_7() {
    // The store refuses a command newer than the hub's version at apply, by this.
    assert_eq!(put("k", "v").since_apply_version(), 7);
}
