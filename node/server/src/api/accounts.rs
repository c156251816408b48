//! The AccountService: the first operator, facilities' registration and invitations, accounts,
//! sessions (login, logout, devices), the second factor and the hub's session policy.

use kizuna_proto::accounts as pb;
use tonic::{Request, Response, Status};

use super::auth;
use super::convert::{account_kind, facility_kind_from, profession_from, timestamp};
use super::paging::{self, PageToken};
use super::shared::{Api, domain_status, shown, unexpected, view_status};
use crate::node::now_ms;
use kizuna_domain::commands::SESSION_ID_CHARS;
use kizuna_domain::login_guard::{self, Guarded};
use kizuna_domain::model::*;
use kizuna_domain::second_factor_policy;
use kizuna_domain::{Command, CommandResult, HubView, Outcome, authz, notify, queries, second_factor};

fn account_id(o: Outcome) -> Result<u64, Status> {
    match o {
        Outcome::Account(id) | Outcome::Session(id) => Ok(id.0),
        other => Err(unexpected(other)),
    }
}

/// The account a call is about: the caller's own when unset.
fn account_or_me(asked: Option<u64>, me: AccountId) -> AccountId {
    asked.map_or(me, AccountId)
}

fn session_policy_view(s: HubSettings) -> pb::SessionPolicy {
    pb::SessionPolicy { idle_minutes: s.session_idle_minutes, absolute_hours: s.session_absolute_hours }
}

impl Api {
    /// Checks login and password (and the second factor), then opens a session for a new token.
    /// A locked login or address is refused before anything is checked; a refusal is recorded
    /// hub-wide (`kizuna_domain::login_guard`).
    async fn login_checked(&self, r: pb::LoginRequest, source: String) -> Result<pb::LoginResponse, Status> {
        self.fresh().await?;
        let _turn = self.sign_in_turns.take(&r.login).await;
        self.refuse_locked(&r.login, &source)?;
        let refused = || Status::unauthenticated("wrong login or password, or the account is not active");
        let account = self.query(|hub| match hub.account_by_login(&r.login).map_err(view_status)? {
            Some(id) => hub.account(id).map_err(view_status),
            None => Ok(None),
        })?;
        // An unknown login is checked against a dummy hash, so that it costs what a wrong
        // password costs: the answer's timing must not tell which logins exist.
        let phc = account.as_ref().map(|a| a.password_hash.clone());
        // Verify off the async threads: argon2id is deliberately slow, and takes 19 MiB a
        // time — a few at once per node, like new hashes, or a burst of sign-ins (or of
        // guesses) takes the node's memory.
        let _hashing = self.hashing.acquire().await.map_err(|e| Status::internal(e.to_string()))?;
        let password = r.password;
        let ok = tokio::task::spawn_blocking(move || auth::verify_password_or_dummy(&password, phc.as_deref()))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let Some(account) = account.filter(|a| ok && a.is_active()) else {
            return Err(self.failed_login(&r.login, source, refused()).await);
        };
        let code_given = r.totp_code.as_deref().is_some_and(|c| !c.trim().is_empty());
        let totp_step = match second_factor_step(&account, r.totp_code.as_deref()) {
            Ok(step) => step,
            // A wrong code counts; asking for the code (none given yet) does not.
            Err(wrong) if code_given => return Err(self.failed_login(&r.login, source, wrong).await),
            Err(ask) => return Err(ask),
        };
        let token = auth::new_secret()?;
        let token_hash = auth::secret_hash(&token);
        let session = |idempotency_key: String| {
            let cmd = Command::CreateSession {
                login: r.login.clone(),
                token_hash: token_hash.clone(),
                device: r.device.clone(),
                totp_step,
            };
            self.write_once(idempotency_key, None, cmd)
        };
        let (mut outcome, duplicate) = session(r.idempotency_key.clone()).await?;
        if duplicate {
            // A retry of a login that was applied: its token went to a client that never got
            // the answer, and only its hash is stored. Open a session for this token instead
            // (the lost one idles out).
            outcome = session(format!("{}/retry-{}", r.idempotency_key, &token_hash[..16])).await?.0;
        }
        let (due, password_change_required) = self.query(|hub| {
            let due = hub.second_factor_policy().map_err(view_status)?.due_for(&account);
            Ok((due, hub.password_issued(account.id).map_err(view_status)?))
        })?;
        Ok(pb::LoginResponse {
            token,
            account_id: account_id(outcome)?,
            second_factor_due: due.map(timestamp),
            password_change_required,
        })
    }

