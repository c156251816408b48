//! Phone videos carry where they were recorded, and a patient's home must not travel with them.
//! MP4, MOV and 3GP files (ISO base media boxes) keep it in their `moov` box: `udta/©xyz`
//! (Android, older iPhones), `udta/loci` (3GPP), and QuickTime metadata `meta/keys` +
//! `meta/ilst` under a key such as `com.apple.quicktime.location.ISO6709`.
//!
//! Those values are overwritten in place with spaces (text) or zeros, keeping every box's size,
//! so no offset in the file changes (sample tables point into `mdat` by absolute offset) and the
//! video plays as before. Only `moov` is read into memory, never the media data. WebM keeps no
//! location in its usual form and is stored as sent.

use std::io::{Read, Seek, SeekFrom, Write};

/// A `moov` larger than this is not a phone video's (its media data is elsewhere): refused
/// rather than read into memory.
const MAX_MOOV_BYTES: u64 = 64 << 20;

/// Boxes whose children are boxes, on the way to the location.
const CONTAINERS: [&[u8; 4]; 4] = [b"moov", b"udta", b"trak", b"meta"];

/// Blanks the recording location in the video `file` of `len` bytes; how many values it
/// blanked.
pub fn remove_location(file: &mut (impl Read + Write + Seek), len: u64) -> std::io::Result<usize> {
    let Some((offset, size)) = find_top_level(file, len, b"moov")? else { return Ok(0) };
    if size > MAX_MOOV_BYTES {
        return Err(std::io::Error::other(format!("a moov box of {size} bytes")));
    }
    let mut moov = vec![0; size as usize];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut moov)?;
    let blanked = blank_in(&mut moov, 0, false);
    if blanked > 0 {
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(&moov)?;
        file.flush()?;
    }
    Ok(blanked)
}

/// The offset and size of the first top-level box of type `kind`, reading headers only.
fn find_top_level(file: &mut (impl Read + Seek), len: u64, kind: &[u8; 4]) -> std::io::Result<Option<(u64, u64)>> {
    let mut at = 0u64;
    while at + 8 <= len {
        let mut header = [0u8; 16];
        file.seek(SeekFrom::Start(at))?;
        let n = file.read(&mut header)?;
        let Some((size, _)) = box_size(&header[..n], len - at) else { return Ok(None) };
        if &header[4..8] == kind {
            return Ok(Some((at, size)));
        }
        at += size;
    }
    Ok(None)
}

/// A box's total size and header length from its first bytes (`room`: bytes left in its
/// parent); None when malformed.
fn box_size(header: &[u8], room: u64) -> Option<(u64, usize)> {
    let short = u64::from(u32::from_be_bytes(header.get(..4)?.try_into().ok()?));
    let (size, header_len) = match short {
        0 => (room, 8),
        1 => (u64::from_be_bytes(header.get(8..16)?.try_into().ok()?), 16),
        n => (n, 8),
    };
    (size >= header_len as u64 && size <= room).then_some((size, header_len))
}

/// The children of the box body `buf[start..]`: (type, body start, body end).
fn children(buf: &[u8], start: usize) -> Vec<([u8; 4], usize, usize)> {
    let mut out = Vec::new();
    let mut at = start;
    while at + 8 <= buf.len() {
        let Some((size, header_len)) = box_size(&buf[at..], (buf.len() - at) as u64) else { break };
        let kind = [buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]];
        out.push((kind, at + header_len, at + size as usize));
        at += size as usize;
    }
    out
}

/// Blanks location values among the children of the body at `buf[start..]` (of a `meta` box
/// when `in_meta`); how many.
fn blank_in(buf: &mut [u8], start: usize, in_meta: bool) -> usize {
    let boxes = children(buf, start);
    let location_keys = boxes.iter().find(|(k, ..)| k == b"keys").map(|&(_, s, e)| location_key_indexes(&buf[s..e]));
    let mut blanked = 0;
    for (kind, body, end) in boxes {
        match &kind {
            b"\xa9xyz" | b"loci" => {
                buf[body..end].fill(0);
                blanked += 1;
            }
            b"ilst" if in_meta => blanked += blank_items(&mut buf[body..end], location_keys.as_deref().unwrap_or(&[])),
            b"meta" => {
                let first_child = meta_body(&buf[body..end], body);
                blanked += blank_in(&mut buf[..end], first_child, true);
            }
            k if CONTAINERS.contains(&k) => blanked += blank_in(&mut buf[..end], body, false),
            _ => {}
        }
    }
    blanked
}

/// Where a `meta` box's children start: ISO `meta` is a full box (4 bytes of version and
/// flags first), QuickTime's is not (its first child, `hdlr`, follows at once).
fn meta_body(body: &[u8], start: usize) -> usize {
    if body.get(4..8) == Some(b"hdlr") { start } else { start + 4 }
}

