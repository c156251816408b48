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
