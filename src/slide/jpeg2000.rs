//! One JPEG 2000 or HTJ2K codestream (a DICOM frame, an Aperio 33003/33005 tile) decoded
//! at 1/`denominator` of its size, reading only the wavelet levels that size needs (as
//! DCT scaling does for JPEG).
//!
//! Part 1 codestreams go to hayro-jpeg2000 (memory-safe Rust). Part 15 (HTJ2K, told by
//! the CAP marker in the main header, whatever the container says) goes to OpenJPEG
//! ([`super::openjpeg`]): no Rust decoder of HTJ2K builds on our toolchain, and this
//! runs only inside the worker. When a codestream has fewer wavelet levels than the
//! denominator asks for, the rest of the reduction is a box average.

use hayro_jpeg2000::{DecodeSettings, DecoderContext, Image};

use super::openjpeg;
use super::reduce::box_shrink;

/// What a codestream's main header says about its block coder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// ISO/IEC 15444-1 (EBCOT).
    Part1,
    /// ISO/IEC 15444-15 (HTJ2K): a CAP marker before the first tile.
    HighThroughput,
}

const SOC: u16 = 0xFF4F;
const CAP: u16 = 0xFF50;
const COD: u16 = 0xFF52;
const SOT: u16 = 0xFF90;

/// What the main header says: the block coder and whether the wavelet is reversible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MainHeader {
    pub coding: Coding,
    /// COD's transformation: 1 = reversible 5/3 (lossless), 0 = irreversible 9/7.
    pub reversible: bool,
}

/// The main header's markers up to the first tile; `None` when `bytes` is not a
/// codestream (no SOC, no SOT, or a segment running past the end).
pub fn main_header(bytes: &[u8]) -> Option<MainHeader> {
    let marker = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    if marker(0)? != SOC {
        return None;
    }
    let mut out = MainHeader {
        coding: Coding::Part1,
        reversible: false,
    };
    let mut at = 2usize;
    loop {
        match marker(at)? {
            SOT => return Some(out),
            m if m >> 8 == 0xFF => {
                let len = usize::from(marker(at + 2)?);
                if len < 2 {
                    return None;
                }
                if m == CAP {
                    out.coding = Coding::HighThroughput;
                }
                if m == COD {
                    // Lcod, Scod, SGcod (4 bytes), then SPcod: levels, code-block
                    // width, height, style, transformation.
                    out.reversible = *bytes.get(at + 13)? == 1;
                }
                at = at.checked_add(2 + len)?;
            }
            _ => return None,
        }
    }
}

/// Part 1 or HTJ2K (see [`main_header`]).
pub fn coding(bytes: &[u8]) -> Option<Coding> {
    main_header(bytes).map(|h| h.coding)
}

/// Decodes `bytes`, a codestream of `full` pixels, into `out` as RGB of
/// `full / denominator` (the caller picks a denominator dividing `full`). Grey images
/// are spread to RGB; alpha is dropped.
pub fn decode_scaled(
    bytes: &[u8],
    full: (u32, u32),
    denominator: u32,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let target = (full.0 / denominator.max(1), full.1 / denominator.max(1));
    let header = main_header(bytes).ok_or("not a JPEG 2000 codestream (no SOC marker)")?;
    // The reversible 5/3 low-pass sits half a pixel off a box's centre at each level, so
    // a lossless codestream's last halving is a box average: its thumbnail then matches
    // a full decode reduced (MAD 0.5 on tissue instead of 1.2). The irreversible 9/7 of
    // lossy codestreams reads all the levels it can.
    let wavelet_denominator = if header.reversible && denominator > 1 {
        denominator / 2
    } else {
        denominator
    };
    let (rgb, dims) = match header.coding {
        // hayro-jpeg2000 is safe Rust, but a malformed codestream may still reach one of
        // its panics: that is a corrupt frame, not a dead worker.
        Coding::Part1 => std::panic::catch_unwind(|| {
            decode_part1(
                bytes,
                full,
                (full.0 / wavelet_denominator, full.1 / wavelet_denominator),
            )
        })
        .map_err(|_| "the JPEG 2000 decoder gave up on a malformed codestream".to_string())??,
        Coding::HighThroughput => openjpeg::decode_reduced(bytes, full, wavelet_denominator)?,
    };
    finish(rgb, dims, target, out)
}

/// `rgb` of `dims` (a 2^k reduction) box-shrunk the rest of the way to `target`.
fn finish(
    rgb: Vec<u8>,
    dims: (u32, u32),
    target: (u32, u32),
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if dims == target {
        *out = rgb;
        return Ok(());
    }
    let k = dims.0 / target.0.max(1);
    if k < 2
        || !k.is_power_of_two()
        || dims.0.div_ceil(k) != target.0
        || dims.1.div_ceil(k) != target.1
    {
        return Err(format!(
            "decoded {} x {}, which does not reduce to {} x {}",
            dims.0, dims.1, target.0, target.1
        ));
    }
    box_shrink(&rgb, dims.0 as usize, dims.1 as usize, k, out);
    Ok(())
}

