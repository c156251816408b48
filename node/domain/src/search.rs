//! Search (検索): posts the user may read, patients of the user's teams, and people, in
//! Japanese. Japanese has no spaces between words, so posts are indexed by character bigrams
//! (the store keeps a filter of each post's bigrams, see `bigram.rs`) and a query matches a post
//! whose normalised text contains the normalised query. Patients and people are
//! few enough per user to be matched directly.

use super::authz::{active_account, can_read};
use super::error::{DomainResult, invalid};
use super::model::*;
use super::view::{HubView, ViewResult};

pub use super::bigram::{bigrams, normalize};

/// Queries shorter than this match too much to be useful (and have no bigram).
pub const MIN_QUERY_CHARS: usize = 2;
const MAX_QUERY_CHARS: usize = 100;

/// A post found, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub room: RoomId,
    pub post: Post,
}

fn query(text: &str) -> DomainResult<String> {
    let q = normalize(text);
    let n = q.chars().count();
    if !(MIN_QUERY_CHARS..=MAX_QUERY_CHARS).contains(&n) {
        return Err(invalid(format!("a search is {MIN_QUERY_CHARS}..={MAX_QUERY_CHARS} characters")));
    }
    Ok(q)
}

/// Posts (not deleted) in rooms `actor` may read whose text contains `text`, newest first.
pub fn posts(view: &impl HubView, actor: AccountId, text: &str, limit: usize) -> DomainResult<Vec<Hit>> {
    active_account(view, actor)?;
    let q = query(text)?;
    // The query's bigrams narrow each room to a few candidates; the full text decides.
    let grams = bigrams(&q);
    if grams.is_empty() {
        return Ok(Vec::new());
    }
    let mut hits = Vec::new();
    for room in readable_rooms(view, actor)? {
        for seq in view.posts_with_bigrams(room, &grams)? {
            if let Some(post) = view.post(room, seq)?.filter(|p| !p.deleted && normalize(&p.text).contains(&q)) {
                hits.push(Hit { room, post });
            }
        }
    }
    hits.sort_by_key(|h| std::cmp::Reverse((h.post.posted_at_ms, h.room, h.post.seq)));
    hits.truncate(limit);
    Ok(hits)
}

/// The rooms `actor` may read now, of every kind.
fn readable_rooms(view: &impl HubView, actor: AccountId) -> ViewResult<Vec<RoomId>> {
    let mut rooms = Vec::new();
    for m in view.rooms_of(actor)? {
        if can_read(view, actor, m.room)? {
            rooms.push(m.room);
        }
    }
    Ok(rooms)
}

/// Patients of the teams `actor` belongs to whose name or kana contains `text`.
pub fn patients(view: &impl HubView, actor: AccountId, text: &str) -> DomainResult<Vec<Patient>> {
    active_account(view, actor)?;
    let q = query(text)?;
    let mut found = Vec::new();
    for room in readable_rooms(view, actor)? {
        let Some(RoomKind::PatientTimeline { patient }) = view.room(room)?.map(|r| r.kind) else { continue };
        if let Some(p) =
            view.patient(patient)?.filter(|p| normalize(&p.name).contains(&q) || normalize(&p.kana).contains(&q))
        {
            found.push(p);
        }
    }
    found.sort_by_key(|p| p.id);
    Ok(found)
}

/// Active professionals whose name or login contains `text` (family accounts only search
/// posts and their patient).
pub fn people(view: &impl HubView, actor: AccountId, text: &str, limit: usize) -> DomainResult<Vec<Account>> {
    let me = active_account(view, actor)?;
    let q = query(text)?;
    if matches!(me.kind, AccountKind::Family { .. }) {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for f in view.facilities()? {
        let staff = view.staff_of(f.id)?.into_iter();
        found.extend(staff.filter(|a| {
            a.is_active() && (normalize(&a.display_name).contains(&q) || normalize(&a.login).contains(&q))
        }));
    }
    found.sort_by_key(|a| a.id);
    found.truncate(limit);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn normalising_folds_width_case_and_spaces() {
        assert_eq!(normalize("ＳｐＯ２　９４％"), "spo2 94%");
        assert_eq!(normalize("  在宅  酸素 "), "在宅 酸素");
        assert_eq!(bigrams("酸素量"), BTreeSet::from(["酸素".to_owned(), "素量".to_owned()]));
        assert!(bigrams("酸").is_empty());
    }
}
