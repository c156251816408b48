//! Proto ⇄ domain for the types several services share: timestamps, facility kinds,
//! professions, account kinds, posts and facilities. Enums travel as values; their Japanese
//! labels are the client's business.

use kizuna_domain::HubView;
use kizuna_domain::attachments::{self, Attachment};
use kizuna_domain::directory::Found;
use kizuna_domain::directory::{FacilityProfile, GeoPoint};
use kizuna_domain::federation::HubName;
use kizuna_domain::model::*;
use kizuna_domain::requests::RequestKind;
use kizuna_proto::common as pb;
use tonic::Status;

use super::shared::shown;
use crate::federation::Board;

pub(crate) fn timestamp(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: (ms / 1000) as i64, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

/// A client's timestamp in ms since the Unix epoch; one before the epoch or malformed is refused.
pub(super) fn millis_of(t: &prost_types::Timestamp) -> Result<u64, tonic::Status> {
    let seconds = u64::try_from(t.seconds).map_err(|_| tonic::Status::invalid_argument("a time before 1970"))?;
    let nanos = u64::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000);
    let nanos = nanos.ok_or_else(|| tonic::Status::invalid_argument("a timestamp's nanos must be 0..1e9"))?;
    seconds
        .checked_mul(1000)
        .map(|ms| ms + nanos / 1_000_000)
        .ok_or_else(|| tonic::Status::invalid_argument("a time too far ahead"))
}

/// A facility kind a client sent: unspecified or unknown values are refused.
pub(super) fn facility_kind_from(k: i32) -> Result<FacilityKind, Status> {
    use pb::FacilityKind as K;
    Ok(match K::try_from(k).unwrap_or(K::Unspecified) {
        K::Clinic => FacilityKind::Clinic,
        K::Hospital => FacilityKind::Hospital,
        K::Pharmacy => FacilityKind::Pharmacy,
        K::DentalClinic => FacilityKind::DentalClinic,
        K::VisitingNursingStation => FacilityKind::VisitingNursingStation,
        K::CareOffice => FacilityKind::CareOffice,
        K::Rehabilitation => FacilityKind::Rehabilitation,
        K::Municipality => FacilityKind::Municipality,
        K::Other => FacilityKind::Other,
        K::Unspecified => return Err(Status::invalid_argument("facility kind is required")),
    })
}

