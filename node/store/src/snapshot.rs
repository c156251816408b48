//! Snapshot files: a consistent copy of the state machine's tables at one applied log id, as
//! sent to a peer and as backup images are written. (A node's own snapshot is a checkpoint of
//! its database, `checkpoint.rs`; a file is written from it when a peer needs one.)
//!
//! Layout: [`SNAPSHOT_MAGIC`], then one zstd frame holding the body: `u32` length + the
//! snapshot meta (in [`crate::codec`]'s format), then pairs of (`u32` key length, key, `u32`
//! value length, value) of the replicated state in key order (the state's families merged:
//! the file does not show how a node stores them), then a `u64` pair count as a trailer
//! that proves the file is complete. Written from one RocksDB snapshot, so it is consistent even
//! while apply goes on; streamed to peers in chunks; read back into bounded write batches on
//! install. Keys travel as stored: their layout is `keys.rs`'s, and install replaces the range
//! `keys::SM_DATA_START..keys::SM_DATA_END`.
//!
//! Why compressed: the search index's sorted keys share long prefixes, and written plain a file
//! was three times the state itself (docs/benchmarks.md, "A filled hub's memory and disk"); the
//! transfer shrinks too. Files written before (the body without the magic) are still read. A
//! build that predates the magic refuses a compressed file as corrupt (its first length is far
//! past [`MAX_ITEM_BYTES`]) and changes nothing; the leader retries until that node runs this
//! build.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rocksdb::DB;
use sha2::{Digest, Sha256};

use super::keys::{APPLIED, INSTALLING, MEMBERSHIP};
use super::state_families::StatePairs;
use super::state_machine::StateDigest;
use super::{CF_SM_META, cf, codec, io_err};
use crate::raft::{LogId, SnapshotMeta, StoredMembership};

/// A snapshot's data on disk, never the whole snapshot in memory: a snapshot file (one received
/// from a peer) or a checkpoint directory (this node's own: see [`crate::checkpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

/// The first bytes of a compressed snapshot file (the format's second version: the first had
/// no magic). Public so a scan of a node's disk can open snapshot files as anyone could.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"KZSNAP\x00\x02";

/// zstd's default level: at 1 the files were 1.6–3 % larger and no faster to write here.
const ZSTD_LEVEL: i32 = 3;

/// The buffer between the format's small reads and writes and zstd's stream: each call into
/// zstd costs about as much as a search-index pair's bytes, so a pair's four writes went to it
/// one by one before (docs/benchmarks.md, session 25).
const BODY_BUFFER_BYTES: usize = 64 << 10;

/// Writes the snapshot format to a sink: a file (a backup, a received snapshot rewritten) or
/// an export that is sent to a peer as it is written (`checkpoint::outgoing`).
pub(crate) struct SnapshotWriter<W: Write = BufWriter<File>> {
    out: BufWriter<zstd::stream::write::Encoder<'static, W>>,
    pairs: u64,
}

impl SnapshotWriter {
    pub(crate) fn create(path: &Path, meta: &SnapshotMeta) -> std::io::Result<Self> {
        Self::into_sink(BufWriter::new(File::create(path)?), meta)
    }

