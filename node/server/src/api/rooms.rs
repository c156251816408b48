//! The RoomService: patients and their timelines, groups, sub-rooms, membership, and the room
//! lists (patients, groups, connections) with unread counts.

use kizuna_proto::rooms as pb;
use pb::invite_member_request::Invitee;
use tonic::{Request, Response, Status};

use super::convert::{federation_peer, person, remote_login, timestamp};
use super::paging::{self, PageToken};
use super::shared::{Api, domain_status, unexpected, view_status};
use kizuna_domain::model::*;
use kizuna_domain::queries::{self, ListKind, RoomDetail, RoomShape, UnfilledList};
use kizuna_domain::{Command, HubView, Outcome, audit, emergency, search};

fn room_id(o: Outcome) -> Result<u64, Status> {
    match o {
        Outcome::Room(id) => Ok(id.0),
        Outcome::Patient { timeline, .. } => Ok(timeline.0),
        other => Err(unexpected(other)),
    }
}

fn role(r: i32) -> Result<Role, Status> {
    use pb::Role as R;
    match R::try_from(r) {
        Ok(R::Owner) => Ok(Role::Owner),
        Ok(R::Member | R::Unspecified) => Ok(Role::Member),
        Ok(R::Family) => Ok(Role::Family),
        Err(_) => Err(Status::invalid_argument(format!("role {r}: no such role"))),
    }
}

fn role_to(r: Role) -> pb::Role {
    match r {
        Role::Owner => pb::Role::Owner,
        Role::Member => pb::Role::Member,
        Role::Family => pb::Role::Family,
    }
}

fn room_kind_to(shape: RoomShape) -> pb::RoomKind {
    match shape {
        RoomShape::Patient => pb::RoomKind::Patient,
        RoomShape::SubRoom => pb::RoomKind::SubRoom,
        RoomShape::Group => pb::RoomKind::Group,
        RoomShape::Connection => pb::RoomKind::Connection,
    }
}

fn member_state_to(state: MemberState) -> pb::MemberState {
    match state {
        MemberState::Active => pb::MemberState::Active,
        MemberState::Invited { .. } => pb::MemberState::Invited,
        MemberState::Requested => pb::MemberState::Requested,
    }
}

/// A member as the room's members see them (a member whose account is unknown here shows by
/// id only).
fn member_view(hub: &impl HubView, member: Member, account: Option<Account>) -> pb::RoomMember {
    let mut view = pb::RoomMember {
        account_id: member.account.0,
        role: role_to(member.role) as i32,
        state: member_state_to(member.state) as i32,
        ..Default::default()
    };
    if let Some(account) = account {
        let p = person(hub, &account);
        view.kind = p.kind as i32;
        view.profession = p.profession as i32;
        (view.facility, view.hub, view.display_name) = (p.facility, p.hub, account.display_name);
    }
    view
}

fn room_view(hub: &impl HubView, d: RoomDetail) -> pb::GetRoomResponse {
    pb::GetRoomResponse {
        room_id: d.room.id.0,
        title: d.title,
        kind: room_kind_to(d.shape) as i32,
        patient_id: d.patient.map(|p| p.0),
        timeline_room_id: d.timeline.map(|r| r.0),
        my_role: role_to(d.my_role) as i32,
        home_hub: queries::home_hub(&d.room).map(|h| h.to_string()).unwrap_or_default(),
        members: d.members.into_iter().map(|(m, a)| member_view(hub, m, a)).collect(),
        sub_rooms: d.sub_rooms.into_iter().map(room_summary_view).collect(),
    }
}

fn list_kind(k: i32) -> Result<ListKind, Status> {
    use pb::RoomListKind as K;
    match K::try_from(k) {
        Ok(K::Groups) => Ok(ListKind::Groups),
        Ok(K::Connections) => Ok(ListKind::Connections),
        Ok(K::Patients | K::Unspecified) => Ok(ListKind::Patients),
        Err(_) => Err(Status::invalid_argument(format!("kind {k}: no such room list"))),
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
        home_hub: s.home_hub.map(|h| h.to_string()).unwrap_or_default(),
        home_heard_at: s.home_heard_at_ms.map(timestamp),
    }
}

