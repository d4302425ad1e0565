//! Drives a reduction: cuts the source level into bounded chunks, reads and box-shrinks
//! them on all cores, then applies the final Lanczos3 resize with fast_image_resize.
//!
//! Peak memory is one chunk per worker plus the box-shrunk intermediate (at most about
//! 4x the thumbnail per side), whatever the size of the level.

use std::sync::Mutex;

use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images::Image};
use rayon::prelude::*;

use super::error::SlideError;
use super::geometry::{box_factor, cut_into_chunks};
use super::reduce::{box_shrink, shrunk_dims};
use super::source::RegionSource;

/// Pixels per chunk: 1 Mpx is 4 MiB of ARGB on the OpenSlide path. Small on purpose:
/// every slide is decoded in a fresh process, whose every new page the kernel must
/// zero, so a chunk's buffers cost CPU in proportion to their size (4 Mpx chunks made
/// CMU-1-Small-Region's peak 48 MB instead of 23); chunks stay aligned to tiles, so
/// smaller ones decode nothing twice.
const CHUNK_BUDGET_PX: u64 = 1024 * 1024;

/// An RGB image, 3 bytes per pixel, rows packed.
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Reads the whole source, box-shrunk by the factor `geometry::box_factor` picks for `target`.
pub fn reduce_source(source: &dyn RegionSource, target: (u32, u32)) -> Result<Rgb, SlideError> {
    let (w, h) = source.dims();
    let k = box_factor((w, h), target);
    let (ow, oh) = shrunk_dims(w, h, k);
    let chunks = cut_into_chunks(w, h, k, source.alignment(), CHUNK_BUDGET_PX);
    let intermediate = Mutex::new(vec![0u8; (ow * oh * 3) as usize]);
    let ku = u64::from(k);

    chunks.par_iter().try_for_each_init(
        || (source.reader(), Vec::new(), Vec::new()),
        |(reader, raw, shrunk), rect| {
            let reader = reader
                .as_mut()
                .map_err(|e| SlideError::Internal(e.to_string()))?;
            reader.read_rgb(*rect, raw)?;
            // Without a box step the chunk goes straight into the intermediate.
            let shrunk: &[u8] = if k == 1 {
                raw
            } else {
                box_shrink(raw, rect.w as usize, rect.h as usize, k, shrunk);
                shrunk
            };
            let (cw, ch) = shrunk_dims(rect.w, rect.h, k);
            let (cx, cy) = (rect.x / ku, rect.y / ku);
            let mut image = intermediate
                .lock()
                .map_err(|_| SlideError::Internal("a reduction worker panicked".into()))?;
            for row in 0..ch {
                let dst = (((cy + row) * ow + cx) * 3) as usize;
                let src = (row * cw * 3) as usize;
                image[dst..dst + (cw * 3) as usize]
                    .copy_from_slice(&shrunk[src..src + (cw * 3) as usize]);
            }
            Ok(())
        },
    )?;
    let pixels = intermediate
        .into_inner()
        .map_err(|_| SlideError::Internal("a reduction worker panicked".into()))?;
    Ok(Rgb {
        width: ow as u32,
        height: oh as u32,
        pixels,
    })
}

/// Final resize to exactly `target` with a Lanczos3 kernel (what OpenSlide's Python
/// `get_thumbnail` uses through Pillow).
pub fn resize(image: Rgb, target: (u32, u32)) -> Result<Rgb, SlideError> {
    if (image.width, image.height) == target {
        return Ok(image);
    }
    let internal = |e: &dyn std::fmt::Display| SlideError::Internal(format!("resize: {e}"));
    let src = Image::from_vec_u8(image.width, image.height, image.pixels, PixelType::U8x3)
        .map_err(|e| internal(&e))?;
    let mut dst = Image::new(target.0, target.1, PixelType::U8x3);
    Resizer::new()
        .resize(
            &src,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
        )
        .map_err(|e| internal(&e))?;
    Ok(Rgb {
        width: target.0,
        height: target.1,
        pixels: dst.into_vec(),
    })
}
