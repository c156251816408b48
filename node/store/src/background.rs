//! RocksDB's background work — flushes and compactions, of the state's and the log's RocksDB —
//! below the node's own CPU priority.
//!
//! Why: on a machine whose cores the node's commits keep busy, a checkpoint's flush and the
//! compactions after it took a core for a tenth of a second to a second each, and the commits
//! that waited for one were the slowest of a run at half of the peak (docs/benchmarks.md,
//! sessions 35–44). A nice value of [`BELOW_NODE`] leaves the kernel giving that work every
//! cycle the commits leave and few of those they need; on idle cores it runs as fast as before.
//! Measured (session 44, 30-s runs at 10,000 writes/s): the p99's median 12.2 → 10.5 ms over
//! eight alternated runs each, 15.4 → 11.1 ms over twelve, and no fewer writes a second at 256
//! clients, where the commits take every core and RocksDB's own write stalls would pace the
//! writes were flushes to fall behind.

use rustix::process::{Pid, getpriority_process, setpriority_process};

/// How far below the node's priority its background work runs (a nice value). At 10 it takes
/// about a tenth of a core the commits contend for.
pub(crate) const BELOW_NODE: i32 = 10;
/// The lowest priority there is.
const LOWEST: i32 = 19;

/// The prefix RocksDB names its thread pools' threads with (`rocksdb:low`, `rocksdb:high`).
const ROCKSDB_THREADS: &str = "rocksdb:";

/// Moves the calling thread `by` below its priority now. A nice value once raised cannot be
/// lowered again without privilege: only a thread of its own is lowered so.
pub(crate) fn lower_this_thread(by: i32) -> rustix::io::Result<()> {
    let me = Some(rustix::thread::gettid());
    let nice = getpriority_process(me)?;
    setpriority_process(me, nice + by)
}

/// Puts RocksDB's background threads, shared by every RocksDB of the process, [`BELOW_NODE`]
/// below the calling thread's priority (the node's). Idempotent: a store opened again sets the
/// same values. Nothing here stops a node: a thread that cannot be lowered (gone meanwhile, or
/// a kernel that refuses) keeps the node's priority, and that is logged.
pub(crate) fn lower_rocksdb_threads() {
    let target = match getpriority_process(Some(rustix::thread::gettid())) {
        Ok(node) => (node + BELOW_NODE).min(LOWEST),
        Err(e) => return tracing::warn!("RocksDB's background work runs at the node's priority: {e}"),
    };
    let threads = match rocksdb_threads() {
        Ok(threads) => threads,
        Err(e) => return tracing::warn!("RocksDB's background work runs at the node's priority: {e}"),
    };
    for thread in threads {
        let lowered = getpriority_process(Some(thread))
            .and_then(|nice| if nice < target { setpriority_process(Some(thread), target) } else { Ok(()) });
        if let Err(e) = lowered {
            tracing::warn!(thread = thread.as_raw_nonzero().get(), "a RocksDB thread runs at the node's priority: {e}");
        }
    }
}

/// The threads of this process that RocksDB's pools run, by the names it gives them.
pub(crate) fn rocksdb_threads() -> std::io::Result<Vec<Pid>> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?;
        // A thread that ended since the listing has no name left to read: not ours to lower.
        let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else { continue };
        let id = task.file_name().to_str().and_then(|id| id.parse::<i32>().ok()).and_then(Pid::from_raw);
        if let Some(id) = id
            && name.starts_with(ROCKSDB_THREADS)
        {
            threads.push(id);
        }
    }
    Ok(threads)
}

#[cfg(test)]
mod tests {
    use super::{BELOW_NODE, LOWEST, rocksdb_threads};
    use crate::MasterKeys;
    use rustix::process::getpriority_process;

    #[test]
    fn an_open_store_leaves_rocksdbs_threads_below_the_node() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let _store = crate::open(dir.path(), MasterKeys::none()).expect("open");
        let node = getpriority_process(Some(rustix::thread::gettid())).expect("this thread's priority");
        let threads = rocksdb_threads().expect("the process's threads");
        assert!(!threads.is_empty(), "RocksDB runs its flushes and compactions on threads of its own");
        for thread in threads {
            let nice = getpriority_process(Some(thread)).expect("a RocksDB thread's priority");
            assert!(nice >= (node + BELOW_NODE).min(LOWEST), "a RocksDB thread at nice {nice}, the node at {node}");
        }
    }
}
