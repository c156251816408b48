//! The second factor: enrolment in two steps, login needing a fresh step, no replays, turning
//! it off with a code or by an admin.

use super::*;

fn login(hub: &mut Hub, token: &str, step: Option<u64>) -> DomainResult<Outcome> {
    let cmd = Command::CreateSession {
        login: "user1".into(),
        token_hash: token.into(),
        device: "pc".into(),
        totp_step: step,
    };
    hub.run(None, cmd)
}

#[test]
fn a_confirmed_second_factor_guards_every_login_and_each_step_works_once() {
    let (mut hub, op, _clinic, people) = Hub::setup(2);
    let (admin, nurse) = (people[0], people[1]);
    let secret = vec![7u8; 20];
    // Wrong secret size; confirming before beginning.
    assert!(matches!(
        hub.run(Some(nurse), Command::BeginTotp { secret: vec![1; 5] }),
        Err(DomainError::InvalidArgument(_))
    ));
    assert!(matches!(hub.run(Some(nurse), Command::ConfirmTotp { step: 5 }), Err(DomainError::FailedPrecondition(_))));
    hub.ok(nurse, Command::BeginTotp { secret: secret.clone() });
    // Not confirmed yet: logins go on without a code.
    login(&mut hub, "t1", None).unwrap();
    hub.ok(nurse, Command::ConfirmTotp { step: 100 });
    assert!(matches!(hub.run(Some(nurse), Command::BeginTotp { secret }), Err(DomainError::FailedPrecondition(_))));

    assert_eq!(login(&mut hub, "t2", None).unwrap_err(), DomainError::Unauthenticated);
    // The confirming step, or an older one, is spent.
    assert!(matches!(login(&mut hub, "t3", Some(100)), Err(DomainError::FailedPrecondition(_))));
    login(&mut hub, "t4", Some(101)).unwrap();
    assert!(matches!(login(&mut hub, "t5", Some(101)), Err(DomainError::FailedPrecondition(_))));
    assert_eq!(hub.state.account(nurse).unwrap().and_then(|a| a.totp).map(|t| t.last_step), Some(101));

    // Off: by the user only with a fresh step; by the facility admin or an operator without.
    let own_stale = hub.run(Some(nurse), Command::DisableTotp { account: nurse, step: Some(101) });
    assert!(matches!(own_stale, Err(DomainError::PermissionDenied(_))), "{own_stale:?}");
    let colleague = hub.run(Some(people[1]), Command::DisableTotp { account: admin, step: None });
    assert!(matches!(colleague, Err(DomainError::FailedPrecondition(_) | DomainError::PermissionDenied(_))));
    hub.ok(admin, Command::DisableTotp { account: nurse, step: None });
    login(&mut hub, "t6", None).unwrap();
    let again = hub.run(Some(op), Command::DisableTotp { account: nurse, step: None });
    assert!(matches!(again, Err(DomainError::FailedPrecondition(_))), "{again:?}");
}

fn require(hub: &mut Hub, actor: AccountId, facility: Option<FacilityId>, grace_days: u32) -> DomainResult<Outcome> {
    hub.run(Some(actor), Command::SetSecondFactorPolicy { facility, required: true, grace_days })
}

#[test]
fn a_required_second_factor_lets_accounts_in_during_the_grace_period_and_refuses_them_after() {
    let (mut hub, op, clinic, people) = Hub::setup(2);
    let (admin, nurse) = (people[0], people[1]);
    // A member may not require it; the facility's admin may, for the facility only.
    assert!(matches!(require(&mut hub, nurse, Some(clinic), 7), Err(DomainError::PermissionDenied(_))));
    assert!(matches!(require(&mut hub, admin, None, 7), Err(DomainError::PermissionDenied(_))));
    assert!(matches!(require(&mut hub, op, None, 91), Err(DomainError::InvalidArgument(_))));
    require(&mut hub, admin, Some(clinic), 1).unwrap();
    let due = hub.state.second_factor_policy().unwrap().facilities[&clinic].due_ms;
    assert_eq!(due, hub.now + 24 * 60 * 60 * 1000);

    login(&mut hub, "during-grace", None).expect("within the grace period");
    hub.now = due;
    let late = login(&mut hub, "after-grace", None).unwrap_err();
    assert!(matches!(&late, DomainError::FailedPrecondition(m) if m.contains("二要素認証")), "{late:?}");

    // With a second factor the account signs in again; an admin's new grace period also lets
    // the others in.
    hub.ok(nurse, Command::BeginTotp { secret: vec![3; 20] });
    hub.ok(nurse, Command::ConfirmTotp { step: 7 });
    login(&mut hub, "enrolled", Some(8)).expect("enrolled");
    hub.ok(admin, Command::SetSecondFactorPolicy { facility: Some(clinic), required: false, grace_days: 0 });
    assert!(hub.state.second_factor_policy().unwrap().facilities.is_empty());
    require(&mut hub, op, None, 0).unwrap();
    let everyone = hub.run(
        None,
        Command::CreateSession {
            login: "user0".into(),
            token_hash: "hub-wide".into(),
            device: "pc".into(),
            totp_step: None,
        },
    );
    assert!(matches!(everyone, Err(DomainError::FailedPrecondition(_))), "hub-wide, due at once: {everyone:?}");
}
