//! The text the post index is built from: normalised text and its character bigrams (see
//! `search.rs`). A leaf: the in-memory view and the store index with it, search queries it.

use std::collections::BTreeSet;

/// Folds the differences users do not mean: full-width ASCII (ＡＢＣ１２３) to half-width,
/// ASCII to lower case, and runs of white space to one space.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        };
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.extend(c.to_lowercase());
    }
    out
}

/// The distinct character bigrams of a normalised text (spaces included: they separate).
pub fn bigrams(normalized: &str) -> BTreeSet<String> {
    let chars: Vec<char> = normalized.chars().collect();
    chars.windows(2).map(|w| w.iter().collect()).collect()
}

/// Bits a bigram gets in a [`filter_of`]: with [`PROBES`] probes about 1 % of the bigrams a
/// post lacks look present, and a query of three bigrams (four characters) matches a post
/// without them about once in a million.
const BITS_PER_GRAM: usize = 10;
/// Bits set (and tested) per bigram: ~ln 2 · [`BITS_PER_GRAM`].
const PROBES: u64 = 7;
/// The smallest filter, so a short text still has room for its few bigrams.
const MIN_FILTER_BYTES: usize = 8;

/// A post's bigrams as a Bloom filter: the search index keeps one per post (in one pair,
/// instead of a pair per bigram) and a search tests the query's bigrams against it. A filter
/// never misses a bigram it was made of; it may claim one it was not (the text decides). The
/// bits depend on the bigrams only, through a fixed hash, so every replica and every later
/// build sets the same ones. Empty when there is no bigram.
pub fn filter_of(grams: &BTreeSet<String>) -> Vec<u8> {
    if grams.is_empty() {
        return Vec::new();
    }
    let mut filter = vec![0u8; (grams.len() * BITS_PER_GRAM).div_ceil(8).max(MIN_FILTER_BYTES)];
    for gram in grams {
        for bit in probes(hash(gram), filter.len()) {
            filter[bit / 8] |= mask(bit);
        }
    }
    filter
}

/// The bigrams of a query, hashed once for testing many filters against them.
#[derive(Debug, Clone)]
pub struct FilterProbe {
    hashes: Vec<u64>,
}

impl FilterProbe {
    pub fn of(grams: &BTreeSet<String>) -> Self {
        Self { hashes: grams.iter().map(|gram| hash(gram)).collect() }
    }

    /// Whether the text `filter` was made of may hold every one of the bigrams (true for none).
    pub fn may_be_in(&self, filter: &[u8]) -> bool {
        self.hashes
            .iter()
            .all(|&h| !filter.is_empty() && probes(h, filter.len()).all(|bit| filter[bit / 8] & mask(bit) != 0))
    }
}

/// The 64-bit hash a bigram's bits come from: FNV-1a, then a finaliser that spreads its bits
/// (FNV's low bits vary little over two characters).
fn hash(gram: &str) -> u64 {
    use std::hash::Hasher;
    let mut fnv = fnv::FnvHasher::default();
    fnv.write(gram.as_bytes());
    spread(fnv.finish())
}

/// The bits of the bigram of hash `h` in a filter of `bytes` bytes: double hashing
/// (Kirsch–Mitzenmacher).
fn probes(h: u64, bytes: usize) -> impl Iterator<Item = usize> {
    let bits = (bytes * 8) as u64;
    let (first, step) = (h & 0xffff_ffff, (h >> 32) | 1);
    (0..PROBES).map(move |i| (first.wrapping_add(i.wrapping_mul(step)) % bits) as usize)
}

/// Bit `bit` of a filter within its byte.
fn mask(bit: usize) -> u8 {
    1 << (bit % 8)
}

/// SplitMix64's finaliser: every input bit moves about half of the output bits.
fn spread(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grams(text: &str) -> BTreeSet<String> {
        bigrams(&normalize(text))
    }

    #[test]
    fn a_filter_holds_every_bigram_it_was_made_of() {
        let post = "訪問看護 本日14時 SpO2 94%、在宅酸素を2Lへ増量。ご家族へ説明済み。";
        let filter = filter_of(&grams(post));
        for gram in grams(post) {
            assert!(FilterProbe::of(&BTreeSet::from([gram.clone()])).may_be_in(&filter), "{gram}");
        }
        assert!(FilterProbe::of(&grams("在宅酸素")).may_be_in(&filter));
        assert!(FilterProbe::of(&BTreeSet::new()).may_be_in(&filter), "no bigram asked for: nothing rules it out");
    }

    #[test]
    fn a_filter_rules_out_most_texts_it_does_not_hold() {
        let filter = filter_of(&grams("訪問看護 本日14時 SpO2 94%、在宅酸素を2Lへ増量。"));
        let others =
            ["褥瘡の処置", "服薬カレンダー", "血糖値の推移", "退院前カンファレンス", "ケアプラン変更", "往診の予定"];
        let claimed = others.iter().filter(|q| FilterProbe::of(&grams(q)).may_be_in(&filter)).count();
        assert_eq!(claimed, 0, "none of {others:?} is in the post");
    }

    #[test]
    fn no_bigram_no_filter_and_an_empty_filter_holds_nothing() {
        assert!(filter_of(&grams("酸")).is_empty());
        assert!(!FilterProbe::of(&grams("酸素")).may_be_in(&[]));
    }

    #[test]
    fn the_bits_are_fixed_by_the_bigrams_alone() {
        // Replicas and later builds must set these very bits: a change of hash, probe count
        // or size rule breaks every stored filter (it needs a new apply version).
        assert_eq!(filter_of(&grams("在宅酸素")), [133, 65, 128, 142, 98, 44, 48, 18]);
    }
}
