//! `kizuna`: run a hub node, the local demo hub, or talk to a hub as a client.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kizuna_node::cli::{self, Target};

#[derive(Parser)]
#[command(
    name = "kizuna",
    version,
    about = "Kizuna (絆): a replicated collaboration hub for home medical and care teams"
)]
struct Cli {
    /// Any node's public address (client commands). Default: the demo hub's nodes in turn.
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
    /// Run the local three-region demo hub in this process (cluster-config/local-3region.toml).
    Demo {
        /// Where the demo nodes keep their data (and the demo's certificates, in `certs/`).
        #[arg(long, default_value = "data/demo")]
        data_dir: PathBuf,
        /// Run without TLS. Development only; logged loudly.
        #[arg(long)]
        insecure: bool,
    },
    /// Show every member of a hub: role, term, log and applied indexes, reachability.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a record (key → text).
    Put {
        key: String,
        value: String,
        /// Idempotency key; a random one by default.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Read a record.
    Get {
        key: String,
        /// Answer from the contacted node's own state, without asking the leader (may be stale).
        #[arg(long)]
        local: bool,
    },
    /// A small load loop: concurrent clients writing records; prints committed writes/s and latency.
    Load {
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Cluster administration.
    #[command(subcommand)]
    Admin(cli::admin::AdminCommand),
}

fn main() -> anyhow::Result<()> {
    cli::init_tracing();
    let args = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let target = || Target::new(args.endpoint.clone(), args.ca.clone());
        match args.command {
            Command::Serve { config, node, insecure } => cli::serve::serve(&config, &node, insecure).await,
            Command::Demo { data_dir, insecure } => cli::serve::demo(&data_dir, insecure).await,
            Command::Status { json } => cli::status::status(&target()?, json).await,
            Command::Put { key, value, request_id } => cli::records::put(&target()?, key, value, request_id).await,
            Command::Get { key, local } => cli::records::get(&target()?, key, local).await,
            Command::Load { clients, seconds } => cli::load::run(&target()?, clients, seconds).await,
            Command::Admin(cmd) => cli::admin::run(target, cmd).await,
        }
    })
}
