//! The JPEG decode core the direct pixel paths share: a self-contained stream in, RGB
//! at 1/`denominator` scale out, with the size checked before anything is allocated,
//! and the colour policy that decides whether the decoder applies the YCbCr transform.
//!
//! Why two policies: a TIFF tile's colour is what its Photometric tag says (libtiff
//! forces the decoder's colour space from it; SVS tiles carry no JFIF marker), while
//! DICOM converters are known to write `RGB` in PhotometricInterpretation over JFIF
//! YCbCr frames (the shared set does; libdicom#80, dicom-rs#829). There the stream's own
//! JFIF or Adobe marker wins, and the header only decides for a bare stream.

use turbojpeg::{
    Colorspace, DecompressHeader, Decompressor, Image, PixelFormat, ScalingFactor, Subsamp,
    YuvImage,
};

use super::error::SlideError;
use super::planes::interleave;

/// How the colour transform of a stream is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColourPolicy {
    /// The container's flag decides (TIFF): `rgb` means no transform, whatever the
    /// stream's markers say. Streams are built by `jpeg_tiles::assemble_stream`.
    TiffPhotometric { rgb: bool },
    /// A JFIF APP0 or Adobe APP14 marker in the stream decides; without either, the
    /// container's flag does (`fallback_rgb`: no transform).
    StreamFirst { fallback_rgb: bool },
}

/// Whether a JPEG stream has a JFIF APP0 or an Adobe APP14 marker before its frame header.
pub fn has_colour_marker(stream: &[u8]) -> bool {
    let mut at = 2usize;
    if !stream.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    loop {
        let Some(segment) = stream.get(at..at.saturating_add(4)) else {
            return false;
        };
        if segment[0] != 0xFF {
            return false;
        }
        let (marker, len) = (
            segment[1],
            usize::from(u16::from_be_bytes([segment[2], segment[3]])),
        );
        let body = stream.get(at + 4..).unwrap_or_default();
        match marker {
            0xE0 if body.starts_with(b"JFIF\0") => return true,
            0xEE if body.starts_with(b"Adobe") => return true,
            // Frame header, scan, or an end: no more application markers come.
            0xC0..=0xCF | 0xDA | 0xD9 => return false,
            _ => {}
        }
        at = at.saturating_add(2 + len);
    }
}

/// The self-contained stream to decode for `frame` under `policy` (`tables`: a TIFF's
/// shared JPEGTables, spliced in under the TIFF policy).
pub fn prepare_stream(
    policy: ColourPolicy,
    frame: &[u8],
    tables: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    match policy {
        ColourPolicy::TiffPhotometric { rgb } => {
            crate::formats::tiled_tiff::tiles::assemble_stream(frame, tables, rgb, out)
        }
        ColourPolicy::StreamFirst { fallback_rgb } => stream_first(frame, fallback_rgb, out),
    }
}

/// The stream to decode for `frame` under a [`ColourPolicy::StreamFirst`] policy: the
/// frame itself when it has a colour marker, otherwise the frame with an Adobe APP14
/// marker stating the transform spliced in after SOI.
pub fn stream_first(frame: &[u8], fallback_rgb: bool, out: &mut Vec<u8>) {
    out.clear();
    if has_colour_marker(frame) || !frame.starts_with(&[0xFF, 0xD8]) {
        out.extend_from_slice(frame);
        return;
    }
    out.extend_from_slice(&[0xFF, 0xD8]);
    out.extend_from_slice(&adobe_marker(fallback_rgb));
    out.extend_from_slice(frame.get(2..).unwrap_or_default());
}

/// Adobe APP14: version 100, flags 0, transform 0 (none, RGB) or 1 (YCbCr).
pub fn adobe_marker(rgb: bool) -> [u8; 16] {
    let transform = if rgb { 0 } else { 1 };
    [
        0xFF, 0xEE, 0x00, 0x0E, b'A', b'd', b'o', b'b', b'e', 0x00, 0x64, 0, 0, 0, 0, transform,
    ]
}

/// A decoder set to scale by 1/`denominator` (one per reader thread).
pub fn scaled_decompressor(denominator: u32) -> Result<Decompressor, SlideError> {
    let mut decompressor = Decompressor::new()
        .map_err(|e| SlideError::Internal(format!("cannot start the JPEG decoder: {e}")))?;
    decompressor
        .set_scaling_factor(ScalingFactor::new(1, denominator as usize))
        .map_err(|e| SlideError::Internal(format!("JPEG scaling: {e}")))?;
    Ok(decompressor)
}

