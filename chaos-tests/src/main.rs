//! `kizuna-chaos`: break a real hub under load and check that nothing acknowledged is lost.

use std::path::PathBuf;

use clap::Parser;
use kizuna_chaos::cluster::RaftTimers;
use kizuna_chaos::faults::Scenario;
use kizuna_chaos::federated::{self, FederatedPlan, HubFault};
use kizuna_chaos::proxy::LinkProxy;
use kizuna_chaos::run::{self, Plan, Topology};

#[derive(Parser)]
#[command(about = "Chaos runs against real kizuna processes; writes a JSON report and prints a table")]
struct Args {
    /// Faults to inject, in turn (comma-separated); `mix` picks one at random each time.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "mix")]
    scenario: Vec<Scenario>,
    #[arg(long, value_enum, default_value = "three-region")]
    topology: Topology,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Writers (readers are half as many; two subscribers).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value_t = 8)]
    rooms: usize,
    /// How long workers wait for an answer before trying the next node, in ms.
    #[arg(long, default_value_t = 3000)]
    answer_timeout_ms: u64,
    /// Links at loopback speed instead of the regions' normal delay and jitter.
    #[arg(long)]
    no_wan: bool,
    /// Two federated hubs (Tochigi and Gunma, three nodes each) with rooms spanning both,
    /// instead of one hub; faults from --hub-fault.
    #[arg(long)]
    federated: bool,
    /// With --federated: faults to inject, in turn (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "mix")]
    hub_fault: Vec<HubFault>,
    /// Instead of the regions' own delays: this round-trip time between any two regions, in
    /// ms (failover figures at a given RTT).
    #[arg(long)]
    rtt_ms: Option<u64>,
    /// The hub's Raft timers: heartbeat, election timeout min and max, in ms.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 300, 500])]
    raft_ms: Vec<u64>,
    /// Raft's pre-vote on (true) or off (false); the node's default when not given.
    #[arg(long)]
    pre_vote: Option<bool>,
    /// Serve the hub for --seconds instead of a run: its links as given (--rtt-ms, or the
    /// regions' own delays), set up, no faults; the doctor's session is written to this file
    /// and the API endpoints printed, for `kizuna bench` (ops/scripts/bench-wan.sh).
    #[arg(long)]
    serve_session: Option<PathBuf>,
    /// Serve one shaped link instead of a run, until killed: `LISTEN=UPSTREAM` (e.g.
    /// `127.0.0.1:27214=127.0.0.1:27204`), half of --rtt-ms added each way and --link-mbit as
    /// its bandwidth; a node routed through it (`routes` in a topology) reaches the other over
    /// a far, thin link (a new node's catch-up over a WAN: ops/scripts/bench-prefecture.sh).
    #[arg(long)]
    link: Option<String>,
    /// With --link: the link's bandwidth in megabits per second (unlimited when not given).
    #[arg(long)]
    link_mbit: Option<u64>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "chaos-report.json")]
    report: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let rt = tokio::runtime::Runtime::new()?;
    if let Some(link) = &a.link {
        return rt.block_on(serve_link(link, a.rtt_ms.unwrap_or(0), a.link_mbit));
    }
    if a.federated {
        let report = rt.block_on(federated::run(FederatedPlan {
            seed: a.seed,
            seconds: a.seconds,
            clients: a.clients,
            rooms: a.rooms.max(1),
            faults: a.hub_fault,
            answer_timeout_ms: a.answer_timeout_ms.max(100),
        }))?;
        std::fs::write(&a.report, serde_json::to_vec_pretty(&report)?)?;
        print!("{}", federated::table(&report));
        println!("report: {}", a.report.display());
        anyhow::ensure!(report.violations == 0, "{} violations", report.violations);
        return Ok(());
    }
    anyhow::ensure!(a.raft_ms.len() == 3, "--raft-ms takes three values: heartbeat,min,max (e.g. 100,300,500)");
    let plan = Plan {
        seed: a.seed,
        seconds: a.seconds,
        clients: a.clients,
        rooms: a.rooms.max(1),
        scenarios: a.scenario,
        topology: a.topology,
        wan: !a.no_wan,
        answer_timeout_ms: a.answer_timeout_ms.max(100),
        rtt_ms: a.rtt_ms,
        raft: RaftTimers {
            heartbeat_ms: a.raft_ms[0],
            election_min_ms: a.raft_ms[1],
            election_max_ms: a.raft_ms[2],
            pre_vote: a.pre_vote,
        },
    };
    if let Some(session) = &a.serve_session {
        return rt.block_on(run::serve(&plan, session));
    }
    let report = rt.block_on(run::run(plan))?;
    std::fs::write(&a.report, serde_json::to_vec_pretty(&report)?)?;
    print!("{}", run::table(&report));
    println!("report: {}", a.report.display());
    anyhow::ensure!(report.violations == 0, "{} violations", report.violations);
    Ok(())
}

/// One shaped link (`--link`), served until the process is killed.
async fn serve_link(link: &str, rtt_ms: u64, mbit: Option<u64>) -> anyhow::Result<()> {
    let (listen, upstream) = link
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--link takes LISTEN=UPSTREAM, e.g. 127.0.0.1:27214=127.0.0.1:27204"))?;
    let proxy = LinkProxy::start_at(listen.parse()?, upstream.parse()?).await?;
    proxy.set_delay(std::time::Duration::from_millis(rtt_ms / 2));
    proxy.set_bandwidth(mbit.map_or(0, |m| m.saturating_mul(1_000_000 / 8)));
    println!(
        "link {} -> {upstream}: {rtt_ms} ms round trip, {}",
        proxy.addr,
        mbit.map_or("unlimited".into(), |m| format!("{m} Mbit/s"))
    );
    std::future::pending::<()>().await;
    Ok(())
}
