//! One JPEG-LS frame (DICOM .4.80 lossless, .4.81 near-lossless) as RGB, through CharLS
//! (C++, built from source by `charls-sys` and linked statically; no maintained Rust
//! decoder exists). It runs only in the worker. JPEG-LS has no reduced-resolution
//! decode, so the frame is decoded whole (at most 16384 x 16384 by the frame checks,
//! and its header must match the frame before anything is allocated) and the caller
//! box-averages it.

use std::ffi::CStr;

use charls_sys as charls;

/// The decoder handle, destroyed on every path.
struct Decoder(*mut charls::charls_jpegls_decoder);

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created by `charls_jpegls_decoder_create`, destroyed once.
        unsafe { charls::charls_jpegls_decoder_destroy(self.0) }
    }
}

fn check(code: charls::charls_jpegls_errc, what: &str) -> Result<(), String> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: CharLS returns a static message for every code.
    let message = unsafe { CStr::from_ptr(charls::charls_get_error_message(code)) };
    Err(format!("JPEG-LS {what}: {}", message.to_string_lossy()))
}

/// The interleave mode of the first scan (0 none: one component per scan, 1 line,
/// 2 sample), from the SOS segment; `None` if there is no scan.
fn interleave_mode(bytes: &[u8]) -> Option<u8> {
    let at = bytes.windows(2).position(|w| w == [0xFF, 0xDA])?;
    let components = usize::from(*bytes.get(at + 4)?);
    // SOS: marker, Ls (2), Ns, Ns x (Ci, Tmi), NEAR, ILV.
    bytes.get(at + 5 + 2 * components + 1).copied()
}

/// Decodes `bytes`, a JPEG-LS stream of exactly `full` pixels with 8-bit samples, into
/// `out` as interleaved RGB at full size.
pub fn decode(bytes: &[u8], full: (u32, u32), out: &mut Vec<u8>) -> Result<(), String> {
    // SAFETY: the calls follow CharLS's documented order; `bytes` outlives the decoder
    // and the destination buffer is the size CharLS asks for.
    let samples = unsafe {
        let decoder = Decoder(charls::charls_jpegls_decoder_create());
        if decoder.0.is_null() {
            return Err("JPEG-LS: out of memory".into());
        }
        check(
            charls::charls_jpegls_decoder_set_source_buffer(
                decoder.0,
                bytes.as_ptr().cast(),
                bytes.len(),
            ),
            "source",
        )?;
        check(
            charls::charls_jpegls_decoder_read_header(decoder.0),
            "header",
        )?;
        let mut info = charls::charls_frame_info {
            width: 0,
            height: 0,
            bits_per_sample: 0,
            component_count: 0,
        };
        check(
            charls::charls_jpegls_decoder_get_frame_info(decoder.0, &mut info),
            "frame",
        )?;
        if (info.width, info.height) != full {
            return Err(format!(
                "a JPEG-LS stream of {} x {} in a {} x {} frame",
                info.width, info.height, full.0, full.1
            ));
        }
        if info.bits_per_sample != 8 || !matches!(info.component_count, 1 | 3) {
            return Err(format!(
                "JPEG-LS of {} components of {} bits; 1 or 3 of 8 are decoded",
                info.component_count, info.bits_per_sample
            ));
        }
        let mut size = 0usize;
        check(
            charls::charls_jpegls_decoder_get_destination_size(decoder.0, 0, &mut size),
            "size",
        )?;
        let expected = full.0 as usize * full.1 as usize * info.component_count as usize;
        if size != expected {
            return Err(format!("JPEG-LS wants {size} bytes for {expected}"));
        }
        let mut samples = vec![0u8; size];
        check(
            charls::charls_jpegls_decoder_decode_to_buffer(
                decoder.0,
                samples.as_mut_ptr().cast(),
                size,
                0,
            ),
            "decode",
        )?;
        (samples, info.component_count)
    };
    let (samples, components) = samples;
    let pixels = full.0 as usize * full.1 as usize;
    out.clear();
    out.reserve(pixels * 3);
    match (components, interleave_mode(bytes)) {
        (1, _) => out.extend(samples.iter().flat_map(|&v| [v, v, v])),
        // One scan per component: CharLS writes the planes one after another.
        (_, Some(0)) => {
            let (r, rest) = samples.split_at(pixels);
            let (g, b) = rest.split_at(pixels);
            for i in 0..pixels {
                out.extend_from_slice(&[r[i], g[i], b[i]]);
            }
        }
        _ => out.extend_from_slice(&samples),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_header_gives_the_interleave_mode() {
        // SOS: Ls 12, Ns 3, three (Ci, Tmi), NEAR 0, ILV 2.
        let sos = [0xFF, 0xDA, 0, 12, 3, 1, 0, 2, 0, 3, 0, 0, 2];
        assert_eq!(interleave_mode(&sos), Some(2));
        assert_eq!(interleave_mode(&sos[..10]), None);
        assert_eq!(interleave_mode(b"no scan"), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let mut out = Vec::new();
        assert!(decode(&[0xFF, 0xD8, 0xFF, 0xF7, 0, 2], (8, 8), &mut out).is_err());
        assert!(decode(&[], (8, 8), &mut out).is_err());
    }
}
