//! Kizuna's chaos harness: real `kizuna` processes on 127.0.0.1, every node↔node link through a
//! fault proxy the harness controls, a recorded workload of posts, timeline reads and live-event
//! subscriptions, seeded fault schedules, and checkers that fail the run on any lost,
//! duplicated, reordered or divergent post, any non-linearizable read and any missed or
//! repeated live event. [`federated`] does the same for two federated hubs and the links
//! between them.

pub mod check;
pub mod cluster;
pub mod faults;
pub mod federated;
pub mod ports;
pub mod proxy;
pub mod rng;
pub mod run;
pub mod workload;
