//! The browser client end to end, in a real browser: a 3-node hub over TLS, seeded with the
//! demo region through the API, then `node web/e2e/story.mjs` drives Debian's Chromium through
//! playwright-core against the nodes' public ports.
//!
//! The script talks back on a line protocol: it prints `@@stop <url>` on stdout and waits for a
//! line on stdin — `stopped` once that node is down, or `error <why>`. Every other line of its
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
    let web = web_dir();
    check_prerequisites(&web);

    let mut hub = TestHub::start_with(3, Wire::Tls).await;
    hub.leader().await;
    let ca = hub.config.tls.clone().expect("a TLS hub").dir.join("ca.pem");
    let urls: Vec<(u64, String)> = hub.config.nodes.iter().map(|n| (n.id, format!("https://{}", n.api_addr))).collect();

    // The demo region, through the public API like `kizuna demo` does.
    let target = Target::new(Some(urls[0].1.clone()), Some(ca.clone())).expect("a client of the test hub");
    let channel = target.connect(&urls[0].1).await.expect("connect to node 1 over TLS");
    assert!(seed::seed(channel).await.expect("seeding the demo region"), "a fresh hub is seeded");
    eprintln!("seeded: operator {DEMO_OPERATOR} and {} people, password {DEMO_PASSWORD:?}", PEOPLE.len());

    let (shots, tmp_shots) = screenshots_dir();
    let joined = urls.iter().map(|(_, u)| u.as_str()).collect::<Vec<_>>().join(",");
    let result = run_story(&mut hub, &web, &urls, &joined, &ca, &shots).await;
    hub.shutdown().await;
    if let Err(failure) = result {
        let kept = tmp_shots.map(|t| t.keep()).unwrap_or(shots);
        panic!("{failure}\nscreenshots and page excerpts: {}", kept.display());
    }
}

/// Runs the story script to its end, answering its stop requests. `Err`: why it failed, with
/// its whole output.
async fn run_story(
    hub: &mut TestHub,
    web: &Path,
    urls: &[(u64, String)],
    joined: &str,
    ca: &Path,
    shots: &Path,
) -> Result<(), String> {
    // `KIZUNA_STORY` (a path under node/web) runs another script, e.g. while writing one.
    let script = web.join(std::env::var("KIZUNA_STORY").unwrap_or_else(|_| "e2e/story.mjs".into()));
    let mut child = Command::new("node")
        .arg(&script)
        .current_dir(web)
        .env("KIZUNA_URLS", joined)
        .env("KIZUNA_CA", ca)
        .env("KIZUNA_SCREENSHOTS", shots)
        .env("KIZUNA_DEMO_PASSWORD", DEMO_PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills the browser with it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting `node {}`: {e}", script.display()))?;
    let pid = child.id().expect("a running child");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let mut transcript = Vec::<String>::new();
    let echo = |line: String, transcript: &mut Vec<String>| {
        eprintln!("story| {line}");
        transcript.push(line);
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let (mut out_open, mut err_open) = (true, true);
    let failure = |why: String, transcript: &[String]| {
        Err(format!("{why}\n--- output of {} ---\n{}\n--- end ---", script.display(), transcript.join("\n")))
    };
    while out_open || err_open {
        tokio::select! {
            line = stdout.next_line(), if out_open => match line {
                Ok(Some(line)) => match line.strip_prefix("@@stop ") {
                    Some(url) => {
                        echo(line.clone(), &mut transcript);
                        let answer = stop(hub, urls, url.trim()).await;
                        echo(format!("(answered: {answer})"), &mut transcript);
                        if let Err(e) = stdin.write_all(format!("{answer}\n").as_bytes()).await {
                            return failure(format!("answering the script: {e}"), &transcript);
                        }
                    }
                    None => echo(line, &mut transcript),
                },
                Ok(None) => out_open = false,
                Err(e) => return failure(format!("reading the script's stdout: {e}"), &transcript),
            },
            line = stderr.next_line(), if err_open => match line {
                Ok(Some(line)) => echo(line, &mut transcript),
                Ok(None) => err_open = false,
                Err(e) => return failure(format!("reading the script's stderr: {e}"), &transcript),
            },
            _ = tokio::time::sleep_until(deadline) => {
                kill_group(pid);
                return failure(format!("the story overran its {}s deadline and was killed", DEADLINE.as_secs()), &transcript);
            }
        }
    }
    let status = match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(status) => status.map_err(|e| format!("waiting for the script: {e}"))?,
        Err(_) => {
            kill_group(pid);
            return failure("the story closed its output but did not exit before the deadline".into(), &transcript);
        }
    };
    if status.success() { Ok(()) } else { failure(format!("the story failed ({status})"), &transcript) }
}

/// Stops the node serving `url`: the answer for the script (`stopped`, or `error <why>`).
async fn stop(hub: &mut TestHub, urls: &[(u64, String)], url: &str) -> String {
    let url = url.trim_end_matches('/');
    let Some((id, _)) = urls.iter().find(|(_, u)| u == url) else {
        return format!("error no node of this hub serves {url}");
    };
    if !hub.running_ids().contains(id) {
        return format!("error node {id} ({url}) is already stopped");
    }
    hub.stop(*id).await;
    "stopped".into()
}

/// Kills the script's process group (the script and the browser it started).
fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
}
