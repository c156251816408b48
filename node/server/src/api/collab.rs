//! The collaboration network's public services: authenticate, map proto ⇄ domain, propose
//! commands through Raft or answer reads from this node's state.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use kizuna_proto::collab as pb;
use tonic::{Request, Response, Status};

use super::auth::{self, IdleClock};
use super::records::timestamp;
use crate::node::{Node, NodeError, now_ms};
use kizuna_domain::collab::audit::{self, AuditAction, AuditRecord};
use kizuna_domain::collab::commands::SESSION_ID_CHARS;
use kizuna_domain::collab::events::{self, Event, EventKind, visible_to};
use kizuna_domain::collab::model::*;
use kizuna_domain::collab::queries::{self, ListKind, SessionPolicy, TimelineOrder, TimelinePage, TimelineQuery};
use kizuna_domain::collab::{Command, DomainError, HubView, Outcome, authz, search, second_factor};
use kizuna_domain::{self, CommandResult, Envelope, RefusalCode};
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

/// Shared by the collaboration services of one node (cheap to clone).
#[derive(Clone)]
pub struct CollabApi {
    pub(super) node: Arc<Node>,
    idle: Arc<IdleClock>,
}

pub(crate) fn domain_status(e: DomainError) -> Status {
    match e {
        DomainError::InvalidArgument(m) => Status::invalid_argument(m),
        e @ DomainError::NotFound(_) => Status::not_found(e.to_string()),
        DomainError::PermissionDenied(m) => Status::permission_denied(m),
        DomainError::FailedPrecondition(m) => Status::failed_precondition(m),
        DomainError::Unauthenticated => Status::unauthenticated("not signed in, or the session has ended"),
    }
}

/// A storage fault met while answering from this node's state: the answer would reflect the
/// fault, not the state.
fn read_fault_status(fault: StorageFault) -> Status {
    tracing::error!(%fault, "a read of this node's state failed");
    Status::internal(format!("this node cannot read its state: {fault}"))
}

fn refusal_status(code: RefusalCode, message: String) -> Status {
    match code {
        RefusalCode::InvalidArgument => Status::invalid_argument(message),
        RefusalCode::NotFound => Status::not_found(message),
        RefusalCode::PermissionDenied => Status::permission_denied(message),
        RefusalCode::FailedPrecondition => Status::failed_precondition(message),
        RefusalCode::Unauthenticated => Status::unauthenticated(message),
    }
}

