//! What an audit entry's hash covers, version by version.
//!
//! An entry's hash is the SHA-256 of a *message* built from its sequence number, its record and
//! the previous entry's hash, written as lowercase hex (64 characters). Each entry names the
//! version of the message its hash was computed over (`AuditEntry::hash_version`), so the record
//! can grow without invalidating a single stored hash: a version covers a fixed list of fields,
//! and a field added to [`AuditRecord`] is covered only by a version defined after it.
//!
//! A field an entry's version does not cover is not protected by its hash. So the version that
//! first covers a new field must also make `verify` refuse an entry of an older version in
//! which that field is set: otherwise it could be added to old entries unnoticed.
//!
//! These layouts are a published format: an exporter or an outside verifier reimplements them
//! from this comment. Never change a version's bytes; add a version instead (and a golden test).
//!
//! # Version 1 (written by this code)
//!
//! Integers are unsigned and big-endian. A string is its length in bytes as a u64, then its
//! UTF-8 bytes as stored (no terminator, no Unicode normalization). An optional id is one tag
//! byte, `0x00` absent or `0x01` present, followed by the id as a u64 only when present.
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version: `0x01` |
//! | 8 | `seq` |
//! | 8 | `record.at_ms` (milliseconds since the Unix epoch) |
//! | 8 | `record.account` |
//! | 8 + n | `record.session` (string) |
//! | 8 | `record.node` |
//! | 1 | `record.action`: `0x01` read, `0x02` write |
//! | 1 or 9 | `record.patient` (optional id) |
//! | 1 or 9 | `record.room` (optional id) |
//! | 8 + n | `record.what` (string) |
//! | 8 + n | `prev_hash` (string: the previous entry's hash as stored, empty for the first entry) |
//!
//! # Version 0 (entries written before versions existed; verified, never written)
//!
//! The 8 bytes of `seq`, then the record as compact JSON exactly as serde_json writes it, then
//! the UTF-8 bytes of `prev_hash`. The JSON is one object with these keys in this order:
//! `at_ms`, `account`, `session`, `node` (numbers), `action` (`"Read"` or `"Write"`), `patient`,
//! `room` (a number or `null`), `what`. No whitespace; strings are UTF-8 with `"` and `\`
//! escaped as `\"` and `\\`, the control characters U+0008, U+0009, U+000A, U+000C and U+000D as
//! `\b`, `\t`, `\n`, `\f` and `\r`, the other characters below U+0020 as `\u00xx` (lowercase
//! hex); everything else, `/` and non-ASCII included, is written as is.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{AuditAction, AuditRecord};

/// The version new entries are hashed with.
pub const CURRENT: u8 = 1;

/// The version and hash of a new entry: always the current version.
pub fn hash_new(seq: u64, record: &AuditRecord, prev_hash: &str) -> (u8, String) {
    (CURRENT, digest(&v1(seq, record, prev_hash)))
}

/// The hash of entry `seq` holding `record` after `prev_hash`, under encoding `version`; None
/// when this code does not know that version.
pub fn hash(version: u8, seq: u64, record: &AuditRecord, prev_hash: &str) -> Option<String> {
    Some(digest(&message(version, seq, record, prev_hash)?))
}

fn digest(message: &[u8]) -> String {
    crate::hex(&Sha256::digest(message))
}

/// The bytes an entry's hash covers (see the module documentation); None for an unknown version.
pub fn message(version: u8, seq: u64, record: &AuditRecord, prev_hash: &str) -> Option<Vec<u8>> {
    match version {
        0 => Some(v0(seq, record, prev_hash)),
        1 => Some(v1(seq, record, prev_hash)),
        _ => None,
    }
}

/// Version 1 covers exactly these fields, in this order, whatever else the record holds.
fn v1(seq: u64, record: &AuditRecord, prev_hash: &str) -> Vec<u8> {
    let mut m = vec![1];
    put_u64(&mut m, seq);
    put_u64(&mut m, record.at_ms);
    put_u64(&mut m, record.account.0);
    put_str(&mut m, &record.session);
    put_u64(&mut m, record.node);
    m.push(match record.action {
        AuditAction::Read => 0x01,
        AuditAction::Write => 0x02,
    });
    put_id(&mut m, record.patient.map(|p| p.0));
    put_id(&mut m, record.room.map(|r| r.0));
    put_str(&mut m, &record.what);
    put_str(&mut m, prev_hash);
    m
}

fn put_u64(m: &mut Vec<u8>, n: u64) {
    m.extend_from_slice(&n.to_be_bytes());
}

fn put_str(m: &mut Vec<u8>, s: &str) {
    // usize is at most 64 bits on every target Rust supports: the length is exact.
    put_u64(m, s.len() as u64);
    m.extend_from_slice(s.as_bytes());
}

fn put_id(m: &mut Vec<u8>, id: Option<u64>) {
    match id {
        None => m.push(0x00),
        Some(n) => {
            m.push(0x01);
            put_u64(m, n);
        }
    }
}

/// `AuditRecord` as it was when its JSON was hashed (version 0): the same fields in the same
/// order, with the same serde representation, so serde_json writes the same bytes. Frozen on
/// purpose, down to plain integers for the ids: the live record and the id types may change,
/// these bytes may not (the fixture `v0_chain.json` holds them to it).
#[derive(Serialize)]
struct RecordV0<'a> {
    at_ms: u64,
    account: u64,
    session: &'a str,
    node: u64,
    action: ActionV0,
    patient: Option<u64>,
    room: Option<u64>,
    what: &'a str,
}

/// `AuditAction` as serde wrote it for version 0: the variant's name.
#[derive(Serialize)]
enum ActionV0 {
    Read,
    Write,
}

fn v0(seq: u64, record: &AuditRecord, prev_hash: &str) -> Vec<u8> {
    let frozen = RecordV0 {
        at_ms: record.at_ms,
        account: record.account.0,
        session: &record.session,
        node: record.node,
        action: match record.action {
            AuditAction::Read => ActionV0::Read,
            AuditAction::Write => ActionV0::Write,
        },
        patient: record.patient.map(|p| p.0),
        room: record.room.map(|r| r.0),
        what: &record.what,
    };
    let mut m = seq.to_be_bytes().to_vec();
    // Cannot fail for a struct of numbers and strings; the empty fallback is the one the
    // version-0 writer used, kept so the bytes stay exactly its bytes.
    m.extend(serde_json::to_vec(&frozen).unwrap_or_default());
    m.extend_from_slice(prev_hash.as_bytes());
    m
}
