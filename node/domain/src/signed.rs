//! Applying one command on behalf of whoever sent it: the one place that turns a session into
//! an acting account, runs the command's decision and says what the audit chain records.
//!
//! The store only persists what [`decide`] returns, so every node, with the same log, records
//! the same accounts acting, the same refusals and the same audit entries.

use super::audit::{AuditAction, AuditRecord};
use super::commands::{Command, execute};
use super::error::{DomainError, DomainResult};
use super::kernel::{Ctx, Effects, SESSION_ID_CHARS, Trail};
use super::model::AccountId;
use super::queries::session_actor;
use super::view::HubView;

/// Who sent a command: the hash of the session token it came with (None: not signed in) and
/// the node that proposed it.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    pub session: Option<&'a str>,
    pub origin_node: u64,
}

/// What applying a command does: its effects and, when a signed-in account changed patient
/// data, the entry the audit chain gets.
#[derive(Debug)]
pub struct Decision {
    pub effects: Effects,
    pub audit: Option<AuditRecord>,
}

/// Decides `command` sent by `sender`. A session that is unknown, revoked, past the hub's
/// absolute lifetime or of a stopped account acts for nobody: the command is refused as
/// unauthenticated. A state that cannot be read is never mistaken for such a refusal.
pub fn decide(view: &impl HubView, ctx: Ctx, sender: Sender<'_>, command: Command) -> DomainResult<Decision> {
    let actor = match sender.session {
        None => None,
        Some(token_hash) => Some(session_actor(view, token_hash, ctx.now_ms).map_err(|e| match e {
            DomainError::Unreadable(fault) => DomainError::Unreadable(fault),
            _ => DomainError::Unauthenticated,
        })?),
    };
    // An issued password is changed before anything else (crate::password_policy).
    if let Some(account) = actor
        && view.password_issued(account)?
        && !crate::password_policy::allowed_while_issued(&command)
    {
        return Err(crate::password_policy::issued_refusal());
    }
    let effects = execute(view, ctx, actor, command)?;
    let audit = match (actor, &effects.audit) {
        (Some(account), Some(trail)) => Some(write_record(ctx, sender, account, trail)),
        _ => None,
    };
    Ok(Decision { effects, audit })
}

