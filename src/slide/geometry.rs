//! The geometry of a thumbnail: its size, which pyramid level to read, how far the
//! JPEG decoder may pre-shrink, the integer box factor, and how the level is cut into
//! bounded chunks. Pure functions, so every choice is unit-tested in isolation.
//!
//! (Not called "plan": in this crate a plan is only the byte ranges a ranged fetch
//! reads, [`crate::formats::tiled_tiff::plan`], which uses [`choose_level`] from here so that
//! it fetches the level the engine will read.)

/// A rectangle in some pixel space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u64,
    pub y: u64,
    pub w: u64,
    pub h: u64,
}

/// Thumbnail dimensions: longest side `max_size`, aspect ratio kept, never enlarged.
pub fn thumbnail_dims(width: u64, height: u64, max_size: u32) -> (u32, u32) {
    let max_size = u64::from(max_size.max(1));
    let (width, height) = (width.max(1), height.max(1));
    if width <= max_size && height <= max_size {
        return (width as u32, height as u32);
    }
    let longest = width.max(height) as f64;
    let scale = max_size as f64 / longest;
    let side = |v: u64| -> u32 { ((v as f64 * scale).round() as u64).clamp(1, max_size) as u32 };
    (side(width), side(height))
}

/// The smallest level that is still at least the thumbnail size in both directions.
/// Level 0 always qualifies, since a thumbnail is never larger than the slide.
pub fn choose_level(levels: &[(u64, u64)], target: (u32, u32)) -> usize {
    let (tw, th) = (u64::from(target.0), u64::from(target.1));
    levels
        .iter()
        .enumerate()
        .filter(|(_, (w, h))| *w >= tw && *h >= th)
        .min_by_key(|(_, (w, h))| w.saturating_mul(*h))
        .map_or(0, |(i, _)| i)
}

/// The largest JPEG DCT scaling denominator (1, 2, 4 or 8) that keeps the decoded level
/// at least twice the thumbnail size, so the decoder does the first reduction for free.
///
/// Why twice: the scaled IDCT is a crude low-pass filter. Leaving at least 2x for the
/// Lanczos kernel keeps the result within a fraction of a grey level of OpenSlide's own
/// thumbnail on real tissue (scaling all the way down measured 2.2 mean absolute
/// difference on CMU-1-Small-Region, against 0.09 this way), at a small cost in speed.
pub fn jpeg_denominator(level: (u64, u64), target: (u32, u32)) -> u32 {
    [8u32, 4, 2]
        .into_iter()
        .find(|d| {
            level.0.div_ceil(u64::from(*d)) >= 2 * u64::from(target.0)
                && level.1.div_ceil(u64::from(*d)) >= 2 * u64::from(target.1)
        })
        .unwrap_or(1)
}

/// A level's size decoded at 1/`denominator` (libjpeg rounds partial blocks up).
pub fn scaled_dims((w, h): (u64, u64), denominator: u32) -> (u64, u64) {
    let d = u64::from(denominator.max(1));
    (w.div_ceil(d), h.div_ceil(d))
}

