//! The Directory service: the resource map (医療介護資源マップ) — search facilities, a
//! facility's page with its staff, and its admins keeping the profile current. Rules live in
//! `kizuna_domain::collab::directory`.

use kizuna_proto::collab as pb;
use tonic::{Request, Response, Status};

use super::collab::{CollabApi, domain_status, facility_kind};
use kizuna_domain::collab::Command;
use kizuna_domain::collab::directory::{self, FacilityProfile, GeoPoint, Search};
use kizuna_domain::collab::model::*;

fn kind_to(kind: FacilityKind) -> pb::FacilityKind {
    use pb::FacilityKind as K;
    match kind {
        FacilityKind::Clinic => K::Clinic,
        FacilityKind::Hospital => K::Hospital,
        FacilityKind::Pharmacy => K::Pharmacy,
        FacilityKind::DentalClinic => K::DentalClinic,
        FacilityKind::VisitingNursingStation => K::VisitingNursingStation,
        FacilityKind::CareOffice => K::CareOffice,
        FacilityKind::Rehabilitation => K::Rehabilitation,
        FacilityKind::Municipality => K::Municipality,
        FacilityKind::Other => K::Other,
    }
}

fn point_from(p: &pb::GeoPoint) -> GeoPoint {
    GeoPoint { lat_e6: p.lat_e6, lon_e6: p.lon_e6 }
}

fn profile_from(p: pb::FacilityProfile) -> FacilityProfile {
    FacilityProfile {
        address: p.address,
        phone: p.phone,
        location: p.location.as_ref().map(point_from),
        services: p.services,
        accepting_new_patients: p.accepting_new_patients,
        note: p.note,
    }
}

pub(super) fn entry(f: Facility, distance_m: Option<u64>) -> pb::FacilityEntry {
    let p = f.profile;
    pb::FacilityEntry {
        facility_id: f.id.0,
        name: f.name,
        kind: kind_to(f.kind) as i32,
        municipality: f.municipality,
        profile: Some(pb::FacilityProfile {
            address: p.address,
            phone: p.phone,
            location: p.location.map(|l| pb::GeoPoint { lat_e6: l.lat_e6, lon_e6: l.lon_e6 }),
            services: p.services,
            accepting_new_patients: p.accepting_new_patients,
            note: p.note,
        }),
        distance_m: distance_m.unwrap_or(0),
    }
}

impl CollabApi {
    fn facility_page(&self, me: AccountId, facility: FacilityId) -> Result<pb::FacilityPage, Status> {
        let (f, staff) = self.query(|hub| directory::page(hub, me, facility).map_err(domain_status))?;
        let staff = staff
            .into_iter()
            .map(|a| pb::StaffMember {
                account_id: a.id.0,
                profession: match a.kind {
                    AccountKind::Professional { profession, .. } => profession.label().to_owned(),
                    _ => String::new(),
                },
                display_name: a.display_name,
            })
            .collect();
        Ok(pb::FacilityPage { facility: Some(entry(f, None)), staff })
    }
}

#[tonic::async_trait]
impl pb::directory_server::Directory for CollabApi {
    async fn search_facilities(
        &self,
        req: Request<pb::SearchFacilitiesRequest>,
    ) -> Result<Response<pb::SearchFacilitiesResponse>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        let r = req.into_inner();
        let limit = super::bounded("limit", u64::from(r.limit), 100, 500)? as usize;
        let radius = super::bounded("radius_m", r.radius_m, 10_000, 100_000)?;
        let kinds = r.kinds.into_iter().map(facility_kind).collect::<Result<Vec<_>, _>>()?;
        let search = Search {
            kinds,
            municipality: r.municipality,
            service: r.service,
            words: r.words,
            accepting_only: r.accepting_only,
            near: r.near.as_ref().map(|p| (point_from(p), radius)),
        };
        let found = self.query(|hub| directory::search(hub, me, &search, limit).map_err(domain_status))?;
        let facilities = found.into_iter().map(|(f, d)| entry(f, d)).collect();
        Ok(Response::new(pb::SearchFacilitiesResponse { facilities }))
    }

    async fn get_facility(&self, req: Request<pb::GetFacilityRequest>) -> Result<Response<pb::FacilityPage>, Status> {
        let (me, _) = self.authenticate(&req).await?;
        Ok(Response::new(self.facility_page(me, FacilityId(req.get_ref().facility_id))?))
    }

    async fn update_facility_profile(
        &self,
        req: Request<pb::UpdateFacilityProfileRequest>,
    ) -> Result<Response<pb::FacilityPage>, Status> {
        let r = req.get_ref().clone();
        let profile = profile_from(r.profile.unwrap_or_default());
        let facility = FacilityId(r.facility_id);
        let cmd = Command::UpdateFacilityProfile { facility, profile };
        let (_, me, _) = self.signed_write_then_catch_up(&req, r.request_id, cmd).await?;
        Ok(Response::new(self.facility_page(me, facility)?))
    }
}
