//! What every public service of a node shares: authenticating the caller, answering reads from
//! this node's state, proposing commands through Raft, journalling reads of patient data, and
//! turning domain refusals into gRPC statuses. The services themselves live one per file next
//! to this one.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Status};

use super::auth::{self, IdleClock, RecentGates, WriteGate};
use super::permits::PerAccount;
use crate::node::{Node, now_ms};
use kizuna_domain::audit::{AuditAction, AuditRecord};
use kizuna_domain::commands::SESSION_ID_CHARS;
use kizuna_domain::model::*;
use kizuna_domain::password_policy;
use kizuna_domain::queries::{self, SessionPolicy};
use kizuna_domain::{self, Applied, CommandResult, Envelope};
use kizuna_domain::{Command, DomainError, Outcome, ViewError, ViewResult, authz};
use kizuna_store::{RocksHub, StorageFault};

/// Which copy of the state a request is answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadFrom {
    /// Made current first (the linearizable barrier) when a quorum is reachable; otherwise
    /// this node's own copy, marked stale.
    Current,
    /// This node's own copy as it is, marked stale when the node is out of contact.
    Local,
    /// As `Current`, but once this node stopped applying the log, its own copy as it is (frozen
    /// at the fault, and marked so): an operator diagnosing the node must still get in.
    Diagnosis,
}

/// Shared by the public services of one node (cheap to clone); each service's trait is
/// implemented on it in that service's file.
#[derive(Clone)]
pub struct Api {
    pub(super) node: Arc<Node>,
    idle: Arc<IdleClock>,
    /// Sessions let through a signed write's check a moment ago ([`RecentGates`]).
    recent_gates: Arc<RecentGates>,
    /// Sign-ins of one login take turns on this node ([`SignInTurns`]).
    pub(super) sign_in_turns: Arc<SignInTurns>,
    /// Live event streams per account on this node (a browser holds one per tab).
    pub(super) live_streams: Arc<PerAccount>,
    /// Streamed uploads per account on this node (each stages up to a file's size on disk).
    pub(super) stream_uploads: Arc<PerAccount>,
    /// New passwords hashed at once on this node: argon2id takes 19 MiB and a core's while
    /// each, and registration is open to anyone with a code.
    pub(super) hashing: Arc<tokio::sync::Semaphore>,
}

/// See [`Api::hashing`].
const HASHES_AT_ONCE: usize = 4;

/// Tabs and devices of one person, with room to spare.
const LIVE_STREAMS_PER_ACCOUNT: usize = 16;
/// As for uploads in parts (`attachments::staging::PARTS_PER_ACCOUNT`): a post's files.
const STREAM_UPLOADS_PER_ACCOUNT: usize = crate::attachments::staging::PARTS_PER_ACCOUNT;

/// Sign-in attempts of one login, one at a time on a node: each failure is recorded hub-wide
/// before the next attempt checks the lock, so guesses sent in parallel are counted as if sent
/// one by one (across the hub's nodes, at most one in flight per node). Striped by a hash of
/// the login: a fixed set of locks, whatever logins attackers make up.
pub(super) struct SignInTurns([tokio::sync::Mutex<()>; 64]);

impl Default for SignInTurns {
    fn default() -> Self {
        Self(std::array::from_fn(|_| tokio::sync::Mutex::new(())))
    }
}

impl SignInTurns {
    pub(super) async fn take(&self, login: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(login);
        self.0[(hash % self.0.len() as u64) as usize].lock().await
    }
}

/// Why a request's session is refused. A copy that may be stale (`stale`: why) and does not
/// know the session at all cannot tell a session begun elsewhere since from none: that is
/// UNAVAILABLE (try again, or another node), never "not signed in", which makes a client drop a
/// good token and ask its user to sign in again. Seen under load: a session signed in on the
/// leader, used at once on a follower that had just lost contact with it.
fn session_refusal(hub: &RocksHub<'_>, token_hash: &str, refused: DomainError, stale: Option<&str>) -> Status {
    let unknown_here = || matches!(kizuna_domain::HubView::session(hub, token_hash), Ok(None));
    match (refused, stale) {
        (DomainError::Unauthenticated, Some(reason)) if unknown_here() => Status::unavailable(format!(
            "this node does not know this session and cannot check it with the hub now: {reason}"
        )),
        (refused, _) => domain_status(refused),
    }
}

