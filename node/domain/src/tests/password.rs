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

// --- The hub's password rule and issued passwords (crate::password_policy) ---

use crate::password_policy::PasswordPolicy;

#[test]
fn the_rule_counts_characters_and_kinds() {
    let default = PasswordPolicy::default();
    assert!(default.check("twelve chars").is_ok(), "12 characters of any kind by default");
    assert!(default.check("elevenchars").is_err());
    assert!(default.check("訪問看護ステーション宇都宮").is_ok(), "characters, not bytes");
    assert!(default.check(&"a".repeat(257)).is_err(), "bounded, so hashing stays bounded");
    let strict = PasswordPolicy { min_chars: 13, min_kinds: 3 };
    assert!(strict.check("abcdefghijklm").is_err(), "one kind");
    assert!(strict.check("abcdefGHIJKLM").is_err(), "two kinds");
    assert!(strict.check("abcdefGHIJ123").is_ok(), "three kinds");
    assert!(strict.check("abcdefghij12看").is_ok(), "kanji count as the fourth kind");
    assert!(strict.check("abcD12").is_err(), "too short");
}

#[test]
fn only_operators_set_the_rule_within_its_bounds() {
    let (mut hub, op, _, people) = Hub::setup(1);
    let set = |min_chars, min_kinds| Command::SetPasswordPolicy { min_chars, min_kinds };
    assert!(matches!(hub.run(Some(people[0]), set(16, 2)), Err(DomainError::PermissionDenied(_))));
    for (chars, kinds) in [(7, 1), (65, 1), (12, 0), (12, 5)] {
        assert!(
            matches!(hub.run(Some(op), set(chars, kinds)), Err(DomainError::InvalidArgument(_))),
            "{chars} {kinds}"
        );
    }
    hub.ok(op, set(13, 3));
    assert_eq!(hub.state.password_policy().unwrap(), PasswordPolicy { min_chars: 13, min_kinds: 3 });
}

#[test]
fn an_admin_issues_a_password_which_ends_sessions_and_must_be_changed() {
    let (mut hub, op, _, people) = Hub::setup(3);
    let (admin, nurse, colleague) = (people[0], people[1], people[2]);
    sign_in(&mut hub, "user1", "nurse-phone");
    let issue = |account| Command::IssuePassword { account, password_hash: "issued".into() };
    assert!(matches!(hub.run(Some(colleague), issue(nurse)), Err(DomainError::PermissionDenied(_))));
    assert!(matches!(hub.run(Some(admin), issue(admin)), Err(DomainError::InvalidArgument(_))), "not oneself");
    hub.ok(admin, issue(nurse));
    assert!(revoked(&hub, "nurse-phone"), "the old sessions end");
    assert_eq!(hub.state.account(nurse).unwrap().unwrap().password_hash, "issued");
    assert!(hub.state.password_issued(nurse).unwrap());
    hub.ok(op, issue(admin));
    assert!(hub.state.password_issued(admin).unwrap(), "an operator issues for anyone");
    // An account that can do more than its colleagues gets one from an operator only.
    hub.ok(op, Command::SetBreakGlass { account: colleague, allowed: true });
    assert!(matches!(hub.run(Some(admin), issue(colleague)), Err(DomainError::PermissionDenied(_))));
    hub.ok(op, issue(colleague));

    sign_in(&mut hub, "user1", "nurse-pc");
    let post = Command::Post { room: RoomId(1), text: "申し送り".into(), reply_to: None, mentions: vec![] };
    let ctx = Ctx { log_index: 999, now_ms: hub.now };
    let sender = Sender { session: Some("nurse-pc"), origin_node: 1 };
    let refused = crate::decide(&hub.state, ctx, sender, post);
    assert!(
        matches!(&refused, Err(DomainError::FailedPrecondition(m)) if m.contains("パスワードを変更")),
        "{:?}",
        refused.map(|d| d.effects.outcome)
    );
    let changed = crate::decide(&hub.state, ctx, sender, change("chosen", "nurse-pc")).expect("changing is allowed");
    settle(&mut hub.state, hub.now, changed.effects).expect("applied");
    assert!(!hub.state.password_issued(nurse).unwrap(), "changed: free again");
}

#[test]
fn a_family_accounts_password_is_issued_from_version_5() {
    for (version, issued) in [(4, false), (5, true)] {
        let (mut hub, _, _, people) = Hub::setup(1);
        hub.state.apply_version = version;
        let room = patient(&mut hub, people[0], "佐藤花子");
        let RoomKind::PatientTimeline { patient } = hub.state.rooms[&room].kind.clone() else { panic!("a timeline") };
        let create = Command::CreateFamilyAccount {
            patient,
            login: "kazoku".into(),
            display_name: "家族".into(),
            password_hash: "h".into(),
        };
        let family = account_of(hub.ok(people[0], create));
        assert_eq!(hub.state.password_issued(family).unwrap(), issued, "at version {version}");
        // The timeline's owner may issue it again (the family member forgot it).
        hub.ok(people[0], Command::IssuePassword { account: family, password_hash: "again".into() });
    }
}
