//! Round trips of every kind of value the node stores or sends, and the refusals of bytes that
//! are not a current value. Every domain table's values also round-trip from real data in the
//! fixture migration test (`tests/migration.rs`).

use std::collections::BTreeMap;
use std::fmt::Debug;

use openraft::entry::RaftEntry;
use openraft::testing::log_id;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::*;
use crate::raft::{Entry, HubNode, LogId, SnapshotMeta, StoredMembership, TypeConfig, Vote};
use kizuna_domain::audit::{AuditAction, AuditRecord};
use kizuna_domain::federation::{HubName, Inbound, InboxMessage, Receipt, SeqRange};
use kizuna_domain::model::{AccountId, Member, MemberState, Role, RoomId};
use kizuna_domain::{Applied, Command, CommandResult, DomainError, Envelope, LogCommand, Record};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T) -> Vec<u8> {
    let bytes = encode(&value).expect("encodes");
    assert_eq!(bytes[0], CURRENT, "the version byte leads");
    assert_eq!(decode::<T>(&bytes).expect("decodes"), value);
    bytes
}

fn envelope(command: LogCommand) -> Envelope {
    Envelope { idempotency_key: "req-1".into(), proposed_at_ms: 1_764_000_000_000, command }
}

fn audit_record() -> AuditRecord {
    AuditRecord {
        at_ms: 1_764_000_000_000,
        account: AccountId(3),
        session: "abcd".into(),
        node: 2,
        action: AuditAction::Write,
        patient: None,
        room: Some(RoomId(4)),
        what: "投稿".into(),
    }
}

fn membership() -> openraft::Membership<u64, HubNode> {
    let node = |n: u64| HubNode { name: format!("n{n}"), region: "宇都宮".into(), ..HubNode::default() };
    BTreeMap::from([(1, node(1)), (2, node(2)), (3, node(3))]).into()
}

#[test]
fn log_entries_and_forwarded_writes_round_trip() {
    let logout = Command::Logout { token_hash: "tok".into() };
    for command in [
        LogCommand::PutRecord { key: "greeting".into(), value: "こんにちは".into() },
        LogCommand::Signed { session: Some("tok".into()), origin_node: 2, command: logout },
        LogCommand::AuditReads { records: vec![audit_record()] },
        LogCommand::FederatedBatch {
            origin: HubName::new("gunma").unwrap(),
            first_seq: 3,
            messages: vec![b"a".to_vec(), vec![]],
            key_id: "gunma-2026".into(),
            signature: vec![7; 64],
            origin_node: 2,
        },
    ] {
        round_trip(envelope(command.clone()));
        round_trip(Entry::new_normal(log_id::<TypeConfig>(2, 1, 7), envelope(command)));
    }
    round_trip(Entry::new_blank(log_id::<TypeConfig>(2, 1, 8)));
    round_trip(Entry::new_membership(log_id::<TypeConfig>(2, 1, 9), membership()));
}

#[test]
fn raft_metadata_and_snapshot_meta_round_trip() {
    round_trip(Vote::new_committed(3, 1));
    round_trip::<LogId>(log_id::<TypeConfig>(3, 1, 42));
    round_trip::<Option<LogId>>(None);
    round_trip::<Option<LogId>>(Some(log_id::<TypeConfig>(3, 1, 42)));
    let stored = StoredMembership::new(Some(log_id::<TypeConfig>(1, 1, 1)), membership());
    round_trip(stored.clone());
    round_trip(SnapshotMeta { last_log_id: Some(log_id::<TypeConfig>(3, 1, 42)), last_membership: stored });
}

#[test]
fn remembered_results_records_and_journaled_reads_round_trip() {
    for result in [
        CommandResult::RecordPut { version: 3 },
        CommandResult::Audited { last_seq: 9 },
        CommandResult::Refused(DomainError::NotFound("room".into())),
        CommandResult::NoOp,
        CommandResult::Received(Receipt::Applied { applied: SeqRange::of_batch(3, 2).unwrap(), highest_applied: 4 }),
        CommandResult::Received(Receipt::Gap { highest_applied: 1 }),
    ] {
        round_trip(Applied { result, log_index: 12, duplicate: false });
    }
    round_trip(Record { value: "おはよう".into(), version: 2, updated_at_ms: 1_764_000_000_000 });
    round_trip(audit_record());
    round_trip(Inbound::default());
    round_trip(InboxMessage {
        origin: HubName::new("gunma").unwrap(),
        seq: 1,
        body: b"event".to_vec(),
        received_at_ms: 1_764_000_000_000,
    });
}

#[test]
fn index_values_flags_and_small_tables_round_trip() {
    assert_eq!(round_trip(()), vec![CURRENT], "an index entry is one byte");
    round_trip(true);
    round_trip((7u64, "ab12".to_owned()));
    round_trip(AccountId(5));
    let mut member = Member::new(RoomId(1), AccountId(2), Role::Member, MemberState::Active);
    round_trip(member.clone());
    member.own_unread = vec![4, 5];
    round_trip(member);
}

#[test]
fn a_value_is_smaller_than_its_json() {
    let record = Record { value: "v".into(), version: 2, updated_at_ms: 1_764_000_000_000 };
    let compact = encode(&record).expect("encodes").len();
    let json = serde_json::to_vec(&record).expect("json").len();
    assert!(compact * 3 < json, "{compact} bytes against {json} of JSON");
}

#[test]
fn bytes_that_are_not_a_current_value_are_refused() {
    let bytes = encode(&Record { value: "v".into(), version: 1, updated_at_ms: 5 }).expect("encodes");
    assert_eq!(decode::<Record>(&[]), Err(CodecError::Empty));
    let mut other = bytes.clone();
    other[0] = 2;
    assert_eq!(decode::<Record>(&other), Err(CodecError::UnknownVersion(2)));
    assert_eq!(decode::<Record>(br#"{"value":"v"}"#), Err(CodecError::UnknownVersion(b'{')), "JSON is not read");
    assert!(matches!(decode::<Record>(&bytes[..bytes.len() - 1]), Err(CodecError::Malformed(_))));
    let mut longer = bytes;
    longer.push(0);
    assert_eq!(decode::<Record>(&longer), Err(CodecError::Trailing(1)));
}

#[test]
fn a_decode_error_names_the_family_and_the_key() {
    let key = crate::keys::id(crate::keys::FACILITIES, 7);
    let error = decode_at::<Record>(crate::CF_SM_DATA, &key, &[9, 1, 2]).expect_err("version 9");
    assert_eq!(
        error.to_string(),
        "sm_data key F/0000000000000007 (facilities): format version 9, but this build reads version 1 only"
    );
    let error = decode_at::<Entry>(crate::CF_RAFT_LOG, &crate::keys::log_index(42), &[]).expect_err("empty");
    assert_eq!(error.to_string(), "raft_log key 42: empty value (no format version byte)");
    let error = decode_at::<Vote>(crate::CF_RAFT_META, crate::keys::VOTE, b"{}").expect_err("JSON");
    assert!(error.to_string().starts_with("raft_meta key vote: format version 123"), "{error}");
}
