//! Any bytes as a Hamamatsu NDPI file, after one control byte (see `common::Control`):
//! `NdpiFile::read`, the pyramid and metadata readers, and the NDPI planner
//! (`planning::ndpi_plan::read_plan`) never panic or hang; the planner never asks
//! a complete file for more bytes, and over a partly held object it ends with the
//! complete file's answer.
#![no_main]

mod common;

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use wsi_thumbnail::formats::ndpi::plan::read_plan;
use wsi_thumbnail::formats::ndpi::file::{self as ndpi, NdpiFile};

fuzz_target!(|data: &[u8]| {
    let Some((&control, file)) = data.split_first() else {
        return;
    };
    let c = common::Control::from(control);
    let mut cursor = Cursor::new(file);
    if let Ok(ndpi_file) = NdpiFile::read(&mut cursor) {
        assert!(!ndpi_file.directories.is_empty());
        for dir in &ndpi_file.directories {
            let _ = dir.out_of_line().count();
        }
        if let Ok(pyramid) = ndpi::pyramid(&mut cursor, &ndpi_file) {
            assert!(!pyramid.levels.is_empty());
            for level in &pyramid.levels {
                assert!(level.stream < pyramid.streams.len());
            }
            assert!(pyramid.smallest < pyramid.streams.len());
            // What the engine's direct path derives from each stream.
            for stream in &pyramid.streams {
                let _ = (stream.tiles(), stream.chunks());
            }
        }
        let _ = ndpi::metadata(&mut cursor, &ndpi_file);
    }
    let complete = read_plan(&mut Cursor::new(file), c.max_size, c.max_slide_pixels);
    common::check_plan(&complete);
    let held = (file.len() as u64 * c.held_32nds / 32) as usize;
    let partial =
        common::plan_partially(file, held, |p| read_plan(p, c.max_size, c.max_slide_pixels));
    common::assert_same(&complete, &partial);
});