/// The audit entry of a write: who (account and the session's short id), through which node,
/// when (the log's clock), and which patient data.
fn write_record(ctx: Ctx, sender: Sender<'_>, account: AccountId, trail: &Trail) -> AuditRecord {
    AuditRecord {
        at_ms: ctx.now_ms,
        account,
        session: sender.session.unwrap_or("").chars().take(SESSION_ID_CHARS).collect(),
        node: sender.origin_node,
        action: AuditAction::Write,
        patient: trail.patient,
        room: trail.room,
        what: trail.what.to_owned(),
        #[cfg(test)]
        added_later: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use crate::requests::CareRequest;
    use crate::view::{MemHub, ViewError, ViewResult};

    /// A view whose every read fails, as a RocksDB view that met a damaged value.
    struct Unreadable;

    fn broken<T>() -> ViewResult<T> {
        Err(ViewError("damaged value at A/1".into()))
    }

    impl HubView for Unreadable {
        fn account(&self, _: AccountId) -> ViewResult<Option<Account>> {
            broken()
        }
        fn account_by_login(&self, _: &str) -> ViewResult<Option<AccountId>> {
            broken()
        }
        fn facility(&self, _: FacilityId) -> ViewResult<Option<Facility>> {
            broken()
        }
        fn facilities(&self) -> ViewResult<Vec<Facility>> {
            broken()
        }
        fn staff_of(&self, _: FacilityId) -> ViewResult<Vec<Account>> {
            broken()
        }
        fn invitation_by_code(&self, _: &str) -> ViewResult<Option<Invitation>> {
            broken()
        }
        fn patient(&self, _: PatientId) -> ViewResult<Option<Patient>> {
            broken()
        }
        fn room(&self, _: RoomId) -> ViewResult<Option<Room>> {
            broken()
        }
        fn member(&self, _: RoomId, _: AccountId) -> ViewResult<Option<Member>> {
            broken()
        }
        fn members(&self, _: RoomId) -> ViewResult<Vec<Member>> {
            broken()
        }
        fn rooms_of(&self, _: AccountId) -> ViewResult<Vec<Member>> {
            broken()
        }
        fn post(&self, _: RoomId, _: u64) -> ViewResult<Option<Post>> {
            broken()
        }
        fn posts_with_bigrams(&self, _: RoomId, _: &std::collections::BTreeSet<String>) -> ViewResult<Vec<u64>> {
            broken()
        }
        fn connection(&self, _: (AccountId, AccountId)) -> ViewResult<Option<Connection>> {
            broken()
        }
        fn connections_of(&self, _: AccountId) -> ViewResult<Vec<Connection>> {
            broken()
        }
        fn session(&self, _: &str) -> ViewResult<Option<Session>> {
            broken()
        }
        fn sessions_of(&self, _: AccountId) -> ViewResult<Vec<Session>> {
            broken()
        }
        fn has_operator(&self) -> ViewResult<bool> {
            broken()
        }
        fn care_request(&self, _: RequestId) -> ViewResult<Option<CareRequest>> {
            broken()
        }
        fn care_requests_from(&self, _: AccountId) -> ViewResult<Vec<CareRequest>> {
            broken()
        }
        fn care_requests_to(&self, _: FacilityId) -> ViewResult<Vec<CareRequest>> {
            broken()
        }
        fn inbound(&self, _: &crate::federation::HubName) -> ViewResult<crate::federation::Inbound> {
            broken()
        }
        fn settings(&self) -> ViewResult<HubSettings> {
            broken()
        }
        fn outbound(&self, _: &crate::federation::HubName) -> ViewResult<crate::federation::Outbound> {
            broken()
        }
        fn mirror_of(&self, _: &crate::federation::HubName, _: RoomId) -> ViewResult<Option<RoomId>> {
            broken()
        }
        fn pending_write(&self, _: u64) -> ViewResult<Option<crate::federation::PendingWrite>> {
            broken()
        }
        fn pending_in(&self, _: RoomId) -> ViewResult<Vec<crate::federation::PendingWrite>> {
            broken()
        }
        fn heard_from(&self, _: &crate::federation::HubName) -> ViewResult<Option<u64>> {
            broken()
        }
        fn federation_paused(&self, _: &crate::federation::HubName) -> ViewResult<bool> {
            broken()
        }
        fn directory_shared_with(&self) -> ViewResult<Vec<crate::federation::HubName>> {
            broken()
        }
        fn remote_facility(&self, _: FacilityId) -> ViewResult<Option<RemoteFacility>> {
            broken()
        }
        fn remote_facilities(&self) -> ViewResult<Vec<RemoteFacility>> {
            broken()
        }
        fn request_link(&self, _: RequestId) -> ViewResult<Option<RequestLink>> {
            broken()
        }
        fn notification_settings(&self, _: AccountId) -> ViewResult<Option<crate::notify::NotificationSettings>> {
            broken()
        }
        fn notice(&self, _: AccountId, _: RoomId) -> ViewResult<Option<crate::notify::Notice>> {
            broken()
        }
        fn notices(&self) -> ViewResult<Vec<crate::notify::Notice>> {
            broken()
        }
        fn blob(&self, _: crate::attachments::BlobHash) -> ViewResult<Option<crate::attachments::Blob>> {
            broken()
        }
        fn attachment(&self, _: AttachmentId) -> ViewResult<Option<crate::attachments::Attachment>> {
            broken()
        }
        fn post_files(&self, _: RoomId, _: u64) -> ViewResult<Vec<AttachmentId>> {
            broken()
        }
        fn unused_attachments(&self, _: u64, _: usize) -> ViewResult<Vec<AttachmentId>> {
            broken()
        }
        fn unclaimed_blobs(&self, _: u64, _: usize) -> ViewResult<Vec<crate::attachments::BlobHash>> {
            broken()
        }
        fn stored_bytes(&self) -> ViewResult<u64> {
            broken()
        }
        fn fetch(
            &self,
            _: crate::attachments::BlobHash,
            _: &crate::federation::HubName,
        ) -> ViewResult<Option<crate::attachments::Fetch>> {
            broken()
        }
        fn fetches(&self, _: usize) -> ViewResult<Vec<crate::attachments::Fetch>> {
            broken()
        }
        fn proven(&self, _: &crate::federation::HubName, _: crate::attachments::BlobHash) -> ViewResult<bool> {
            broken()
        }
        fn push_subscriptions(&self, _: AccountId) -> ViewResult<Vec<crate::push::PushSubscription>> {
            broken()
        }
        fn push_notice(&self, _: AccountId, _: RoomId) -> ViewResult<Option<crate::notify::Notice>> {
            broken()
        }
        fn push_notices(&self) -> ViewResult<Vec<crate::notify::Notice>> {
            broken()
        }
        fn login_guard(&self, _: &crate::login_guard::Guarded) -> ViewResult<Option<crate::login_guard::LoginGuard>> {
            broken()
        }
        fn second_factor_policy(&self) -> ViewResult<crate::second_factor_policy::SecondFactorPolicy> {
            broken()
        }
        fn password_policy(&self) -> ViewResult<crate::password_policy::PasswordPolicy> {
            broken()
        }
        fn apply_version(&self) -> ViewResult<u32> {
            broken()
        }
        fn password_issued(&self, _: AccountId) -> ViewResult<bool> {
            broken()
        }
        fn break_glass(&self, _: AccountId) -> ViewResult<Option<crate::emergency::Designation>> {
            broken()
        }
        fn emergency_access(&self, _: RoomId, _: AccountId) -> ViewResult<Option<crate::emergency::EmergencyAccess>> {
            broken()
        }
        fn emergency_accesses(&self) -> ViewResult<Vec<crate::emergency::EmergencyAccess>> {
            broken()
        }
        fn disasters(&self) -> ViewResult<Vec<crate::disaster::Disaster>> {
            broken()
        }
        fn disaster_policy(&self) -> ViewResult<crate::disaster::DisasterPolicy> {
            broken()
        }
        fn care_profile(&self, _: PatientId) -> ViewResult<Option<crate::disaster::CareProfile>> {
            broken()
        }
        fn patients_in(&self, _: &str) -> ViewResult<Vec<PatientId>> {
            broken()
        }
        fn observation_fate(&self, _: crate::disaster::ObservationId) -> ViewResult<Option<crate::disaster::Fate>> {
            broken()
        }
        fn current_observation(
            &self,
            _: DisasterId,
            _: crate::disaster::Subject,
        ) -> ViewResult<Option<crate::disaster::Observation>> {
            broken()
        }
        fn current_observations(&self, _: DisasterId) -> ViewResult<Vec<crate::disaster::Observation>> {
            broken()
        }
        fn observations_of(
            &self,
            _: DisasterId,
            _: crate::disaster::Subject,
        ) -> ViewResult<Vec<crate::disaster::Observation>> {
            broken()
        }
        fn record(&self, _: &str) -> ViewResult<Option<crate::records::Record>> {
            broken()
        }
    }

    const CTX: Ctx = Ctx { log_index: 1, now_ms: 1_000 };

    fn signed_in(session: &str) -> Sender<'_> {
        Sender { session: Some(session), origin_node: 2 }
    }

    #[test]
    fn an_unreadable_session_is_a_fault_not_a_sign_out() {
        let post = Command::Post { room: RoomId(1), text: "血圧は安定".into(), reply_to: None, mentions: vec![] };
        let decided = decide(&Unreadable, CTX, signed_in("token"), post);
        assert!(matches!(decided, Err(DomainError::Unreadable(_))), "{decided:?}");
    }

    #[test]
    fn an_unknown_session_acts_for_nobody() {
        let post = Command::Post { room: RoomId(1), text: "血圧は安定".into(), reply_to: None, mentions: vec![] };
        let decided = decide(&MemHub::default(), CTX, signed_in("token"), post);
        assert!(matches!(decided, Err(DomainError::Unauthenticated)), "{decided:?}");
    }

    #[test]
    fn the_first_operator_needs_no_session_and_leaves_no_write_audit() {
        let init =
            Command::InitOperator { login: "op".into(), display_name: "運用者".into(), password_hash: "h".into() };
        let decided = decide(&MemHub::default(), CTX, Sender { session: None, origin_node: 1 }, init).expect("decided");
        assert!(decided.audit.is_none());
        assert!(!decided.effects.changes.is_empty());
    }
}
