//! Pausing the stream to a peer hub: operators only, replicated, and repeating it changes
//! nothing.

use super::*;
use crate::federation::HubName;

fn gunma() -> HubName {
    HubName::new("gunma").unwrap()
}

fn pause(paused: bool) -> Command {
    Command::SetFederationPeerPaused { peer: gunma(), paused }
}

#[test]
fn only_operators_pause_a_peer() {
    let (mut hub, op, _, people) = Hub::setup(1);
    assert!(matches!(hub.run(Some(people[0]), pause(true)), Err(DomainError::PermissionDenied(_))));
    assert_eq!(hub.run(None, pause(true)), Err(DomainError::Unauthenticated));
    assert!(!hub.state.federation_paused(&gunma()).unwrap());
    hub.ok(op, pause(true));
    assert!(hub.state.federation_paused(&gunma()).unwrap());
}

#[test]
fn pause_and_resume_are_idempotent() {
    let (mut hub, op, ..) = Hub::setup(1);
    hub.ok(op, pause(true));
    let paused = hub.state.clone();
    hub.ok(op, pause(true));
    assert_eq!(format!("{:?}", hub.state), format!("{paused:?}"), "pausing twice changed state");
    hub.ok(op, pause(false));
    assert!(!hub.state.federation_paused(&gunma()).unwrap());
    let other = HubName::new("ibaraki").unwrap();
    assert!(!hub.state.federation_paused(&other).unwrap(), "a pause names one peer only");
}
