//! The peers this hub trusts and the verifier of what they sign.
//!
//! Each refusal is distinct (unlisted hub, unknown key id, expired key, bad signature, not for
//! this hub, stale probe, and at the transport a certificate of another hub's CA) so that an operator reading the audit log can tell a peer's
//! misconfiguration from an attack.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kizuna_domain::federation::{BatchHeader, FetchHeader, HubKeyId, HubName, ProbeHeader};
use ring::signature::{ED25519, UnparsedPublicKey};

/// One public key a peer signs with, valid until `expires_at_s` (Unix seconds, exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyKey {
    pub key_id: HubKeyId,
    pub public_key: [u8; 32],
    pub expires_at_s: u64,
}

/// A configured peer hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: HubName,
    /// `host:port` of the peer's federation listeners (nodes in different regions).
    pub endpoints: Vec<String>,
    /// The peer hub's CA certificate (PEM): the roots its client certificates must chain to.
    pub ca_cert: PathBuf,
    pub verify_keys: Vec<VerifyKey>,
}

/// Why a peer's message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("hub {0:?} is not a configured federation peer")]
    UnlistedHub(String),
    #[error("hub {hub} has no configured verify key {key_id:?}")]
    UnknownKey { hub: HubName, key_id: String },
    #[error("key {key_id} of hub {hub} expired at {expired_at_s} (Unix seconds)")]
    ExpiredKey { hub: HubName, key_id: HubKeyId, expired_at_s: u64 },
    #[error("bad signature from hub {hub} (key {key_id})")]
    BadSignature { hub: HubName, key_id: HubKeyId },
    #[error("message for hub {destination}, but this hub is {this}")]
    NotForThisHub { destination: HubName, this: HubName },
    #[error("probe or fetch signed at {sent_at_ms} ms is outside the accepted window around {now_ms} ms")]
    StaleProbe { sent_at_ms: u64, now_ms: u64 },
    #[error("the client certificate was not issued by the configured CA of hub {hub}")]
    WrongCa { hub: HubName },
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The TLS handshake failed (a certificate of an unlisted CA, no certificate, not TLS): no
    /// request was read, so no hub is known.
    #[error("TLS handshake refused: {0}")]
    Handshake(String),
}

/// This hub's name and its configured peers.
#[derive(Debug, Clone)]
pub struct Trust {
    this: HubName,
    peers: BTreeMap<HubName, Peer>,
}

/// How far a probe's signing time may be from the receiver's clock (both ways: clocks differ).
pub const PROBE_WINDOW_MS: u64 = 5 * 60 * 1000;

impl Trust {
    pub fn new(this: HubName, peers: impl IntoIterator<Item = Peer>) -> Self {
        Self { this, peers: peers.into_iter().map(|p| (p.name.clone(), p)).collect() }
    }

    pub fn this_hub(&self) -> &HubName {
        &self.this
    }

    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    pub fn peer(&self, name: &str) -> Option<&Peer> {
        HubName::new(name).ok().and_then(|n| self.peers.get(&n))
    }

    /// Verifies that `signature` over `message` was made by `origin`'s key `key_id`, valid at
    /// `now_s`. Origin and key id come from the peer, so they are checked as untrusted text.
    pub fn verify(
        &self,
        origin: &str,
        key_id: &str,
        message: &[u8],
        signature: &[u8],
        now_s: u64,
    ) -> Result<&Peer, Refusal> {
        let peer = self.peer(origin).ok_or_else(|| Refusal::UnlistedHub(origin.chars().take(64).collect()))?;
        let unknown = || Refusal::UnknownKey { hub: peer.name.clone(), key_id: key_id.chars().take(64).collect() };
        let key = peer.verify_keys.iter().find(|k| k.key_id.as_str() == key_id).ok_or_else(unknown)?;
        if now_s >= key.expires_at_s {
            let (hub, key_id) = (peer.name.clone(), key.key_id.clone());
            return Err(Refusal::ExpiredKey { hub, key_id, expired_at_s: key.expires_at_s });
        }
        UnparsedPublicKey::new(&ED25519, key.public_key)
            .verify(message, signature)
            .map_err(|_| Refusal::BadSignature { hub: peer.name.clone(), key_id: key.key_id.clone() })?;
        Ok(peer)
    }

