//! Interleaving three planes into RGB pixels, vectorised where the CPU allows.
//!
//! Why: an RGB (untransformed) JPEG decoded to RGB goes through libjpeg-turbo's
//! `null_convert`, a scalar per-sample copy that was 8% of CMU-1-Small-Region's thumbnail
//! CPU. Decoded as planes instead (no colour conversion at all), the same samples are
//! interleaved here: the plain loop below, compiled for AVX2 and picked at run time, ran
//! at 0.08 ns a pixel against `null_convert`'s 0.8 on this machine (0.45 for the loop at
//! the x86-64 baseline the binary is built for).

/// Writes `r[i], g[i], b[i]` to `rgb[3i..3i + 3]` for every pixel the four slices share.
pub fn interleave(r: &[u8], g: &[u8], b: &[u8], rgb: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above (std caches the answer).
        return unsafe { interleave_avx2(r, g, b, rgb) };
    }
    interleave_any(r, g, b, rgb);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn interleave_avx2(r: &[u8], g: &[u8], b: &[u8], rgb: &mut [u8]) {
    interleave_any(r, g, b, rgb);
}

/// The loop LLVM vectorises into byte shuffles when it may use AVX2.
#[inline(always)]
fn interleave_any(r: &[u8], g: &[u8], b: &[u8], rgb: &mut [u8]) {
    for (((px, r), g), b) in rgb.chunks_exact_mut(3).zip(r).zip(g).zip(b) {
        px[0] = *r;
        px[1] = *g;
        px[2] = *b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_interleave_into_pixels_whatever_the_length() {
        for n in [0usize, 1, 15, 16, 17, 31, 32, 33, 240, 1000] {
            let r: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let g: Vec<u8> = (0..n).map(|i| (i * 7 + 1) as u8).collect();
            let b: Vec<u8> = (0..n).map(|i| (i * 13 + 2) as u8).collect();
            let mut rgb = vec![0xAA; n * 3 + 3];
            interleave(&r, &g, &b, &mut rgb[..n * 3]);
            for i in 0..n {
                assert_eq!(
                    &rgb[3 * i..3 * i + 3],
                    &[r[i], g[i], b[i]],
                    "pixel {i} of {n}"
                );
            }
            assert_eq!(&rgb[n * 3..], &[0xAA; 3], "nothing written past the pixels");
            // The portable loop agrees with whichever one ran.
            let mut portable = vec![0xAA; n * 3 + 3];
            interleave_any(&r, &g, &b, &mut portable[..n * 3]);
            assert_eq!(portable, rgb);
        }
    }
}
