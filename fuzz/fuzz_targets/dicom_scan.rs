//! Any bytes as the start of a DICOM instance: `[first-read selector][u32 LE bytes of the
//! object past these][the object's first bytes]`. The bounded header scan
//! (`dicom::scan_prefix`) is run as the series fetch runs it: a first block, then longer
//! prefixes while it answers `NeedMore`. It never panics, hangs or allocates past its
//! bounds; every `NeedMore` asks for more than it holds and at most the object; a header
//! it returns places the pixel data inside the prefix it read.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use wsi_thumbnail::formats::dicom::{self, frames, series};

fuzz_target!(|data: &[u8]| {
    common::let_caught_panics_be();
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some(instance) = common::Instance::parse(rest) else {
        return;
    };
    // The service's first read is 16 KiB; small ones exercise the NeedMore path.
    let first = match selector {
        0 => dicom::header::FIRST_READ,
        s => u64::from(s) * 8,
    };
    if let Some(h) = common::read_header(&instance, first) {
        // What the series planner and the engine derive from one header alone.
        let _ = frames::grid(&h);
        if frames::check_frame_geometry(&h).is_ok() {
            let _ = frames::placements(&h);
        }
        let _ = wsi_thumbnail::formats::dicom::codec::FrameCodec::of(&h);
    }
    // The whole held prefix at once, as a file read locally is scanned.
    let _ = dicom::scan_prefix(instance.held, instance.size);
});
