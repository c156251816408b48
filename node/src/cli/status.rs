//! `kizuna status`: every member of the hub as one node sees it.

use kizuna_proto::admin::ClusterStatusRequest;
use kizuna_proto::admin::cluster_admin_client::ClusterAdminClient;
use serde::Serialize;

#[derive(Serialize)]
struct MemberView {
    id: u64,
    name: String,
    region: String,
    role: String,
    voter: bool,
    term: u64,
    last_log_index: u64,
    applied_index: u64,
    reachable: bool,
    api_addr: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

#[derive(Serialize)]
struct StatusView {
    answered_by: u64,
    leader_id: Option<u64>,
    members: Vec<MemberView>,
}

pub async fn status(target: &super::Target, json: bool) -> anyhow::Result<()> {
    let (_, channel) = target.connect_any().await?;
    let resp = ClusterAdminClient::new(channel).status(ClusterStatusRequest {}).await?.into_inner();
    let view = StatusView {
        answered_by: resp.answered_by,
        leader_id: (resp.leader_id != 0).then_some(resp.leader_id),
        members: resp
            .members
            .into_iter()
            .map(|m| MemberView {
                id: m.id,
                name: m.name,
                region: m.region,
                role: m.role,
                voter: m.voter,
                term: m.term,
                last_log_index: m.last_log_index,
                applied_index: m.applied_index,
                reachable: m.reachable,
                api_addr: m.api_addr,
                error: m.error,
            })
            .collect(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    println!(
        "{:>3}  {:<14} {:<11} {:<9} {:>5} {:>9} {:>9}  {:<9} api",
        "id", "name", "region", "role", "term", "last log", "applied", "reachable"
    );
    for m in &view.members {
        let reach = if m.reachable { "yes" } else { "NO" };
        println!(
            "{:>3}  {:<14} {:<11} {:<9} {:>5} {:>9} {:>9}  {:<9} {}",
            m.id, m.name, m.region, m.role, m.term, m.last_log_index, m.applied_index, reach, m.api_addr
        );
        if !m.error.is_empty() {
            println!("     └ {}", m.error);
        }
    }
    match view.leader_id {
        Some(l) => println!("leader: node {l} (as seen by node {})", view.answered_by),
        None => println!("no leader (as seen by node {})", view.answered_by),
    }
    Ok(())
}