    /// Writes the trailer and fsyncs the file.
    pub(crate) fn finish(self) -> std::io::Result<()> {
        let file = self.finish_sink()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

impl<W: Write> SnapshotWriter<W> {
    pub(crate) fn into_sink(mut sink: W, meta: &SnapshotMeta) -> std::io::Result<Self> {
        sink.write_all(SNAPSHOT_MAGIC)?;
        let mut out = BufWriter::with_capacity(BODY_BUFFER_BYTES, zstd::stream::write::Encoder::new(sink, ZSTD_LEVEL)?);
        let meta = codec::encode(meta).map_err(io_err)?;
        write_chunk(&mut out, &meta)?;
        Ok(Self { out, pairs: 0 })
    }

    pub(crate) fn pair(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        write_chunk(&mut self.out, key)?;
        write_chunk(&mut self.out, value)?;
        self.pairs += 1;
        Ok(())
    }

    /// Writes the trailer and ends the compressed frame; returns the sink.
    pub(crate) fn finish_sink(mut self) -> std::io::Result<W> {
        // u32::MAX as a key length marks the trailer.
        self.out.write_all(&u32::MAX.to_be_bytes())?;
        self.out.write_all(&self.pairs.to_be_bytes())?;
        self.out.into_inner().map_err(|e| e.into_error())?.finish()
    }
}

fn write_chunk(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(io_err)?;
    if len == u32::MAX {
        return Err(io_err("snapshot value too large"));
    }
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

fn read_u32(input: &mut impl Read) -> std::io::Result<u32> {
    let mut buf = [0; 4];
    input.read_exact(&mut buf)?;
    Ok(u32::from_be_bytes(buf))
}

/// No key, value or meta in a snapshot comes near this; a larger length means a corrupt file.
const MAX_ITEM_BYTES: u32 = 64 << 20;

fn read_bytes(input: &mut impl Read, len: u32) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    read_into(input, len, &mut buf)?;
    Ok(buf)
}

/// Reads `len` bytes into `buf` (its bytes replaced): one buffer serves every key of a file.
fn read_into(input: &mut impl Read, len: u32, buf: &mut Vec<u8>) -> std::io::Result<()> {
    if len > MAX_ITEM_BYTES {
        return Err(io_err(format!("corrupt snapshot: item of {len} bytes")));
    }
    buf.resize(len as usize, 0);
    input.read_exact(buf)
}

/// The body of the snapshot file at `path`, decompressed when it starts with the magic (files
/// of the first version are the body itself).
fn open_body(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let mut file = BufReader::new(File::open(path)?);
    let head = file.fill_buf()?;
    if !head.starts_with(SNAPSHOT_MAGIC) {
        // The magic's last byte is the version: a later one is named, not read as a first one.
        if let Some(version) = head.strip_prefix(&SNAPSHOT_MAGIC[..7]).and_then(|v| v.first()) {
            return Err(io_err(format!("snapshot format version {version} is newer than this build reads")));
        }
        return Ok(Box::new(file));
    }
    file.consume(SNAPSHOT_MAGIC.len());
    // One frame: anything after it would be bytes no writer put there. Buffered: the format's
    // reads are a few bytes each, and each read of the decoder itself is a call into zstd.
    let body = zstd::stream::read::Decoder::with_buffer(file)?.single_frame();
    Ok(Box::new(BufReader::with_capacity(BODY_BUFFER_BYTES, body)))
}

/// The digest of a store's replicated pairs, fed in key order: the same for a live store
/// ([`StateDigest`]) and for a snapshot file of it.
#[derive(Default)]
pub(crate) struct PairDigest {
    hash: Sha256,
    entries: u64,
}

impl PairDigest {
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        self.hash.update((key.len() as u64).to_be_bytes());
        self.hash.update(key);
        self.hash.update((value.len() as u64).to_be_bytes());
        self.hash.update(value);
        self.entries += 1;
    }

    pub(crate) fn finish(self, applied: Option<&LogId>) -> StateDigest {
        StateDigest {
            applied_index: applied.map_or(0, |l| l.index),
            sha256: kizuna_domain::hex(&self.hash.finalize()),
            entries: self.entries,
        }
    }
}

/// Writes a snapshot file of `db`'s state machine at `path`, from one RocksDB snapshot `view`
/// of it (so it is consistent while apply goes on), and hands every pair written to `each`.
/// The caller takes the view (see `StateReader::whole_view`: never of a half-installed state).
pub(crate) fn write_consistent(
    db: &DB,
    view: &rocksdb::Snapshot<'_>,
    path: &Path,
    each: impl FnMut(&[u8], &[u8]),
) -> std::io::Result<SnapshotMeta> {
    let (meta, file) = write_consistent_to(db, view, BufWriter::new(File::create(path)?), each)?;
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(meta)
}

/// [`write_consistent`] to any sink; returns the meta and the sink, flushed.
pub(crate) fn write_consistent_to<W: Write>(
    db: &DB,
    view: &rocksdb::Snapshot<'_>,
    sink: W,
    mut each: impl FnMut(&[u8], &[u8]),
) -> std::io::Result<(SnapshotMeta, W)> {
    let meta = meta_of(db, view)?;
    let mut writer = SnapshotWriter::into_sink(sink, &meta)?;
    // Lent pair by pair: no copy of one made to be written once.
    StatePairs::of(db, view).for_each(|k, v| {
        writer.pair(k, v)?;
        each(k, v);
        Ok(())
    })?;
    let mut sink = writer.finish_sink()?;
    sink.flush()?;
    Ok((meta, sink))
}

/// The snapshot meta of the state `view` shows: its applied log id and membership. Refused if
/// an install left the state half replaced.
pub(crate) fn meta_of(db: &DB, view: &rocksdb::Snapshot<'_>) -> std::io::Result<SnapshotMeta> {
    let meta_cf = cf(db, CF_SM_META);
    let read = |key: &[u8]| -> std::io::Result<Option<Vec<u8>>> { view.get_cf(meta_cf, key).map_err(io_err) };
    // An install that failed half way left its marker and a mixed state: nothing to copy.
    if read(INSTALLING)?.is_some() {
        return Err(io_err("the state is half replaced by a snapshot install: no consistent copy of it"));
    }
    let last_log_id: Option<LogId> = match read(APPLIED)? {
        Some(b) => Some(codec::decode_at(CF_SM_META, APPLIED, &b)?),
        None => None,
    };
    let last_membership: StoredMembership = match read(MEMBERSHIP)? {
        Some(b) => codec::decode_at(CF_SM_META, MEMBERSHIP, &b)?,
        None => StoredMembership::default(),
    };
    Ok(SnapshotMeta { last_log_id, last_membership })
}

/// Reads a whole snapshot file, checking that it is complete: its meta and its digest.
pub(crate) fn digest_of(path: &Path) -> std::io::Result<(SnapshotMeta, StateDigest)> {
    let mut digest = PairDigest::default();
    let meta = read_pairs(path, |k, v| {
        digest.add(k, v);
        Ok(())
    })?;
    let digest = digest.finish(meta.last_log_id.as_ref());
    Ok((meta, digest))
}

/// Copies the snapshot file `from` to `to` with `meta` in place of its own.
pub(crate) fn rewrite_meta(from: &Path, to: &Path, meta: &SnapshotMeta) -> std::io::Result<()> {
    let mut writer = SnapshotWriter::create(to, meta)?;
    read_pairs(from, |k, v| writer.pair(k, v))?;
    writer.finish()
}

/// Reads only the meta at the head of a snapshot file.
pub(crate) fn read_meta(path: &Path) -> std::io::Result<SnapshotMeta> {
    decode_meta(&read_raw_meta(path)?)
}

/// The encoded meta at the head of a snapshot file.
pub(crate) fn read_raw_meta(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut input = open_body(path)?;
    let len = read_u32(&mut input)?;
    read_bytes(&mut input, len)
}

/// Reads a whole snapshot file, checking that it is complete, and hands every pair to `each`.
pub(crate) fn read_pairs(
    path: &Path,
    each: impl FnMut(&[u8], &[u8]) -> std::io::Result<()>,
) -> std::io::Result<SnapshotMeta> {
    decode_meta(&read_raw(path, each)?)
}

fn decode_meta(bytes: &[u8]) -> std::io::Result<SnapshotMeta> {
    codec::decode(bytes).map_err(|e| io_err(format!("snapshot meta: {e}")))
}

/// Reads a whole snapshot file, checking that it is complete: hands every pair to `each` and
/// returns the meta as encoded (a scan of a file's tables needs no meta decoded).
pub(crate) fn read_raw(
    path: &Path,
    mut each: impl FnMut(&[u8], &[u8]) -> std::io::Result<()>,
) -> std::io::Result<Vec<u8>> {
    let mut input = open_body(path)?;
    let meta_len = read_u32(&mut input)?;
    let meta = read_bytes(&mut input, meta_len)?;
    let mut pairs = 0u64;
    let (mut key, mut value) = (Vec::new(), Vec::new());
    loop {
        let key_len = read_u32(&mut input)?;
        if key_len == u32::MAX {
            let mut count = [0; 8];
            input.read_exact(&mut count)?;
            if u64::from_be_bytes(count) != pairs {
                return Err(io_err("snapshot trailer does not match its contents"));
            }
            return Ok(meta);
        }
        read_into(&mut input, key_len, &mut key)?;
        let value_len = read_u32(&mut input)?;
        read_into(&mut input, value_len, &mut value)?;
        each(&key, &value)?;
        pairs += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    fn pairs() -> Pairs {
        (0..2_000u32).map(|i| (format!("W term {:04} room 7 seq {i}", i % 50).into_bytes(), vec![0])).collect()
    }

    fn read_back(path: &Path) -> (SnapshotMeta, Pairs) {
        let mut read = Vec::new();
        let meta = read_pairs(path, |k, v| {
            read.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .expect("a whole snapshot file");
        (meta, read)
    }

    #[test]
    fn a_snapshot_file_is_compressed_and_reads_back_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("s.snap");
        let mut writer = SnapshotWriter::create(&path, &SnapshotMeta::default()).expect("create");
        for (k, v) in pairs() {
            writer.pair(&k, &v).expect("write");
        }
        writer.finish().expect("finish");
        let bytes = std::fs::read(&path).expect("read");
        assert!(bytes.starts_with(SNAPSHOT_MAGIC));
        let plain: usize = pairs().iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
        assert!(bytes.len() * 5 < plain, "{} bytes for {plain} plain", bytes.len());
        assert_eq!(read_back(&path), (SnapshotMeta::default(), pairs()));
    }

    #[test]
    fn a_file_of_a_newer_version_is_refused_by_its_version() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("v9.snap");
        std::fs::write(&path, b"KZSNAP\x00\x09whatever").expect("write");
        let refused = read_pairs(&path, |_, _| Ok(())).expect_err("refused");
        assert!(refused.to_string().contains("version 9 is newer"), "{refused}");
    }

    #[test]
    fn a_file_of_the_first_version_without_compression_still_reads() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("old.snap");
        let mut body = Vec::new();
        write_chunk(&mut body, &codec::encode(&SnapshotMeta::default()).expect("meta")).expect("meta");
        for (k, v) in pairs() {
            write_chunk(&mut body, &k).expect("key");
            write_chunk(&mut body, &v).expect("value");
        }
        body.extend(u32::MAX.to_be_bytes());
        body.extend((pairs().len() as u64).to_be_bytes());
        std::fs::write(&path, &body).expect("write");
        assert_eq!(read_back(&path), (SnapshotMeta::default(), pairs()));
        std::fs::write(&path, &body[..body.len() - 3]).expect("write");
        assert!(read_pairs(&path, |_, _| Ok(())).is_err(), "a cut file is refused");
    }
}