impl CollabApi {
    pub fn new(node: Arc<Node>) -> Self {
        auth::prepare_dummy_hash();
        Self { node, idle: Arc::default() }
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
    async fn fresh(&self) -> Result<Option<String>, Status> {
        self.node.current_or_stale().await.map_err(|e| e.into_status())
    }

    /// The signed-in account and its session token's hash.
    pub(super) async fn authenticate<T>(&self, req: &Request<T>) -> Result<(AccountId, String), Status> {
        let (account, token_hash, _) = self.authenticate_fresh(req).await?;
        Ok((account, token_hash))
    }

    /// [`Self::authenticate`], also telling whether this node's copy may be stale (and why).
    async fn authenticate_fresh<T>(&self, req: &Request<T>) -> Result<(AccountId, String, Option<String>), Status> {
        self.authenticate_on(req, ReadFrom::Current).await
    }

    /// [`Self::authenticate_fresh`], on this node's copy made current first or taken as it is.
    async fn authenticate_on<T>(
        &self,
        req: &Request<T>,
        from: ReadFrom,
    ) -> Result<(AccountId, String, Option<String>), Status> {
        let token = auth::bearer(req)
            .ok_or_else(|| Status::unauthenticated("sign in first (authorization: Bearer <token>)"))?;
        let token_hash = auth::secret_hash(&token);
        let stale = match (from, self.node.apply_fault()) {
            (ReadFrom::Diagnosis, Some(fault)) => Some(format!("this node stopped applying the log: {fault}")),
            (ReadFrom::Current | ReadFrom::Diagnosis, _) => self.fresh().await?,
            (ReadFrom::Local, _) => self.node.local_copy().map_err(|e| e.into_status())?,
        };
        let now = now_ms();
        let last = self.idle.last_used(&token_hash);
        let (account, touch_due) = self.query(|hub| {
            let account =
                queries::authenticate(hub, &token_hash, last, now, SessionPolicy::of(hub)).map_err(domain_status)?;
            Ok((account, queries::touch_due(hub, &token_hash, now)))
        })?;
        self.idle.touch(&token_hash, now);
        if touch_due {
            // Record the use hub-wide, in the background: one request id per session and window,
            // so nodes touching at once write it once. Losing it only costs precision.
            let (api, session) = (self.clone(), token_hash.clone());
            let request_id = format!(
                "touch/{}/{}",
                token_hash.get(..SESSION_ID_CHARS).unwrap_or(&token_hash),
                now / queries::TOUCH_EVERY_MS
            );
            tokio::spawn(async move {
                let cmd = Command::TouchSession { token_hash: session.clone() };
                if let Err(e) = api.write(request_id, Some(session), cmd).await {
                    tracing::debug!("could not record a session's use hub-wide: {e}");
                }
            });
        }
        Ok((account, token_hash, stale))
    }

    /// Proposes a collaboration command and maps its result.
    async fn write(&self, request_id: String, session: Option<String>, command: Command) -> Result<Outcome, Status> {
        Ok(self.write_once(request_id, session, command).await?.0)
    }

    /// [`Self::write`], also telling whether the request id had been applied before (the
    /// outcome is then the first attempt's).
    async fn write_once(
        &self,
        request_id: String,
        session: Option<String>,
        command: Command,
    ) -> Result<(Outcome, bool), Status> {
        let envelope = Envelope {
            request_id,
            proposed_at_ms: 0,
            command: kizuna_domain::Command::Collab { session, origin_node: self.node.id, command },
        };
        let applied = self.node.write(envelope).await.map_err(|e| e.into_status())?;
        match applied.result {
            CommandResult::Collab(outcome) => Ok((outcome, applied.duplicate)),
            CommandResult::Refused { code, message } => Err(refusal_status(code, message)),
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
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
        self.node.state.journal.append(&record).map_err(|e| Status::internal(format!("audit journal: {e}")))
    }

    pub(super) async fn signed_write<T>(
        &self,
        req: &Request<T>,
        request_id: String,
        command: Command,
    ) -> Result<Outcome, Status> {
        let (_, token_hash) = self.authenticate(req).await?;
        self.write(request_id, Some(token_hash), command).await
    }

    /// [`Self::signed_write`], then this node's copy made current (a follower forwards writes
    /// to the leader), so the caller's answer can show the write's effect read from here.
    pub(super) async fn signed_write_then_catch_up<T>(
        &self,
        req: &Request<T>,
        request_id: String,
        command: Command,
    ) -> Result<(Outcome, AccountId, String), Status> {
        let outcome = self.signed_write(req, request_id, command).await?;
        let (me, token_hash) = self.authenticate(req).await?;
        Ok((outcome, me, token_hash))
    }
}

fn account_id(o: Outcome) -> Result<pb::AccountResponse, Status> {
    match o {
        Outcome::Account(id) | Outcome::Session(id) => Ok(pb::AccountResponse { account_id: id.0 }),
        other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
    }
}

fn room_id(o: Outcome) -> Result<pb::RoomResponse, Status> {
    match o {
        Outcome::Room(id) => Ok(pb::RoomResponse { room_id: id.0 }),
        Outcome::Patient { timeline, .. } => Ok(pb::RoomResponse { room_id: timeline.0 }),
        other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
    }
}

pub(super) fn facility_kind(k: i32) -> Result<FacilityKind, Status> {
    use pb::FacilityKind as K;
    Ok(match K::try_from(k).unwrap_or(K::Unspecified) {
        K::Clinic => FacilityKind::Clinic,
        K::Hospital => FacilityKind::Hospital,
        K::Pharmacy => FacilityKind::Pharmacy,
        K::DentalClinic => FacilityKind::DentalClinic,
        K::VisitingNursingStation => FacilityKind::VisitingNursingStation,
        K::CareOffice => FacilityKind::CareOffice,
        K::Rehabilitation => FacilityKind::Rehabilitation,
        K::Municipality => FacilityKind::Municipality,
        K::Other => FacilityKind::Other,
        K::Unspecified => return Err(Status::invalid_argument("facility kind is required")),
    })
}

fn profession(p: i32) -> Result<Profession, Status> {
    use pb::Profession as P;
    Ok(match P::try_from(p).unwrap_or(P::Unspecified) {
        P::Doctor => Profession::Doctor,
        P::Nurse => Profession::Nurse,
        P::VisitingNurse => Profession::VisitingNurse,
        P::Pharmacist => Profession::Pharmacist,
        P::Dentist => Profession::Dentist,
        P::DentalHygienist => Profession::DentalHygienist,
        P::Therapist => Profession::Therapist,
        P::CareManager => Profession::CareManager,
        P::CareWorker => Profession::CareWorker,
        P::MedicalSocialWorker => Profession::MedicalSocialWorker,
        P::Clerk => Profession::Clerk,
        P::MunicipalStaff => Profession::MunicipalStaff,
        P::Other => Profession::Other,
        P::Unspecified => return Err(Status::invalid_argument("profession is required")),
    })
}

fn role(r: i32) -> Result<Role, Status> {
    use pb::Role as R;
    Ok(match R::try_from(r).unwrap_or(R::Unspecified) {
        R::Owner => Role::Owner,
        R::Member | R::Unspecified => Role::Member,
        R::Family => Role::Family,
    })
}

// ---------------------------------------------------------------- accounts

#[tonic::async_trait]
impl pb::accounts_server::Accounts for CollabApi {
    async fn init_operator(
        &self,
        req: Request<pb::InitOperatorRequest>,
    ) -> Result<Response<pb::AccountResponse>, Status> {
        let r = req.into_inner();
        let password_hash = auth::hash_password(&r.password)?;
        let cmd = Command::InitOperator { login: r.login, display_name: r.display_name, password_hash };
        Ok(Response::new(account_id(self.write(r.request_id, None, cmd).await?)?))
    }

    async fn login(&self, req: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let r = req.into_inner();
        self.fresh().await?;
        let refused = || Status::unauthenticated("wrong login or password, or the account is not active");
        let account = self.query(|hub| Ok(hub.account_by_login(&r.login).and_then(|id| hub.account(id))))?;
        // An unknown login is checked against a dummy hash, so that it costs what a wrong
        // password costs: the answer's timing must not tell which logins exist.
        let phc = account.as_ref().map(|a| a.password_hash.clone());
        // Verify off the async threads: argon2id is deliberately slow.
        let password = r.password;
        let ok = tokio::task::spawn_blocking(move || auth::verify_password_or_dummy(&password, phc.as_deref()))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let account = account.filter(|a| ok && a.is_active()).ok_or_else(refused)?;
        // The second factor, when the account has one: the code must match a current step.
        let totp_step = match account.totp.as_ref().filter(|t| t.confirmed) {
            None => None,
            Some(_) if r.totp_code.trim().is_empty() => {
                return Err(Status::unauthenticated(
                    "this account has a second factor: send the 6-digit code from the authenticator app",
                ));
            }
            Some(t) => Some(
                auth::totp_step(&t.secret, &r.totp_code, now_ms())?
                    .ok_or_else(|| Status::unauthenticated("wrong or expired code from the authenticator app"))?,
            ),
        };
        let token = auth::new_secret()?;
        let token_hash = auth::secret_hash(&token);
        let session = |request_id: String| {
            let cmd = Command::CreateSession {
                login: r.login.clone(),
                token_hash: token_hash.clone(),
                device: r.device.clone(),
                totp_step,
            };
            self.write_once(request_id, None, cmd)
        };
        let (mut outcome, duplicate) = session(r.request_id.clone()).await?;
        if duplicate {
            // A retry of a login that was applied: its token went to a client that never got
            // the answer, and only its hash is stored. Open a session for this token instead
            // (the lost one idles out).
            outcome = session(format!("{}/retry-{}", r.request_id, &token_hash[..16])).await?.0;
        }
        let id = account_id(outcome)?.account_id;
        Ok(Response::new(pb::LoginResponse { token, account_id: id }))
    }

    async fn begin_totp(&self, req: Request<pb::BeginTotpRequest>) -> Result<Response<pb::BeginTotpResponse>, Status> {
        let request_id = req.get_ref().request_id.clone();
        let token = auth::bearer(&req).unwrap_or_default();
        let secret = auth::derived_secret("totp", &token, &request_id, second_factor::SECRET_BYTES);
        let (_, me, _) =
            self.signed_write_then_catch_up(&req, request_id, Command::BeginTotp { secret: secret.clone() }).await?;
        let login = self.query(|hub| Ok(hub.account(me).map(|a| a.login).unwrap_or_default()))?;
        let (secret_base32, otpauth_uri) = auth::totp_enrolment(&secret, &login);
        Ok(Response::new(pb::BeginTotpResponse { secret_base32, otpauth_uri }))
    }

    async fn confirm_totp(&self, req: Request<pb::ConfirmTotpRequest>) -> Result<Response<pb::Empty>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        let r = req.get_ref().clone();
        let pending = self.query(|hub| Ok(hub.account(me).and_then(|a| a.totp).filter(|t| !t.confirmed)))?;
        let Some(totp) = pending else {
            return Err(Status::failed_precondition("start setting up the second factor first (BeginTotp)"));
        };
        let step = auth::totp_step(&totp.secret, &r.code, now_ms())?
            .ok_or_else(|| Status::invalid_argument("the code does not match: check the app and its clock"))?;
        self.signed_write(&req, r.request_id, Command::ConfirmTotp { step }).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn disable_totp(&self, req: Request<pb::DisableTotpRequest>) -> Result<Response<pb::Empty>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        let r = req.get_ref().clone();
        let account = if r.account_id == 0 { me } else { AccountId(r.account_id) };
        // One's own needs a fresh code; an admin's reset of another's does not.
        let own_totp = self.query(|hub| Ok(hub.account(me).and_then(|a| a.totp).filter(|_| account == me)))?;
        let step = match own_totp {
            Some(totp) => auth::totp_step(&totp.secret, &r.code, now_ms())?,
            None => None,
        };
        self.signed_write(&req, r.request_id, Command::DisableTotp { account, step }).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn logout(&self, req: Request<pb::LogoutRequest>) -> Result<Response<pb::Empty>, Status> {
        let (_, token_hash) = self.authenticate(&req).await?;
        let cmd = Command::Logout { token_hash: token_hash.clone() };
        self.write(req.into_inner().request_id, Some(token_hash), cmd).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn register_facility(
        &self,
        req: Request<pb::RegisterFacilityRequest>,
    ) -> Result<Response<pb::FacilityResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd =
            Command::RegisterFacility { name: r.name, kind: facility_kind(r.kind)?, municipality: r.municipality };
        match self.signed_write(&req, r.request_id, cmd).await? {
            Outcome::Facility(f) => Ok(Response::new(pb::FacilityResponse { facility_id: f.0 })),
            other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn approve_facility(
        &self,
        req: Request<pb::ApproveFacilityRequest>,
    ) -> Result<Response<pb::FacilityResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::ApproveFacility { facility: FacilityId(r.facility_id) };
        self.signed_write(&req, r.request_id, cmd).await?;
        Ok(Response::new(pb::FacilityResponse { facility_id: r.facility_id }))
    }

    async fn issue_invitation(
        &self,
        req: Request<pb::IssueInvitationRequest>,
    ) -> Result<Response<pb::IssueInvitationResponse>, Status> {
        let r = req.get_ref().clone();
        if !(1..=720).contains(&r.valid_hours) {
            return Err(Status::invalid_argument("valid_hours must be 1..=720"));
        }
        // A retried request must not mint a second code: derive the code from the request id
        // and a per-request secret would differ per retry, so the retry returns the first code
        // only if the client kept it. The code is therefore derived deterministically from the
        // token and request id, which only the issuer holds.
        let token = auth::bearer(&req).unwrap_or_default();
        let code = auth::secret_hash(&format!("invitation|{token}|{}", r.request_id))[..24].to_owned();
        let expires_at_ms = now_ms() + u64::from(r.valid_hours) * 3_600_000;
        let cmd = Command::IssueInvitation {
            facility: FacilityId(r.facility_id),
            code_hash: auth::secret_hash(&code),
            expires_at_ms,
            as_admin: r.as_admin,
        };
        self.signed_write(&req, r.request_id, cmd).await?;
        Ok(Response::new(pb::IssueInvitationResponse { code, expires_at: Some(timestamp(expires_at_ms)) }))
    }

    async fn register(&self, req: Request<pb::RegisterRequest>) -> Result<Response<pb::AccountResponse>, Status> {
        let r = req.into_inner();
        let password_hash = auth::hash_password(&r.password)?;
        let cmd = Command::Register {
            code_hash: auth::secret_hash(r.invitation_code.trim()),
            login: r.login,
            display_name: r.display_name,
            profession: profession(r.profession)?,
            password_hash,
        };
        Ok(Response::new(account_id(self.write(r.request_id, None, cmd).await?)?))
    }

    async fn approve_account(&self, req: Request<pb::AccountRequest>) -> Result<Response<pb::AccountResponse>, Status> {
        let r = req.get_ref().clone();
        let out =
            self.signed_write(&req, r.request_id, Command::ApproveAccount { account: AccountId(r.account_id) }).await?;
        Ok(Response::new(account_id(out)?))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        let account = match req.get_ref().account_id {
            0 => me,
            id => AccountId(id),
        };
        let sessions = self.query(|hub| {
            authz::self_or_admin(hub, me, account).map_err(domain_status)?;
            Ok(hub.sessions_of(account))
        })?;
        let sessions = sessions
            .into_iter()
            .map(|s| pb::SessionInfo {
                current: s.token_hash == token_hash,
                session_id: s.token_hash.chars().take(SESSION_ID_CHARS).collect(),
                device: s.device,
                created_at: Some(timestamp(s.created_at_ms)),
                revoked: s.revoked,
            })
            .collect();
        Ok(Response::new(pb::ListSessionsResponse { sessions }))
    }

    async fn revoke_session(&self, req: Request<pb::RevokeSessionRequest>) -> Result<Response<pb::Empty>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        let r = req.get_ref().clone();
        let account = if r.account_id == 0 { me } else { AccountId(r.account_id) };
        let cmd = Command::RevokeSession { account, session: r.session_id };
        self.signed_write(&req, r.request_id, cmd).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn create_family_account(
        &self,
        req: Request<pb::CreateFamilyAccountRequest>,
    ) -> Result<Response<pb::AccountResponse>, Status> {
        let r = req.get_ref().clone();
        let password_hash = auth::hash_password(&r.password)?;
        let cmd = Command::CreateFamilyAccount {
            patient: PatientId(r.patient_id),
            login: r.login,
            display_name: r.display_name,
            password_hash,
        };
        Ok(Response::new(account_id(self.signed_write(&req, r.request_id, cmd).await?)?))
    }

    async fn stop_account(&self, req: Request<pb::AccountRequest>) -> Result<Response<pb::AccountResponse>, Status> {
        let r = req.get_ref().clone();
        let out =
            self.signed_write(&req, r.request_id, Command::StopAccount { account: AccountId(r.account_id) }).await?;
        Ok(Response::new(account_id(out)?))
    }

    async fn get_session_policy(
        &self,
        req: Request<pb::GetSessionPolicyRequest>,
    ) -> Result<Response<pb::GetSessionPolicyResponse>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        let policy = self.query(|hub| {
            authz::operator(hub, me).map_err(domain_status)?;
            Ok(session_policy_view(hub.settings()))
        })?;
        Ok(Response::new(pb::GetSessionPolicyResponse { policy: Some(policy) }))
    }

    async fn set_session_policy(
        &self,
        req: Request<pb::SetSessionPolicyRequest>,
    ) -> Result<Response<pb::SetSessionPolicyResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::SetSessionPolicy { idle_minutes: r.idle_minutes, absolute_hours: r.absolute_hours };
        self.signed_write(&req, r.request_id, cmd).await?;
        let policy = pb::SessionPolicy { idle_minutes: r.idle_minutes, absolute_hours: r.absolute_hours };
        Ok(Response::new(pb::SetSessionPolicyResponse { policy: Some(policy) }))
    }
}

fn session_policy_view(s: HubSettings) -> pb::SessionPolicy {
    pb::SessionPolicy { idle_minutes: s.session_idle_minutes, absolute_hours: s.session_absolute_hours }
}

// ---------------------------------------------------------------- rooms

#[tonic::async_trait]
impl pb::rooms_server::Rooms for CollabApi {
    async fn create_patient(
        &self,
        req: Request<pb::CreatePatientRequest>,
    ) -> Result<Response<pb::CreatePatientResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::CreatePatient {
            name: r.name,
            kana: r.kana,
            birth_date: r.birth_date,
            address: r.address,
            notes: r.notes,
        };
        match self.signed_write(&req, r.request_id, cmd).await? {
            Outcome::Patient { patient, timeline } => {
                Ok(Response::new(pb::CreatePatientResponse { patient_id: patient.0, room_id: timeline.0 }))
            }
            other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn create_group(&self, req: Request<pb::CreateGroupRequest>) -> Result<Response<pb::RoomResponse>, Status> {
        let r = req.get_ref().clone();
        Ok(Response::new(room_id(self.signed_write(&req, r.request_id, Command::CreateGroup { name: r.name }).await?)?))
    }

    async fn create_sub_room(
        &self,
        req: Request<pb::CreateSubRoomRequest>,
    ) -> Result<Response<pb::RoomResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::CreateSubRoom {
            timeline: RoomId(r.timeline_room_id),
            name: r.name,
            members: r.member_ids.into_iter().map(AccountId).collect(),
        };
        Ok(Response::new(room_id(self.signed_write(&req, r.request_id, cmd).await?)?))
    }

