//! The DirectoryService: the resource map (医療介護資源マップ) — search facilities, a
//! facility's page with its staff, and its admins keeping the profile current. Rules live in
//! `kizuna_domain::directory`.

use kizuna_proto::common as pb_common;
use kizuna_proto::directory as pb;
use tonic::{Request, Response, Status};

use super::convert::{account_kind, facility_kind_from, facility_view, point_from, profile_from, quoted};
use super::disaster::facility_status_view;
use super::paging::{self, PageToken};
use super::shared::{Api, domain_status, view_status};
use kizuna_domain::Command;
use kizuna_domain::HubView;
use kizuna_domain::directory::{self, Found, Search};
use kizuna_domain::disaster::board::facility_status_now;
use kizuna_domain::federation::HubName;
use kizuna_domain::model::*;

/// A facility's place in a search's order (nearest first, then municipality, name and id): the
/// page key.
pub(super) fn search_key(found: &Found) -> (Option<u64>, String, String, u64) {
    let f = &found.facility;
    (found.distance_m, f.municipality.clone(), f.name.clone(), f.id.0)
}

fn search_from(r: &pb::SearchFacilitiesRequest) -> Result<Search, Status> {
    let radius = super::bounded("radius_m", r.radius_m, 10_000, 100_000)?;
    Ok(Search {
        kinds: r.kinds.iter().copied().map(facility_kind_from).collect::<Result<Vec<_>, _>>()?,
        municipality: r.municipality.clone().unwrap_or_default(),
        service: r.service.clone().unwrap_or_default(),
        words: r.words.clone(),
        accepting_only: r.accepting_only,
        near: r.near.as_ref().map(|p| (point_from(p), radius)),
    })
}

impl Api {
    fn facility_page(&self, me: AccountId, facility: FacilityId) -> Result<pb::FacilityPage, Status> {
        let (f, staff) = self.query(|hub| directory::page(hub, me, facility).map_err(domain_status))?;
        let f = self.on_the_map(vec![f])?.pop().ok_or_else(|| Status::internal("the facility vanished"))?;
        let staff = staff
            .into_iter()
            .map(|a| pb::StaffMember {
                account_id: a.id.0,
                profession: account_kind(Some(&a.kind)).1 as i32,
                display_name: a.display_name,
            })
            .collect();
        Ok(pb::FacilityPage { facility: Some(f), staff })
    }

    fn facilities_page(
        &self,
        me: AccountId,
        r: &pb::SearchFacilitiesRequest,
    ) -> Result<pb::SearchFacilitiesResponse, Status> {
        let size = paging::page_size(r.page_size, 100, 500)?;
        let after = paging::resume(&r.page_token, |t| match t {
            PageToken::Facilities { distance_m, municipality, name, id } => Some((distance_m, municipality, name, id)),
            _ => None,
        })?;
        let search = search_from(r)?;
        let mut found = self.query(|hub| directory::search(hub, me, &search, usize::MAX).map_err(domain_status))?;
        // The domain orders by distance, municipality and name; the id makes the order total.
        found.sort_by_cached_key(search_key);
        let rest = found.into_iter().filter(|f| after.as_ref().is_none_or(|a| search_key(f) > *a));
        let (page, more) = paging::take_page(rest, size);
        let next_page_token = paging::next_token(&page, more, |f| {
            let (distance_m, municipality, name, id) = search_key(f);
            PageToken::Facilities { distance_m, municipality, name, id }
        })?;
        let facilities = self.on_the_map(page)?;
        Ok(pb::SearchFacilitiesResponse { facilities, next_page_token })
    }

    /// Facilities as the map shows them, each with its latest status in a disaster in force
    /// (also one recorded on this node and waiting for the hub).
    fn on_the_map(&self, found: Vec<Found>) -> Result<Vec<pb_common::Facility>, Status> {
        let (pending, _, _) = self.pending_here();
        self.query(|hub| {
            let disasters = hub.disasters().map_err(view_status)?;
            let mut out = Vec::with_capacity(found.len());
            for f in found {
                let status = facility_status_now(hub, f.facility.id, &disasters, &pending).map_err(view_status)?;
                let mut view = facility_view(f);
                view.disaster_status = status.and_then(|(o, pending)| facility_status_view(&o, pending));
                out.push(view);
            }
            Ok(out)
        })
    }
}

#[tonic::async_trait]
impl pb::directory_service_server::DirectoryService for Api {
    async fn search_facilities(
        &self,
        req: Request<pb::SearchFacilitiesRequest>,
    ) -> Result<Response<pb::SearchFacilitiesResponse>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        Ok(Response::new(self.facilities_page(me, req.get_ref())?))
    }

    async fn get_facility(
        &self,
        req: Request<pb::GetFacilityRequest>,
    ) -> Result<Response<pb::GetFacilityResponse>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        let page = self.facility_page(me, FacilityId(req.get_ref().facility_id))?;
        Ok(Response::new(pb::GetFacilityResponse { page: Some(page) }))
    }

    async fn update_facility_profile(
        &self,
        req: Request<pb::UpdateFacilityProfileRequest>,
    ) -> Result<Response<pb::UpdateFacilityProfileResponse>, Status> {
        let r = req.get_ref().clone();
        let profile = profile_from(r.profile.unwrap_or_default());
        let facility = FacilityId(r.facility_id);
        let cmd = Command::UpdateFacilityProfile { facility, profile };
        let (_, me, _) = self.signed_write_then_catch_up(&req, r.idempotency_key, cmd).await?;
        let page = self.facility_page(me, facility)?;
        Ok(Response::new(pb::UpdateFacilityProfileResponse { page: Some(page) }))
    }

    async fn share_directory(
        &self,
        req: Request<pb::ShareDirectoryRequest>,
    ) -> Result<Response<pb::ShareDirectoryResponse>, Status> {
        let r = req.get_ref().clone();
        let peer =
            HubName::new(&r.peer).map_err(|e| Status::invalid_argument(format!("peer {}: {e}", quoted(&r.peer))))?;
        // Only a listed peer can ever receive the map (the domain does not know the list).
        if !self.node.federation.is_peer(&peer) {
            return Err(Status::not_found(format!("{peer} is not a configured federation peer of this hub")));
        }
        let cmd = Command::ShareDirectory { peer, share: r.share };
        self.signed_write_then_catch_up(&req, r.idempotency_key, cmd).await?;
        let shared = self.query(|hub| hub.directory_shared_with().map_err(view_status))?;
        Ok(Response::new(pb::ShareDirectoryResponse { shared_with: shared.iter().map(|h| h.to_string()).collect() }))
    }
}
