use super::*;

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        at_ms: i,
        account: AccountId(7),
        session: "abcd".into(),
        node: 1,
        action: if i.is_multiple_of(2) { AuditAction::Read } else { AuditAction::Write },
        patient: Some(PatientId(3)),
        room: (!i.is_multiple_of(3)).then_some(RoomId(3)),
        what: format!("timeline {i}"),
        added_later: None,
    }
}

/// `n` entries after `start` (empty: a new chain), as this code writes them.
fn append(mut start: Vec<AuditEntry>, n: u64) -> Vec<AuditEntry> {
    for i in 0..n {
        let e = next(start.last().map(AuditEntry::head), record(i));
        start.push(e);
    }
    start
}

fn chain(n: u64) -> Vec<AuditEntry> {
    append(Vec::new(), n)
}

/// A chain written by the code of commit f9b3eac, before hash versions existed, as its entries
/// rest in `Z` in existing data directories: 4 entries, reads and writes, with and without
/// patient and room, non-ASCII and escaped characters. It must verify forever.
const V0_CHAIN: &str = include_str!("v0_chain.json");

fn v0_chain() -> Vec<AuditEntry> {
    serde_json::from_str(V0_CHAIN).expect("fixture decodes")
}

/// Decodes entries after adding a field the record does not know to each stored record, as a
/// newer writer (or a tool) would have stored them.
fn with_unknown_field(entries: &[AuditEntry]) -> Vec<AuditEntry> {
    let mut json = serde_json::to_value(entries).expect("encode");
    for e in json.as_array_mut().expect("an array") {
        e["record"]["signature"] = serde_json::Value::String("ed25519:...".into());
    }
    serde_json::from_value(json).expect("decode")
}

fn broken_at(entries: Vec<AuditEntry>) -> (u64, String) {
    let b = verify(entries).expect_err("the chain must break");
    (b.seq, b.reason)
}

#[test]
fn a_chain_written_before_hash_versions_still_verifies() {
    let entries = v0_chain();
    assert!(entries.iter().all(|e| e.hash_version == 0), "stored without a version: version 0");
    assert_eq!(verify(entries), Ok(4));
}

#[test]
fn a_new_chain_uses_the_current_version_and_an_old_one_keeps_its_own() {
    assert!(chain(3).iter().all(|e| e.hash_version == encoding::CURRENT && e.hash_version != 0));
    // Every replica extends an old chain alike, whichever release it runs.
    let c = append(v0_chain(), 3);
    assert!(c.iter().all(|e| e.hash_version == 0), "{c:?}");
    assert_eq!(verify(c), Ok(7));
}

#[test]
fn a_chain_of_both_versions_verifies() {
    let mut c = v0_chain();
    let last = c.last().expect("fixture").clone();
    let head = ChainHead { hash_version: encoding::CURRENT, ..last.head() };
    c.push(next(Some(head), record(9)));
    c = append(c, 2);
    assert_eq!(c.iter().map(|e| e.hash_version).collect::<Vec<_>>(), [0, 0, 0, 0, 1, 1, 1]);
    assert_eq!(verify(c), Ok(7));
}

#[test]
fn an_intact_chain_verifies() {
    assert_eq!(verify(chain(5)), Ok(5));
}

#[test]
fn a_stored_chain_keeps_its_versions() {
    let c = append(v0_chain(), 2);
    let stored = serde_json::to_vec(&c).expect("encode");
    let back: Vec<AuditEntry> = serde_json::from_slice(&stored).expect("decode");
    assert_eq!(back, c);
    assert_eq!(verify(back), Ok(6));
}

/// The record in this test build has a field today's code does not have (`added_later`):
/// hashes of both versions ignore it, so old chains verify with a grown record.
#[test]
fn a_field_added_to_the_record_changes_no_existing_hash() {
    for mut c in [v0_chain(), chain(4)] {
        for e in &mut c {
            e.record.added_later = Some("hub 2".into());
        }
        assert_eq!(verify(c), Ok(4));
    }
}

#[test]
fn stored_records_with_fields_this_code_does_not_know_still_verify() {
    assert_eq!(verify(with_unknown_field(&v0_chain())), Ok(4));
    assert_eq!(verify(with_unknown_field(&chain(4))), Ok(4));
}

#[test]
fn an_altered_entry_is_detected_in_both_versions() {
    for mut c in [v0_chain(), chain(4)] {
        c[2].record.what = "nothing to see".into();
        let (seq, reason) = broken_at(c);
        assert_eq!(seq, 3);
        assert!(reason.contains("altered"), "{reason}");
    }
    let mut c = chain(5);
    c[2].record.account = AccountId(8);
    assert_eq!(broken_at(c).0, 3);
}