    /// Verifies a signed batch header: signed by its origin, addressed to this hub.
    pub fn verify_batch(
        &self,
        header: &BatchHeader,
        key_id: &str,
        signature: &[u8],
        now_s: u64,
    ) -> Result<&Peer, Refusal> {
        let peer = self.verify(header.origin.as_str(), key_id, &header.canonical_bytes(), signature, now_s)?;
        self.addressed_here(&header.destination)?;
        Ok(peer)
    }

    /// Verifies a signed probe: signed by its origin, addressed to this hub, signed recently.
    pub fn verify_probe(
        &self,
        header: &ProbeHeader,
        key_id: &str,
        signature: &[u8],
        now_ms: u64,
    ) -> Result<&Peer, Refusal> {
        let signed = (&header.origin, &header.destination, header.sent_at_ms);
        self.verify_recent(signed, &header.canonical_bytes(), (key_id, signature), now_ms)
    }

    /// Verifies a signed file fetch like a probe (a recorded request cannot be replayed for long).
    pub fn verify_fetch(
        &self,
        header: &FetchHeader,
        key_id: &str,
        signature: &[u8],
        now_ms: u64,
    ) -> Result<&Peer, Refusal> {
        let signed = (&header.origin, &header.destination, header.sent_at_ms);
        self.verify_recent(signed, &header.canonical_bytes(), (key_id, signature), now_ms)
    }

    /// A request signed by `origin` over `bytes`, addressed to this hub, signed within
    /// [`PROBE_WINDOW_MS`] of `now_ms`.
    fn verify_recent(
        &self,
        (origin, destination, sent_at_ms): (&HubName, &HubName, u64),
        bytes: &[u8],
        (key_id, signature): (&str, &[u8]),
        now_ms: u64,
    ) -> Result<&Peer, Refusal> {
        let peer = self.verify(origin.as_str(), key_id, bytes, signature, now_ms / 1000)?;
        self.addressed_here(destination)?;
        if sent_at_ms.abs_diff(now_ms) > PROBE_WINDOW_MS {
            return Err(Refusal::StaleProbe { sent_at_ms, now_ms });
        }
        Ok(peer)
    }

