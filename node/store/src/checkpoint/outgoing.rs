//! A snapshot on its way to a peer. A checkpoint not yet exported is sent while its export is
//! written, not after: on a filled hub the export was half of a new node's catch-up (4.5 of
//! 9.5 s at 100,000 posts, docs/benchmarks.md, session 23). The export still goes whole to its
//! file beside the checkpoint, for the next peer or a retry; a send that stops meanwhile
//! (cancelled, the peer unreachable) only stops receiving it.
//!
//! A streamed snapshot's length is unknown when its first part leaves: the format's trailer (a
//! pair count inside the compressed frame) proves it complete, and the receiver reads the whole
//! file before it installs anything. A peer of an older build expects the length up front: it
//! is sent a whole file (the sender asks the peer first).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::io_err;
use crate::snapshot::SnapshotFile;

/// What a peer is sent.
#[derive(Debug)]
pub enum Outgoing {
    /// A whole file: its length is known before the first byte leaves.
    Whole(PathBuf),
    /// A checkpoint's export, in parts as it is written.
    Exporting(ExportStream),
}

/// Parts of an export waiting for the sender at most: beyond, the export waits for the peer.
const QUEUED_PARTS: usize = 4;

/// What the export thread hands the sender: data, then an empty part once the export is whole
/// (fsynced and kept), or the error that stopped it.
type Part = std::io::Result<Vec<u8>>;

/// The receiving end of an export under way.
#[derive(Debug)]
pub struct ExportStream {
    parts: mpsc::Receiver<Part>,
    ended: bool,
}

impl ExportStream {
    /// The next bytes of the export; `None` once it is whole. An error if the export failed or
    /// stopped before it was whole: what was handed over before is then no snapshot.
    pub async fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if self.ended {
            return Ok(None);
        }
        match self.parts.recv().await {
            Some(Ok(part)) if part.is_empty() => {
                self.ended = true;
                Ok(None)
            }
            Some(part) => part.map(Some),
            None => Err(io_err("the snapshot export stopped before it was whole")),
        }
    }
}

/// Where an export hands its bytes besides its file.
pub(crate) struct PeerParts {
    parts: mpsc::Sender<Part>,
    part_bytes: usize,
}

impl SnapshotFile {
    /// This snapshot as a peer is sent it: a whole file when there is one (a snapshot file, a
    /// checkpoint exported before) or when the peer takes no streamed snapshot (`streamed`
    /// false: exported first); otherwise the checkpoint's export, written by a thread of its own
    /// and handed over in parts of about `part_bytes` as it is written. Blocking: call it off
    /// the async threads.
    pub fn to_send(&self, streamed: bool, part_bytes: usize) -> std::io::Result<Outgoing> {
        if !streamed {
            return self.streamable().map(Outgoing::Whole);
        }
        if let Some(file) = self.kept_file()? {
            return Ok(Outgoing::Whole(file));
        }
        let (parts, received) = mpsc::channel(QUEUED_PARTS);
        let end = parts.clone();
        let snapshot = self.clone();
        std::thread::Builder::new().name("snapshot-stream".into()).spawn(move || {
            let exported = snapshot.export(Some(PeerParts { parts, part_bytes }));
            // The sender may be gone (its send cancelled): the export is kept all the same.
            let _ = end.blocking_send(exported.map(|_| Vec::new()));
        })?;
        Ok(Outgoing::Exporting(ExportStream { parts: received, ended: false }))
    }
}

/// An export's sink: its file, and the peer's parts while the peer takes them.
pub(crate) struct Tee {
    file: BufWriter<File>,
    peer: Option<PeerParts>,
    pending: Vec<u8>,
    /// Bytes written to the file since it was last synced.
    unsynced: usize,
}

/// An export's file is synced every so many bytes, as RocksDB syncs its own files
/// (`bytes_per_sync`): left to the kernel, tens of megabytes of an export at full speed are
/// written back at once, and the log's fsyncs wait behind them (docs/benchmarks.md, session 26).
const SYNC_EVERY_BYTES: usize = 4 << 20;

impl Tee {
    pub(crate) fn new(file: File, peer: Option<PeerParts>) -> Self {
        let pending = Vec::with_capacity(peer.as_ref().map_or(0, |p| p.part_bytes));
        Self { file: BufWriter::new(file), peer, pending, unsynced: 0 }
    }

    /// Hands the peer the last part and fsyncs the file.
    pub(crate) fn finish(mut self) -> std::io::Result<()> {
        self.hand_over();
        self.file.into_inner().map_err(|e| e.into_error())?.sync_all()
    }

    fn hand_over(&mut self) {
        let Some(peer) = &self.peer else { return };
        if self.pending.is_empty() {
            return;
        }
        let part = std::mem::replace(&mut self.pending, Vec::with_capacity(peer.part_bytes));
        if peer.parts.blocking_send(Ok(part)).is_err() {
            self.peer = None;
        }
    }
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_all(buf)?;
        self.unsynced += buf.len();
        if self.unsynced >= SYNC_EVERY_BYTES {
            self.file.flush()?;
            self.file.get_ref().sync_data()?;
            self.unsynced = 0;
        }
        if let Some(peer) = &self.peer {
            self.pending.extend_from_slice(buf);
            if self.pending.len() >= peer.part_bytes {
                self.hand_over();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_file_is_synced_as_it_grows_not_only_at_its_end() {
        let dir = tempfile::tempdir().expect("dir");
        let mut tee = Tee::new(File::create(dir.path().join("export.snap")).expect("file"), None);
        let part = vec![7u8; 64 << 10];
        for _ in 0..(SYNC_EVERY_BYTES / part.len() + 1) {
            tee.write_all(&part).expect("written");
        }
        assert!(tee.unsynced < SYNC_EVERY_BYTES, "{} bytes left unsynced", tee.unsynced);
        tee.finish().expect("finished");
    }
}