#[test]
fn swapped_records_are_detected_in_both_versions() {
    for mut c in [v0_chain(), chain(4)] {
        let second = c[1].record.clone();
        c[1].record = c[2].record.clone();
        c[2].record = second;
        assert_eq!(broken_at(c).0, 2);
    }
}

#[test]
fn swapped_entries_are_detected() {
    for mut c in [v0_chain(), chain(4)] {
        c.swap(1, 2);
        let (seq, reason) = broken_at(c);
        assert_eq!(seq, 2);
        assert!(reason.contains("missing"), "{reason}");
    }
}

#[test]
fn a_wrong_version_is_detected() {
    let mut c = v0_chain();
    c[1].hash_version = 1;
    assert_eq!(broken_at(c), (2, "content does not match its hash (altered)".into()));
    let mut c = chain(4);
    c[1].hash_version = 0;
    assert_eq!(broken_at(c), (2, "content does not match its hash (altered)".into()));
}

#[test]
fn an_unknown_version_breaks_the_chain_with_its_reason() {
    let mut c = chain(4);
    c[3].hash_version = 7;
    let (seq, reason) = broken_at(c);
    assert_eq!(seq, 4);
    assert!(reason.contains("encoding version 7"), "{reason}");
    assert!(reason.contains("does not know (it knows 0 to 1)"), "{reason}");
}

#[test]
fn a_missing_entry_is_detected() {
    let mut c = chain(5);
    c.remove(3);
    let e = verify(c).unwrap_err();
    assert_eq!(e.seq, 4);
    assert!(e.reason.contains("missing"));
}

#[test]
fn a_rehashed_alteration_still_breaks_the_next_link() {
    for mut c in [v0_chain(), chain(4)] {
        let e = &mut c[1];
        e.record.what = "nothing to see".into();
        e.hash = encoding::hash(e.hash_version, e.seq, &e.record, &e.prev_hash).expect("a known version");
        assert_eq!(broken_at(c).0, 3);
    }
}

/// The version-1 bytes of one record, written out from the layout in `encoding`'s
/// documentation (and checked with an independent implementation): any change to the format
/// fails here. Hashes written by this code must never change.
#[test]
fn version_1_golden_vector() {
    let record = AuditRecord {
        at_ms: 1_735_689_601_250,
        account: AccountId(12),
        session: "3f2a9c1e7b4d8a06".into(),
        node: 2,
        action: AuditAction::Write,
        patient: Some(PatientId(40)),
        room: None,
        what: "訪問 記録".into(),
        added_later: Some("not covered by version 1".into()),
    };
    let prev = "d7a5e288f3332b502bc28197a9cdac99aa204a3469bf26c2b4d3e0bd4bbf7e5a";
    let expected = concat!(
        "01",                                                 // version 1
        "0000000000000002",                                   // seq 2
        "000001941f2980e2",                                   // at_ms 1735689601250
        "000000000000000c",                                   // account 12
        "0000000000000010",                                   // session: 16 bytes
        "33663261396331653762346438613036",                   // "3f2a9c1e7b4d8a06"
        "0000000000000002",                                   // node 2
        "02",                                                 // write
        "01",                                                 // patient present
        "0000000000000028",                                   // patient 40
        "00",                                                 // room absent
        "000000000000000d",                                   // what: 13 bytes
        "e8a8aae5958f20e8a898e98cb2",                         // "訪問 記録" in UTF-8
        "0000000000000040",                                   // prev_hash: 64 bytes
        "64376135653238386633333332623530326263323831393761", // prev_hash...
        "39636461633939616132303461333436396266323663326234", //
        "6433653062643462626637653561",                       // ...prev_hash
    );
    let message = encoding::message(1, 2, &record, prev).expect("version 1 is known");
    assert_eq!(crate::hex(&message), expected);
    let hash = encoding::hash(1, 2, &record, prev).expect("version 1 is known");
    assert_eq!(hash, "40060ef91fa7008639b479a1bb75a90a3587fe7340c0b64dbd34f6e08c754489");
    let head = ChainHead { seq: 1, hash: prev, hash_version: 1 };
    assert_eq!(next(Some(head), record).hash, hash, "a version 1 chain is continued in version 1");

    let first = AuditRecord {
        at_ms: 1_735_689_600_000,
        account: AccountId(15),
        session: "b81c0d5e9f3a2764".into(),
        node: 3,
        action: AuditAction::Read,
        patient: None,
        room: None,
        what: "patient list".into(),
        added_later: None,
    };
    let hash = encoding::hash(1, 1, &first, "").expect("version 1 is known");
    assert_eq!(hash, "9c44c59fa9cadab8a44624b3f021c25d8bfd47417f68d702c4141869993ecf03");
}
