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
        let role = role_label(m);
        println!(
            "{:>3}  {:<14} {:<11} {:<9} {:>5} {:>9} {:>9}  {:<9} {}",
            m.id, m.name, m.region, role, m.term, m.last_log_index, m.applied_index, reach, m.api_addr
        );
        for note in notes(m) {
            println!("     └ {note}");
        }
    }
    println!("{}", verdict(&view));
    if let Some(line) = rolling_upgrade(&view.members) {
        println!("{line}");
    }
    Ok(())
}

/// A member's role as the table shows it: a member whose copy may be stale (a leader cut off
/// from its quorum still calls itself leader until it notices) gets a `?`, unless it stopped
/// applying (its role then says `failed`).
fn role_label(m: &MemberView) -> String {
    if m.stale_reason.is_empty() || !m.fault.is_empty() { m.role.clone() } else { format!("{}?", m.role) }
}

/// The line under the table: who leads, as the answering node sees it, or why its view may be
/// old (it stopped applying, or it is out of contact).
fn verdict(view: &StatusView) -> String {
    let answering = view.members.iter().find(|m| m.id == view.answered_by);
    match (view.leader_id, answering.filter(|m| !m.stale_reason.is_empty() || !m.fault.is_empty())) {
        (_, Some(failed)) if !failed.fault.is_empty() => {
            format!("node {} stopped applying the log (its view may be old): ask another node", failed.id)
        }
        (_, Some(cut_off)) => {
            format!("node {} is out of contact: {} (its view may be old)", cut_off.id, cut_off.stale_reason)
        }
        (Some(l), None) => format!("leader: node {l} (as seen by node {})", view.answered_by),
        (None, None) => format!("no leader (as seen by node {})", view.answered_by),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A reachable member as `kizuna status` gets it, in `role`, current and applying.
    fn member(id: u64, role: &str) -> MemberView {
        MemberView {
            id,
            name: format!("region-{id}-{id}"),
            region: format!("region-{id}"),
            role: role.to_owned(),
            voter: true,
            term: 3,
            last_log_index: 42,
            applied_index: 42,
            reachable: true,
            api_addr: format!("127.0.0.1:5005{id}"),
            error: String::new(),
            stale_reason: String::new(),
            fault: String::new(),
            max_apply_version: 7,
            apply_version: 7,
        }
    }

    const CUT_OFF: &str = "this leader has not heard from a quorum for 1200 ms";

    #[test]
    fn a_cut_off_leader_shows_as_leader_with_a_question_mark_and_out_of_contact() {
        let mut leader = member(1, "leader");
        leader.stale_reason = CUT_OFF.to_owned();
        assert_eq!(role_label(&leader), "leader?");
        assert_eq!(notes(&leader), vec![CUT_OFF.to_owned()]);
        let view = StatusView { answered_by: 1, leader_id: Some(1), members: vec![leader, member(2, "follower")] };
        assert_eq!(verdict(&view), format!("node 1 is out of contact: {CUT_OFF} (its view may be old)"));
    }

    #[test]
    fn a_follower_without_word_from_its_leader_shows_as_follower_with_a_question_mark() {
        let mut follower = member(2, "follower");
        follower.stale_reason = "no word from the leader (node 1) for 900 ms".to_owned();
        assert_eq!(role_label(&follower), "follower?");
        let view = StatusView { answered_by: 2, leader_id: Some(1), members: vec![follower] };
        assert!(verdict(&view).starts_with("node 2 is out of contact: no word from the leader"), "{}", verdict(&view));
    }

    #[test]
    fn a_current_leader_is_plainly_the_leader() {
        let leader = member(1, "leader");
        assert_eq!(role_label(&leader), "leader");
        assert!(notes(&leader).is_empty());
        let view = StatusView { answered_by: 2, leader_id: Some(1), members: vec![leader, member(2, "follower")] };
        assert_eq!(role_label(&view.members[1]), "follower");
        assert_eq!(verdict(&view), "leader: node 1 (as seen by node 2)");
    }

    #[test]
    fn a_member_that_stopped_applying_shows_its_fault_not_a_question_mark() {
        let mut failed = member(3, "failed");
        failed.stale_reason = CUT_OFF.to_owned();
        failed.fault = "applying entry 43: disk full".to_owned();
        assert_eq!(role_label(&failed), "failed");
        let note = "STOPPED APPLYING THE LOG: applying entry 43: disk full (docs/operations.md)";
        assert_eq!(notes(&failed), vec![note.to_owned()]);
        let view = StatusView { answered_by: 3, leader_id: Some(1), members: vec![failed] };
        assert_eq!(verdict(&view), "node 3 stopped applying the log (its view may be old): ask another node");
    }
}
