//! `kizuna generate`: a hub at the scale of a large prefecture, through the real write path —
//! every facility registered and approved, every professional invited, registered, approved and
//! signed in, every patient created with a team of four (doctor, visiting nurse, pharmacist,
//! care manager), every post written by one of its team — as any client would.
//!
//! Scale 1.0 is 10,000 facilities, 100,000 professionals, 50,000 patients and 10,000,000 posts
//! of ~200 bytes of Japanese. Requests go `--workers` at a time over every node given: the hub
//! batches concurrent proposals into one log append (its batching), so the rate grows with
//! workers until the hub saturates. Progress is kept in `--state` after every chunk; running
//! the same command again resumes there. Idempotency keys derive from the run and the item, so
//! an item in flight when the generator stopped is answered, not repeated, when resent.

mod staff;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::*;
use kizuna_proto::posts::CreatePostRequest;
use kizuna_proto::posts::post_service_client::PostServiceClient;
use kizuna_proto::rooms::invite_member_request::Invitee;
use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::{CreatePatientRequest, InviteMemberRequest, Role};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use super::Target;
use super::user::{authed, facility_kind, profession, token};
use staff::PASSWORD;
pub use staff::Staff;

#[derive(clap::Args, Debug, Clone)]
pub struct GenerateArgs {
    /// The share of a large prefecture to build: 1.0 is 10,000 facilities, 100,000
    /// professionals, 50,000 patients and 10,000,000 posts.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Where progress is kept; the same command with the same file resumes.
    #[arg(long, default_value = "generate-state.json")]
    state: PathBuf,
    /// Requests in flight at once, spread over the nodes.
    #[arg(long, default_value_t = 64)]
    workers: usize,
}

/// Professions and facility kinds of a team, in team order.
const TEAM: [(&str, &str); 4] = [
    ("doctor", "clinic"),
    ("visiting-nurse", "visiting-nursing-station"),
    ("pharmacist", "pharmacy"),
    ("care-manager", "care-office"),
];
/// Tochigi's municipalities, where facilities are.
const MUNICIPALITIES: [&str; 10] =
    ["宇都宮市", "足利市", "栃木市", "佐野市", "鹿沼市", "日光市", "小山市", "真岡市", "大田原市", "那須塩原市"];
const SURNAMES: [&str; 10] = ["佐藤", "鈴木", "高橋", "田中", "渡辺", "伊藤", "山本", "中村", "小林", "加藤"];
const GIVEN: [&str; 8] = ["花子", "太郎", "キヨ", "一郎", "トメ", "正男", "ハル", "茂"];

/// How much to build at a scale.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
struct Sizes {
    facilities: usize,
    professionals: usize,
    patients: usize,
    posts: u64,
}

impl Sizes {
    /// How many of the phase `name`.
    fn of(&self, name: &str) -> u64 {
        match name {
            "facilities" => self.facilities as u64,
            "professionals" => self.professionals as u64,
            _ => self.patients as u64,
        }
    }

    fn at(scale: f64) -> anyhow::Result<Self> {
        anyhow::ensure!(scale > 0.0 && scale <= 10.0, "--scale must be in (0, 10]");
        let n = |full: f64, at_least: f64| (full * scale).max(at_least).round();
        // Multiples of four: facility f and professional i share a kind when f ≡ i (mod 4).
        let facilities = (n(10_000.0, 4.0) as usize).div_ceil(4) * 4;
        let professionals = (n(100_000.0, 4.0) as usize).div_ceil(4) * 4;
        Ok(Self { facilities, professionals, patients: n(50_000.0, 1.0) as usize, posts: n(10_000_000.0, 1.0) as u64 })
    }
}

/// What is built so far: ids in creation order.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Names this run's logins and idempotency keys.
    run: String,
    sizes: Option<Sizes>,
    facilities: Vec<u64>,
    professionals: Vec<u64>,
    /// Each patient's timeline.
    patients: Vec<u64>,
    posts: u64,
}

impl State {
    fn load_or_new(path: &Path, sizes: Sizes) -> anyhow::Result<Self> {
        let state = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                run: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
                sizes: Some(sizes),
                ..State::default()
            },
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        anyhow::ensure!(
            state.sizes == Some(sizes),
            "{} was made for {:?}: give its --scale, or another --state",
            path.display(),
            state.sizes
        );
        Ok(state)
    }

    /// Written whole to a temporary file, then renamed: a crash leaves the old or the new.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, serde_json::to_vec(self)?)?;
        std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))
    }
}