/// A tile decoder: the scaled decompressor and the planes an RGB stream is decoded to
/// (one per reader thread, so the planes are reused from tile to tile).
pub struct TileDecoder {
    decompressor: Decompressor,
    planes: Vec<u8>,
    /// A whole tile's RGB, for a stream the library decodes itself into row slices.
    rgb: Vec<u8>,
}

impl TileDecoder {
    /// A decoder set to scale by 1/`denominator`.
    pub fn new(denominator: u32) -> Result<Self, SlideError> {
        Ok(Self {
            decompressor: scaled_decompressor(denominator)?,
            planes: Vec::new(),
            rgb: Vec::new(),
        })
    }
}

/// Decodes `stream` at 1/`denominator` into `rgb` (resized to fit), after checking that
/// the scaled size is `expected`. Errors are plain text for the caller's corrupt error.
pub fn decode_scaled(
    decoder: &mut TileDecoder,
    stream: &[u8],
    denominator: u32,
    expected: (u64, u64),
    rgb: &mut Vec<u8>,
) -> Result<(), String> {
    let (header, (w, h)) = checked_size(decoder, stream, denominator, expected)?;
    rgb.resize(w * h * 3, 0);
    decompress_checked(decoder, &header, stream, rgb.as_mut_slice(), (w, h), w * 3)
}

/// Decodes `stream` at 1/`denominator` straight into `pixels`, rows `pitch` bytes apart
/// (a tile's place in a bigger image: no copy), after the same size check as
/// [`decode_scaled`]. `pixels` must hold `pitch * (h - 1) + w * 3` bytes.
pub fn decode_scaled_into(
    decoder: &mut TileDecoder,
    stream: &[u8],
    denominator: u32,
    expected: (u64, u64),
    pixels: &mut [u8],
    pitch: usize,
) -> Result<(), String> {
    let (header, size) = checked_size(decoder, stream, denominator, expected)?;
    decompress_checked(decoder, &header, stream, pixels, size, pitch)
}

/// Decodes `stream` at 1/`denominator` into `rows`, one slice of `w * 3` bytes per pixel
/// row (a tile's part of each row of a wider image, which threads fill side by side),
/// after the same size check as [`decode_scaled`]. An RGB 4:4:4 stream's planes are
/// interleaved straight into the rows; any other goes through one whole-tile buffer.
pub fn decode_scaled_rows(
    decoder: &mut TileDecoder,
    stream: &[u8],
    denominator: u32,
    expected: (u64, u64),
    rows: &mut [&mut [u8]],
) -> Result<(), String> {
    let (header, (width, height)) = checked_size(decoder, stream, denominator, expected)?;
    if rows.len() != height || rows.iter().any(|row| row.len() != width * 3) {
        return Err(format!(
            "{} row slices for {width} x {height} pixels",
            rows.len()
        ));
    }
    if planar(&header) {
        let (r, g, b) = decode_planes(decoder, stream, (width, height))?;
        for (y, row) in rows.iter_mut().enumerate() {
            let line = y * width..(y + 1) * width;
            interleave(&r[line.clone()], &g[line.clone()], &b[line], row);
        }
        return Ok(());
    }
    let mut rgb = std::mem::take(&mut decoder.rgb);
    rgb.resize(width * height * 3, 0);
    let made = decompress_checked(
        decoder,
        &header,
        stream,
        &mut rgb,
        (width, height),
        width * 3,
    );
    if made.is_ok() {
        for (row, decoded) in rows.iter_mut().zip(rgb.chunks_exact(width * 3)) {
            row.copy_from_slice(decoded);
        }
    }
    decoder.rgb = rgb;
    made
}

/// Whether a stream takes the planar path: RGB 4:4:4, untransformed and lossy (lossless
/// streams keep the library's own path: the planar one is only proven, and only needed,
/// on lossy ones).
fn planar(header: &DecompressHeader) -> bool {
    header.colorspace == Colorspace::RGB && header.subsamp == Subsamp::None && !header.is_lossless
}

/// The stream's header and its size at 1/`denominator`, read before anything is
/// allocated or decoded, refused unless the size is `expected`.
fn checked_size(
    decoder: &mut TileDecoder,
    stream: &[u8],
    denominator: u32,
    expected: (u64, u64),
) -> Result<(DecompressHeader, (usize, usize)), String> {
    let header = decoder
        .decompressor
        .read_header(stream)
        .map_err(|e| e.to_string())?;
    let scaled = header.scaled(ScalingFactor::new(1, denominator as usize));
    if (scaled.width as u64, scaled.height as u64) != expected {
        return Err(format!(
            "{} x {} pixels at 1/{denominator}, expected {} x {}",
            scaled.width, scaled.height, expected.0, expected.1
        ));
    }
    Ok((header, (expected.0 as usize, expected.1 as usize)))
}

