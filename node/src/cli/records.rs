//! `kizuna put` and `kizuna get`: the diagnostic records, as the signed-in operator.

use kizuna_proto::records::record_service_client::RecordServiceClient;
use kizuna_proto::records::{Consistency, GetRecordRequest, PutRecordRequest};

use super::user::{authed, token};

pub async fn put(
    target: &super::Target,
    key: String,
    value: String,
    idempotency_key: Option<String>,
) -> anyhow::Result<()> {
    let token = token()?;
    let (_, channel) = target.connect_any().await?;
    let idempotency_key = idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let req = authed(PutRecordRequest { key: key.clone(), value, idempotency_key }, &token)?;
    let resp = RecordServiceClient::new(channel).put_record(req).await?.into_inner();
    let dup = if resp.duplicate { " (already applied: first result returned)" } else { "" };
    println!("{key}: version {} at log index {}{dup}", resp.version, resp.log_index);
    Ok(())
}

/// The consistency `kizuna get` asks for: by default linearizable with a fallback to the local
/// copy, marked stale, when no quorum answers (what the README promises a cut-off region).
pub fn consistency(local: bool, linearizable: bool) -> Consistency {
    match (local, linearizable) {
        (true, _) => Consistency::Local,
        (false, true) => Consistency::Linearizable,
        (false, false) => Consistency::Unspecified,
    }
}

pub async fn get(target: &super::Target, key: String, consistency: Consistency) -> anyhow::Result<()> {
    let token = token()?;
    let (_, channel) = target.connect_any().await?;
    let req = authed(GetRecordRequest { key: key.clone(), consistency: consistency as i32 }, &token)?;
    let resp = RecordServiceClient::new(channel).get_record(req).await?.into_inner();
    println!("{key} = {}", resp.value);
    println!("  version {} · answered by node {} at applied index {}", resp.version, resp.node_id, resp.applied_index);
    if resp.stale {
        println!("  ⚠ may be stale (古い可能性があります): {}", resp.stale_reason);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_falls_back_to_the_local_copy_unless_told_otherwise() {
        assert_eq!(consistency(false, false), Consistency::Unspecified);
        assert_eq!(consistency(true, false), Consistency::Local);
        assert_eq!(consistency(false, true), Consistency::Linearizable);
    }
}
