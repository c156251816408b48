//! Files up and down: `kizuna post ROOM TEXT --attach FILE…` uploads each file as a client
//! stream before posting, `kizuna attachment get ID` downloads one as a server stream. Both
//! stream from and to disk (a 100 MiB video is never held in memory), show a progress bar per
//! file on a terminal, and move to the hub's next node when one is unavailable (down, or
//! changing leaders): an upload is retried under the same idempotency key, a download
//! continues from the bytes it already has.
//!
//! An upload's idempotency key is derived from the room, the file's name and its SHA-256, so
//! running the same command again after a failure (the node went down, the post was refused)
//! reuses the attachment already made instead of uploading it twice.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use indicatif::ProgressBar;
use kizuna_proto::attachments::attachment_service_client::AttachmentServiceClient;
use kizuna_proto::attachments::{
    DownloadRequest, GetAttachmentRequest, UploadHeader, UploadRequest, Variant, upload_request,
};
use kizuna_proto::common::Attachment;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

use super::Target;
use super::user::{authed, token};

/// Bytes per upload message: big enough that the per-message overhead vanishes, small enough
/// that a bar moves smoothly and a message stays far below gRPC's 4 MiB limit.
const MESSAGE_BYTES: usize = 256 * 1024;

/// Tries of one transfer (or post) before giving up; between them 0.5, 1, 2, 4 s.
const ATTEMPTS: u32 = 5;

/// Runs `attempt` on the hub's nodes in turn while they are unavailable (a node down or losing
/// its leadership), with backoff; any other error ends at once. A node that names the leader
/// is followed.
pub(crate) async fn failover<T>(
    target: &Target,
    what: &str,
    mut attempt: impl AsyncFnMut(Channel) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut last = anyhow!("no endpoint given");
    let mut hinted = None;
    for n in 0..ATTEMPTS {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(250 << n)).await;
        }
        let endpoint = match hinted.take() {
            Some(leader) => leader,
            None => target.endpoints.get(n as usize % target.endpoints.len().max(1)).cloned().context("no endpoint")?,
        };
        let channel = match target.connect(&endpoint).await {
            Ok(channel) => channel,
            Err(e) => {
                eprintln!("{what}: cannot reach {endpoint}; trying again");
                last = e;
                continue;
            }
        };
        match attempt(channel).await {
            Ok(done) => return Ok(done),
            Err(e) => {
                let Some(status) = unavailable(&e) else { return Err(e) };
                eprintln!("{what}: {endpoint} is unavailable ({}); trying again", status.message());
                hinted = target.leader_hint(status);
                last = e;
            }
        }
    }
    Err(last.context(format!("{what}: no node of the hub could take it (is the hub running?)")))
}

/// How long a one-message call waits for its answer before the next node is tried: a node
/// that took the connection and then lost it can leave the call waiting for an answer that
/// never comes (seen once in the cut-link test: the post after the uploads waited with no
/// connection open). A node answers within its quorum timeout (five election timeouts: 2.5 s
/// with the shipped timers) unless a hub sets elections of seconds; the retry carries the same
/// idempotency key, so a write that was applied all the same is not made twice.
const ANSWER_LIMIT: Duration = Duration::from_secs(20);

/// `call`'s answer, or UNAVAILABLE after [`ANSWER_LIMIT`] (so [`failover`] tries the next node).
pub(crate) async fn answered<T>(call: impl Future<Output = Result<T, tonic::Status>>) -> Result<T, tonic::Status> {
    tokio::time::timeout(ANSWER_LIMIT, call)
        .await
        .unwrap_or_else(|_| Err(tonic::Status::unavailable(format!("no answer within {} s", ANSWER_LIMIT.as_secs()))))
}

/// Runs `attempt` again on the same node, with the backoff of [`failover`], while the hub is
/// unavailable (a leader election under load); any other error ends at once. For load tools
/// that spread their own connections over the nodes.
pub(crate) async fn while_unavailable<T, F: Future<Output = anyhow::Result<T>>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> anyhow::Result<T> {
    let mut n = 0;
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(e) if n + 1 < ATTEMPTS && unavailable(&e).is_some() => {
                tracing::debug!("{what}: {e:#}; trying again");
                n += 1;
                tokio::time::sleep(Duration::from_millis(250 << n)).await;
            }
            Err(e) => return Err(e.context(format!("{what} (tried {} times)", n + 1))),
        }
    }
}

