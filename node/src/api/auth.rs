//! Secrets at the API edge: argon2id password hashes, opaque session tokens (only their SHA-256
//! travels through the log and rests on disk), invitation codes, and the node-local idle clock
//! of sessions.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::domain::hex;

pub const MIN_PASSWORD_CHARS: usize = 12;

/// 32 random bytes from the OS, hex-encoded: session tokens and invitation codes.
pub fn new_secret() -> Result<String, Status> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| Status::internal(format!("no randomness: {e}")))?;
    Ok(hex(&buf))
}

/// A readable random password (for `kizuna admin init`): 20 characters from an unambiguous
/// alphabet, about 100 bits.
pub fn one_time_password() -> Result<String, Status> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = [0u8; 20];
    getrandom::fill(&mut buf).map_err(|e| Status::internal(format!("no randomness: {e}")))?;
    Ok(buf.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect())
}

/// What is stored and replicated in place of a token or code.
pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

pub fn hash_password(password: &str) -> Result<String, Status> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Status::invalid_argument(format!("password must have at least {MIN_PASSWORD_CHARS} characters")));
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Status::internal(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Status::internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Status::internal(format!("hashing: {e}")))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// The bearer token of a request, if any.
pub fn bearer<T>(req: &tonic::Request<T>) -> Option<String> {
    let value = req.metadata().get("authorization")?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
}

/// When each session was last used on this node. Idle timeouts are enforced per node: a node
/// counts a session's first request to it as activity.
#[derive(Default)]
pub struct IdleClock {
    last_used: Mutex<HashMap<String, u64>>,
}

impl IdleClock {
    /// The last use of a session on this node (`now_ms` when it was never used here).
    pub fn last_used(&self, token_hash: &str, now_ms: u64) -> u64 {
        let map = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
        map.get(token_hash).copied().unwrap_or(now_ms)
    }

    /// Records a successful use.
    pub fn touch(&self, token_hash: &str, now_ms: u64) {
        let mut map = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(token_hash.to_owned(), now_ms);
    }
}
