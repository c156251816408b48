//! The PostService: posting, editing, deleting, acknowledging (了解), read markers and the
//! timeline of a room.

use kizuna_proto::posts as pb;
use tonic::{Request, Response, Status};

use super::convert::{post_view, timestamp};
use super::paging::{self, PageToken};
use super::shared::{Api, domain_status, unexpected, view_status};
use crate::node::now_ms;
use kizuna_domain::audit;
use kizuna_domain::federation::{PendingWrite, RoomWrite};
use kizuna_domain::model::*;
use kizuna_domain::queries::{self, TimelineOrder, TimelinePage, TimelineQuery};
use kizuna_domain::{Command, DomainError, Outcome};

fn timeline_order(asked: i32) -> Result<TimelineOrder, Status> {
    match pb::TimelineOrder::try_from(asked) {
        Ok(pb::TimelineOrder::OldestFirst) => Ok(TimelineOrder::OldestFirst),
        Ok(pb::TimelineOrder::NewestFirst | pb::TimelineOrder::Unspecified) => Ok(TimelineOrder::NewestFirst),
        Err(_) => Err(Status::invalid_argument(format!("order {asked}: no such timeline order"))),
    }
}

/// The window and size of the page asked for: the request's window, narrowed by the page token
/// to what the previous page had not reached yet.
fn timeline_query(r: &pb::TimelineRequest) -> Result<TimelineQuery, Status> {
    let room = r.room_id;
    let order = timeline_order(r.order)?;
    let limit = paging::page_size(r.page_size, 50, 200)?;
    let oldest_first = order == TimelineOrder::OldestFirst;
    let resume = paging::resume(&r.page_token, |t| match t {
        PageToken::Timeline { room: r, oldest_first: o, seq } if r == room && o == oldest_first => Some(seq),
        _ => None,
    })?;
    if r.before_seq == Some(0) {
        return Err(Status::invalid_argument("before_seq must be at least 1 (no post is before 0)"));
    }
    // In the domain's query 0 means "no bound" on either side.
    let (mut after_seq, mut before_seq) = (r.after_seq.unwrap_or(0), r.before_seq.unwrap_or(0));
    match (resume, order) {
        (Some(seq), TimelineOrder::OldestFirst) => after_seq = after_seq.max(seq),
        (Some(seq), TimelineOrder::NewestFirst) => before_seq = if before_seq == 0 { seq } else { before_seq.min(seq) },
        (None, _) => {}
    }
    Ok(TimelineQuery { after_seq, before_seq, order, limit })
}

