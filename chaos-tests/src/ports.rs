//! Loopback ports for `kizuna` processes a test starts. The test names a node's ports in its
//! config, so it must free a port before the node binds it; in that gap a port the kernel picked
//! (`bind` to port 0, an outgoing connection) could be handed to a test running beside it, and
//! the node then fails to start or, worse, two hubs' nodes reach each other (a CI run lost a
//! node that way: another test's link proxy held its Raft port).
//!
//! So a node's ports come from below the kernel's ephemeral range, which the kernel never hands
//! out by itself, and no harness process on the machine hands one out that another live one
//! handed out: each claims its ports by a lock on a file named after the port (the locks end
//! with the process). Without the claims, a port was free while its node was down — a restart
//! of a fault can take seconds — and another harness process (the serve mode's, a run beside
//! this one) could pick it then. (A CI run lost a node restarted by a rolling restart to
//! "address already in use"; what held the port was not found, and another harness is the only
//! other process that picks ports in this range.)

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, PoisonError};

use crate::rng::Rng;

/// Where node ports start: above the well-known and registered services a machine may run.
const FIRST_NODE_PORT: u16 = 10_000;
/// Where they end, and blocks of a federated pair start (`federated::hubs::free_base`, which
/// checks its whole block by binding it): the two never share a port.
pub const FIRST_BLOCK_PORT: u16 = 20_000;

/// Ports this process has handed out (tests of one binary run in parallel).
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// The locked claim files of the ports this process handed out, kept open (locked) until it
/// ends.
static CLAIMS: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read or
/// leaves no room below it: the ports are then not kept out of the kernel's own picks).
pub fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .filter(|&floor| floor > FIRST_NODE_PORT + 1_000)
        .unwrap_or(32_768)
}

/// A seed that differs between processes and between calls.
pub fn unique_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    u64::from(std::process::id()) << 32 | u64::from(nanos)
}

/// Notes `port` as handed out by this process: false if it was before, here or by another
/// live harness process (a block's base port, `federated::hubs::free_base`, counts for its
/// block).
pub fn hand_out(port: u16) -> bool {
    HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner).insert(port) && claim(port)
}

/// Claims `port` on this machine for the life of this process: false if another process holds
/// its claim. Where claim files cannot be made or locked, the claim is this process's alone
/// (as before the claims).
fn claim(port: u16) -> bool {
    let Ok(file) = claim_file(port) else { return true };
    match file.try_lock() {
        Ok(()) => {
            CLAIMS.lock().unwrap_or_else(PoisonError::into_inner).push(file);
            true
        }
        Err(TryLockError::WouldBlock) => false,
        Err(TryLockError::Error(_)) => true,
    }
}

/// The file whose lock is `port`'s claim, opened (made if need be), not locked.
fn claim_file(port: u16) -> std::io::Result<File> {
    let dir = std::env::temp_dir().join("kizuna-chaos-ports");
    std::fs::create_dir_all(&dir)?;
    OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(port.to_string()))
}

/// A loopback address for a node, held by the returned listener until the caller drops it
/// right before starting the node.
pub fn reserve_node_addr() -> std::io::Result<(TcpListener, SocketAddr)> {
    let mut rng = Rng::new(unique_seed());
    let span = u64::from(ephemeral_floor().min(FIRST_BLOCK_PORT) - FIRST_NODE_PORT);
    for _ in 0..1_000 {
        let port = FIRST_NODE_PORT + rng.below(span) as u16;
        if !hand_out(port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            let addr = listener.local_addr()?;
            return Ok((listener, addr));
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free loopback port below the ephemeral range"))
}

/// A free port for a node the caller starts right away (the port is released on return).
pub fn node_port() -> std::io::Result<u16> {
    Ok(reserve_node_addr()?.1.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() {
        let held: Vec<_> = (0..200).map(|_| reserve_node_addr().expect("a port")).collect();
        let released: Vec<u16> = (0..200).map(|_| node_port().expect("a port")).collect();
        let mut ports: Vec<u16> = held.iter().map(|(_, a)| a.port()).chain(released).collect();
        let below = ephemeral_floor().min(FIRST_BLOCK_PORT);
        assert!(ports.iter().all(|&p| (FIRST_NODE_PORT..below).contains(&p)), "{ports:?}");
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 400, "a port was handed out twice");
    }

    /// Another harness process's claim is a lock on the port's file: a second open file
    /// description of it stands for that process here (flock locks conflict between them).
    #[test]
    fn a_port_another_process_claimed_is_not_handed_out_until_its_claim_ends() {
        let port = FIRST_NODE_PORT - 1; // never handed out by `reserve_node_addr`
        let other = claim_file(port).expect("the port's claim file");
        other.lock().expect("the other process's claim");
        assert!(!claim(port), "a port claimed elsewhere was claimed here too");
        drop(other);
        assert!(claim(port), "a port whose claim ended could not be claimed");
    }
}
