//! Changing one's own password: the new hash is set, the caller's other sessions end and the
//! one the change came through stays; a stopped account or another hub's account cannot.

use super::*;

fn sign_in(hub: &mut Hub, login: &str, token: &str) {
    let cmd =
        Command::CreateSession { login: login.into(), token_hash: token.into(), device: "pc".into(), totp_step: None };
    hub.run(None, cmd).unwrap();
}

fn change(hash: &str, token: &str) -> Command {
    Command::ChangePassword { password_hash: hash.into(), token_hash: token.into() }
}

fn revoked(hub: &Hub, token: &str) -> bool {
    hub.state.session(token).unwrap().expect("a session").revoked
}

#[test]
fn changing_the_password_ends_the_other_sessions_only() {
    let (mut hub, _, _, people) = Hub::setup(2);
    let (nurse, colleague) = (people[1], people[0]);
    for token in ["phone", "office-pc"] {
        sign_in(&mut hub, "user1", token);
    }
    sign_in(&mut hub, "user0", "colleague-pc");
    assert_eq!(hub.ok(nurse, change("new-hash", "phone")), Outcome::PasswordChanged(nurse));
    assert_eq!(hub.state.account(nurse).unwrap().unwrap().password_hash, "new-hash");
    assert!(!revoked(&hub, "phone"), "the session the change came through stays");
    assert!(revoked(&hub, "office-pc"), "another session of the caller ends");
    assert!(!revoked(&hub, "colleague-pc"), "nobody else's session ends");
    assert_eq!(hub.state.account(colleague).unwrap().unwrap().password_hash, "h");
}

#[test]
fn only_through_an_own_live_session() {
    let (mut hub, _, _, people) = Hub::setup(2);
    sign_in(&mut hub, "user0", "theirs");
    sign_in(&mut hub, "user1", "mine");
    // Another account's session is not the caller's.
    assert_eq!(hub.run(Some(people[1]), change("x", "theirs")), Err(DomainError::Unauthenticated));
    assert!(matches!(hub.run(Some(people[1]), change("", "mine")), Err(DomainError::InvalidArgument(_))));
    hub.ok(people[1], Command::Logout { token_hash: "mine".into() });
    assert_eq!(hub.run(Some(people[1]), change("x", "mine")), Err(DomainError::Unauthenticated));
}

#[test]
fn a_stopped_account_cannot_change_its_password() {
    let (mut hub, op, _, people) = Hub::setup(2);
    sign_in(&mut hub, "user1", "phone");
    hub.ok(op, Command::StopAccount { account: people[1] });
    assert_eq!(hub.run(Some(people[1]), change("x", "phone")), Err(DomainError::Unauthenticated));
    assert_eq!(hub.state.account(people[1]).unwrap().unwrap().password_hash, "h");
}

#[test]
fn an_account_of_another_hub_cannot_change_its_password_here() {
    let (mut hub, ..) = Hub::setup(0);
    let remote = AccountId(9_999);
    let kind = AccountKind::Remote {
        hub: crate::federation::HubName::new("gunma").unwrap(),
        facility_name: "前橋病院".into(),
        profession: Profession::Doctor,
    };
    let account = Account {
        id: remote,
        login: "dr@gunma".into(),
        display_name: "群馬医師".into(),
        kind,
        status: AccountStatus::Active,
        password_hash: String::new(),
        facility_admin: false,
        totp: None,
    };
    let session = Session {
        token_hash: "t".into(),
        account: remote,
        created_at_ms: 0,
        device: "pc".into(),
        revoked: false,
        last_used_ms: 0,
    };
    hub.state.apply(vec![Change::Account(account), Change::Session(session)]);
    assert!(matches!(hub.run(Some(remote), change("x", "t")), Err(DomainError::PermissionDenied(_))));
}
