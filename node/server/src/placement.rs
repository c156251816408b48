//! The placement rule for a hub's voters: losing any one region must keep a quorum.
//!
//! A hub is safe when at least three regions hold voters and no region holds half of them or
//! more. With fewer regions, or one region that heavy, a single region's blackout or network
//! cut can take the quorum with it.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "voters sit in only {regions} region(s) ({detail}); at least 3 regions must hold voters so that losing one keeps a quorum"
    )]
    TooFewRegions { regions: usize, detail: String },
    #[error(
        "region {region:?} holds {in_region} of {voters} voters; a region must hold less than half, or its loss stops the hub"
    )]
    RegionTooHeavy { region: String, in_region: usize, voters: usize },
}

/// Checks the voters' regions (one entry per voter).
pub fn check<'a>(voter_regions: impl IntoIterator<Item = &'a str>) -> Result<(), PlacementError> {
    let mut per_region: BTreeMap<&str, usize> = BTreeMap::new();
    let mut voters = 0;
    for region in voter_regions {
        *per_region.entry(region).or_default() += 1;
        voters += 1;
    }
    if per_region.len() < 3 {
        let detail = per_region.iter().map(|(r, n)| format!("{r}: {n}")).collect::<Vec<_>>().join(", ");
        return Err(PlacementError::TooFewRegions { regions: per_region.len(), detail });
    }
    if let Some((region, &in_region)) = per_region.iter().max_by_key(|(_, n)| **n)
        && in_region * 2 >= voters
    {
        return Err(PlacementError::RegionTooHeavy { region: (*region).to_owned(), in_region, voters });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_regions_one_voter_each_is_safe() {
        assert_eq!(check(["a", "b", "c"]), Ok(()));
    }

    #[test]
    fn tochigi_shape_is_safe() {
        assert_eq!(check(["utsunomiya", "oyama", "tokyo", "osaka"]), Ok(()));
        assert_eq!(check(["utsunomiya", "utsunomiya", "oyama", "tokyo", "osaka"]), Ok(()));
    }

    #[test]
    fn two_regions_are_refused() {
        let e = check(["a", "a", "b"]).unwrap_err();
        assert!(matches!(e, PlacementError::TooFewRegions { regions: 2, .. }));
        assert!(e.to_string().contains("at least 3 regions"), "{e}");
    }

    #[test]
    fn a_region_with_half_the_voters_is_refused() {
        let e = check(["a", "a", "b", "c"]).unwrap_err();
        assert_eq!(e, PlacementError::RegionTooHeavy { region: "a".into(), in_region: 2, voters: 4 });
        assert!(e.to_string().contains("2 of 4 voters"), "{e}");
    }

    #[test]
    fn a_single_node_is_refused() {
        assert!(check(["dev"]).is_err());
    }
}
