//! A signed-in user's commands: log in, see the patient list with unread counts, read and write
//! timelines, follow live events, and the operator's and facility admin's chores. The session
//! token is kept in a file only the user can read (0600).

use std::path::PathBuf;

use anyhow::{Context, bail};
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::*;
use kizuna_proto::common::{FacilityKind, Post, Profession};
use kizuna_proto::connections::connection_service_client::ConnectionServiceClient;
use kizuna_proto::connections::{AcceptConnectionRequest, RequestConnectionRequest};
use kizuna_proto::events::event_service_client::EventServiceClient;
use kizuna_proto::events::{Event, SubscribeRequest, event};
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::posts::{CreatePostRequest, MarkReadRequest, TimelineOrder, TimelineRequest, TimelineResponse};
use kizuna_proto::rooms::invite_member_request::Invitee;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::{
    ApproveMemberRequest, InviteMemberRequest, ListRoomsRequest, Role, RoomListKind, RoomSummary,
};
use serde::{Deserialize, Serialize};
use tonic::Request;
use tonic::transport::Channel;

use super::Target;

#[derive(Serialize, Deserialize)]
struct SavedSession {
    login: String,
    token: String,
}

/// `$KIZUNA_SESSION_FILE`, or `~/.config/kizuna/session.json`.
fn session_file() -> PathBuf {
    if let Ok(p) = std::env::var("KIZUNA_SESSION_FILE") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".config/kizuna/session.json")
}

fn save_session(s: &SavedSession) -> anyhow::Result<PathBuf> {
    let path = session_file();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_vec_pretty(s)?;
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
        f.write_all(&json)?;
        // An existing file keeps its old mode on open: tighten it explicitly.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    std::fs::write(&path, json)?;
    Ok(path)
}

pub(crate) fn token() -> anyhow::Result<String> {
    let path = session_file();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("not logged in (no {}): run `kizuna login`", path.display()))?;
    Ok(serde_json::from_str::<SavedSession>(&text)?.token)
}

pub fn authed<T>(msg: T, token: &str) -> anyhow::Result<Request<T>> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().context("token")?);
    Ok(r)
}

/// A fresh idempotency key for one write (a retry of the same write would reuse it).
pub fn idempotency_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn facility_kind(name: &str) -> anyhow::Result<FacilityKind> {
    FacilityKind::from_str_name(&format!("FACILITY_KIND_{}", name.to_uppercase().replace('-', "_")))
        .filter(|k| *k != FacilityKind::Unspecified)
        .with_context(|| format!("unknown facility kind {name:?} (clinic, hospital, pharmacy, dental-clinic, visiting-nursing-station, care-office, rehabilitation, municipality, other)"))
}

pub fn profession(name: &str) -> anyhow::Result<Profession> {
    Profession::from_str_name(&format!("PROFESSION_{}", name.to_uppercase().replace('-', "_")))
        .filter(|p| *p != Profession::Unspecified)
        .with_context(|| format!("unknown profession {name:?} (doctor, nurse, visiting-nurse, pharmacist, dentist, dental-hygienist, therapist, care-manager, care-worker, medical-social-worker, clerk, municipal-staff, other)"))
}

fn password(given: Option<String>) -> anyhow::Result<String> {
    if let Some(p) = given {
        return Ok(p);
    }
    eprint!("password: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub(crate) fn time(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref().map_or(String::new(), |t| {
        let secs = t.seconds.rem_euclid(86_400) + 9 * 3600; // JST
        format!("{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60)
    })
}

pub(crate) async fn channel(target: &Target) -> anyhow::Result<Channel> {
    Ok(target.connect_any().await?.1)
}