/// The 1-based indexes of the `keys` entries that name a location.
fn location_key_indexes(keys: &[u8]) -> Vec<u32> {
    // A full box: version and flags, an entry count, then (size, namespace, name) entries.
    let mut out = Vec::new();
    let mut at = 8;
    let mut index = 1;
    while at + 8 <= keys.len() {
        let size = u32::from_be_bytes([keys[at], keys[at + 1], keys[at + 2], keys[at + 3]]) as usize;
        if size < 8 || at + size > keys.len() {
            break;
        }
        if keys[at + 8..at + size].windows(8).any(|w| w.eq_ignore_ascii_case(b"location")) {
            out.push(index);
        }
        at += size;
        index += 1;
    }
    out
}

/// Zeroes the values of the `ilst` items whose key is a location (an item's type is its key's
/// index), and of `©xyz` items.
fn blank_items(ilst: &mut [u8], location_keys: &[u32]) -> usize {
    let mut blanked = 0;
    for (kind, body, end) in children(ilst, 0) {
        if kind == *b"\xa9xyz" || location_keys.contains(&u32::from_be_bytes(kind)) {
            ilst[body..end].fill(0);
            blanked += 1;
        }
    }
    blanked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        [&((body.len() + 8) as u32).to_be_bytes()[..], kind, body].concat()
    }

    const WHERE: &[u8] = b"+35.6895+139.6917+040.000/";

    /// An Android-style MP4: the location in `moov/udta/©xyz`, media data after `moov`.
    fn android() -> Vec<u8> {
        let xyz = boxed(b"\xa9xyz", &[&[0, WHERE.len() as u8, 0x15, 0xc7][..], WHERE].concat());
        let moov = boxed(b"moov", &[boxed(b"mvhd", &[0; 100]), boxed(b"udta", &xyz)].concat());
        [boxed(b"ftyp", b"isom\0\0\0\0isommp42"), moov, boxed(b"mdat", &[7; 1000])].concat()
    }

    /// An iPhone-style MOV: QuickTime metadata with a location key, `mdat` before `moov`.
    fn iphone() -> Vec<u8> {
        let key = |name: &[u8]| boxed(b"mdta", name);
        let keys = boxed(
            b"keys",
            &[
                &[0u8; 4][..],
                &2u32.to_be_bytes(),
                &key(b"com.apple.quicktime.make"),
                &key(b"com.apple.quicktime.location.ISO6709"),
            ]
            .concat(),
        );
        let data = |value: &[u8]| boxed(b"data", &[&[0, 0, 0, 1, 0, 0, 0, 0][..], value].concat());
        let ilst = boxed(
            b"ilst",
            &[boxed(&1u32.to_be_bytes(), &data(b"Apple")), boxed(&2u32.to_be_bytes(), &data(WHERE))].concat(),
        );
        let meta = boxed(b"meta", &[boxed(b"hdlr", &[0; 25]), keys, ilst].concat());
        let moov = boxed(b"moov", &[boxed(b"mvhd", &[0; 100]), meta].concat());
        [boxed(b"ftyp", b"qt  \0\0\0\0qt  "), boxed(b"wide", b""), boxed(b"mdat", &[7; 1000]), moov].concat()
    }

    fn cleaned(bytes: &[u8]) -> (Vec<u8>, usize) {
        let mut file = std::io::Cursor::new(bytes.to_vec());
        let n = remove_location(&mut file, bytes.len() as u64).unwrap();
        (file.into_inner(), n)
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn an_android_videos_location_is_blanked_in_place() {
        let video = android();
        assert!(contains(&video, WHERE));
        let (clean, n) = cleaned(&video);
        assert_eq!((n, clean.len()), (1, video.len()), "one value, no size change");
        assert!(!contains(&clean, WHERE));
        assert_eq!(clean[clean.len() - 1000..], video[video.len() - 1000..], "the media data is untouched");
    }

    #[test]
    fn an_iphone_videos_location_key_is_blanked_and_others_stay() {
        let video = iphone();
        let (clean, n) = cleaned(&video);
        assert_eq!((n, clean.len()), (1, video.len()));
        assert!(!contains(&clean, WHERE));
        assert!(contains(&clean, b"Apple"), "other metadata stays");
        assert!(contains(&clean, b"com.apple.quicktime.location.ISO6709"), "the key's name is no location");
    }

    #[test]
    fn a_video_without_location_or_with_broken_boxes_is_left_alone() {
        let plain =
            [boxed(b"ftyp", b"isom"), boxed(b"moov", &boxed(b"mvhd", &[0; 100])), boxed(b"mdat", &[1; 10])].concat();
        assert_eq!(cleaned(&plain), (plain.clone(), 0));
        let mut broken = android();
        broken.truncate(40);
        let (clean, n) = cleaned(&broken);
        assert_eq!((clean, n), (broken, 0), "nothing is written to a file it cannot read");
    }
}
