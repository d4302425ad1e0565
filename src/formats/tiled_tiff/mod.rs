//! Tiled TIFF and BigTIFF: Aperio (`.svs`) and generic tiled TIFF, and every single
//! file no other room claims. Planned from the directories and the chosen level's tiles
//! ([`plan`], which hands NDPI to [`crate::formats::ndpi::plan`]: only the held bytes
//! tell them apart); JPEG and JPEG 2000 tiles decoded directly at reduced scale
//! ([`tiles`]); described as OpenSlide would open them ([`describe`]), so that a level
//! the direct path reads needs no OpenSlide at all; OpenSlide reads every other level.

pub mod describe;
pub mod plan;
pub mod tiles;

use super::{LevelRead, SlideFormat};
use crate::planning::{
    COALESCE_GAP, MAX_ANSWER_RANGES, PLAN_BLOCK, PlanAnswer, PlanRefusal, PlanTask, SlideLayout,
    in_file, open,
};
use crate::slide::render::{self, Rgb};
use crate::slide::{PixelPath, geometry};
use crate::storage::ranged::ranges::{self, ByteRange};
use plan::PlanError;
use tiles::JpegTileSource;

pub struct TiledTiff;

impl SlideFormat for TiledTiff {
    fn name(&self) -> &'static str {
        "tiled-tiff"
    }

    fn planned_layout(&self) -> Option<SlideLayout> {
        Some(SlideLayout::Single)
    }

    fn plan(&self, task: &PlanTask) -> Result<PlanAnswer, PlanRefusal> {
        plan_single(task)
    }

    /// Vendors whose levels are plain tiled TIFF directories (OpenSlide's own layout).
    fn vendors(&self) -> &'static [&'static str] {
        &["aperio", "generic-tiff"]
    }

    fn decode_level(&self, level: &LevelRead<'_>) -> Option<(Rgb, PixelPath)> {
        let tiff = level.tiff?;
        let path = level.path;
        let denominator = geometry::jpeg_denominator(level.level_dims, level.target);
        match JpegTileSource::open(path, tiff, level.level_dims, denominator, level.background) {
            Ok(source) => match render::reduce_source(&source, level.target) {
                Ok(image) => Some((image, PixelPath::JpegTiles { denominator })),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "direct JPEG decoding failed; retrying through OpenSlide");
                    None
                }
            },
            Err(why) => {
                tracing::debug!(path = %path.display(), reason = %why, "direct JPEG path not eligible");
                None
            }
        }
    }
}

/// A single-file slide: the TIFF planner (NDPI included) over the held bytes.
pub fn plan_single(task: &PlanTask) -> Result<PlanAnswer, PlanRefusal> {
    let file = &task.files[0];
    let mut copy = open(file)?;
    let whole = |reason: String| PlanAnswer::Whole {
        reason,
        members: vec![0],
    };
    match plan::read_plan(&mut copy, task.max_size, task.max_slide_pixels) {
        Ok(p) => {
            let merged = ranges::coalesce(p.ranges, file.size, COALESCE_GAP);
            if merged.len() > MAX_ANSWER_RANGES {
                return Ok(whole(format!(
                    "the plan has {} ranges after merging (at most {MAX_ANSWER_RANGES})",
                    merged.len()
                )));
            }
            Ok(PlanAnswer::Ranged {
                level: p.level,
                ranges: in_file(0, merged),
                members: vec![0],
            })
        }
        Err(PlanError::Unplannable(reason)) => Ok(whole(reason)),
        Err(PlanError::Need(wanted)) => {
            // Read ahead a block past each miss: the next directory is usually nearby.
            let blocks = wanted
                .into_iter()
                .map(|r| ByteRange::at(r.start, r.len().max(PLAN_BLOCK)));
            let missing = ranges::subtract(
                &ranges::coalesce(blocks, file.size, COALESCE_GAP),
                &ranges::coalesce(file.held.iter().copied(), file.size, 0),
            );
            if missing.is_empty() {
                // Asked for bytes it holds: a planner bug, not a reason to loop.
                return Ok(whole("the planner did not converge".into()));
            }
            Ok(PlanAnswer::Need {
                ranges: in_file(0, missing),
            })
        }
    }
}