pub(crate) fn domain_status(e: DomainError) -> Status {
    match e {
        DomainError::InvalidArgument(m) => Status::invalid_argument(m),
        e @ DomainError::NotFound(_) => Status::not_found(e.to_string()),
        DomainError::PermissionDenied(m) => Status::permission_denied(m),
        DomainError::FailedPrecondition(m) => Status::failed_precondition(m),
        DomainError::Unauthenticated => Status::unauthenticated("not signed in, or the session has ended"),
        DomainError::Unreadable(e) => {
            tracing::error!(%e, "a read of this node's state failed");
            Status::internal(e.to_string())
        }
        DomainError::Throttled(m) => Status::resource_exhausted(m),
    }
}

/// For display inside [`Api::query`] only (a name, a facility): a value that could not be read
/// shows as absent, and `query` then answers INTERNAL for the whole request, because the view
/// noted the fault. Never for a decision: use [`view_status`] there.
pub(super) fn shown<T>(read: ViewResult<Option<T>>) -> Option<T> {
    read.ok().flatten()
}

/// The status of a read of the state that failed.
pub(super) fn view_status(e: ViewError) -> Status {
    domain_status(e.into())
}

/// A storage fault met while answering from this node's state: the answer would reflect the
/// fault, not the state.
pub(super) fn read_fault_status(fault: StorageFault) -> Status {
    tracing::error!(%fault, "a read of this node's state failed");
    Status::internal(format!("this node cannot read its state: {fault}"))
}

impl Api {
    pub fn new(node: Arc<Node>) -> Self {
        auth::prepare_dummy_hash();
        Self {
            node,
            idle: Arc::default(),
            recent_gates: Arc::default(),
            sign_in_turns: Arc::default(),
            live_streams: PerAccount::new("ライブ更新の接続", LIVE_STREAMS_PER_ACCOUNT),
            stream_uploads: PerAccount::new("ファイルの同時アップロード", STREAM_UPLOADS_PER_ACCOUNT),
            hashing: Arc::new(tokio::sync::Semaphore::new(HASHES_AT_ONCE)),
        }
    }

