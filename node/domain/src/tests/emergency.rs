//! Emergency access: only designated accounts, only with a reason, only to a patient's
//! timeline, read-only and for four hours; the operators see every access.

use super::*;
use crate::emergency::{ACCESS_MS, accesses};

fn open(hub: &mut Hub, who: AccountId, room: RoomId, reason: &str) -> DomainResult<Outcome> {
    hub.run(Some(who), Command::OpenEmergencyAccess { room, reason: reason.into() })
}

#[test]
fn a_designated_account_reads_a_patients_timeline_for_four_hours_with_a_reason() {
    let (mut hub, op, _clinic, people) = Hub::setup(3);
    let (owner, outsider, other) = (people[0], people[1], people[2]);
    let room = patient(&mut hub, owner, "患者E");
    post(&mut hub, owner, room, "在宅酸素 2L/分");
    let reason = "災害時の搬送先での診療のため、在宅酸素の設定を確認する";

    // Not designated: refused; only an operator designates.
    assert!(matches!(open(&mut hub, outsider, room, reason), Err(DomainError::PermissionDenied(_))));
    let by_member = hub.run(Some(owner), Command::SetBreakGlass { account: outsider, allowed: true });
    assert!(matches!(by_member, Err(DomainError::PermissionDenied(_))));
    hub.ok(op, Command::SetBreakGlass { account: outsider, allowed: true });

    // A reason is required; a patient's timeline only; not for the team's own members.
    assert!(matches!(open(&mut hub, outsider, room, "急ぎ"), Err(DomainError::InvalidArgument(_))));
    assert!(matches!(open(&mut hub, outsider, RoomId(999), reason), Err(DomainError::NotFound(_))));
    hub.ok(op, Command::SetBreakGlass { account: owner, allowed: true });
    assert!(matches!(open(&mut hub, owner, room, reason), Err(DomainError::FailedPrecondition(_))));

    let q = oldest_first(0, 50);
    assert!(matches!(
        queries::emergency_timeline(&hub.state, outsider, room, q, hub.now),
        Err(DomainError::NotFound(_))
    ));
    open(&mut hub, outsider, room, reason).unwrap();
    let page = queries::emergency_timeline(&hub.state, outsider, room, q, hub.now).unwrap();
    assert_eq!(page.posts.len(), 1);
    // Read-only: the timeline as a member stays closed, and so does posting.
    assert!(matches!(queries::timeline(&hub.state, outsider, room, q), Err(DomainError::NotFound(_))));
    let write = hub.run(Some(outsider), Command::Post { room, text: "x".into(), reply_to: None, mentions: vec![] });
    assert!(matches!(write, Err(DomainError::NotFound(_))), "{write:?}");

    // Four hours, and only while still designated.
    let opened = hub.state.emergency_access(room, outsider).unwrap().expect("opened").opened_at_ms;
    assert!(queries::emergency_timeline(&hub.state, outsider, room, q, opened + ACCESS_MS - 1).is_ok());
    assert!(queries::emergency_timeline(&hub.state, outsider, room, q, opened + ACCESS_MS).is_err());
    hub.ok(op, Command::SetBreakGlass { account: outsider, allowed: false });
    assert!(queries::emergency_timeline(&hub.state, outsider, room, q, opened + 1).is_err());

    // The operators see every access with its reason; anyone else only their own.
    let seen = accesses(&hub.state, op).unwrap();
    assert_eq!(seen.iter().map(|a| (a.account, a.reason.as_str())).collect::<Vec<_>>(), vec![(outsider, reason)]);
    assert!(accesses(&hub.state, other).unwrap().is_empty());
    assert_eq!(accesses(&hub.state, outsider).unwrap().len(), 1);
}
