//! `kizuna`: run a hub node, the local demo hub, or talk to a hub as a client.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kizuna_node::cli::{self, Target};
use kizuna_proto::rooms::RoomListKind;

/// jemalloc, not glibc's malloc: a node applying posts one by one churns millions of small
/// allocations over many threads (and 19 MiB for each password check), and glibc kept what they
/// freed — 2.3–2.9 GB per node after 100,000 posts, also with `MALLOC_ARENA_MAX=2`; with
/// jemalloc 260–360 MB (docs/benchmarks.md, "A prefecture-sized hub"). Its symbols are
/// unprefixed (the workspace's Cargo.toml), so RocksDB's C++ allocations use it as well and
/// the heap figures in /metrics count them.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "kizuna",
    version,
    about = "Kizuna (絆): a replicated collaboration hub for home medical and care teams"
)]
struct Cli {
    /// Any node's public address (client commands), or several comma-separated, tried in turn.
    /// Default: the demo hub's nodes in turn.
    #[arg(long, global = true, env = "KIZUNA_ENDPOINT")]
    endpoint: Option<String>,
    /// The hub CA to trust (client commands). Default: the demo's, when it exists.
    #[arg(long, global = true, env = "KIZUNA_CA")]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node of a hub described by a topology file.
    Serve {
        /// Topology file, e.g. cluster-config/local-3region.toml.
        #[arg(long)]
        config: PathBuf,
        /// Name of this node in the topology.
        #[arg(long)]
        node: String,
        /// Serve and connect in plaintext (no TLS). Development only; logged loudly.
        #[arg(long)]
        insecure: bool,
    },
    /// Run the local three-region demo hub in this process (cluster-config/local-3region.toml),
    /// or with --federation two federated hubs, Tochigi and Gunma.
    Demo {
        /// Where the demo nodes keep their data (and the demo's certificates, in `certs/`).
        /// Default: data/demo, with --federation data/federation-demo.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Run without TLS. Development only; logged loudly.
        #[arg(long, conflicts_with = "federation")]
        insecure: bool,
        /// Two hubs, Tochigi and Gunma (three nodes each, own CAs and signing keys, each
        /// listing the other as its peer), and a patient whose team spans both.
        #[arg(long)]
        federation: bool,
        /// With --federation: the first port (tochigi API base+1.., gunma base+101..).
        #[arg(long, default_value_t = cli::pair::DEMO_BASE_PORT, requires = "federation")]
        base_port: u16,
    },
    /// Show every member of a hub: role, term, log and applied indexes, reachability.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a diagnostic record (key → text); operators only.
    Put {
        key: String,
        value: String,
        /// Idempotency key; a random one by default.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Read a diagnostic record; operators only. By default linearizable while the node reaches
    /// a quorum, and its own copy marked stale when it cannot (a cut-off region).
    Get {
        key: String,
        /// Answer from the contacted node's own state, without asking the leader (may be stale).
        #[arg(long, conflicts_with = "linearizable")]
        local: bool,
        /// Fail instead of answering from a copy that may be stale.
        #[arg(long)]
        linearizable: bool,
    },
    /// A small load loop: concurrent clients writing records (operators) or reading a timeline
    /// (members); prints operations/s and latency.
    Load {
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Read this room's timeline (newest 50 posts) instead of writing records.
        #[arg(long)]
        timeline: Option<u64>,
        /// Post into room `--room` one at a time, alone for `--seconds`, then while a file of
        /// this many MiB uploads; then download it (post latency, upload and download MiB/s).
        #[arg(long, requires = "room", conflicts_with = "timeline")]
        attachment_mib: Option<u64>,
        #[arg(long)]
        room: Option<u64>,
        /// Size of each written value (records, or etcd puts).
        #[arg(long, default_value_t = 64)]
        value_bytes: usize,
        /// Write to this etcd cluster's leader instead (host:port,…; plaintext): the same loop
        /// for the side-by-side of `make bench`.
        #[arg(long, value_delimiter = ',', conflicts_with_all = ["timeline", "attachment_mib"])]
        etcd: Vec<String>,
        /// Open loop: this many operations per second in all, spread evenly over the clients
        /// and sent on schedule whatever the answers; latency counts from the scheduled time,
        /// so a stall shows in it (without: each client sends as soon as it is answered).
        #[arg(long)]
        rate: Option<f64>,
        /// The figures as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// A load of posts (the real write) by many clients over the nodes: posts/s, latency
    /// percentiles, fan-out to live subscribers; a table or --json (docs/benchmarks.md).
    Bench(cli::bench::BenchArgs),
    /// A hub at the scale of a large prefecture (or a share of it) through the real write
    /// path, resumable: facilities, professionals, patients with teams, posts (as an operator).
    Generate(cli::generate::GenerateArgs),
    /// Sign in; the session token is kept in ~/.config/kizuna/session.json (mode 0600).
    Login {
        login: String,
        /// Read from the terminal when not given.
        #[arg(long, env = "KIZUNA_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[arg(long, default_value = "cli")]
        device: String,
        /// The 6-digit code from the authenticator app (accounts with a second factor).
        #[arg(long)]
        totp: Option<String>,
    },
    /// The second factor: enroll (prints the secret for the app), confirm CODE, disable.
    #[command(subcommand)]
    Totp(cli::user::TotpCommand),
    /// End the session.
    Logout,
    /// Your sessions (devices); admins: another account's with --account.
    Sessions {
        #[arg(long)]
        account: Option<u64>,
    },
    /// End one session (a lost or shared device) at once, by its id from `sessions`.
    Revoke {
        session: String,
        #[arg(long)]
        account: Option<u64>,
    },
    /// Register with an invitation code (then wait for the facility admin's approval).
    Register {
        #[arg(long)]
        code: String,
        #[arg(long)]
        login: String,
        #[arg(long)]
        name: String,
        /// doctor, nurse, visiting-nurse, pharmacist, dentist, dental-hygienist, therapist, care-manager, care-worker, medical-social-worker, clerk, municipal-staff, other
        #[arg(long)]
        profession: String,
        #[arg(long, env = "KIZUNA_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// The patient list (患者一覧): newest post first, with unread counts.
    Patients {
        /// Only patients whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Only patients with unread posts.
        #[arg(long)]
        unread: bool,
    },
    /// Your groups (グループ).
    Groups,
    /// Your 1:1 connections (つながり).
    Connections,
    /// A room's posts, newest on top, a page at a time (--before for older ones).
    Timeline(cli::user::TimelineArgs),
    /// Open a patient's timeline in an emergency without being on its team (accounts an
    /// operator designated; four hours; every read audited).
    EmergencyAccess {
        room: u64,
        /// Why (10 to 500 characters): the operators review it.
        #[arg(long)]
        reason: String,
    },
    /// Post to a room.
    Post {
        room: u64,
        /// May be empty when files are attached.
        #[arg(default_value = "")]
        text: String,
        #[arg(long)]
        reply_to: Option<u64>,
        /// Files to attach (at most 10): uploaded with a progress bar, then posted. Running the
        /// same command again after a failure reuses what was already uploaded.
        #[arg(long, value_name = "FILE", num_args = 1..)]
        attach: Vec<PathBuf>,
    },
    /// Mark a room read (up to its newest post unless --up-to).
    Read {
        room: u64,
        #[arg(long)]
        up_to: Option<u64>,
    },
    /// Follow live events (new posts, edits, membership, your reads on other devices).
    Tail {
        /// Resume after this cursor (without: only new events).
        #[arg(long)]
        after: Option<u64>,
    },
    /// Invite an account into a room (a patient team, sub-room or group): its id on this hub,
    /// or `login@hub` for a professional of a federation peer hub.
    Invite {
        room: u64,
        account: String,
        /// Invite a family account into its patient's timeline.
        #[arg(long)]
        family: bool,
    },
    /// Approve a pending invitation or join request (room owners).
    Approve { room: u64, account: u64 },
    /// Send a connection request, or accept one with --accept.
    Connect {
        account: u64,
        #[arg(long)]
        accept: bool,
    },
    /// Attachments (添付): get ID downloads one, resumable.
    #[command(subcommand)]
    Attachment(cli::attachments::AttachmentCommand),
    /// Search posts, patients, people and facilities (Japanese: no spaces needed).
    Search { query: String },
    /// The resource map (医療介護資源マップ): search, show, profile.
    #[command(subcommand)]
    Map(cli::directory::MapCommand),
    /// Requests (リクエスト) to facilities: send, inbox, sent, show, accept, decline, cancel.
    #[command(subcommand)]
    Request(cli::requests::RequestCommand),
    /// Disaster mode (災害モード): declare, safety checks (安否確認), facility status, the board.
    #[command(subcommand)]
    Disaster(cli::disaster::DisasterCommand),
    /// Cluster administration and the operator's chores.
    #[command(subcommand)]
    Admin(cli::admin::AdminCommand),
}

/// jemalloc's figures of the heap: `epoch` refreshes its cached statistics first.
fn jemalloc_figures() -> Option<kizuna_server::metrics::HeapFigures> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    let allocated = stats::allocated::read().ok()? as u64;
    let resident = stats::resident::read().ok()? as u64;
    Some(kizuna_server::metrics::HeapFigures { allocated, resident })
}

fn main() -> anyhow::Result<()> {
    cli::init_tracing();
    kizuna_server::metrics::report_heap_with(jemalloc_figures);
    let args = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let target = || Target::new(args.endpoint.clone(), args.ca.clone());
        match args.command {
            Command::Serve { config, node, insecure } => cli::serve::serve(&config, &node, insecure).await,
            Command::Demo { data_dir, insecure, federation: false, .. } => {
                cli::serve::demo(&data_dir.unwrap_or_else(|| PathBuf::from("data/demo")), insecure).await
            }
            Command::Demo { data_dir, federation: true, base_port, .. } => {
                let data_dir = data_dir.unwrap_or_else(|| PathBuf::from("data/federation-demo"));
                cli::demo_federation::run(&data_dir, base_port).await
            }
            Command::Status { json } => cli::status::status(&target()?, json).await,
            Command::Put { key, value, idempotency_key } => {
                cli::records::put(&target()?, key, value, idempotency_key).await
            }
            Command::Get { key, local, linearizable } => {
                cli::records::get(&target()?, key, cli::records::consistency(local, linearizable)).await
            }
            Command::Load { seconds, attachment_mib: Some(mib), room: Some(room), .. } => {
                cli::attachment_load::run(&target()?, room, mib, seconds).await
            }
            Command::Load { clients, seconds, timeline, value_bytes, etcd, rate, json, .. } => {
                use cli::load::Workload;
                let workload = match (timeline, etcd.is_empty()) {
                    (Some(room), _) => Workload::Timeline { room },
                    (None, true) => Workload::Writes { value_bytes },
                    (None, false) => Workload::EtcdWrites { value_bytes },
                };
                cli::load::run(&target()?, (clients, seconds, rate), workload, (&etcd, json)).await
            }
            Command::Bench(args) => cli::bench::run(&target()?, args).await,
            Command::Generate(args) => cli::generate::run(&target()?, args).await,
            Command::Login { login, password, device, totp } => {
                cli::user::login(&target()?, login, password, device, totp).await
            }
            Command::Totp(cmd) => cli::user::totp(&target()?, cmd).await,
            Command::Logout => cli::user::logout(&target()?).await,
            Command::Sessions { account } => cli::sessions::list(&target()?, account).await,
            Command::Revoke { session, account } => cli::sessions::revoke(&target()?, session, account).await,
            Command::Register { code, login, name, profession, password } => {
                cli::user::admin::register(&target()?, code, login, name, profession, password).await
            }
            Command::Patients { filter, unread } => {
                cli::user::list(&target()?, RoomListKind::Patients, filter, unread).await
            }
            Command::Groups => cli::user::list(&target()?, RoomListKind::Groups, None, false).await,
            Command::Connections => cli::user::list(&target()?, RoomListKind::Connections, None, false).await,
            Command::Timeline(args) => cli::user::timeline(&target()?, args).await,
            Command::EmergencyAccess { room, reason } => cli::emergency::open(&target()?, room, reason).await,
            Command::Post { room, text, reply_to, attach } => {
                cli::user::post(&target()?, room, text, reply_to, attach).await
            }
            Command::Attachment(cmd) => cli::attachments::run(&target()?, cmd).await,
            Command::Read { room, up_to } => cli::user::read(&target()?, room, up_to).await,
            Command::Tail { after } => cli::user::tail(&target()?, after).await,
            Command::Invite { room, account, family } => cli::user::invite(&target()?, room, account, family).await,
            Command::Approve { room, account } => cli::user::approve(&target()?, room, account).await,
            Command::Connect { account, accept } => cli::user::connect(&target()?, account, accept).await,
            Command::Request(cmd) => cli::requests::run(&target()?, cmd).await,
            Command::Map(cmd) => cli::directory::run(&target()?, cmd).await,
            Command::Disaster(cmd) => cli::disaster::run(&target()?, cmd).await,
            Command::Search { query } => cli::search::run(&target()?, query).await,
            Command::Admin(cmd) => cli::admin::run(target, cmd).await,
        }
    })
}