    /// Refuses a login or address locked by failed sign-ins: the same answer whether the login
    /// exists or not.
    fn refuse_locked(&self, login: &str, source: &str) -> Result<(), Status> {
        let now = now_ms();
        self.query(|hub| {
            for guarded in [Guarded::Login(login.to_owned()), Guarded::Source(source.to_owned())] {
                let guard = hub.login_guard(&guarded).map_err(view_status)?;
                if let Some(until) = login_guard::locked_until(guard.as_ref(), now) {
                    return Err(domain_status(login_guard::throttled(until, now)));
                }
            }
            Ok(())
        })
    }

    /// Records a refused sign-in hub-wide, then answers `refusal`. Recording is best effort: a
    /// node that cannot write (no quorum) still refuses the sign-in.
    async fn failed_login(&self, login: &str, source: String, refusal: Status) -> Status {
        match self.node.state.apply_version() {
            Ok(v) if v >= login_guard::SINCE_APPLY_VERSION => {}
            Ok(_) => return refusal,
            Err(e) => {
                tracing::warn!("a failed sign-in is not counted: the apply version does not read: {e}");
                return refusal;
            }
        }
        let key = match auth::new_secret() {
            Ok(secret) => format!("login-failed/{}", &secret[..24]),
            Err(_) => return refusal,
        };
        // A login longer than any account's is not counted at apply (only its address is):
        // leave it out rather than write it into the log.
        let login = if login.len() > login_guard::MAX_KEY_BYTES { "" } else { login };
        let cmd = Command::LoginFailed { login: login.to_owned(), source };
        if let Err(e) = self.write_once(key, None, cmd).await {
            tracing::warn!("recording a failed sign-in: {e}");
        }
        refusal
    }

    /// Who the caller is.
    async fn me(&self, req: &Request<pb::GetMeRequest>) -> Result<pb::GetMeResponse, Status> {
        let (me, _) = self.authenticate_with_issued_password(req).await?;
        let hub = self.node.raft.config().cluster_name.clone();
        self.query(|view| {
            let account = view.account(me).map_err(view_status)?.ok_or_else(not_signed_in)?;
            let second_factor_due = view.second_factor_policy().map_err(view_status)?.due_for(&account).map(timestamp);
            let password_change_required = view.password_issued(me).map_err(view_status)?;
            let (kind, profession, facility) = account_kind(Some(&account.kind));
            let facility_name = facility.and_then(|f| shown(view.facility(f))).map(|f| f.name).unwrap_or_default();
            Ok(pb::GetMeResponse {
                account_id: me.0,
                kind: kind as i32,
                profession: profession as i32,
                facility_id: facility.map(|f| f.0),
                facility_name,
                facility_admin: facility.is_some() && account.facility_admin,
                totp_enabled: account.totp.as_ref().is_some_and(|t| t.confirmed),
                hub,
                login: account.login,
                display_name: account.display_name,
                second_factor_due,
                password_change_required,
            })
        })
    }

    /// A facility's accounts as its admins see them (ListStaff).
    async fn staff(&self, req: &Request<pb::ListStaffRequest>) -> Result<pb::ListStaffResponse, Status> {
        let (me, _) = self.authenticate(req).await?;
        let facility = FacilityId(req.get_ref().facility_id);
        let now = now_ms();
        let staff = self.query(|view| {
            let staff = queries::staff(view, me, facility).map_err(domain_status)?;
            staff
                .into_iter()
                .map(|a| {
                    let guard = view.login_guard(&Guarded::Login(a.login.clone())).map_err(view_status)?;
                    Ok(staff_view(a, login_guard::locked_until(guard.as_ref(), now)))
                })
                .collect::<Result<Vec<_>, Status>>()
        })?;
        Ok(pb::ListStaffResponse { staff })
    }

