//! Pixel kernels for the streaming reduction: compositing OpenSlide's premultiplied ARGB
//! onto the slide background, and the integer box shrink applied to each chunk as it
//! arrives (so the working set depends on a chunk, never on the whole level).

/// Composites premultiplied ARGB (native-endian `u32`, i.e. B, G, R, A bytes on
/// little-endian machines, as OpenSlide returns it) onto `background`, writing RGB.
pub fn composite_argb(argb: &[u8], background: [u8; 3], rgb: &mut [u8]) {
    debug_assert_eq!(argb.len() / 4 * 3, rgb.len());
    for (px, out) in argb.chunks_exact(4).zip(rgb.chunks_exact_mut(3)) {
        let v = u32::from_ne_bytes([px[0], px[1], px[2], px[3]]);
        let a = v >> 24;
        let (r, g, b) = ((v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
        if a == 255 {
            out.copy_from_slice(&[r as u8, g as u8, b as u8]);
        } else {
            let inv = 255 - a;
            let blend =
                |c: u32, bg: u8| -> u8 { (c + (u32::from(bg) * inv + 127) / 255).min(255) as u8 };
            out[0] = blend(r, background[0]);
            out[1] = blend(g, background[1]);
            out[2] = blend(b, background[2]);
        }
    }
}

/// Output size of a box shrink by `k`: partial edge blocks are kept.
pub fn shrunk_dims(width: u64, height: u64, k: u32) -> (u64, u64) {
    (width.div_ceil(u64::from(k)), height.div_ceil(u64::from(k)))
}

/// Averages each `k` x `k` block of an RGB image (rounded; edge blocks average what
/// they cover). With `k == 1` this is a copy.
pub fn box_shrink(src: &[u8], width: usize, height: usize, k: u32, out: &mut Vec<u8>) {
    let k = k.max(1) as usize;
    let (ow, oh) = (width.div_ceil(k), height.div_ceil(k));
    out.clear();
    if k == 1 {
        out.extend_from_slice(&src[..width * height * 3]);
        return;
    }
    out.reserve(ow * oh * 3);
    let mut sums = vec![0u32; ow * 3];
    for oy in 0..oh {
        sums.iter_mut().for_each(|s| *s = 0);
        let rows = k.min(height - oy * k);
        for row in 0..rows {
            let line = &src[(oy * k + row) * width * 3..][..width * 3];
            for (ox, block) in line.chunks(k * 3).enumerate() {
                let s = &mut sums[ox * 3..ox * 3 + 3];
                for px in block.chunks_exact(3) {
                    s[0] += u32::from(px[0]);
                    s[1] += u32::from(px[1]);
                    s[2] += u32::from(px[2]);
                }
            }
        }
        for ox in 0..ow {
            let cols = k.min(width - ox * k);
            let n = (cols * rows) as u32;
            for c in 0..3 {
                out.push(((sums[ox * 3 + c] + n / 2) / n) as u8);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_pixels_pass_through_and_transparent_become_background() {
        let opaque = 0xff10_2030u32.to_ne_bytes();
        let clear = 0u32.to_ne_bytes();
        let argb = [opaque, clear].concat();
        let mut rgb = [0u8; 6];
        composite_argb(&argb, [250, 240, 230], &mut rgb);
        assert_eq!(rgb, [0x10, 0x20, 0x30, 250, 240, 230]);
    }

    #[test]
    fn half_transparent_premultiplied_blends_with_background() {
        // 50% alpha premultiplied black over white gives mid grey.
        let half = 0x8000_0000u32.to_ne_bytes();
        let mut rgb = [0u8; 3];
        composite_argb(&half, [255, 255, 255], &mut rgb);
        assert!(rgb.iter().all(|c| (126..=128).contains(c)), "{rgb:?}");
    }

    #[test]
    fn box_shrink_averages_blocks_including_partial_edges() {
        // 3 x 2 image, k = 2: blocks are 2x2 and 1x2.
        let src = [
            0, 0, 0, 10, 10, 10, 100, 100, 100, //
            20, 20, 20, 30, 30, 30, 200, 200, 200,
        ];
        let mut out = Vec::new();
        box_shrink(&src, 3, 2, 2, &mut out);
        assert_eq!(out, vec![15, 15, 15, 150, 150, 150]);
        assert_eq!(shrunk_dims(3, 2, 2), (2, 1));
    }

    #[test]
    fn box_shrink_by_one_is_identity() {
        let src: Vec<u8> = (0..=255).cycle().take(5 * 4 * 3).collect();
        let mut out = Vec::new();
        box_shrink(&src, 5, 4, 1, &mut out);
        assert_eq!(out, src);
    }
}