/// The gRPC status of `e` when it says to try elsewhere: UNAVAILABLE, or the connection
/// itself broke. A node gone mid-stream shows as UNKNOWN, or CANCELLED when the connection
/// closed under a request, made on this side from the transport error, which it keeps as its
/// cause (a node's own answer carries none).
fn unavailable(e: &anyhow::Error) -> Option<&tonic::Status> {
    let broken = |s: &tonic::Status| {
        matches!(s.code(), tonic::Code::Unknown | tonic::Code::Cancelled) && std::error::Error::source(s).is_some()
    };
    e.downcast_ref::<tonic::Status>().filter(|s| s.code() == tonic::Code::Unavailable || broken(s))
}

/// A file to upload, hashed.
struct LocalFile {
    path: PathBuf,
    name: String,
    size: u64,
    sha256: String,
}

impl LocalFile {
    /// Reads `path` once through SHA-256, a buffer at a time (on a blocking thread: hashing a
    /// large video takes a while).
    async fn hash(path: &Path) -> anyhow::Result<Self> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{}: not a file name", path.display()))?;
        let owned = path.to_owned();
        let (size, sha256) = tokio::task::spawn_blocking(move || sha256_of(&owned)).await??;
        if size == 0 {
            bail!("{}: the file is empty", path.display());
        }
        Ok(Self { path: path.to_owned(), name, size, sha256 })
    }

    fn header(&self, idempotency_key: String) -> UploadHeader {
        UploadHeader { idempotency_key, name: self.name.clone(), size: self.size, sha256: self.sha256.clone() }
    }
}

/// The size and SHA-256 (lower-case hex) of a file, read in 1 MiB buffers.
fn sha256_of(path: &Path) -> anyhow::Result<(u64, String)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (mut hasher, mut size, mut buf) = (Sha256::new(), 0u64, vec![0; 1 << 20]);
    loop {
        let n = file.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok((size, kizuna_domain::hex(&hasher.finalize())));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}

/// The upload's idempotency key: the same for the same file posted to the same room, so a
/// re-run after a failure finds the attachment made before (keys are scoped to the account).
fn upload_key(room: u64, file: &LocalFile) -> String {
    let named = Sha256::digest(format!("{room}\n{}\n{}", file.name, file.sha256));
    format!("cli-upload-{}", kizuna_domain::hex(&named[..16]))
}

/// Uploads every file for a post to `room`, one after the other, and prints each attachment.
pub async fn upload_all(target: &Target, token: &str, room: u64, files: &[PathBuf]) -> anyhow::Result<Vec<u64>> {
    let mut ids = Vec::with_capacity(files.len());
    for path in files {
        let a = upload(target, token, room, path).await?;
        println!("{}", describe(&a));
        ids.push(a.id);
    }
    Ok(ids)
}

/// 「添付 #123 処方変更.pdf (application/pdf, 1.2 MiB)」
pub(crate) fn describe(a: &Attachment) -> String {
    format!("添付 #{} {} ({}, {})", a.id, a.name, a.content_type, size(a.size))
}

/// Uploads one file. An attachment that comes back already posted means this very command
/// succeeded before: the user posts the file again, so it becomes a new attachment.
pub(crate) async fn upload(target: &Target, token: &str, room: u64, path: &Path) -> anyhow::Result<Attachment> {
    let file = LocalFile::hash(path).await?;
    let a = upload_under(target, token, &file, upload_key(room, &file)).await?;
    if a.room_id == 0 {
        return Ok(a);
    }
    eprintln!("{}: already in room {} #{}; sending it again as a new attachment", file.name, a.room_id, a.seq);
    upload_under(target, token, &file, super::user::idempotency_key()).await
}