    /// Checks the caller's current password, then sets the new one (hashed here: commands
    /// carry hashes) and ends the caller's other sessions.
    async fn change_password_checked(&self, req: &Request<pb::ChangePasswordRequest>) -> Result<(), Status> {
        let (me, token_hash) = self.authenticate_with_issued_password(req).await?;
        let r = req.get_ref().clone();
        self.query(|hub| hub.password_policy().map_err(view_status))?.check(&r.new_password).map_err(domain_status)?;
        if r.new_password == r.current_password {
            // Also an issued password: whoever issued it would still know it.
            return Err(Status::invalid_argument("新しいパスワードは現在のものと違うものにしてください"));
        }
        let phc = self.query(|hub| hub.account(me).map_err(view_status))?.ok_or_else(not_signed_in)?.password_hash;
        // Off the async threads, as at login: argon2id is deliberately slow.
        let (current, new) = (r.current_password, r.new_password);
        let checked = tokio::task::spawn_blocking(move || {
            auth::verify_password(&current, &phc).then(|| auth::hash_password(&new)).transpose()
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        let Some(password_hash) = checked else {
            // A retry of a change that was applied: the current password is the new one by now.
            let retry = self.password_changed_under(me, &r.idempotency_key)?;
            return if retry { Ok(()) } else { Err(wrong_password()) };
        };
        let cmd = Command::ChangePassword { password_hash, token_hash: token_hash.clone() };
        match self.write(r.idempotency_key, Some(token_hash), cmd).await? {
            Outcome::PasswordChanged(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// `password` hashed for a new account or an issued password, once it follows the hub's
    /// rule (this node's copy of it). Hashing runs off the async threads: argon2id is
    /// deliberately slow.
    async fn new_password_hash(&self, password: String) -> Result<String, Status> {
        self.query(|hub| hub.password_policy().map_err(view_status))?.check(&password).map_err(domain_status)?;
        let _turn = self.hashing.acquire().await.map_err(|e| Status::internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || auth::hash_password(&password))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
    }

    /// Whether the caller's write under `idempotency_key` was a change of their password that
    /// applied (any other write remembered under that key is not this change).
    fn password_changed_under(&self, me: AccountId, idempotency_key: &str) -> Result<bool, Status> {
        let applied = self.query(|hub| Ok(hub.remembered(&kizuna_domain::signed_scope(me, idempotency_key))))?;
        Ok(applied.is_some_and(|a| a.result == CommandResult::Done(Outcome::PasswordChanged(me))))
    }

    /// A caller's sessions, newest first, one page of them.
    fn sessions_page(
        &self,
        me: AccountId,
        token_hash: &str,
        r: &pb::ListSessionsRequest,
    ) -> Result<pb::ListSessionsResponse, Status> {
        let size = paging::page_size(r.page_size, 50, 200)?;
        let after = paging::resume(&r.page_token, |t| match t {
            PageToken::Sessions { created_at_ms, session } => Some((created_at_ms, session)),
            _ => None,
        })?;
        let account = account_or_me(r.account_id, me);
        let mut sessions = self.query(|hub| {
            authz::self_or_admin(hub, me, account).map_err(domain_status)?;
            hub.sessions_of(account).map_err(view_status)
        })?;
        let id = |s: &Session| s.token_hash.chars().take(SESSION_ID_CHARS).collect::<String>();
        sessions.sort_by_key(|s| std::cmp::Reverse((s.created_at_ms, id(s))));
        let rest = sessions.into_iter().filter(|s| after.as_ref().is_none_or(|a| (s.created_at_ms, id(s)) < *a));
        let (page, more) = paging::take_page(rest, size);
        let next_page_token = paging::next_token(&page, more, |s| PageToken::Sessions {
            created_at_ms: s.created_at_ms,
            session: id(s),
        })?;
        let sessions = page
            .into_iter()
            .map(|s| pb::Session {
                current: s.token_hash == token_hash,
                session_id: id(&s),
                device: s.device,
                created_at: Some(timestamp(s.created_at_ms)),
                revoked: s.revoked,
            })
            .collect();
        Ok(pb::ListSessionsResponse { sessions, next_page_token })
    }
}

fn not_signed_in() -> Status {
    domain_status(kizuna_domain::DomainError::Unauthenticated)
}

/// PERMISSION_DENIED, not UNAUTHENTICATED: the session itself is fine, and clients take
/// UNAUTHENTICATED as "signed out".
fn wrong_password() -> Status {
    Status::permission_denied("現在のパスワードが違います")
}

/// The time step of the second factor's code, for an account that has one: the code must
/// match a current step.
/// Where sign-ins come from, as they are counted: an IPv4 address, or an IPv6 /64 (one
/// subscriber's network: its hosts pick addresses in it at will).
fn source_of(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn second_factor_step(account: &Account, code: Option<&str>) -> Result<Option<u64>, Status> {
    let Some(t) = account.totp.as_ref().filter(|t| t.confirmed) else { return Ok(None) };
    let code = code.map(str::trim).filter(|c| !c.is_empty()).ok_or_else(|| {
        Status::unauthenticated("this account has a second factor: send the 6-digit code from the authenticator app")
    })?;
    let step = auth::totp_step(&t.secret, code, now_ms())?
        .ok_or_else(|| Status::unauthenticated("wrong or expired code from the authenticator app"))?;
    Ok(Some(step))
}

#[tonic::async_trait]
impl pb::account_service_server::AccountService for Api {
    async fn init_operator(
        &self,
        req: Request<pb::InitOperatorRequest>,
    ) -> Result<Response<pb::InitOperatorResponse>, Status> {
        let r = req.into_inner();
        self.query(|hub| kizuna_domain::accounts::no_operator_yet(hub).map_err(domain_status))?;
        let password_hash = self.new_password_hash(r.password).await?;
        let cmd = Command::InitOperator { login: r.login, display_name: r.display_name, password_hash };
        let account_id = account_id(self.write(r.idempotency_key, None, cmd).await?)?;
        Ok(Response::new(pb::InitOperatorResponse { account_id }))
    }

    async fn login(&self, req: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let source = req.remote_addr().map(|a| source_of(a.ip())).unwrap_or_default();
        Ok(Response::new(self.login_checked(req.into_inner(), source).await?))
    }

    async fn logout(&self, req: Request<pb::LogoutRequest>) -> Result<Response<pb::LogoutResponse>, Status> {
        let (_, token_hash) = self.authenticate_with_issued_password(&req).await?;
        let cmd = Command::Logout { token_hash: token_hash.clone() };
        self.write(req.into_inner().idempotency_key, Some(token_hash), cmd).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        Ok(Response::new(self.sessions_page(me, &token_hash, req.get_ref())?))
    }

    async fn revoke_session(
        &self,
        req: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        let r = req.get_ref().clone();
        let cmd = Command::RevokeSession { account: account_or_me(r.account_id, me), session: r.session_id };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }

    async fn begin_totp(&self, req: Request<pb::BeginTotpRequest>) -> Result<Response<pb::BeginTotpResponse>, Status> {
        let key = req.get_ref().idempotency_key.clone();
        let token = auth::bearer(&req).unwrap_or_default();
        let secret = auth::derived_secret("totp", &token, &key, second_factor::SECRET_BYTES);
        let (_, me, _) =
            self.signed_write_then_catch_up(&req, key, Command::BeginTotp { secret: secret.clone() }).await?;
        let login = self.query(|hub| Ok(hub.account(me).map_err(view_status)?.map(|a| a.login).unwrap_or_default()))?;
        let (secret_base32, otpauth_uri) = auth::totp_enrolment(&secret, &login);
        Ok(Response::new(pb::BeginTotpResponse { secret_base32, otpauth_uri }))
    }

    async fn confirm_totp(
        &self,
        req: Request<pb::ConfirmTotpRequest>,
    ) -> Result<Response<pb::ConfirmTotpResponse>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        let r = req.get_ref().clone();
        let pending =
            self.query(|hub| Ok(hub.account(me).map_err(view_status)?.and_then(|a| a.totp).filter(|t| !t.confirmed)))?;
        let Some(totp) = pending else {
            return Err(Status::failed_precondition("start setting up the second factor first (BeginTotp)"));
        };
        let step = auth::totp_step(&totp.secret, &r.code, now_ms())?
            .ok_or_else(|| Status::invalid_argument("the code does not match: check the app and its clock"))?;
        self.signed_write(&req, r.idempotency_key, Command::ConfirmTotp { step }).await?;
        Ok(Response::new(pb::ConfirmTotpResponse {}))
    }

    async fn disable_totp(
        &self,
        req: Request<pb::DisableTotpRequest>,
    ) -> Result<Response<pb::DisableTotpResponse>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        let r = req.get_ref().clone();
        let account = account_or_me(r.account_id, me);
        // One's own needs a fresh code; an admin's reset of another's does not.
        let own_totp =
            self.query(|hub| Ok(hub.account(me).map_err(view_status)?.and_then(|a| a.totp).filter(|_| account == me)))?;
        let step = match own_totp {
            Some(totp) => auth::totp_step(&totp.secret, &r.code, now_ms())?,
            None => None,
        };
        self.signed_write(&req, r.idempotency_key, Command::DisableTotp { account, step }).await?;
        Ok(Response::new(pb::DisableTotpResponse {}))
    }

    async fn register_facility(
        &self,
        req: Request<pb::RegisterFacilityRequest>,
    ) -> Result<Response<pb::RegisterFacilityResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd =
            Command::RegisterFacility { name: r.name, kind: facility_kind_from(r.kind)?, municipality: r.municipality };
        match self.signed_write(&req, r.idempotency_key, cmd).await? {
            Outcome::Facility(f) => Ok(Response::new(pb::RegisterFacilityResponse { facility_id: f.0 })),
            other => Err(unexpected(other)),
        }
    }

    async fn approve_facility(
        &self,
        req: Request<pb::ApproveFacilityRequest>,
    ) -> Result<Response<pb::ApproveFacilityResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::ApproveFacility { facility: FacilityId(r.facility_id) };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::ApproveFacilityResponse {}))
    }

