//! `kizuna put` and `kizuna get`.

use kizuna_proto::records::records_client::RecordsClient;
use kizuna_proto::records::{Consistency, GetRecordRequest, PutRecordRequest};

pub async fn put(target: &super::Target, key: String, value: String, request_id: Option<String>) -> anyhow::Result<()> {
    let (_, channel) = target.connect_any().await?;
    let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let resp = RecordsClient::new(channel).put(PutRecordRequest { key: key.clone(), value, request_id }).await?;
    let resp = resp.into_inner();
    let dup = if resp.duplicate { " (already applied: first result returned)" } else { "" };
    println!("{key}: version {} at log index {}{dup}", resp.version, resp.log_index);
    Ok(())
}

pub async fn get(target: &super::Target, key: String, local: bool) -> anyhow::Result<()> {
    let (_, channel) = target.connect_any().await?;
    let consistency = if local { Consistency::Local } else { Consistency::Linearizable };
    let resp = RecordsClient::new(channel)
        .get(GetRecordRequest { key: key.clone(), consistency: consistency as i32 })
        .await?
        .into_inner();
    println!("{key} = {}", resp.value);
    println!("  version {} · answered by node {} at applied index {}", resp.version, resp.node_id, resp.applied_index);
    if resp.stale {
        println!("  ⚠ may be stale (古い可能性があります): {}", resp.stale_reason);
    }
    Ok(())
}