/// Uploads `file` under `key`, on the next node when one is unavailable: the hub keeps the
/// chunks it already stored, so a retry only sends the bytes again, not the log entries.
async fn upload_under(target: &Target, token: &str, file: &LocalFile, key: String) -> anyhow::Result<Attachment> {
    let bar = super::progress_bar(file.size, &file.name);
    let header = file.header(key);
    let result =
        failover(target, &file.name, async |channel| send_file(channel, token, &header, file, &bar).await).await;
    bar.finish_and_clear();
    result
}

/// One try: the header, then the file read as it streams in [`MESSAGE_BYTES`] messages.
async fn send_file(
    channel: Channel,
    token: &str,
    header: &UploadHeader,
    file: &LocalFile,
    bar: &ProgressBar,
) -> anyhow::Result<Attachment> {
    bar.set_position(0);
    let source = tokio::fs::File::open(&file.path).await.with_context(|| format!("opening {}", file.path.display()))?;
    // A request stream cannot fail: a read error ends it, and is told here instead of the
    // hub's "the upload ended early".
    let read_error = Arc::new(Mutex::new(None));
    let chunks =
        futures::stream::unfold((source, bar.clone(), read_error.clone()), |(mut source, bar, error)| async move {
            let mut buf = vec![0; MESSAGE_BYTES];
            match read_full(&mut source, &mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    bar.inc(n as u64);
                    Some((UploadRequest { part: Some(upload_request::Part::Chunk(buf)) }, (source, bar, error)))
                }
                Err(e) => {
                    if let Ok(mut slot) = error.lock() {
                        *slot = Some(e);
                    }
                    None
                }
            }
        });
    let first = UploadRequest { part: Some(upload_request::Part::Header(header.clone())) };
    let parts = futures::stream::iter([first]).chain(chunks);
    let answer = AttachmentServiceClient::new(channel).upload(authed(parts, token)?).await;
    if let Some(e) = read_error.lock().ok().and_then(|mut slot| slot.take()) {
        return Err(e).with_context(|| format!("reading {}", file.path.display()));
    }
    answer?.into_inner().attachment.context("the hub answered without the attachment")
}

/// Fills `buf` unless the end comes first (a file read may return less than asked).
async fn read_full(source: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// 1.2 MiB: sizes as people read them.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let (mut value, mut unit) = (bytes as f64 / 1024.0, 0);
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[derive(clap::Subcommand)]
pub enum AttachmentCommand {
    /// Download an attachment (to its name in this directory unless --out).
    Get(GetArgs),
}

/// Which bytes to download.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VariantArg {
    /// The file as stored (a photo without its metadata).
    Original,
    /// A photo's small thumbnail (320 px).
    Small,
    /// A photo's medium thumbnail (1280 px).
    Medium,
}

