//! Cluster administration: status, membership, leadership, snapshots, federation peers.
//! Operators only: every call needs the session of a hub operator (事務局), checked before
//! anything else happens.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kizuna_domain::federation::HubName;
use kizuna_domain::{Command, CommandResult, Envelope, HubView, LogCommand};
use kizuna_proto::admin::cluster_admin_service_server::ClusterAdminService;
use kizuna_proto::admin::{
    AddLearnerRequest, AddLearnerResponse, BackupImage, ChangeMembershipRequest, ChangeMembershipResponse,
    CreateBackupRequest, CreateBackupResponse, CreateSnapshotRequest, CreateSnapshotResponse, GetClusterStatusRequest,
    GetClusterStatusResponse, GetStateDigestRequest, GetStateDigestResponse, ListFederationPeersRequest,
    ListFederationPeersResponse, Member, MemberRole, Membership, RotateKeysRequest, RotateKeysResponse,
    SetFederationPeerPausedRequest, SetFederationPeerPausedResponse, TransferLeaderRequest, TransferLeaderResponse,
};
use openraft::ChangeMembers;
use tonic::{Request, Response, Status};

use super::shared::{Api, ReadFrom, view_status};
use crate::federation::{ConfiguredPeer, PeerStatus};
use crate::member::{ClusterStatus, MemberStatus, NodeRole};
use crate::node::{Node, NodeError};
use crate::raft::HubNode;
use kizuna_domain::model::AccountId;

type BackupStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<CreateBackupResponse, Status>> + Send>>;

/// Sends the image's description, then its bytes in 1 MiB chunks; the file goes afterwards,
/// also when the client went away.
async fn send_image(
    image: BackupImage,
    path: std::path::PathBuf,
    tx: tokio::sync::mpsc::Sender<Result<CreateBackupResponse, Status>>,
) {
    use kizuna_proto::admin::create_backup_response::Part;
    use tokio::io::AsyncReadExt;
    let sent = async {
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| Status::internal(e.to_string()))?;
        if tx.send(Ok(CreateBackupResponse { part: Some(Part::Image(image)) })).await.is_err() {
            return Ok(());
        }
        loop {
            let mut chunk = vec![0u8; 1 << 20];
            let n = file.read(&mut chunk).await.map_err(|e| Status::internal(e.to_string()))?;
            if n == 0 {
                return Ok(());
            }
            chunk.truncate(n);
            if tx.send(Ok(CreateBackupResponse { part: Some(Part::Chunk(chunk)) })).await.is_err() {
                return Ok(());
            }
        }
    };
    if let Err(status) = sent.await {
        let _ = tx.send(Err(status)).await;
    }
    if let Err(e) = tokio::fs::remove_file(&path).await {
        tracing::warn!(path = %path.display(), "could not remove a backup image: {e}");
    }
}

pub struct ClusterAdmin {
    api: Api,
    node: Arc<Node>,
    /// One backup image at a time per node: each is as large as the hub's state. Per
    /// service, not per process: an in-process hub runs several nodes in one process.
    backups_at_once: Arc<tokio::sync::Semaphore>,
}