pub(super) fn facility_kind_to(kind: FacilityKind) -> pb::FacilityKind {
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

/// A profession a client sent: unspecified or unknown values are refused.
pub fn profession_from(p: i32) -> Result<Profession, Status> {
    use pb::Profession as P;
    Ok(match P::try_from(p).unwrap_or(P::Unspecified) {
        P::Doctor => Profession::Doctor,
        P::Nurse => Profession::Nurse,
        P::VisitingNurse => Profession::VisitingNurse,
        P::Pharmacist => Profession::Pharmacist,
        P::Dentist => Profession::Dentist,
        P::DentalHygienist => Profession::DentalHygienist,
        P::Therapist => Profession::Therapist,
        P::CareManager => Profession::CareManager,
        P::CareWorker => Profession::CareWorker,
        P::MedicalSocialWorker => Profession::MedicalSocialWorker,
        P::Clerk => Profession::Clerk,
        P::MunicipalStaff => Profession::MunicipalStaff,
        P::Other => Profession::Other,
        P::Unspecified => return Err(Status::invalid_argument("profession is required")),
    })
}

pub(super) fn profession_to(p: Profession) -> pb::Profession {
    use pb::Profession as P;
    match p {
        Profession::Doctor => P::Doctor,
        Profession::Nurse => P::Nurse,
        Profession::VisitingNurse => P::VisitingNurse,
        Profession::Pharmacist => P::Pharmacist,
        Profession::Dentist => P::Dentist,
        Profession::DentalHygienist => P::DentalHygienist,
        Profession::Therapist => P::Therapist,
        Profession::CareManager => P::CareManager,
        Profession::CareWorker => P::CareWorker,
        Profession::MedicalSocialWorker => P::MedicalSocialWorker,
        Profession::Clerk => P::Clerk,
        Profession::MunicipalStaff => P::MunicipalStaff,
        Profession::Other => P::Other,
    }
}

/// Who an account is: its kind and, for a professional, profession and facility.
pub(super) fn account_kind(kind: Option<&AccountKind>) -> (pb::AccountKind, pb::Profession, Option<FacilityId>) {
    match kind {
        Some(AccountKind::Professional { facility, profession }) => {
            (pb::AccountKind::Professional, profession_to(*profession), Some(*facility))
        }
        Some(AccountKind::Remote { profession, .. }) => {
            (pb::AccountKind::Professional, profession_to(*profession), None)
        }
        Some(AccountKind::Family { .. }) => (pb::AccountKind::Family, pb::Profession::Unspecified, None),
        Some(AccountKind::Operator) => (pb::AccountKind::Operator, pb::Profession::Unspecified, None),
        None => (pb::AccountKind::Unspecified, pb::Profession::Unspecified, None),
    }
}

/// A client's input quoted in an error message: its first 64 characters, so a refusal never
/// carries a large request back in its status.
pub(super) fn quoted(input: &str) -> String {
    format!("{:?}", input.chars().take(64).collect::<String>())
}

/// `login@hub`, an account of another hub: its login there and the hub.
pub(super) fn remote_login(name: &str) -> Result<(String, HubName), Status> {
    let refuse = |why: String| Status::invalid_argument(format!("remote_login {}: {why}", quoted(name)));
    let (login, hub) = name.rsplit_once('@').ok_or_else(|| refuse("expected login@hub".into()))?;
    if login.is_empty() || login.contains('@') {
        return Err(refuse("expected login@hub".into()));
    }
    let hub = HubName::new(hub).map_err(|e| refuse(e.to_string()))?;
    Ok((login.to_owned(), hub))
}

/// `hub` must be one of this hub's configured federation peers: a remote login names another
/// hub, and only a listed peer can ever receive the room's copy.
pub(super) fn federation_peer(board: &Board, hub: &HubName) -> Result<(), Status> {
    if board.this_hub() == Some(hub) {
        return Err(Status::invalid_argument(format!(
            "remote_login names this hub ({hub}): invite its accounts by account_id"
        )));
    }
    if !board.is_peer(hub) {
        let peers: Vec<String> = board.peers().iter().map(|p| p.name.to_string()).collect();
        let listed = if peers.is_empty() { "none".to_owned() } else { peers.join(", ") };
        return Err(Status::invalid_argument(format!(
            "remote_login names hub {hub}, which is not a federation peer of this hub (peers: {listed})"
        )));
    }
    Ok(())
}

/// The name of an account's facility as users see it: a remote professional's facility names
/// its hub too (「群馬中央病院（gunma）」).
pub(super) fn facility_name(hub: &impl HubView, account: &Account) -> String {
    match &account.kind {
        AccountKind::Professional { facility, .. } => {
            shown(hub.facility(*facility)).map(|f| f.name).unwrap_or_default()
        }
        AccountKind::Remote { hub: home, facility_name, .. } => format!("{facility_name}（{home}）"),
        AccountKind::Family { .. } | AccountKind::Operator => String::new(),
    }
}

/// A person as lists show them (room members, connection requests): kind, profession, the
/// facility's own name and, for an account of another hub, that hub (empty: this hub).
pub(super) struct Person {
    pub kind: pb::AccountKind,
    pub profession: pb::Profession,
    pub facility: String,
    pub hub: String,
}

pub(super) fn person(hub: &impl HubView, account: &Account) -> Person {
    let (kind, profession, _) = account_kind(Some(&account.kind));
    let (facility, home) = match &account.kind {
        AccountKind::Remote { hub: home, facility_name, .. } => (facility_name.clone(), home.to_string()),
        _ => (facility_name(hub, account), String::new()),
    };
    Person { kind, profession, facility, hub: home }
}

/// A post as members see it: with its author's name, kind, profession and facility.
pub(super) fn post_view(hub: &impl HubView, p: Post) -> pb::Post {
    let author = shown(hub.account(p.author));
    let (kind, profession, _) = account_kind(author.as_ref().map(|a| &a.kind));
    let facility = author.as_ref().map(|a| facility_name(hub, a)).unwrap_or_default();
    // Inside `Api::query`: a file that could not be read fails the whole answer there.
    let files = attachments::of_post(hub, p.room, p.seq).unwrap_or_default();
    let attachments = files.iter().map(|a| attachment_view(hub, a)).collect();
    pb::Post {
        seq: p.seq,
        author_id: p.author.0,
        author_name: author.map(|a| a.display_name).unwrap_or_default(),
        author_kind: kind as i32,
        author_profession: profession as i32,
        author_facility: facility,
        text: p.text,
        reply_to: p.reply_to,
        mention_ids: p.mentions.into_iter().map(|m| m.0).collect(),
        posted_at: Some(timestamp(p.posted_at_ms)),
        edited: !p.deleted && !p.history.is_empty(),
        deleted: p.deleted,
        ack_ids: p.acks.into_iter().map(|a| a.0).collect(),
        attachments,
    }
}

/// An attachment as its readers see it.
pub(super) fn attachment_view(hub: &impl HubView, a: &Attachment) -> pb::Attachment {
    let (room, seq) = a.post.map_or((0, 0), |(room, seq)| (room.0, seq));
    // Inside `Api::query`: a record that could not be read fails the whole answer there.
    let available = attachments::availability(hub, a, attachments::Variant::Original).ok().flatten();
    let (arriving_from_hub, unavailable_reason) = match available {
        Some(attachments::Availability::Arriving(from)) => (from.to_string(), String::new()),
        Some(attachments::Availability::Failed { from, reason }) => (String::new(), format!("{from}: {reason}")),
        _ => Default::default(),
    };
    pb::Attachment {
        id: a.id.0,
        name: a.name.clone(),
        content_type: a.content_type.clone(),
        size: a.size,
        sha256: a.blob.to_string(),
        has_thumbnails: a.thumbnails.is_some(),
        uploader_id: a.uploader.0,
        uploaded_at: Some(timestamp(a.uploaded_at_ms)),
        room_id: room,
        seq,
        arriving_from_hub,
        unavailable_reason,
    }
}

pub(super) fn point_from(p: &pb::GeoPoint) -> GeoPoint {
    GeoPoint { lat_e6: p.lat_e6, lon_e6: p.lon_e6 }
}

pub(super) fn profile_from(p: pb::FacilityProfile) -> FacilityProfile {
    FacilityProfile {
        address: p.address,
        phone: p.phone,
        location: p.location.as_ref().map(point_from),
        services: p.services,
        accepting_new_patients: p.accepting_new_patients,
        note: p.note,
    }
}

/// A facility as the resource map shows it, marked with its hub (empty: this hub), with its
/// distance from the search point, if any.
pub(super) fn facility_view(found: Found) -> pb::Facility {
    let Found { facility: f, hub, distance_m } = found;
    let p = f.profile;
    pb::Facility {
        facility_id: f.id.0,
        name: f.name,
        kind: facility_kind_to(f.kind) as i32,
        municipality: f.municipality,
        profile: Some(pb::FacilityProfile {
            address: p.address,
            phone: p.phone,
            location: p.location.map(|l| pb::GeoPoint { lat_e6: l.lat_e6, lon_e6: l.lon_e6 }),
            services: p.services,
            accepting_new_patients: p.accepting_new_patients,
            note: p.note,
        }),
        distance_m,
        hub: hub.map(|h| h.to_string()).unwrap_or_default(),
        disaster_status: None,
    }
}

/// A care request's kind a client sent: unspecified or unknown values are refused.
pub fn care_request_kind_from(kind: i32) -> Result<RequestKind, Status> {
    match kizuna_proto::care_requests::CareRequestKind::try_from(kind) {
        Ok(kizuna_proto::care_requests::CareRequestKind::Admission) => Ok(RequestKind::Admission),
        Ok(kizuna_proto::care_requests::CareRequestKind::Discharge) => Ok(RequestKind::Discharge),
        Ok(kizuna_proto::care_requests::CareRequestKind::HomeVisit) => Ok(RequestKind::HomeVisit),
        Ok(kizuna_proto::care_requests::CareRequestKind::Collaboration) => Ok(RequestKind::Collaboration),
        _ => Err(Status::invalid_argument("kind must be admission, discharge, home visit or collaboration")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_facility_on_the_map_is_marked_with_its_hub() {
        let facility = Facility {
            id: FacilityId(1 << 63),
            name: "前橋訪問看護".into(),
            kind: FacilityKind::VisitingNursingStation,
            municipality: "前橋市".into(),
            status: FacilityStatus::Approved,
            profile: Default::default(),
        };
        let hub = Some(HubName::new("gunma").unwrap());
        let theirs = facility_view(Found { facility: facility.clone(), hub, distance_m: Some(800) });
        assert_eq!((theirs.hub.as_str(), theirs.distance_m), ("gunma", Some(800)));
        let ours = facility_view(Found { facility, hub: None, distance_m: None });
        assert_eq!(ours.hub, "");
    }
}
