//! Drives a reduction: cuts the source level into bounded chunks, reads and box-shrinks
//! them on all cores, then applies the final Lanczos3 resize with fast_image_resize.
//! A level read as full-width bands with no box step streams through its vertical pass
//! instead ([`banded`]), and comes out already at the thumbnail's height.
//!
//! Peak memory is one chunk per worker plus the box-shrunk intermediate (at most about
//! 4x the thumbnail per side), whatever the size of the level.

use std::sync::Mutex;

use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images::Image};
use rayon::prelude::*;

use super::banded;
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

/// Reads the whole source, box-shrunk by the factor `geometry::box_factor` picks for
/// `target`, or, when it streams as bands, already reduced to `target`'s height.
pub fn reduce_source(source: &dyn RegionSource, target: (u32, u32)) -> Result<Rgb, SlideError> {
    let (w, h) = source.dims();
    let k = box_factor((w, h), target);
    let (ow, oh) = shrunk_dims(w, h, k);
    let chunks = cut_into_chunks(w, h, k, source.alignment(), CHUNK_BUDGET_PX);
    if let Some(band_rows) = full_width_bands(&chunks, (w, h), k) {
        // Rows to drop: the vertical pass streams over the bands, and the level is never
        // held whole (`banded`); the resizer then only narrows it.
        if u64::from(target.1) < h {
            return banded::vertical_pass(source, &chunks, (w, h), band_rows, target.1);
        }
        return read_in_place(source, &chunks, (ow, oh), band_rows);
    }
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

/// The rows of every band when the chunks are full-width bands of one height (the last
/// may be shorter) and need no box step: then each chunk's pixels are one contiguous
/// part of the intermediate image.
fn full_width_bands(
    chunks: &[super::geometry::Rect],
    (width, height): (u64, u64),
    k: u32,
) -> Option<u64> {
    let rows = chunks.first()?.h;
    let last = chunks.last()?;
    if last.y + last.h != height {
        return None;
    }
    let bands = chunks.iter().enumerate().all(|(i, c)| {
        c.x == 0 && c.w == width && c.y == i as u64 * rows && (c.h == rows || i + 1 == chunks.len())
    });
    (k == 1 && rows > 0 && bands).then_some(rows)
}

/// Reads full-width bands straight into their parts of the intermediate image, on all
/// cores: no chunk buffer and no copy (a tiled reader decodes whole tiles in place).
/// Every page of the image is touched once, by the decoder writing it.
fn read_in_place(
    source: &dyn RegionSource,
    chunks: &[super::geometry::Rect],
    (width, height): (u64, u64),
    band_rows: u64,
) -> Result<Rgb, SlideError> {
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    read_bands(
        source,
        chunks,
        &mut pixels,
        (band_rows * width * 3) as usize,
    )?;
    Ok(Rgb {
        width: width as u32,
        height: height as u32,
        pixels,
    })
}

/// Reads full-width `bands` on all cores, each into its `band_bytes` part of `pixels`
/// (in order; the last part may be shorter, as the last band is).
pub fn read_bands(
    source: &dyn RegionSource,
    bands: &[super::geometry::Rect],
    pixels: &mut [u8],
    band_bytes: usize,
) -> Result<(), SlideError> {
    pixels
        .par_chunks_mut(band_bytes)
        .zip(bands.par_iter())
        .try_for_each_init(
            || (source.reader(), Vec::new()),
            |(reader, scratch), (band, rect)| {
                let reader = reader
                    .as_mut()
                    .map_err(|e| SlideError::Internal(e.to_string()))?;
                reader.read_rgb_into(*rect, band, scratch)
            },
        )
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
    let lanczos = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    if image.height != target.1 {
        return Ok(Rgb {
            width: target.0,
            height: target.1,
            pixels: whole_image(&src, target, &lanczos)?,
        });
    }
    // The horizontal pass alone (what the banded vertical pass leaves): every output row
    // is made from its own source row, so the rows are shared among the pool's threads,
    // each resizing a crop of whole rows, with the same pixels as one pass. A slide
    // decoded alone (the CLI, an idle service) gets all its cores here too.
    let row_bytes = target.0 as usize * 3;
    let mut pixels = vec![0u8; row_bytes * target.1 as usize];
    let per_thread = (target.1 as usize).div_ceil(rayon::current_num_threads().max(1));
    pixels
        .par_chunks_mut(per_thread.max(1) * row_bytes)
        .enumerate()
        .try_for_each(|(i, out)| {
            let first = i * per_thread;
            let rows = out.len() / row_bytes;
            let mut dst = Image::from_slice_u8(target.0, rows as u32, out, PixelType::U8x3)
                .map_err(|e| internal(&e))?;
            let crop = lanczos
                .clone()
                .crop(0.0, first as f64, f64::from(image.width), rows as f64);
            Resizer::new()
                .resize(&src, &mut dst, &crop)
                .map_err(|e| internal(&e))
        })?;
    Ok(Rgb {
        width: target.0,
        height: target.1,
        pixels,
    })
}

/// fast_image_resize's resize of the whole image in one call.
fn whole_image(
    src: &Image<'_>,
    target: (u32, u32),
    options: &ResizeOptions,
) -> Result<Vec<u8>, SlideError> {
    let mut dst = Image::new(target.0, target.1, PixelType::U8x3);
    Resizer::new()
        .resize(src, &mut dst, options)
        .map_err(|e| SlideError::Internal(format!("resize: {e}")))?;
    Ok(dst.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slide::geometry::Rect;

    #[test]
    fn the_horizontal_pass_shared_among_threads_is_the_single_pass() {
        let (w, h, tw) = (1237u32, 97u32, 401u32);
        let pixels: Vec<u8> = (0..w * h * 3)
            .map(|i| ((i * 7919) % 251) as u8 ^ ((i / (w * 3)) as u8).wrapping_mul(13))
            .collect();
        let image = || Rgb {
            width: w,
            height: h,
            pixels: pixels.clone(),
        };
        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| resize(image(), (tw, h)).unwrap());
        for threads in [2, 3, 7] {
            let shared = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| resize(image(), (tw, h)).unwrap());
            assert!(shared.pixels == single.pixels, "{threads} threads");
        }
        // And the single pass is fast_image_resize's own whole-image resize.
        let src = Image::from_vec_u8(w, h, pixels.clone(), PixelType::U8x3).unwrap();
        let lanczos = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
        assert!(whole_image(&src, (tw, h), &lanczos).unwrap() == single.pixels);
    }

    #[test]
    fn only_full_width_bands_without_a_box_step_are_read_in_place() {
        let tiles = (240, 240);
        // A pyramid level at 2500 x 1875: 240-row full-width bands, the last shorter.
        let chunks = cut_into_chunks(2500, 1875, 1, tiles, CHUNK_BUDGET_PX);
        assert_eq!(full_width_bands(&chunks, (2500, 1875), 1), Some(240));
        // A box step needs the chunk shrunk first.
        let chunks = cut_into_chunks(2500, 1875, 2, tiles, CHUNK_BUDGET_PX);
        assert_eq!(full_width_bands(&chunks, (2500, 1875), 2), None);
        // A level too wide for one band per tile row is cut into columns too.
        let chunks = cut_into_chunks(20_000, 1875, 1, tiles, CHUNK_BUDGET_PX);
        assert!(chunks.iter().any(|c| c.x > 0));
        assert_eq!(full_width_bands(&chunks, (20_000, 1875), 1), None);
        // Bands that do not reach the bottom, or of uneven height, are not trusted.
        let r = |y, h| Rect { x: 0, y, w: 100, h };
        assert_eq!(full_width_bands(&[r(0, 10), r(10, 10)], (100, 30), 1), None);
        assert_eq!(
            full_width_bands(&[r(0, 10), r(10, 5), r(15, 10)], (100, 25), 1),
            None
        );
        assert_eq!(
            full_width_bands(&[r(0, 10), r(10, 10), r(20, 5)], (100, 25), 1),
            Some(10)
        );
    }
}
