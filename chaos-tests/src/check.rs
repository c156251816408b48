//! Checkers over the history and the final state of every node. Each counts; any violation
//! fails the run.

use std::collections::BTreeMap;
use std::time::Duration;

use kizuna_proto::records::records_client::RecordsClient;
use kizuna_proto::records::{Consistency, GetRecordRequest};
use serde::Serialize;
use tonic::transport::Channel;

use crate::workload::{Op, Outcome};

#[derive(Debug, Default, Clone, Serialize)]
pub struct Findings {
    pub acknowledged: usize,
    pub unknown: usize,
    /// Acknowledged writes missing on some node (checker 1).
    pub lost: Vec<String>,
    /// Keys applied more than once despite the request id (checker 2).
    pub duplicated: Vec<String>,
    /// Keys whose value or version differs between nodes (checker 6).
    pub divergent: Vec<String>,
    /// Writes acknowledged before another was invoked but ordered after it in the log (checker 3).
    pub reordered: usize,
    /// Longest time no write was acknowledged, and the p50/p99 of retried operations' durations.
    pub max_unavailable_ms: u64,
    pub retried_p50_ms: u64,
    pub retried_p99_ms: u64,
}

impl Findings {
    pub fn violations(&self) -> usize {
        self.lost.len() + self.duplicated.len() + self.divergent.len() + self.reordered
    }
}

async fn read_all(endpoint: &str, keys: &[&str]) -> anyhow::Result<BTreeMap<String, Option<(String, u64)>>> {
    let ch = Channel::from_shared(endpoint.to_owned())?.connect().await?;
    let mut c = RecordsClient::new(ch);
    let mut out = BTreeMap::new();
    for key in keys {
        let req = GetRecordRequest { key: (*key).to_owned(), consistency: Consistency::Local as i32 };
        let found = match tokio::time::timeout(Duration::from_secs(5), c.get(req)).await? {
            Ok(r) => {
                let r = r.into_inner();
                Some((r.value, r.version))
            }
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(s.into()),
        };
        out.insert((*key).to_owned(), found);
    }
    Ok(out)
}

pub async fn check(history: &[Op], endpoints: &[String]) -> anyhow::Result<Findings> {
    let mut f = Findings::default();
    let keys: Vec<&str> = history.iter().map(|o| o.key.as_str()).collect();
    let mut states = Vec::new();
    for e in endpoints {
        states.push(read_all(e, &keys).await?);
    }
    for op in history {
        let copies: Vec<&Option<(String, u64)>> = states.iter().map(|s| s.get(&op.key).unwrap_or(&None)).collect();
        if copies.windows(2).any(|w| w[0] != w[1]) {
            f.divergent.push(op.key.clone());
        }
        if copies.iter().any(|c| c.as_ref().is_some_and(|(_, v)| *v > 1)) {
            f.duplicated.push(op.key.clone());
        }
        match op.outcome {
            Outcome::Ok { .. } => {
                f.acknowledged += 1;
                if copies.iter().any(|c| c.as_ref().is_none_or(|(v, _)| *v != op.value)) {
                    f.lost.push(op.key.clone());
                }
            }
            Outcome::Unknown => f.unknown += 1,
        }
    }
    // Real-time order: an acknowledged write completed before another was invoked must sit
    // earlier in the log.
    let mut acked: Vec<(u64, u64, u64)> = history
        .iter()
        .filter_map(|o| match o.outcome {
            Outcome::Ok { log_index, .. } => Some((o.invoked_ms, o.completed_ms, log_index)),
            Outcome::Unknown => None,
        })
        .collect();
    acked.sort();
    for (i, a) in acked.iter().enumerate() {
        f.reordered += acked[i + 1..].iter().filter(|b| a.1 < b.0 && a.2 >= b.2).count();
    }
    // Availability: the longest gap between consecutive acknowledgements.
    let mut done: Vec<u64> =
        history.iter().filter(|o| matches!(o.outcome, Outcome::Ok { .. })).map(|o| o.completed_ms).collect();
    done.sort();
    f.max_unavailable_ms = done.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let mut retried: Vec<u64> =
        history.iter().filter(|o| o.attempts > 1).map(|o| o.completed_ms - o.invoked_ms).collect();
    retried.sort();
    let pct = |p: f64| retried.get(((retried.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
    f.retried_p50_ms = pct(0.5);
    f.retried_p99_ms = pct(0.99);
    Ok(f)
}
