//! The one paging style of every list: `page_size` (0: the list's default) and an opaque
//! `page_token` in, `next_page_token` out. A token is the hex of a small JSON value naming the
//! list it belongs to and the key of the last entry served, so the next page starts after that
//! key even when entries came or went in between (no offsets that shift). Clients must not
//! build or read tokens: their content may change between releases.

use serde::{Deserialize, Serialize};
use tonic::Status;

/// Where a list's next page starts: one variant per list, so a token of one list is refused
/// by another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "list", rename_all = "snake_case")]
pub(crate) enum PageToken {
    /// After the room list entry with this (newest post time, room id), in list order.
    Rooms { newest_post_at_ms: u64, room: u64 },
    /// After this session, newest first by (created at, session id).
    Sessions { created_at_ms: u64, session: String },
    /// Newest first: posts before `seq`; oldest first: posts after it. Bound to its room: a
    /// token of one room moved to another would silently skip that room's posts.
    Timeline { room: u64, oldest_first: bool, seq: u64 },
    /// Care requests (of the sent or the received box) older than `id`.
    CareRequests { sent: bool, id: u64 },
    /// After this facility in the search's order: (distance, municipality, name, id).
    Facilities { distance_m: Option<u64>, municipality: String, name: String, id: u64 },
    /// Search hits older than this post, by (posted at, room, seq).
    SearchPosts { posted_at_ms: u64, room: u64, seq: u64 },
    /// Audit entries after this sequence number.
    Audit { seq: u64 },
    /// A subject's observations older than (observed at, id), by the merge rule. Bound to its
    /// disaster and subject (`Patient:7`, `Facility:3`).
    Observations { disaster: u64, subject: String, observed_at_ms: u64, id: String },
}

fn bad_token() -> Status {
    Status::invalid_argument("page_token is not a token this list gave out: pass next_page_token back unchanged")
}

impl PageToken {
    /// The opaque text of this token. An encoding failure is an error, never "" (which the
    /// client would read as "no more pages", cutting the list short).
    pub(crate) fn encode(&self) -> Result<String, Status> {
        let json = serde_json::to_vec(self).map_err(|e| Status::internal(format!("page token: {e}")))?;
        Ok(kizuna_domain::hex(&json))
    }

    /// Reads `text` (empty: the first page, None). Anything this server did not hand out is
    /// INVALID_ARGUMENT.
    pub(crate) fn decode(text: &str) -> Result<Option<Self>, Status> {
        if text.is_empty() {
            return Ok(None);
        }
        let bytes = unhex(text).ok_or_else(bad_token)?;
        serde_json::from_slice(&bytes).map(Some).map_err(|_| bad_token())
    }
}

/// Reads the token of the list `expect` accepts: `Ok(None)` for the first page, the token's
/// content otherwise; a token of another list is INVALID_ARGUMENT.
pub(crate) fn resume<T>(text: &str, expect: impl FnOnce(PageToken) -> Option<T>) -> Result<Option<T>, Status> {
    match PageToken::decode(text)? {
        None => Ok(None),
        Some(token) => expect(token).map(Some).ok_or_else(bad_token),
    }
}

/// The `next_page_token` of a page: of its last entry when more entries follow, empty otherwise.
pub(crate) fn next_token<T>(page: &[T], more: bool, token: impl FnOnce(&T) -> PageToken) -> Result<String, Status> {
    match page.last() {
        Some(last) if more => token(last).encode(),
        _ => Ok(String::new()),
    }
}

/// Cuts `entries` (in list order, already past the token) to `size`, telling whether more follow.
pub(crate) fn take_page<T>(entries: impl IntoIterator<Item = T>, size: usize) -> (Vec<T>, bool) {
    let mut entries = entries.into_iter();
    let page: Vec<T> = entries.by_ref().take(size).collect();
    let more = entries.next().is_some();
    (page, more)
}

/// A requested page size: 0 means `default`, 1..=`max` as asked, more is refused with
/// INVALID_ARGUMENT.
pub(crate) fn page_size(asked: u32, default: usize, max: usize) -> Result<usize, Status> {
    let size = super::bounded("page_size", u64::from(asked), default as u64, max as u64)?;
    usize::try_from(size).map_err(|_| Status::invalid_argument(format!("page_size must be 0..={max}")))
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let tokens = [
            PageToken::Rooms { newest_post_at_ms: 5, room: 7 },
            PageToken::Sessions { created_at_ms: 1, session: "abcd".into() },
            PageToken::Timeline { room: 4, oldest_first: true, seq: 3 },
            PageToken::CareRequests { sent: false, id: 9 },
            PageToken::Facilities { distance_m: None, municipality: "宇都宮市".into(), name: "x".into(), id: 2 },
            PageToken::SearchPosts { posted_at_ms: 1, room: 2, seq: 3 },
            PageToken::Audit { seq: 11 },
        ];
        for token in tokens {
            assert_eq!(PageToken::decode(&token.encode().unwrap()).unwrap(), Some(token));
        }
        assert_eq!(PageToken::decode("").unwrap(), None);
    }

    #[test]
    fn a_bad_token_is_invalid_argument() {
        for text in ["zz", "abc", "00", "7b7d", "é1"] {
            assert_eq!(PageToken::decode(text).unwrap_err().code(), tonic::Code::InvalidArgument, "{text}");
        }
        let other_list = PageToken::Audit { seq: 1 }.encode().unwrap();
        let refused = resume(&other_list, |t| match t {
            PageToken::Rooms { room, .. } => Some(room),
            _ => None,
        });
        assert_eq!(refused.unwrap_err().code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn pages_tell_whether_more_follow() {
        assert_eq!(take_page(1..=5, 2), (vec![1, 2], true));
        assert_eq!(take_page(1..=2, 2), (vec![1, 2], false));
        assert_eq!(
            next_token(&[1, 2], true, |n| PageToken::Audit { seq: *n }).unwrap(),
            PageToken::Audit { seq: 2 }.encode().unwrap()
        );
        assert_eq!(next_token(&[1, 2], false, |n| PageToken::Audit { seq: *n }).unwrap(), "");
    }
}
