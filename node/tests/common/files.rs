//! Files for the attachment tests: PDFs whose chunks differ, uploads through the client stream,
//! downloads through the server stream.

use kizuna_proto::attachments::attachment_service_client::AttachmentServiceClient;
use kizuna_proto::attachments::{DownloadRequest, UploadHeader, UploadRequest, Variant, upload_request};
use kizuna_proto::common::Attachment;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use super::authed;

/// A PDF of `size` bytes (a real header; the rest varies with `seed` so chunks differ).
pub fn pdf(size: usize, seed: u8) -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.extend((0..size - bytes.len()).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    bytes
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The header of an upload of `bytes` named `name` under idempotency key `key`.
pub fn header(key: &str, name: &str, bytes: &[u8]) -> UploadHeader {
    UploadHeader { idempotency_key: key.into(), name: name.into(), size: bytes.len() as u64, sha256: sha256_hex(bytes) }
}

/// Uploads through the client stream in 100 KiB messages.
pub async fn upload(
    api: Channel,
    token: &str,
    header: UploadHeader,
    bytes: &[u8],
) -> Result<Attachment, tonic::Status> {
    let mut parts = vec![UploadRequest { part: Some(upload_request::Part::Header(header)) }];
    parts.extend(
        bytes.chunks(100 * 1024).map(|c| UploadRequest { part: Some(upload_request::Part::Chunk(c.to_vec())) }),
    );
    let answer = AttachmentServiceClient::new(api).upload(authed(futures::stream::iter(parts), token)).await?;
    Ok(answer.into_inner().attachment.expect("the attachment"))
}

/// Downloads `variant` of attachment `id` from `offset` on.
pub async fn download(
    api: Channel,
    token: &str,
    id: u64,
    variant: Variant,
    offset: u64,
) -> Result<Vec<u8>, tonic::Status> {
    let req = DownloadRequest { attachment_id: id, variant: variant as i32, offset };
    let mut stream = AttachmentServiceClient::new(api).download(authed(req, token)).await?.into_inner();
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await? {
        bytes.extend(message.chunk);
    }
    Ok(bytes)
}
