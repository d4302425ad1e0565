//! Any bytes as a DICOM series: `[control byte][instance]` then more instances, each
//! after the separator `--next-instance--`, each `[u32 LE bytes past these][the
//! instance's first bytes]` (at most 16). Each header is read as the series fetch reads
//! it (`dicom::scan_prefix` and its NeedMore loop); those that scan are named
//! `level-<i>.dcm` and handed to the series planner (`dicom::pixel_ranges`, which builds
//! the series), linking the one the control byte picks, with the control byte's
//! thumbnail size and pixel limit. It never panics or hangs, and the ranges it answers
//! lie inside the instances it names.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use wsi_thumbnail::formats::dicom::{self, series};
use wsi_thumbnail::slide::{DecoderChoice, ThumbnailOptions};

const SEPARATOR: &[u8] = b"--next-instance--";
const MAX_INSTANCES: usize = 16;
/// The series fetch's first read of each instance.
const HEAD_BLOCK: u64 = 16 * 1024;

fn split(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while out.len() + 1 < MAX_INSTANCES {
        match data.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(at) => {
                out.push(&data[..at]);
                data = &data[at + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(data);
    out
}

fuzz_target!(|data: &[u8]| {
    common::let_caught_panics_be();
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let c = common::Control::from(control);
    let mut instances = Vec::new();
    for (i, blob) in split(rest).into_iter().enumerate() {
        let Some(instance) = common::Instance::parse(blob) else {
            continue;
        };
        if let Some(h) = common::read_header(&instance, HEAD_BLOCK) {
            instances.push((format!("level-{i}.dcm"), instance.size, h));
        }
    }
    if instances.is_empty() {
        return;
    }
    let options = ThumbnailOptions {
        max_size: c.max_size,
        max_slide_pixels: c.max_slide_pixels,
        decoder: DecoderChoice::Auto,
        ..ThumbnailOptions::default()
    };
    let linked = instances[c.held_32nds as usize % instances.len()].0.clone();
    if let Ok(s) = series::build_series(&linked, &instances, &options) {
        assert!(!s.levels.is_empty());
        let (level, _) = series::chosen_level(&s, &options);
        assert!(
            level < s.levels.len(),
            "level {level} of {}",
            s.levels.len()
        );
    }
    if let Ok(ranges) = dicom::pixel_ranges(&linked, &instances, &options) {
        for (name, range) in ranges {
            let (_, size, _) = instances
                .iter()
                .find(|(n, _, _)| *n == name)
                .expect("a range names an instance of the series");
            assert!(
                range.start < range.end && range.end <= *size,
                "{name}: {range:?} in an object of {size} bytes"
            );
        }
    }
});