    async fn invite(&self, req: Request<pb::InviteRequest>) -> Result<Response<pb::RoomResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::Invite { room: RoomId(r.room_id), invitee: AccountId(r.account_id), role: role(r.role)? };
        Ok(Response::new(room_id(self.signed_write(&req, r.request_id, cmd).await?)?))
    }

    async fn approve(&self, req: Request<pb::MemberRequest>) -> Result<Response<pb::RoomResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::Approve { room: RoomId(r.room_id), account: AccountId(r.account_id) };
        Ok(Response::new(room_id(self.signed_write(&req, r.request_id, cmd).await?)?))
    }

    async fn request_join(&self, req: Request<pb::RoomRequest>) -> Result<Response<pb::RoomResponse>, Status> {
        let r = req.get_ref().clone();
        Ok(Response::new(room_id(
            self.signed_write(&req, r.request_id, Command::RequestJoin { room: RoomId(r.room_id) }).await?,
        )?))
    }

    async fn leave(&self, req: Request<pb::RoomRequest>) -> Result<Response<pb::RoomResponse>, Status> {
        let r = req.get_ref().clone();
        self.signed_write(&req, r.request_id, Command::Leave { room: RoomId(r.room_id) }).await?;
        Ok(Response::new(pb::RoomResponse { room_id: r.room_id }))
    }

    async fn remove(&self, req: Request<pb::MemberRequest>) -> Result<Response<pb::RoomResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::Remove { room: RoomId(r.room_id), account: AccountId(r.account_id) };
        self.signed_write(&req, r.request_id, cmd).await?;
        Ok(Response::new(pb::RoomResponse { room_id: r.room_id }))
    }

    async fn list_rooms(&self, req: Request<pb::ListRoomsRequest>) -> Result<Response<pb::ListRoomsResponse>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        let kind = match pb::RoomListKind::try_from(req.get_ref().kind).unwrap_or(pb::RoomListKind::Unspecified) {
            pb::RoomListKind::Groups => ListKind::Groups,
            pb::RoomListKind::Connections => ListKind::Connections,
            pb::RoomListKind::Patients | pb::RoomListKind::Unspecified => ListKind::Patients,
        };
        let (filter, unread_only) = (search::normalize(&req.get_ref().filter), req.get_ref().unread_only);
        let list = self
            .query(|hub| queries::room_list(hub, me, kind).map_err(domain_status))?
            .into_iter()
            .filter(|s| s.any_room(|r| search::normalize(&r.title).contains(&filter)))
            .filter(|s| !unread_only || s.any_room(|r| r.unread > 0));
        if kind == ListKind::Patients {
            self.audit_read(me, &token_hash, None, None, "patient list".into())?;
        }
        Ok(Response::new(pb::ListRoomsResponse { rooms: list.map(room_summary_view).collect() }))
    }
}

