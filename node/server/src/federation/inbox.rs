//! Where a verified batch goes: the node's normal write path. A follower forwards the proposal
//! to its leader; the log command checks the batch against the replicated stream of its origin
//! and applies only what is new, in the same step (`kizuna_domain::federation::inbox`).

use kizuna_domain::federation::{BatchHeader, Receipt};
use kizuna_domain::{CommandResult, Envelope, LogCommand};
use tonic::Status;

use crate::api::shared::domain_status;
use crate::node::{Node, now_ms};
use kizuna_domain::audit::AuditRecord;

/// A batch that passed every check of the receiving node: listed origin, its CA, a current key
/// and a valid signature over `header`, which covers exactly `messages`.
#[derive(Debug, Clone)]
pub struct VerifiedBatch {
    pub header: BatchHeader,
    pub key_id: String,
    pub signature: Vec<u8>,
    pub messages: Vec<Vec<u8>>,
}

impl VerifiedBatch {
    /// Derived from the batch itself (origin, first sequence, message count), so a proposal
    /// retried after a lost reply is answered from the first attempt's remembered result.
    /// Only applied batches are remembered: a gap or a duplicate is decided again each time,
    /// against the stream as it is then (a batch once refused for a gap must apply after the
    /// hole is filled). Never applying twice does not rest on this key but on the stream.
    pub fn idempotency_key(&self) -> String {
        format!("federation/{}/{}/{}", self.header.origin, self.header.seqs.first(), self.header.seqs.len())
    }
}

/// Applies verified batches; implemented by [`Node`] (replicated), replaceable in tests.
#[tonic::async_trait]
pub trait BatchSink: Send + Sync + 'static {
    async fn apply(&self, batch: VerifiedBatch) -> Result<Receipt, Status>;

    /// Records a refused request in the hub's audit chain (through this node's journal, which
    /// ships into the replicated chain like audited reads).
    fn audit_refusal(&self, what: String) -> std::io::Result<()>;
}

#[tonic::async_trait]
impl BatchSink for Node {
    async fn apply(&self, batch: VerifiedBatch) -> Result<Receipt, Status> {
        let envelope = Envelope {
            idempotency_key: batch.idempotency_key(),
            proposed_at_ms: 0,
            command: LogCommand::FederatedBatch {
                origin: batch.header.origin,
                first_seq: batch.header.seqs.first(),
                messages: batch.messages,
                key_id: batch.key_id,
                signature: batch.signature,
                origin_node: self.id,
            },
        };
        let applied = self.write(envelope).await.map_err(|e| e.into_status())?;
        match applied.result {
            CommandResult::Received(receipt) => Ok(receipt),
            CommandResult::Refused(refusal) => Err(domain_status(refusal)),
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    fn audit_refusal(&self, what: String) -> std::io::Result<()> {
        self.state.journal.append(&AuditRecord::by_hub(now_ms(), self.id, what)).map(|_| ())
    }
}