/// An entry's place in the list (newest post first, then the higher room id): the page key.
fn list_key(s: &queries::RoomSummary) -> (u64, u64) {
    (s.newest_post_at_ms(), s.room.0)
}

impl Api {
    /// One page of a room list, filtered as asked.
    fn rooms_page(&self, me: AccountId, r: &pb::ListRoomsRequest) -> Result<pb::ListRoomsResponse, Status> {
        let kind = list_kind(r.kind)?;
        let size = paging::page_size(r.page_size, 100, 500)?;
        let after = paging::resume(&r.page_token, |t| match t {
            PageToken::Rooms { newest_post_at_ms, room } => Some((newest_post_at_ms, room)),
            _ => None,
        })?;
        let filter = search::normalize(r.filter.as_deref().unwrap_or_default());
        // Titles and previews cost a read or two per room: only the page's are read (from the
        // same snapshot), unless the filter needs every title.
        let (page, more) = self.query(|hub| {
            let UnfilledList { mut entries, rooms } =
                queries::room_list_unfilled(hub, me, kind).map_err(domain_status)?;
            if !filter.is_empty() {
                queries::fill(hub, me, &mut entries, &rooms).map_err(view_status)?;
            }
            let list = entries
                .into_iter()
                .filter(|s| after.is_none_or(|a| list_key(s) < a))
                .filter(|s| filter.is_empty() || s.any_room(|r| search::normalize(&r.title).contains(&filter)))
                .filter(|s| !r.unread_only || s.any_room(|r| r.unread > 0));
            let (mut page, more) = paging::take_page(list, size);
            if filter.is_empty() {
                queries::fill(hub, me, &mut page, &rooms).map_err(view_status)?;
            }
            Ok((page, more))
        })?;
        let next_page_token = paging::next_token(&page, more, |s| {
            let (newest_post_at_ms, room) = list_key(s);
            PageToken::Rooms { newest_post_at_ms, room }
        })?;
        Ok(pb::ListRoomsResponse { rooms: page.into_iter().map(room_summary_view).collect(), next_page_token })
    }

    /// One room with its members, for an active member. A patient room's member list is
    /// patient data: its read is journaled, as a timeline's is.
    async fn room(&self, req: &Request<pb::GetRoomRequest>) -> Result<pb::GetRoomResponse, Status> {
        let (me, token_hash) = self.authenticate(req).await?;
        let room = RoomId(req.get_ref().room_id);
        self.query(|hub| {
            let detail = queries::room_detail(hub, me, room).map_err(domain_status)?;
            if let Some(patient) = audit::patient_data_in(hub, room).map_err(view_status)? {
                self.audit_read(me, &token_hash, patient, Some(room), "room members".into())?;
            }
            Ok(room_view(hub, detail))
        })
    }
}

#[tonic::async_trait]
impl pb::room_service_server::RoomService for Api {
    async fn open_emergency_access(
        &self,
        req: Request<pb::OpenEmergencyAccessRequest>,
    ) -> Result<Response<pb::OpenEmergencyAccessResponse>, Status> {
        let r = req.get_ref().clone();
        let room = RoomId(r.room_id);
        let cmd = Command::OpenEmergencyAccess { room, reason: r.reason };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        let (me, _) = self.authenticate(&req).await?;
        let access = self.query(|hub| hub.emergency_access(room, me).map_err(view_status))?;
        let access = access.ok_or_else(|| Status::internal("the emergency access applied but is not in the state"))?;
        metrics::counter!("kizuna_emergency_accesses_opened_total").increment(1);
        tracing::warn!(account = me.0, room = room.0, "EMERGENCY ACCESS opened to a patient's timeline");
        Ok(Response::new(pb::OpenEmergencyAccessResponse { until: Some(timestamp(access.until_ms)) }))
    }

