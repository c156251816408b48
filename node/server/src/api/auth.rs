//! Secrets at the API edge: argon2id password hashes, opaque session tokens (only their SHA-256
//! travels through the log and rests on disk), invitation codes, and the node-local idle clock
//! of sessions.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};
use tonic::Status;

use kizuna_domain::hex;

/// 32 random bytes from the OS, hex-encoded: session tokens and invitation codes.
pub fn new_secret() -> Result<String, Status> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| Status::internal(format!("no randomness: {e}")))?;
    Ok(hex(&buf))
}

/// A readable random password (for `kizuna admin init` and `issue-password`): four groups of
/// five characters from an unambiguous alphabet joined by hyphens, about 100 bits, of all four
/// kinds so that it meets any password rule a hub may set.
pub fn one_time_password() -> Result<String, Status> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let strictest = kizuna_domain::password_policy::PasswordPolicy { min_chars: 23, min_kinds: 4 };
    loop {
        let mut buf = [0u8; 20];
        getrandom::fill(&mut buf).map_err(|e| Status::internal(format!("no randomness: {e}")))?;
        let chars: Vec<char> = buf.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
        let password = chars.chunks(5).map(|group| group.iter().collect::<String>()).collect::<Vec<_>>().join("-");
        // One in about twenty-five lacks a digit or a case: draw again.
        if strictest.check(&password).is_ok() {
            return Ok(password);
        }
    }
}

/// `n` bytes derived from a caller's session token and idempotency key: a retry with the same
/// key gets the same secret (so the answer of a retried write still matches what was
/// stored), and only the token's holder can derive it.
pub fn derived_secret(purpose: &str, token: &str, idempotency_key: &str, n: usize) -> Vec<u8> {
    let digest = Sha256::digest(format!("{purpose}|{token}|{idempotency_key}").as_bytes());
    digest.iter().copied().take(n).collect()
}

/// TOTP as authenticator apps do it (RFC 6238): HMAC-SHA1, 6 digits, 30-second steps.
pub const TOTP_STEP_SECS: u64 = 30;

fn totp(secret: &[u8]) -> Result<totp_rs::Totp, Status> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        // One step either side: a phone's clock is rarely exact.
        .with_skew(1)
        .with_step_duration(TOTP_STEP_SECS)
        .with_secret(secret.to_vec())
        .build()
        .map_err(|e| Status::internal(format!("TOTP secret: {e}")))
}

/// The time step — now, or one either side — whose code is `code`, if any.
pub fn totp_step(secret: &[u8], code: &str, now_ms: u64) -> Result<Option<u64>, Status> {
    Ok(totp(secret)?.check(code.trim(), now_ms / 1000))
}

/// The secret in base32 and as an otpauth:// URI, for an authenticator app.
pub fn totp_enrolment(secret: &[u8], login: &str) -> (String, String) {
    let base32 = totp_rs::Secret::from(secret.to_vec()).to_base32();
    // Percent-encode the label: logins may hold characters a URI path may not.
    let label: String = login
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let uri = format!("otpauth://totp/Kizuna:{label}?secret={base32}&issuer=Kizuna&algorithm=SHA1&digits=6&period=30");
    (base32, uri)
}

