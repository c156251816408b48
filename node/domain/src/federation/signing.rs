//! What a hub signs: the canonical bytes of a batch or a probe (layout in `docs/federation.md`).
//!
//! Written byte by byte rather than by a serializer, so the signed bytes never change with a
//! library version, and versioned by their tag, so a new layout can coexist with this one.
//! Batches and probes have different tags: a probe's signature never passes as a batch's.

use sha2::{Digest, Sha256};

use super::names::HubName;
use super::stream::SeqRange;

/// Tag of version 1 of a batch's signed bytes.
pub const BATCH_TAG_V1: &[u8] = b"kizuna.federation.batch.v1\0";
/// Tag of version 1 of a probe's signed bytes.
pub const PROBE_TAG_V1: &[u8] = b"kizuna.federation.probe.v1\0";
/// Tag of version 1 of a file fetch's signed bytes.
pub const FETCH_TAG_V1: &[u8] = b"kizuna.federation.fetch.v1\0";
/// Tag of version 1 of the payload digest.
pub const PAYLOAD_TAG_V1: &[u8] = b"kizuna.federation.payload.v1\0";

/// SHA-256 of a batch's messages, each length-prefixed so that no two different lists of
/// messages have the same digest input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadDigest(pub [u8; 32]);

impl PayloadDigest {
    pub fn of<M: AsRef<[u8]>>(messages: &[M]) -> Self {
        let mut h = Sha256::new();
        h.update(PAYLOAD_TAG_V1);
        h.update((messages.len() as u64).to_be_bytes());
        for m in messages {
            let m = m.as_ref();
            h.update((m.len() as u64).to_be_bytes());
            h.update(m);
        }
        Self(h.finalize().into())
    }
}

/// Everything a batch's signature covers. The destination is included so that a batch signed
/// for one hub cannot be replayed to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    pub origin: HubName,
    pub destination: HubName,
    pub seqs: SeqRange,
    pub payload: PayloadDigest,
}

impl BatchHeader {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BATCH_TAG_V1.len() + 2 * 33 + 16 + 32);
        out.extend_from_slice(BATCH_TAG_V1);
        push_name(&mut out, &self.origin);
        push_name(&mut out, &self.destination);
        out.extend_from_slice(&self.seqs.first().to_be_bytes());
        out.extend_from_slice(&self.seqs.last().to_be_bytes());
        out.extend_from_slice(&self.payload.0);
        out
    }
}

/// What a probe's signature covers: who asks whom, and when (the receiver bounds the age, so
/// a recorded probe cannot stand in for a live peer for long).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeHeader {
    pub origin: HubName,
    pub destination: HubName,
    pub sent_at_ms: u64,
}

impl ProbeHeader {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PROBE_TAG_V1.len() + 2 * 33 + 8);
        out.extend_from_slice(PROBE_TAG_V1);
        push_name(&mut out, &self.origin);
        push_name(&mut out, &self.destination);
        out.extend_from_slice(&self.sent_at_ms.to_be_bytes());
        out
    }
}

/// What a file fetch's signature covers: who asks whom, when (bounded as for a probe), and
/// which bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchHeader {
    pub origin: HubName,
    pub destination: HubName,
    pub sent_at_ms: u64,
    /// The attachment's id on the destination.
    pub file: u64,
    /// 1 the file, 2 its small thumbnail, 3 its medium one (the API's `FileVariant`).
    pub variant: u8,
    pub from_chunk: u32,
}

impl FetchHeader {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FETCH_TAG_V1.len() + 2 * 33 + 8 + 8 + 1 + 4);
        out.extend_from_slice(FETCH_TAG_V1);
        push_name(&mut out, &self.origin);
        push_name(&mut out, &self.destination);
        out.extend_from_slice(&self.sent_at_ms.to_be_bytes());
        out.extend_from_slice(&self.file.to_be_bytes());
        out.push(self.variant);
        out.extend_from_slice(&self.from_chunk.to_be_bytes());
        out
    }
}