    /// Answers from this node's applied state through `query`. A storage fault met on the way
    /// fails the request with INTERNAL whatever `query` concluded: its "not found", "not
    /// allowed" or short list may only reflect the fault.
    pub(super) fn query<T>(&self, query: impl FnOnce(&RocksHub<'_>) -> Result<T, Status>) -> Result<T, Status> {
        let hub = self.node.state.hub();
        let answer = query(&hub);
        hub.fault().map_or(answer, |fault| Err(read_fault_status(fault)))
    }

    /// Makes this node's state current. Without a quorum it falls back to its own copy (a
    /// cut-off region keeps reading) and returns why that copy may be stale.
    pub(super) async fn fresh(&self) -> Result<Option<String>, Status> {
        self.node.current_or_stale().await.map_err(|e| e.into_status())
    }

    /// The signed-in account and its session token's hash.
    pub(super) async fn authenticate<T>(&self, req: &Request<T>) -> Result<(AccountId, String), Status> {
        let (account, token_hash, _) = self.authenticate_fresh(req).await?;
        Ok((account, token_hash))
    }

    /// [`Self::authenticate`], also telling whether this node's copy may be stale (and why).
    pub(super) async fn authenticate_fresh<T>(
        &self,
        req: &Request<T>,
    ) -> Result<(AccountId, String, Option<String>), Status> {
        self.authenticate_on(req, ReadFrom::Current).await
    }

    /// [`Self::authenticate_fresh`], on this node's copy made current first or taken as it is.
    /// An account whose password is still an issued one is refused here: it may only call what
    /// goes through [`Self::authenticate_with_issued_password`].
    async fn authenticate_on<T>(
        &self,
        req: &Request<T>,
        from: ReadFrom,
    ) -> Result<(AccountId, String, Option<String>), Status> {
        self.authenticate_then(req, from, |_, _| Ok(())).await
    }

    /// [`Self::authenticate_on`], then `also` for the account on the same view of the state:
    /// one view (a RocksDB snapshot, taken under the database's lock) per call, not per check.
    async fn authenticate_then<T>(
        &self,
        req: &Request<T>,
        from: ReadFrom,
        also: impl FnOnce(&RocksHub<'_>, AccountId) -> Result<(), Status> + Send,
    ) -> Result<(AccountId, String, Option<String>), Status> {
        let checks = |hub: &RocksHub<'_>, account| {
            if kizuna_domain::HubView::password_issued(hub, account).map_err(view_status)? {
                return Err(domain_status(password_policy::issued_refusal()));
            }
            also(hub, account)
        };
        self.session_on(req, from, checks).await
    }

    /// [`Self::authenticate`] for what an account with an issued password may still do: read
    /// who it is (GetMe), change the password and sign out.
    pub(super) async fn authenticate_with_issued_password<T>(
        &self,
        req: &Request<T>,
    ) -> Result<(AccountId, String), Status> {
        let (account, token_hash, _) = self.session_on(req, ReadFrom::Current, |_, _| Ok(())).await?;
        Ok((account, token_hash))
    }

    /// The account of the request's session, whatever its password, once `also` accepts it.
    async fn session_on<T>(
        &self,
        req: &Request<T>,
        from: ReadFrom,
        also: impl FnOnce(&RocksHub<'_>, AccountId) -> Result<(), Status> + Send,
    ) -> Result<(AccountId, String, Option<String>), Status> {
        let token_hash = token_hash_of(req)?;
        let stale = match (from, self.node.apply_fault()) {
            (ReadFrom::Diagnosis, Some(fault)) => Some(format!("this node stopped applying the log: {fault}")),
            (ReadFrom::Current | ReadFrom::Diagnosis, _) => self.fresh().await?,
            (ReadFrom::Local, _) => self.node.local_copy().map_err(|e| e.into_status())?,
        };
        let now = now_ms();
        let last = self.idle.last_used(&token_hash);
        let (account, touch_due) = self.query(|hub| {
            let policy = SessionPolicy::of(hub).map_err(view_status)?;
            let account = queries::authenticate(hub, &token_hash, last, now, policy)
                .map_err(|refused| session_refusal(hub, &token_hash, refused, stale.as_deref()))?;
            also(hub, account)?;
            Ok((account, queries::touch_due(hub, &token_hash, now).map_err(view_status)?))
        })?;
        self.idle.touch(&token_hash, now);
        if touch_due {
            // Record the use hub-wide, in the background: one idempotency key per session and
            // window, so nodes touching at once write it once. Losing it only costs precision.
            let (api, session) = (self.clone(), token_hash.clone());
            let idempotency_key = format!(
                "touch/{}/{}",
                token_hash.get(..SESSION_ID_CHARS).unwrap_or(&token_hash),
                now / queries::TOUCH_EVERY_MS
            );
            tokio::spawn(async move {
                let cmd = Command::TouchSession { token_hash: session.clone() };
                if let Err(e) = api.write(idempotency_key, Some(session), cmd).await {
                    tracing::debug!("could not record a session's use hub-wide: {e}");
                }
            });
        }
        Ok((account, token_hash, stale))
    }

    /// Proposes a command and maps its result.
    pub(super) async fn write(
        &self,
        idempotency_key: String,
        session: Option<String>,
        command: Command,
    ) -> Result<Outcome, Status> {
        Ok(self.write_entry(idempotency_key, session, command).await?.outcome)
    }

    /// [`Self::write`], also telling whether the idempotency key had been applied before (the
    /// outcome is then the first attempt's).
    pub(super) async fn write_once(
        &self,
        idempotency_key: String,
        session: Option<String>,
        command: Command,
    ) -> Result<(Outcome, bool), Status> {
        let written = self.write_entry(idempotency_key, session, command).await?;
        Ok((written.outcome, written.duplicate))
    }

    async fn write_entry(
        &self,
        idempotency_key: String,
        session: Option<String>,
        command: Command,
    ) -> Result<Written, Status> {
        let envelope = Envelope {
            idempotency_key,
            proposed_at_ms: 0,
            command: kizuna_domain::LogCommand::Signed { session, origin_node: self.node.id, command },
        };
        let applied = self.node.write(envelope).await.map_err(|e| e.into_status())?;
        Written::of(applied)
    }

    /// Journals a read of patient data before its answer leaves this node.
    pub(super) fn audit_read(
        &self,
        account: AccountId,
        token_hash: &str,
        patient: Option<PatientId>,
        room: Option<RoomId>,
        what: String,
    ) -> Result<(), Status> {
        let record = AuditRecord {
            at_ms: now_ms(),
            account,
            session: token_hash.chars().take(SESSION_ID_CHARS).collect(),
            node: self.node.id,
            action: AuditAction::Read,
            patient,
            room,
            what,
        };
        self.node.state.journal.append(&record).map(|_| ()).map_err(|e| Status::internal(format!("audit journal: {e}")))
    }

    /// Proposes `command` for the signed-in caller.
    pub(super) async fn signed_write<T>(
        &self,
        req: &Request<T>,
        idempotency_key: String,
        command: Command,
    ) -> Result<Outcome, Status> {
        Ok(self.signed_write_entry(req, idempotency_key, command).await?.0.outcome)
    }

    /// [`Self::signed_write`], then this node's copy brought up to the write (a follower
    /// forwards writes to the leader), so the caller's answer can show the write's effect read
    /// from here. No round trip to the leader: the write's commit comes with its next message.
    pub(super) async fn signed_write_then_catch_up<T>(
        &self,
        req: &Request<T>,
        idempotency_key: String,
        command: Command,
    ) -> Result<(Outcome, AccountId, String), Status> {
        let (written, me, token_hash) = self.signed_write_entry(req, idempotency_key, command).await?;
        self.node.wait_applied(written.log_index).await.map_err(|e| e.into_status())?;
        Ok((written.outcome, me, token_hash))
    }

    /// The session is checked on this node's copy as it is, not made current first: apply
    /// decides with the session as the log has it (`signed::decide`: a session revoked a moment
    /// ago elsewhere is refused there), and a refusal here is checked again on the copy made
    /// current (a session made on another node a moment ago may not be here yet). On a
    /// follower in another region this saves a round trip to the leader per write
    /// (docs/benchmarks.md, "Posts at WAN latencies"). Also returns the caller and its
    /// session's hash.
    async fn signed_write_entry<T>(
        &self,
        req: &Request<T>,
        idempotency_key: String,
        command: Command,
    ) -> Result<(Written, AccountId, String), Status> {
        self.checked_write_entry(req, idempotency_key, command, WriteGate::SignedIn).await
    }

    /// [`Self::signed_write_entry`] of a command only a hub operator may give (apply checks
    /// that again, on the state the entry meets).
    pub(super) async fn operator_write<T>(
        &self,
        req: &Request<T>,
        idempotency_key: String,
        command: Command,
    ) -> Result<Written, Status> {
        Ok(self.checked_write_entry(req, idempotency_key, command, WriteGate::Operator).await?.0)
    }

    /// [`Self::signed_write_entry`], once the caller passes `gate` (on the copy as it is, and
    /// again on the copy made current if refused there), or passed it with the same session
    /// within the last second ([`RecentGates`]: apply decides again anyway).
    async fn checked_write_entry<T>(
        &self,
        req: &Request<T>,
        idempotency_key: String,
        command: Command,
        gate: WriteGate,
    ) -> Result<(Written, AccountId, String), Status> {
        let (me, token_hash, remembered) = self.pass_gate(req, gate).await?;
        let written = self.write_entry(idempotency_key, Some(token_hash.clone()), command).await?;
        if written.duplicate && remembered {
            // Apply answers a key it applied before with that first result and decides nothing:
            // a session revoked within the remembered second is caught here, on the copy made
            // current, before the first result (and what the caller reads with it) goes out.
            self.authenticate_then(req, ReadFrom::Current, gate_check(gate)).await?;
        }
        Ok((written, me, token_hash))
    }

    /// The caller and its session's hash once it passes `gate`, and whether that was
    /// remembered from the last second ([`RecentGates`]) rather than checked now.
    async fn pass_gate<T>(&self, req: &Request<T>, gate: WriteGate) -> Result<(AccountId, String, bool), Status> {
        let token_hash = token_hash_of(req)?;
        if let Some(me) = self.recent_gates.recent(&token_hash, gate, Instant::now()) {
            // What the full check would refuse before reading anything: a node that stopped applying.
            self.node.local_copy().map_err(|e| e.into_status())?;
            self.idle.touch(&token_hash, now_ms());
            return Ok((me, token_hash, true));
        }
        let check = gate_check(gate);
        let (me, token_hash, _) = match self.authenticate_then(req, ReadFrom::Local, check).await {
            Ok(passed) => passed,
            Err(_) => self.authenticate_then(req, ReadFrom::Current, check).await?,
        };
        self.recent_gates.remember(&token_hash, gate, me, Instant::now());
        Ok((me, token_hash, false))
    }

    /// Whether the hub applies version `needs` or newer (every node runs a build of it), by
    /// this node's copy.
    pub(super) fn hub_applies(&self, needs: u32) -> Result<bool, Status> {
        self.node.state.applies_at_least(needs).map_err(|e| Status::internal(e.to_string()))
    }

    /// The signed-in account, which must be a hub operator (事務局).
    pub(super) async fn operator<T>(&self, req: &Request<T>) -> Result<AccountId, Status> {
        Ok(self.operator_on(req, ReadFrom::Current).await?.0)
    }

    /// [`Self::operator`] on this node's copy (made current first, or as it is), also telling
    /// whether that copy may be stale (and why).
    pub(super) async fn operator_on<T>(
        &self,
        req: &Request<T>,
        from: ReadFrom,
    ) -> Result<(AccountId, Option<String>), Status> {
        let (me, _, stale) = self.authenticate_then(req, from, operator_check).await?;
        Ok((me, stale))
    }
}

/// The hash of the request's session token, as sessions are known by.
fn token_hash_of<T>(req: &Request<T>) -> Result<String, Status> {
    let token =
        auth::bearer(req).ok_or_else(|| Status::unauthenticated("sign in first (authorization: Bearer <token>)"))?;
    Ok(auth::secret_hash(&token))
}

/// What `gate` checks of a signed-in caller beyond the session (and an issued password).
fn gate_check(gate: WriteGate) -> fn(&RocksHub<'_>, AccountId) -> Result<(), Status> {
    match gate {
        WriteGate::SignedIn => |_, _| Ok(()),
        WriteGate::Operator => operator_check,
    }
}

/// Whether `me` is a hub operator (事務局) on `hub`.
fn operator_check(hub: &RocksHub<'_>, me: AccountId) -> Result<(), Status> {
    authz::operator(hub, me).map(drop).map_err(domain_status)
}

/// A write's outcome and its entry.
pub(super) struct Written {
    pub(super) outcome: Outcome,
    /// The idempotency key had been applied before: the outcome is the first attempt's.
    pub(super) duplicate: bool,
    pub(super) log_index: u64,
}

impl Written {
    /// What a client's write came to, or its refusal.
    pub(super) fn of(applied: Applied) -> Result<Written, Status> {
        let outcome = match applied.result {
            CommandResult::Done(outcome) => outcome,
            // A record write of a hub before apply version 7 (or its remembered result, retried).
            CommandResult::RecordPut { version } => Outcome::RecordPut { version },
            CommandResult::Refused(refusal) => return Err(domain_status(refusal)),
            other => return Err(Status::internal(format!("unexpected result {other:?}"))),
        };
        Ok(Written { outcome, duplicate: applied.duplicate, log_index: applied.log_index })
    }
}

/// An outcome the command cannot have produced: a bug between this layer and the domain.
pub(super) fn unexpected(outcome: Outcome) -> Status {
    Status::internal(format!("unexpected outcome {outcome:?}"))
}