    async fn issue_invitation(
        &self,
        req: Request<pb::IssueInvitationRequest>,
    ) -> Result<Response<pb::IssueInvitationResponse>, Status> {
        let r = req.get_ref().clone();
        if !(1..=720).contains(&r.valid_hours) {
            return Err(Status::invalid_argument("valid_hours must be 1..=720"));
        }
        // A retried call must not mint a second code, and a random code would differ per retry:
        // the code is derived from the session token and the idempotency key, which only the
        // issuer holds, so a retry answers the same code.
        let token = auth::bearer(&req).unwrap_or_default();
        let code = auth::secret_hash(&format!("invitation|{token}|{}", r.idempotency_key))[..24].to_owned();
        let expires_at_ms = now_ms() + u64::from(r.valid_hours) * 3_600_000;
        let cmd = Command::IssueInvitation {
            facility: FacilityId(r.facility_id),
            code_hash: auth::secret_hash(&code),
            expires_at_ms,
            as_admin: r.as_admin,
        };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::IssueInvitationResponse { code, expires_at: Some(timestamp(expires_at_ms)) }))
    }

    async fn register(&self, req: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = req.into_inner();
        let password_hash = self.new_password_hash(r.password).await?;
        let cmd = Command::Register {
            code_hash: auth::secret_hash(r.invitation_code.trim()),
            login: r.login,
            display_name: r.display_name,
            profession: profession_from(r.profession)?,
            password_hash,
        };
        let account_id = account_id(self.write(r.idempotency_key, None, cmd).await?)?;
        Ok(Response::new(pb::RegisterResponse { account_id }))
    }

    async fn approve_account(
        &self,
        req: Request<pb::ApproveAccountRequest>,
    ) -> Result<Response<pb::ApproveAccountResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::ApproveAccount { account: AccountId(r.account_id) };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::ApproveAccountResponse {}))
    }

    async fn stop_account(
        &self,
        req: Request<pb::StopAccountRequest>,
    ) -> Result<Response<pb::StopAccountResponse>, Status> {
        let r = req.get_ref().clone();
        self.signed_write(&req, r.idempotency_key, Command::StopAccount { account: AccountId(r.account_id) }).await?;
        Ok(Response::new(pb::StopAccountResponse {}))
    }

    async fn create_family_account(
        &self,
        req: Request<pb::CreateFamilyAccountRequest>,
    ) -> Result<Response<pb::CreateFamilyAccountResponse>, Status> {
        let r = req.get_ref().clone();
        let password_hash = self.new_password_hash(r.password.clone()).await?;
        let cmd = Command::CreateFamilyAccount {
            patient: PatientId(r.patient_id),
            login: r.login,
            display_name: r.display_name,
            password_hash,
        };
        let account_id = account_id(self.signed_write(&req, r.idempotency_key, cmd).await?)?;
        Ok(Response::new(pb::CreateFamilyAccountResponse { account_id }))
    }

    async fn get_session_policy(
        &self,
        req: Request<pb::GetSessionPolicyRequest>,
    ) -> Result<Response<pb::GetSessionPolicyResponse>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        let policy = self.query(|hub| {
            authz::operator(hub, me).map_err(domain_status)?;
            Ok(session_policy_view(hub.settings().map_err(view_status)?))
        })?;
        Ok(Response::new(pb::GetSessionPolicyResponse { policy: Some(policy) }))
    }

    async fn set_session_policy(
        &self,
        req: Request<pb::SetSessionPolicyRequest>,
    ) -> Result<Response<pb::SetSessionPolicyResponse>, Status> {
        let r = req.get_ref().clone();
        let policy = r.policy.ok_or_else(|| Status::invalid_argument("policy is required"))?;
        let cmd =
            Command::SetSessionPolicy { idle_minutes: policy.idle_minutes, absolute_hours: policy.absolute_hours };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::SetSessionPolicyResponse { policy: Some(policy) }))
    }

    async fn get_password_policy(
        &self,
        _: Request<pb::GetPasswordPolicyRequest>,
    ) -> Result<Response<pb::GetPasswordPolicyResponse>, Status> {
        // Anyone's to read, signed in or not: whoever registers or replaces an issued password
        // chooses under it, and it tells nothing about any account.
        let policy = self.query(|hub| hub.password_policy().map_err(view_status))?;
        Ok(Response::new(pb::GetPasswordPolicyResponse { min_chars: policy.min_chars, min_kinds: policy.min_kinds }))
    }

    async fn set_password_policy(
        &self,
        req: Request<pb::SetPasswordPolicyRequest>,
    ) -> Result<Response<pb::SetPasswordPolicyResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::SetPasswordPolicy { min_chars: r.min_chars, min_kinds: r.min_kinds };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::SetPasswordPolicyResponse {}))
    }

    async fn issue_password(
        &self,
        req: Request<pb::IssuePasswordRequest>,
    ) -> Result<Response<pb::IssuePasswordResponse>, Status> {
        let r = req.get_ref().clone();
        // Signed in first: an anonymous caller does not get to spend a hash.
        self.authenticate(&req).await?;
        let password_hash = self.new_password_hash(r.password).await?;
        let cmd = Command::IssuePassword { account: AccountId(r.account_id), password_hash };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::IssuePasswordResponse {}))
    }

    async fn get_second_factor_policy(
        &self,
        req: Request<pb::GetSecondFactorPolicyRequest>,
    ) -> Result<Response<pb::GetSecondFactorPolicyResponse>, Status> {
        self.authenticate(&req).await?;
        let policy = self.query(|hub| hub.second_factor_policy().map_err(view_status))?;
        let requirement = |facility_id: Option<u64>, r: &second_factor_policy::Requirement| {
            pb::SecondFactorRequirement { facility_id, due: Some(timestamp(r.due_ms)) }
        };
        let hub_wide = policy.hub.iter().map(|r| requirement(None, r));
        let facilities = policy.facilities.iter().map(|(f, r)| requirement(Some(f.0), r));
        Ok(Response::new(pb::GetSecondFactorPolicyResponse { requirements: hub_wide.chain(facilities).collect() }))
    }

    async fn set_second_factor_policy(
        &self,
        req: Request<pb::SetSecondFactorPolicyRequest>,
    ) -> Result<Response<pb::SetSecondFactorPolicyResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::SetSecondFactorPolicy {
            facility: r.facility_id.map(FacilityId),
            required: r.required,
            grace_days: r.grace_days,
        };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::SetSecondFactorPolicyResponse {}))
    }

    async fn get_me(&self, req: Request<pb::GetMeRequest>) -> Result<Response<pb::GetMeResponse>, Status> {
        Ok(Response::new(self.me(&req).await?))
    }

    async fn change_password(
        &self,
        req: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        self.change_password_checked(&req).await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    async fn list_staff(&self, req: Request<pb::ListStaffRequest>) -> Result<Response<pb::ListStaffResponse>, Status> {
        Ok(Response::new(self.staff(&req).await?))
    }

    async fn get_notification_settings(
        &self,
        req: Request<pb::GetNotificationSettingsRequest>,
    ) -> Result<Response<pb::GetNotificationSettingsResponse>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        let prefs = self.query(|hub| notify::settings_of(hub, me).map_err(view_status))?;
        let browsers = self.query(|hub| hub.push_subscriptions(me).map_err(view_status))?.len();
        Ok(Response::new(pb::GetNotificationSettingsResponse {
            settings: Some(notification_view(prefs)),
            push_public_key: self.node.pusher.as_ref().map(|p| p.public_key().to_owned()).unwrap_or_default(),
            push_subscriptions: u32::try_from(browsers).unwrap_or(u32::MAX),
        }))
    }

    async fn add_push_subscription(
        &self,
        req: Request<pb::AddPushSubscriptionRequest>,
    ) -> Result<Response<pb::AddPushSubscriptionResponse>, Status> {
        let r = req.get_ref().clone();
        if self.node.pusher.is_none() {
            return Err(Status::failed_precondition("this hub sends no push notices (no VAPID key configured)"));
        }
        // The domain accepts loopback http (a relay on the hub's machine); only a hub that
        // allows it lets a user make it POST there.
        if r.endpoint.starts_with("http://") && !self.node.push_allow_loopback_http {
            return Err(Status::invalid_argument("endpoint must be an https URL"));
        }
        let cmd = Command::AddPushSubscription { endpoint: r.endpoint, p256dh: r.p256dh, auth: r.auth };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::AddPushSubscriptionResponse {}))
    }

    async fn remove_push_subscription(
        &self,
        req: Request<pb::RemovePushSubscriptionRequest>,
    ) -> Result<Response<pb::RemovePushSubscriptionResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::RemovePushSubscription { endpoint: r.endpoint };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::RemovePushSubscriptionResponse {}))
    }

    async fn set_notification_settings(
        &self,
        req: Request<pb::SetNotificationSettingsRequest>,
    ) -> Result<Response<pb::SetNotificationSettingsResponse>, Status> {
        let r = req.get_ref().clone();
        let settings = r.settings.ok_or_else(|| Status::invalid_argument("settings are required"))?;
        let prefs = notification_prefs(settings)?;
        let cmd = Command::SetNotificationSettings { prefs };
        let (_, me, _) = self.signed_write_then_catch_up(&req, r.idempotency_key, cmd).await?;
        // The settings as stored, not as asked: a key used before answers what it set then.
        let stored = self.query(|hub| notify::settings_of(hub, me).map_err(view_status))?;
        Ok(Response::new(pb::SetNotificationSettingsResponse { settings: Some(notification_view(stored)) }))
    }
}

