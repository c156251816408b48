//! The browser client end to end, in a real browser: a 3-node hub, seeded with the demo region
//! through the API, then a script drives Debian's Chromium through playwright-core against the
//! nodes' public ports — `web/e2e/story.mjs` on a TLS hub, `web/e2e/cut-off.mjs` on a hub whose
//! Raft links can be cut.
//!
//! The script talks back on a line protocol: it prints `@@stop <url>` (or `@@restart`,
//! `@@isolate`, `@@heal`) on stdout and waits for a line on stdin — `done` once the node is down
//! (back, cut off, reconnected), or `error <why>`. Every other line of its
//! stdout and stderr is echoed here (prefixed `story|`), and is the failure message when it
//! exits non-zero or overruns [`DEADLINE`].
//!
//! Needs /usr/bin/chromium, the Noto CJK fonts and node/web/node_modules: `make test` installs
//! them (ops/scripts/setup-browser.sh). Without them this test fails and says so; it never skips.
//!
//! `KIZUNA_STORY=e2e/other.mjs` runs another script than e2e/story.mjs (a path under node/web).
//!
//! Screenshots go to `$KIZUNA_SCREENSHOTS` when set (a relative path is taken from the
//! repository root; `make screenshots` uses docs/screenshots), else to a temporary directory
//! that is kept, and named, when the test fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{TestHub, Wire};
use kizuna_node::cli::Target;
use kizuna_node::cli::seed::{self, DEMO_OPERATOR, DEMO_PASSWORD, PEOPLE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// The whole story, browser start-up included; generous, for two cores shared with builds.
const DEADLINE: Duration = Duration::from_secs(240);
const CHROMIUM: &str = "/usr/bin/chromium";

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// What the script needs from the machine; a clear failure when something is missing.
fn check_prerequisites(web: &Path) {
    let fix = "run `make test`, or `bash ops/scripts/setup-browser.sh` alone (it installs Debian's chromium, \
               fonts-noto-cjk and node/web's npm packages)";
    assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing: the browser test needs Debian's chromium; {fix}");
    assert!(
        web.join("node_modules/playwright-core/package.json").exists(),
        "{} has no playwright-core: {fix}",
        web.join("node_modules").display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "`node` is not runnable: {fix}");
}

/// Where the screenshots go: `$KIZUNA_SCREENSHOTS` (relative to the repository root), or a
/// temporary directory (returned too, so it can be kept when the test fails).
fn screenshots_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("KIZUNA_SCREENSHOTS").filter(|s| !s.is_empty()) {
        Some(dir) => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
            (dir, None)
        }
        None => {
            let tmp = tempfile::Builder::new().prefix("kizuna-screenshots-").tempdir().expect("temp dir");
            (tmp.path().to_owned(), Some(tmp))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_story_runs_in_a_real_browser() {
    run_in_browser(Wire::Tls, "e2e/story.mjs").await;
}

/// A node cut off from its hub (its Raft links cut, its public port still answering): the
/// page says so and moves to a node that is not. Plaintext, because only that test wire can
/// cut links (`Wire::Faulty`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_node_is_said_and_left_in_a_real_browser() {
    run_in_browser(Wire::Faulty, "e2e/cut-off.mjs").await;
}

/// One browser story at a time: each runs Chromium beside a 3-node hub, and two of them at once
/// on a 2-core machine starve the hub's heartbeats until its leader steps back (seen as a seed
/// write refused with "lost contact with its quorum").
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The hospital doctor of the demo region, on no team of the story's patient: the operator
/// designates her for emergency access, and the story opens that patient's timeline with it.
const EMERGENCY_DOCTOR: &str = "dr.kato";

async fn designate_for_emergency_access(channel: tonic::transport::Channel, login: &str) {
    use kizuna_proto::accounts::{GetMeRequest, account_service_client::AccountServiceClient};
    use kizuna_proto::rooms::{SetBreakGlassRequest, room_service_client::RoomServiceClient};
    let signed_in = |token: String| {
        let mut r = tonic::Request::new(());
        r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("a header value"));
        r
    };
    let doctor = seed::sign_in(channel.clone(), login).await.expect("signing in").expect("a demo account");
    let me = AccountServiceClient::new(channel.clone())
        .get_me(signed_in(doctor).map(|()| GetMeRequest {}))
        .await
        .expect("GetMe");
    let op = seed::sign_in(channel.clone(), DEMO_OPERATOR).await.expect("signing in").expect("the operator");
    let designate = SetBreakGlassRequest {
        idempotency_key: format!("story-break-glass-{login}"),
        account_id: me.into_inner().account_id,
        allowed: true,
    };
    RoomServiceClient::new(channel).set_break_glass(signed_in(op).map(|()| designate)).await.expect("designated");
}