impl ClusterAdmin {
    /// Writes an image of the state to `path` if the disk can take it, and audits who took it.
    async fn write_backup_image(&self, path: &std::path::Path, operator: AccountId) -> Result<BackupImage, Status> {
        self.check_room_for_image(path)?;
        let (state, image_path) = (self.node.state.clone(), path.to_owned());
        let written = tokio::task::spawn_blocking(move || state.write_image(&image_path)).await;
        let info = written
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("writing the backup image: {e}")))?;
        let size = std::fs::metadata(path).map_err(|e| Status::internal(e.to_string()))?.len();
        let image = BackupImage {
            hub: self.node.raft.config().cluster_name.clone(),
            node_id: self.node.id,
            term: info.term,
            applied_index: info.digest.applied_index,
            sha256: info.digest.sha256,
            entries: info.digest.entries,
            size,
        };
        // The whole hub's data leaves through this call: the audit chain says who took it.
        let what = format!(
            "backup image of the whole state at index {} taken by operator {}",
            image.applied_index, operator.0
        );
        let record = kizuna_domain::audit::AuditRecord::by_hub(crate::node::now_ms(), self.node.id, what);
        self.node.state.journal.append(&record).map_err(|e| Status::internal(format!("audit journal: {e}")))?;
        Ok(image)
    }

    /// Refuses an image the node's disk cannot hold with a tenth to spare: a full disk would
    /// stop the node's writes.
    fn check_room_for_image(&self, path: &std::path::Path) -> Result<(), Status> {
        let state: u64 = self
            .node
            .state
            .storage_properties()
            .iter()
            .filter(|p| {
                kizuna_store::STATE_FAMILIES.contains(&p.column_family)
                    && matches!(p.metric, "kizuna_rocksdb_sst_bytes" | "kizuna_rocksdb_blob_bytes")
            })
            .map(|p| p.value)
            .sum();
        let dir = path.parent().unwrap_or(path);
        let free = rustix::fs::statvfs(dir).map(|s| s.f_bavail.saturating_mul(s.f_frsize));
        let free = free.map_err(|e| Status::internal(format!("the node's free space: {e}")))?;
        if state.saturating_add(state / 10) > free {
            return Err(Status::resource_exhausted(format!(
                "this node has {free} bytes free, too few for an image of about {state} bytes: make the backup on another node"
            )));
        }
        Ok(())
    }

    pub fn new(api: Api) -> Self {
        let node = api.node.clone();
        Self { api, node, backups_at_once: Arc::new(tokio::sync::Semaphore::new(1)) }
    }

    /// Membership operations run on the leader only.
    fn require_leader(&self) -> Result<(), Status> {
        let m = self.node.metrics();
        if m.current_leader == Some(self.node.id) {
            return Ok(());
        }
        let leader = m.current_leader.and_then(|id| m.membership_config.membership().get_node(&id).cloned());
        Err(NodeError::NotLeader { leader_id: m.current_leader, leader }.into_status())
    }

    /// The voters and learners as this node (the leader) now knows them.
    fn membership(&self) -> Membership {
        let m = self.node.metrics();
        let membership = m.membership_config.membership();
        Membership { voter_ids: membership.voter_ids().collect(), learner_ids: membership.learner_ids().collect() }
    }
}

fn cluster_status_response(status: ClusterStatus) -> GetClusterStatusResponse {
    let members = status.members.into_iter().map(member).collect();
    GetClusterStatusResponse { answered_by: status.answered_by, leader_id: status.leader_id, members }
}

fn member(status: MemberStatus) -> Member {
    let MemberStatus { id, node, voter, health } = status;
    let mut member = Member {
        id,
        name: node.name,
        region: node.region,
        voter,
        api_addr: node.api_addr,
        raft_addr: node.raft_addr,
        ..Member::default()
    };
    match health {
        Ok(h) => {
            member.role = member_role(h.role) as i32;
            member.term = h.term;
            member.last_log_index = h.last_log_index;
            member.applied_index = h.applied_index;
            member.stale_reason = h.stale_reason.unwrap_or_default();
            member.fault = h.fault.unwrap_or_default();
            member.max_apply_version = h.max_apply_version;
            member.apply_version = h.apply_version;
            member.master_key = h.master_key.unwrap_or_default();
            member.reachable = true;
        }
        // Unspecified is how the public API says "could not be asked".
        Err(e) => {
            member.role = MemberRole::Unspecified as i32;
            member.error = e;
        }
    }
    member
}

/// A role this release does not know (a newer peer's) has no public value either.
fn member_role(role: NodeRole) -> MemberRole {
    match role {
        NodeRole::Leader => MemberRole::Leader,
        NodeRole::Follower => MemberRole::Follower,
        NodeRole::Candidate => MemberRole::Candidate,
        NodeRole::Learner => MemberRole::Learner,
        NodeRole::Failed => MemberRole::Failed,
        NodeRole::Shutdown => MemberRole::Shutdown,
        NodeRole::Unknown => MemberRole::Unspecified,
    }
}

/// A peer's replicated stream state as this node applied it, with `delivery` (the sender's
/// state) when this node leads.
fn federation_peer(
    hub: &impl HubView,
    oldest_queued_ms: Option<u64>,
    peer: &ConfiguredPeer,
    delivery: Option<PeerStatus>,
) -> Result<kizuna_proto::admin::FederationPeer, Status> {
    let stream = hub.outbound(&peer.name).map_err(view_status)?;
    let now = crate::node::now_ms();
    let mut answer = kizuna_proto::admin::FederationPeer {
        name: peer.name.to_string(),
        endpoints: peer.endpoints.clone(),
        paused: hub.federation_paused(&peer.name).map_err(view_status)?,
        queue_depth: stream.last_assigned() - stream.acknowledged(),
        last_assigned_seq: stream.last_assigned(),
        acknowledged_seq: stream.acknowledged(),
        oldest_queued_age_ms: oldest_queued_ms.map(|at| now.saturating_sub(at)),
        ..Default::default()
    };
    if let Some(d) = delivery {
        answer.reachable = d.reachable;
        answer.last_delivery_at_ms = d.last_delivery_ms;
        answer.backoff_ms = d.backoff.map(|b| b.as_millis() as u64);
        answer.last_error = d.last_error.unwrap_or_default();
    }
    Ok(answer)
}

