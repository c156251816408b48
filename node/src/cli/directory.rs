//! `kizuna map …`: the resource map (医療介護資源マップ) from the terminal.

use anyhow::Context;
use clap::Subcommand;
use kizuna_proto::common::{Facility, FacilityProfile, GeoPoint};
use kizuna_proto::directory::directory_service_client::DirectoryServiceClient;
use kizuna_proto::directory::*;

use super::Target;
use super::labels;
use super::user::{authed, channel, facility_kind, idempotency_key, token};

#[derive(Subcommand)]
pub enum MapCommand {
    /// Search the region's facilities.
    Search {
        /// Comma-separated kinds: clinic, hospital, pharmacy, dental-clinic, visiting-nursing-station…
        #[arg(long, value_delimiter = ',')]
        kind: Vec<String>,
        #[arg(long, default_value = "")]
        municipality: String,
        /// A service tag, e.g. 在宅酸素.
        #[arg(long, default_value = "")]
        service: String,
        /// Words in the name, address, services or note.
        #[arg(long, default_value = "")]
        words: String,
        /// Only facilities taking new patients.
        #[arg(long)]
        accepting: bool,
        /// "latitude,longitude": nearest first, within --within-km.
        #[arg(long)]
        near: Option<String>,
        #[arg(long, default_value_t = 10.0)]
        within_km: f64,
    },
    /// A facility's page, with its staff (none shown for another hub's facility).
    Show { id: u64 },
    /// Share this hub's map with a peer hub, or stop (operators).
    Share {
        /// The peer hub's name.
        peer: String,
        /// Stop sharing (withdraws this hub's facilities from the peer's map).
        #[arg(long)]
        stop: bool,
    },
    /// Replace a facility's profile (its admins, or an operator).
    Profile {
        id: u64,
        #[arg(long, default_value = "")]
        address: String,
        #[arg(long, default_value = "")]
        phone: String,
        /// "latitude,longitude".
        #[arg(long)]
        at: Option<String>,
        /// Comma-separated service tags.
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        #[arg(long)]
        accepting: bool,
        #[arg(long, default_value = "")]
        note: String,
    },
}

/// "36.5551,139.8828" → micro-degrees.
fn point(text: &str) -> anyhow::Result<GeoPoint> {
    let (lat, lon) = text.split_once(',').context("a point is \"latitude,longitude\"")?;
    let e6 = |v: &str| -> anyhow::Result<i32> {
        let degrees: f64 = v.trim().parse().with_context(|| format!("{v:?} is not a number"))?;
        Ok((degrees * 1e6).round() as i32)
    };
    Ok(GeoPoint { lat_e6: e6(lat)?, lon_e6: e6(lon)? })
}

/// A facility's first line: id, name, municipality, kind, its hub if another, distance, whether
/// it takes new patients.
fn heading(f: &Facility) -> String {
    let accepting = f.profile.as_ref().is_some_and(|p| p.accepting_new_patients);
    let accepting = if accepting { "  新規受入可" } else { "" };
    let distance = f.distance_m.map(|d| format!("  {:.1} km", d as f64 / 1000.0)).unwrap_or_default();
    let (kind, hub) = (labels::facility_kind(f.kind), labels::hub(&f.hub));
    format!("#{} {}（{}・{kind}）{hub}{distance}{accepting}", f.facility_id, f.name, f.municipality)
}

fn print_entry(f: &Facility) {
    let p = f.profile.clone().unwrap_or_default();
    println!("{}", heading(f));
    if !p.address.is_empty() || !p.phone.is_empty() {
        println!("    {} {}", p.address, p.phone);
    }
    if !p.services.is_empty() {
        println!("    {}", p.services.join("・"));
    }
}

pub async fn run(target: &Target, cmd: MapCommand) -> anyhow::Result<()> {
    let t = token()?;
    let mut c = DirectoryServiceClient::new(channel(target).await?);
    match cmd {
        MapCommand::Search { kind, municipality, service, words, accepting, near, within_km } => {
            let kinds = kind.iter().map(|k| facility_kind(k).map(|k| k as i32)).collect::<anyhow::Result<_>>()?;
            let req = SearchFacilitiesRequest {
                kinds,
                municipality: Some(municipality).filter(|m| !m.is_empty()),
                service: Some(service).filter(|s| !s.is_empty()),
                words,
                accepting_only: accepting,
                near: near.as_deref().map(point).transpose()?,
                radius_m: (within_km * 1000.0).round() as u64,
                ..Default::default()
            };
            let found = c.search_facilities(authed(req, &t)?).await?.into_inner().facilities;
            if found.is_empty() {
                println!("(no facility matches)");
            }
            found.iter().for_each(print_entry);
        }
        MapCommand::Show { id } => {
            let reply = c.get_facility(authed(GetFacilityRequest { facility_id: id }, &t)?).await?.into_inner();
            let page = reply.page.unwrap_or_default();
            if let Some(f) = &page.facility {
                print_entry(f);
                let note = f.profile.as_ref().map(|p| p.note.as_str()).unwrap_or_default();
                if !note.is_empty() {
                    println!("    {note}");
                }
            }
            for s in &page.staff {
                println!("  {} {}（account {}）", s.display_name, labels::profession(s.profession), s.account_id);
            }
            println!("connect: kizuna connect ACCOUNT   request: kizuna request send --to {id} …");
        }
        MapCommand::Profile { id, address, phone, at, services, accepting, note } => {
            let profile = FacilityProfile {
                address,
                phone,
                location: at.as_deref().map(point).transpose()?,
                services,
                accepting_new_patients: accepting,
                note,
            };
            let key = idempotency_key();
            let req = UpdateFacilityProfileRequest { idempotency_key: key, facility_id: id, profile: Some(profile) };
            let page = c.update_facility_profile(authed(req, &t)?).await?.into_inner().page.unwrap_or_default();
            page.facility.iter().for_each(print_entry);
        }
        MapCommand::Share { peer, stop } => {
            let req = ShareDirectoryRequest { idempotency_key: idempotency_key(), peer, share: !stop };
            let shared = c.share_directory(authed(req, &t)?).await?.into_inner().shared_with;
            match shared.is_empty() {
                true => println!("資源マップを共有している連携先: なし"),
                false => println!("資源マップを共有している連携先: {}", shared.join(", ")),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_facility_of_another_hub_shows_its_hub() {
        let f = Facility {
            facility_id: 9,
            name: "前橋訪問看護".into(),
            municipality: "前橋市".into(),
            hub: "gunma".into(),
            ..Facility::default()
        };
        assert!(heading(&f).contains("前橋訪問看護（前橋市・") && heading(&f).contains("［gunma］"), "{}", heading(&f));
        let ours = Facility { hub: String::new(), ..f };
        assert!(!heading(&ours).contains('［'), "{}", heading(&ours));
    }
}
