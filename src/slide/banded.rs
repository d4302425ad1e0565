//! The reduction of a level read as full-width bands with no box step (the pyramid level
//! a thumbnail comes from, and small single-level slides like CMU-1-Small-Region): the
//! bands are decoded a few at a time into a small window, and the vertical Lanczos3 pass
//! runs on the window as soon as an output row's rows are in, so the level is never held
//! whole. What comes out is the level's columns at the thumbnail's height; the resizer
//! stage then runs the horizontal pass alone (`render::resize`).
//!
//! Why: every slide is decoded in a fresh process, and the kernel zeroes each page the
//! first time it is touched. Holding CMU-1-Small-Region's level whole (2220 x 2967) took
//! 20 MB of fresh pages, and fast_image_resize's own vertical-pass buffer 7 MB more;
//! zeroing them was about a seventh of the CPU of a thumbnail. The window holds the bands
//! the pool decodes at once plus the few rows a Lanczos window reaches back.
//!
//! The result is fast_image_resize's own: on 8-bit images it runs the vertical pass first,
//! into a level-wide buffer of the thumbnail's height, which is what this module fills
//! window by window. Each output row's weights come from the same formula; only its crop
//! offset is rounded differently (the tests hold the result within one grey level).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rayon::prelude::*;

use super::error::SlideError;
use super::geometry::Rect;
use super::render::Rgb;
use super::round::read_round;
use super::source::RegionSource;

/// How far Lanczos3 reaches each side, in output pixels.
const LANCZOS3_SUPPORT: f64 = 3.0;

/// Which level rows each output row's vertical Lanczos3 window reads.
#[derive(Debug, Clone, Copy)]
pub struct RowWindows {
    scale: f64,
    radius: f64,
    height: u64,
}

impl RowWindows {
    /// For a level `height` rows high reduced to `out_height` rows.
    pub fn new(height: u64, out_height: u32) -> Self {
        let scale = height as f64 / f64::from(out_height.max(1));
        // fast_image_resize widens the kernel with the reduction (adaptive kernel size).
        let radius = LANCZOS3_SUPPORT * scale.max(1.0);
        Self {
            scale,
            radius,
            height,
        }
    }

    /// Level rows `[lo, hi)` output row `row` reads, with a row of slack each side so the
    /// crop offset's rounding can never reach outside them.
    pub fn rows(&self, row: u32) -> (u64, u64) {
        let centre = (f64::from(row) + 0.5) * self.scale;
        let lo = ((centre - self.radius).floor() - 1.0).max(0.0) as u64;
        let hi = ((centre + self.radius).ceil() + 1.0).max(0.0) as u64;
        (lo.min(self.height), hi.min(self.height))
    }

    /// The most rows one output row's window spans: what a window carries over.
    pub fn span(&self) -> u64 {
        (2.0 * self.radius).ceil() as u64 + 4
    }

    /// The crop, in rows of a window starting at level row `top` and `held` rows high,
    /// that output rows `[first, end)` are made from.
    fn crop(&self, top: u64, held: u64, first: u32, end: u32) -> (f64, f64) {
        let from = f64::from(first) * self.scale - top as f64;
        // At the bottom, `end * scale` may round past the level's last row.
        let to = (f64::from(end) * self.scale - top as f64).min(held as f64);
        (from, to - from)
    }
}

