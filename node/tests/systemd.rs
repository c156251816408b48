//! `kizuna serve` under a service manager: with `NOTIFY_SOCKET` set (as systemd sets it for a
//! `Type=notify` unit, ops/systemd/kizuna@.service), the real binary reports READY=1 once it
//! serves and knows its leader, and STOPPING=1 on SIGTERM, then exits cleanly.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KIZUNA: &str = env!("CARGO_BIN_EXE_kizuna");

/// The next notification on `socket`, failing after `within`.
fn next_notice(socket: &UnixDatagram, within: Duration) -> String {
    socket.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification from the node");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn free_port() -> u16 {
    kizuna_chaos::ports::node_port().expect("a free port")
}

#[test]
fn serve_tells_systemd_it_is_ready_and_stopping() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "[hub]\nname = \"unit\"\nallow_unsafe_placement = true\n[[node]]\nid = 1\nname = \"unit-1\"\n\
         region = \"local\"\nraft_addr = \"127.0.0.1:{}\"\napi_addr = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\n",
        free_port(),
        free_port(),
        dir.path().join("unit-1").display()
    );
    let config_path = dir.path().join("hub.toml");
    std::fs::write(&config_path, config).expect("config");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("the notify socket");
    let mut node = Command::new(KIZUNA)
        .args(["serve", "--insecure", "--node", "unit-1", "--config"])
        .arg(&config_path)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kizuna serve");
    let ready = next_notice(&socket, Duration::from_secs(60));
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains("STATUS=serving; leader is node 1"), "{ready}");
    let started = Instant::now();
    let term = Command::new("kill").args(["-TERM", &node.id().to_string()]).status().expect("kill");
    assert!(term.success());
    let stopping = next_notice(&socket, Duration::from_secs(30));
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    loop {
        if let Some(status) = node.try_wait().expect("wait") {
            assert!(status.success(), "a clean exit after SIGTERM: {status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the node did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}