fn room_summary_view(s: queries::RoomSummary) -> pb::RoomSummary {
    pb::RoomSummary {
        room_id: s.room.0,
        title: s.title,
        last_seq: s.last_seq,
        last_post_at: Some(timestamp(s.last_post_at_ms)),
        unread: s.unread,
        preview: s.preview,
        sub_rooms: s.sub_rooms.into_iter().map(room_summary_view).collect(),
    }
}

// ---------------------------------------------------------------- connections

impl CollabApi {
    async fn connection(
        &self,
        req: Request<pb::ConnectionRequest>,
        make: fn(AccountId) -> Command,
    ) -> Result<Response<pb::ConnectionResponse>, Status> {
        let r = req.get_ref().clone();
        let room_id = match self.signed_write(&req, r.request_id, make(AccountId(r.account_id))).await? {
            Outcome::Room(room) => room.0,
            _ => 0,
        };
        Ok(Response::new(pb::ConnectionResponse { room_id }))
    }
}

#[tonic::async_trait]
impl pb::connections_server::Connections for CollabApi {
    async fn request(&self, req: Request<pb::ConnectionRequest>) -> Result<Response<pb::ConnectionResponse>, Status> {
        self.connection(req, |to| Command::RequestConnection { to }).await
    }
    async fn accept(&self, req: Request<pb::ConnectionRequest>) -> Result<Response<pb::ConnectionResponse>, Status> {
        self.connection(req, |from| Command::AcceptConnection { from }).await
    }
    async fn decline(&self, req: Request<pb::ConnectionRequest>) -> Result<Response<pb::ConnectionResponse>, Status> {
        self.connection(req, |from| Command::DeclineConnection { from }).await
    }
    async fn block(&self, req: Request<pb::ConnectionRequest>) -> Result<Response<pb::ConnectionResponse>, Status> {
        self.connection(req, |other| Command::BlockConnection { other }).await
    }
}

