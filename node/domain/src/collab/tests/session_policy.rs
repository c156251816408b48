//! The hub's session policy: only operators set it, within bounds; the API's authentication
//! follows it (idle and absolute), apply its absolute lifetime; a hub that never set one has the defaults.

use super::*;
use crate::collab::sessions::{ABSOLUTE_HOURS, IDLE_MINUTES};

fn policy(idle_minutes: u32, absolute_hours: u32) -> Command {
    Command::SetSessionPolicy { idle_minutes, absolute_hours }
}

fn sign_in(hub: &mut Hub, login: &str, token: &str) {
    let cmd =
        Command::CreateSession { login: login.into(), token_hash: token.into(), device: "pc".into(), totp_step: None };
    hub.run(None, cmd).unwrap();
}

#[test]
fn a_hub_that_never_set_a_policy_has_the_defaults() {
    let (hub, ..) = Hub::setup(1);
    let settings = hub.state.settings().unwrap();
    assert_eq!((settings.session_idle_minutes, settings.session_absolute_hours), (30, 12));
    let p = SessionPolicy::of(&hub.state).unwrap();
    assert_eq!((p.idle_timeout_ms, p.absolute_ms), (30 * 60_000, 12 * 3_600_000));
}

#[test]
fn only_operators_set_the_policy() {
    let (mut hub, op, _, people) = Hub::setup(2);
    for someone in people {
        assert!(matches!(hub.run(Some(someone), policy(10, 8)), Err(DomainError::PermissionDenied(_))));
    }
    assert_eq!(hub.run(None, policy(10, 8)), Err(DomainError::Unauthenticated));
    hub.ok(op, policy(10, 8));
    assert_eq!(hub.state.settings().unwrap(), HubSettings { session_idle_minutes: 10, session_absolute_hours: 8 });
}

#[test]
fn the_policy_stays_within_its_bounds() {
    let (mut hub, op, ..) = Hub::setup(1);
    let (idle, absolute) = (IDLE_MINUTES, ABSOLUTE_HOURS);
    for (i, a) in
        [(*idle.start() - 1, 12), (*idle.end() + 1, 12), (30, *absolute.start() - 1), (30, *absolute.end() + 1)]
    {
        assert!(matches!(hub.run(Some(op), policy(i, a)), Err(DomainError::InvalidArgument(_))), "{i} min, {a} h");
    }
    // An idle timeout longer than the whole lifetime would mean nothing.
    assert!(matches!(hub.run(Some(op), policy(90, 1)), Err(DomainError::InvalidArgument(_))));
    hub.ok(op, policy(*idle.start(), *absolute.start()));
    hub.ok(op, policy(*idle.end(), *absolute.end()));
}

#[test]
fn a_shortened_idle_timeout_ends_idle_sessions_where_they_are_used() {
    let (mut hub, op, _, people) = Hub::setup(1);
    sign_in(&mut hub, "user0", "t");
    let used = hub.now;
    let twenty_minutes_on = used + 20 * 60_000;
    // The defaults (30 minutes) keep a session unused for 20 minutes.
    let on_the_node =
        |hub: &Hub| authenticate(&hub.state, "t", used, twenty_minutes_on, SessionPolicy::of(&hub.state).unwrap());
    assert_eq!(on_the_node(&hub), Ok(people[0]));
    assert_eq!(queries::session_actor(&hub.state, "t", twenty_minutes_on), Ok(people[0]));
    hub.ok(op, policy(5, 12));
    assert_eq!(on_the_node(&hub), Err(DomainError::Unauthenticated));
    // Apply leaves the idle timeout to the receiving node (see `session_actor`).
    assert_eq!(queries::session_actor(&hub.state, "t", twenty_minutes_on), Ok(people[0]));
}

#[test]
fn a_shortened_lifetime_ends_sessions_in_use() {
    let (mut hub, op, _, people) = Hub::setup(1);
    sign_in(&mut hub, "user0", "t");
    let signed_in = hub.now;
    let two_hours_on = signed_in + 2 * 3_600_000;
    hub.now = two_hours_on - 60_000;
    hub.ok(people[0], Command::TouchSession { token_hash: "t".into() });
    assert_eq!(queries::session_actor(&hub.state, "t", two_hours_on), Ok(people[0]));
    hub.ok(op, policy(30, 1));
    let p = SessionPolicy::of(&hub.state).unwrap();
    assert_eq!(authenticate(&hub.state, "t", two_hours_on, two_hours_on, p), Err(DomainError::Unauthenticated));
    assert_eq!(queries::session_actor(&hub.state, "t", two_hours_on), Err(DomainError::Unauthenticated));
}
