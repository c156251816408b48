//! What an uploaded file is, and photos made safe to share.
//!
//! Pure: bytes in, bytes out, no I/O. The type of an upload is decided from its first bytes
//! ([`detect`]), never from the client's file name or claimed content type.
//!
//! # What the hub accepts
//!
//! | kind | content type | `photo` |
//! |---|---|---|
//! | JPEG, PNG, WebP, GIF | `image/jpeg`, `image/png`, `image/webp`, `image/gif` | yes |
//! | phone videos | `video/mp4` (also M4V), `video/quicktime`, `video/webm`, `video/3gpp`, `video/3gpp2` | no |
//! | PDF | `application/pdf` | no |
//! | Office (OOXML) | docx, xlsx, pptx (`application/vnd.openxmlformats-officedocument.*`) | no |
//! | Office (legacy OLE) | `application/msword`, `application/vnd.ms-excel`, `application/vnd.ms-powerpoint` | no |
//!
//! Everything else is refused with [`MediaError::NotAllowed`], naming what it looks like:
//! plain ZIPs, executables, scripts, HTML, other images and unknown bytes (`"unknown"`, e.g.
//! plain text). In particular:
//!
//! - **HEIC/HEIF and AVIF photos are refused.** The `image` crate cannot decode them, so the
//!   hub could not remove their metadata; storing them would share the patient's location.
//!   iPhones send JPEG with Settings → Camera → Formats → "Most Compatible".
//! - **Legacy Office files** are told apart only by reading their compound file's directory,
//!   which may lie beyond [`SNIFF_BYTES`]; from a short head they look like a generic
//!   `application/x-ole-storage` (which also covers MSI installers) and are refused. Passing
//!   more bytes (or the whole file) to [`detect`] lets them through.
//!
//! # Photos
//!
//! Every photo is decoded and re-encoded ([`make_safe_photo`]), so nothing but the pixels
//! survives: no EXIF (GPS), XMP, IPTC, comments, PNG text chunks or ICC profiles. The EXIF
//! orientation is applied first, so the copy is upright without it. Videos, PDFs and Office
//! files are stored as uploaded (their metadata is not touched here).
use std::borrow::Cow;
use std::io::Cursor;

use fast_image_resize::{ResizeOptions, Resizer};
use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::metadata::Orientation;
use image::{AnimationDecoder, ColorType, DynamicImage, Frame, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

/// What the hub accepts, detected from the file's first bytes (never the client's claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    pub content_type: &'static str,
    /// A photo must go through [`make_safe_photo`] before it is stored.
    pub photo: bool,
}

/// How many leading bytes `detect` needs at most (except to tell legacy Office files apart,
/// see the module documentation).
pub const SNIFF_BYTES: usize = 8192;

/// A photo made safe: re-encoded without any metadata (EXIF, GPS, XMP, IPTC, PNG text chunks),
/// turned upright by its EXIF orientation, plus thumbnails.
#[derive(Debug, Clone)]
pub struct SafePhoto {
    /// The photo in its own format (JPEG at quality 90, PNG, lossless WebP, GIF).
    pub original: Vec<u8>,
    pub content_type: &'static str,
    /// JPEG, at most [`SMALL_EDGE`] pixels on the longer side.
    pub small: Vec<u8>,
    /// JPEG, at most [`MEDIUM_EDGE`] pixels on the longer side.
    pub medium: Vec<u8>,
}

/// Longer side of the small thumbnail, pixels.
pub const SMALL_EDGE: u32 = 320;
/// Longer side of the medium thumbnail, pixels.
pub const MEDIUM_EDGE: u32 = 1280;
/// The most pixels a photo (or all frames of a GIF together) may have: a 64-megapixel camera's
/// full resolution. Checked from the header before decoding, against decompression bombs.
pub const MAX_PIXELS: u64 = 64_000_000;

const JPEG_QUALITY: u8 = 90;
const THUMBNAIL_QUALITY: u8 = 80;
/// NeuQuant's speed for GIF frames (1 best … 30 fastest); 10 is `image`'s default.
const GIF_SPEED: i32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The file is not of an accepted type; the string is what it looks like
    /// (a content type such as `"application/x-executable"`, `"empty"` or `"unknown"`).
    #[error("{}", not_allowed_message(.0))]
    NotAllowed(String),
    /// The photo could not be decoded or re-encoded.
    #[error("the photo could not be read: {0}")]
    BadPhoto(String),
    /// The photo has more than [`MAX_PIXELS`] pixels (all frames of a GIF together).
    #[error("the photo is too large ({width}×{height} pixels)")]
    TooLarge { width: u32, height: u32 },
}

