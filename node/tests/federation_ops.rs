//! `kizuna admin federation status` against a real federation listener (mutual TLS, signed
//! probes), with keys from `kizuna admin federation keygen` and certificates from
//! `kizuna admin certs`: reachable while the peer listens, unreachable (with the error) after.

mod common;

use std::path::Path;

use kizuna_node::cli::federation::{keygen, status};
use kizuna_node::config::HubConfig;
use kizuna_node::federation::listener;

fn free_port() -> u16 {
    kizuna_chaos::ports::node_port().expect("a free port")
}

/// A one-node hub `name` federating with `peer` (whose federation listener is at `peer_port`).
fn hub(dir: &Path, name: &str, fed_port: u16, peer: &str, peer_port: u16, peer_key: &str) -> String {
    let d = dir.display();
    format!(
        "[hub]\nname = \"{name}\"\nallow_unsafe_placement = true\n[tls]\ndir = \"{d}/{name}/certs\"\n\
         [federation]\nsigning_key = \"{d}/{name}/{name}-2026.key\"\nkey_id = \"{name}-2026\"\n\
         [[federation.peers]]\nname = \"{peer}\"\nendpoints = [\"127.0.0.1:{peer_port}\"]\n\
         ca_cert = \"{d}/{peer}/certs/ca.pem\"\n\
         verify_keys = [{{ key_id = \"{peer}-2026\", public_key = \"{peer_key}\", expires_at = 2099-01-01T00:00:00Z }}]\n\
         [[node]]\nid = 1\nname = \"{name}-1\"\nregion = \"r1\"\nraft_addr = \"127.0.0.1:{}\"\n\
         api_addr = \"127.0.0.1:{}\"\nfederation_addr = \"127.0.0.1:{fed_port}\"\ndata_dir = \"{d}/{name}/data\"\n",
        free_port(),
        free_port(),
    )
}

#[tokio::test]
async fn status_reports_a_listening_peer_reachable_and_a_stopped_one_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let (t_port, g_port) = (free_port(), free_port());
    let mut public = std::collections::BTreeMap::new();
    for name in ["tochigi", "gunma"] {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        let key = keygen(&dir.path().join(name).join(format!("{name}-2026.key")), &format!("{name}-2026"), 0).unwrap();
        public.insert(name, key.public_key_hex);
    }
    let tochigi = HubConfig::parse(&hub(dir.path(), "tochigi", t_port, "gunma", g_port, &public["gunma"])).unwrap();
    let gunma = HubConfig::parse(&hub(dir.path(), "gunma", g_port, "tochigi", t_port, &public["tochigi"])).unwrap();
    for h in [&tochigi, &gunma] {
        kizuna_node::tls::generate(h, &h.tls.as_ref().unwrap().dir).unwrap();
    }

    // The listener hands verified batches to a hub node; probes never reach it.
    let sink = common::TestHub::start(1).await;
    let node = sink.running(1).node.clone();
    let running = listener::start(&gunma, &gunma.nodes[0], node).await.unwrap().expect("gunma serves federation");
    let reports = status(&tochigi, None).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].peer, "gunma");
    let endpoint = &reports[0].endpoints[0];
    assert_eq!(endpoint.endpoint, format!("127.0.0.1:{g_port}"));
    assert!(endpoint.result.is_ok(), "reachable: {:?}", endpoint.result);

    running.shutdown().await;
    let reports = status(&tochigi, Some("tochigi-1")).await.unwrap();
    let err = reports[0].endpoints[0].result.as_ref().expect_err("the listener is stopped");
    assert!(err.starts_with("Unavailable"), "{err}");
    sink.shutdown().await;
}