/// What is stored and replicated in place of a token or code.
pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// An argon2id PHC string of `password` (checked against the hub's rule before: see
/// `Api::new_password_hash`). Slow on purpose: call it off the async threads.
pub fn hash_password(password: &str) -> Result<String, Status> {
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

/// A hash with the parameters new passwords get, of a password nobody has: verifying against it
/// costs what verifying a real account's password costs. Computed once, with a fixed salt (it
/// guards no secret).
static DUMMY_PASSWORD_HASH: LazyLock<String> = LazyLock::new(|| {
    SaltString::encode_b64(&[0u8; 16])
        .and_then(|salt| Argon2::default().hash_password(b"no account has this password", &salt).map(|h| h.to_string()))
        .unwrap_or_default()
});

/// Computes the dummy hash now, so that the first unknown login is not slower than later ones.
pub fn prepare_dummy_hash() {
    LazyLock::force(&DUMMY_PASSWORD_HASH);
}

/// [`verify_password`] against `phc`, or — for a login that does not exist (`None`) — the same
/// work against a dummy hash, always refused.
pub fn verify_password_or_dummy(password: &str, phc: Option<&str>) -> bool {
    match phc {
        Some(phc) => verify_password(password, phc),
        None => {
            verify_password(password, &DUMMY_PASSWORD_HASH);
            false
        }
    }
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
    /// The size at which `touch` next forgets the sessions idle past any allowed timeout.
    sweep_at: std::sync::atomic::AtomicUsize,
}

/// The longest idle timeout a hub may set: a session unused for longer has expired anyway.
const LONGEST_IDLE_MS: u64 = *kizuna_domain::sessions::IDLE_MINUTES.end() as u64 * 60_000;
/// The idle clock is swept no sooner than at this many sessions.
const SWEEP_FROM: usize = 1024;

impl IdleClock {
    /// The last use of a session on this node (0 when it was never used here: the hub-wide
    /// last use in the session itself then decides).
    pub fn last_used(&self, token_hash: &str) -> u64 {
        let map = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
        map.get(token_hash).copied().unwrap_or(0)
    }

    /// Records a successful use. Once the clock has doubled in size since its last sweep, it
    /// forgets sessions idle past the longest allowed timeout (they can never be used again), so
    /// its size follows the sessions in use, not every session ever seen (amortized O(1)).
    pub fn touch(&self, token_hash: &str, now_ms: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut map = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(token_hash.to_owned(), now_ms);
        if map.len() >= self.sweep_at.load(Relaxed).max(SWEEP_FROM) {
            map.retain(|_, last| now_ms.saturating_sub(*last) <= LONGEST_IDLE_MS);
            self.sweep_at.store(2 * map.len(), Relaxed);
        }
    }
}

/// Who may propose a signed write, as checked before it is proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteGate {
    /// Any signed-in account whose password is not an issued one.
    SignedIn,
    /// A hub operator (事務局), also signed in so.
    Operator,
}

/// Sessions this node let through a [`WriteGate`] a moment ago. A signed write is decided
/// again at apply, on the state its entry meets (session, account, issued password, the
/// command's own permission: `signed::decide`), so the check before proposing only keeps
/// strangers' writes out of the log and refuses early. A client writing many times a second
/// with one session (an integration, the bench) then pays that check — a view of the state,
/// the settings, session and account read and decrypted, an absent-key lookup — once per
/// [`Self::HOLDS_FOR`] instead of per write: 7–9 % of a busy leader (docs/benchmarks.md).
/// A session revoked meanwhile is refused at apply, with the same status. The idle timeout,
/// which only this node checks, cannot run out within that second (it is minutes at least).
#[derive(Default)]
pub struct RecentGates {
    passed: Mutex<HashMap<String, [Option<Passed>; 2]>>,
    /// The size at which `remember` next forgets what has expired.
    sweep_at: std::sync::atomic::AtomicUsize,
}

/// The account a session stood for when it passed a gate, and when: one slot per [`WriteGate`].
type Passed = (kizuna_domain::model::AccountId, Instant);

impl RecentGates {
    /// How long a check stands for the same session and gate.
    pub const HOLDS_FOR: Duration = Duration::from_secs(1);

    /// The account that passed `gate` with this session within [`Self::HOLDS_FOR`] of `now`.
    pub fn recent(&self, token_hash: &str, gate: WriteGate, now: Instant) -> Option<kizuna_domain::model::AccountId> {
        let map = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        let (account, at) = map.get(token_hash)?[gate as usize]?;
        (now.saturating_duration_since(at) < Self::HOLDS_FOR).then_some(account)
    }