/// A length-prefixed name. A hub name is at most 32 bytes, so one length byte always fits.
fn push_name(out: &mut Vec<u8>, name: &HubName) {
    let bytes = name.as_str().as_bytes();
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(n: &str) -> HubName {
        HubName::new(n).unwrap()
    }

    fn batch() -> BatchHeader {
        BatchHeader {
            origin: hub("tochigi"),
            destination: hub("gunma"),
            seqs: SeqRange::of_batch(7, 2).unwrap(),
            payload: PayloadDigest::of(&[b"one".as_slice(), b"two"]),
        }
    }

    #[test]
    fn batch_bytes_follow_the_documented_layout() {
        let b = batch();
        let mut expected = b"kizuna.federation.batch.v1\0".to_vec();
        expected.extend_from_slice(b"\x07tochigi\x05gunma");
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 8]);
        expected.extend_from_slice(&b.payload.0);
        assert_eq!(b.canonical_bytes(), expected);
    }

    #[test]
    fn payload_digest_is_pinned() {
        // Pinned (computed independently with Python's hashlib): a change here breaks every peer's verification of this hub's batches.
        let d = PayloadDigest::of(&[b"one".as_slice(), b"two"]);
        assert_eq!(crate::hex(&d.0), "123c0a2cd5dbdbc525be630590e996367b75572c42e5b8b8707e10095b763469");
    }

    #[test]
    fn payload_digest_separates_message_boundaries() {
        let split = PayloadDigest::of(&[b"ab".as_slice(), b"c"]);
        assert_ne!(split, PayloadDigest::of(&[b"a".as_slice(), b"bc"]));
        assert_ne!(split, PayloadDigest::of(&[b"abc".as_slice()]));
        assert_ne!(PayloadDigest::of::<&[u8]>(&[]), PayloadDigest::of(&[b"".as_slice()]));
    }

    #[test]
    fn every_field_changes_the_signed_bytes() {
        let base = batch().canonical_bytes();
        let mut b = batch();
        b.origin = hub("ibaraki");
        assert_ne!(b.canonical_bytes(), base);
        let mut b = batch();
        b.destination = hub("ibaraki");
        assert_ne!(b.canonical_bytes(), base);
        let mut b = batch();
        b.seqs = SeqRange::of_batch(7, 3).unwrap();
        assert_ne!(b.canonical_bytes(), base);
        let mut b = batch();
        b.payload = PayloadDigest::of(&[b"one".as_slice()]);
        assert_ne!(b.canonical_bytes(), base);
    }

    #[test]
    fn names_are_length_prefixed_so_they_cannot_shift() {
        // ("ab", "c") and ("a", "bc") would collide without the length bytes.
        let p = |o: &str, d: &str| ProbeHeader { origin: hub(o), destination: hub(d), sent_at_ms: 1 };
        assert_ne!(p("ab", "c").canonical_bytes(), p("a", "bc").canonical_bytes());
    }

    #[test]
    fn fetch_bytes_follow_the_documented_layout_and_differ_from_a_probe() {
        let f = FetchHeader {
            origin: hub("gunma"),
            destination: hub("tochigi"),
            sent_at_ms: 258,
            file: 7,
            variant: 2,
            from_chunk: 3,
        };
        let mut expected = b"kizuna.federation.fetch.v1\0".to_vec();
        expected.extend_from_slice(b"\x05gunma\x07tochigi");
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 7, 2, 0, 0, 0, 3]);
        assert_eq!(f.canonical_bytes(), expected);
        let probe = ProbeHeader { origin: hub("gunma"), destination: hub("tochigi"), sent_at_ms: 258 };
        assert!(!f.canonical_bytes().starts_with(&probe.canonical_bytes()));
    }

    #[test]
    fn probe_bytes_follow_the_documented_layout_and_differ_from_a_batch() {
        let p = ProbeHeader { origin: hub("gunma"), destination: hub("tochigi"), sent_at_ms: 258 };
        let mut expected = b"kizuna.federation.probe.v1\0".to_vec();
        expected.extend_from_slice(b"\x05gunma\x07tochigi");
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(p.canonical_bytes(), expected);
        assert!(!batch().canonical_bytes().starts_with(PROBE_TAG_V1));
    }
}