/// Reads `bands` (full-width, top to bottom, `band_rows` rows each but the last) and
/// returns the level's columns reduced to `out_height` rows by the vertical Lanczos3 pass.
/// At most one band per pool thread, plus [`RowWindows::span`] rows, is held at a time.
pub fn vertical_pass(
    source: &dyn RegionSource,
    bands: &[Rect],
    (width, height): (u64, u64),
    band_rows: u64,
    out_height: u32,
) -> Result<Rgb, SlideError> {
    let row_bytes = width as usize * 3;
    let windows = RowWindows::new(height, out_height);
    let threads = rayon::current_num_threads().max(1);
    let capacity = window_rows(&windows, threads, band_rows);
    let mut window = vec![0u8; capacity as usize * row_bytes];
    let mut columns = vec![0u8; row_bytes * out_height as usize];
    // The window holds level rows [top, top + held); output rows before `next` are done.
    let (mut top, mut held, mut next) = (0u64, 0u64, 0u32);

    for group in bands.chunks(threads) {
        let group_rows: u64 = group.iter().map(|band| band.h).sum();
        let start = held as usize * row_bytes;
        let end = start + group_rows as usize * row_bytes;
        // The carried rows are fewer than `span` (the next output row's window reaches
        // past `bottom`), so a round always fits: the bound is kept, not hoped for.
        let Some(rows) = window.get_mut(start..end) else {
            return Err(SlideError::Internal(format!(
                "a round of {group_rows} rows does not fit the window after {held} carried rows"
            )));
        };
        read_round(source, group, width, rows)?;
        held += group_rows;
        let bottom = top + held;
        let mut end_row = next;
        while end_row < out_height && (bottom == height || windows.rows(end_row).1 <= bottom) {
            end_row += 1;
        }
        let held_rows = &window[..held as usize * row_bytes];
        resize_rows(
            held_rows,
            width,
            (top, held),
            &windows,
            next..end_row,
            &mut columns,
        )?;
        next = end_row;
        // Carry over the rows the next output row reads; drop the rest.
        if next < out_height {
            let keep_from = windows.rows(next).0.clamp(top, bottom);
            let dropped = (keep_from - top) as usize * row_bytes;
            window.copy_within(dropped..held as usize * row_bytes, 0);
            held = bottom - keep_from;
            top = keep_from;
        }
    }
    if next != out_height {
        return Err(SlideError::Internal(format!(
            "the bands covered {} of {height} rows: {next} of {out_height} output rows made",
            top + held
        )));
    }
    Ok(Rgb {
        width: width as u32,
        height: out_height,
        pixels: columns,
    })
}

/// The rows the window is allocated with: one round of bands (one per thread) on top of
/// the rows carried from the round before.
pub fn window_rows(windows: &RowWindows, threads: usize, band_rows: u64) -> u64 {
    windows.span() + threads as u64 * band_rows
}