fn not_allowed_message(what: &str) -> String {
    match what {
        "image/heif" | "image/avif" => format!(
            "{what} photos are not accepted: their metadata (such as the location) cannot be \
             removed; send them as JPEG (iPhone: Settings → Camera → Formats → Most Compatible)"
        ),
        "empty" => "the file is empty".to_owned(),
        _ => format!("files of this type are not accepted ({what})"),
    }
}

/// Decides what an upload is from its first bytes ([`SNIFF_BYTES`] suffice).
pub fn detect(head: &[u8]) -> Result<Detected, MediaError> {
    if head.is_empty() {
        return Err(MediaError::NotAllowed("empty".to_owned()));
    }
    // infer does not know 3GPP, the format of older and Japanese feature phones' videos.
    let looks_like = three_gpp(head).or_else(|| infer::get(head).map(|kind| kind.mime_type())).unwrap_or("unknown");
    allowed(looks_like).ok_or_else(|| MediaError::NotAllowed(looks_like.to_owned()))
}

/// The allow-list: the content type the hub stores for what infer reports, or `None`.
fn allowed(looks_like: &'static str) -> Option<Detected> {
    let photo = |content_type| Detected { content_type, photo: true };
    let file = |content_type| Detected { content_type, photo: false };
    match looks_like {
        "image/jpeg" | "image/png" | "image/webp" | "image/gif" => Some(photo(looks_like)),
        // M4V is Apple's MP4; browsers play it as video/mp4.
        "video/x-m4v" => Some(file("video/mp4")),
        "video/mp4" | "video/quicktime" | "video/webm" | "video/3gpp" | "video/3gpp2" => Some(file(looks_like)),
        "application/pdf"
        | "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        | "application/vnd.openxmlformats-officedocument.presentationml.presentation"
        | "application/msword"
        | "application/vnd.ms-excel"
        | "application/vnd.ms-powerpoint" => Some(file(looks_like)),
        _ => None,
    }
}

/// 3GPP/3GPP2 by the ISO-BMFF `ftyp` box's major brand (`3gp4`, `3gp5`, `3g2a`, …).
fn three_gpp(head: &[u8]) -> Option<&'static str> {
    if head.get(4..8)? != b"ftyp" {
        return None;
    }
    match head.get(8..11)? {
        b"3gp" => Some("video/3gpp"),
        b"3g2" => Some("video/3gpp2"),
        _ => None,
    }
}

/// Re-encodes a photo without metadata, upright, with its thumbnails. `detected` is what
/// [`detect`] said of the same bytes.
pub fn make_safe_photo(bytes: &[u8], detected: Detected) -> Result<SafePhoto, MediaError> {
    let format = photo_format(detected)?;
    let (original, first) = if format == ImageFormat::Gif {
        safe_gif(bytes)?
    } else {
        let image = upright(decode(bytes, format)?, bytes);
        (encode_original(&image, format)?, image)
    };
    let flat = flatten_on_white(&first);
    Ok(SafePhoto {
        original,
        content_type: detected.content_type,
        small: thumbnail(&flat, SMALL_EDGE)?,
        medium: thumbnail(&flat, MEDIUM_EDGE)?,
    })
}

fn photo_format(detected: Detected) -> Result<ImageFormat, MediaError> {
    match (detected.photo, detected.content_type) {
        (true, "image/jpeg") => Ok(ImageFormat::Jpeg),
        (true, "image/png") => Ok(ImageFormat::Png),
        (true, "image/webp") => Ok(ImageFormat::WebP),
        (true, "image/gif") => Ok(ImageFormat::Gif),
        (_, other) => Err(MediaError::BadPhoto(format!("{other} is not a photo"))),
    }
}

/// The decoder limits: the pixel budget is checked from the header first; these bound what
/// the decoder may allocate in any case (16-bit RGBA is 8 bytes a pixel).
fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    limits
}

fn reader(bytes: &[u8], format: ImageFormat) -> ImageReader<Cursor<&[u8]>> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits());
    reader
}

/// Reads the dimensions from the header and refuses more than [`MAX_PIXELS`] before
/// anything the size of the image is allocated.
fn checked_dimensions(bytes: &[u8], format: ImageFormat) -> Result<(u32, u32), MediaError> {
    let (width, height) = reader(bytes, format).into_dimensions().map_err(bad_photo)?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(MediaError::TooLarge { width, height });
    }
    Ok((width, height))
}

