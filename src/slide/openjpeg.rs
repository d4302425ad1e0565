//! OpenJPEG (2.5.3, linked statically from `openjpeg-sys`) for what no Rust decoder on
//! our toolchain reads: HTJ2K codestreams. It runs only in the worker, where a fault
//! costs one slide. Every handle is owned by a guard, so an early return frees it; the
//! header is checked against the frame before the decoder allocates tiles.

use std::ffi::{CStr, c_char, c_void};
use std::ptr;

use openjpeg_sys as opj;

/// The codestream in memory, read through OpenJPEG's stream callbacks.
struct Source<'a> {
    data: &'a [u8],
    at: usize,
}

extern "C" fn read(buffer: *mut c_void, n: usize, user: *mut c_void) -> usize {
    // SAFETY: `user` is the `Source` set below, alive for the stream's life; `buffer`
    // holds `n` bytes (OpenJPEG's contract).
    let source = unsafe { &mut *(user as *mut Source) };
    let left = source.data.len() - source.at;
    if left == 0 {
        return usize::MAX; // (OPJ_SIZE_T)-1: end of stream
    }
    let take = left.min(n);
    unsafe {
        ptr::copy_nonoverlapping(source.data.as_ptr().add(source.at), buffer as *mut u8, take);
    }
    source.at += take;
    take
}

extern "C" fn skip(n: i64, user: *mut c_void) -> i64 {
    // SAFETY: as in `read`.
    let source = unsafe { &mut *(user as *mut Source) };
    let to = (source.at as i64)
        .saturating_add(n)
        .clamp(0, source.data.len() as i64);
    let moved = to - source.at as i64;
    source.at = to as usize;
    moved
}

extern "C" fn seek(to: i64, user: *mut c_void) -> i32 {
    // SAFETY: as in `read`.
    let source = unsafe { &mut *(user as *mut Source) };
    if to < 0 || to as u64 > source.data.len() as u64 {
        return 0;
    }
    source.at = to as usize;
    1
}

/// Keeps OpenJPEG's last error message (its text names what is wrong).
extern "C" fn on_error(message: *const c_char, user: *mut c_void) {
    if message.is_null() || user.is_null() {
        return;
    }
    // SAFETY: `user` is the `String` the decoder's guard owns; `message` a C string.
    let last = unsafe { &mut *(user as *mut String) };
    *last = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .trim()
        .to_string();
}

extern "C" fn quiet(_message: *const c_char, _user: *mut c_void) {}

/// The handles of one decode, freed in reverse order of creation.
struct Handles {
    stream: *mut opj::opj_stream_t,
    codec: *mut opj::opj_codec_t,
    image: *mut opj::opj_image_t,
}

impl Drop for Handles {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or owned by this guard alone.
        unsafe {
            if !self.image.is_null() {
                opj::opj_image_destroy(self.image);
            }
            if !self.codec.is_null() {
                opj::opj_destroy_codec(self.codec);
            }
            if !self.stream.is_null() {
                opj::opj_stream_destroy(self.stream);
            }
        }
    }
}

