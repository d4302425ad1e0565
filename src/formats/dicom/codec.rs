//! Which frame codec an instance's transfer syntax and pixel description mean, and
//! whether the pixel path decodes it.
//!
//! Decided once per instance from its header (a series may mix syntaxes from one instance
//! to the next), so the storage side (which byte ranges to fetch) and the engine (how to
//! decode each frame) agree. Anything else stays `unsupported_format`, naming the UID.

use super::DicomError;
use super::header::InstanceHeader;

/// JPEG-LS Lossless.
pub const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";
/// JPEG-LS Lossy (Near-Lossless).
pub const JPEG_LS: &str = "1.2.840.10008.1.2.4.81";
/// Implicit VR Little Endian (native pixels).
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian (native pixels).
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// JPEG Baseline (Process 1). libjpeg-turbo also decodes the progressive frames some
/// converters write under this label.
pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
/// JPEG 2000 Image Compression (Lossless Only): reversible 5/3 wavelet, YBR_RCT.
pub const JPEG_2000_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
/// JPEG 2000 Image Compression: YBR_ICT (or RGB).
pub const JPEG_2000: &str = "1.2.840.10008.1.2.4.91";
/// High-Throughput JPEG 2000 (Lossless Only).
pub const HTJ2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.201";
/// High-Throughput JPEG 2000 with RPCL Options (Lossless Only).
pub const HTJ2K_LOSSLESS_RPCL: &str = "1.2.840.10008.1.2.4.202";
/// High-Throughput JPEG 2000.
pub const HTJ2K: &str = "1.2.840.10008.1.2.4.203";

/// How native (uncompressed) frames lay out their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeLayout {
    /// 1 (MONOCHROME1/2) or 3 (RGB, YBR_FULL).
    pub samples: u8,
    /// PlanarConfiguration 1: all of R, then G, then B for each frame.
    pub planar: bool,
    pub photometric: NativeColour,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeColour {
    Rgb,
    /// YBR_FULL: full-range BT.601 luma and chroma.
    YbrFull,
    /// MONOCHROME2: 0 is black.
    Monochrome2,
    /// MONOCHROME1: 0 is white.
    Monochrome1,
}

/// What decodes an instance's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCodec {
    /// JPEG (baseline, or progressive frames labelled baseline): libjpeg-turbo with DCT
    /// scaling.
    Jpeg,
    /// JPEG 2000 Part 1 and HTJ2K (Part 15): the wavelet levels up to the scale needed.
    Jpeg2000,
    /// JPEG-LS (CharLS, decoded whole: the format has no reduced-resolution decode).
    JpegLs,
    /// Uncompressed 8-bit frames of rows x columns x samples bytes.
    Native(NativeLayout),
}

impl FrameCodec {
    /// The codec of `h`'s frames, or `unsupported_format` naming the transfer syntax
    /// and what about the pixels is not decoded.
    pub fn of(h: &InstanceHeader) -> Result<FrameCodec, DicomError> {
        let uid = h.transfer_syntax_uid.as_str();
        let unsupported = |why: &str| {
            DicomError::Unsupported(format!(
                "transfer syntax {uid} ({}): {why}",
                h.transfer_syntax_name
            ))
        };
        let codec = match uid {
            JPEG_BASELINE => FrameCodec::Jpeg,
            JPEG_2000_LOSSLESS | JPEG_2000 | HTJ2K_LOSSLESS | HTJ2K_LOSSLESS_RPCL | HTJ2K => {
                FrameCodec::Jpeg2000
            }
            JPEG_LS_LOSSLESS | JPEG_LS => FrameCodec::JpegLs,
            IMPLICIT_VR_LE | EXPLICIT_VR_LE => FrameCodec::Native(native_layout(h)?),
            _ => {
                return Err(unsupported(
                    "not decoded; JPEG baseline (.4.50), JPEG-LS (.4.80, .4.81), JPEG 2000 \
                     (.4.90, .4.91), HTJ2K (.4.201 to .4.203) and uncompressed little endian \
                     (1.2.840.10008.1.2, .1.2.1) are",
                ));
            }
        };
        let encapsulated = !matches!(codec, FrameCodec::Native(_));
        if h.encapsulated != encapsulated {
            return Err(DicomError::corrupt(format!(
                "transfer syntax {uid} with {} pixel data",
                if h.encapsulated {
                    "encapsulated"
                } else {
                    "native"
                }
            )));
        }
        if h.bits_allocated != 8 || !(1..=8).contains(&h.bits_stored) {
            return Err(unsupported(&format!(
                "{} bits allocated, {} stored; 8-bit samples are decoded",
                h.bits_allocated, h.bits_stored
            )));
        }
        if !matches!(h.samples_per_pixel, 1 | 3) {
            return Err(unsupported(&format!(
                "{} samples per pixel; 1 or 3 are decoded",
                h.samples_per_pixel
            )));
        }
        Ok(codec)
    }

