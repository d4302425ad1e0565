//! Any bytes as a JPEG 2000 frame (a DICOM .90/.91 frame, an Aperio 33003/33005 tile),
//! after one control byte choosing the frame size (32 to 256, square) and the scale
//! (1, 2, 4, 8): the main-header reader and the Part 1 decoder (hayro-jpeg2000, with its
//! panics caught) never crash, hang or allocate past the frame, and a success is exactly
//! the scaled frame. HTJ2K codestreams go to OpenJPEG (C, inside the worker only) and
//! are not fuzzed here.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsi_thumbnail::slide::jpeg2000::{Coding, decode_scaled, main_header};

fuzz_target!(|data: &[u8]| {
    let Some((&control, codestream)) = data.split_first() else {
        return;
    };
    let side = 32u32 << (control & 0b11);
    let denominator = 1u32 << ((control >> 2) & 0b11);
    match main_header(codestream) {
        Some(h) if h.coding == Coding::Part1 => {}
        _ => return,
    }
    let mut out = Vec::new();
    if decode_scaled(codestream, (side, side), denominator, &mut out).is_ok() {
        let scaled = (side / denominator) as usize;
        assert_eq!(out.len(), scaled * scaled * 3);
    }
});
