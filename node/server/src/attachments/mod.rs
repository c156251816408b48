//! Attachments at run time: receiving an upload on this node ([`staging`]), deciding what the
//! file is and making photos safe to share ([`media`]), blanking where a video was recorded
//! ([`video`]), and the leader's collection of unused files ([`collector`]). What an attachment is and who may read it is the domain's
//! (`kizuna_domain::attachments`); the gRPC service is `api/attachments.rs`.

pub mod collector;
pub mod media;
pub mod sealed_file;
pub mod staging;
pub mod video;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::AttachmentsSection;

/// This node's attachment settings, from the hub's `[attachments]` section.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub quota_bytes: u64,
    pub grace: Duration,
    pub collect_every: Duration,
    /// Where uploads wait while they arrive (inside the node's data directory).
    pub staging_dir: PathBuf,
    /// Uploads checked at once: decoding a photo of up to 64 megapixels takes hundreds of MiB,
    /// so a burst of photos waits here rather than taking the node's memory.
    pub checks: Arc<tokio::sync::Semaphore>,
}

/// Uploads a node checks (and photos it decodes) at the same time.
const CHECKS_AT_ONCE: usize = 2;

impl Limits {
    pub fn of(section: &AttachmentsSection, data_dir: &std::path::Path) -> Self {
        Self {
            max_file_bytes: section.max_file_mib.saturating_mul(1 << 20),
            quota_bytes: section.quota_gib.saturating_mul(1 << 30),
            grace: Duration::from_secs(section.grace_seconds),
            collect_every: Duration::from_secs(section.collect_every_seconds.max(1)),
            staging_dir: data_dir.join("uploads"),
            checks: Arc::new(tokio::sync::Semaphore::new(CHECKS_AT_ONCE)),
        }
    }
}