fn next_timeline_token(room: RoomId, page: &TimelinePage, order: TimelineOrder) -> Result<String, Status> {
    let token = |oldest_first, seq| PageToken::Timeline { room: room.0, oldest_first, seq }.encode();
    match order {
        TimelineOrder::OldestFirst if page.next_after_seq != 0 => token(true, page.next_after_seq),
        TimelineOrder::NewestFirst if page.next_before_seq != 0 => token(false, page.next_before_seq),
        _ => Ok(String::new()),
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

/// A write still on its way to the room's home hub, as its author sees it.
fn sending_view(p: PendingWrite) -> pb::SendingWrite {
    let (kind, text) = match p.write {
        RoomWrite::Post { text, .. } | RoomWrite::PostWithFiles { text, .. } => ("post", text),
        RoomWrite::Edit { text, .. } => ("edit", text),
        RoomWrite::Delete { .. } => ("delete", String::new()),
        RoomWrite::Ack { .. } => ("ack", String::new()),
        RoomWrite::Invite { .. } => ("invite", String::new()),
        RoomWrite::Approve { .. } => ("approve", String::new()),
        RoomWrite::Leave => ("leave", String::new()),
    };
    pb::SendingWrite {
        ticket: p.ticket,
        text,
        kind: kind.into(),
        queued_at: Some(timestamp(p.queued_at_ms)),
        refused_reason: p.refused.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl pb::post_service_server::PostService for Api {
    async fn create_post(
        &self,
        req: Request<pb::CreatePostRequest>,
    ) -> Result<Response<pb::CreatePostResponse>, Status> {
        let r = req.get_ref().clone();
        let (room, text, reply_to) = (RoomId(r.room_id), r.text, r.reply_to);
        let mentions = r.mention_ids.into_iter().map(AccountId).collect();
        let cmd = match r.attachment_ids {
            files if files.is_empty() => Command::Post { room, text, reply_to, mentions },
            files => {
                let files = files.into_iter().map(AttachmentId).collect();
                Command::PostWithFiles { room, text, reply_to, mentions, files }
            }
        };
        match self.signed_write(&req, r.idempotency_key, cmd).await? {
            Outcome::Posted { room, seq } => {
                Ok(Response::new(pb::CreatePostResponse { room_id: room.0, seq, sending: false, ticket: 0 }))
            }
            Outcome::Queued { room, ticket } => {
                Ok(Response::new(pb::CreatePostResponse { room_id: room.0, seq: 0, sending: true, ticket }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn edit_post(&self, req: Request<pb::EditPostRequest>) -> Result<Response<pb::EditPostResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::EditPost { room: RoomId(r.room_id), seq: r.seq, text: r.text };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::EditPostResponse {}))
    }

    async fn delete_post(
        &self,
        req: Request<pb::DeletePostRequest>,
    ) -> Result<Response<pb::DeletePostResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::DeletePost { room: RoomId(r.room_id), seq: r.seq };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::DeletePostResponse {}))
    }

    async fn ack_post(&self, req: Request<pb::AckPostRequest>) -> Result<Response<pb::AckPostResponse>, Status> {
        let r = req.get_ref().clone();
        self.signed_write(&req, r.idempotency_key, Command::AckPost { room: RoomId(r.room_id), seq: r.seq }).await?;
        Ok(Response::new(pb::AckPostResponse {}))
    }

    async fn mark_read(&self, req: Request<pb::MarkReadRequest>) -> Result<Response<pb::MarkReadResponse>, Status> {
        let r = req.get_ref().clone();
        let cmd = Command::MarkRead { room: RoomId(r.room_id), up_to_seq: r.up_to_seq };
        self.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(pb::MarkReadResponse {}))
    }

    async fn timeline(&self, req: Request<pb::TimelineRequest>) -> Result<Response<pb::TimelineResponse>, Status> {
        let (me, token_hash, stale_reason) = self.authenticate_fresh(&req).await?;
        let query = timeline_query(req.get_ref())?;
        let room = RoomId(req.get_ref().room_id);
        let answer = self.query(|hub| {
            // A member reads as a member; anyone else only under an emergency access, and
            // every such read is audited as one.
            let (page, emergency) = match queries::timeline(hub, me, room, query) {
                Err(DomainError::NotFound(_)) => {
                    (queries::emergency_timeline(hub, me, room, query, now_ms()).map_err(domain_status)?, true)
                }
                read => (read.map_err(domain_status)?, false),
            };
            if let Some(patient) = audit::patient_data_in(hub, room).map_err(view_status)? {
                let what = timeline_read(&page);
                let what = if emergency { format!("緊急アクセス: {what}") } else { what };
                self.audit_read(me, &token_hash, patient, Some(room), what)?;
            }
            let next_page_token = next_timeline_token(room, &page, query.order)?;
            Ok(pb::TimelineResponse {
                posts: page.posts.into_iter().map(|p| post_view(hub, p)).collect(),
                next_page_token,
                stale: stale_reason.is_some(),
                stale_reason: stale_reason.unwrap_or_default(),
                sending: page.sending.into_iter().map(sending_view).collect(),
                home_hub: page.home_hub.map(|h| h.to_string()).unwrap_or_default(),
                home_heard_at: page.home_heard_at_ms.map(timestamp),
            })
        })?;
        Ok(Response::new(answer))
    }
}
