//! What `GetRoom` and `ListConnectionRequests` read: a room with its members for its active
//! members only, and the connection requests waiting on each side.

use super::*;
use crate::events::EventKind;
use crate::queries::{RoomShape, connection_requests, room_detail};

#[test]
fn a_room_shows_active_members_first_then_those_waiting_and_only_to_active_members() {
    let (mut hub, _, _, people) = Hub::setup(4);
    let (owner, nurse, invited, stranger) = (people[0], people[1], people[2], people[3]);
    let timeline = patient(&mut hub, owner, "山田花子");
    hub.ok(owner, Command::Invite { room: timeline, invitee: nurse, role: Role::Member });
    hub.ok(nurse, Command::Invite { room: timeline, invitee: invited, role: Role::Member });

    let d = room_detail(&hub.state, nurse, timeline).unwrap();
    assert_eq!(
        (d.title.as_str(), d.shape, d.timeline, d.my_role),
        ("山田花子", RoomShape::Patient, None, Role::Member)
    );
    assert!(d.patient.is_some());
    let states: Vec<(AccountId, MemberState)> = d.members.iter().map(|(m, _)| (m.account, m.state)).collect();
    assert_eq!(
        states,
        [(owner, MemberState::Active), (nurse, MemberState::Active), (invited, MemberState::Invited { by: nurse })]
    );
    assert!(d.members.iter().all(|(_, a)| a.is_some()));
    for outside in [invited, stranger] {
        assert!(matches!(room_detail(&hub.state, outside, timeline), Err(DomainError::NotFound(_))), "{outside:?}");
    }

    let sub = match hub.ok(owner, Command::CreateSubRoom { timeline, name: "褥瘡ケア".into(), members: vec![nurse] })
    {
        Outcome::Room(r) => r,
        o => panic!("{o:?}"),
    };
    let d = room_detail(&hub.state, nurse, sub).unwrap();
    assert_eq!((d.title.as_str(), d.shape, d.timeline), ("褥瘡ケア", RoomShape::SubRoom, Some(timeline)));
    assert!(d.sub_rooms.is_empty(), "a sub-room has none of its own");

    // The timeline lists the sub-rooms its viewer is in, by their own names.
    let listed = |hub: &Hub, who| room_detail(&hub.state, who, timeline).unwrap().sub_rooms;
    let of_nurse: Vec<_> = listed(&hub, nurse).into_iter().map(|s| (s.room, s.title)).collect();
    assert_eq!(of_nurse, [(sub, "褥瘡ケア".to_owned())]);
    hub.ok(owner, Command::Invite { room: timeline, invitee: stranger, role: Role::Member });
    assert!(listed(&hub, stranger).is_empty(), "not in the sub-room");
}

#[test]
fn connection_requests_wait_on_both_sides_until_answered() {
    let (mut hub, _, _, people) = Hub::setup(3);
    let (a, b, c) = (people[0], people[1], people[2]);
    // A request is a live event for the pair, so a request to accept shows at once.
    let ctx = Ctx { log_index: 999, now_ms: 1 };
    let raised = execute(&hub.state, ctx, Some(b), Command::RequestConnection { to: a }).unwrap().events;
    assert_eq!(
        raised.into_iter().map(|r| r.kind).collect::<Vec<_>>(),
        [EventKind::Connection { pair: connection_pair(a, b) }]
    );
    hub.ok(b, Command::RequestConnection { to: a });
    hub.ok(b, Command::RequestConnection { to: c });
    let ids = |list: &[Account]| list.iter().map(|x| x.id).collect::<Vec<_>>();
    let of_b = connection_requests(&hub.state, b).unwrap();
    assert_eq!((ids(&of_b.incoming), ids(&of_b.outgoing)), (vec![], vec![a, c]));
    let of_a = connection_requests(&hub.state, a).unwrap();
    assert_eq!((ids(&of_a.incoming), ids(&of_a.outgoing)), (vec![b], vec![]));

    hub.ok(a, Command::AcceptConnection { from: b });
    hub.ok(c, Command::DeclineConnection { from: b });
    for someone in [a, b, c] {
        let left = connection_requests(&hub.state, someone).unwrap();
        assert!(left.incoming.is_empty() && left.outgoing.is_empty(), "{left:?}");
    }
}