impl VariantArg {
    fn wire(self) -> Variant {
        match self {
            Self::Original => Variant::Original,
            Self::Small => Variant::Small,
            Self::Medium => Variant::Medium,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The attachment's id (shown by `post --attach` and in the timeline).
    id: u64,
    /// Where to save it: a file, or a directory to save it in under its name.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = VariantArg::Original)]
    variant: VariantArg,
    /// Replace an existing file.
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// Continue an interrupted download: from the partial file the last try kept, or from an
    /// existing, shorter file at the target.
    #[arg(long)]
    resume: bool,
}

pub async fn run(target: &Target, cmd: AttachmentCommand) -> anyhow::Result<()> {
    match cmd {
        AttachmentCommand::Get(args) => get(target, args).await,
    }
}

/// `kizuna attachment get`: described first (its name makes the default path), then streamed
/// into a partial file next to the target, verified, and renamed into place.
async fn get(target: &Target, args: GetArgs) -> anyhow::Result<()> {
    let t = token()?;
    let a = failover(target, "attachment", async |channel| describe_remote(channel, &t, args.id).await).await?;
    let path = target_path(&args, &a)?;
    let part = partial_path(&path);
    let mut download = Download::start(&args, &a, &path, &part).await?;
    let bar = super::progress_bar(download.size.unwrap_or(a.size), &a.name);
    bar.set_position(download.written);
    let result = failover(target, &a.name, async |channel| download.receive(channel, &t, &bar).await).await;
    bar.finish_and_clear();
    if let Err(e) = result {
        if download.written == 0 {
            // Nothing to continue (no such variant, no access): leave nothing behind.
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
        let kept = part.display();
        return Err(e.context(format!("download interrupted; kept in {kept}: run again with --resume to continue")));
    }
    download.finish(&part, &path).await?;
    println!("{} → {}", describe(&a), path.display());
    Ok(())
}

async fn describe_remote(channel: Channel, token: &str, id: u64) -> anyhow::Result<Attachment> {
    let req = authed(GetAttachmentRequest { attachment_id: id }, token)?;
    let answer = answered(AttachmentServiceClient::new(channel).get_attachment(req)).await?;
    answer.into_inner().attachment.context("the hub answered without the attachment")
}

/// `--out`, a directory given as `--out`, or the current directory, with the attachment's name
/// made safe (see [`safe_name`]).
fn target_path(args: &GetArgs, a: &Attachment) -> anyhow::Result<PathBuf> {
    let name = safe_name(&a.name, a.id, args.variant);
    Ok(match &args.out {
        Some(out) if out.is_dir() => out.join(name),
        Some(out) => out.clone(),
        None => std::env::current_dir().context("the current directory")?.join(name),
    })
}

/// The last component of the server's name, without control characters or leading dots: a
/// name is never a path (nor `..`, nor a hidden file such as `.bashrc`). Thumbnails get a
/// prefix so they never take the original's place.
fn safe_name(name: &str, id: u64, variant: VariantArg) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim().trim_start_matches('.');
    let base = if clean.is_empty() { format!("attachment-{id}") } else { clean.to_owned() };
    match variant {
        VariantArg::Original => base,
        VariantArg::Small => format!("small-{base}"),
        VariantArg::Medium => format!("medium-{base}"),
    }
}

/// `.NAME.kizuna-part` next to the target: the same file system, so the final rename is atomic.
fn partial_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.kizuna-part"))
}

/// A download in progress into the partial file.
struct Download {
    id: u64,
    variant: Variant,
    file: tokio::fs::File,
    written: u64,
    /// The variant's size, from the first answer.
    size: Option<u64>,
    /// Over every byte of the partial file, when the expected SHA-256 is known (the original).
    hasher: Option<(Sha256, String)>,
}

impl Download {
    /// Opens the partial file: empty, or with `--resume` what a previous try kept (the partial
    /// file, else a shorter file at the target), hashed so far.
    async fn start(args: &GetArgs, a: &Attachment, path: &Path, part: &Path) -> anyhow::Result<Self> {
        let exists = tokio::fs::try_exists(path).await.unwrap_or(false);
        let part_exists = tokio::fs::try_exists(part).await.unwrap_or(false);
        let resume_from_target = args.resume && exists && !part_exists;
        if exists && !args.force && !resume_from_target {
            let also =
                if part_exists { format!(" (and a partial download {})", part.display()) } else { String::new() };
            bail!("{} exists{also}: --force to replace it, --resume to continue it", path.display());
        }
        if resume_from_target {
            let len = tokio::fs::metadata(path).await?.len();
            if args.variant == VariantArg::Original && len >= a.size {
                bail!("{} is not shorter than the attachment ({}): nothing to resume", path.display(), size(a.size));
            }
            tokio::fs::rename(path, part).await.with_context(|| format!("moving {} aside", path.display()))?;
        }
        let file = open_partial(part, args.resume).await?;
        let written = file.metadata().await?.len();
        let mut hasher = (args.variant == VariantArg::Original).then(|| (Sha256::new(), a.sha256.clone()));
        if let (Some((h, _)), true) = (&mut hasher, written > 0) {
            let owned = part.to_owned();
            *h = tokio::task::spawn_blocking(move || hash_prefix(&owned)).await??;
        }
        Ok(Self { id: a.id, variant: args.variant.wire(), file, written, size: None, hasher })
    }

