//! `kizuna demo --federation`: two federated hubs on one machine, Tochigi and Gunma (three
//! nodes in three regions each, all in this process), laid out by [`super::pair`], seeded with
//! each prefecture's demo data and a patient near the border whose team spans both hubs.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tracing::info;

use super::pair::{HubLayout, PairLayout};
use super::seed::{self, BORDER_PATIENT, BORDER_REMOTE, DEMO_OPERATOR, DEMO_PASSWORD, GUNMA_PEOPLE, PEOPLE};
use super::serve::{FederatingNode, shutdown_signal, start_node, wait_for_leader};
use crate::config::HubConfig;

/// How long the demo waits for the border patient's room to reach Gunma before telling so.
const COPY_WAIT: Duration = Duration::from_secs(20);

pub async fn run(data_dir: &Path, base_port: u16) -> anyhow::Result<()> {
    let pair = super::pair::ensure(data_dir, base_port, false).context("laying out the two hubs")?;
    let configs = pair.load_hubs()?;
    let mut hubs: Vec<Vec<FederatingNode>> = Vec::new();
    for config in &configs {
        let mut nodes = Vec::new();
        for me in &config.nodes {
            let started = start_node(config, me, false).await;
            match started {
                Ok(n) => nodes.push(n),
                Err(e) => {
                    stop(hubs.into_iter().flatten().chain(nodes)).await;
                    return Err(
                        e.context(format!("starting {} of {} (is another demo running?)", me.name, config.hub.name))
                    );
                }
            }
        }
        hubs.push(nodes);
    }
    let result = present(&pair, &configs, &hubs).await;
    if result.is_ok() {
        println!("Ctrl-C で停止します。");
        shutdown_signal().await;
        info!("stopping the federated demo");
    }
    stop(hubs.into_iter().flatten()).await;
    result
}

async fn stop(nodes: impl Iterator<Item = FederatingNode>) {
    for n in nodes {
        n.shutdown().await;
    }
}

/// Waits for both leaders, seeds both hubs on first start, prints what to try.
async fn present(pair: &PairLayout, configs: &[HubConfig], hubs: &[Vec<FederatingNode>]) -> anyhow::Result<()> {
    let mut leaders = Vec::new();
    for (config, nodes) in configs.iter().zip(hubs) {
        let running: Vec<_> = nodes.iter().map(|n| &n.running).collect();
        let Some(leader) = wait_for_leader(&running, Duration::from_secs(30)).await else {
            bail!("hub {} elected no leader within 30s", config.hub.name);
        };
        leaders.push(leader);
    }
    let [tochigi, gunma] = [&pair.hubs[0], &pair.hubs[1]];
    println!("Kizuna 連携デモ: 2つのハブが起動しました (データ {})", pair_root(tochigi).display());
    for ((layout, config), leader) in pair.hubs.iter().zip(configs).zip(&leaders) {
        println!("  hub {} (CA {})", layout.name, layout.ca.display());
        for (n, node) in layout.nodes.iter().zip(&config.nodes) {
            let mark = if node.id == *leader { "  (leader)" } else { "" };
            println!(
                "    {:<12} region {:<10} api https://{}  federation {}{mark}",
                n.name, n.region, n.api_addr, n.federation_addr
            );
        }
    }
    // Every node also serves the browser client; each hub has its own CA for the browser to trust.
    println!(
        "  ブラウザでは各ノードの api の URL を開きます（先にそのハブの CA をブラウザの「認証局」に取り込みます）。"
    );
    let gunma_ch = channel(gunma).await?;
    let tochigi_ch = channel(tochigi).await?;
    // Gunma first: Tochigi's invitation of its nurse is answered with her profile.
    let gunma_new = seed::seed_gunma(gunma_ch.clone()).await.context("seeding gunma")?.is_some();
    let remote = format!("{BORDER_REMOTE}@{}", gunma.name);
    let border = seed::seed_tochigi(tochigi_ch, Some(&remote)).await.context("seeding tochigi")?;
    if border.is_some() || gunma_new {
        println!("デモデータを登録しました（栃木: 5施設・12名・患者4名 / 群馬: 3施設・4名・患者1名）。");
    }
    print_logins();
    println!(
        "県境の患者 {BORDER_PATIENT}（足利市）: 栃木の dr.sato の患者。群馬の {remote} がチームに参加しています。"
    );
    match wait_for_copy(gunma_ch.clone()).await? {
        Some(room) => {
            println!("  群馬側にも共有されています: gunma の部屋 {room}（{BORDER_REMOTE} の患者一覧に表示）");
            if border.is_some() {
                let text = "桐生ひまわり訪問看護の木村です。本日初回訪問しました。褥瘡なし、バイタル安定しています。";
                seed::post_as(gunma_ch, BORDER_REMOTE, room, text).await.context("posting from gunma")?;
            }
        }
        None => println!(
            "  まだ群馬側に届いていません（ハブ間の送信を待っています）。`kizuna admin federation status --config {}` で接続を確認できます。",
            gunma.config.display()
        ),
    }
    print_cli(tochigi, "栃木", "dr.sato");
    println!("  群馬の専門職をチームに招待: kizuna invite <部屋> ph.saito@{}", gunma.name);
    print_cli(gunma, "群馬", BORDER_REMOTE);
    println!("運用者向け: kizuna admin federation status --config {}", tochigi.config.display());
    println!("            kizuna admin federation status --config {}", gunma.config.display());
    Ok(())
}