    /// Records that `account`'s session passed `gate` at `now`. As the idle clock, it forgets
    /// what expired once it doubled in size since its last sweep (amortized O(1)).
    pub fn remember(&self, token_hash: &str, gate: WriteGate, account: kizuna_domain::model::AccountId, now: Instant) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut map = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(token_hash.to_owned()).or_default()[gate as usize] = Some((account, now));
        if map.len() >= self.sweep_at.load(Relaxed).max(SWEEP_FROM) {
            let fresh = |slot: &Option<(_, Instant)>| {
                slot.is_some_and(|(_, at)| now.saturating_duration_since(at) < Self::HOLDS_FOR)
            };
            map.retain(|_, slots| slots.iter().any(fresh));
            self.sweep_at.store(2 * map.len(), Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_clock_forgets_sessions_idle_past_any_allowed_timeout() {
        let clock = IdleClock::default();
        for i in 0..SWEEP_FROM - 1 {
            clock.touch(&format!("old-{i}"), 1_000);
        }
        assert_eq!(clock.last_used("old-0"), 1_000, "kept below the sweep size");
        let later = 1_000 + LONGEST_IDLE_MS + 1;
        clock.touch("fresh", later);
        assert_eq!((clock.last_used("old-0"), clock.last_used("fresh")), (0, later));
        let kept = clock.last_used.lock().map(|m| m.len()).unwrap_or_default();
        assert_eq!(kept, 1, "only the session in use is kept");
    }

    #[test]
    fn a_passed_gate_holds_for_its_session_and_gate_a_second_only() {
        let gates = RecentGates::default();
        let (me, t0) = (kizuna_domain::model::AccountId(7), Instant::now());
        assert_eq!(gates.recent("s1", WriteGate::SignedIn, t0), None);
        gates.remember("s1", WriteGate::SignedIn, me, t0);
        assert_eq!(gates.recent("s1", WriteGate::SignedIn, t0 + Duration::from_millis(999)), Some(me));
        assert_eq!(gates.recent("s1", WriteGate::SignedIn, t0 + RecentGates::HOLDS_FOR), None, "expired");
        assert_eq!(gates.recent("s1", WriteGate::Operator, t0), None, "signed in is not operator");
        assert_eq!(gates.recent("s2", WriteGate::SignedIn, t0), None, "another session");
        // With "s1", one short of the size of the first sweep.
        for i in 0..SWEEP_FROM - 2 {
            gates.remember(&format!("old-{i}"), WriteGate::Operator, me, t0);
        }
        let later = t0 + RecentGates::HOLDS_FOR;
        gates.remember("fresh", WriteGate::Operator, me, later);
        let kept = gates.passed.lock().map(|m| m.len()).unwrap_or_default();
        assert_eq!(kept, 1, "expired checks are forgotten at the sweep");
        assert_eq!(gates.recent("fresh", WriteGate::Operator, later), Some(me));
    }

    fn totp_code(secret: &[u8], step: u64) -> Result<String, Status> {
        Ok(totp(secret)?.generate(step * TOTP_STEP_SECS).to_string())
    }

    #[test]
    fn an_unknown_login_is_refused_after_the_same_work() {
        assert!(PasswordHash::new(&DUMMY_PASSWORD_HASH).is_ok(), "the dummy is a real argon2id hash");
        assert!(DUMMY_PASSWORD_HASH.starts_with("$argon2id$"));
        assert!(!verify_password_or_dummy("no account has this password", None));
        let phc = hash_password("correct horse battery").unwrap();
        assert!(verify_password_or_dummy("correct horse battery", Some(&phc)));
        assert!(!verify_password_or_dummy("wrong horse battery", Some(&phc)));
    }

    #[test]
    fn totp_codes_match_rfc_6238() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890": 94287082 at 59 s (8 digits),
        // so 287082 with 6; 07081804 at 1111111109 s.
        let secret = b"12345678901234567890";
        assert_eq!(totp_code(secret, 59 / TOTP_STEP_SECS).unwrap(), "287082");
        assert_eq!(totp_code(secret, 1_111_111_109 / TOTP_STEP_SECS).unwrap(), "081804");
        let now_ms = 1_111_111_109_000;
        assert_eq!(totp_step(secret, "081804", now_ms).unwrap(), Some(1_111_111_109 / TOTP_STEP_SECS));
        assert_eq!(totp_step(secret, " 081804 ", now_ms + 30_000).unwrap(), Some(1_111_111_109 / TOTP_STEP_SECS));
        assert_eq!(totp_step(secret, "081804", now_ms + 90_000).unwrap(), None);
        assert_eq!(totp_step(secret, "12345x", now_ms).unwrap(), None);
        let (base32, uri) = totp_enrolment(secret, "dr.sato@clinic");
        assert_eq!(base32, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(uri.starts_with("otpauth://totp/Kizuna:dr.sato%40clinic?secret=GEZDGNBVGY3TQOJQ"), "{uri}");
    }
}