fn raft_status(e: impl std::fmt::Display) -> Status {
    Status::failed_precondition(e.to_string())
}

#[tonic::async_trait]
impl ClusterAdminService for ClusterAdmin {
    async fn get_cluster_status(
        &self,
        req: Request<GetClusterStatusRequest>,
    ) -> Result<Response<GetClusterStatusResponse>, Status> {
        // Answers on a node that stopped applying the log too: it is how an operator learns why.
        self.api.operator_on(&req, ReadFrom::Diagnosis).await?;
        Ok(Response::new(cluster_status_response(self.node.cluster_status().await)))
    }

    async fn add_learner(&self, req: Request<AddLearnerRequest>) -> Result<Response<AddLearnerResponse>, Status> {
        self.api.operator(&req).await?;
        let req = req.into_inner();
        let spec = req.node.ok_or_else(|| Status::invalid_argument("node is required"))?;
        if spec.id == 0 {
            return Err(Status::invalid_argument("node.id must be > 0"));
        }
        for (field, value) in [("name", &spec.name), ("region", &spec.region)] {
            if value.trim().is_empty() {
                return Err(Status::invalid_argument(format!("node.{field} must not be empty")));
            }
        }
        for (field, value) in [("raft_addr", &spec.raft_addr), ("api_addr", &spec.api_addr)] {
            value
                .parse::<std::net::SocketAddr>()
                .map_err(|e| Status::invalid_argument(format!("node.{field} {value:?}: {e}")))?;
        }
        self.require_leader()?;
        let node = HubNode { name: spec.name, region: spec.region, raft_addr: spec.raft_addr, api_addr: spec.api_addr };
        let resp = self.node.raft.add_learner(spec.id, node, req.wait_caught_up).await.map_err(raft_status)?;
        Ok(Response::new(AddLearnerResponse { log_index: resp.log_id.index, membership: Some(self.membership()) }))
    }

