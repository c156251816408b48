//! `kizuna demo --federation` with the real binary: two hubs (Tochigi, Gunma) come up over TLS
//! with their federation listeners, both are seeded, the CLI works against either hub
//! (`--endpoint`/`--ca`), each hub's `kizuna admin federation status` reaches the other, and
//! the border patient's room reaches Gunma, where the nurse's post joins Tochigi's in its order.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KIZUNA: &str = env!("CARGO_BIN_EXE_kizuna");
const PASSWORD: &str = "kizuna-demo-2026";

/// The demo process, killed when the test ends (pass or fail), so it never holds its ports.
struct Demo {
    child: Child,
    dir: tempfile::TempDir,
    base: u16,
    banner: Vec<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let base = kizuna_chaos::federated::hubs::free_base().expect("a free block of ports");
        let log = std::fs::File::create(dir.path().join("demo.log")).unwrap();
        let child = Command::new(KIZUNA)
            .args(["demo", "--federation", "--base-port", &base.to_string(), "--data-dir"])
            .arg(dir.path().join("data"))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start kizuna demo --federation");
        let mut demo = Demo { child, dir, base, banner: Vec::new() };
        demo.read_banner();
        demo
    }

    /// Everything the demo prints up to its last line (it then waits for Ctrl-C).
    fn read_banner(&mut self) {
        let stdout = self.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.banner.iter().any(|l| l.contains("Ctrl-C で停止します")) {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.banner.push(line),
                Err(_) => {
                    let log = std::fs::read_to_string(self.dir.path().join("demo.log")).unwrap_or_default();
                    panic!("the federated demo did not come up; printed: {:#?}\nlog:\n{log}", self.banner);
                }
            }
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The CLI against hub `hub` (0 tochigi, 1 gunma), its session kept per hub.
    fn cli(&self, hub: u16, args: &[&str]) -> Output {
        let name = ["tochigi", "gunma"][usize::from(hub)];
        let endpoint = format!("127.0.0.1:{}", self.base + 100 * hub + 1);
        Command::new(KIZUNA)
            .args(["--endpoint", &endpoint, "--ca"])
            .arg(self.data().join(name).join("certs/ca.pem"))
            .env("KIZUNA_SESSION_FILE", self.dir.path().join(format!("{name}-session.json")))
            .args(args)
            .output()
            .expect("run kizuna")
    }

    /// `login`'s patient list on hub `hub`.
    fn patients(&self, hub: u16, login: &str) -> String {
        let out = self.cli(hub, &["login", login, "--password", PASSWORD]);
        assert!(out.status.success(), "login {login}: {}", String::from_utf8_lossy(&out.stderr));
        let out = self.cli(hub, &["patients"]);
        assert!(out.status.success(), "patients: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn status(config: &Path) -> Output {
    Command::new(KIZUNA).args(["admin", "federation", "status", "--config"]).arg(config).output().unwrap()
}

#[test]
fn two_hubs_come_up_seeded_and_the_cli_works_against_either() {
    let demo = Demo::start();
    let banner = demo.banner.join("\n");
    for expected in ["hub tochigi", "hub gunma", "dr.sato（佐藤 健一）", "vn.kimura（木村 真理）", "vn.kimura@gunma"]
    {
        assert!(banner.contains(expected), "{expected:?} missing from:\n{banner}");
    }
    assert_eq!(banner.matches("(leader)").count(), 2, "one leader per hub:\n{banner}");

    // Each hub has its own data; the CLI reaches either one.
    let tochigi = demo.patients(0, "dr.sato");
    assert!(tochigi.contains("森田 キヨ") && tochigi.contains("山田 花子"), "{tochigi}");
    let gunma = demo.patients(1, "dr.hayashi");
    assert!(gunma.contains("小林 ハル") && !gunma.contains("山田 花子"), "{gunma}");
    // A Tochigi login is no Gunma account.
    let out = demo.cli(1, &["login", "dr.sato", "--password", PASSWORD]);
    assert!(!out.status.success(), "dr.sato signed in on gunma");

    // Each hub's federation listener answers the other's signed probe over mutual TLS.
    for hub in ["tochigi", "gunma"] {
        let out = status(&demo.data().join(format!("{hub}.toml")));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{hub}: {text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("REACHABLE (3/3"), "{hub}: {text}");
    }
}

#[test]
fn the_border_patient_is_shared_with_the_gunma_nurse_and_posts_cross_both_ways() {
    let demo = Demo::start();
    let banner = demo.banner.join("\n");
    assert!(banner.contains("群馬側にも共有されています"), "{banner}");
    let list = demo.patients(1, "vn.kimura");
    let room = list
        .lines()
        .find(|l| l.contains("森田 キヨ"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "room").nth(1))
        .unwrap_or_else(|| panic!("no 森田 キヨ on gunma:\n{list}"))
        .to_owned();
    // Tochigi's first post and the Gunma nurse's answer, on Gunma's copy, in Tochigi's order.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = demo.cli(1, &["timeline", &room, "--oldest-first"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (sato, kimura) = (text.find("足利市在住"), text.find("本日初回訪問しました"));
        if let (Some(sato), Some(kimura)) = (sato, kimura) {
            assert!(sato < kimura, "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "the nurse's post never came back from tochigi:\n{text}");
        std::thread::sleep(Duration::from_millis(300));
    }
}
