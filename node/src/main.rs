//! `kizuna`: run a hub node, the local demo hub, or talk to a hub as a client.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kizuna_node::cli;

#[derive(Parser)]
#[command(name = "kizuna", version, about = "Kizuna (絆): a replicated collaboration hub for home medical and care teams")]
struct Cli {
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
    },
    /// Run the local three-region demo hub in this process (cluster-config/local-3region.toml).
    Demo {
        /// Where the demo nodes keep their data.
        #[arg(long, default_value = "data/demo")]
        data_dir: PathBuf,
    },
    /// Show every member of a hub: role, term, log and applied indexes, reachability.
    Status {
        /// Any node's public address; defaults to trying the demo hub's nodes in turn.
        #[arg(long)]
        endpoint: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a record (key → text).
    Put {
        key: String,
        value: String,
        #[arg(long)]
        endpoint: Option<String>,
        /// Idempotency key; a random one by default.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Read a record.
    Get {
        key: String,
        #[arg(long)]
        endpoint: Option<String>,
        /// Answer from the contacted node's own state, without asking the leader (may be stale).
        #[arg(long)]
        local: bool,
    },
    /// A small load loop: concurrent clients writing records; prints committed writes/s and latency.
    Load {
        #[arg(long)]
        endpoint: Option<String>,
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
        match args.command {
            Command::Serve { config, node } => cli::serve::serve(&config, &node).await,
            Command::Demo { data_dir } => cli::serve::demo(&data_dir).await,
            Command::Status { endpoint, json } => cli::status::status(endpoint, json).await,
            Command::Put { key, value, endpoint, request_id } => {
                cli::records::put(endpoint, key, value, request_id).await
            }
            Command::Get { key, endpoint, local } => cli::records::get(endpoint, key, local).await,
            Command::Load { endpoint, clients, seconds } => cli::load::run(endpoint, clients, seconds).await,
            Command::Admin(cmd) => cli::admin::run(cmd).await,
        }
    })
}