fn decode(bytes: &[u8], format: ImageFormat) -> Result<DynamicImage, MediaError> {
    // The JPEG decoder fills a cut-off scan with grey; an interrupted upload is refused instead.
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(MediaError::BadPhoto("the JPEG is cut off (no end marker)".to_owned()));
    }
    let (width, height) = checked_dimensions(bytes, format)?;
    reader(bytes, format).decode().map_err(|error| match error {
        ImageError::Limits(_) => MediaError::TooLarge { width, height },
        other => bad_photo(other),
    })
}

/// Whether the JPEG's segments and scans lead to its end marker (EOI). Data after it, such as
/// phones' trailers and MPF second images, does not matter.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut at = 2; // after SOI
    loop {
        at = match (bytes.get(at), bytes.get(at + 1)) {
            (None, _) | (Some(0xFF), None) => return false,
            (Some(0xFF), Some(0xD9)) => return true,
            // Fill bytes before a marker, and markers without a length.
            (Some(0xFF), Some(0xFF)) => at + 1,
            (Some(0xFF), Some(0x01 | 0xD0..=0xD7)) => at + 2,
            (Some(0xFF), Some(&marker)) => match segment_end(bytes, at) {
                Some(end) if marker == 0xDA => entropy_end(bytes, end),
                Some(end) => end,
                None => return false,
            },
            // Stray bytes between segments: decoders skip them (libjpeg warns), so do we.
            (Some(_), _) => at + 1,
        };
    }
}

/// The end of the marker segment at `at`, from its big-endian length (which counts itself).
fn segment_end(bytes: &[u8], at: usize) -> Option<usize> {
    let length = bytes.get(at + 2..at + 4)?;
    Some(at + 2 + usize::from(u16::from_be_bytes([length[0], length[1]])))
}

/// Where a scan's entropy-coded data ends: at the first marker that is neither a stuffed
/// 0xFF00 nor a restart marker (those belong to the data).
fn entropy_end(bytes: &[u8], from: usize) -> usize {
    let data = bytes.get(from..).unwrap_or_default();
    data.windows(2)
        .position(|pair| pair[0] == 0xFF && !matches!(pair[1], 0x00 | 0xD0..=0xD7))
        .map_or(bytes.len(), |offset| from + offset)
}

fn bad_photo(error: ImageError) -> MediaError {
    MediaError::BadPhoto(error.to_string())
}

/// Turns the image as its EXIF orientation says; a photo without (readable) EXIF is upright.
fn upright(mut image: DynamicImage, bytes: &[u8]) -> DynamicImage {
    if let Some(orientation) = exif_orientation(bytes) {
        image.apply_orientation(orientation);
    }
    image
}

fn exif_orientation(bytes: &[u8]) -> Option<Orientation> {
    let exif = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)).ok()?;
    let field = exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)?;
    let value = u8::try_from(field.value.get_uint(0)?).ok()?;
    Orientation::from_exif(value)
}

/// Whether `bytes` carry EXIF metadata (which may hold where a photo was taken). Photos this hub
/// makes safe carry none; one from another hub that does is refused.
pub fn carries_exif(bytes: &[u8]) -> bool {
    exif::Reader::new().read_from_container(&mut Cursor::new(bytes)).is_ok()
}

/// The encoders write pixels only (JPEG: a JFIF header; PNG: no text chunks; WebP: no EXIF
/// or XMP chunk), so the copy carries no metadata.
fn encode_original(image: &DynamicImage, format: ImageFormat) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::new();
    let written = match format {
        ImageFormat::Jpeg => {
            jpeg_ready(image).write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY))
        }
        ImageFormat::Png => image.write_with_encoder(PngEncoder::new(&mut out)),
        // image's WebP encoder is lossless only (pure Rust, no libwebp).
        ImageFormat::WebP => webp_ready(image).write_with_encoder(WebPEncoder::new_lossless(&mut out)),
        other => return Err(MediaError::BadPhoto(format!("cannot encode {other:?}"))),
    };
    written.map_err(bad_photo)?;
    Ok(out)
}

/// JPEG holds grey or RGB, 8 bits (a JPEG decodes to one of them; CMYK becomes RGB).
fn jpeg_ready(image: &DynamicImage) -> Cow<'_, DynamicImage> {
    match image.color() {
        ColorType::L8 | ColorType::Rgb8 => Cow::Borrowed(image),
        _ => Cow::Owned(DynamicImage::ImageRgb8(image.to_rgb8())),
    }
}