/// Decodes a raw codestream of `full` pixels at the deepest 2^k reduction up to
/// `denominator` the codestream allows; returns RGB and its size.
pub fn decode_reduced(
    bytes: &[u8],
    full: (u32, u32),
    denominator: u32,
) -> Result<(Vec<u8>, (u32, u32)), String> {
    let mut source = Source { data: bytes, at: 0 };
    let mut last_error = Box::new(String::new());
    let fail = |what: &str, last: &String| {
        if last.is_empty() {
            format!("OpenJPEG: {what} failed")
        } else {
            format!("OpenJPEG: {what}: {last}")
        }
    };
    // SAFETY: the calls follow OpenJPEG's documented order; `source` and `last_error`
    // outlive `handles` (declared after them, dropped first).
    unsafe {
        let mut handles = Handles {
            stream: opj::opj_stream_create(bytes.len().clamp(1, 1 << 20), 1),
            codec: opj::opj_create_decompress(opj::CODEC_FORMAT::OPJ_CODEC_J2K),
            image: ptr::null_mut(),
        };
        if handles.stream.is_null() || handles.codec.is_null() {
            return Err("OpenJPEG: out of memory".into());
        }
        opj::opj_stream_set_read_function(handles.stream, Some(read));
        opj::opj_stream_set_skip_function(handles.stream, Some(skip));
        opj::opj_stream_set_seek_function(handles.stream, Some(seek));
        opj::opj_stream_set_user_data(
            handles.stream,
            &mut source as *mut Source as *mut c_void,
            None,
        );
        opj::opj_stream_set_user_data_length(handles.stream, bytes.len() as u64);
        let user = &mut *last_error as *mut String as *mut c_void;
        opj::opj_set_error_handler(handles.codec, Some(on_error), user);
        opj::opj_set_warning_handler(handles.codec, Some(quiet), ptr::null_mut());
        opj::opj_set_info_handler(handles.codec, Some(quiet), ptr::null_mut());
        let mut parameters: opj::opj_dparameters_t = std::mem::zeroed();
        opj::opj_set_default_decoder_parameters(&mut parameters);
        if opj::opj_setup_decoder(handles.codec, &mut parameters) == 0 {
            return Err(fail("setting up the decoder", &last_error));
        }
        if opj::opj_read_header(handles.stream, handles.codec, &mut handles.image) == 0
            || handles.image.is_null()
        {
            return Err(fail("reading the main header", &last_error));
        }
        let image = &*handles.image;
        let (w, h) = (
            image.x1.saturating_sub(image.x0),
            image.y1.saturating_sub(image.y0),
        );
        if (w, h) != full {
            return Err(format!(
                "a codestream of {w} x {h} in a {} x {} frame",
                full.0, full.1
            ));
        }
        if !(1..=4).contains(&image.numcomps) || image.comps.is_null() {
            return Err(format!("{} components", image.numcomps));
        }
        let comps = std::slice::from_raw_parts(image.comps, image.numcomps as usize);
        if comps
            .iter()
            .any(|c| c.dx != 1 || c.dy != 1 || c.prec == 0 || c.prec > 16)
        {
            return Err("subsampled or deeper than 16-bit components".into());
        }
        // The deepest reduction the codestream has, up to the one asked for.
        let mut reduce = denominator.max(1).ilog2();
        while opj::opj_set_decoded_resolution_factor(handles.codec, reduce) == 0 {
            if reduce == 0 {
                return Err(fail("choosing the resolution", &last_error));
            }
            reduce -= 1;
        }
        if opj::opj_decode(handles.codec, handles.stream, handles.image) == 0
            || opj::opj_end_decompress(handles.codec, handles.stream) == 0
        {
            return Err(fail("decoding", &last_error));
        }
        let image = &*handles.image;
        let comps = std::slice::from_raw_parts(image.comps, image.numcomps as usize);
        let (cw, ch) = (comps[0].w, comps[0].h);
        if comps
            .iter()
            .any(|c| c.w != cw || c.h != ch || c.data.is_null())
            || (cw, ch) != (full.0.div_ceil(1 << reduce), full.1.div_ceil(1 << reduce))
        {
            return Err("decoded components of different sizes".into());
        }
        let pixels = cw as usize * ch as usize;
        let planes: Vec<(&[i32], u32, bool)> = comps
            .iter()
            .map(|c| {
                (
                    std::slice::from_raw_parts(c.data, pixels),
                    c.prec,
                    c.sgnd != 0,
                )
            })
            .collect();
        let mut samples = Vec::with_capacity(pixels * planes.len());
        for i in 0..pixels {
            for (plane, prec, signed) in &planes {
                samples.push(to_u8(plane[i], *prec, *signed));
            }
        }
        Ok((super::jpeg2000::to_rgb(&samples, pixels)?, (cw, ch)))
    }
}

/// A decoded sample of `prec` bits as 8 bits (signed samples are shifted to unsigned).
fn to_u8(value: i32, prec: u32, signed: bool) -> u8 {
    let unsigned = if signed {
        i64::from(value) + (1i64 << (prec - 1))
    } else {
        i64::from(value)
    };
    let max = (1i64 << prec) - 1;
    let v = unsigned.clamp(0, max);
    if prec <= 8 {
        (v << (8 - prec)) as u8
    } else {
        (v >> (prec - 8)) as u8
    }
}

/// The OpenJPEG linked in (for `--version` and the bench).
pub fn version() -> String {
    // SAFETY: a static C string.
    unsafe { CStr::from_ptr(opj::opj_version()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_of_any_precision_become_8_bits() {
        assert_eq!(to_u8(255, 8, false), 255);
        assert_eq!(to_u8(300, 8, false), 255);
        assert_eq!(to_u8(-1, 8, false), 0);
        assert_eq!(to_u8(-128, 8, true), 0);
        assert_eq!(to_u8(127, 8, true), 255);
        assert_eq!(to_u8(4095, 12, false), 255);
        assert_eq!(to_u8(1, 1, false), 128);
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let err = decode_reduced(&[0xFF, 0x4F, 0xFF, 0x51, 0, 0], (8, 8), 1).expect_err("garbage");
        assert!(err.starts_with("OpenJPEG"), "{err}");
        assert!(version().starts_with("2.5"), "{}", version());
    }
}
