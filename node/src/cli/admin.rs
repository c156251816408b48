//! `kizuna admin …`: membership, leadership and snapshots. Follows the leader hint when the
//! contacted node is not the leader.

use clap::Subcommand;
use kizuna_proto::admin::cluster_admin_client::ClusterAdminClient;
use kizuna_proto::admin::{
    AddLearnerRequest, ChangeMembershipRequest, MembershipResponse, NodeSpec, SnapshotRequest, TransferLeaderRequest,
};
use tonic::transport::Channel;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Add a node as a learner (it replicates but does not vote).
    AddLearner {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        name: String,
        #[arg(long)]
        region: String,
        #[arg(long)]
        raft_addr: String,
        #[arg(long)]
        api_addr: String,
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Set the complete set of voters (members must exist, e.g. as learners).
    SetVoters {
        /// Comma-separated node ids.
        #[arg(long, value_delimiter = ',')]
        voters: Vec<u64>,
        /// Keep removed voters as learners.
        #[arg(long)]
        retain: bool,
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Hand leadership to another voter.
    TransferLeader {
        #[arg(long)]
        to: u64,
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Build a snapshot on the contacted node, optionally purging its log up to it.
    Snapshot {
        #[arg(long)]
        purge: bool,
        #[arg(long)]
        endpoint: Option<String>,
    },
}

async fn on_leader<F, Fut>(endpoint: Option<String>, call: F) -> anyhow::Result<MembershipResponse>
where
    F: Fn(ClusterAdminClient<Channel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<MembershipResponse>, tonic::Status>>,
{
    let (_, channel) = super::connect_any(&super::endpoints(endpoint)?).await?;
    match call(ClusterAdminClient::new(channel)).await {
        Ok(r) => Ok(r.into_inner()),
        Err(status) => match super::leader_hint(&status) {
            Some(leader) => Ok(call(ClusterAdminClient::new(super::connect(&leader).await?)).await?.into_inner()),
            None => Err(status.into()),
        },
    }
}

fn print_membership(r: &MembershipResponse) {
    println!("voters {:?}, learners {:?} (log index {})", r.voter_ids, r.learner_ids, r.log_index);
}

pub async fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::AddLearner { id, name, region, raft_addr, api_addr, endpoint } => {
            let node = NodeSpec { id, name, region, raft_addr, api_addr };
            let r = on_leader(endpoint, |mut c| {
                let req = AddLearnerRequest { node: Some(node.clone()), wait_caught_up: true };
                async move { c.add_learner(req).await }
            })
            .await?;
            print_membership(&r);
        }
        AdminCommand::SetVoters { voters, retain, endpoint } => {
            let r = on_leader(endpoint, |mut c| {
                let req = ChangeMembershipRequest { voter_ids: voters.clone(), retain_as_learners: retain };
                async move { c.change_membership(req).await }
            })
            .await?;
            print_membership(&r);
        }
        AdminCommand::TransferLeader { to, endpoint } => {
            on_leader(endpoint, |mut c| async move { c.transfer_leader(TransferLeaderRequest { to_node_id: to }).await })
                .await?;
            println!("leadership handed to node {to}");
        }
        AdminCommand::Snapshot { purge, endpoint } => {
            let (_, channel) = super::connect_any(&super::endpoints(endpoint)?).await?;
            let r = ClusterAdminClient::new(channel).snapshot(SnapshotRequest { purge_log: purge }).await?.into_inner();
            println!("snapshot at index {}, log purged up to {}", r.snapshot_index, r.purged_index);
        }
    }
    Ok(())
}
