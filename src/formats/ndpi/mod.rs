//! Hamamatsu NDPI: a TIFF-like file whose directories link by 8-byte offsets past 4 GiB
//! ([`file`]), each level one JPEG with restart markers. Planned from its directories
//! and the chosen level's restart chunks ([`plan`], reached from the single-file planner,
//! which tells NDPI from TIFF by the held bytes); its levels decoded chunk by chunk at
//! reduced scale ([`read`]); OpenSlide gives the metadata (vendor `hamamatsu`).

pub mod file;
pub mod plan;
pub mod read;

use super::{LevelRead, SlideFormat};
use crate::slide::PixelPath;
use crate::slide::render::Rgb;

pub struct Ndpi;

impl SlideFormat for Ndpi {
    fn name(&self) -> &'static str {
        "ndpi"
    }

    /// OpenSlide's vendor for NDPI, and for VMS too: a VMS is not an NDPI file, so
    /// [`read::reduce`] declines it and OpenSlide reads it.
    fn vendors(&self) -> &'static [&'static str] {
        &["hamamatsu"]
    }

    fn decode_level(&self, level: &LevelRead<'_>) -> Option<(Rgb, PixelPath)> {
        read::reduce(
            level.path,
            level.levels,
            level.level_dims,
            level.target,
            level.background,
        )
    }
}
