//! `kizuna admin …`: certificates, membership, leadership and snapshots. Follows the leader
//! hint when the contacted node is not the leader.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use kizuna_proto::admin::cluster_admin_service_client::ClusterAdminServiceClient;
use kizuna_proto::admin::{
    AddLearnerRequest, ChangeMembershipRequest, CreateSnapshotRequest, GetClusterStatusRequest, GetStateDigestRequest,
    Membership, NodeSpec, RotateKeysRequest, TransferLeaderRequest,
};
use tonic::transport::Channel;

use super::Target;
use super::user::{authed, token};
use crate::config::HubConfig;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create the hub's first operator (only while it has none); prints a one-time password.
    Init {
        #[arg(long)]
        login: String,
        #[arg(long, default_value = "事務局")]
        name: String,
    },
    /// Register and approve a facility (operator).
    Facility {
        #[arg(long)]
        name: String,
        /// clinic, hospital, pharmacy, dental-clinic, visiting-nursing-station, care-office, rehabilitation, municipality, other
        #[arg(long)]
        kind: String,
        #[arg(long)]
        municipality: String,
    },
    /// Issue a single-use invitation for a facility (operator or facility admin).
    Invitation {
        #[arg(long)]
        facility: u64,
        #[arg(long, default_value_t = 72)]
        hours: u32,
        /// The invitee becomes an admin of the facility.
        #[arg(long)]
        admin: bool,
    },
    /// Approve a registered account (facility admin or operator).
    ApproveAccount { account: u64 },
    /// Stop an account at once: every session of it is refused on every node.
    StopAccount { account: u64 },
    /// Show the hub's session policy, or set it with both flags (operators). It is hub state,
    /// replicated to every node, not a node setting.
    SessionPolicy {
        /// Idle timeout, 5..=240 minutes.
        #[arg(long, requires = "absolute_hours")]
        idle_minutes: Option<u32>,
        /// Absolute session lifetime, 1..=24 hours.
        #[arg(long, requires = "idle_minutes")]
        absolute_hours: Option<u32>,
    },
    /// Designate an account for emergency access (緊急アクセス), or with --off no longer.
    BreakGlass {
        #[arg(long)]
        account: u64,
        #[arg(long)]
        off: bool,
    },
    /// Every emergency access with its reason, newest first.
    EmergencyAccesses,
    /// Who must have a second factor; with --require or --off, change it hub-wide (operators)
    /// or for --facility (its admins, operators).
    SecondFactor {
        #[arg(long)]
        facility: Option<u64>,
        /// Require it, due after --grace-days (0..=90).
        #[arg(long, conflicts_with = "off")]
        require: bool,
        #[arg(long, default_value_t = 30, requires = "require")]
        grace_days: u32,
        /// No longer require it.
        #[arg(long)]
        off: bool,
    },
    /// The hub's rule for new passwords; with --min-chars or --min-kinds, change it (operators).
    PasswordPolicy {
        /// The minimum length, 8..=64 characters.
        #[arg(long)]
        min_chars: Option<u32>,
        /// How many kinds (lower-case, upper-case, digits, others) a password mixes, 1..=4.
        #[arg(long)]
        min_kinds: Option<u32>,
    },
    /// Issue a new random password for an account (its facility's admins, operators) and print
    /// it to hand over: its holder must change it at the next sign-in.
    IssuePassword {
        #[arg(long)]
        account: u64,
    },
    /// The audit log of patient data (operators; a facility's admins with --facility, their
    /// own): list, export as JSON lines, or verify its chain.
    Audit {
        /// Only entries of this account.
        #[arg(long)]
        account: Option<u64>,
        /// Only entries by this facility's staff (a facility's admins: their own facility).
        #[arg(long)]
        facility: Option<u64>,
        /// Only entries about this patient.
        #[arg(long)]
        patient: Option<u64>,
        /// Write every matching entry to this file as JSON lines.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Recompute the hash chain on the contacted node.
        #[arg(long)]
        verify: bool,
        /// Verify a file written by --export (without --account or --patient) here, offline:
        /// no hub or session needed.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["export", "verify"])]
        verify_export: Option<PathBuf>,
    },
    /// Generate the hub's VAPID key for Web Push notices (see `[notifications]`); prints its public key.
    VapidKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// Create the hub CA (or reuse the one in --out) and a certificate for every node of a topology.
    Certs {
        #[arg(long)]
        config: PathBuf,
        /// Directory for ca.pem, ca.key, <node>.pem, <node>.key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a node as a learner (it replicates but does not vote); waits until it caught up.
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
    },
    /// Set the complete set of voters (members must exist, e.g. as learners).
    SetVoters {
        /// Comma-separated node ids.
        #[arg(long, value_delimiter = ',', required = true)]
        voters: Vec<u64>,
        /// Keep removed voters as learners.
        #[arg(long)]
        retain: bool,
        /// Accept a placement where one region's loss could stop the hub.
        #[arg(long)]
        force: bool,
    },
    /// Hand leadership to another voter.
    TransferLeader {
        #[arg(long)]
        to: u64,
    },
    /// Build a snapshot on the contacted node, optionally purging its log up to it.
    Snapshot {
        #[arg(long)]
        purge: bool,
    },
    /// Where a snapshot file's bytes go, table by table (entries, key and value bytes as
    /// stored, before compression). Reads the file only: no node, no keys.
    SnapshotSpace {
        /// A node's snapshot, DATA_DIR/snapshots/current.ckpt, or a snapshot file.
        file: PathBuf,
    },
    /// Every member's applied index and state digest: replicas at one index must agree.
    Digest,
    /// An encrypted backup of the hub's whole state (attached files included), made by the
    /// contacted node, written to --dir; the newest --keep are kept. `backup verify FILE`
    /// checks one end to end; `backup keygen --out FILE` makes the operators' key.
    Backup {
        #[command(subcommand)]
        action: Option<BackupAction>,
        /// Where backups are kept (the newest --keep of this hub stay). Needed to make one.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The operators' backup key (32 bytes; `kizuna admin backup keygen`). Needed to make one.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Generations kept in --dir (the MHLW guideline's example: daily, 5 generations).
        #[arg(long, default_value_t = 5)]
        keep: usize,
        /// Also copy the backup here: a directory on media that goes offline or is write-once.
        #[arg(long)]
        offline_copy: Option<PathBuf>,
    },
    /// Build the nodes of a new hub (--config) from a backup: their data directories must be
    /// empty. Every restored node must report the backup's state digest.
    Restore {
        #[arg(long)]
        backup: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// The new hub's topology (its nodes become the hub's membership).
        #[arg(long)]
        config: PathBuf,
        /// Only this node (default: every node of the topology).
        #[arg(long)]
        node: Option<String>,
    },
    /// Make a new master key for encryption at rest (32 random bytes in base64, mode 0400,
    /// never over an existing file); name it in `[encryption] master_key_file` on every node.
    MasterKey {
        #[arg(long)]
        out: PathBuf,
        /// When --out exists, keep it (and print its fingerprint) instead of failing: for a
        /// set-up step that runs on every start.
        #[arg(long)]
        keep_existing: bool,
    },
    /// Rewrap the hub's data keys under the leader's current master key (after a master key
    /// rotation), and with --new-data-key add one that seals every later write.
    RotateKeys {
        #[arg(long)]
        new_data_key: bool,
    },
    /// Hub↔hub federation: the hub's signing key, whether its peers answer, the queue to each
    /// peer, and pausing it.
    #[command(subcommand)]
    Federation(super::federation::FederationCommand),
}

