//! Search: Japanese substrings without spaces, only what the user may read, edits and deletions
//! followed, patients and people.

use super::*;
use crate::search;

fn found(hub: &Hub, who: AccountId, q: &str) -> Vec<search::Hit> {
    search::posts(&hub.state, who, q, 10).unwrap()
}

#[test]
fn search_finds_japanese_words_in_readable_posts_only() {
    let (mut hub, _op, _clinic, people) = Hub::setup(3);
    let (doctor, nurse, outsider) = (people[0], people[1], people[2]);
    let room = patient(&mut hub, doctor, "山田 花子");
    hub.ok(doctor, Command::Invite { room, invitee: nurse, role: Role::Member });
    let other = patient(&mut hub, outsider, "佐藤 一郎");
    let s1 = post(&mut hub, doctor, room, "在宅酸素の流量を1Lから2Lに変更しました。");
    post(&mut hub, nurse, room, "本日の訪問で酸素チューブを交換。");
    post(&mut hub, outsider, other, "酸素ボンベの配達日を確認。");

    // No spaces in Japanese: a word inside a sentence is found; newest first.
    let hits = found(&hub, nurse, "酸素");
    assert_eq!(hits.iter().map(|h| h.post.seq).collect::<Vec<_>>(), vec![2, 1]);
    assert!(hits.iter().all(|h| h.room == room));
    assert_eq!(found(&hub, nurse, "流量を1l").len(), 1, "full-width, case and the exact substring");
    assert!(found(&hub, nurse, "酸素ボンベ").is_empty(), "another team's post");
    assert_eq!(found(&hub, outsider, "酸素").len(), 1);
    assert!(found(&hub, nurse, "素の流量を2").is_empty(), "bigrams alone do not make a match");

    // Edits move the post in the index; a deleted post is found no more.
    hub.ok(doctor, Command::EditPost { room, seq: s1, text: "在宅酸素の流量は据え置きです。".into() });
    assert!(found(&hub, nurse, "流量を").is_empty());
    assert_eq!(found(&hub, nurse, "据え置き").len(), 1);
    hub.ok(doctor, Command::DeletePost { room, seq: s1 });
    assert!(found(&hub, nurse, "据え置き").is_empty());

    // Patients of one's teams, people of the hub.
    let patients = search::patients(&hub.state, nurse, "山田").unwrap();
    assert_eq!(patients.iter().map(|p| p.timeline).collect::<Vec<_>>(), vec![room]);
    assert!(search::patients(&hub.state, nurse, "佐藤").unwrap().is_empty());
    let staff = search::people(&hub.state, nurse, "職員2", 10).unwrap();
    assert_eq!(staff.iter().map(|a| a.id).collect::<Vec<_>>(), vec![outsider]);

    // A one-character query matches too much; it is refused.
    assert!(matches!(search::posts(&hub.state, nurse, "酸", 10), Err(DomainError::InvalidArgument(_))));
}