/// The decompression itself, once the caller checked the stream's scaled size.
fn decompress_checked(
    decoder: &mut TileDecoder,
    header: &DecompressHeader,
    stream: &[u8],
    pixels: &mut [u8],
    (width, height): (usize, usize),
    pitch: usize,
) -> Result<(), String> {
    let needed = height.saturating_sub(1) * pitch + width * 3;
    if height == 0 || pitch < width * 3 || pixels.len() < needed {
        return Err(format!(
            "no room for {width} x {height} pixels ({} bytes, pitch {pitch})",
            pixels.len()
        ));
    }
    if planar(header) {
        return decompress_planar(
            decoder,
            stream,
            &mut pixels[..needed],
            (width, height),
            pitch,
        );
    }
    let image = Image {
        pixels: &mut pixels[..needed],
        width,
        pitch,
        height,
        format: PixelFormat::RGB,
    };
    decoder
        .decompressor
        .decompress(stream, image)
        .map_err(|e| e.to_string())
}

/// An RGB 4:4:4 stream (untransformed, as Aperio writes them) decoded as its three
/// component planes, with no colour conversion, then interleaved (`planes`): the same
/// samples libjpeg-turbo's scalar RGB-to-RGB copy would give, at a tenth of its cost.
fn decompress_planar(
    decoder: &mut TileDecoder,
    stream: &[u8],
    pixels: &mut [u8],
    (width, height): (usize, usize),
    pitch: usize,
) -> Result<(), String> {
    let (r, g, b) = decode_planes(decoder, stream, (width, height))?;
    for (y, row) in pixels.chunks_mut(pitch).take(height).enumerate() {
        let line = y * width..(y + 1) * width;
        interleave(
            &r[line.clone()],
            &g[line.clone()],
            &b[line],
            &mut row[..width * 3],
        );
    }
    Ok(())
}

