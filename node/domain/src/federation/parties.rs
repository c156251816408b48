//! Accounts across hubs: how a message names an account ([`Party`], relative to the stream),
//! and the local stand-in ("shadow") of another hub's professional: an [`Account`] of kind
//! [`AccountKind::Remote`] with login `login@hub`, which never signs in here and holds only the
//! minimal profile that crossed.

use super::names::HubName;
use super::wire::{Party, Profile};
use crate::error::{DomainResult, invalid};
use crate::kernel::{MAX_NAME_CHARS, text};
use crate::model::*;
use crate::view::{Change, HubView, ViewResult};

/// The login of `login` of hub `hub` on every other hub.
pub fn remote_login(login: &str, hub: &HubName) -> String {
    format!("{login}@{hub}")
}

/// Checks a login another hub named: a plain login, without `@` or spaces.
pub fn check_login(login: &str) -> DomainResult<()> {
    text("login", login, MAX_NAME_CHARS)?;
    if login.contains('@') || login.chars().any(char::is_whitespace) {
        return Err(invalid("a login has no @ and no spaces"));
    }
    Ok(())
}

/// The hub and the login there of a shadow (None: an account of this hub).
pub fn home_login(account: &Account) -> Option<(HubName, String)> {
    let hub = account.remote_hub()?.clone();
    let login = account.login.rsplit_once('@').map_or(account.login.as_str(), |(login, _)| login);
    Some((hub, login.to_owned()))
}

/// How a message to hub `to` names `account` (an account of this hub, or a shadow).
pub fn party_of(account: &Account, to: &HubName) -> Party {
    match home_login(account) {
        Some((hub, login)) if &hub == to => Party::Receiver(login),
        Some((hub, login)) => Party::Other { hub, login },
        None => Party::Sender(account.login.clone()),
    }
}

/// The minimal profile of `account` for hub `to`.
pub fn profile_of(view: &impl HubView, account: &Account, to: &HubName) -> ViewResult<Profile> {
    let (facility_name, profession) = match &account.kind {
        AccountKind::Professional { facility, profession } => {
            (view.facility(*facility)?.map(|f| f.name).unwrap_or_default(), *profession)
        }
        AccountKind::Remote { facility_name, profession, .. } => (facility_name.clone(), *profession),
        AccountKind::Family { .. } | AccountKind::Operator => (String::new(), Profession::Other),
    };
    Ok(Profile { party: party_of(account, to), display_name: account.display_name.clone(), facility_name, profession })
}

/// Where a party named by hub `origin` lives, seen from this hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whose {
    /// An account of this hub, by login.
    Ours(String),
    /// A professional of hub `hub`.
    Theirs { hub: HubName, login: String },
}

/// Reads `party` as sent by hub `origin`.
pub fn whose(origin: &HubName, party: &Party) -> Whose {
    match party {
        Party::Sender(login) => Whose::Theirs { hub: origin.clone(), login: login.clone() },
        Party::Receiver(login) => Whose::Ours(login.clone()),
        Party::Other { hub, login } => Whose::Theirs { hub: hub.clone(), login: login.clone() },
    }
}

/// The local account `party` (named by `origin`) stands for, if this hub knows it.
pub fn known(view: &impl HubView, origin: &HubName, party: &Party) -> ViewResult<Option<Account>> {
    let login = match whose(origin, party) {
        Whose::Ours(login) => login,
        Whose::Theirs { hub, login } => remote_login(&login, &hub),
    };
    if let Whose::Ours(ours) = whose(origin, party)
        && check_login(&ours).is_err()
    {
        // `x@hub` is never a login of ours: it names another hub's account.
        return Ok(None);
    }
    match view.account_by_login(&login)? {
        Some(id) => view.account(id),
        None => Ok(None),
    }
}

