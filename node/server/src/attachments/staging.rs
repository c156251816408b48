//! An upload while it arrives on this node: its bytes go to a file in the node's upload
//! directory as their SHA-256 is computed, never more than the declared size, so a file that
//! breaks a rule is refused before anything of it reaches the replicated state. The file is
//! encrypted under a key held in memory only ([`super::sealed_file`]) and removed when the
//! upload ends, whatever the outcome.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kizuna_domain::attachments::{BlobHash, CHUNK_BYTES, chunk_len};
use kizuna_domain::model::{AccountId, AttachmentId};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::sealed_file::{SealedFile, StagingKey};

/// Why an upload's bytes are refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file has more bytes than the {declared} declared")]
    TooLong { declared: u64 },
    #[error("the file ended after {received} of the {declared} declared bytes")]
    Truncated { received: u64, declared: u64 },
    #[error("the bytes received do not have the declared SHA-256 (received {actual})")]
    HashMismatch { actual: BlobHash },
    #[error("this node cannot keep the upload: {0}")]
    Io(#[from] std::io::Error),
}

/// An upload's bytes so far.
pub struct Staged {
    path: PathBuf,
    file: tokio::fs::File,
    key: StagingKey,
    hasher: Sha256,
    received: u64,
    declared: u64,
}

impl Staged {
    /// A new, empty upload of `declared` bytes in `dir`.
    pub async fn create(dir: &Path, declared: u64) -> std::io::Result<Self> {
        tokio::fs::create_dir_all(dir).await?;
        let path = dir.join(unique_name());
        let file = tokio::fs::File::create(&path).await?;
        let key = StagingKey::generate()?;
        Ok(Self { path, file, key, hasher: Sha256::new(), received: 0, declared })
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Appends `bytes`, refusing any byte past the declared size.
    pub async fn append(&mut self, bytes: &[u8]) -> Result<(), UploadError> {
        let len = bytes.len() as u64;
        if self.received.saturating_add(len) > self.declared {
            return Err(UploadError::TooLong { declared: self.declared });
        }
        self.hasher.update(bytes);
        let mut sealed = bytes.to_vec();
        self.key.apply(self.received, &mut sealed);
        self.file.write_all(&sealed).await?;
        self.received += len;
        Ok(())
    }

    /// The complete upload, once it has every declared byte and they hash to `expected`.
    pub async fn finish(mut self, expected: BlobHash) -> Result<Verified, UploadError> {
        if self.received != self.declared {
            return Err(UploadError::Truncated { received: self.received, declared: self.declared });
        }
        self.file.flush().await?;
        let actual = BlobHash(std::mem::take(&mut self.hasher).finalize().into());
        if actual != expected {
            return Err(UploadError::HashMismatch { actual });
        }
        let path = std::mem::take(&mut self.path);
        let key = std::mem::replace(&mut self.key, StagingKey::generate()?);
        Ok(Verified { path, key, size: self.received, hash: actual })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        remove(&self.path);
    }
}

/// A complete upload with the declared hash, still in its (encrypted) file on this node.
pub struct Verified {
    path: PathBuf,
    key: StagingKey,
    pub size: u64,
    pub hash: BlobHash,
}

impl Verified {
    /// The bytes of chunk `index` (`CHUNK_BYTES` each, the last one shorter).
    pub async fn chunk(&self, index: u32) -> std::io::Result<Vec<u8>> {
        let start = u64::from(index) * CHUNK_BYTES;
        let len = chunk_len(self.size, index) as usize;
        self.read_at(start, len).await
    }

    /// The first bytes, enough to tell what the file is (`media::SNIFF_BYTES`).
    pub async fn head(&self) -> std::io::Result<Vec<u8>> {
        self.read_at(0, super::media::SNIFF_BYTES.min(self.size as usize)).await
    }

    /// Every byte (a photo, to make it safe to share; never a video's, read in chunks).
    pub async fn all(&self) -> std::io::Result<Vec<u8>> {
        self.read_at(0, self.size as usize).await
    }

    async fn read_at(&self, start: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let (path, mut key) = (self.path.clone(), self.key.clone());
        let read = move || Self::read_from(&path, &mut key, start, len);
        tokio::task::spawn_blocking(read).await.map_err(std::io::Error::other)?
    }

    /// `len` plain bytes from `start` (blocking).
    pub fn read_blocking(&self, start: u64, len: usize) -> std::io::Result<Vec<u8>> {
        Self::read_from(&self.path, &mut self.key.clone(), start, len)
    }

