//! `kizuna search WORDS`: posts, patients, people and facilities that contain the words.

use kizuna_proto::search::SearchRequest;
use kizuna_proto::search::search_service_client::SearchServiceClient;

use super::Target;
use super::labels;
use super::user::{authed, channel, time, token};

pub async fn run(target: &Target, query: String) -> anyhow::Result<()> {
    let t = token()?;
    // The first page: the newest posts found, with the patients, people and facilities.
    let found = SearchServiceClient::new(channel(target).await?)
        .search(authed(SearchRequest { query, ..Default::default() }, &t)?)
        .await?
        .into_inner();
    for p in &found.patients {
        println!("患者  {}（{}） room {}", p.name, p.kana, p.room_id);
    }
    for h in &found.posts {
        if let Some(p) = &h.post {
            println!("投稿  [{} #{}] {} {}: {}", h.room_title, p.seq, time(&p.posted_at), p.author_name, p.text);
        }
    }
    for p in &found.people {
        let profession = labels::profession(p.profession);
        println!("職員  {} {profession}（{}） account {}", p.display_name, p.facility, p.account_id);
    }
    for f in &found.facilities {
        println!("施設  {}（{}） #{}", f.name, f.municipality, f.facility_id);
    }
    if found.patients.is_empty() && found.posts.is_empty() && found.people.is_empty() && found.facilities.is_empty() {
        println!("(nothing found)");
    }
    Ok(())
}