// ---------------------------------------------------------------- posts

#[tonic::async_trait]
impl pb::posts_server::Posts for CollabApi {
    async fn post(&self, req: Request<pb::PostRequest>) -> Result<Response<pb::PostResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::Post {
            room: RoomId(r.room_id),
            text: r.text,
            reply_to: (r.reply_to != 0).then_some(r.reply_to),
            mentions: r.mention_ids.into_iter().map(AccountId).collect(),
        };
        match self.signed_write(&req, r.request_id, cmd).await? {
            Outcome::Posted { room, seq } => Ok(Response::new(pb::PostResponse { room_id: room.0, seq })),
            other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn edit(&self, req: Request<pb::EditPostRequest>) -> Result<Response<pb::PostResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::EditPost { room: RoomId(r.room_id), seq: r.seq, text: r.text };
        self.signed_write(&req, r.request_id, cmd).await?;
        Ok(Response::new(pb::PostResponse { room_id: r.room_id, seq: r.seq }))
    }

    async fn delete(&self, req: Request<pb::PostRef>) -> Result<Response<pb::PostResponse>, Status> {
        let r = req.get_ref().clone();
        self.signed_write(&req, r.request_id, Command::DeletePost { room: RoomId(r.room_id), seq: r.seq }).await?;
        Ok(Response::new(pb::PostResponse { room_id: r.room_id, seq: r.seq }))
    }

