//! DICOM VL Whole Slide Microscopy series, read from byte prefixes and byte ranges.
//!
//! A link to any one instance (`.dcm`) names the slide (contract §1). A series stores
//! one pyramid level per instance (or several, concatenated), each a grid of frames
//! (JPEG, JPEG 2000, HTJ2K or uncompressed).
//! This module knows the format and nothing about where the bytes come from, so the
//! storage side (ranged GETs of a bucket) and the engine (a local folder, possibly of
//! sparse copies) share it:
//! - [`meta`]: the file meta group, walked without allocating what it declares.
//! - [`attributes`]: the few values a header keeps from its one walk over the data set.
//! - [`header`]: one instance's header from a byte prefix, bounded before any allocation
//!   (`scan_prefix` asks for a longer prefix until the header is complete).
//! - [`series`]: which siblings belong to the linked slide, the levels, the checks, the
//!   metadata, the chosen level and the byte ranges making its thumbnail reads.
//! - [`codec`]: which decoder an instance's transfer syntax and pixel description need.
//! - [`frames`]: where each frame sits (TILED_FULL / TILED_SPARSE) and where its bytes are
//!   (offset tables or the item walk).
//!
//! Parsing uses the dicom-rs crates; every length a header declares is checked against
//! the bytes at hand and the object size first (see `header`).

pub mod attributes;
pub mod codec;
pub mod error;
pub mod frames;
pub mod header;
pub mod meta;
pub mod plan;
pub mod series;
pub mod slide;
pub mod source;

pub use error::DicomError;
pub use header::{InstanceHeader, Scan, is_dicom, scan_prefix};
pub use series::{is_candidate, pixel_ranges};

use std::path::Path;

use super::SlideFormat;
use crate::planning::{PlanAnswer, PlanRefusal, PlanTask, SlideLayout};
use crate::slide::{Reduced, SlideError, ThumbnailOptions};

/// DICOM VL Whole Slide Microscopy: linked by any instance (`.dcm`), planned from the
/// instances' headers, read by the engine alone (no OpenSlide).
pub struct Dicom;

impl SlideFormat for Dicom {
    fn name(&self) -> &'static str {
        "dicom"
    }

    fn link_layout(&self, object: &str) -> Option<SlideLayout> {
        Path::new(object)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("dcm"))
            .then_some(SlideLayout::DicomSeries)
    }

    fn planned_layout(&self) -> Option<SlideLayout> {
        Some(SlideLayout::DicomSeries)
    }

    fn plan(&self, task: &PlanTask) -> Result<PlanAnswer, PlanRefusal> {
        plan::plan_series(task)
    }

    fn reads_alone(&self, path: &Path) -> bool {
        slide::is_dicom_file(path)
    }

    fn reduce_alone(&self, path: &Path, options: &ThumbnailOptions) -> Result<Reduced, SlideError> {
        slide::reduce_dicom(path, options)
    }
}