    /// One try: the bytes from where the partial file ends.
    async fn receive(&mut self, channel: Channel, token: &str, bar: &ProgressBar) -> anyhow::Result<()> {
        let req = DownloadRequest { attachment_id: self.id, variant: self.variant as i32, offset: self.written };
        let mut stream = AttachmentServiceClient::new(channel).download(authed(req, token)?).await?.into_inner();
        while let Some(message) = stream.message().await? {
            if message.attachment.is_some() {
                self.size = Some(message.size);
                bar.set_length(message.size);
            }
            self.write(&message.chunk).await?;
            bar.set_position(self.written);
        }
        let size = self.size.context("the hub sent no description of the file")?;
        if self.written != size {
            bail!("the hub sent {} of {} bytes", self.written, size);
        }
        Ok(())
    }

    async fn write(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        if self.size.is_some_and(|size| self.written + chunk.len() as u64 > size) {
            bail!("the hub sent more bytes than the file has");
        }
        self.file.write_all(chunk).await.context("writing the download")?;
        if let Some((h, _)) = &mut self.hasher {
            h.update(chunk);
        }
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Flushed to disk, checked against the SHA-256 the hub recorded, then renamed into place.
    /// A partial file that does not match is removed: resuming it again would fail again.
    async fn finish(mut self, part: &Path, path: &Path) -> anyhow::Result<()> {
        self.file.flush().await?;
        self.file.sync_all().await.context("writing the download to disk")?;
        if let Some((h, expected)) = self.hasher.take() {
            let got = kizuna_domain::hex(&h.finalize());
            if got != expected {
                let _ = tokio::fs::remove_file(part).await;
                bail!(
                    "the downloaded file does not match its SHA-256 (got {got}, expected {expected}); removed it: download again without --resume"
                );
            }
        }
        tokio::fs::rename(part, path).await.with_context(|| format!("saving {}", path.display()))
    }
}

/// The partial file, for appending: kept (resume) or emptied. Only the user may read it, as
/// the finished file: attachments are patient data.
async fn open_partial(part: &Path, keep: bool) -> anyhow::Result<tokio::fs::File> {
    let mut options = tokio::fs::OpenOptions::new();
    options.create(true);
    if keep {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    #[cfg(unix)]
    options.mode(0o600);
    options.open(part).await.with_context(|| format!("opening {}", part.display()))
}

/// SHA-256 state over what a previous try already wrote.
fn hash_prefix(path: &Path) -> anyhow::Result<Sha256> {
    let mut file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(hasher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_never_answered_ends_unavailable_so_the_next_node_is_tried() {
        let never = std::future::pending::<Result<(), tonic::Status>>();
        let status = answered(never).await.expect_err("no answer");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(unavailable(&anyhow::Error::new(status)).is_some(), "failover moves on");
        assert_eq!(answered(async { Ok::<_, tonic::Status>(7) }).await.ok(), Some(7));
    }

    #[test]
    fn a_server_name_is_never_a_path() {
        let original = VariantArg::Original;
        assert_eq!(safe_name("処方変更.pdf", 1, original), "処方変更.pdf");
        assert_eq!(safe_name("../../etc/passwd", 1, original), "passwd");
        assert_eq!(safe_name("C:\\Users\\x\\report.pdf", 1, original), "report.pdf");
        assert_eq!(safe_name("..", 7, original), "attachment-7");
        assert_eq!(safe_name("dir/", 7, original), "attachment-7");
        assert_eq!(safe_name(".bashrc", 7, original), "bashrc");
        assert_eq!(safe_name("a\u{0}b\n.jpg", 7, VariantArg::Small), "small-ab.jpg");
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(size(17), "17 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(1_258_291), "1.2 MiB");
    }

    #[test]
    fn the_same_file_to_the_same_room_gets_the_same_upload_key() {
        let file = |name: &str| LocalFile { path: PathBuf::new(), name: name.into(), size: 1, sha256: "ab".into() };
        assert_eq!(upload_key(1, &file("a.pdf")), upload_key(1, &file("a.pdf")));
        assert_ne!(upload_key(1, &file("a.pdf")), upload_key(2, &file("a.pdf")));
        assert_ne!(upload_key(1, &file("a.pdf")), upload_key(1, &file("b.pdf")));
        assert!(upload_key(1, &file("a.pdf")).len() <= kizuna_domain::MAX_IDEMPOTENCY_KEY_BYTES);
    }
}
