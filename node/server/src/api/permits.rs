//! At most so many long-running requests of one kind per account on a node (live event
//! streams, streamed uploads): one account, or a stolen session, cannot hold a node's memory,
//! tasks or staging disk with them. A request takes a permit and holds it until it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kizuna_domain::model::AccountId;
use tonic::Status;

/// The count of one kind of request per account, and its limit.
pub(super) struct PerAccount {
    what: &'static str,
    limit: usize,
    held: Mutex<HashMap<AccountId, usize>>,
}

/// One request's place under a [`PerAccount`] limit, given back when dropped.
pub(super) struct Permit {
    owner: Arc<PerAccount>,
    account: AccountId,
}

impl PerAccount {
    /// `what` names the requests in the refusal, in Japanese.
    pub(super) fn new(what: &'static str, limit: usize) -> Arc<Self> {
        Arc::new(Self { what, limit, held: Mutex::default() })
    }

    /// A permit for `account`, or RESOURCE_EXHAUSTED while it holds `limit` of them.
    pub(super) fn take(self: &Arc<Self>, account: AccountId) -> Result<Permit, Status> {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = held.entry(account).or_default();
        if *count >= self.limit {
            let (what, limit) = (self.what, self.limit);
            return Err(Status::resource_exhausted(format!(
                "{what}は1つのアカウントにつき同時に{limit}件までです。ほかの画面や端末を閉じてからやり直してください"
            )));
        }
        *count += 1;
        Ok(Permit { owner: self.clone(), account })
    }

    #[cfg(test)]
    fn held_by(&self, account: AccountId) -> usize {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&account).copied().unwrap_or(0)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = held.get_mut(&self.account) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_holds_at_most_the_limit_and_gets_places_back() {
        let streams = PerAccount::new("ライブ更新", 2);
        let (a, b) = (AccountId(1), AccountId(2));
        let first = streams.take(a).expect("one");
        let _second = streams.take(a).expect("two");
        let refused = streams.take(a).err().expect("a third is refused");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        let _other = streams.take(b).expect("another account is not limited by this one");
        drop(first);
        let _again = streams.take(a).expect("a place given back is taken again");
        assert_eq!(streams.held_by(a), 2);
    }
}
