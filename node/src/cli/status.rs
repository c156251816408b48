//! `kizuna status`: every member of the hub as one node sees it.

use kizuna_proto::admin::GetClusterStatusRequest;
use kizuna_proto::admin::cluster_admin_service_client::ClusterAdminServiceClient;
use serde::Serialize;

use super::labels;
use super::user::{authed, token};

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
    #[serde(skip_serializing_if = "String::is_empty")]
    stale_reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    fault: String,
    max_apply_version: u32,
    apply_version: u32,
}

#[derive(Serialize)]
struct StatusView {
    answered_by: u64,
    leader_id: Option<u64>,
    members: Vec<MemberView>,
}

pub async fn status(target: &super::Target, json: bool) -> anyhow::Result<()> {
    let token = token()?;
    let (_, channel) = target.connect_any().await?;
    let resp = ClusterAdminServiceClient::new(channel)
        .get_cluster_status(authed(GetClusterStatusRequest {}, &token)?)
        .await?
        .into_inner();
    let view = StatusView {
        answered_by: resp.answered_by,
        leader_id: resp.leader_id,
        members: resp
            .members
            .into_iter()
            .map(|m| MemberView {
                id: m.id,
                name: m.name,
                region: m.region,
                role: labels::member_role(m.role).to_owned(),
                voter: m.voter,
                term: m.term,
                last_log_index: m.last_log_index,
                applied_index: m.applied_index,
                reachable: m.reachable,
                api_addr: m.api_addr,
                error: m.error,
                stale_reason: m.stale_reason,
                fault: m.fault,
                max_apply_version: m.max_apply_version,
                apply_version: m.apply_version,
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
        // A leader cut off from its quorum still calls itself leader until it notices.
        let role =
            if m.stale_reason.is_empty() || !m.fault.is_empty() { m.role.clone() } else { format!("{}?", m.role) };
        println!(
            "{:>3}  {:<14} {:<11} {:<9} {:>5} {:>9} {:>9}  {:<9} {}",
            m.id, m.name, m.region, role, m.term, m.last_log_index, m.applied_index, reach, m.api_addr
        );
        for note in notes(m) {
            println!("     └ {note}");
        }
    }
    let answering = view.members.iter().find(|m| m.id == view.answered_by);
    match (view.leader_id, answering.filter(|m| !m.stale_reason.is_empty() || !m.fault.is_empty())) {
        (_, Some(failed)) if !failed.fault.is_empty() => {
            println!("node {} stopped applying the log (its view may be old): ask another node", failed.id)
        }
        (_, Some(cut_off)) => {
            println!("node {} is out of contact: {} (its view may be old)", cut_off.id, cut_off.stale_reason)
        }
        (Some(l), None) => println!("leader: node {l} (as seen by node {})", view.answered_by),
        (None, None) => println!("no leader (as seen by node {})", view.answered_by),
    }
    if let Some(line) = rolling_upgrade(&view.members) {
        println!("{line}");
    }
    Ok(())
}

/// A line while the members' builds differ (a rolling upgrade under way): the hub applies the
/// log as the oldest build does until every node runs the new one. A node of the newest build
/// without a master key reports the version before sealed state, so it is listed too.
fn rolling_upgrade(members: &[MemberView]) -> Option<String> {
    let builds: Vec<u32> = members.iter().filter(|m| m.reachable).map(|m| m.max_apply_version).collect();
    let (oldest, newest) = (builds.iter().min()?, builds.iter().max()?);
    let active = members.iter().map(|m| m.apply_version).max()?;
    (oldest != newest || active < *newest).then(|| {
        let behind: Vec<String> =
            members.iter().filter(|m| m.reachable && m.max_apply_version < *newest).map(|m| m.name.clone()).collect();
        format!(
            "rolling upgrade: the hub applies the log as version {active}; builds of version {newest} take over \
             once every node runs one with a master key (still to upgrade, or without [encryption]: {})",
            if behind.is_empty() { "none, moving on".to_owned() } else { behind.join(", ") }
        )
    })
}

/// What to say under a member: why it stopped applying (which makes its staleness moot), why
/// it cannot be reached, why its copy may be behind.
fn notes(m: &MemberView) -> Vec<String> {
    if !m.fault.is_empty() {
        return vec![format!("STOPPED APPLYING THE LOG: {} (docs/operations.md)", m.fault)];
    }
    [&m.error, &m.stale_reason].into_iter().filter(|n| !n.is_empty()).cloned().collect()
}