/// What every item needs: the nodes, the operator, the run's names and its signed-in staff.
struct Ctx {
    channels: Vec<Channel>,
    operator: String,
    run: String,
    sizes: Sizes,
    staff: Staff,
}

impl Ctx {
    fn channel(&self, i: u64) -> Channel {
        self.channels[i as usize % self.channels.len()].clone()
    }

    fn key(&self, what: &str, i: u64) -> String {
        format!("gen-{}-{what}-{i}", self.run)
    }
}

pub async fn run(target: &Target, args: GenerateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    let sizes = Sizes::at(args.scale)?;
    let mut state = State::load_or_new(&args.state, sizes)?;
    let channels: Vec<Channel> = super::bench::connect_all(target).await?.into_iter().map(|(_, c)| c).collect();
    let (operator, run) = (token()?, state.run.clone());
    let staff = Staff::new(channels.clone(), &run);
    let ctx = Arc::new(Ctx { channels, operator, run, sizes, staff });
    eprintln!("generating {sizes:?} as run {} (state in {})", state.run, args.state.display());
    let started = Instant::now();
    let none = Arc::new(Vec::new());
    phase(&ctx, &mut state, (&args, "facilities", none), |s| &mut s.facilities, facility).await?;
    let facilities = Arc::new(state.facilities.clone());
    phase(&ctx, &mut state, (&args, "professionals", facilities), |s| &mut s.professionals, professional).await?;
    let professionals = Arc::new(state.professionals.clone());
    phase(&ctx, &mut state, (&args, "patients", professionals), |s| &mut s.patients, patient).await?;
    posts(&ctx, &mut state, &args).await?;
    println!("generated {sizes:?} in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Builds the items of one kind not built yet, `workers` at a time, keeping each one's id in
/// `list` and the state on disk after every chunk. `earlier`: the ids an item needs of the
/// phase before.
async fn phase<F, Fut>(
    ctx: &Arc<Ctx>,
    state: &mut State,
    (args, name, earlier): (&GenerateArgs, &str, Arc<Vec<u64>>),
    list: fn(&mut State) -> &mut Vec<u64>,
    make: F,
) -> anyhow::Result<()>
where
    F: Fn(Arc<Ctx>, Arc<Vec<u64>>, u64) -> Fut + Copy,
    Fut: std::future::Future<Output = anyhow::Result<u64>>,
{
    let total = ctx.sizes.of(name);
    let bar = bar(name, total);
    let started = (Instant::now(), list(state).len() as u64);
    while (list(state).len() as u64) < total {
        let from = list(state).len() as u64;
        let to = total.min(from + args.workers as u64 * 16);
        let made: Vec<anyhow::Result<u64>> = futures::stream::iter(from..to)
            .map(|i| retried(ctx.clone(), earlier.clone(), i, make))
            .buffered(args.workers)
            .collect()
            .await;
        for id in made {
            list(state).push(id.with_context(|| format!("generating {name}"))?);
        }
        state.save(&args.state)?;
        bar.set_position(to);
        bar.set_message(rate(started, to));
    }
    bar.finish_and_clear();
    println!("{name}: {total} ({})", rate(started, total));
    Ok(())
}

/// `make`, tried again while the hub is unavailable (a leader election under the load).
async fn retried<F, Fut>(ctx: Arc<Ctx>, earlier: Arc<Vec<u64>>, i: u64, make: F) -> anyhow::Result<u64>
where
    F: Fn(Arc<Ctx>, Arc<Vec<u64>>, u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>>,
{
    let what = format!("item {i}");
    super::attachments::while_unavailable(&what, || make(ctx.clone(), earlier.clone(), i)).await
}

/// Facility `f`: registered and approved by the operator; its id.
async fn facility(ctx: Arc<Ctx>, _: Arc<Vec<u64>>, f: u64) -> anyhow::Result<u64> {
    let mut accounts = AccountServiceClient::new(ctx.channel(f));
    let (kind, m) = (TEAM[f as usize % 4].1, MUNICIPALITIES[(f as usize / 4) % MUNICIPALITIES.len()]);
    let req = RegisterFacilityRequest {
        idempotency_key: ctx.key("facility", f),
        name: format!("{m}{}{f}", ["クリニック", "訪問看護ステーション", "薬局", "居宅介護支援事業所"][f as usize % 4]),
        kind: facility_kind(kind)? as i32,
        municipality: m.into(),
    };
    let id = accounts.register_facility(authed(req, &ctx.operator)?).await?.into_inner().facility_id;
    let approve = ApproveFacilityRequest { idempotency_key: ctx.key("approve-facility", f), facility_id: id };
    accounts.approve_facility(authed(approve, &ctx.operator)?).await?;
    Ok(id)
}

/// Professional `i`: invited to facility `i mod facilities` (of the kind her profession works
/// at), registered, approved; her account id.
async fn professional(ctx: Arc<Ctx>, facilities: Arc<Vec<u64>>, i: u64) -> anyhow::Result<u64> {
    let mut accounts = AccountServiceClient::new(ctx.channel(i));
    let facility_id = facilities[i as usize % facilities.len()];
    let invite = IssueInvitationRequest {
        idempotency_key: ctx.key("invite", i),
        facility_id,
        valid_hours: 24,
        as_admin: i < facilities.len() as u64,
    };
    let code = accounts.issue_invitation(authed(invite, &ctx.operator)?).await?.into_inner().code;
    let register = RegisterRequest {
        idempotency_key: ctx.key("register", i),
        invitation_code: code,
        login: ctx.staff.login(i as usize),
        display_name: person_name(i),
        profession: profession(TEAM[i as usize % 4].0)? as i32,
        password: PASSWORD.into(),
    };
    let id = accounts.register(register).await?.into_inner().account_id;
    let approve = ApproveAccountRequest { idempotency_key: ctx.key("approve", i), account_id: id };
    accounts.approve_account(authed(approve, &ctx.operator)?).await?;
    Ok(id)
}

/// The four professionals of patient `k`'s team: a doctor, a visiting nurse, a pharmacist and a
/// care manager (professional `4k + r` has profession r), each on two teams at scale.
fn team(k: u64, professionals: usize) -> [usize; 4] {
    let first = (4 * k as usize) % professionals;
    [first, first + 1, first + 2, first + 3]
}

/// Patient `k`: created by her doctor, who invites the rest of the team; her timeline.
async fn patient(ctx: Arc<Ctx>, professionals: Arc<Vec<u64>>, k: u64) -> anyhow::Result<u64> {
    let team = team(k, professionals.len());
    ctx.staff.signed_in(team[0], |doctor| create_patient(&ctx, &professionals, k, team, doctor)).await
}

/// [`patient`] with her doctor's session `doctor`: sent again whole if the session ended
/// (every request carries its idempotency key).
async fn create_patient(
    ctx: &Ctx,
    professionals: &[u64],
    k: u64,
    team: [usize; 4],
    doctor: String,
) -> anyhow::Result<u64> {
    let mut rooms = RoomServiceClient::new(ctx.channel(k));
    let create = CreatePatientRequest {
        idempotency_key: ctx.key("patient", k),
        name: person_name(k + 7),
        kana: "かんじゃ".into(),
        address: format!("{}{}丁目", MUNICIPALITIES[k as usize % MUNICIPALITIES.len()], k % 9 + 1),
        ..Default::default()
    };
    let room = rooms.create_patient(authed(create, &doctor)?).await?.into_inner().room_id;
    for (r, member) in team.iter().enumerate().skip(1) {
        let invite = InviteMemberRequest {
            idempotency_key: ctx.key(&format!("team{r}"), k),
            room_id: room,
            invitee: Some(Invitee::AccountId(professionals[*member])),
            role: Role::Member as i32,
        };
        rooms.invite_member(authed(invite, &doctor)?).await?;
    }
    Ok(room)
}

/// The posts, `workers` at a time: post `p` goes into patient `p mod patients`'s timeline, by
/// the next of her team in turn, so every timeline grows alike.
async fn posts(ctx: &Arc<Ctx>, state: &mut State, args: &GenerateArgs) -> anyhow::Result<()> {
    let sizes = ctx.sizes;
    let bar = bar("posts", sizes.posts);
    let started = (Instant::now(), state.posts);
    let patients = Arc::new(state.patients.clone());
    while state.posts < sizes.posts {
        let to = sizes.posts.min(state.posts + args.workers as u64 * 64);
        let written: Vec<anyhow::Result<u64>> = futures::stream::iter(state.posts..to)
            .map(|p| retried(ctx.clone(), patients.clone(), p, post))
            .buffered(args.workers)
            .collect()
            .await;
        for w in written {
            w.context("generating posts")?;
        }
        state.posts = to;
        state.save(&args.state)?;
        bar.set_position(to);
        bar.set_message(rate(started, to));
    }
    bar.finish_and_clear();
    println!("posts: {} ({})", sizes.posts, rate(started, sizes.posts));
    Ok(())
}

async fn post(ctx: Arc<Ctx>, patients: Arc<Vec<u64>>, p: u64) -> anyhow::Result<u64> {
    let k = p % patients.len() as u64;
    let round = p / patients.len() as u64;
    let author = team(k, ctx.sizes.professionals)[round as usize % 4];
    let req = CreatePostRequest {
        idempotency_key: ctx.key("post", p),
        room_id: patients[k as usize],
        text: note(author % 4, p),
        ..Default::default()
    };
    let posts = PostServiceClient::new(ctx.channel(p));
    let send = |token: String| {
        let (req, mut posts) = (req.clone(), posts.clone());
        async move { Ok(posts.create_post(authed(req, &token)?).await?.into_inner().seq) }
    };
    ctx.staff.signed_in(author, send).await
}

/// 「佐藤 花子」: a name from the item's number.
fn person_name(i: u64) -> String {
    let (s, g) = (i as usize % SURNAMES.len(), (i as usize / SURNAMES.len()) % GIVEN.len());
    format!("{} {}", SURNAMES[s], GIVEN[g])
}

/// ~200 bytes of what a professional of `role` (the team order) writes after a visit, varied
/// by `p` (vital signs, amounts) so no two posts of a timeline are the same text.
fn note(role: usize, p: u64) -> String {
    let x = mix(p);
    let (spo2, sys, dia, temp) = (93 + x % 6, 110 + (x >> 8) % 40, 60 + (x >> 16) % 30, 360 + (x >> 24) % 15);
    let day = format!("{}/{} ", 1 + (x >> 32) % 12, 1 + (x >> 40) % 28);
    day + &match role {
        0 => format!(
            "訪問診療。SpO2 {spo2}%、血圧 {sys}/{dia}、体温 {}.{}度。胸部聴診で副雑音なし。ご家族に病状を説明し、不安の訴えはありません。内服は継続、次回2週間後。",
            temp / 10,
            temp % 10
        ),
        1 => format!(
            "訪問看護。血圧 {sys}/{dia}、SpO2 {spo2}%。食事は半分程度、水分は摂れています。仙骨部の発赤は軽快傾向。入浴介助実施。"
        ),
        2 => format!(
            "居宅療養管理指導。残薬{}日分を確認、一包化で飲み忘れなし。便秘傾向のため酸化マグネシウムの調整を医師に相談します。",
            x % 7
        ),
        _ => format!(
            "ケアプラン更新の件。デイサービスを週{}回に変更、ショートステイは来月第{}週で調整中です。ご家族の介護負担に配慮します。",
            2 + x % 2,
            1 + (x >> 4) % 4
        ),
    }
}

/// splitmix64: spreads `p` over 64 bits (text variety; nothing secret).
fn mix(p: u64) -> u64 {
    let mut z = p.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn bar(name: &str, total: u64) -> indicatif::ProgressBar {
    let template = format!("{name:<13} [{{bar:30}}] {{pos}}/{{len}} {{msg}} eta {{eta}}");
    let style = indicatif::ProgressStyle::with_template(&template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    indicatif::ProgressBar::new(total).with_style(style)
}

/// Items per second since `(started, done_then)`.
fn rate((started, done_then): (Instant, u64), done_now: u64) -> String {
    let per_second = done_now.saturating_sub(done_then) as f64 / started.elapsed().as_secs_f64().max(1e-3);
    format!("{per_second:.0}/s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefecture_is_the_issue_s_sizes_and_teams_stay_inside_their_professions() {
        let full = Sizes::at(1.0).expect("scale 1");
        assert_eq!(
            (full.facilities, full.professionals, full.patients, full.posts),
            (10_000, 100_000, 50_000, 10_000_000)
        );
        let small = Sizes::at(0.001).expect("a small scale");
        assert_eq!((small.facilities % 4, small.professionals % 4), (0, 0));
        for k in 0..1_000 {
            let team = team(k, small.professionals);
            assert!(team.iter().all(|m| *m < small.professionals), "{team:?}");
            // Member r has the team's r-th profession, at a facility of its kind.
            for (r, m) in team.iter().enumerate() {
                assert_eq!((m % 4, (m % small.facilities) % 4), (r, r));
            }
        }
        assert!(Sizes::at(0.0).is_err() && Sizes::at(11.0).is_err());
    }

    #[test]
    fn posts_are_about_two_hundred_bytes_and_vary() {
        let texts: Vec<String> = (0..400).map(|p| note((p % 4) as usize, p)).collect();
        for t in &texts {
            assert!((150..=260).contains(&t.len()), "{} bytes: {t}", t.len());
        }
        let distinct: std::collections::BTreeSet<&String> = texts.iter().collect();
        assert!(distinct.len() > 350, "{} distinct of 400", distinct.len());
    }
}