    async fn ack(&self, req: Request<pb::PostRef>) -> Result<Response<pb::PostResponse>, Status> {
        let r = req.get_ref().clone();
        self.signed_write(&req, r.request_id, Command::AckPost { room: RoomId(r.room_id), seq: r.seq }).await?;
        Ok(Response::new(pb::PostResponse { room_id: r.room_id, seq: r.seq }))
    }

    async fn mark_read(&self, req: Request<pb::MarkReadRequest>) -> Result<Response<pb::PostResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::MarkRead { room: RoomId(r.room_id), up_to_seq: r.up_to_seq };
        self.signed_write(&req, r.request_id, cmd).await?;
        Ok(Response::new(pb::PostResponse { room_id: r.room_id, seq: r.up_to_seq }))
    }

    async fn timeline(&self, req: Request<pb::TimelineRequest>) -> Result<Response<pb::TimelineResponse>, Status> {
        let (me, token_hash, stale_reason) = self.authenticate_fresh(&req).await?;
        let r = req.into_inner();
        let limit = super::bounded("limit", u64::from(r.limit), 50, 200)? as usize;
        let order = timeline_order(r.order)?;
        let query = TimelineQuery { after_seq: r.after_seq, before_seq: r.before_seq, order, limit };
        let room = RoomId(r.room_id);
        let answer = self.query(|hub| {
            let page = queries::timeline(hub, me, room, query).map_err(domain_status)?;
            if let Some(patient) = audit::patient_of(hub, room) {
                self.audit_read(me, &token_hash, Some(patient), Some(room), timeline_read(&page))?;
            }
            Ok(pb::TimelineResponse {
                posts: page.posts.into_iter().map(|p| post_view(hub, p)).collect(),
                next_after_seq: page.next_after_seq,
                next_before_seq: page.next_before_seq,
                stale: stale_reason.is_some(),
                stale_reason: stale_reason.unwrap_or_default(),
            })
        })?;
        Ok(Response::new(answer))
    }
}