    async fn change_membership(
        &self,
        req: Request<ChangeMembershipRequest>,
    ) -> Result<Response<ChangeMembershipResponse>, Status> {
        self.api.operator(&req).await?;
        let req = req.into_inner();
        if req.voter_ids.is_empty() {
            return Err(Status::invalid_argument("voter_ids must not be empty"));
        }
        self.require_leader()?;
        let voters: BTreeSet<u64> = req.voter_ids.into_iter().collect();
        let known: BTreeMap<u64, HubNode> = {
            let m = self.node.metrics();
            m.membership_config.membership().nodes().map(|(id, n)| (*id, n.clone())).collect()
        };
        if let Some(unknown) = voters.iter().find(|id| !known.contains_key(id)) {
            return Err(Status::not_found(format!("node {unknown} is not a member; add it as a learner first")));
        }
        let regions = voters.iter().filter_map(|id| known.get(id)).map(|n| n.region.as_str());
        if let Err(e) = crate::placement::check(regions) {
            if !(req.force || self.node.allow_unsafe_placement) {
                return Err(Status::failed_precondition(format!("refused: {e} (force to override)")));
            }
            tracing::warn!("UNSAFE PLACEMENT forced: {e}");
        }
        let resp = self
            .node
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), req.retain_as_learners)
            .await
            .map_err(raft_status)?;
        let membership = Some(self.membership());
        Ok(Response::new(ChangeMembershipResponse { log_index: resp.log_id.index, membership }))
    }

    async fn transfer_leader(
        &self,
        req: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        self.api.operator(&req).await?;
        let to = req.into_inner().to_node_id;
        self.require_leader()?;
        let is_voter = self.node.raft.voter_ids().any(|id| id == to);
        if !is_voter {
            return Err(Status::failed_precondition(format!("node {to} is not a voter")));
        }
        self.node.raft.trigger().transfer_leader(to).await.map_err(raft_status)?;
        Ok(Response::new(TransferLeaderResponse { membership: Some(self.membership()) }))
    }

    async fn rotate_keys(&self, req: Request<RotateKeysRequest>) -> Result<Response<RotateKeysResponse>, Status> {
        self.api.operator(&req).await?;
        self.require_leader()?;
        if let Some(lacking) = self.node.members_lacking_my_master_key().await {
            return Err(Status::failed_precondition(lacking));
        }
        let vault = self.node.state.vault();
        let keys = vault
            .next_keyring(req.into_inner().new_data_key)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let (data_keys, master_key) = (keys.len() as u32, keys.last().map(|k| k.master.clone()).unwrap_or_default());
        let envelope = Envelope {
            idempotency_key: format!("data-keys/{}/{}", self.node.id, crate::node::now_ms()),
            proposed_at_ms: 0,
            command: LogCommand::SetDataKeys { keys, origin_node: self.node.id },
        };
        let applied = self.node.propose_here(envelope).await.map_err(|e| e.into_status())?;
        match applied.result {
            CommandResult::Done(_) => {
                tracing::info!(data_keys, %master_key, "the hub's data keys were rotated");
                Ok(Response::new(RotateKeysResponse { data_keys, master_key, log_index: applied.log_index }))
            }
            CommandResult::Refused(refusal) => Err(super::shared::domain_status(refusal)),
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn create_snapshot(
        &self,
        req: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        self.api.operator(&req).await?;
        let done = self.node.snapshot_now(req.into_inner().purge_log).await.map_err(|e| match e {
            crate::node::SnapshotError::Refused(why) => raft_status(why),
            late @ crate::node::SnapshotError::NotInTime(..) => Status::unavailable(late.to_string()),
        })?;
        Ok(Response::new(CreateSnapshotResponse {
            snapshot_index: done.snapshot_index,
            purged_index: done.purged_index,
        }))
    }

    async fn get_state_digest(
        &self,
        req: Request<GetStateDigestRequest>,
    ) -> Result<Response<GetStateDigestResponse>, Status> {
        // Also on a node that stopped applying: its digest shows where it stands.
        self.api.operator_on(&req, ReadFrom::Diagnosis).await?;
        let state = self.node.state.clone();
        let digest = tokio::task::spawn_blocking(move || state.state_digest())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("reading the state: {e}")))?;
        Ok(Response::new(GetStateDigestResponse {
            applied_index: digest.applied_index,
            sha256: digest.sha256,
            entries: digest.entries,
        }))
    }

    type CreateBackupStream = BackupStream;

    async fn create_backup(&self, req: Request<CreateBackupRequest>) -> Result<Response<BackupStream>, Status> {
        let (operator, _) = self.api.operator_on(&req, ReadFrom::Current).await?;
        let permit =
            self.backups_at_once.clone().try_acquire_owned().map_err(|_| {
                Status::resource_exhausted("a backup is already being made on this node: try again later")
            })?;
        let path = self.node.scratch_path("backup");
        let made = self.write_backup_image(&path, operator).await;
        let image = match made {
            Ok(image) => image,
            Err(status) => {
                let _ = std::fs::remove_file(&path);
                return Err(status);
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            send_image(image, path, tx).await;
            drop(permit);
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn list_federation_peers(
        &self,
        req: Request<ListFederationPeersRequest>,
    ) -> Result<Response<ListFederationPeersResponse>, Status> {
        self.api.operator(&req).await?;
        let m = self.node.metrics();
        // The sender runs on the leader: its delivery state exists only there. A follower
        // answers the replicated queue and pause and says who leads.
        let leads = m.current_leader == Some(self.node.id);
        let board = &self.node.federation;
        let peers = self.api.query(|hub| {
            let peer = |p: &ConfiguredPeer| {
                let acknowledged = hub.outbound(&p.name).map_err(view_status)?.acknowledged();
                let oldest = hub.outbox_after(&p.name, acknowledged, 1).first().map(|m| m.queued_at_ms);
                federation_peer(hub, oldest, p, leads.then(|| board.status(&p.name)))
            };
            board.peers().iter().map(peer).collect::<Result<Vec<_>, Status>>()
        })?;
        Ok(Response::new(ListFederationPeersResponse {
            answered_by: self.node.id,
            leader_id: m.current_leader,
            delivery_state_included: leads,
            peers,
        }))
    }

    async fn set_federation_peer_paused(
        &self,
        req: Request<SetFederationPeerPausedRequest>,
    ) -> Result<Response<SetFederationPeerPausedResponse>, Status> {
        self.api.operator(&req).await?;
        let r = req.get_ref().clone();
        let peer = HubName::new(&r.peer)
            .map_err(|e| Status::invalid_argument(format!("peer {}: {e}", super::convert::quoted(&r.peer))))?;
        if !self.node.federation.is_peer(&peer) {
            return Err(Status::not_found(format!("{peer} is not a configured federation peer of this hub")));
        }
        let cmd = Command::SetFederationPeerPaused { peer, paused: r.paused };
        self.api.signed_write(&req, r.idempotency_key, cmd).await?;
        Ok(Response::new(SetFederationPeerPausedResponse {}))
    }
}
