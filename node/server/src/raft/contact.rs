//! When a follower or learner last heard from its leader. openraft tells a leader when a quorum
//! last acknowledged it, but tells a follower nothing of the kind; the internal Raft service
//! records it here whenever a leader's append or snapshot is accepted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The last contact with a leader, as a monotonic time.
pub struct LeaderContact {
    origin: Instant,
    /// Milliseconds after `origin` of the last contact plus one; 0 means never.
    last: AtomicU64,
}

impl Default for LeaderContact {
    fn default() -> Self {
        Self { origin: Instant::now(), last: AtomicU64::new(0) }
    }
}

impl LeaderContact {
    /// A leader's message was accepted just now.
    pub fn record(&self) {
        let ms = self.origin.elapsed().as_millis() as u64 + 1;
        self.last.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long ago the last contact was; `None` if there was none since this process started.
    pub fn since(&self) -> Option<Duration> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            last => Some(self.origin.elapsed().saturating_sub(Duration::from_millis(last - 1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_until_recorded_then_grows() {
        let contact = LeaderContact::default();
        assert_eq!(contact.since(), None);
        contact.record();
        let first = contact.since().expect("recorded");
        assert!(first < Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(20));
        assert!(contact.since().expect("recorded") >= Duration::from_millis(20));
        contact.record();
        assert!(contact.since().expect("recorded") < Duration::from_millis(20));
    }
}