fn pair_root(hub: &HubLayout) -> &Path {
    hub.config.parent().unwrap_or(Path::new("."))
}

async fn channel(hub: &HubLayout) -> anyhow::Result<tonic::transport::Channel> {
    let first = hub.nodes.first().context("a hub without nodes")?;
    let target = super::Target::new(Some(first.api_addr.to_string()), Some(hub.ca.clone()))?;
    Ok(target.connect_any().await.with_context(|| format!("reaching hub {}", hub.name))?.1)
}

/// The border patient's room on Gunma, once its copy has arrived there.
async fn wait_for_copy(gunma: tonic::transport::Channel) -> anyhow::Result<Option<u64>> {
    let token = seed::sign_in(gunma.clone(), BORDER_REMOTE).await?.context("the Gunma nurse cannot sign in")?;
    let deadline = tokio::time::Instant::now() + COPY_WAIT;
    loop {
        if let Some(room) = seed::find_patient_room(gunma.clone(), &token, BORDER_PATIENT).await? {
            return Ok(Some(room));
        }
        if tokio::time::Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_logins() {
    println!("ログイン（パスワードはすべて {DEMO_PASSWORD:?}）:");
    let list = |people: &[seed::Person]| {
        people.iter().map(|(login, name, _, _, _)| format!("{login}（{name}）")).collect::<Vec<_>>().join("  ")
    };
    println!("  栃木 tochigi: {DEMO_OPERATOR}（事務局）  {}", list(&PEOPLE));
    println!("  群馬 gunma:   {DEMO_OPERATOR}（事務局）  {}", list(&GUNMA_PEOPLE));
}

/// The CLI against one hub: its endpoint and CA, and a session file of its own so both hubs
/// can be used side by side.
fn print_cli(hub: &HubLayout, label: &str, login: &str) {
    let Some(first) = hub.nodes.first() else { return };
    let session = pair_root(hub).join(format!("{}-session.json", hub.name));
    println!("{label}（{}）の端末で:", hub.name);
    println!(
        "  export KIZUNA_ENDPOINT={} KIZUNA_CA={} KIZUNA_SESSION_FILE={}",
        first.api_addr,
        hub.ca.display(),
        session.display()
    );
    println!("  kizuna login {login}; kizuna patients; kizuna timeline <部屋>; kizuna post <部屋> 本文; kizuna tail");
    println!("  （または各コマンドに --endpoint {} --ca {} を付けても同じです）", first.api_addr, hub.ca.display());
}
