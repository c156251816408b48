use std::io::Cursor;

use exif::experimental::Writer;
use exif::{Field, In, Rational, Tag, Value};
use image::{DynamicImage, GenericImageView, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

use super::*;

const RED: Rgb<u8> = Rgb([255, 0, 0]);
const BLUE: Rgb<u8> = Rgb([0, 0, 255]);

/// A 40×20 picture: the left half red, the right half blue (so a rotation shows).
fn halves(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, _| if x < width / 2 { RED } else { BLUE })
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn rationals(values: &[(u32, u32)]) -> Value {
    Value::Rational(values.iter().map(|&v| Rational::from(v)).collect())
}

fn field(tag: Tag, value: Value) -> Field {
    Field { tag, ifd_num: In::PRIMARY, value }
}

/// A TIFF-structured EXIF block: orientation 6 and a location in Tokyo.
fn exif_with_gps() -> Vec<u8> {
    let fields = [
        field(Tag::Orientation, Value::Short(vec![6])),
        field(Tag::GPSLatitudeRef, Value::Ascii(vec![b"N".to_vec()])),
        field(Tag::GPSLatitude, rationals(&[(35, 1), (41, 1), (2205, 100)])),
        field(Tag::GPSLongitudeRef, Value::Ascii(vec![b"E".to_vec()])),
        field(Tag::GPSLongitude, rationals(&[(139, 1), (41, 1), (3000, 100)])),
    ];
    let mut writer = Writer::new();
    for field in &fields {
        writer.push_field(field);
    }
    let mut tiff = Cursor::new(Vec::new());
    writer.write(&mut tiff, false).unwrap();
    tiff.into_inner()
}

/// Puts an APP1 "Exif" segment right after the JPEG's SOI marker, where cameras put it.
fn with_exif(jpeg: &[u8], tiff: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], [0xFF, 0xD8]);
    let length = u16::try_from(2 + 6 + tiff.len()).unwrap();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(tiff);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn read_exif(bytes: &[u8]) -> Result<exif::Exif, exif::Error> {
    exif::Reader::new().read_from_container(&mut Cursor::new(bytes))
}

fn has_no_exif(bytes: &[u8]) -> bool {
    read_exif(bytes).is_err() && !bytes.windows(6).any(|w| w == b"Exif\0\0")
}

fn geotagged_jpeg() -> Vec<u8> {
    let jpeg = encode(&DynamicImage::ImageRgb8(halves(40, 20)), ImageFormat::Jpeg);
    with_exif(&jpeg, &exif_with_gps())
}

fn safe(bytes: &[u8]) -> SafePhoto {
    let detected = detect(bytes).unwrap();
    assert!(detected.photo);
    make_safe_photo(bytes, detected).unwrap()
}

fn decoded(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).unwrap()
}

fn near(pixel: Rgba<u8>, colour: Rgb<u8>) -> bool {
    (0..3).all(|i| pixel.0[i].abs_diff(colour.0[i]) < 40)
}

/// A CRC-32 (as PNG chunks carry), so that hand-made headers pass the decoder's check.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// Inserts a chunk after IHDR (signature 8 bytes + IHDR 25 bytes).
fn png_with_chunk(png: &[u8], chunk: &[u8]) -> Vec<u8> {
    let mut out = png[..33].to_vec();
    out.extend_from_slice(chunk);
    out.extend_from_slice(&png[33..]);
    out
}

#[test]
fn geotagged_jpeg_loses_all_exif_and_is_turned_upright() {
    let input = geotagged_jpeg();
    let exif = read_exif(&input).unwrap();
    assert!(exif.get_field(Tag::GPSLatitude, In::PRIMARY).is_some(), "the input has GPS");
    assert!(exif.get_field(Tag::GPSLongitude, In::PRIMARY).is_some());

    let photo = safe(&input);

    assert_eq!(photo.content_type, "image/jpeg");
    for bytes in [&photo.original, &photo.small, &photo.medium] {
        assert!(has_no_exif(bytes));
        assert_eq!(decoded(bytes).dimensions(), (20, 40), "orientation 6 turns 40×20 upright");
    }
    // Orientation 6 is "rotate 90° clockwise": the left (red) half ends on top.
    let upright = decoded(&photo.original);
    assert!(near(upright.get_pixel(10, 5), RED));
    assert!(near(upright.get_pixel(10, 35), BLUE));
}