#[derive(Subcommand)]
pub enum BackupAction {
    /// Decrypt a backup, check it is whole and restore it into a scratch directory: the digests
    /// must match the one recorded when it was made.
    Verify {
        file: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Make a new backup key (32 random bytes, mode 0400; never over an existing file).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
}

fn backup_action(action: BackupAction) -> anyhow::Result<()> {
    match action {
        BackupAction::Verify { file, key } => {
            let m = super::backup::verify(&file, &super::backup::BackupKey::load(&key)?)?;
            println!(
                "backup intact: hub {:?}, index {}, term {}, {} entries, digest {} (made {})",
                m.hub, m.applied_index, m.term, m.entries, m.sha256, m.created_at
            );
        }
        BackupAction::Keygen { out } => {
            let id = super::backup::BackupKey::generate(&out)?;
            println!("wrote backup key {id} to {}: keep copies offline; without it no backup restores", out.display());
        }
    }
    Ok(())
}

/// Calls the contacted node, then the leader it names if it is not the leader. `call` gets the
/// client and the operator's session token.
async fn on_leader<F, Fut, R>(target: &Target, call: F) -> anyhow::Result<R>
where
    F: Fn(ClusterAdminServiceClient<Channel>, String) -> Fut,
    Fut: Future<Output = anyhow::Result<tonic::Response<R>>>,
{
    let token = token()?;
    let (_, channel) = target.connect_any().await?;
    let first = call(ClusterAdminServiceClient::new(channel), token.clone()).await;
    let hint = first.as_ref().err().and_then(|e| e.downcast_ref::<tonic::Status>()).and_then(|s| target.leader_hint(s));
    match (first, hint) {
        (Ok(r), _) => Ok(r.into_inner()),
        (Err(_), Some(leader)) => {
            Ok(call(ClusterAdminServiceClient::new(target.connect(&leader).await?), token).await?.into_inner())
        }
        (Err(e), None) => Err(e),
    }
}

fn print_membership(log_index: u64, m: Option<Membership>) {
    let m = m.unwrap_or_default();
    println!("voters {:?}, learners {:?} (log index {log_index})", m.voter_ids, m.learner_ids);
}

/// The table of `kizuna admin snapshot-space`, largest table first.
fn print_space(file: &std::path::Path) -> anyhow::Result<()> {
    let mut tables = kizuna_store::snapshot_space(file).with_context(|| format!("reading {}", file.display()))?;
    tables.sort_by_key(|t| std::cmp::Reverse(t.key_bytes + t.value_bytes));
    let total: u64 = tables.iter().map(|t| t.key_bytes + t.value_bytes).sum();
    println!("{:<40} {:>12} {:>14} {:>14} {:>6}", "table", "entries", "key bytes", "value bytes", "share");
    for t in &tables {
        let share = 100.0 * (t.key_bytes + t.value_bytes) as f64 / total.max(1) as f64;
        println!("{:<40} {:>12} {:>14} {:>14} {:>5.1}%", t.table, t.entries, t.key_bytes, t.value_bytes, share);
    }
    println!("{:<40} {:>12} {:>14}", "all", tables.iter().map(|t| t.entries).sum::<u64>(), total);
    Ok(())
}

pub async fn run(target: impl Fn() -> anyhow::Result<Target>, cmd: AdminCommand) -> anyhow::Result<()> {
    use super::user::admin;
    match cmd {
        AdminCommand::Init { login, name } => admin::init(&target()?, login, name).await?,
        AdminCommand::Facility { name, kind, municipality } => {
            admin::facility(&target()?, name, kind, municipality).await?
        }
        AdminCommand::Invitation { facility, hours, admin: as_admin } => {
            admin::invitation(&target()?, facility, hours, as_admin).await?
        }
        AdminCommand::ApproveAccount { account } => admin::account(&target()?, account, false).await?,
        AdminCommand::StopAccount { account } => admin::account(&target()?, account, true).await?,
        AdminCommand::SessionPolicy { idle_minutes, absolute_hours } => {
            super::sessions::policy(&target()?, idle_minutes.zip(absolute_hours)).await?
        }
        AdminCommand::BreakGlass { account, off } => super::emergency::designate(&target()?, account, !off).await?,
        AdminCommand::EmergencyAccesses => super::emergency::list(&target()?).await?,
        AdminCommand::SecondFactor { facility, require, grace_days, off } => {
            use super::sessions::SecondFactorChange;
            let change = match (require, off) {
                (true, _) => Some(SecondFactorChange::Require { grace_days }),
                (false, true) => Some(SecondFactorChange::Lift),
                (false, false) => None,
            };
            super::sessions::second_factor_policy(&target()?, facility, change).await?
        }
        AdminCommand::PasswordPolicy { min_chars, min_kinds } => {
            super::sessions::password_policy(&target()?, min_chars, min_kinds).await?
        }
        AdminCommand::IssuePassword { account } => super::sessions::issue_password(&target()?, account).await?,
        AdminCommand::Audit { verify_export: Some(path), .. } => {
            let verified = super::audit_export::verify_file(&path)?;
            println!("audit export intact: {verified} entries verified");
        }
        AdminCommand::Audit { account, facility, patient, export, verify, verify_export: None } => {
            admin::audit(&target()?, (account, patient, facility), export, verify).await?
        }
        AdminCommand::VapidKey { out } => super::vapid::run(&out)?,
        AdminCommand::Backup { action: Some(action), .. } => backup_action(action)?,
        AdminCommand::Backup { action: None, dir, key, keep, offline_copy } => {
            let (Some(dir), Some(key)) = (dir, key) else {
                anyhow::bail!("making a backup needs --dir (where backups are kept) and --key (the operators' key)")
            };
            let key = super::backup::BackupKey::load(&key)?;
            let (_, channel) = target()?.connect_any().await?;
            let path = super::backup::create(channel, &token()?, (&dir, offline_copy.as_deref()), &key, keep).await?;
            println!("wrote {}", path.display());
        }
        AdminCommand::Restore { backup, key, config, node } => {
            let hub = HubConfig::load(&config)?;
            let key = super::backup::BackupKey::load(&key)?;
            let m = super::backup::restore(&backup, &key, &hub, node.as_deref())?;
            println!(
                "hub {:?} restored at index {} (term {}); start its nodes with `kizuna serve`",
                m.hub, m.applied_index, m.term
            );
        }
        AdminCommand::MasterKey { out, keep_existing: true } if out.exists() => {
            let key = kizuna_store::MasterKey::load(&out)?;
            println!("kept master key {} in {}", key.fingerprint(), out.display());
        }
        AdminCommand::MasterKey { out, .. } => {
            let key = kizuna_store::MasterKey::create(&out)?;
            println!(
                "wrote master key {} to {}: copy it to every node (outside the data directories) and keep a copy offline; \
                 without it the hub's data cannot be read",
                key.fingerprint(),
                out.display()
            );
        }
        AdminCommand::RotateKeys { new_data_key } => {
            let r = on_leader(&target()?, |mut c, token| async move {
                Ok(c.rotate_keys(authed(RotateKeysRequest { new_data_key }, &token)?).await?)
            })
            .await?;
            println!(
                "the hub holds {} data keys, wrapped under master key {} (log index {})",
                r.data_keys, r.master_key, r.log_index
            );
        }
        AdminCommand::Certs { config, out } => {
            let hub = HubConfig::load(&config)?;
            for path in crate::tls::generate(&hub, &out)? {
                println!("wrote {}", path.display());
            }
        }
        AdminCommand::AddLearner { id, name, region, raft_addr, api_addr } => {
            let node = NodeSpec { id, name, region, raft_addr, api_addr };
            let r = on_leader(&target()?, |mut c, token| {
                let req = AddLearnerRequest { node: Some(node.clone()), wait_caught_up: true };
                async move { Ok(c.add_learner(authed(req, &token)?).await?) }
            })
            .await?;
            print_membership(r.log_index, r.membership);
        }
        AdminCommand::SetVoters { voters, retain, force } => {
            let r = on_leader(&target()?, |mut c, token| {
                let req = ChangeMembershipRequest { voter_ids: voters.clone(), retain_as_learners: retain, force };
                async move { Ok(c.change_membership(authed(req, &token)?).await?) }
            })
            .await?;
            print_membership(r.log_index, r.membership);
        }
        AdminCommand::TransferLeader { to } => {
            on_leader(&target()?, |mut c, token| async move {
                Ok(c.transfer_leader(authed(TransferLeaderRequest { to_node_id: to }, &token)?).await?)
            })
            .await?;
            println!("leadership handed to node {to}");
        }
        AdminCommand::Snapshot { purge } => {
            let req = authed(CreateSnapshotRequest { purge_log: purge }, &token()?)?;
            let (_, channel) = target()?.connect_any().await?;
            let r = ClusterAdminServiceClient::new(channel).create_snapshot(req).await?.into_inner();
            let purged = r.purged_index.map_or("nothing purged yet".into(), |i| format!("log purged up to {i}"));
            println!("snapshot at index {}, {purged}", r.snapshot_index);
        }
        AdminCommand::SnapshotSpace { file } => print_space(&file)?,
        AdminCommand::Digest => digests(&target()?).await?,
        AdminCommand::Federation(cmd) => super::federation::run(cmd, target).await?,
    }
    Ok(())
}

/// Asks every member for its state digest and says whether replicas at one index agree.
async fn digests(target: &Target) -> anyhow::Result<()> {
    let token = token()?;
    let (_, channel) = target.connect_any().await?;
    let status = ClusterAdminServiceClient::new(channel)
        .get_cluster_status(authed(GetClusterStatusRequest {}, &token)?)
        .await?
        .into_inner();
    let mut by_index: std::collections::BTreeMap<u64, std::collections::BTreeSet<String>> = Default::default();
    for m in &status.members {
        let answer = async {
            let channel = target.connect(&target.endpoint_of(&m.api_addr)).await?;
            let req = authed(GetStateDigestRequest {}, &token)?;
            anyhow::Ok(ClusterAdminServiceClient::new(channel).get_state_digest(req).await?.into_inner())
        };
        match answer.await {
            Ok(d) => {
                println!("{:<16} applied {:>8}  {}  ({} entries)", m.name, d.applied_index, d.sha256, d.entries);
                by_index.entry(d.applied_index).or_default().insert(d.sha256);
            }
            Err(e) => println!("{:<16} unreachable: {e:#}", m.name),
        }
    }
    if by_index.values().any(|digests| digests.len() > 1) {
        anyhow::bail!("replicas at the same applied index hold different states");
    }
    println!("replicas at the same applied index agree");
    Ok(())
}
