//! An uncompressed DICOM frame (Explicit or Implicit VR Little Endian) as interleaved
//! RGB: RGB or YBR_FULL samples interleaved or planar, MONOCHROME2 or MONOCHROME1 grey.
//! The full-range YCbCr conversion also serves Aperio's 33003 JPEG 2000 tiles.

use crate::formats::dicom::codec::{NativeColour, NativeLayout};

/// Writes the `dims` frame in `bytes` (exactly rows x columns x samples) to `out` as RGB.
pub fn to_rgb(
    layout: NativeLayout,
    bytes: &[u8],
    dims: (u32, u32),
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let pixels = dims.0 as usize * dims.1 as usize;
    let samples = usize::from(layout.samples);
    if bytes.len() != pixels * samples {
        return Err(format!(
            "an uncompressed frame of {} bytes for {} x {} x {samples}",
            bytes.len(),
            dims.0,
            dims.1
        ));
    }
    out.clear();
    out.reserve(pixels * 3);
    match (layout.samples, layout.planar) {
        (1, _) => {
            let invert = layout.photometric == NativeColour::Monochrome1;
            out.extend(bytes.iter().flat_map(|&v| {
                let v = if invert { 255 - v } else { v };
                [v, v, v]
            }));
        }
        (_, false) => out.extend_from_slice(bytes),
        (_, true) => {
            let (a, rest) = bytes.split_at(pixels);
            let (b, c) = rest.split_at(pixels);
            for i in 0..pixels {
                out.extend_from_slice(&[a[i], b[i], c[i]]);
            }
        }
    }
    if layout.photometric == NativeColour::YbrFull {
        ycbcr_to_rgb_in_place(out);
    }
    Ok(())
}

/// Full-range YCbCr pixels (DICOM YBR_FULL, Aperio 33003 JPEG 2000) to RGB in place.
pub fn ycbcr_to_rgb_in_place(pixels: &mut [u8]) {
    for px in pixels.chunks_exact_mut(3) {
        let [r, g, b] = ybr_full_to_rgb(px[0], px[1], px[2]);
        px.copy_from_slice(&[r, g, b]);
    }
}

/// PS3.3 C.7.6.3.1.2: full-range BT.601.
fn ybr_full_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (f32::from(y), f32::from(cb) - 128.0, f32::from(cr) - 128.0);
    let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [
        clamp(y + 1.402 * cr),
        clamp(y - 0.344_136 * cb - 0.714_136 * cr),
        clamp(y + 1.772 * cb),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(samples: u8, planar: bool, photometric: NativeColour) -> NativeLayout {
        NativeLayout {
            samples,
            planar,
            photometric,
        }
    }

    #[test]
    fn each_layout_becomes_interleaved_rgb() {
        let mut out = Vec::new();
        let interleaved = [1, 2, 3, 4, 5, 6];
        to_rgb(
            layout(3, false, NativeColour::Rgb),
            &interleaved,
            (2, 1),
            &mut out,
        )
        .expect("rgb");
        assert_eq!(out, interleaved);
        // Planar: R of both pixels, then G, then B.
        to_rgb(
            layout(3, true, NativeColour::Rgb),
            &[1, 4, 2, 5, 3, 6],
            (2, 1),
            &mut out,
        )
        .expect("planar");
        assert_eq!(out, interleaved);
        to_rgb(
            layout(1, false, NativeColour::Monochrome2),
            &[0, 200],
            (2, 1),
            &mut out,
        )
        .expect("mono2");
        assert_eq!(out, [0, 0, 0, 200, 200, 200]);
        to_rgb(
            layout(1, false, NativeColour::Monochrome1),
            &[0, 200],
            (2, 1),
            &mut out,
        )
        .expect("mono1");
        assert_eq!(out, [255, 255, 255, 55, 55, 55]);
        // Grey in YBR_FULL stays grey; pure red round-trips within rounding.
        to_rgb(
            layout(3, false, NativeColour::YbrFull),
            &[128, 128, 128, 76, 85, 255],
            (2, 1),
            &mut out,
        )
        .expect("ybr");
        assert_eq!(&out[..3], [128, 128, 128]);
        assert!(out[3] >= 253 && out[4] <= 2 && out[5] <= 2, "{out:?}");
    }

    #[test]
    fn a_frame_of_the_wrong_size_is_an_error() {
        let mut out = Vec::new();
        assert!(
            to_rgb(
                layout(3, false, NativeColour::Rgb),
                &[0; 5],
                (2, 1),
                &mut out
            )
            .is_err()
        );
    }
}
