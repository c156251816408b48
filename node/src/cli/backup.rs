//! `kizuna admin backup`, `kizuna admin backup verify`, `kizuna admin restore`: encrypted
//! backups of a hub's whole state, and a new hub built from one.
//!
//! A node makes a consistent image of its state (`ClusterAdmin.CreateBackup`: the snapshot
//! format peers install, attached files included, tagged with the term, the applied index and
//! the state digest). This command encrypts it to the operators' key and writes it to a
//! directory, keeping the newest generations; `verify` decrypts a backup and restores it into a
//! scratch directory to compare digests; `restore` builds every node of a new hub from it.
//!
//! File layout (version 1): the magic `KIZUNA-BACKUP\0`, a version byte, a `u32` length and the
//! manifest (JSON), a 32-byte salt, then chunks of at most 1 MiB of the image, each a `u32`
//! length and AES-256-GCM ciphertext. The chunk key is HKDF-SHA256 of the operators' key and
//! the salt; a chunk's nonce is its number; its associated data is the manifest's SHA-256 and
//! whether it is the last chunk, so a changed manifest, reordered, dropped or truncated chunks
//! all fail to decrypt.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use kizuna_proto::admin::cluster_admin_service_client::ClusterAdminServiceClient;
use kizuna_proto::admin::{BackupImage, CreateBackupRequest, create_backup_response};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use crate::config::HubConfig;

const MAGIC: &[u8] = b"KIZUNA-BACKUP\0";
const VERSION: u8 = 1;
const CHUNK: usize = 1 << 20;
const TAG: usize = 16;

/// What a backup holds, in the clear at its head (and beside it as `<file>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub hub: String,
    pub node_id: u64,
    pub term: u64,
    pub applied_index: u64,
    /// The state digest a restored node must report.
    pub sha256: String,
    pub entries: u64,
    /// The image's size in bytes.
    pub size: u64,
    pub created_at: String,
    /// The first 8 bytes (hex) of the SHA-256 of the key it is encrypted to.
    pub key_id: String,
}

/// The operators' backup key: 32 random bytes, kept offline, never on the hub's nodes.
pub struct BackupKey([u8; 32]);

impl BackupKey {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading the backup key {}", path.display()))?;
        let key: [u8; 32] =
            bytes.try_into().map_err(|_| anyhow::anyhow!("{}: a backup key is 32 bytes", path.display()))?;
        Ok(Self(key))
    }

    /// Writes a new key to `out` (mode 0400, never over an existing file); its key id.
    pub fn generate(out: &Path) -> anyhow::Result<String> {
        let mut key = [0u8; 32];
        SystemRandom::new().fill(&mut key).map_err(|_| anyhow::anyhow!("no randomness"))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o400);
        let mut file = options.open(out).with_context(|| format!("creating {}", out.display()))?;
        file.write_all(&key)?;
        file.sync_all()?;
        Ok(Self(key).id())
    }

    pub fn id(&self) -> String {
        kizuna_domain::hex(&Sha256::digest(self.0)[..8])
    }

    fn chunk_key(&self, salt: &[u8; 32]) -> anyhow::Result<LessSafeKey> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&self.0);
        let mut key = [0u8; 32];
        let info = [b"kizuna backup v1".as_slice()];
        prk.expand(&info, hkdf::HKDF_SHA256).and_then(|okm| okm.fill(&mut key)).map_err(|_| anyhow::anyhow!("HKDF"))?;
        let key = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| anyhow::anyhow!("AES key"))?;
        Ok(LessSafeKey::new(key))
    }
}