    fn read_from(path: &Path, key: &mut StagingKey, start: u64, len: usize) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = SealedFile::open(path, key)?;
        f.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0; len];
        f.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// The file to read and change its plain bytes in place (blocking).
    pub fn open(&mut self) -> std::io::Result<SealedFile<'_>> {
        SealedFile::open(&self.path, &mut self.key)
    }
}

impl Drop for Verified {
    fn drop(&mut self) {
        remove(&self.path);
    }
}

fn remove(path: &Path) {
    if !path.as_os_str().is_empty()
        && let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), "could not remove an upload's file: {e}");
    }
}

/// A name no other upload of this process has (it says nothing about the file or its
/// uploader). Files of an earlier process are removed when the node starts ([`clear`]).
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("upload-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Removes what uploads of an earlier run left (they ended with that process).
pub fn clear(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Uploads in parts one account may have on a node at once: a browser sends a post's files (at
/// most 10) one after another, and no member may fill a node's disk with unfinished uploads.
pub const PARTS_PER_ACCOUNT: usize = 10;

/// How long a browser's upload in parts may pause before this node forgets it.
pub const PARTS_IDLE: Duration = Duration::from_secs(30 * 60);

/// What became of a complete upload in parts: the attachment, or why not.
pub type Ingested = Result<AttachmentId, tonic::Status>;

/// An upload in parts on this node: still arriving, or complete and being stored (which for a
/// large file takes longer than a part's request may wait).
pub enum Part {
    Receiving(Box<Staged>),
    Storing(tokio::sync::watch::Receiver<Option<Ingested>>),
}

/// The uploads in parts (`UploadPart`) this node is receiving, by uploader and idempotency key.
#[derive(Default)]
pub struct PartUploads {
    waiting: Mutex<HashMap<(AccountId, String), (Part, Instant)>>,
}

impl PartUploads {
    /// Takes the upload out while a part is added (parts of one upload come one at a time).
    pub fn take(&self, key: &(AccountId, String)) -> Option<Part> {
        self.forget_idle();
        let mut waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        waiting.remove(key).map(|(part, _)| part)
    }

    /// How many uploads in parts of `account` this node holds (each up to the file cap on disk).
    pub fn count_of(&self, account: AccountId) -> usize {
        let waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        waiting.keys().filter(|(a, _)| *a == account).count()
    }

    /// Forgets (and removes the files of) uploads idle for longer than [`PARTS_IDLE`].
    pub fn forget_idle(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        waiting.retain(|_, (_, touched)| touched.elapsed() < PARTS_IDLE);
    }

    /// Puts an upload back for its next part (or its next question whether it is stored).
    pub fn put_back(&self, key: (AccountId, String), part: Part) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        waiting.insert(key, (part, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(bytes: &[u8]) -> BlobHash {
        BlobHash(Sha256::digest(bytes).into())
    }

    #[tokio::test]
    async fn a_complete_upload_with_its_hash_is_verified_and_its_file_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut staged = Staged::create(dir.path(), 6).await.unwrap();
        staged.append(b"abc").await.unwrap();
        staged.append(b"def").await.unwrap();
        let verified = staged.finish(hash_of(b"abcdef")).await.unwrap();
        assert_eq!(verified.all().await.unwrap(), b"abcdef");
        let on_disk = std::fs::read(&verified.path).unwrap();
        assert_eq!(on_disk.len(), 6);
        assert_ne!(on_disk, b"abcdef", "staged under a key held in memory only");
        drop(verified);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left on the node");
    }

    #[tokio::test]
    async fn too_long_truncated_or_another_hash_is_refused_and_nothing_stays() {
        let dir = tempfile::tempdir().unwrap();
        let mut long = Staged::create(dir.path(), 2).await.unwrap();
        assert!(matches!(long.append(b"abc").await, Err(UploadError::TooLong { declared: 2 })));
        drop(long);
        let mut short = Staged::create(dir.path(), 4).await.unwrap();
        short.append(b"abc").await.unwrap();
        assert!(matches!(
            short.finish(hash_of(b"abc")).await,
            Err(UploadError::Truncated { received: 3, declared: 4 })
        ));
        let mut wrong = Staged::create(dir.path(), 3).await.unwrap();
        wrong.append(b"abc").await.unwrap();
        assert!(matches!(wrong.finish(hash_of(b"abd")).await, Err(UploadError::HashMismatch { .. })));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left on the node");
    }
}
