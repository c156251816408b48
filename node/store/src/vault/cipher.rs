//! The one cipher of values at rest: AES-256-GCM with a synthetic nonce.
//!
//! The nonce is an HMAC of the associated data and the plaintext (the SIV construction, RFC
//! 5297's idea on GCM), so sealing is deterministic: every replica that applies the same entry
//! writes the same bytes (state digests, snapshots and backups compare byte for byte), and no
//! nonce is ever reused for two different values under one key, whatever a restored or
//! diverged hub replays. What it reveals is only that one record holds the same value twice.
//!
//! A data key is 32 random bytes; HKDF-SHA256 derives its sealing key, its nonce key and its
//! search key from them, each for one purpose.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};

/// Bytes of a data key's or master key's secret.
pub const SECRET_LEN: usize = 32;
/// Bytes a seal adds: the nonce and the tag.
pub const OVERHEAD: usize = NONCE_LEN + 16;

/// Why a sealed value did not open, or a key could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("sealed value too short")]
    Truncated,
    #[error("sealed value does not authenticate (damaged, moved to another key, or sealed under another key)")]
    Unauthentic,
    #[error("no randomness from the operating system")]
    Random,
}

/// One data key: sealing, nonces and search terms.
pub struct DataKey {
    secret: [u8; SECRET_LEN],
    seal: LessSafeKey,
    nonces: hmac::Key,
    terms: hmac::Key,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    pub fn from_secret(secret: [u8; SECRET_LEN]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"kizuna data key").extract(&secret);
        Self { secret, seal: sealing_key(&prk), nonces: hmac_key(&prk, b"nonce"), terms: hmac_key(&prk, b"terms") }
    }

    pub fn generate() -> Result<Self, CipherError> {
        Ok(Self::from_secret(random()?))
    }

    pub fn secret(&self) -> &[u8; SECRET_LEN] {
        &self.secret
    }

    /// `plain` sealed for the record `ad`: nonce, ciphertext, tag.
    pub fn seal(&self, ad: &[u8], plain: &[u8]) -> Vec<u8> {
        let nonce = self.nonce_for(ad, plain);
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .seal
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(ad), &mut out[NONCE_LEN..])
            // Only inputs over 64 GiB fail; a stored value is at most a 128 KiB chunk or a post.
            .expect("a value at rest is far below AES-GCM's length limit");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// The plaintext of what [`Self::seal`] made for the record `ad`.
    pub fn open(&self, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CipherError> {
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN).ok_or(CipherError::Truncated)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CipherError::Truncated)?;
        let mut buf = body.to_vec();
        let plain = self.seal.open_in_place(nonce, Aad::from(ad), &mut buf).map_err(|_| CipherError::Unauthentic)?;
        let len = plain.len();
        buf.truncate(len);
        Ok(buf)
    }

    /// A keyed hash of a search term: equal terms meet in the index, and the index reveals
    /// no term to whoever lacks the key.
    pub fn term(&self, term: &[u8]) -> [u8; 8] {
        let tag = hmac::sign(&self.terms, term);
        let mut out = [0; 8];
        out.copy_from_slice(&tag.as_ref()[..8]);
        out
    }

    fn nonce_for(&self, ad: &[u8], plain: &[u8]) -> [u8; NONCE_LEN] {
        let mut ctx = hmac::Context::with_key(&self.nonces);
        ctx.update(&(ad.len() as u64).to_be_bytes());
        ctx.update(ad);
        ctx.update(plain);
        let mut nonce = [0; NONCE_LEN];
        nonce.copy_from_slice(&ctx.sign().as_ref()[..NONCE_LEN]);
        nonce
    }
}

/// A secret wrapped under a master key: sealed with a random nonce (wrapping happens once, where
/// a key is made, so nothing needs it to be deterministic).
pub fn wrap(master: &LessSafeKey, ad: &[u8], secret: &[u8; SECRET_LEN]) -> Result<(Vec<u8>, Vec<u8>), CipherError> {
    let nonce: [u8; NONCE_LEN] = random()?;
    let mut sealed = secret.to_vec();
    master
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(ad), &mut sealed)
        .map_err(|_| CipherError::Unauthentic)?;
    Ok((nonce.to_vec(), sealed))
}

/// The secret [`wrap`] sealed.
pub fn unwrap(master: &LessSafeKey, ad: &[u8], nonce: &[u8], sealed: &[u8]) -> Result<[u8; SECRET_LEN], CipherError> {
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CipherError::Truncated)?;
    let mut buf = sealed.to_vec();
    let plain = master.open_in_place(nonce, Aad::from(ad), &mut buf).map_err(|_| CipherError::Unauthentic)?;
    <[u8; SECRET_LEN]>::try_from(&plain[..]).map_err(|_| CipherError::Truncated)
}

pub fn random<const N: usize>() -> Result<[u8; N], CipherError> {
    let mut out = [0; N];
    SystemRandom::new().fill(&mut out).map_err(|_| CipherError::Random)?;
    Ok(out)
}

// HKDF-SHA256 gives up to 8160 bytes; these keys are 32.
const HKDF_LIMIT: &str = "a 32-byte key is within HKDF's output limit";

fn sealing_key(prk: &hkdf::Prk) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::from(prk.expand(&[b"seal"], &AES_256_GCM).expect(HKDF_LIMIT)))
}

fn hmac_key(prk: &hkdf::Prk, purpose: &'static [u8]) -> hmac::Key {
    hmac::Key::from(prk.expand(&[purpose], hmac::HMAC_SHA256).expect(HKDF_LIMIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_is_deterministic_bound_to_its_record_and_opens_only_under_its_key() {
        let key = DataKey::from_secret([7; SECRET_LEN]);
        let sealed = key.seal(b"T room 1 seq 2", "訪問時の血圧 128/76".as_bytes());
        assert_eq!(sealed, key.seal(b"T room 1 seq 2", "訪問時の血圧 128/76".as_bytes()), "replicas agree");
        assert_ne!(sealed, key.seal(b"T room 1 seq 2", "訪問時の血圧 128/77".as_bytes()));
        assert_eq!(key.open(b"T room 1 seq 2", &sealed).unwrap(), "訪問時の血圧 128/76".as_bytes());
        assert!(!sealed.windows(6).any(|w| w == "訪問".as_bytes()), "no plaintext left");
        assert_eq!(key.open(b"T room 1 seq 3", &sealed), Err(CipherError::Unauthentic), "moved");
        let other = DataKey::from_secret([8; SECRET_LEN]);
        assert_eq!(other.open(b"T room 1 seq 2", &sealed), Err(CipherError::Unauthentic), "another key");
        let mut damaged = sealed.clone();
        damaged[20] ^= 1;
        assert_eq!(key.open(b"T room 1 seq 2", &damaged), Err(CipherError::Unauthentic));
        assert_eq!(key.open(b"x", &sealed[..5]), Err(CipherError::Truncated));
    }

    #[test]
    fn a_wrapped_secret_opens_under_its_master_and_record_only() {
        let master = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[1; 32]).unwrap());
        let (nonce, sealed) = wrap(&master, b"hub key 1", &[9; SECRET_LEN]).unwrap();
        assert_eq!(unwrap(&master, b"hub key 1", &nonce, &sealed).unwrap(), [9; SECRET_LEN]);
        assert!(unwrap(&master, b"hub key 2", &nonce, &sealed).is_err());
        let other = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[2; 32]).unwrap());
        assert!(unwrap(&other, b"hub key 1", &nonce, &sealed).is_err());
    }
}
