//! The write workload and its Jepsen-style history: every operation is recorded as invoked,
//! then ok (acknowledged, with its version), or unknown (never acknowledged: it may or may not
//! have been applied). Each operation writes its own key once, under its own request id,
//! retried on errors and timeouts against other nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kizuna_proto::records::PutRecordRequest;
use kizuna_proto::records::records_client::RecordsClient;
use serde::Serialize;
use tonic::transport::Channel;

#[derive(Debug, Clone, Serialize)]
pub enum Outcome {
    Ok { version: u64, log_index: u64 },
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct Op {
    pub client: usize,
    pub key: String,
    pub value: String,
    pub request_id: String,
    pub invoked_ms: u64,
    pub completed_ms: u64,
    pub attempts: u32,
    pub outcome: Outcome,
}

async fn connect(endpoint: &str) -> Option<RecordsClient<Channel>> {
    let ch = Channel::from_shared(endpoint.to_owned()).ok()?.connect_timeout(Duration::from_millis(500)).connect_lazy();
    Some(RecordsClient::new(ch))
}

/// One client: sequential writes until `stop`, each retried for up to `give_up`.
pub async fn client(id: usize, seed: u64, endpoints: Vec<String>, stop: Arc<AtomicBool>, started: Instant) -> Vec<Op> {
    let give_up = Duration::from_secs(15);
    let mut clients = Vec::new();
    for e in &endpoints {
        clients.push(connect(e).await);
    }
    let ms = || started.elapsed().as_millis() as u64;
    let mut history = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("chaos/{seed}/{id}/{n}");
        let value = format!("client {id} write {n}");
        let request_id = format!("chaos-{seed}-{id}-{n}");
        let invoked_ms = ms();
        let deadline = Instant::now() + give_up;
        let mut attempts = 0u32;
        let outcome = loop {
            let target = (id + n as usize + attempts as usize) % endpoints.len();
            attempts += 1;
            let req = PutRecordRequest { key: key.clone(), value: value.clone(), request_id: request_id.clone() };
            let reply = match clients[target].as_mut() {
                Some(c) => tokio::time::timeout(Duration::from_secs(3), c.put(req)).await.ok(),
                None => None,
            };
            match reply {
                Some(Ok(r)) => {
                    let r = r.into_inner();
                    break Outcome::Ok { version: r.version, log_index: r.log_index };
                }
                _ if Instant::now() >= deadline => break Outcome::Unknown,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        history.push(Op { client: id, key, value, request_id, invoked_ms, completed_ms: ms(), attempts, outcome });
        n += 1;
    }
    history
}