    /// The bytes of one native frame; `None` for encapsulated codecs.
    pub fn native_frame_bytes(&self, h: &InstanceHeader) -> Option<u64> {
        match self {
            FrameCodec::Native(layout) => {
                Some(u64::from(h.columns) * u64::from(h.rows) * u64::from(layout.samples))
            }
            _ => None,
        }
    }
}

fn native_layout(h: &InstanceHeader) -> Result<NativeLayout, DicomError> {
    let photometric = match (h.samples_per_pixel, h.photometric.as_str()) {
        (3, "RGB") => NativeColour::Rgb,
        (3, "YBR_FULL") => NativeColour::YbrFull,
        (1, "MONOCHROME2") => NativeColour::Monochrome2,
        (1, "MONOCHROME1") => NativeColour::Monochrome1,
        (samples, other) => {
            return Err(DicomError::Unsupported(format!(
                "native pixel data in {other:?} with {samples} samples per pixel; RGB, \
                 YBR_FULL, MONOCHROME1 and MONOCHROME2 are decoded"
            )));
        }
    };
    Ok(NativeLayout {
        samples: h.samples_per_pixel as u8,
        planar: h.samples_per_pixel == 3 && h.planar_configuration == 1,
        photometric,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::dicom::frames::tests::header as frames_header;

    fn header() -> InstanceHeader {
        frames_header(2)
    }

    fn with(uid: &str, encapsulated: bool, photometric: &str, samples: u16) -> InstanceHeader {
        let mut h = header();
        h.transfer_syntax_uid = uid.into();
        h.transfer_syntax_name = "name".into();
        h.encapsulated = encapsulated;
        h.photometric = photometric.into();
        h.samples_per_pixel = samples;
        h
    }

    #[test]
    fn each_supported_syntax_has_its_codec() {
        assert_eq!(
            FrameCodec::of(&with(JPEG_BASELINE, true, "YBR_FULL_422", 3)),
            Ok(FrameCodec::Jpeg)
        );
        for uid in [
            JPEG_2000_LOSSLESS,
            JPEG_2000,
            HTJ2K_LOSSLESS,
            HTJ2K_LOSSLESS_RPCL,
            HTJ2K,
        ] {
            assert_eq!(
                FrameCodec::of(&with(uid, true, "YBR_ICT", 3)),
                Ok(FrameCodec::Jpeg2000)
            );
        }
        let mut planar = with(EXPLICIT_VR_LE, false, "RGB", 3);
        planar.planar_configuration = 1;
        assert_eq!(
            FrameCodec::of(&planar),
            Ok(FrameCodec::Native(NativeLayout {
                samples: 3,
                planar: true,
                photometric: NativeColour::Rgb
            }))
        );
        let mono = with(IMPLICIT_VR_LE, false, "MONOCHROME2", 1);
        assert_eq!(
            FrameCodec::of(&mono).map(|c| c.native_frame_bytes(&mono)),
            Ok(Some(u64::from(mono.columns) * u64::from(mono.rows)))
        );
    }

    #[test]
    fn other_syntaxes_and_pixels_are_unsupported_by_name() {
        let err = FrameCodec::of(&with("1.2.840.10008.1.2.4.57", true, "RGB", 3))
            .expect_err("JPEG lossless (process 14) is not decoded");
        assert!(
            matches!(&err, DicomError::Unsupported(t) if t.contains("1.2.840.10008.1.2.4.57")),
            "{err:?}"
        );
        assert_eq!(
            FrameCodec::of(&with(JPEG_LS_LOSSLESS, true, "RGB", 3)),
            Ok(FrameCodec::JpegLs)
        );
        let mut deep = with(EXPLICIT_VR_LE, false, "MONOCHROME2", 1);
        deep.bits_allocated = 16;
        assert!(matches!(
            FrameCodec::of(&deep),
            Err(DicomError::Unsupported(_))
        ));
        assert!(matches!(
            FrameCodec::of(&with(EXPLICIT_VR_LE, false, "PALETTE COLOR", 1)),
            Err(DicomError::Unsupported(_))
        ));
        // A syntax that says native over encapsulated items (or the reverse) is corrupt.
        assert!(matches!(
            FrameCodec::of(&with(JPEG_2000, false, "RGB", 3)),
            Err(DicomError::Corrupt(_))
        ));
        assert!(matches!(
            FrameCodec::of(&with(EXPLICIT_VR_LE, true, "RGB", 3)),
            Err(DicomError::Corrupt(_))
        ));
    }
}