/// The red, green and blue planes of a decoded tile.
type Planes<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// An RGB 4:4:4 stream's three component planes, decoded with no colour conversion into
/// the decoder's reused buffer.
fn decode_planes<'a>(
    decoder: &'a mut TileDecoder,
    stream: &[u8],
    (width, height): (usize, usize),
) -> Result<Planes<'a>, String> {
    let plane = width * height;
    if decoder.planes.len() < plane * 3 {
        decoder.planes.resize(plane * 3, 0);
    }
    let planes = &mut decoder.planes[..plane * 3];
    let yuv = YuvImage {
        pixels: &mut *planes,
        width,
        align: 1,
        height,
        subsamp: Subsamp::None,
    };
    decoder
        .decompressor
        .decompress_to_yuv(stream, yuv)
        .map_err(|e| e.to_string())?;
    let (r, rest) = planes.split_at(plane);
    let (g, b) = rest.split_at(plane);
    Ok((r, g, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_before_the_frame_header() {
        let mut jfif = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        jfif.extend_from_slice(b"JFIF\0");
        jfif.extend_from_slice(&[0; 9]);
        jfif.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x02]);
        assert!(has_colour_marker(&jfif));
        let bare = [0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x02, 0xFF, 0xC0, 0x00, 0x02];
        assert!(!has_colour_marker(&bare));
        let mut adobe = vec![0xFF, 0xD8];
        adobe.extend_from_slice(&adobe_marker(true));
        assert!(has_colour_marker(&adobe));
        assert!(!has_colour_marker(&[0xFF, 0xD8, 0xFF]));
    }

    /// A 16 x 16 orange stream with neither JFIF nor Adobe marker, its data not colour
    /// transformed (as an RGB DICOM frame would be): libjpeg-turbo writes RGB with an
    /// Adobe marker, which is cut out.
    fn bare_rgb_stream() -> Vec<u8> {
        let rgb: Vec<u8> = [230u8, 120, 20].repeat(16 * 16);
        let mut c = turbojpeg::Compressor::new().expect("compressor");
        c.set_colorspace(turbojpeg::Colorspace::RGB)
            .expect("colorspace");
        c.set_subsamp(turbojpeg::Subsamp::None).expect("subsamp");
        c.set_quality(95).expect("quality");
        let image = Image {
            pixels: rgb.as_slice(),
            width: 16,
            pitch: 48,
            height: 16,
            format: PixelFormat::RGB,
        };
        let jpeg = c.compress_to_vec(image).expect("compress");
        // Drop every APP0/APP14 segment.
        let mut out = vec![0xFF, 0xD8];
        let mut at = 2;
        while jpeg[at] == 0xFF && jpeg[at + 1] != 0xDA {
            let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
            if !matches!(jpeg[at + 1], 0xE0 | 0xEE) {
                out.extend_from_slice(&jpeg[at..at + 2 + len]);
            }
            at += 2 + len;
        }
        out.extend_from_slice(&jpeg[at..]);
        assert!(!has_colour_marker(&out));
        out
    }

    /// A tile decoded in place lands at its corner of a wider image, rows a pitch apart,
    /// leaving every byte around it alone; a destination too small is refused before
    /// any byte is written.
    #[test]
    fn a_tile_decodes_in_place_into_a_wider_image() {
        let stream = bare_rgb_stream();
        let mut single = Vec::new();
        let mut d = TileDecoder::new(1).unwrap();
        decode_scaled(&mut d, &stream, 1, (16, 16), &mut single).unwrap();
        let pitch = 40 * 3;
        let mut wide = vec![7u8; pitch * 20];
        let corner = (2 * 40 + 10) * 3;
        decode_scaled_into(&mut d, &stream, 1, (16, 16), &mut wide[corner..], pitch).unwrap();
        for y in 0..20 {
            for x in 0..40 {
                let at = (y * 40 + x) * 3;
                let inside = (2..18).contains(&y) && (10..26).contains(&x);
                let want: &[u8] = if inside {
                    let t = ((y - 2) * 16 + (x - 10)) * 3;
                    &single[t..t + 3]
                } else {
                    &[7, 7, 7]
                };
                assert_eq!(&wide[at..at + 3], want, "pixel {x},{y}");
            }
        }
        let mut short = vec![7u8; pitch * 15];
        assert!(decode_scaled_into(&mut d, &stream, 1, (16, 16), &mut short, pitch).is_err());
        assert!(short.iter().all(|&b| b == 7), "nothing written on refusal");
    }

    fn decode_centre(stream: &[u8]) -> [u8; 3] {
        let mut d = TileDecoder::new(1).expect("decompressor");
        let mut rgb = Vec::new();
        decode_scaled(&mut d, stream, 1, (16, 16), &mut rgb).expect("decode");
        [rgb[8 * 48 + 24], rgb[8 * 48 + 25], rgb[8 * 48 + 26]]
    }

    #[test]
    fn a_frame_without_markers_follows_the_photometric_interpretation() {
        let bare = bare_rgb_stream();
        let mut stream = Vec::new();
        let close = |p: [u8; 3], q: [u8; 3]| p.iter().zip(q).all(|(a, b)| a.abs_diff(b) <= 3);
        // PhotometricInterpretation RGB: no transform, the colour comes back.
        prepare_stream(
            ColourPolicy::StreamFirst { fallback_rgb: true },
            &bare,
            None,
            &mut stream,
        );
        let rgb = decode_centre(&stream);
        assert!(close(rgb, [230, 120, 20]), "{rgb:?}");
        // YBR: the decoder transforms, which on RGB data gives other colours.
        prepare_stream(
            ColourPolicy::StreamFirst {
                fallback_rgb: false,
            },
            &bare,
            None,
            &mut stream,
        );
        let ybr = decode_centre(&stream);
        assert!(!close(ybr, [230, 120, 20]), "{ybr:?}");
    }

    #[test]
    fn a_decoded_size_other_than_expected_is_refused_before_decoding() {
        let mut d = TileDecoder::new(1).expect("decompressor");
        let mut rgb = Vec::new();
        let err =
            decode_scaled(&mut d, &bare_rgb_stream(), 1, (32, 16), &mut rgb).expect_err("size");
        assert!(err.contains("expected 32 x 16"), "{err}");
        assert!(rgb.is_empty(), "nothing allocated");
    }

    /// A 37 x 29 pattern (neither side a whole number of blocks) encoded with `colorspace`.
    fn pattern_stream(colorspace: turbojpeg::Colorspace, subsamp: turbojpeg::Subsamp) -> Vec<u8> {
        let (w, h) = (37usize, 29usize);
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [(x * 7) as u8, (y * 9 + x) as u8, ((x * y) % 251) as u8]
            })
            .collect();
        let mut c = turbojpeg::Compressor::new().expect("compressor");
        c.set_colorspace(colorspace).expect("colorspace");
        c.set_subsamp(subsamp).expect("subsamp");
        c.set_quality(90).expect("quality");
        let image = Image {
            pixels: rgb.as_slice(),
            width: w,
            pitch: w * 3,
            height: h,
            format: PixelFormat::RGB,
        };
        c.compress_to_vec(image).expect("compress")
    }

    /// What libjpeg-turbo's own RGB output gives for `stream` at 1/`d`.
    fn library_rgb(stream: &[u8], d: u32) -> (usize, usize, Vec<u8>) {
        let mut plain = scaled_decompressor(d).expect("decompressor");
        let header = plain
            .read_header(stream)
            .expect("header")
            .scaled(ScalingFactor::new(1, d as usize));
        let mut rgb = vec![0u8; header.width * header.height * 3];
        let image = Image {
            pixels: rgb.as_mut_slice(),
            width: header.width,
            pitch: header.width * 3,
            height: header.height,
            format: PixelFormat::RGB,
        };
        plain.decompress(stream, image).expect("decode");
        (header.width, header.height, rgb)
    }

    /// An RGB 4:4:4 stream takes the planar path, which must give exactly the samples the
    /// library's RGB output does, at every scale and in place in a wider image; other
    /// streams (YCbCr) keep the library's path and agree with it too.
    #[test]
    fn the_planar_path_gives_the_librarys_pixels_at_every_scale() {
        use turbojpeg::{Colorspace, Subsamp};
        for (colorspace, subsamp) in [
            (Colorspace::RGB, Subsamp::None),
            (Colorspace::YCbCr, Subsamp::Sub2x2),
        ] {
            let stream = pattern_stream(colorspace, subsamp);
            for d in [1u32, 2, 4, 8] {
                let (w, h, want) = library_rgb(&stream, d);
                let mut decoder = TileDecoder::new(d).expect("decoder");
                let mut got = Vec::new();
                decode_scaled(&mut decoder, &stream, d, (w as u64, h as u64), &mut got)
                    .expect("decode");
                assert_eq!(got, want, "{colorspace:?} at 1/{d}");
                // In place, rows 5 bytes further apart than the tile's.
                let pitch = w * 3 + 5;
                let mut wide = vec![3u8; pitch * h];
                decode_scaled_into(
                    &mut decoder,
                    &stream,
                    d,
                    (w as u64, h as u64),
                    &mut wide,
                    pitch,
                )
                .expect("in place");
                for y in 0..h {
                    assert_eq!(
                        &wide[y * pitch..y * pitch + w * 3],
                        &want[y * w * 3..(y + 1) * w * 3]
                    );
                    assert_eq!(&wide[y * pitch + w * 3..(y + 1) * pitch], &[3u8; 5]);
                }
                // Into row slices: the tile's column of a wider image, cut row by row.
                let mut wide = vec![3u8; pitch * h];
                let mut rows: Vec<&mut [u8]> = wide
                    .chunks_exact_mut(pitch)
                    .map(|row| &mut row[5..5 + w * 3])
                    .collect();
                decode_scaled_rows(&mut decoder, &stream, d, (w as u64, h as u64), &mut rows)
                    .expect("rows");
                for y in 0..h {
                    let row = &wide[y * pitch..(y + 1) * pitch];
                    assert_eq!(&row[5..5 + w * 3], &want[y * w * 3..(y + 1) * w * 3]);
                    assert!(row[..5].iter().chain(&row[5 + w * 3..]).all(|&v| v == 3));
                }
                // Row slices of the wrong width or count are refused.
                let mut short = vec![0u8; w * 3 - 1];
                let mut bad: Vec<&mut [u8]> = vec![&mut short];
                assert!(
                    decode_scaled_rows(&mut decoder, &stream, d, (w as u64, h as u64), &mut bad)
                        .is_err()
                );
            }
        }
    }

    #[test]
    fn bare_stream_gets_the_fallback_transform() {
        let bare = [0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x02, 0xFF, 0xD9];
        let mut out = Vec::new();
        stream_first(&bare, true, &mut out);
        assert_eq!(&out[2..4], &[0xFF, 0xEE]);
        assert_eq!(out[17], 0, "RGB: no transform");
        assert_eq!(&out[18..], &bare[2..]);
        stream_first(&bare, false, &mut out);
        assert_eq!(out[17], 1);
        let mut jfif = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x07];
        jfif.extend_from_slice(b"JFIF\0");
        stream_first(&jfif, true, &mut out);
        assert_eq!(out, jfif, "a JFIF stream is left as it is");
    }
}
