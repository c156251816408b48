//! The resource map: profiles kept by facility admins, searches by kind, service, words,
//! acceptance and distance, a facility's page, and who may see the map.

use super::*;
use crate::directory::{self, FacilityProfile, GeoPoint, Search};

/// 宇都宮駅 and points a few km away.
const UTSUNOMIYA_STATION: GeoPoint = GeoPoint { lat_e6: 36_559_000, lon_e6: 139_898_000 };

fn profile(at: Option<GeoPoint>, services: &[&str], accepting: bool) -> FacilityProfile {
    FacilityProfile {
        address: "宇都宮市".into(),
        phone: "028-000-0000".into(),
        location: at,
        services: services.iter().map(|s| (*s).to_owned()).collect(),
        accepting_new_patients: accepting,
        note: "土日も相談可".into(),
    }
}

fn ids(found: &[directory::Found]) -> Vec<FacilityId> {
    found.iter().map(|f| f.facility.id).collect()
}

#[test]
fn admins_keep_their_profile_and_professionals_search_the_map() {
    let (mut hub, op, clinic, people) = Hub::setup(2);
    let (station, ns) = facility(&mut hub, op, "ひばり訪問看護", FacilityKind::VisitingNursingStation, 1);
    let (pharmacy, ph) = facility(&mut hub, op, "みどり薬局", FacilityKind::Pharmacy, 1);
    let near = GeoPoint { lat_e6: 36_565_000, lon_e6: 139_900_000 }; // ~0.7 km
    let far = GeoPoint { lat_e6: 36_580_000, lon_e6: 139_990_000 }; // ~8.6 km
    hub.ok(
        ns[0],
        Command::UpdateFacilityProfile {
            facility: station,
            profile: profile(Some(far), &["看取り", "24時間対応"], true),
        },
    );
    hub.ok(
        ph[0],
        Command::UpdateFacilityProfile { facility: pharmacy, profile: profile(Some(near), &["在宅訪問"], false) },
    );
    hub.ok(people[0], Command::UpdateFacilityProfile { facility: clinic, profile: profile(None, &["在宅酸素"], true) });

    // Only the facility's admins (or an operator) edit it.
    let stranger =
        hub.run(Some(ph[0]), Command::UpdateFacilityProfile { facility: station, profile: profile(None, &[], false) });
    assert!(matches!(stranger, Err(DomainError::PermissionDenied(_))), "{stranger:?}");
    let member = hub
        .run(Some(people[1]), Command::UpdateFacilityProfile { facility: clinic, profile: profile(None, &[], false) });
    assert!(matches!(member, Err(DomainError::PermissionDenied(_))), "{member:?}");

    let me = people[1];
    let all = |s: Search| directory::search(&hub.state, me, &s, 100).unwrap();
    assert_eq!(all(Search::default()).len(), 3);
    // Nearest first, within the radius, with distances.
    let nearby = all(Search { near: Some((UTSUNOMIYA_STATION, 10_000)), ..Search::default() });
    assert_eq!(ids(&nearby), vec![pharmacy, station]);
    let d = nearby[0].distance_m.unwrap();
    assert!((500..1_000).contains(&d), "{d} m");
    assert_eq!(ids(&all(Search { near: Some((UTSUNOMIYA_STATION, 2_000)), ..Search::default() })), vec![pharmacy]);
    // Kind, service, words (Japanese substrings), acceptance.
    assert_eq!(ids(&all(Search { kinds: vec![FacilityKind::Pharmacy], ..Search::default() })), vec![pharmacy]);
    assert_eq!(ids(&all(Search { service: "看取り".into(), ..Search::default() })), vec![station]);
    assert_eq!(ids(&all(Search { words: "24時間".into(), ..Search::default() })), vec![station]);
    assert_eq!(ids(&all(Search { words: "ひばり 土日".into(), ..Search::default() })), vec![station]);
    let accepting = all(Search { accepting_only: true, ..Search::default() });
    assert_eq!(accepting.len(), 2);
    assert!(!ids(&accepting).contains(&pharmacy));

    // A facility's page lists its active staff, to connect with.
    let (found, staff) = directory::page(&hub.state, me, station).unwrap();
    let f = found.facility;
    assert_eq!(f.profile.services, vec!["看取り".to_owned(), "24時間対応".to_owned()]);
    assert_eq!(staff.iter().map(|a| a.id).collect::<Vec<_>>(), ns);
    assert_eq!(directory::page(&hub.state, me, FacilityId(999)).unwrap_err(), not_found("facility"));
}

#[test]
fn pending_facilities_are_not_on_the_map_and_bad_profiles_change_nothing() {
    let (mut hub, op, clinic, people) = Hub::setup(1);
    let register =
        Command::RegisterFacility {
            name: "未承認".into(), kind: FacilityKind::Clinic, municipality: "鹿沼市".into()
        };
    let pending = match hub.ok(op, register) {
        Outcome::Facility(f) => f,
        o => panic!("{o:?}"),
    };
    let found = directory::search(&hub.state, people[0], &Search::default(), 100).unwrap();
    assert_eq!(ids(&found), vec![clinic]);
    assert_eq!(directory::page(&hub.state, people[0], pending).unwrap_err(), not_found("facility"));
    let bad = [
        FacilityProfile { location: Some(GeoPoint { lat_e6: 91_000_000, lon_e6: 0 }), ..FacilityProfile::default() },
        FacilityProfile { phone: "call me".into(), ..FacilityProfile::default() },
        FacilityProfile { services: vec![String::new()], ..FacilityProfile::default() },
        FacilityProfile { services: vec!["x".into(); 31], ..FacilityProfile::default() },
        FacilityProfile { address: "長".repeat(201), ..FacilityProfile::default() },
    ];
    for profile in bad {
        let e = hub.run(Some(people[0]), Command::UpdateFacilityProfile { facility: clinic, profile });
        assert!(matches!(e, Err(DomainError::InvalidArgument(_))), "{e:?}");
    }
    let bad_point = Search { near: Some((GeoPoint { lat_e6: 0, lon_e6: 181_000_000 }, 1_000)), ..Search::default() };
    assert!(matches!(directory::search(&hub.state, people[0], &bad_point, 10), Err(DomainError::InvalidArgument(_))));
}

#[test]
fn distances_are_right_on_the_ground() {
    // 宇都宮駅 → 小山駅 is about 26 km.
    let oyama_station = GeoPoint { lat_e6: 36_314_000, lon_e6: 139_806_000 };
    let d = UTSUNOMIYA_STATION.distance_m(oyama_station);
    assert!((26_000..29_000).contains(&d), "{d} m");
    assert_eq!(UTSUNOMIYA_STATION.distance_m(UTSUNOMIYA_STATION), 0);
}
