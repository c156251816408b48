//! The Search service (検索): posts, patients, people and facilities in one answer. Rules live
//! in `kizuna_domain::collab::search`; every patient-data hit is journalled like any other read.

use kizuna_proto::collab as pb;
use tonic::{Request, Response, Status};

use super::collab::{CollabApi, domain_status, post_view};
use super::directory::entry;
use kizuna_domain::collab::directory::{self, Search};
use kizuna_domain::collab::model::*;
use kizuna_domain::collab::queries;
use kizuna_domain::collab::search;
use kizuna_domain::collab::{DomainError, HubView, audit};

#[tonic::async_trait]
impl pb::search_server::Search for CollabApi {
    async fn search(&self, req: Request<pb::SearchRequest>) -> Result<Response<pb::SearchResponse>, Status> {
        let (me, token_hash) = self.authenticate(&req).await?;
        let r = req.into_inner();
        let limit = super::bounded("limit", u64::from(r.limit), 20, 100)? as usize;
        self.query(|hub| {
            let hits = search::posts(hub, me, &r.query, limit).map_err(domain_status)?;
            let mut posts = Vec::with_capacity(hits.len());
            for hit in hits {
                let Some(room) = hub.room(hit.room) else { continue };
                if let Some(patient) = audit::patient_of(hub, hit.room) {
                    let what = format!("search hit #{} for {:?}", hit.post.seq, r.query);
                    self.audit_read(me, &token_hash, Some(patient), Some(hit.room), what)?;
                }
                let room_title = queries::title(hub, me, &room);
                posts.push(pb::PostHit { room_id: hit.room.0, room_title, post: Some(post_view(hub, hit.post)) });
            }
            let mut patients = Vec::new();
            for p in search::patients(hub, me, &r.query).map_err(domain_status)? {
                self.audit_read(
                    me,
                    &token_hash,
                    Some(p.id),
                    None,
                    format!("search found the patient for {:?}", r.query),
                )?;
                patients.push(pb::PatientHit { patient_id: p.id.0, room_id: p.timeline.0, name: p.name, kana: p.kana });
            }
            let people = search::people(hub, me, &r.query, limit)
                .map_err(domain_status)?
                .into_iter()
                .map(|a| {
                    let (profession, facility) = match a.kind {
                        AccountKind::Professional { profession, facility } => (profession.label().to_owned(), facility),
                        _ => (String::new(), FacilityId(0)),
                    };
                    pb::PersonHit {
                        account_id: a.id.0,
                        display_name: a.display_name,
                        profession,
                        facility_id: facility.0,
                        facility: hub.facility(facility).map(|f| f.name).unwrap_or_default(),
                    }
                })
                .collect();
            let words = Search { words: r.query.clone(), ..Search::default() };
            let facilities = match directory::search(hub, me, &words, limit) {
                Ok(found) => found.into_iter().map(|(f, d)| entry(f, d)).collect(),
                // Family accounts do not see the resource map: no facilities for them.
                Err(DomainError::PermissionDenied(_)) => Vec::new(),
                Err(e) => return Err(domain_status(e)),
            };
            Ok(Response::new(pb::SearchResponse { posts, patients, people, facilities }))
        })
    }
}