    async fn list_emergency_accesses(
        &self,
        req: Request<pb::ListEmergencyAccessesRequest>,
    ) -> Result<Response<pb::ListEmergencyAccessesResponse>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        let accesses = self.query(|hub| emergency::accesses(hub, me).map_err(domain_status))?;
        let view = |a: emergency::EmergencyAccess| pb::EmergencyAccess {
            account_id: a.account.0,
            room_id: a.room.0,
            patient_id: a.patient.0,
            reason: a.reason,
            opened_at: Some(timestamp(a.opened_at_ms)),
            until: Some(timestamp(a.until_ms)),
        };
        Ok(Response::new(pb::ListEmergencyAccessesResponse { accesses: accesses.into_iter().map(view).collect() }))
    }

    async fn set_break_glass(
        &self,
        req: Request<pb::SetBreakGlassRequest>,
    ) -> Result<Response<pb::SetBreakGlassResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::SetBreakGlass { account: AccountId(r.account_id), allowed: r.allowed };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::SetBreakGlassResponse {}))
    }

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
        match self.signed_write(&req, r.idempotency_key, cmd).await? {
            Outcome::Patient { patient, timeline } => {
                Ok(Response::new(pb::CreatePatientResponse { patient_id: patient.0, room_id: timeline.0 }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn create_group(
        &self,
        req: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        let r = req.get_ref().clone();
        let room_id =
            room_id(self.signed_write(&req, r.idempotency_key, Command::CreateGroup { name: r.name }).await?)?;
        Ok(Response::new(pb::CreateGroupResponse { room_id }))
    }

    async fn create_sub_room(
        &self,
        req: Request<pb::CreateSubRoomRequest>,
    ) -> Result<Response<pb::CreateSubRoomResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::CreateSubRoom {
            timeline: RoomId(r.timeline_room_id),
            name: r.name,
            members: r.member_ids.into_iter().map(AccountId).collect(),
        };
        let room_id = room_id(self.signed_write(&req, r.idempotency_key, cmd).await?)?;
        Ok(Response::new(pb::CreateSubRoomResponse { room_id }))
    }

    async fn invite_member(
        &self,
        req: Request<pb::InviteMemberRequest>,
    ) -> Result<Response<pb::InviteMemberResponse>, Status> {
        let r = req.get_ref().clone();
        let room = RoomId(r.room_id);
        let role = role(r.role)?;
        let cmd = match r.invitee {
            Some(Invitee::AccountId(id)) => Command::Invite { room, invitee: AccountId(id), role },
            Some(Invitee::RemoteLogin(name)) => {
                let (login, hub) = remote_login(&name)?;
                federation_peer(&self.node.federation, &hub)?;
                Command::InviteRemote { room, hub, login, role }
            }
            None => return Err(Status::invalid_argument("say whom to invite: account_id or remote_login")),
        };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::InviteMemberResponse {}))
    }

    async fn approve_member(
        &self,
        req: Request<pb::ApproveMemberRequest>,
    ) -> Result<Response<pb::ApproveMemberResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::Approve { room: RoomId(r.room_id), account: AccountId(r.account_id) };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::ApproveMemberResponse {}))
    }

    async fn ask_to_join(&self, req: Request<pb::AskToJoinRequest>) -> Result<Response<pb::AskToJoinResponse>, Status> {
        let r = req.get_ref().clone();
        self.signed_write(&req, r.idempotency_key, Command::RequestJoin { room: RoomId(r.room_id) }).await?;
        Ok(Response::new(pb::AskToJoinResponse {}))
    }

    async fn leave_room(&self, req: Request<pb::LeaveRoomRequest>) -> Result<Response<pb::LeaveRoomResponse>, Status> {
        let r = req.get_ref().clone();
        self.signed_write(&req, r.idempotency_key, Command::Leave { room: RoomId(r.room_id) }).await?;
        Ok(Response::new(pb::LeaveRoomResponse {}))
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::Remove { room: RoomId(r.room_id), account: AccountId(r.account_id) };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }

    async fn list_rooms(&self, req: Request<pb::ListRoomsRequest>) -> Result<Response<pb::ListRoomsResponse>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        let page = self.rooms_page(me, req.get_ref())?;
        if list_kind(req.get_ref().kind)? == ListKind::Patients {
            self.audit_read(me, &token_hash, None, None, "patient list".into())?;
        }
        Ok(Response::new(page))
    }

    async fn get_room(&self, req: Request<pb::GetRoomRequest>) -> Result<Response<pb::GetRoomResponse>, Status> {
        Ok(Response::new(self.room(&req).await?))
    }
}
