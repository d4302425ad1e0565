//! Any bytes as a TIFF/BigTIFF (or NDPI) slide, after one control byte (see
//! `common::Control`): the ranged planner (`planning::tiff_plan::read_plan`, which
//! detects NDPI first) never panics or hangs; over the complete file it never asks for
//! more bytes; over a partly held object (`PartialObject`, a prefix of the file, each
//! `Need(...)` then fetched) every `Need` names bytes not held yet, and the answer it
//! ends with is the complete file's.
#![no_main]

mod common;

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use wsi_thumbnail::formats::tiled_tiff::plan::read_plan;

fuzz_target!(|data: &[u8]| {
    let Some((&control, file)) = data.split_first() else {
        return;
    };
    let c = common::Control::from(control);
    let complete = read_plan(&mut Cursor::new(file), c.max_size, c.max_slide_pixels);
    common::check_plan(&complete);
    let held = (file.len() as u64 * c.held_32nds / 32) as usize;
    let partial =
        common::plan_partially(file, held, |p| read_plan(p, c.max_size, c.max_slide_pixels));
    common::assert_same(&complete, &partial);
});