    fn addressed_here(&self, destination: &HubName) -> Result<(), Refusal> {
        if *destination != self.this {
            return Err(Refusal::NotForThisHub { destination: destination.clone(), this: self.this.clone() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kizuna_domain::federation::{PayloadDigest, SeqRange};

    use super::*;
    use crate::federation::HubIdentity;

    const NOW_S: u64 = 1_800_000_000;

    fn hub(n: &str) -> HubName {
        HubName::new(n).unwrap()
    }

    fn identity(name: &str, key_id: &str) -> HubIdentity {
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        HubIdentity::from_pkcs8(hub(name), HubKeyId::new(key_id).unwrap(), pkcs8.as_ref()).unwrap()
    }

    fn key_of(id: &HubIdentity, expires_at_s: u64) -> VerifyKey {
        VerifyKey { key_id: id.key_id().clone(), public_key: id.public_key(), expires_at_s }
    }

    /// Tochigi trusts Gunma's current key and its old, expired one.
    fn setup() -> (Trust, HubIdentity, HubIdentity) {
        let (current, old) = (identity("gunma", "gunma-2026"), identity("gunma", "gunma-2025"));
        let peer = Peer {
            name: hub("gunma"),
            endpoints: vec!["127.0.0.1:7400".into()],
            ca_cert: "gunma-ca.pem".into(),
            verify_keys: vec![key_of(&current, NOW_S + 3600), key_of(&old, NOW_S)],
        };
        (Trust::new(hub("tochigi"), [peer]), current, old)
    }

    fn batch(origin: &str, destination: &str) -> BatchHeader {
        BatchHeader {
            origin: hub(origin),
            destination: hub(destination),
            seqs: SeqRange::of_batch(1, 1).unwrap(),
            payload: PayloadDigest::of(&[b"post".as_slice()]),
        }
    }

    #[test]
    fn a_listed_peers_valid_signature_is_accepted() {
        let (trust, gunma, _) = setup();
        let b = batch("gunma", "tochigi");
        let sig = gunma.sign(&b.canonical_bytes());
        assert_eq!(trust.verify_batch(&b, "gunma-2026", &sig, NOW_S).map(|p| p.name.as_str()), Ok("gunma"));
    }

    #[test]
    fn an_unlisted_hub_is_refused() {
        let (trust, _, _) = setup();
        let ibaraki = identity("ibaraki", "ibaraki-1");
        let b = batch("ibaraki", "tochigi");
        let e = trust.verify_batch(&b, "ibaraki-1", &ibaraki.sign(&b.canonical_bytes()), NOW_S).unwrap_err();
        assert_eq!(e, Refusal::UnlistedHub("ibaraki".into()));
        // Names that are not even valid hub names are refused the same way, never panicking.
        assert!(matches!(trust.verify("GUNMA\u{0}", "k", b"", b"", NOW_S), Err(Refusal::UnlistedHub(_))));
    }

    #[test]
    fn an_unknown_key_id_is_refused() {
        let (trust, gunma, _) = setup();
        let b = batch("gunma", "tochigi");
        let e = trust.verify_batch(&b, "gunma-2099", &gunma.sign(&b.canonical_bytes()), NOW_S).unwrap_err();
        assert_eq!(e, Refusal::UnknownKey { hub: hub("gunma"), key_id: "gunma-2099".into() });
    }

    #[test]
    fn an_expired_key_is_refused_even_with_a_valid_signature() {
        let (trust, _, old) = setup();
        let b = batch("gunma", "tochigi");
        let sig = old.sign(&b.canonical_bytes());
        assert!(trust.verify_batch(&b, "gunma-2025", &sig, NOW_S - 1).is_ok(), "valid before expiry");
        let e = trust.verify_batch(&b, "gunma-2025", &sig, NOW_S).unwrap_err();
        assert!(matches!(e, Refusal::ExpiredKey { expired_at_s: NOW_S, .. }), "{e}");
    }

    #[test]
    fn a_tampered_or_foreign_signature_is_refused() {
        let (trust, gunma, old) = setup();
        let b = batch("gunma", "tochigi");
        let mut sig = gunma.sign(&b.canonical_bytes());
        sig[10] ^= 1;
        let bad = Refusal::BadSignature { hub: hub("gunma"), key_id: HubKeyId::new("gunma-2026").unwrap() };
        assert_eq!(trust.verify_batch(&b, "gunma-2026", &sig, NOW_S), Err(bad.clone()));
        // A valid signature by another key, presented under the current key id.
        let by_old = old.sign(&b.canonical_bytes());
        assert_eq!(trust.verify_batch(&b, "gunma-2026", &by_old, NOW_S), Err(bad.clone()));
        // A valid signature over other content (the sequence numbers changed in transit).
        let mut moved = b.clone();
        moved.seqs = SeqRange::of_batch(2, 1).unwrap();
        let sig = gunma.sign(&b.canonical_bytes());
        assert_eq!(trust.verify_batch(&moved, "gunma-2026", &sig, NOW_S), Err(bad.clone()));
        assert_eq!(trust.verify_batch(&b, "gunma-2026", b"short", NOW_S), Err(bad));
    }

    #[test]
    fn a_batch_for_another_hub_is_refused() {
        let (trust, gunma, _) = setup();
        let b = batch("gunma", "ibaraki");
        let e = trust.verify_batch(&b, "gunma-2026", &gunma.sign(&b.canonical_bytes()), NOW_S).unwrap_err();
        assert!(matches!(e, Refusal::NotForThisHub { .. }), "{e}");
    }

    #[test]
    fn probes_are_verified_and_must_be_recent() {
        let (trust, gunma, _) = setup();
        let now_ms = NOW_S * 1000;
        let p = ProbeHeader { origin: hub("gunma"), destination: hub("tochigi"), sent_at_ms: now_ms - 1000 };
        let sig = gunma.sign(&p.canonical_bytes());
        assert!(trust.verify_probe(&p, "gunma-2026", &sig, now_ms).is_ok());
        let later = now_ms + PROBE_WINDOW_MS + 1000;
        assert!(matches!(trust.verify_probe(&p, "gunma-2026", &sig, later), Err(Refusal::StaleProbe { .. })));
        // A probe's signature never passes as a batch's.
        let b = batch("gunma", "tochigi");
        assert!(matches!(trust.verify_batch(&b, "gunma-2026", &sig, NOW_S), Err(Refusal::BadSignature { .. })));
    }
}