fn timeline_order(asked: i32) -> Result<TimelineOrder, Status> {
    match pb::TimelineOrder::try_from(asked) {
        Ok(pb::TimelineOrder::OldestFirst) => Ok(TimelineOrder::OldestFirst),
        Ok(pb::TimelineOrder::NewestFirst | pb::TimelineOrder::Unspecified) => Ok(TimelineOrder::NewestFirst),
        Err(_) => Err(Status::invalid_argument(format!("order {asked}: no such timeline order"))),
    }
}

/// What a timeline read showed, for the audit log: which posts (their seqs are dense).
fn timeline_read(page: &TimelinePage) -> String {
    let seqs = || page.posts.iter().map(|p| p.seq);
    match (seqs().min(), seqs().max()) {
        (Some(first), Some(last)) => format!("timeline posts #{first}..=#{last} ({} posts)", page.posts.len()),
        _ => "timeline (no posts)".into(),
    }
}

/// A post as members see it: with sender, profession, facility and time.
pub(super) fn post_view(hub: &impl HubView, p: Post) -> pb::Post {
    let author = hub.account(p.author);
    let (profession, facility) = match author.as_ref().map(|a| &a.kind) {
        Some(AccountKind::Professional { facility, profession }) => {
            (profession.label().to_owned(), hub.facility(*facility).map(|f| f.name).unwrap_or_default())
        }
        Some(AccountKind::Family { .. }) => ("家族".to_owned(), String::new()),
        Some(AccountKind::Operator) => ("事務局".to_owned(), String::new()),
        None => (String::new(), String::new()),
    };
    pb::Post {
        seq: p.seq,
        author_id: p.author.0,
        author_name: author.map(|a| a.display_name).unwrap_or_default(),
        author_profession: profession,
        author_facility: facility,
        text: p.text,
        reply_to: p.reply_to.unwrap_or(0),
        mention_ids: p.mentions.into_iter().map(|m| m.0).collect(),
        posted_at: Some(timestamp(p.posted_at_ms)),
        edited: !p.deleted && !p.history.is_empty(),
        deleted: p.deleted,
        ack_ids: p.acks.into_iter().map(|a| a.0).collect(),
    }
}

// ---------------------------------------------------------------- events