fn nonce(chunk: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&chunk.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(manifest_hash: &[u8; 32], last: bool) -> Vec<u8> {
    [manifest_hash.as_slice(), &[u8::from(last)]].concat()
}

/// Asks the contacted node for an image of the hub's state, encrypts it to `key` into `dir`,
/// copies it to `offline` (a directory meant for offline or write-once media) if given, and
/// keeps the newest `keep` backups of the hub in `dir`. The backup's path.
pub async fn create(
    channel: Channel,
    token: &str,
    (dir, offline): (&Path, Option<&Path>),
    key: &BackupKey,
    keep: usize,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let request = super::user::authed(CreateBackupRequest {}, token)?;
    let mut stream = ClusterAdminServiceClient::new(channel)
        .max_decoding_message_size(4 * CHUNK)
        .create_backup(request)
        .await
        .context("asking the node for a backup image")?
        .into_inner();
    let Some(create_backup_response::Part::Image(image)) = stream.message().await?.and_then(|m| m.part) else {
        bail!("the node's answer did not start with the image's description");
    };
    let manifest = manifest_of(&image, key);
    let name =
        format!("kizuna-{}-{}-i{}.kbk", image.hub, manifest.created_at.replace([':', '-'], ""), image.applied_index);
    let path = dir.join(&name);
    let partial = dir.join(format!("{name}.partial"));
    let progress = super::progress_bar(image.size, "backup");
    let mut writer = Writer::create(&partial, &manifest, key)?;
    while let Some(message) = stream.message().await? {
        if let Some(create_backup_response::Part::Chunk(bytes)) = message.part {
            progress.inc(bytes.len() as u64);
            writer.write(&bytes)?;
        }
    }
    progress.finish_and_clear();
    ensure!(writer.written == image.size, "the image ended after {} of {} bytes", writer.written, image.size);
    writer.finish()?;
    std::fs::rename(&partial, &path)?;
    std::fs::write(dir.join(format!("{name}.json")), serde_json::to_vec_pretty(&manifest)?)?;
    if let Some(offline) = offline {
        std::fs::create_dir_all(offline)?;
        std::fs::copy(&path, offline.join(&name)).with_context(|| format!("copying to {}", offline.display()))?;
    }
    prune(dir, &image.hub, keep)?;
    Ok(path)
}

fn manifest_of(image: &BackupImage, key: &BackupKey) -> Manifest {
    Manifest {
        hub: image.hub.clone(),
        node_id: image.node_id,
        term: image.term,
        applied_index: image.applied_index,
        sha256: image.sha256.clone(),
        entries: image.entries,
        size: image.size,
        created_at: super::federation::rfc3339(super::federation::now_s()),
        key_id: key.id(),
    }
}

/// Keeps the newest `keep` backups of `hub` in `dir` (by name: they sort by time).
fn prune(dir: &Path, hub: &str, keep: usize) -> anyhow::Result<()> {
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| is_backup_of(n, hub)))
        .collect();
    backups.sort();
    let old = backups.len().saturating_sub(keep.max(1));
    for path in &backups[..old] {
        std::fs::remove_file(path)?;
        let _ = std::fs::remove_file(path.with_extension("kbk.json"));
    }
    Ok(())
}