/// The shadow of `login` of hub `hub`: the existing one (its profile brought up to date when
/// `profile` is given), or a new one with the id `new_id` gives (called only then). The change
/// is None when nothing changes.
pub fn shadow(
    view: &impl HubView,
    new_id: impl FnOnce() -> DomainResult<AccountId>,
    (hub, login): (&HubName, &str),
    profile: Option<&Profile>,
) -> DomainResult<(Account, Option<Change>)> {
    check_login(login)?;
    let full = remote_login(login, hub);
    let existing = match view.account_by_login(&full)? {
        Some(id) => view.account(id)?,
        None => None,
    };
    let new_id = match &existing {
        Some(_) => AccountId(0),
        None => new_id()?,
    };
    let mut account = existing.clone().unwrap_or_else(|| Account {
        id: new_id,
        login: full.clone(),
        display_name: full.clone(),
        kind: AccountKind::Remote { hub: hub.clone(), facility_name: String::new(), profession: Profession::Other },
        status: AccountStatus::Active,
        // Never signs in here: no password matches an empty hash.
        password_hash: String::new(),
        facility_admin: false,
        totp: None,
    });
    if let Some(p) = profile {
        text("display_name", &p.display_name, MAX_NAME_CHARS)?;
        account.display_name = p.display_name.clone();
        account.kind = AccountKind::Remote {
            hub: hub.clone(),
            facility_name: p.facility_name.chars().take(MAX_NAME_CHARS).collect(),
            profession: p.profession,
        };
    }
    let change = (existing.as_ref() != Some(&account)).then(|| Change::Account(account.clone()));
    Ok((account, change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::MemHub;

    fn gunma() -> HubName {
        HubName::new("gunma").unwrap()
    }

    #[test]
    fn parties_are_named_relative_to_the_stream() {
        let ibaraki = HubName::new("ibaraki").unwrap();
        let (sato, _) = shadow(&MemHub::default(), || Ok(AccountId(9)), (&gunma(), "sato"), None).unwrap();
        assert_eq!(sato.login, "sato@gunma");
        assert_eq!(party_of(&sato, &gunma()), Party::Receiver("sato".into()));
        assert_eq!(party_of(&sato, &ibaraki), Party::Other { hub: gunma(), login: "sato".into() });
        let Party::Other { .. } = party_of(&sato, &ibaraki) else { unreachable!() };
        // Read back on each side, the party is the same person.
        assert_eq!(
            whose(&gunma(), &Party::Sender("sato".into())),
            Whose::Theirs { hub: gunma(), login: "sato".into() }
        );
        assert_eq!(whose(&ibaraki, &party_of(&sato, &ibaraki)), Whose::Theirs { hub: gunma(), login: "sato".into() });
        assert_eq!(whose(&ibaraki, &Party::Receiver("ito".into())), Whose::Ours("ito".into()));
    }

    #[test]
    fn a_shadow_is_created_once_and_its_profile_updated() {
        let mut view = MemHub::default();
        let (first, change) = shadow(&view, || Ok(AccountId(9)), (&gunma(), "sato"), None).unwrap();
        view.apply(change.into_iter().collect());
        let profile = Profile {
            party: Party::Sender("sato".into()),
            display_name: "佐藤 看護師".into(),
            facility_name: "前橋訪問看護".into(),
            profession: Profession::VisitingNurse,
        };
        let (again, change) = shadow(&view, || Ok(AccountId(12)), (&gunma(), "sato"), Some(&profile)).unwrap();
        assert_eq!(again.id, first.id, "the same shadow, not a second one");
        assert_eq!(again.display_name, "佐藤 看護師");
        assert!(change.is_some());
        view.apply(change.into_iter().collect());
        let (_, unchanged) = shadow(&view, || Ok(AccountId(13)), (&gunma(), "sato"), Some(&profile)).unwrap();
        assert_eq!(unchanged, None);
        assert!(shadow(&view, || Ok(AccountId(14)), (&gunma(), "a@b"), None).is_err());
    }
}
