//! The SearchService (検索): posts, patients, people and facilities in one answer. Rules live
//! in `kizuna_domain::search`; every patient-data hit is journalled like any other read.

use kizuna_proto::search as pb;
use tonic::{Request, Response, Status};

use super::convert::{account_kind, facility_name, facility_view, post_view};
use super::paging::{self, PageToken};
use super::shared::{Api, domain_status, view_status};
use kizuna_domain::directory::{self, Search};
use kizuna_domain::model::*;
use kizuna_domain::{DomainError, HubView, audit, queries, search};

/// A post hit's place in the answer (newest first, by posted time, room, seq): the page key.
fn hit_key(h: &search::Hit) -> (u64, u64, u64) {
    (h.post.posted_at_ms, h.room.0, h.post.seq)
}

impl Api {
    /// A page of the posts found, each journalled when it is in a patient's room.
    fn post_hits(
        &self,
        hub: &impl HubView,
        me: AccountId,
        token_hash: &str,
        r: &pb::SearchRequest,
        size: usize,
    ) -> Result<(Vec<pb::PostHit>, String), Status> {
        let before = paging::resume(&r.page_token, |t| match t {
            PageToken::SearchPosts { posted_at_ms, room, seq } => Some((posted_at_ms, room, seq)),
            _ => None,
        })?;
        let hits = search::posts(hub, me, &r.query, usize::MAX).map_err(domain_status)?;
        let rest = hits.into_iter().filter(|h| before.is_none_or(|b| hit_key(h) < b));
        let (page, more) = paging::take_page(rest, size);
        let next_page_token = paging::next_token(&page, more, |h| {
            let (posted_at_ms, room, seq) = hit_key(h);
            PageToken::SearchPosts { posted_at_ms, room, seq }
        })?;
        let mut posts = Vec::with_capacity(page.len());
        for hit in page {
            let Some(room) = hub.room(hit.room).map_err(view_status)? else { continue };
            if let Some(patient) = audit::patient_data_in(hub, hit.room).map_err(view_status)? {
                let what = format!("search hit #{} for {:?}", hit.post.seq, r.query);
                self.audit_read(me, token_hash, patient, Some(hit.room), what)?;
            }
            let room_title = queries::title(hub, me, &room).map_err(view_status)?;
            posts.push(pb::PostHit { room_id: hit.room.0, room_title, post: Some(post_view(hub, hit.post)) });
        }
        Ok((posts, next_page_token))
    }

    /// Patients, people and facilities found: the first page's extras (no posts yet).
    fn other_hits(
        &self,
        hub: &impl HubView,
        me: AccountId,
        token_hash: &str,
        query: &str,
        limit: usize,
    ) -> Result<pb::SearchResponse, Status> {
        let mut patients = Vec::new();
        for p in search::patients(hub, me, query).map_err(domain_status)? {
            self.audit_read(me, token_hash, Some(p.id), None, format!("search found the patient for {query:?}"))?;
            patients.push(pb::PatientHit { patient_id: p.id.0, room_id: p.timeline.0, name: p.name, kana: p.kana });
        }
        let people = search::people(hub, me, query, limit)
            .map_err(domain_status)?
            .into_iter()
            .map(|a| {
                let (_, profession, facility) = account_kind(Some(&a.kind));
                let facility_name = facility_name(hub, &a);
                pb::PersonHit {
                    account_id: a.id.0,
                    display_name: a.display_name,
                    profession: profession as i32,
                    facility_id: facility.map(|f| f.0),
                    facility: facility_name,
                }
            })
            .collect();
        let words = Search { words: query.to_owned(), ..Search::default() };
        let facilities = match directory::search(hub, me, &words, limit) {
            Ok(found) => found.into_iter().map(facility_view).collect(),
            // Family accounts do not see the resource map: no facilities for them.
            Err(DomainError::PermissionDenied(_)) => Vec::new(),
            Err(e) => return Err(domain_status(e)),
        };
        Ok(pb::SearchResponse { patients, people, facilities, ..Default::default() })
    }
}

#[tonic::async_trait]
impl pb::search_service_server::SearchService for Api {
    async fn search(&self, req: Request<pb::SearchRequest>) -> Result<Response<pb::SearchResponse>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        let r = req.into_inner();
        let size = paging::page_size(r.page_size, 20, 100)?;
        self.query(|hub| {
            let (posts, next_page_token) = self.post_hits(hub, me, &token_hash, &r, size)?;
            let first_page = r.page_token.is_empty();
            let others =
                if first_page { self.other_hits(hub, me, &token_hash, &r.query, size)? } else { Default::default() };
            Ok(Response::new(pb::SearchResponse { posts, next_page_token, ..others }))
        })
    }
}