/// Starts a seeded 3-node hub on `wire` and runs `script` (under node/web) against it.
async fn run_in_browser(wire: Wire, script: &str) {
    let _alone = ONE_BROWSER.lock().await;
    let web = web_dir();
    check_prerequisites(&web);

    let mut hub = TestHub::start_with(3, wire).await;
    hub.leader().await;
    let ca = hub.config.tls.as_ref().map(|tls| tls.dir.join("ca.pem"));
    let scheme = if ca.is_some() { "https" } else { "http" };
    let urls: Vec<(u64, String)> =
        hub.config.nodes.iter().map(|n| (n.id, format!("{scheme}://{}", n.api_addr))).collect();

    let channel = match &ca {
        Some(ca) => {
            let target = Target::new(Some(urls[0].1.clone()), Some(ca.clone())).expect("a client of the test hub");
            target.connect(&urls[0].1).await.expect("connect to node 1 over TLS")
        }
        None => common::channel(&urls[0].1).await,
    };
    assert!(seed::seed(channel.clone()).await.expect("seeding the demo region"), "a fresh hub is seeded");
    eprintln!("seeded: operator {DEMO_OPERATOR} and {} people, password {DEMO_PASSWORD:?}", PEOPLE.len());
    designate_for_emergency_access(channel, EMERGENCY_DOCTOR).await;

    let (shots, tmp_shots) = screenshots_dir();
    let story = Story { web: &web, script, urls: &urls, ca: ca.as_deref(), shots: &shots };
    let result = story.run(&mut hub).await;
    hub.shutdown().await;
    if let Err(failure) = result {
        let kept = tmp_shots.map(|t| t.keep()).unwrap_or(shots);
        panic!("{failure}\nscreenshots and page excerpts: {}", kept.display());
    }
}

/// One script run against a running hub.
struct Story<'a> {
    web: &'a Path,
    script: &'a str,
    urls: &'a [(u64, String)],
    /// The hub's CA when it runs TLS (the script trusts the node certificates next to it).
    ca: Option<&'a Path>,
    shots: &'a Path,
}

/// What the script printed and how the run ended.
struct Transcript {
    script: PathBuf,
    lines: Vec<String>,
}

impl Transcript {
    fn echo(&mut self, line: String) {
        eprintln!("story| {line}");
        self.lines.push(line);
    }

    fn failure(&self, why: String) -> Result<(), String> {
        Err(format!("{why}\n--- output of {} ---\n{}\n--- end ---", self.script.display(), self.lines.join("\n")))
    }
}

impl Story<'_> {
    fn spawn(&self, script: &Path) -> Result<tokio::process::Child, String> {
        let joined = self.urls.iter().map(|(_, u)| u.as_str()).collect::<Vec<_>>().join(",");
        let mut command = Command::new("node");
        command
            .arg(script)
            .current_dir(self.web)
            .env("KIZUNA_URLS", joined)
            .env("KIZUNA_SCREENSHOTS", self.shots)
            .env("KIZUNA_DEMO_PASSWORD", DEMO_PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout kills the browser with it.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(ca) = self.ca {
            command.env("KIZUNA_CA", ca);
        }
        command.spawn().map_err(|e| format!("starting `node {}`: {e}", script.display()))
    }

    /// Runs the script to its end, answering its requests to change the hub.
    async fn run(&self, hub: &mut TestHub) -> Result<(), String> {
        // `KIZUNA_STORY` (a path under node/web) runs another script, e.g. while writing one.
        let script = self.web.join(std::env::var("KIZUNA_STORY").unwrap_or_else(|_| self.script.into()));
        let mut child = self.spawn(&script)?;
        let pid = child.id().expect("a running child");
        let mut stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let mut transcript = Transcript { script, lines: Vec::new() };
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            tokio::select! {
                line = stdout.next_line(), if out_open => match line {
                    Ok(Some(line)) => {
                        let answer = node_action(hub, self.urls, &line).await;
                        transcript.echo(line);
                        let Some(answer) = answer else { continue };
                        transcript.echo(format!("(answered: {answer})"));
                        if let Err(e) = stdin.write_all(format!("{answer}\n").as_bytes()).await {
                            return transcript.failure(format!("answering the script: {e}"));
                        }
                    }
                    Ok(None) => out_open = false,
                    Err(e) => return transcript.failure(format!("reading the script's stdout: {e}")),
                },
                line = stderr.next_line(), if err_open => match line {
                    Ok(Some(line)) => transcript.echo(line),
                    Ok(None) => err_open = false,
                    Err(e) => return transcript.failure(format!("reading the script's stderr: {e}")),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    kill_group(pid);
                    return transcript.failure(format!("the story overran its {}s deadline and was killed", DEADLINE.as_secs()));
                }
            }
        }
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => transcript.failure(format!("the story failed ({status})")),
            Ok(Err(e)) => transcript.failure(format!("waiting for the script: {e}")),
            Err(_) => {
                kill_group(pid);
                transcript.failure("the story closed its output but did not exit before the deadline".into())
            }
        }
    }
}

/// The script's request `@@<action> <url>` (stop, restart, isolate, heal) carried out on the
/// node serving `url`: `done`, or `error <why>`. None for any other line.
async fn node_action(hub: &mut TestHub, urls: &[(u64, String)], line: &str) -> Option<String> {
    let (action, url) = line.strip_prefix("@@")?.split_once(' ')?;
    let url = url.trim().trim_end_matches('/');
    let Some(&(id, _)) = urls.iter().find(|(_, u)| u == url) else {
        return Some(format!("error no node of this hub serves {url}"));
    };
    let running = hub.running_ids().contains(&id);
    match (action, running) {
        ("stop", true) => hub.stop(id).await,
        ("restart", false) => hub.restart(id).await,
        ("isolate", true) => hub.isolate(id),
        ("heal", true) => hub.heal(id),
        ("stop" | "restart" | "isolate" | "heal", _) => {
            let state = if running { "running" } else { "stopped" };
            return Some(format!("error node {id} ({url}) is {state}"));
        }
        (other, _) => return Some(format!("error unknown request {other:?}")),
    }
    Some("done".into())
}

/// Kills the script's process group (the script and the browser it started).
fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
}
