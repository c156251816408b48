//! Posts in a room's timeline: posting (with replies and mentions), editing, deleting (a
//! tombstone that keeps the history for audit), acknowledging, and read markers.

use super::attachments::{self, Attachment};
use super::authz::active_member;
use super::error::{DomainResult, denied, invalid, not_found, precondition};
use super::events::EventKind;
use super::kernel::{Ctx, Effects, MAX_EDITS_PER_POST, MAX_POST_CHARS, Outcome, text, tighter_limits};
use super::model::*;
use super::view::{Change, HubView};

/// `Post`.
pub fn post(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    (room, body): (RoomId, String),
    (reply_to, mut mentions): (Option<u64>, Vec<AccountId>),
    files: Vec<Attachment>,
) -> DomainResult<Effects> {
    let (account, mut member, mut r) = active_member(view, actor, room)?;
    // Files may speak for themselves: a photo needs no caption.
    if files.is_empty() || !body.is_empty() {
        text("text", &body, MAX_POST_CHARS)?;
    }
    if let Some(to) = reply_to
        && (to == 0 || to > r.last_seq)
    {
        return Err(invalid(format!("reply_to {to}: no such post in this room")));
    }
    mentions.sort();
    mentions.dedup();
    for m in &mentions {
        if !view.member(room, *m)?.is_some_and(|x| x.is_active()) {
            return Err(invalid(format!("mention of {m}: not a member of this room")));
        }
    }
    r.last_seq += 1;
    r.last_post_at_ms = ctx.now_ms;
    member.record_own_post(r.last_seq);
    let post = Post {
        room,
        seq: r.last_seq,
        author: account.id,
        text: body,
        reply_to,
        mentions,
        posted_at_ms: ctx.now_ms,
        history: vec![],
        deleted: false,
        acks: vec![],
    };
    let seq = r.last_seq;
    let mut changes = vec![Change::Room(r), Change::Member(member), Change::Post(post)];
    changes.extend(attachments::place((room, seq), files));
    Ok(Effects::new(Outcome::Posted { room, seq }, changes)
        .event(room, EventKind::Posted { seq })
        .audited_in(view, room, "post")?)
}

/// `EditPost`: the author only; the old text goes into the history.
pub fn edit(
    view: &impl HubView,
    ctx: Ctx,
    actor: AccountId,
    (room, seq): (RoomId, u64),
    body: String,
) -> DomainResult<Effects> {
    let (account, _, _) = active_member(view, actor, room)?;
    let mut post = view.post(room, seq)?.ok_or(not_found("post"))?;
    if post.author != account.id {
        return Err(denied("only the author edits a post"));
    }
    if post.deleted {
        return Err(precondition("the post is deleted"));
    }
    text("text", &body, MAX_POST_CHARS)?;
    if tighter_limits(view)? && post.history.len() >= MAX_EDITS_PER_POST {
        // Every version stays readable in the post, so the post stays of bounded size.
        return Err(precondition(format!("投稿の編集は{MAX_EDITS_PER_POST}回までです。新しく投稿してください")));
    }
    let old = std::mem::replace(&mut post.text, body);
    post.history.push(PostVersion { text: old, at_ms: ctx.now_ms });
    Ok(Effects::new(Outcome::Posted { room, seq }, vec![Change::Post(post)])
        .event(room, EventKind::PostUpdated { seq })
        .audited_in(view, room, "edit post")?)
}

/// `DeletePost`: the author or an owner.
pub fn delete(view: &impl HubView, ctx: Ctx, actor: AccountId, room: RoomId, seq: u64) -> DomainResult<Effects> {
    let (account, member, _) = active_member(view, actor, room)?;
    let mut post = view.post(room, seq)?.ok_or(not_found("post"))?;
    if post.author != account.id && member.role != Role::Owner {
        return Err(denied("only the author or an owner deletes a post"));
    }
    if !post.deleted {
        // Tombstone: the text leaves the timeline but stays in the history for audit.
        let old = std::mem::take(&mut post.text);
        post.history.push(PostVersion { text: old, at_ms: ctx.now_ms });
        post.deleted = true;
    }
    let mut changes = attachments::release(view, ctx, (room, seq))?;
    changes.push(Change::Post(post));
    Ok(Effects::new(Outcome::Posted { room, seq }, changes).event(room, EventKind::PostUpdated { seq }).audited_in(
        view,
        room,
        "delete post",
    )?)
}

/// `AckPost`: a member acknowledges a live post (once).
pub fn ack(view: &impl HubView, actor: AccountId, room: RoomId, seq: u64) -> DomainResult<Effects> {
    let (account, _, _) = active_member(view, actor, room)?;
    let mut post = view.post(room, seq)?.filter(|p| !p.deleted).ok_or(not_found("post"))?;
    if !post.acks.contains(&account.id) {
        post.acks.push(account.id);
    }
    Ok(Effects::new(Outcome::Posted { room, seq }, vec![Change::Post(post)])
        .event(room, EventKind::PostUpdated { seq })
        .audited_in(view, room, "acknowledge post")?)
}

/// `MarkRead`: the member's read marker moves forward (never past the last post).
pub fn mark_read(view: &impl HubView, actor: AccountId, room: RoomId, up_to_seq: u64) -> DomainResult<Effects> {
    let (_, mut member, r) = active_member(view, actor, room)?;
    member.advance_read(up_to_seq.min(r.last_seq));
    Ok(Effects::new(Outcome::Done, vec![Change::Member(member)])
        .event(room, EventKind::Read { account: actor, seq: up_to_seq })
        .audited_in(view, room, "mark read")?)
}