fn event_view(e: &Event) -> pb::Event {
    use pb::event::Kind;
    let kind = match e.kind {
        EventKind::Posted { seq } => Kind::PostedSeq(seq),
        EventKind::PostUpdated { seq } => Kind::PostUpdatedSeq(seq),
        EventKind::Membership => Kind::MembershipChanged(true),
        EventKind::Read { seq, .. } => Kind::ReadUpToSeq(seq),
        EventKind::Request { id } => Kind::CareRequestUpdated(id.0),
    };
    pb::Event { cursor: e.cursor, room_id: e.room.0, at: Some(timestamp(e.at_ms)), kind: Some(kind) }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl pb::events_server::Events for CollabApi {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Result<Response<EventStream>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        let after = match req.into_inner().after_cursor {
            // Only new events: start after everything applied so far (authenticate made the
            // node's state current).
            0 => events::cursor_after(
                self.node.state.applied().map_err(|e| Status::internal(e.to_string()))?.map_or(0, |l| l.index),
            ),
            cursor => cursor,
        };
        let api = self.clone();
        // Listen before reading the stored events, so nothing falls between the two.
        let live = api.node.state.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            // The node stopping, or stopping to apply the log, ends the stream; the client
            // resumes elsewhere from its cursor.
            let ended = tokio::select! {
                ended = feed_events(&api, me, &token_hash, after, live, &tx) => ended,
                fault = api.node.stopped_applying() => match fault {
                    Some(fault) => Err(NodeError::ApplyStopped(fault).into_status()),
                    None => Ok(()),
                },
            };
            if let Err(status) = ended {
                let _ = tx.send(Err(status)).await;
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Feeds the events `me` may see after `cursor` into `tx`: the stored ones, then the live ones
/// (back to the stored ones after falling behind). Ends quietly when the client leaves; with a
/// status when the session ends or this node cannot read its events.
async fn feed_events(
    api: &CollabApi,
    me: AccountId,
    token_hash: &str,
    mut cursor: u64,
    mut live: tokio::sync::broadcast::Receiver<Event>,
    tx: &tokio::sync::mpsc::Sender<Result<pb::Event, Status>>,
) -> Result<(), Status> {
    use tokio::sync::broadcast::error::RecvError;
    let visible = |e: &Event| api.query(|hub| Ok(visible_to(hub, me, e)));
    let ended = || Status::unauthenticated("the session has ended");
    loop {
        // Catch up from the stored events (also after the live channel lagged).
        loop {
            let stored = api.node.state.events_after(cursor, 256).map_err(read_fault_status)?;
            if stored.is_empty() {
                break;
            }
            for e in stored {
                cursor = e.cursor;
                if visible(&e)? && tx.send(Ok(event_view(&e))).await.is_err() {
                    return Ok(());
                }
            }
        }
        loop {
            match live.recv().await {
                Ok(e) if e.cursor <= cursor => {}
                Ok(e) => {
                    let now = now_ms();
                    api.query(|hub| {
                        queries::authenticate(hub, token_hash, now, now, SessionPolicy::of(hub)).map_err(|_| ended())
                    })?;
                    cursor = e.cursor;
                    if visible(&e)? && tx.send(Ok(event_view(&e))).await.is_err() {
                        return Ok(());
                    }
                }
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return Ok(()),
            }
        }
    }
}

// ---------------------------------------------------------------- audit

impl CollabApi {
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
        let (me, _, stale) = self.authenticate_on(req, from).await?;
        self.query(|hub| authz::operator(hub, me).map_err(domain_status))?;
        Ok((me, stale))
    }
}

fn audit_view(e: audit::AuditEntry) -> pb::AuditEntry {
    pb::AuditEntry {
        seq: e.seq,
        at: Some(timestamp(e.record.at_ms)),
        account_id: e.record.account.0,
        session: e.record.session,
        node_id: e.record.node,
        action: match e.record.action {
            AuditAction::Read => "read".into(),
            AuditAction::Write => "write".into(),
        },
        patient_id: e.record.patient.map_or(0, |p| p.0),
        room_id: e.record.room.map_or(0, |r| r.0),
        what: e.record.what,
        prev_hash: e.prev_hash,
        hash: e.hash,
        hash_version: e.hash_version.into(),
    }
}

#[tonic::async_trait]
impl pb::audit_server::Audit for CollabApi {
    async fn query(&self, req: Request<pb::AuditQueryRequest>) -> Result<Response<pb::AuditQueryResponse>, Status> {
        self.operator(&req).await?;
        let r = req.into_inner();
        let limit = super::bounded("limit", u64::from(r.limit), 200, 1000)? as usize;
        let mut entries = Vec::new();
        let mut after = r.after_seq;
        let mut exhausted = false;
        while entries.len() < limit {
            let page = self.query(|hub| Ok(hub.audit_after(after, 1000)))?;
            if page.is_empty() {
                exhausted = true;
                break;
            }
            for e in page {
                after = e.seq;
                let account_ok = r.account_id == 0 || e.record.account.0 == r.account_id;
                let patient_ok = r.patient_id == 0 || e.record.patient.map(|p| p.0) == Some(r.patient_id);
                if account_ok && patient_ok {
                    entries.push(audit_view(e));
                    if entries.len() == limit {
                        break;
                    }
                }
            }
        }
        let next_after_seq = if exhausted { 0 } else { after };
        Ok(Response::new(pb::AuditQueryResponse { entries, next_after_seq }))
    }

    async fn verify(&self, req: Request<pb::VerifyAuditRequest>) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        self.operator(&req).await?;
        let api = self.clone();
        // Walks the whole chain: off the async threads.
        let result = tokio::task::spawn_blocking(move || {
            api.query(|hub| {
                let mut after = 0;
                let mut all = Vec::new();
                loop {
                    let page = hub.audit_after(after, 10_000);
                    let Some(last) = page.last() else { break };
                    after = last.seq;
                    all.extend(page);
                }
                Ok(audit::verify(all))
            })
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(match result {
            Ok(verified) => pb::VerifyAuditResponse { intact: true, verified, broken_at_seq: 0, reason: String::new() },
            Err(b) => pb::VerifyAuditResponse {
                intact: false,
                verified: b.seq.saturating_sub(1),
                broken_at_seq: b.seq,
                reason: b.reason,
            },
        }))
    }
}