pub async fn login(
    target: &Target,
    login: String,
    pw: Option<String>,
    device: String,
    totp: Option<String>,
) -> anyhow::Result<()> {
    let password = password(pw)?;
    let req =
        LoginRequest { idempotency_key: idempotency_key(), login: login.clone(), password, device, totp_code: totp };
    let resp = AccountServiceClient::new(channel(target).await?).login(req).await?.into_inner();
    let path = save_session(&SavedSession { login: login.clone(), token: resp.token })?;
    println!("logged in as {login} (account {}); session kept in {}", resp.account_id, path.display());
    if resp.password_change_required {
        println!(
            "このパスワードは発行されたものです。ブラウザの設定画面でパスワードを変更するまで、ほかの操作はできません"
        );
    }
    if resp.second_factor_due.is_some() {
        println!("二要素認証の設定が必要です (期限: {})", time(&resp.second_factor_due));
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum TotpCommand {
    /// Start: prints the secret and an otpauth:// URI for the authenticator app.
    Enroll,
    /// Finish with a code from the app; from then on `login` needs --totp.
    Confirm { code: String },
    /// Turn it off: your own with a fresh code, or (facility admins, operators) another's.
    Disable {
        #[arg(long)]
        code: Option<String>,
        #[arg(long)]
        account: Option<u64>,
    },
}

pub async fn totp(target: &Target, cmd: TotpCommand) -> anyhow::Result<()> {
    let t = token()?;
    let mut accounts = AccountServiceClient::new(channel(target).await?);
    match cmd {
        TotpCommand::Enroll => {
            let r = accounts
                .begin_totp(authed(BeginTotpRequest { idempotency_key: idempotency_key() }, &t)?)
                .await?
                .into_inner();
            println!(
                "secret: {}
{}",
                r.secret_base32, r.otpauth_uri
            );
            println!("add it to your authenticator app, then: kizuna totp confirm CODE");
        }
        TotpCommand::Confirm { code } => {
            accounts.confirm_totp(authed(ConfirmTotpRequest { idempotency_key: idempotency_key(), code }, &t)?).await?;
            println!("second factor on: log in with --totp CODE from now on");
        }
        TotpCommand::Disable { code, account } => {
            let req = DisableTotpRequest {
                idempotency_key: idempotency_key(),
                account_id: account,
                code: code.unwrap_or_default(),
            };
            accounts.disable_totp(authed(req, &t)?).await?;
            println!("second factor off");
        }
    }
    Ok(())
}

pub async fn logout(target: &Target) -> anyhow::Result<()> {
    let t = token()?;
    AccountServiceClient::new(channel(target).await?)
        .logout(authed(LogoutRequest { idempotency_key: idempotency_key() }, &t)?)
        .await?;
    let _ = std::fs::remove_file(session_file());
    println!("logged out");
    Ok(())
}

/// Every entry of a room list, page after page.
async fn all_rooms(
    ch: Channel,
    t: &str,
    kind: RoomListKind,
    filter: Option<String>,
    unread_only: bool,
) -> anyhow::Result<Vec<RoomSummary>> {
    let mut rooms = RoomServiceClient::new(ch);
    let (mut all, mut page_token) = (Vec::new(), String::new());
    loop {
        let req =
            ListRoomsRequest { kind: kind as i32, filter: filter.clone(), unread_only, page_size: 500, page_token };
        let page = rooms.list_rooms(authed(req, t)?).await?.into_inner();
        all.extend(page.rooms);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

pub async fn list(
    target: &Target,
    kind: RoomListKind,
    filter: Option<String>,
    unread_only: bool,
) -> anyhow::Result<()> {
    let t = token()?;
    let rooms = all_rooms(channel(target).await?, &t, kind, filter, unread_only).await?;
    if rooms.is_empty() {
        println!("(none)");
    }
    for r in &rooms {
        print_room(r, "");
        for sub in &r.sub_rooms {
            print_room(sub, "  └ ");
        }
    }
    Ok(())
}

/// One line of a room list; a sub-room is indented under its patient by `branch`.
fn print_room(r: &RoomSummary, branch: &str) {
    let unread = if r.unread > 0 { format!("未読 {:>3}", r.unread) } else { "        ".into() };
    let when = time(&r.last_post_at);
    println!("{unread}  {branch}room {:>5}  {:<16} {when:>5}  {}", r.room_id, r.title, r.preview);
}

/// `kizuna timeline`: one page of a room, newest on top unless `--oldest-first`.
#[derive(clap::Args, Debug)]
pub struct TimelineArgs {
    /// The room's id (from `kizuna patients`, `groups` or `connections`).
    room: u64,
    /// Only posts after this sequence number.
    #[arg(long)]
    after: Option<u64>,
    /// Only posts before this sequence number.
    #[arg(long)]
    before: Option<u64>,
    /// Oldest first, to read a room from its start.
    #[arg(long)]
    oldest_first: bool,
    /// Posts per page (1..=200).
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// The next page: the token the previous page ended with.
    #[arg(long, default_value = "")]
    page: String,
}

impl TimelineArgs {
    /// The command that shows the next page in the same order, if there is one.
    fn next_page(&self, page: &TimelineResponse) -> Option<String> {
        if page.next_page_token.is_empty() {
            return None;
        }
        let mut command = format!("kizuna timeline {}", self.room);
        for (flag, value) in [("--after", self.after), ("--before", self.before)] {
            if let Some(seq) = value {
                command.push_str(&format!(" {flag} {seq}"));
            }
        }
        let (what, order) =
            if self.oldest_first { ("続き", " --oldest-first") } else { ("さらに古い投稿", "") };
        Some(format!("{what}: {command}{order} --limit {} --page {}", self.limit, page.next_page_token))
    }
}

/// 「名前（医師・施設）」: how a post's author is shown.
fn author(p: &Post) -> String {
    let who = super::labels::author(p.author_kind, p.author_profession);
    match (who.is_empty(), p.author_facility.is_empty()) {
        (true, _) => p.author_name.clone(),
        (false, true) => format!("{}（{who}）", p.author_name),
        (false, false) => format!("{}（{who}・{}）", p.author_name, p.author_facility),
    }
}

pub async fn timeline(target: &Target, args: TimelineArgs) -> anyhow::Result<()> {
    let t = token()?;
    let order = if args.oldest_first { TimelineOrder::OldestFirst } else { TimelineOrder::NewestFirst };
    let req = TimelineRequest {
        room_id: args.room,
        order: order as i32,
        after_seq: args.after,
        before_seq: args.before,
        page_size: args.limit,
        page_token: args.page.clone(),
    };
    let page = PostServiceClient::new(channel(target).await?).timeline(authed(req, &t)?).await?.into_inner();
    if page.posts.is_empty() {
        println!("(none)");
    }
    for p in &page.posts {
        let text = if p.deleted { "(削除されました)".to_owned() } else { p.text.clone() };
        let reply = p.reply_to.map(|r| format!(" ↩{r}")).unwrap_or_default();
        println!("#{:<4} {} {}{reply}\n      {text}", p.seq, time(&p.posted_at), author(p));
        // Their ids are what `kizuna attachment get` takes.
        for a in &p.attachments {
            println!("      {}", super::attachments::describe(a));
        }
    }
    if !page.home_hub.is_empty() {
        println!("（この部屋は {} のハブが管理しています）", page.home_hub);
    }
    for w in &page.sending {
        match w.refused_reason.as_str() {
            "" => println!("[送信中] {} {}", w.kind, w.text),
            why => println!("[送信できませんでした: {why}] {} {}", w.kind, w.text),
        }
    }
    if let Some(next) = args.next_page(&page) {
        println!("（{next}）");
    }
    Ok(())
}

/// `kizuna post`: the files first (each uploaded, see [`super::attachments`]), then the post
/// that places them in the room. The post is retried on the hub's other nodes under the same
/// idempotency key while a node is unavailable.
pub async fn post(
    target: &Target,
    room: u64,
    text: String,
    reply_to: Option<u64>,
    attach: Vec<PathBuf>,
) -> anyhow::Result<()> {
    if text.is_empty() && attach.is_empty() {
        bail!("nothing to post: give a text, or files with --attach");
    }
    let most = kizuna_domain::attachments::MAX_FILES_PER_POST;
    if attach.len() > most {
        bail!("at most {most} files per post ({} given)", attach.len());
    }
    let t = token()?;
    let attachment_ids = super::attachments::upload_all(target, &t, room, &attach).await?;
    let req = CreatePostRequest {
        idempotency_key: idempotency_key(),
        room_id: room,
        text,
        reply_to,
        mention_ids: vec![],
        attachment_ids,
    };
    let r = super::attachments::failover(target, "post", async |ch| {
        let mut client = PostServiceClient::new(ch);
        Ok(super::attachments::answered(client.create_post(authed(req.clone(), &t)?)).await?.into_inner())
    })
    .await?;
    match r.sending {
        true => println!("sending to the room's home hub (ticket {}) in room {}", r.ticket, r.room_id),
        false => println!("posted #{} in room {}", r.seq, r.room_id),
    }
    Ok(())
}

pub async fn read(target: &Target, room: u64, up_to: Option<u64>) -> anyhow::Result<()> {
    let t = token()?;
    let ch = channel(target).await?;
    let up_to_seq = match up_to {
        Some(s) => s,
        None => {
            let mut all = Vec::new();
            for kind in [RoomListKind::Patients, RoomListKind::Groups, RoomListKind::Connections] {
                all.extend(all_rooms(ch.clone(), &t, kind, None, false).await?);
            }
            all.iter()
                .flat_map(|r| std::iter::once(r).chain(&r.sub_rooms))
                .find(|r| r.room_id == room)
                .map(|r| r.last_seq)
                .context("no such room in your lists")?
        }
    };
    PostServiceClient::new(ch)
        .mark_read(authed(MarkReadRequest { idempotency_key: idempotency_key(), room_id: room, up_to_seq }, &t)?)
        .await?;
    println!("room {room} read up to #{up_to_seq}");
    Ok(())
}

/// Follows live events; reconnects (to any node) from the last cursor.
pub async fn tail(target: &Target, after: Option<u64>) -> anyhow::Result<()> {
    let t = token()?;
    let mut cursor = after;
    loop {
        let (endpoint, ch) = target.connect_any().await?;
        eprintln!("following events from {endpoint} (Ctrl-C to stop)");
        let mut stream = match EventServiceClient::new(ch.clone())
            .subscribe(authed(SubscribeRequest { after_cursor: cursor }, &t)?)
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::Unauthenticated => bail!("{}", s.message()),
            Err(s) => {
                eprintln!("subscribe failed: {}; retrying", s.message());
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut posts = PostServiceClient::new(ch);
        loop {
            match stream.message().await {
                Ok(Some(message)) => {
                    let Some(e) = message.event else { continue };
                    cursor = Some(e.cursor);
                    show_event(&mut posts, &t, e).await?;
                }
                Ok(None) => break,
                Err(s) if s.code() == tonic::Code::Unauthenticated => bail!("{}", s.message()),
                Err(s) => {
                    eprintln!("stream ended: {}; reconnecting from cursor {}", s.message(), cursor.unwrap_or_default());
                    break;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// One live event, as a line; a new post with its author and text.
async fn show_event(posts: &mut PostServiceClient<Channel>, t: &str, e: Event) -> anyhow::Result<()> {
    let room = e.room_id.unwrap_or_default();
    match e.kind {
        Some(event::Kind::PostedSeq(seq)) => {
            // Exactly that post: the window between its neighbours.
            let req = TimelineRequest {
                room_id: room,
                after_seq: Some(seq.saturating_sub(1)),
                before_seq: Some(seq.saturating_add(1)),
                page_size: 1,
                ..Default::default()
            };
            match posts.timeline(authed(req, t)?).await {
                Ok(page) => {
                    for p in page.into_inner().posts {
                        println!("[room {room} #{seq}] {} {}: {}", time(&p.posted_at), author(&p), p.text);
                    }
                }
                Err(_) => println!("[room {room} #{seq}] new post"),
            }
        }
        Some(event::Kind::PostUpdatedSeq(seq)) => println!("[room {room} #{seq}] updated"),
        Some(event::Kind::MembershipChanged(_)) => println!("[room {room}] members changed"),
        Some(event::Kind::DisasterChanged(id)) => println!("[災害 {id}] 宣言または終了されました"),
        Some(event::Kind::DisasterObserved(id)) => println!("[災害 {id}] 安否確認・施設状況の記録"),
        Some(event::Kind::ReadUpToSeq(seq)) => println!("[room {room}] read up to #{seq} on another device"),
        Some(event::Kind::CareRequestUpdated(id)) => {
            println!("[request #{id}] sent, answered or cancelled: kizuna request show {id}")
        }
        Some(event::Kind::ConnectionsChanged(_)) => println!("[connections] a connection request was made or answered"),
        None => {}
    }
    Ok(())
}

pub async fn invite(target: &Target, room: u64, account: String, family: bool) -> anyhow::Result<()> {
    let t = token()?;
    let role = if family { Role::Family } else { Role::Member };
    let invitee = match account.parse::<u64>() {
        Ok(id) => Invitee::AccountId(id),
        Err(_) if account.contains('@') => Invitee::RemoteLogin(account.clone()),
        Err(_) => anyhow::bail!("{account:?}: expected an account id or login@hub"),
    };
    let req = InviteMemberRequest {
        idempotency_key: idempotency_key(),
        room_id: room,
        invitee: Some(invitee),
        role: role as i32,
    };
    RoomServiceClient::new(channel(target).await?).invite_member(authed(req, &t)?).await?;
    println!("invited {account} to room {room} (an owner's invitation is effective at once; others wait for approval)");
    Ok(())
}

pub async fn approve(target: &Target, room: u64, account: u64) -> anyhow::Result<()> {
    let t = token()?;
    let req = ApproveMemberRequest { idempotency_key: idempotency_key(), room_id: room, account_id: account };
    RoomServiceClient::new(channel(target).await?).approve_member(authed(req, &t)?).await?;
    println!("account {account} is now a member of room {room}");
    Ok(())
}

pub async fn connect(target: &Target, account: u64, accept: bool) -> anyhow::Result<()> {
    let t = token()?;
    let mut c = ConnectionServiceClient::new(channel(target).await?);
    if accept {
        let req = AcceptConnectionRequest { idempotency_key: idempotency_key(), account_id: account };
        let room = c.accept_connection(authed(req, &t)?).await?.into_inner().room_id;
        println!("connected with account {account}: 1:1 room {room}");
    } else {
        let req = RequestConnectionRequest { idempotency_key: idempotency_key(), account_id: account };
        c.request_connection(authed(req, &t)?).await?;
        println!("connection request sent to account {account}");
    }
    Ok(())
}

/// Operator and facility-admin chores.
pub mod admin {
    use super::*;

    pub async fn init(target: &Target, login: String, display_name: String) -> anyhow::Result<()> {
        let password = crate::api::one_time_password()?;
        let req = InitOperatorRequest {
            idempotency_key: idempotency_key(),
            login: login.clone(),
            display_name,
            password: password.clone(),
        };
        let id = AccountServiceClient::new(channel(target).await?).init_operator(req).await?.into_inner().account_id;
        println!(
            "operator {login} created (account {id}).\none-time password: {password}\n(keep it safe; it is not shown again)"
        );
        Ok(())
    }

    pub async fn facility(target: &Target, name: String, kind: String, municipality: String) -> anyhow::Result<()> {
        let t = token()?;
        let mut c = AccountServiceClient::new(channel(target).await?);
        let req = RegisterFacilityRequest {
            idempotency_key: idempotency_key(),
            name,
            kind: facility_kind(&kind)? as i32,
            municipality,
        };
        let id = c.register_facility(authed(req, &t)?).await?.into_inner().facility_id;
        c.approve_facility(authed(ApproveFacilityRequest { idempotency_key: idempotency_key(), facility_id: id }, &t)?)
            .await?;
        println!("facility {id} registered and approved");
        Ok(())
    }

    pub async fn invitation(target: &Target, facility: u64, hours: u32, as_admin: bool) -> anyhow::Result<()> {
        let t = token()?;
        let req = IssueInvitationRequest {
            idempotency_key: idempotency_key(),
            facility_id: facility,
            valid_hours: hours,
            as_admin,
        };
        let r =
            AccountServiceClient::new(channel(target).await?).issue_invitation(authed(req, &t)?).await?.into_inner();
        println!("invitation code: {}\nvalid for {hours} h; single use", r.code);
        Ok(())
    }

    pub async fn register(
        target: &Target,
        code: String,
        login: String,
        display_name: String,
        prof: String,
        pw: Option<String>,
    ) -> anyhow::Result<()> {
        let req = RegisterRequest {
            idempotency_key: idempotency_key(),
            invitation_code: code,
            login,
            display_name,
            profession: profession(&prof)? as i32,
            password: password(pw)?,
        };
        let id = AccountServiceClient::new(channel(target).await?).register(req).await?.into_inner().account_id;
        println!("registered as account {id}; a facility admin must approve it before you can log in");
        Ok(())
    }

    pub async fn audit(
        target: &Target,
        (account, patient, facility): (Option<u64>, Option<u64>, Option<u64>),
        export: Option<PathBuf>,
        verify: bool,
    ) -> anyhow::Result<()> {
        use kizuna_proto::audit::audit_service_client::AuditServiceClient;
        use kizuna_proto::audit::{ListAuditEntriesRequest, VerifyAuditChainRequest};
        let t = token()?;
        let mut c = AuditServiceClient::new(channel(target).await?);
        if verify {
            let v = c.verify_audit_chain(authed(VerifyAuditChainRequest {}, &t)?).await?.into_inner();
            if v.intact {
                println!("audit chain intact: {} entries verified", v.verified);
                return Ok(());
            }
            bail!(
                "audit chain BROKEN at entry {}: {} ({} entries before it verified)",
                v.broken_at_seq.unwrap_or_default(),
                v.reason,
                v.verified
            );
        }
        let mut out: Box<dyn std::io::Write> = match &export {
            Some(path) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
            )),
            None => Box::new(std::io::stdout()),
        };
        let mut page_token = String::new();
        let mut count = 0;
        loop {
            let q = ListAuditEntriesRequest {
                account_id: account,
                patient_id: patient,
                facility_id: facility,
                page_size: 1000,
                page_token,
            };
            let page = c.list_audit_entries(authed(q, &t)?).await?.into_inner();
            for e in &page.entries {
                count += 1;
                if export.is_some() {
                    writeln!(out, "{}", crate::cli::audit_export::line(e))?;
                } else {
                    writeln!(
                        out,
                        "#{:<6} {} account {:<5} node {} {:<5} patient {:<5} room {:<5} {}",
                        e.seq,
                        time(&e.at),
                        e.account_id,
                        e.node_id,
                        super::super::labels::audit_action(e.action),
                        e.patient_id.map(|p| p.to_string()).unwrap_or_default(),
                        e.room_id.map(|r| r.to_string()).unwrap_or_default(),
                        e.what
                    )?;
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        out.flush()?;
        if let Some(path) = export {
            eprintln!("exported {count} entries to {}", path.display());
        }
        Ok(())
    }

    pub async fn account(target: &Target, account: u64, stop: bool) -> anyhow::Result<()> {
        let t = token()?;
        let mut c = AccountServiceClient::new(channel(target).await?);
        if stop {
            let req = StopAccountRequest { idempotency_key: idempotency_key(), account_id: account };
            c.stop_account(authed(req, &t)?).await?;
            println!("account {account} stopped: every session of it is refused now");
        } else {
            let req = ApproveAccountRequest { idempotency_key: idempotency_key(), account_id: account };
            c.approve_account(authed(req, &t)?).await?;
            println!("account {account} approved");
        }
        Ok(())
    }
}