#[test]
fn a_photo_with_exif_is_told_from_a_safe_one() {
    let input = geotagged_jpeg();
    assert!(carries_exif(&input), "another hub's photo with its location is refused");
    assert!(!carries_exif(&safe(&input).original), "what a hub shares carries none");
}

#[test]
fn png_text_chunks_are_dropped_and_alpha_thumbnails_are_white() {
    let transparent = RgbaImage::from_pixel(30, 10, Rgba([0, 0, 0, 0]));
    let png = encode(&DynamicImage::ImageRgba8(transparent), ImageFormat::Png);
    let input = png_with_chunk(&png, &png_chunk(b"tEXt", b"Comment\0home of Tanaka-san"));
    assert!(input.windows(6).any(|w| w == b"Tanaka"));

    let photo = safe(&input);

    assert_eq!(photo.content_type, "image/png");
    assert!(!photo.original.windows(4).any(|w| w == b"tEXt"));
    assert!(!photo.original.windows(6).any(|w| w == b"Tanaka"));
    assert_eq!(decoded(&photo.original).dimensions(), (30, 10));
    let thumbnail = decoded(&photo.small);
    assert!(near(thumbnail.get_pixel(15, 5), Rgb([255, 255, 255])));
}

#[test]
fn webp_and_gif_are_reencoded() {
    let picture = DynamicImage::ImageRgb8(halves(40, 20));
    for format in [ImageFormat::WebP, ImageFormat::Gif] {
        let photo = safe(&encode(&picture, format));
        assert_eq!(photo.content_type, format.to_mime_type());
        assert_eq!(decoded(&photo.original).dimensions(), (40, 20));
        assert_eq!(decoded(&photo.medium).dimensions(), (40, 20));
    }
}

#[test]
fn thumbnails_fit_their_edges() {
    let large = DynamicImage::ImageRgb8(halves(2000, 1000));
    let photo = safe(&encode(&large, ImageFormat::Jpeg));

    assert_eq!(decoded(&photo.original).dimensions(), (2000, 1000));
    assert_eq!(decoded(&photo.small).dimensions(), (SMALL_EDGE, 160));
    assert_eq!(decoded(&photo.medium).dimensions(), (MEDIUM_EDGE, 640));
}

#[test]
fn thumbnails_are_not_upscaled() {
    let photo = safe(&encode(&DynamicImage::ImageRgb8(halves(500, 300)), ImageFormat::Png));

    assert_eq!(decoded(&photo.small).dimensions(), (SMALL_EDGE, 192));
    assert_eq!(decoded(&photo.medium).dimensions(), (500, 300));
}

#[test]
fn fit_keeps_the_aspect_ratio_and_at_least_a_pixel() {
    assert_eq!(fit(100, 50, 320), (100, 50));
    assert_eq!(fit(3000, 4000, 1280), (960, 1280));
    assert_eq!(fit(64_000_000, 1, 320), (320, 1));
}

#[test]
fn truncated_jpeg_is_a_bad_photo() {
    let jpeg = encode(&DynamicImage::ImageRgb8(halves(40, 20)), ImageFormat::Jpeg);
    let detected = detect(&jpeg).unwrap();

    // Cut in the headers, in the image data, and just before the end marker: the decoder
    // would fill a cut-off scan with grey, so this must be caught before.
    for cut in [4, jpeg.len() / 4, jpeg.len() / 2, jpeg.len() - 2] {
        let result = make_safe_photo(&jpeg[..cut], detected);
        assert!(matches!(result, Err(MediaError::BadPhoto(_))), "cut at {cut}: {result:?}");
    }
}

#[test]
fn data_after_the_end_of_a_jpeg_is_accepted() {
    // Phones append trailers (Samsung) and second images (MPF) after the first end marker.
    let mut jpeg = encode(&DynamicImage::ImageRgb8(halves(40, 20)), ImageFormat::Jpeg);
    jpeg.extend_from_slice(b"SEFHtrailer");

    let photo = safe(&jpeg);

    assert!(!photo.original.windows(7).any(|w| w == b"trailer"));
}

