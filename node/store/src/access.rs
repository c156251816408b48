//! Whose access to live events the applied state changed, numbered: what a node's live
//! streams knew of their rooms holds until a change concerns their account.
//!
//! One count for the whole node made every change — a login's new session, one membership —
//! send every stream of the node back to a read of its rooms on the next event: with 10,000
//! streams, one login cost 10,000 reads (docs/benchmarks.md, session 23). Each change now also
//! says whose access it concerns: the accounts whose account record, sessions or memberships it
//! wrote, or everyone (the hub's settings, an installed snapshot, a read that failed).

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use kizuna_domain::model::AccountId;

/// Whose access one apply batch (or an install) may have changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AccessChange {
    #[default]
    Nobody,
    Accounts(BTreeSet<AccountId>),
    Everyone,
}

impl AccessChange {
    pub fn of_account(account: AccountId) -> Self {
        Self::Accounts(BTreeSet::from([account]))
    }

    /// This change and `other` together.
    pub fn merge(&mut self, other: AccessChange) {
        match (&mut *self, other) {
            (_, Self::Nobody) | (Self::Everyone, _) => {}
            (Self::Accounts(mine), Self::Accounts(theirs)) => mine.extend(theirs),
            (me, other) => *me = other,
        }
    }

    /// Whether what a stream of `account` knew may no longer hold.
    pub fn concerns(&self, account: AccountId) -> bool {
        match self {
            Self::Nobody => false,
            Self::Accounts(accounts) => accounts.contains(&account),
            Self::Everyone => true,
        }
    }

    pub fn is_nobody(&self) -> bool {
        *self == Self::Nobody
    }
}

/// The changes kept for streams that fall behind: a stream asks about the ones since it last
/// learnt, normally one or two; older than these, everyone's knowledge is dropped.
const KEPT_CHANGES: usize = 4096;

/// The node's access changes: a count that only rises, and the latest changes by number.
/// Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    count: Arc<AtomicU64>,
    kept: Arc<Mutex<VecDeque<(u64, AccessChange)>>>,
}

impl AccessLog {
    /// How many changes there were: read it before taking a view of the state, and what the
    /// view says of a stream's access holds until a later change concerns its account.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Numbers `change` (after the state it describes is written, before its events go out).
    pub fn record(&self, change: AccessChange) {
        if change.is_nobody() {
            return;
        }
        let mut kept = self.kept();
        let number = self.count.load(Ordering::Acquire) + 1;
        kept.push_back((number, change));
        if kept.len() > KEPT_CHANGES {
            kept.pop_front();
        }
        // Under the lock: a count read anywhere has its change kept already.
        self.count.store(number, Ordering::Release);
    }

    /// Everything the changes numbered after `from` up to `to` concern; everyone when some of
    /// them are no longer kept.
    pub fn between(&self, from: u64, to: u64) -> AccessChange {
        if to <= from {
            return AccessChange::Nobody;
        }
        let kept = self.kept();
        if kept.front().is_none_or(|(oldest, _)| *oldest > from + 1) {
            return AccessChange::Everyone;
        }
        let mut all = AccessChange::Nobody;
        for (_, change) in kept.iter().filter(|(number, _)| (from + 1..=to).contains(number)) {
            all.merge(change.clone());
        }
        all
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, AccessChange)>> {
        // Each record completes under the lock or does nothing.
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(ids: &[u64]) -> AccessChange {
        AccessChange::Accounts(ids.iter().map(|&id| AccountId(id)).collect())
    }

    #[test]
    fn the_changes_between_two_counts_are_merged_and_forgotten_ones_concern_everyone() {
        let log = AccessLog::default();
        assert_eq!(log.between(0, 0), AccessChange::Nobody);
        assert_eq!(log.between(0, 1), AccessChange::Everyone, "a change not kept concerns everyone");
        log.record(accounts(&[1]));
        log.record(AccessChange::Nobody);
        log.record(accounts(&[2, 3]));
        assert_eq!(log.count(), 2, "a change of nobody's access is not counted");
        assert_eq!(log.between(0, 2), accounts(&[1, 2, 3]));
        assert_eq!(log.between(1, 2), accounts(&[2, 3]));
        assert!(!log.between(1, 2).concerns(AccountId(1)));
        log.record(AccessChange::Everyone);
        assert!(log.between(1, 3).concerns(AccountId(9)));
        for _ in 0..KEPT_CHANGES {
            log.record(accounts(&[4]));
        }
        assert_eq!(log.between(2, 3), AccessChange::Everyone, "no longer kept");
        assert_eq!(log.between(log.count() - 1, log.count()), accounts(&[4]));
    }

    #[test]
    fn merging_keeps_the_widest() {
        let mut change = AccessChange::Nobody;
        change.merge(accounts(&[1]));
        change.merge(accounts(&[2]));
        assert_eq!(change, accounts(&[1, 2]));
        change.merge(AccessChange::Everyone);
        change.merge(accounts(&[3]));
        assert_eq!(change, AccessChange::Everyone);
    }
}