/// Whether `name` is `kizuna-<hub>-<YYYYMMDDTHHMMSSZ>-i<index>.kbk` for exactly this hub (hub
/// names may hold `-`: `tochigi`'s backups are not `tochigi-2`'s).
fn is_backup_of(name: &str, hub: &str) -> bool {
    let Some(rest) = name.strip_prefix("kizuna-").and_then(|n| n.strip_prefix(hub)).and_then(|n| n.strip_prefix('-'))
    else {
        return false;
    };
    let Some((time, index)) = rest.strip_suffix(".kbk").and_then(|r| r.split_once("-i")) else { return false };
    let time_ok = time.len() == 16
        && time.chars().enumerate().all(|(i, c)| match i {
            8 => c == 'T',
            15 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    time_ok && !index.is_empty() && index.chars().all(|c| c.is_ascii_digit())
}

/// Writes a backup file, chunk by chunk.
struct Writer {
    out: std::io::BufWriter<std::fs::File>,
    key: LessSafeKey,
    manifest_hash: [u8; 32],
    pending: Vec<u8>,
    chunks: u64,
    written: u64,
}

impl Writer {
    fn create(path: &Path, manifest: &Manifest, key: &BackupKey) -> anyhow::Result<Self> {
        let manifest = serde_json::to_vec(manifest)?;
        let mut salt = [0u8; 32];
        SystemRandom::new().fill(&mut salt).map_err(|_| anyhow::anyhow!("no randomness"))?;
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        out.write_all(MAGIC)?;
        out.write_all(&[VERSION])?;
        out.write_all(&u32::try_from(manifest.len())?.to_be_bytes())?;
        out.write_all(&manifest)?;
        out.write_all(&salt)?;
        let manifest_hash = Sha256::digest(&manifest).into();
        Ok(Self { out, key: key.chunk_key(&salt)?, manifest_hash, pending: Vec::new(), chunks: 0, written: 0 })
    }

    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.written += bytes.len() as u64;
        self.pending.extend_from_slice(bytes);
        while self.pending.len() > CHUNK {
            let rest = self.pending.split_off(CHUNK);
            let chunk = std::mem::replace(&mut self.pending, rest);
            self.seal(chunk, false)?;
        }
        Ok(())
    }

    fn seal(&mut self, mut chunk: Vec<u8>, last: bool) -> anyhow::Result<()> {
        let aad = aad(&self.manifest_hash, last);
        self.key
            .seal_in_place_append_tag(nonce(self.chunks), Aad::from(aad), &mut chunk)
            .map_err(|_| anyhow::anyhow!("encrypting"))?;
        self.out.write_all(&u32::try_from(chunk.len())?.to_be_bytes())?;
        self.out.write_all(&chunk)?;
        self.chunks += 1;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        let last = std::mem::take(&mut self.pending);
        self.seal(last, true)?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    }
}

/// Decrypts `file` into `image` (a new file); its manifest. Fails on a wrong key, a changed
/// manifest, and any changed, missing or reordered chunk.
pub fn decrypt(file: &Path, key: &BackupKey, image: &Path) -> anyhow::Result<Manifest> {
    let mut input = std::io::BufReader::new(std::fs::File::open(file).with_context(|| format!("{}", file.display()))?);
    let mut magic = vec![0u8; MAGIC.len() + 1];
    input.read_exact(&mut magic).context("not a Kizuna backup")?;
    ensure!(magic[..MAGIC.len()] == *MAGIC, "{} is not a Kizuna backup", file.display());
    ensure!(magic[MAGIC.len()] == VERSION, "backup format version {} (this build reads {VERSION})", magic[MAGIC.len()]);
    let manifest_bytes = read_framed(&mut input, 1 << 16)?.context("the backup has no manifest")?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).context("the backup's manifest")?;
    ensure!(
        manifest.key_id == key.id(),
        "this backup is encrypted to key {}, not to the given key {}",
        manifest.key_id,
        key.id()
    );
    let mut salt = [0u8; 32];
    input.read_exact(&mut salt).context("the backup is cut short")?;
    let chunk_key = key.chunk_key(&salt)?;
    let manifest_hash: [u8; 32] = Sha256::digest(&manifest_bytes).into();
    let mut out = std::io::BufWriter::new(std::fs::File::create(image)?);
    let progress = super::progress_bar(manifest.size, "decrypt");
    let mut next = read_framed(&mut input, CHUNK + TAG)?;
    let mut chunks = 0u64;
    while let Some(mut sealed) = next.take() {
        next = read_framed(&mut input, CHUNK + TAG)?;
        let aad = aad(&manifest_hash, next.is_none());
        let plain = chunk_key
            .open_in_place(nonce(chunks), Aad::from(aad), &mut sealed)
            .map_err(|_| anyhow::anyhow!("chunk {chunks} of the backup does not decrypt: it was changed or cut"))?;
        out.write_all(plain)?;
        progress.inc(plain.len() as u64);
        chunks += 1;
    }
    progress.finish_and_clear();
    ensure!(chunks > 0, "the backup holds no data");
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(manifest)
}