/// Integer box-filter factor applied strip by strip before the final Lanczos step.
/// It leaves a residual reduction of 2x to 4x for the kernel, as libvips does, so the
/// intermediate image stays small while the result keeps a proper antialiasing filter.
pub fn box_factor(source: (u64, u64), target: (u32, u32)) -> u32 {
    let fx = source.0 as f64 / f64::from(target.0.max(1));
    let fy = source.1 as f64 / f64::from(target.1.max(1));
    let f = fx.min(fy);
    ((f / 2.0).floor() as u32).max(1)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A unit that is a multiple of both `align` and `k` when that stays small, else `k`.
/// Alignment to tiles only saves redundant decoding; alignment to `k` is required so
/// that box blocks never straddle two chunks.
fn unit(align: u64, k: u64) -> u64 {
    let align = align.max(1);
    let lcm = align / gcd(align, k) * k;
    if lcm <= 8 * align.max(k) { lcm } else { k }
}

/// Cuts a `width` x `height` source into chunks aligned to the box factor `k` (and to
/// tiles where cheap), each at most about `budget_px` pixels (never less than one unit).
pub fn cut_into_chunks(
    width: u64,
    height: u64,
    k: u32,
    align: (u32, u32),
    budget_px: u64,
) -> Vec<Rect> {
    let k = u64::from(k.max(1));
    let unit_w = unit(u64::from(align.0), k);
    let unit_h = unit(u64::from(align.1), k);
    let budget_px = budget_px.max(unit_w * unit_h);
    let chunk_w = if width.saturating_mul(unit_h) <= budget_px {
        width
    } else {
        (budget_px / unit_h / unit_w).max(1) * unit_w
    };
    let chunk_h = ((budget_px / chunk_w.max(1) / unit_h).max(1) * unit_h).min(height.max(1));
    let mut chunks = Vec::new();
    let mut y = 0;
    while y < height {
        let h = chunk_h.min(height - y);
        let mut x = 0;
        while x < width {
            let w = chunk_w.min(width - x);
            chunks.push(Rect { x, y, w, h });
            x += w;
        }
        y += h;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cmu_small_region_thumbnail_is_766_by_1024() {
        assert_eq!(thumbnail_dims(2220, 2967, 1024), (766, 1024));
    }

    #[test]
    fn small_slides_are_not_enlarged() {
        assert_eq!(thumbnail_dims(500, 300, 1024), (500, 300));
        assert_eq!(thumbnail_dims(1024, 10, 1024), (1024, 10));
    }

    #[test]
    fn extreme_aspect_keeps_at_least_one_pixel() {
        assert_eq!(thumbnail_dims(100_000, 10, 1024), (1024, 1));
    }

    #[test]
    fn level_choice_picks_smallest_level_at_least_thumbnail() {
        // 40000 x 30000, 4x steps: 40000, 10000, 2500, 625.
        let levels = [(40000, 30000), (10000, 7500), (2500, 1875), (625, 469)];
        let t = thumbnail_dims(40000, 30000, 1024);
        assert_eq!(t, (1024, 768));
        assert_eq!(choose_level(&levels, t), 2);
        // Both directions must fit: a level wide enough but too short is skipped.
        let odd = [(4000, 4000), (2000, 700)];
        assert_eq!(choose_level(&odd, (1000, 1000)), 0);
    }

    #[test]
    fn jpeg_denominator_leaves_at_least_twice_the_thumbnail() {
        assert_eq!(jpeg_denominator((2500, 1875), (1024, 768)), 1);
        assert_eq!(jpeg_denominator((4096, 3072), (1024, 768)), 2);
        assert_eq!(jpeg_denominator((1250, 937), (1024, 768)), 1);
        assert_eq!(jpeg_denominator((30000, 30000), (1024, 1024)), 8);
        assert_eq!(jpeg_denominator((2220, 2967), (766, 1024)), 1);
    }

    #[test]
    fn box_factor_leaves_two_to_four_times_for_the_kernel() {
        assert_eq!(box_factor((1250, 937), (1024, 768)), 1);
        assert_eq!(box_factor((30000, 30000), (1024, 1024)), 14);
        assert_eq!(box_factor((4096, 4096), (1024, 1024)), 2);
    }

    proptest! {
        #[test]
        fn chunks_tile_the_source_exactly_and_respect_k(
            w in 1u64..20_000, h in 1u64..20_000, k in 1u32..40,
            aw in 1u32..600, ah in 1u32..600, budget in 1u64..5_000_000,
        ) {
            let chunks = cut_into_chunks(w, h, k, (aw, ah), budget);
            let area: u64 = chunks.iter().map(|c| c.w * c.h).sum();
            prop_assert_eq!(area, w * h);
            for c in &chunks {
                prop_assert!(c.x + c.w <= w && c.y + c.h <= h && c.w > 0 && c.h > 0);
                // Chunk origins sit on box-block boundaries.
                prop_assert_eq!(c.x % u64::from(k), 0);
                prop_assert_eq!(c.y % u64::from(k), 0);
            }
        }

        #[test]
        fn thumbnail_longest_side_is_the_requested_size(
            w in 1u64..200_000, h in 1u64..200_000, size in 16u32..4096,
        ) {
            let (tw, th) = thumbnail_dims(w, h, size);
            if w <= u64::from(size) && h <= u64::from(size) {
                prop_assert_eq!((u64::from(tw), u64::from(th)), (w, h));
            } else {
                prop_assert_eq!(tw.max(th), size);
                prop_assert!(tw >= 1 && th >= 1);
            }
        }
    }
}