fn notification_view(p: notify::NotificationPrefs) -> pb::NotificationSettings {
    pb::NotificationSettings {
        email: p.email,
        email_enabled: p.email_on,
        quiet_hours: p.quiet.map(|q| pb::QuietHours { start_hour: q.start_hour.into(), end_hour: q.end_hour.into() }),
        digest: p.digest,
    }
}

/// The domain's settings from the request's; an hour that is no hour is refused here (the
/// domain checks the rest).
fn notification_prefs(s: pb::NotificationSettings) -> Result<notify::NotificationPrefs, Status> {
    let hour =
        |h: u32| u8::try_from(h).ok().filter(|h| *h < 24).ok_or_else(|| Status::invalid_argument("hours are 0..=23"));
    let quiet = match s.quiet_hours {
        Some(q) => Some(notify::QuietHours { start_hour: hour(q.start_hour)?, end_hour: hour(q.end_hour)? }),
        None => None,
    };
    Ok(notify::NotificationPrefs { email: s.email, email_on: s.email_enabled, quiet, digest: s.digest })
}

/// One of a facility's accounts, for its admins.
fn staff_view(account: Account, locked_until_ms: Option<u64>) -> pb::StaffAccount {
    let state = match account.status {
        AccountStatus::Pending => pb::AccountState::Pending,
        AccountStatus::Active => pb::AccountState::Active,
        AccountStatus::Stopped => pb::AccountState::Stopped,
    };
    let (_, profession, _) = account_kind(Some(&account.kind));
    pb::StaffAccount {
        account_id: account.id.0,
        profession: profession as i32,
        state: state as i32,
        facility_admin: account.facility_admin,
        login: account.login,
        display_name: account.display_name,
        locked_until: locked_until_ms.map(timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::source_of;

    #[test]
    fn sign_ins_count_per_ipv4_address_and_per_ipv6_network() {
        assert_eq!(source_of("192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(source_of("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
        let a = source_of("2001:db8:1:2:aaaa::1".parse().unwrap());
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(source_of("2001:db8:1:2:ffff::9".parse().unwrap()), a, "one network, one count");
        assert_ne!(source_of("2001:db8:1:3::1".parse().unwrap()), a);
    }
}