/// A `u32`-length-prefixed item, or None at the end of the input.
fn read_framed(input: &mut impl Read, max: usize) -> anyhow::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut read = 0;
    while read < len.len() {
        match input.read(&mut len[read..])? {
            0 if read == 0 => return Ok(None),
            0 => bail!("the backup is damaged (bytes after its last chunk)"),
            n => read += n,
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    ensure!(len <= max, "the backup is damaged (an item of {len} bytes)");
    let mut bytes = vec![0u8; len];
    input.read_exact(&mut bytes).context("the backup is cut short")?;
    Ok(Some(bytes))
}

/// Checks `file` end to end: it decrypts, the image is whole and has the recorded digest, and a
/// node restored from it in a scratch directory reports that digest too.
pub fn verify(file: &Path, key: &BackupKey) -> anyhow::Result<Manifest> {
    let scratch = scratch_beside(file)?;
    let image = scratch.path().join("image.snap");
    let manifest = decrypt(file, key, &image)?;
    let info = kizuna_store::backup::read_image(&image).context("the decrypted image")?;
    same_state(&manifest, &info.digest)?;
    let member = kizuna_store::raft::HubNode::default();
    let members = std::collections::BTreeMap::from([(1, (member, true))]);
    let restored = kizuna_store::backup::restore_node(&scratch.path().join("node"), &image, 1, &members)?;
    same_state(&manifest, &restored)?;
    Ok(manifest)
}

/// A scratch directory beside `file` (a decrypted image is as large as the hub's state:
/// /tmp may be a small tmpfs).
fn scratch_beside(file: &Path) -> anyhow::Result<tempfile::TempDir> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    tempfile::Builder::new().prefix(".kizuna-scratch-").tempdir_in(dir).context("a scratch directory beside the backup")
}

fn same_state(manifest: &Manifest, digest: &kizuna_store::StateDigest) -> anyhow::Result<()> {
    ensure!(
        digest.sha256 == manifest.sha256 && digest.applied_index == manifest.applied_index,
        "the state (index {}, digest {}) is not the one recorded (index {}, digest {})",
        digest.applied_index,
        digest.sha256,
        manifest.applied_index,
        manifest.sha256
    );
    Ok(())
}

/// Builds the nodes of `hub` (every node, or the one named `only`) from `file`: each data
/// directory must be empty. The hub's membership becomes the configuration's nodes. Every
/// restored node's digest must equal the backup's.
pub fn restore(file: &Path, key: &BackupKey, hub: &HubConfig, only: Option<&str>) -> anyhow::Result<Manifest> {
    let scratch = scratch_beside(file)?;
    let image = scratch.path().join("image.snap");
    let manifest = decrypt(file, key, &image)?;
    // A backup of another hub would give this topology another hub's people and its streams
    // with its peers.
    ensure!(
        manifest.hub == hub.hub.name,
        "the backup is of hub {:?}, the configuration names hub {:?}",
        manifest.hub,
        hub.hub.name
    );
    let members = hub.nodes.iter().map(|n| (n.id, (crate::node::hub_node(n), n.voter))).collect();
    let nodes: Vec<_> = hub.nodes.iter().filter(|n| only.is_none_or(|name| n.name == name)).collect();
    ensure!(!nodes.is_empty(), "no node named {:?} in the configuration", only.unwrap_or_default());
    for node in nodes {
        let restored = kizuna_store::backup::restore_node(&node.data_dir, &image, node.id, &members)
            .with_context(|| format!("restoring {} into {}", node.name, node.data_dir.display()))?;
        same_state(&manifest, &restored).with_context(|| format!("node {}", node.name))?;
        println!("restored {} at index {} (digest {})", node.name, restored.applied_index, restored.sha256);
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::is_backup_of;

    #[test]
    fn generations_are_told_apart_by_their_exact_hub() {
        assert!(is_backup_of("kizuna-tochigi-20261130T101500Z-i42.kbk", "tochigi"));
        assert!(!is_backup_of("kizuna-tochigi-2-20261130T101500Z-i42.kbk", "tochigi"));
        assert!(is_backup_of("kizuna-tochigi-2-20261130T101500Z-i42.kbk", "tochigi-2"));
        assert!(!is_backup_of("kizuna-tochigi-20261130T101500Z-i42.kbk.json", "tochigi"));
        assert!(!is_backup_of("kizuna-tochigi-20261130T101500Z-i42.kbk.partial", "tochigi"));
        assert!(!is_backup_of("kizuna-tochigi-latest.kbk", "tochigi"));
    }
}
