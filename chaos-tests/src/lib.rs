//! Kizuna's chaos harness: real `kizuna` processes on 127.0.0.1, every node↔node link through a
//! fault proxy the harness controls, a recorded write workload, seeded fault schedules, and
//! checkers that fail the run on any lost, duplicated or divergent write.
//!
//! Status (issue 5, first part): leader kill, node pause, node isolation, a slow region and a
//! seeded mix of them on a three-region or Tochigi-shaped hub, with the lost-write, duplicate, real-time-order
//! and convergence checkers and availability figures. Still to come: jitter and bandwidth
//! limits, one-way and region-set partitions, learners in the topology, membership changes and
//! rolling restarts under load, linearizable-read and subscriber checkers.

pub mod check;
pub mod cluster;
pub mod proxy;
pub mod run;
pub mod workload;
