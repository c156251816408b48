//! The README's promise, end to end with the real binary: `kizuna demo` brings up three nodes in
//! three regions over TLS; the operator's `kizuna status` shows exactly one leader and equal
//! applied indexes; a write, a read and a short `kizuna load` work through the CLI; `kizuna
//! timeline` shows a room newest first; SIGTERM stops the demo cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KIZUNA: &str = env!("CARGO_BIN_EXE_kizuna");

/// The demo process, killed if the test fails half-way (so it never holds the demo ports for
/// the next run).
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Demo {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Demo {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// The CLI with its session kept in `session` (never the user's own).
fn cli(ca: &std::path::Path, session: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(KIZUNA)
        .arg("--ca")
        .arg(ca)
        .env("KIZUNA_SESSION_FILE", session)
        .args(args)
        .output()
        .expect("run kizuna")
}

#[test]
fn demo_runs_over_tls_and_status_shows_three_regions_one_leader() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let log = dir.path().join("demo.log");
    let mut demo = Demo(
        Command::new(KIZUNA)
            .args(["demo", "--data-dir"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start kizuna demo"),
    );
    let stdout = demo.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut banner = Vec::new();
    while !banner.iter().any(|l: &String| l.contains("Stop with Ctrl-C")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => banner.push(line),
            Err(_) => {
                let _ = demo.kill();
                let _ = demo.wait();
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("demo did not come up; printed: {banner:#?}\nlog:\n{log}");
            }
        }
    }
    assert!(banner[0].contains("TLS"), "{banner:#?}");
    assert_eq!(banner.iter().filter(|l| l.contains("https://127.0.0.1:700")).count(), 3, "{banner:#?}");

    let ca = data.join("certs/ca.pem");
    // Cluster administration and the diagnostic records are the operator's: signed out, the
    // CLI is refused; signed in as the demo operator, it works.
    let operator = dir.path().join("operator-session.json");
    let out = cli(&ca, &operator, &["status"]);
    assert!(!out.status.success(), "status without a session: {}", String::from_utf8_lossy(&out.stdout));
    let out = cli(&ca, &operator, &["login", "jimukyoku", "--password", "kizuna-demo-2026"]);
    assert!(out.status.success(), "operator login: {}", String::from_utf8_lossy(&out.stderr));
    let cli = |ca: &std::path::Path, args: &[&str]| cli(ca, &operator, args);
    // Applied indexes converge right after start; poll briefly.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let out = cli(&ca, &["status", "--json"]);
        assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        let members = v["members"].as_array().expect("members").clone();
        let applied: Vec<u64> = members.iter().map(|m| m["applied_index"].as_u64().unwrap()).collect();
        if applied.windows(2).all(|w| w[0] == w[1]) || Instant::now() > deadline {
            break members;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status.len(), 3);
    let regions: std::collections::BTreeSet<_> =
        status.iter().map(|m| m["region"].as_str().unwrap().to_owned()).collect();
    assert_eq!(regions.len(), 3, "{status:#?}");
    assert_eq!(status.iter().filter(|m| m["role"] == "leader").count(), 1, "{status:#?}");
    assert!(status.iter().all(|m| m["reachable"] == true), "{status:#?}");
    let applied: Vec<u64> = status.iter().map(|m| m["applied_index"].as_u64().unwrap()).collect();
    assert!(applied.windows(2).all(|w| w[0] == w[1]), "applied indexes differ: {applied:?}");

    // An idle hub: every replica reports the same state digest.
    let out = cli(&ca, &["admin", "digest"]);
    let digests = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "digest: {digests}{}", String::from_utf8_lossy(&out.stderr));
    assert!(digests.contains("replicas at the same applied index agree"), "{digests}");
    assert_eq!(digests.lines().filter(|l| l.contains("entries)")).count(), 3, "{digests}");

    let out = cli(&ca, &["put", "greeting", "こんにちは"]);
    assert!(out.status.success(), "put: {}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&ca, &["--endpoint", "127.0.0.1:7003", "get", "greeting"]);
    assert!(out.status.success(), "get: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("greeting = こんにちは"));
    // A short records load, as the signed-in operator: it commits writes and says how many.
    let out = cli(&ca, &["load", "--clients", "2", "--seconds", "1", "--json"]);
    let load = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "load: {load}{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&load).expect("load JSON");
    assert_eq!(report["store"], "kizuna", "{load}");
    assert_eq!(report["clients"], 2, "{load}");
    assert!(report["workload"].as_str().is_some_and(|w| w.starts_with("committed writes")), "{load}");
    assert!(report["operations"].as_u64().is_some_and(|n| n > 0), "no write committed: {load}");
    // Open loop: 50 writes/s for a second are 50 writes on schedule (the last few may fall
    // past the deadline on a slow machine), not as many as the hub can take.
    let out = cli(&ca, &["load", "--clients", "2", "--seconds", "1", "--rate", "50", "--json"]);
    let load = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "load: {load}{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&load).expect("load JSON");
    assert_eq!((report["rate"].as_f64(), report["errors"].as_u64()), (Some(50.0), Some(0)), "{load}");
    assert!(report["operations"].as_u64().is_some_and(|n| (40..=50).contains(&n)), "{load}");

    // A newcomer logs in with a printed demo account, sees the patient list with unread
    // counts, and a `tail` in a second terminal shows a new post live.
    assert!(banner.iter().any(|l| l.contains("vn.suzuki")), "{banner:#?}");
    let session = dir.path().join("session.json");
    let user = |args: &[&str]| {
        Command::new(KIZUNA)
            .arg("--ca")
            .arg(&ca)
            .env("KIZUNA_SESSION_FILE", &session)
            .args(args)
            .output()
            .expect("run kizuna")
    };
    let out = user(&["login", "vn.suzuki", "--password", "kizuna-demo-2026"]);
    assert!(out.status.success(), "login: {}", String::from_utf8_lossy(&out.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&session).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let out = user(&["patients"]);
    let list = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(list.contains("山田 花子") && list.contains("未読"), "{list}");
    // Her station accepted the demo's request about 高橋 トメ, which put her in that team.
    assert!(list.contains("高橋 トメ"), "{list}");
    let out = user(&["request", "inbox"]);
    let inbox = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "inbox: {inbox}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        inbox.contains("訪問看護の導入のお願い") && inbox.contains("受諾") && inbox.contains("鈴木 早苗"),
        "{inbox}"
    );
    assert!(!inbox.contains("レスパイト"), "another facility's request leaked: {inbox}");
    // The resource map: who offers end-of-life care near 宇都宮駅, nearest first.
    let out = user(&["map", "search", "--service", "看取り", "--near", "36.559,139.898", "--within-km", "5"]);
    let map = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "map: {map}{}", String::from_utf8_lossy(&out.stderr));
    let (clinic, station) = (map.find("宇都宮在宅クリニック"), map.find("ひばり訪問看護ステーション"));
    assert!(clinic.is_some() && station.is_some() && clinic < station, "{map}");
    assert!(!map.contains("みどり薬局"), "{map}");
    // Search in Japanese, without spaces: her patient's post about the oxygen tube.
    let out = user(&["search", "酸素チューブ"]);
    let found = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && found.contains("山田 花子") && found.contains("酸素チューブの交換"), "{found}");
    // Her sub-room with the doctor sits indented under its patient, not as an entry of its own.
    let lines: Vec<&str> = list.lines().collect();
    let yamada = lines.iter().position(|l| l.contains("山田 花子")).expect("山田 花子 in the list");
    assert!(lines.get(yamada + 1).is_some_and(|l| l.contains("└ room") && l.contains("医師・訪問看護")), "{list}");
    assert!(!list.contains('／'), "{list}");
    let room: String =
        lines[yamada].split_whitespace().skip_while(|w| *w != "room").nth(1).expect("room id in the list").to_owned();
    let mut tail = Command::new(KIZUNA)
        .arg("--ca")
        .arg(&ca)
        .args(["--endpoint", "127.0.0.1:7002", "tail"])
        .env("KIZUNA_SESSION_FILE", &session)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tail");
    let tail_out = tail.stdout.take().unwrap();
    let (ttx, trx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(tail_out).lines().map_while(Result::ok) {
            let _ = ttx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    let out = user(&["post", &room, "デモ：本日訪問しました。"]);
    assert!(out.status.success(), "post: {}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match trx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("デモ：本日訪問しました。") => break,
            Ok(_) => {}
            Err(_) => {
                let _ = tail.kill();
                let _ = tail.wait();
                panic!("tail never showed the post");
            }
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    // `kizuna timeline` shows the room newest first: the post just made above the seeded ones,
    // the doctor's first post last; `--oldest-first` turns it round.
    let (newest, middle, oldest) =
        ("デモ：本日訪問しました。", "来週からデイサービスを週2回に増やします。", "本日訪問診療。");
    let out = user(&["timeline", &room]);
    let page = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "timeline: {page}{}", String::from_utf8_lossy(&out.stderr));
    let at = |page: &str, text: &str| page.find(text).unwrap_or_else(|| panic!("{text} not in the timeline: {page}"));
    assert!(at(&page, newest) < at(&page, middle) && at(&page, middle) < at(&page, oldest), "{page}");
    let out = user(&["timeline", &room, "--oldest-first"]);
    let page = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "timeline --oldest-first: {page}{}", String::from_utf8_lossy(&out.stderr));
    assert!(at(&page, oldest) < at(&page, middle) && at(&page, middle) < at(&page, newest), "{page}");

    // SIGTERM: a clean stop.
    let killed = Command::new("kill").args(["-TERM", &demo.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(code) = demo.try_wait().unwrap() {
            break code;
        }
        if Instant::now() > deadline {
            let _ = demo.kill();
            panic!("demo did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(code.success(), "demo exited with {code:?}");
}