/// The vertical pass for output rows `rows` from a window of `held` level rows starting at
/// `top`, shared among the pool's threads.
fn resize_rows(
    window: &[u8],
    width: u64,
    (top, held): (u64, u64),
    windows: &RowWindows,
    rows: std::ops::Range<u32>,
    columns: &mut [u8],
) -> Result<(), SlideError> {
    if rows.is_empty() {
        return Ok(());
    }
    let internal = |e: &dyn std::fmt::Display| SlideError::Internal(format!("resize: {e}"));
    let row_bytes = width as usize * 3;
    let per_thread = rows.len().div_ceil(rayon::current_num_threads().max(1));
    let src = ImageRef::new(width as u32, held as u32, window, PixelType::U8x3)
        .map_err(|e| internal(&e))?;
    columns[rows.start as usize * row_bytes..rows.end as usize * row_bytes]
        .par_chunks_mut(per_thread * row_bytes)
        .enumerate()
        .try_for_each(|(i, out)| {
            let first = rows.start + (i * per_thread) as u32;
            let count = (out.len() / row_bytes) as u32;
            let (crop_top, crop_height) = windows.crop(top, held, first, first + count);
            let mut dst = Image::from_slice_u8(width as u32, count, out, PixelType::U8x3)
                .map_err(|e| internal(&e))?;
            let options = ResizeOptions::new()
                .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
                .crop(0.0, crop_top, width as f64, crop_height);
            Resizer::new()
                .resize(&src, &mut dst, &options)
                .map_err(|e| internal(&e))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slide::geometry::cut_into_chunks;
    use crate::slide::source::RegionReader;
    use proptest::prelude::*;

    /// A level whose pixels are a function of their place: tissue-like variation at
    /// several scales, so a misplaced row or a wrong weight shows.
    struct Pattern {
        dims: (u64, u64),
        align: (u32, u32),
        /// Pixels handed out, to prove every pixel is read exactly once.
        pixels_read: std::sync::atomic::AtomicU64,
    }

    fn pixel(x: u64, y: u64) -> [u8; 3] {
        let h = x.wrapping_mul(0x9E37_79B9) ^ y.wrapping_mul(0x85EB_CA6B);
        [
            ((x * 7 + y * 3) % 256) as u8,
            ((x / 5 + y / 3) % 200) as u8 + (h % 40) as u8,
            (h >> 7) as u8,
        ]
    }

    impl RegionSource for Pattern {
        fn dims(&self) -> (u64, u64) {
            self.dims
        }
        fn alignment(&self) -> (u32, u32) {
            self.align
        }
        fn reader(&self) -> Result<Box<dyn RegionReader + '_>, SlideError> {
            Ok(Box::new(PatternReader(self)))
        }
    }

    struct PatternReader<'a>(&'a Pattern);

    impl RegionReader for PatternReader<'_> {
        fn read_rgb(&mut self, rect: Rect, out: &mut Vec<u8>) -> Result<(), SlideError> {
            crate::slide::source::fill_from(rect, out, pixel);
            self.0
                .pixels_read
                .fetch_add(rect.w * rect.h, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    }

    /// The whole level, then fast_image_resize's vertical pass over it in one call.
    fn whole_level_pass(dims: (u64, u64), out_height: u32) -> Vec<u8> {
        let mut level = Vec::new();
        for y in 0..dims.1 {
            for x in 0..dims.0 {
                level.extend_from_slice(&pixel(x, y));
            }
        }
        let src = Image::from_vec_u8(dims.0 as u32, dims.1 as u32, level, PixelType::U8x3)
            .expect("level");
        let mut dst = Image::new(dims.0 as u32, out_height, PixelType::U8x3);
        Resizer::new()
            .resize(
                &src,
                &mut dst,
                &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
            )
            .expect("resize");
        dst.into_vec()
    }

    fn banded(dims: (u64, u64), align: (u32, u32), budget: u64, out_height: u32) -> Vec<u8> {
        let source = Pattern {
            dims,
            align,
            pixels_read: Default::default(),
        };
        let bands = cut_into_chunks(dims.0, dims.1, 1, align, budget);
        let band_rows = bands[0].h;
        assert!(
            bands.iter().all(|b| b.x == 0 && b.w == dims.0),
            "full-width bands"
        );
        let out = vertical_pass(&source, &bands, dims, band_rows, out_height).expect("pass");
        assert_eq!((out.width, out.height), (dims.0 as u32, out_height));
        assert_eq!(
            source.pixels_read.into_inner(),
            dims.0 * dims.1,
            "every level pixel read exactly once"
        );
        out.pixels
    }

    fn assert_close(banded: &[u8], whole: &[u8]) {
        assert_eq!(banded.len(), whole.len());
        let worst = banded
            .iter()
            .zip(whole)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        assert!(
            worst <= 1,
            "a pixel differs by {worst} from the whole-level pass"
        );
    }

    /// CMU-1-Small-Region's shape: 240-row tile bands, 2967 rows to 1024.
    #[test]
    fn the_banded_pass_matches_the_whole_level_pass_on_cmu_geometry() {
        let dims = (300, 2967);
        let out = banded(dims, (240, 240), 300 * 240, 1024);
        assert_close(&out, &whole_level_pass(dims, 1024));
    }

    /// Runs `f` on a pool of `threads` threads (a worker's core share).
    fn on_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(f)
    }

    /// 40 bands of 16 rows on 3 threads: the window is 3 bands and the carried rows, a
    /// sixth of the level, and it is never outgrown (that would be an error).
    #[test]
    fn the_window_holds_the_bands_of_one_round_not_the_level() {
        let dims = (64, 640);
        let out = on_pool(3, || banded(dims, (16, 16), 64 * 16, 200));
        assert_close(&out, &whole_level_pass(dims, 200));
        assert!(window_rows(&RowWindows::new(640, 200), 3, 16) < 640 / 4);
        // CMU-1-Small-Region on two cores: 502 of its 2967 rows.
        assert_eq!(window_rows(&RowWindows::new(2967, 1024), 2, 240), 502);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any level shape, band height, pool size and reduction below 4x (the range with
        /// no box step) gives the whole-level pass's pixels, within one grey level.
        #[test]
        fn any_banding_matches_the_whole_level_pass(
            width in 1u64..48,
            height in 2u64..400,
            tile in 1u32..40,
            threads in 1usize..4,
            shrink in 1.0f64..4.0,
        ) {
            let out_height = ((height as f64 / shrink).round() as u32).clamp(1, height as u32 - 1);
            let budget = width * u64::from(tile) * 2;
            let out = on_pool(threads, || banded((width, height), (tile, tile), budget, out_height));
            assert_close(&out, &whole_level_pass((width, height), out_height));
        }
    }

    #[test]
    fn each_output_row_reads_rows_inside_its_window() {
        let windows = RowWindows::new(2967, 1024);
        let mut previous = (0, 0);
        for row in 0..1024 {
            let (lo, hi) = windows.rows(row);
            assert!(
                lo < hi && hi - lo <= windows.span(),
                "row {row}: {lo}..{hi}"
            );
            assert!(lo >= previous.0 && hi >= previous.1, "windows move down");
            previous = (lo, hi);
        }
        assert_eq!(windows.rows(0).0, 0);
        assert_eq!(windows.rows(1023).1, 2967);
    }
}
