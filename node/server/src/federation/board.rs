//! The configured peers and what this node's sender last saw of each, shared between the
//! sender (which writes it) and the admin API and the public API (which read it).
//!
//! The delivery state (last success, backoff, last error) is this node's own: only the leader
//! sends, so only the leader's board is current. The queue and the pause are replicated and
//! are read from the hub's state, not from here.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kizuna_domain::federation::HubName;

use crate::config::HubConfig;

/// A peer as configured: its name and federation endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredPeer {
    pub name: HubName,
    pub endpoints: Vec<String>,
}

/// What the sender last saw of one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStatus {
    /// The last Deliver or Probe answered (None: nothing tried since this node started).
    pub reachable: Option<bool>,
    /// When a batch was last delivered, ms since the Unix epoch.
    pub last_delivery_ms: Option<u64>,
    /// The pause before the next attempt, while the sender backs off.
    pub backoff: Option<Duration>,
    /// The last failure (transport error, refusal, rejected receipt), kept after a recovery
    /// so that an operator sees what happened.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
pub struct Board {
    /// This hub's name in the federation (None: the hub does not federate).
    this: Option<HubName>,
    peers: Vec<ConfiguredPeer>,
    status: Mutex<BTreeMap<HubName, PeerStatus>>,
}

impl Board {
    pub fn new(this: Option<HubName>, peers: Vec<ConfiguredPeer>) -> Self {
        Self { this, peers, status: Mutex::default() }
    }

    /// The peers of the hub's `[federation]` section (none without one). The section was
    /// validated when the configuration was loaded.
    pub fn of_hub(hub: &HubConfig) -> Self {
        let trust = hub.federation.as_ref().and_then(|f| f.trust(&hub.hub.name).ok());
        let peers = trust
            .as_ref()
            .map(|t| {
                t.peers().map(|p| ConfiguredPeer { name: p.name.clone(), endpoints: p.endpoints.clone() }).collect()
            })
            .unwrap_or_default();
        Self::new(trust.as_ref().map(|t| t.this_hub().clone()), peers)
    }

    pub fn this_hub(&self) -> Option<&HubName> {
        self.this.as_ref()
    }

    pub fn peers(&self) -> &[ConfiguredPeer] {
        &self.peers
    }

    pub fn is_peer(&self, hub: &HubName) -> bool {
        self.peers.iter().any(|p| &p.name == hub)
    }

    pub fn status(&self, peer: &HubName) -> PeerStatus {
        self.lock().get(peer).cloned().unwrap_or_default()
    }

    pub fn update(&self, peer: &HubName, change: impl FnOnce(&mut PeerStatus)) {
        change(self.lock().entry(peer.clone()).or_default());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<HubName, PeerStatus>> {
        // A panic while holding the lock leaves a plain status map, still valid to read.
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