#[test]
fn jpeg_end_is_found_through_stuffed_and_restart_bytes() {
    let scan_then_end = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xD9];
    assert!(jpeg_is_complete(&scan_then_end));
    assert!(!jpeg_is_complete(&scan_then_end[..13]));
    assert!(!jpeg_is_complete(&scan_then_end[..5]));
}

#[test]
fn a_huge_declared_size_is_too_large_without_decoding() {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, deflate, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
    // The header is read up to the first image data; a bomb's few KiB of zlib would follow.
    png.extend_from_slice(&png_chunk(b"IDAT", b"\x78\x9c\x03\x00\x00\x00\x00\x01"));
    png.extend_from_slice(&png_chunk(b"IEND", b""));

    let detected = detect(&png).unwrap();
    let result = make_safe_photo(&png, detected);

    assert!(matches!(result, Err(MediaError::TooLarge { width: 100_000, height: 100_000 })), "{result:?}");
}

#[test]
fn only_photos_are_made_safe() {
    let pdf = Detected { content_type: "application/pdf", photo: false };
    assert!(matches!(make_safe_photo(b"%PDF-1.7", pdf), Err(MediaError::BadPhoto(_))));
}

fn detected(head: &[u8]) -> (&'static str, bool) {
    let detected = detect(head).unwrap();
    (detected.content_type, detected.photo)
}

fn refused(head: &[u8]) -> String {
    match detect(head) {
        Err(MediaError::NotAllowed(looks_like)) => looks_like,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// An ISO-BMFF `ftyp` box with the given major brand, as MP4, MOV, 3GP and HEIC start.
fn ftyp(brand: &[u8; 4], compatible: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(16 + compatible.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(b"ftyp");
    out.extend_from_slice(brand);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(compatible);
    out.extend_from_slice(&[0, 0, 0, 8]);
    out.extend_from_slice(b"free");
    out
}

#[test]
fn detects_accepted_types() {
    let png = encode(&DynamicImage::ImageRgb8(halves(4, 4)), ImageFormat::Png);
    assert_eq!(detected(&png), ("image/png", true));
    assert_eq!(detected(&geotagged_jpeg()), ("image/jpeg", true));
    assert_eq!(detected(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), ("application/pdf", false));
    assert_eq!(detected(&ftyp(b"isom", b"isomiso2avc1mp41")), ("video/mp4", false));
    assert_eq!(detected(&ftyp(b"qt  ", b"qt  ")), ("video/quicktime", false));
    assert_eq!(detected(&ftyp(b"3gp4", b"isom3gp4")), ("video/3gpp", false));
}

#[test]
fn refuses_everything_else() {
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0>\0".to_vec();
    elf.resize(64, 0); // an ELF header is 64 bytes; infer wants all of it
    assert_eq!(refused(&elf), "application/x-executable");
    assert_eq!(refused(b"<html><body>hello</body></html>"), "text/html");
    assert_eq!(refused(b"#!/bin/sh\nrm -rf /\n"), "text/x-shellscript");
    assert_eq!(refused(b"PK\x03\x04\x14\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"), "application/zip");
    assert_eq!(refused(b"just some notes"), "unknown");
    assert_eq!(refused(b""), "empty");
}

#[test]
fn heic_is_refused_with_advice() {
    let error = detect(&ftyp(b"heic", b"mif1heic")).unwrap_err();

    assert!(matches!(&error, MediaError::NotAllowed(looks_like) if looks_like == "image/heif"));
    assert!(error.to_string().contains("Most Compatible"));
}

#[test]
fn stray_bytes_between_jpeg_segments_are_skipped() {
    let with_stray = [0xFF, 0xD8, 0x00, 0x00, 0xFF, 0xFE, 0x00, 0x03, 0x41, 0xFF, 0xD9];
    assert!(jpeg_is_complete(&with_stray));
    assert!(!jpeg_is_complete(&with_stray[..9]));
}