/// The WebP encoder takes 8-bit colour, with or without alpha.
fn webp_ready(image: &DynamicImage) -> Cow<'_, DynamicImage> {
    match image.color() {
        ColorType::L8 | ColorType::La8 | ColorType::Rgb8 | ColorType::Rgba8 => Cow::Borrowed(image),
        color if color.has_alpha() => Cow::Owned(DynamicImage::ImageRgba8(image.to_rgba8())),
        _ => Cow::Owned(DynamicImage::ImageRgb8(image.to_rgb8())),
    }
}

/// A GIF re-encoded frame by frame (its comments and application extensions other than the
/// loop are dropped; the animation is kept). GIF has no EXIF, so no orientation. Returns the
/// new GIF and its first frame for the thumbnails.
fn safe_gif(bytes: &[u8]) -> Result<(Vec<u8>, DynamicImage), MediaError> {
    let (width, height) = checked_dimensions(bytes, ImageFormat::Gif)?;
    let frames = gif_frames(bytes, width, height)?;
    let first = frames
        .first()
        .map(|frame| DynamicImage::ImageRgba8(frame.buffer().clone()))
        .ok_or_else(|| MediaError::BadPhoto("a GIF without frames".to_owned()))?;
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new_with_speed(&mut out, GIF_SPEED);
        encoder.set_repeat(Repeat::Infinite).map_err(bad_photo)?;
        encoder.encode_frames(frames).map_err(bad_photo)?;
    }
    Ok((out, first))
}

/// Decodes the frames while their pixels, all together, stay within [`MAX_PIXELS`]: each
/// frame is a full canvas, so a long animation is a bomb of its own.
fn gif_frames(bytes: &[u8], width: u32, height: u32) -> Result<Vec<Frame>, MediaError> {
    let mut decoder = GifDecoder::new(Cursor::new(bytes)).map_err(bad_photo)?;
    image::ImageDecoder::set_limits(&mut decoder, limits()).map_err(bad_photo)?;
    let canvas = u64::from(width) * u64::from(height);
    let mut frames = Vec::new();
    for frame in decoder.into_frames() {
        if canvas * (frames.len() as u64 + 1) > MAX_PIXELS {
            return Err(MediaError::TooLarge { width, height });
        }
        frames.push(frame.map_err(bad_photo)?);
    }
    Ok(frames)
}

/// Thumbnails are JPEG, which has no alpha: transparent pixels become white (not black).
fn flatten_on_white(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over_white = |c: u8| {
            let (c, a) = (u16::from(c), u16::from(a));
            // (c·a + 255·(255−a)) / 255, rounded; never above 255.
            ((c * a + 255 * (255 - a) + 127) / 255) as u8
        };
        image::Rgb([over_white(r), over_white(g), over_white(b)])
    })
}

/// A JPEG thumbnail fitting `edge` on the longer side, never larger than the image itself.
fn thumbnail(image: &RgbImage, edge: u32) -> Result<Vec<u8>, MediaError> {
    let (width, height) = fit(image.width(), image.height(), edge);
    let resized = if (width, height) == image.dimensions() {
        Cow::Borrowed(image)
    } else {
        Cow::Owned(resize(image, width, height)?)
    };
    let mut out = Vec::new();
    resized.write_with_encoder(JpegEncoder::new_with_quality(&mut out, THUMBNAIL_QUALITY)).map_err(bad_photo)?;
    Ok(out)
}

/// The size within `edge` on the longer side, keeping the aspect ratio; not upscaled.
fn fit(width: u32, height: u32, edge: u32) -> (u32, u32) {
    let longer = width.max(height);
    if longer <= edge {
        return (width, height);
    }
    let scale = |side: u32| {
        let scaled = (u64::from(side) * u64::from(edge) + u64::from(longer) / 2) / u64::from(longer);
        // At least a pixel: a 64-megapixel line is still a (thin) picture.
        u32::try_from(scaled).unwrap_or(edge).clamp(1, edge)
    };
    (scale(width), scale(height))
}

fn resize(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage, MediaError> {
    let mut resized = RgbImage::new(width, height);
    // Lanczos3 convolution, fast_image_resize's default: sharp thumbnails.
    Resizer::new()
        .resize(image, &mut resized, &ResizeOptions::new())
        .map_err(|error| MediaError::BadPhoto(format!("resizing: {error}")))?;
    Ok(resized)
}

#[cfg(test)]
mod tests;