fn decode_part1(
    bytes: &[u8],
    full: (u32, u32),
    target: (u32, u32),
) -> Result<(Vec<u8>, (u32, u32)), String> {
    // The header alone first: a codestream larger than its frame is refused before any
    // decoding allocates for it.
    let probe = Image::new(bytes, &DecodeSettings::default()).map_err(|e| format!("{e}"))?;
    if (probe.width(), probe.height()) != full {
        return Err(format!(
            "a codestream of {} x {} in a {} x {} frame",
            probe.width(),
            probe.height(),
            full.0,
            full.1
        ));
    }
    let settings = DecodeSettings {
        target_resolution: Some(target),
        ..DecodeSettings::default()
    };
    let image = Image::new(bytes, &settings).map_err(|e| format!("{e}"))?;
    let dims = (image.width(), image.height());
    let mut context = DecoderContext::default();
    let decoded = image.decode(&mut context).map_err(|e| format!("{e}"))?;
    let samples = decoded.data_u8();
    let pixels = dims.0 as usize * dims.1 as usize;
    Ok((to_rgb(&samples, pixels)?, dims))
}

/// Interleaved samples of `pixels` pixels (1 to 4 channels) as RGB.
pub(super) fn to_rgb(samples: &[u8], pixels: usize) -> Result<Vec<u8>, String> {
    let channels = samples.len().checked_div(pixels).unwrap_or(0);
    if channels == 0 || channels > 4 || channels * pixels != samples.len() {
        return Err(format!("{} samples for {pixels} pixels", samples.len()));
    }
    Ok(match channels {
        // Grey, grey + alpha.
        1 | 2 => samples
            .chunks_exact(channels)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        3 => samples.to_vec(),
        // RGB + alpha.
        _ => samples
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_header_tells_part1_from_htj2k_and_the_wavelet() {
        // SOC, SIZ (length 4, a stub), SOT.
        let part1 = [0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x04, 0, 0, 0xFF, 0x90];
        assert_eq!(coding(&part1), Some(Coding::Part1));
        let ht = [
            0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x04, 0, 0, 0xFF, 0x50, 0, 2, 0xFF, 0x90,
        ];
        assert_eq!(coding(&ht), Some(Coding::HighThroughput));
        // COD (Lcod 12): Scod, SGcod (LRCP, 1 layer, MCT), SPcod (5 levels, 64 x 64
        // blocks, style 0, transformation 1 = reversible 5/3).
        let cod = [
            0xFF, 0x4F, 0xFF, 0x52, 0, 12, 0, 0, 0, 1, 1, 5, 4, 4, 0, 1, 0xFF, 0x90,
        ];
        assert_eq!(
            main_header(&cod),
            Some(MainHeader {
                coding: Coding::Part1,
                reversible: true
            })
        );
        let mut irreversible = cod;
        irreversible[15] = 0;
        assert_eq!(
            main_header(&irreversible).map(|h| h.reversible),
            Some(false)
        );
        assert_eq!(coding(&part1[..8]), None, "no tile");
        assert_eq!(coding(b"\xFF\xD8\xFF\xE0"), None, "a JPEG");
        assert_eq!(
            coding(&[0xFF, 0x4F, 0xFF, 0x51, 0xFF, 0xFF]),
            None,
            "past the end"
        );
        assert_eq!(coding(&[0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x01]), None);
    }

    #[test]
    fn grey_and_alpha_become_rgb() {
        assert_eq!(to_rgb(&[7, 9], 2), Ok(vec![7, 7, 7, 9, 9, 9]));
        assert_eq!(to_rgb(&[7, 0, 9, 0], 2), Ok(vec![7, 7, 7, 9, 9, 9]));
        assert_eq!(to_rgb(&[1, 2, 3, 255], 1), Ok(vec![1, 2, 3]));
        assert!(to_rgb(&[1, 2, 3], 2).is_err());
    }

    #[test]
    fn a_shallow_codestream_is_box_reduced_the_rest_of_the_way() {
        let rgb: Vec<u8> = (0..4 * 4).flat_map(|i| [i as u8 * 10, 0, 0]).collect();
        let mut out = Vec::new();
        finish(rgb.clone(), (4, 4), (2, 2), &mut out).expect("reduces");
        assert_eq!(out.len(), 2 * 2 * 3);
        // Top-left block: pixels 0, 1, 4, 5 -> (0 + 10 + 40 + 50) / 4.
        assert_eq!(out[0], 25);
        assert!(finish(rgb, (4, 4), (3, 3), &mut out).is_err());
    }
}
