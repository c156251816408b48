//! Attachments at run time: receiving an upload on this node ([`staging`]), deciding what the
//! file is and making photos safe to share ([`media`]), and the leader's collection of unused
//! files ([`collector`]). What an attachment is and who may read it is the domain's
//! (`kizuna_domain::attachments`); the gRPC service is `api/attachments.rs`.

pub mod collector;
pub mod media;
pub mod staging;

use std::path::PathBuf;
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
}

impl Limits {
    pub fn of(section: &AttachmentsSection, data_dir: &std::path::Path) -> Self {
        Self {
            max_file_bytes: section.max_file_mib.saturating_mul(1 << 20),
            quota_bytes: section.quota_gib.saturating_mul(1 << 30),
            grace: Duration::from_secs(section.grace_minutes.saturating_mul(60)),
            collect_every: Duration::from_secs(section.collect_every_seconds.max(1)),
            staging_dir: data_dir.join("uploads"),
        }
    }
}
