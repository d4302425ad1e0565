//! Planning a ranged read where slide bytes may be parsed: inside the slide's own worker
//! process (or the calling process under `thumbnail.isolation = "none"`).
//!
//! Why: a plan is made by parsing the slide's directories and headers, and those are as
//! hostile as its pixels (a 379 KB TIFF once expanded into 268 M ranges and aborted the
//! service). So the service never plans: it creates the slide's sparse local copies,
//! asks the worker for a [`PlanTask`], fetches what the [`PlanAnswer`] names into the
//! copies, and asks again until the answer is final. The worker reads the copies
//! through [`held::HeldFile`], which refuses bytes not fetched yet, and runs the format
//! planners: [`tiff_plan`] (TIFF and BigTIFF, handing NDPI to [`ndpi_plan`]) for one
//! file, [`series`] for the instances of a DICOM series. [`partial`] is the in-memory
//! twin of the held view (tests and fuzzing), and the `Missing` error both raise.
//!
//! Everything that crosses back to the service is bounded here: ranges are merged
//! across small gaps and their number capped, so a hostile layout costs the worker (under
//! its memory cap and deadline), never the service.

pub mod held;
pub mod ndpi_plan;
pub mod partial;
pub mod series;
pub mod tiff_plan;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error_kind::ErrorKind;
use crate::storage::ranged::ranges::{self, ByteRange};
use held::HeldFile;
use tiff_plan::PlanError;

/// Ranges closer than this are merged: reading a small gap costs less than a request.
pub const COALESCE_GAP: u64 = 16 * 1024;
/// The unit of planning reads: one block usually holds a directory and its values.
pub const PLAN_BLOCK: u64 = 64 * 1024;
/// Most ranges one answer may carry after merging. A plan needing more is read whole
/// (a real level of hundreds of thousands of tiles merges into a few ranges).
pub const MAX_ANSWER_RANGES: usize = 65_536;

/// One file of a slide: its local sparse copy, its size and the ranges fetched so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanFile {
    pub path: PathBuf,
    /// The object's size (the copy is this long; unfetched bytes are holes).
    pub size: u64,
    pub held: Vec<ByteRange>,
}

/// What the service asks: which bytes of these files the thumbnail needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanTask {
    /// The linked file first; for a DICOM link, the folder's other candidates after it.
    pub files: Vec<PlanFile>,
    pub dicom: bool,
    pub max_size: u32,
    pub max_slide_pixels: u64,
}

/// A range of one of the task's files (by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRange {
    pub file: u32,
    pub range: ByteRange,
}

/// What the planner says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum PlanAnswer {
    /// Fetch these, then ask again.
    Need { ranges: Vec<FileRange> },
    /// The plan is final: these ranges (merged), of these files (the slide's members).
    Ranged {
        level: usize,
        ranges: Vec<FileRange>,
        members: Vec<u32>,
    },
    /// Read these files whole (the reason is a log field).
    Whole { reason: String, members: Vec<u32> },
}

/// The slide is refused while planning, with the kind the engine would give it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanRefusal {
    pub kind: ErrorKind,
    pub message: String,
}

impl PlanRefusal {
    pub fn corrupt(message: impl Into<String>) -> PlanRefusal {
        PlanRefusal {
            kind: ErrorKind::CorruptSlide,
            message: message.into(),
        }
    }
}

/// One planning pass over the bytes fetched so far.
pub fn plan_slide(task: &PlanTask) -> Result<PlanAnswer, PlanRefusal> {
    if task.files.is_empty() {
        return Err(PlanRefusal::corrupt("no file to plan"));
    }
    if task.dicom {
        series::plan_series(task)
    } else {
        plan_single(task)
    }
}

/// A single-file slide: the TIFF planner (NDPI included) over the held bytes.
fn plan_single(task: &PlanTask) -> Result<PlanAnswer, PlanRefusal> {
    let file = &task.files[0];
    let mut copy = open(file)?;
    let whole = |reason: String| PlanAnswer::Whole {
        reason,
        members: vec![0],
    };
    match tiff_plan::read_plan(&mut copy, task.max_size, task.max_slide_pixels) {
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

fn open(file: &PlanFile) -> Result<HeldFile, PlanRefusal> {
    HeldFile::open(&file.path, file.size, &file.held).map_err(|e| PlanRefusal {
        kind: ErrorKind::Internal,
        message: format!("cannot open the local copy {}: {e}", file.path.display()),
    })
}

fn in_file(file: u32, ranges: Vec<ByteRange>) -> Vec<FileRange> {
    ranges
        .into_iter()
        .map(|range| FileRange { file, range })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(path: PathBuf, size: u64, held: Vec<ByteRange>) -> PlanTask {
        PlanTask {
            files: vec![PlanFile { path, size, held }],
            dicom: false,
            max_size: 1024,
            max_slide_pixels: u64::MAX,
        }
    }

    #[test]
    fn a_tiff_is_planned_over_rounds_of_held_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slide.tif");
        let spec = crate::fixtures::pyramid::SlideSpec::aperio(4000, 3000, 4);
        crate::fixtures::pyramid::write_slide(&path, &spec).expect("fixture");
        let size = std::fs::metadata(&path).unwrap().len();
        let mut held = Vec::new();
        for _ in 0..16 {
            match plan_slide(&task(path.clone(), size, held.clone())).expect("plannable") {
                PlanAnswer::Need { ranges } => {
                    assert!(ranges.iter().all(|r| r.file == 0 && !r.range.is_empty()));
                    held.extend(ranges.iter().map(|r| r.range));
                }
                PlanAnswer::Ranged {
                    ranges, members, ..
                } => {
                    assert_eq!(members, vec![0]);
                    assert!(!ranges.is_empty());
                    return;
                }
                PlanAnswer::Whole { reason, .. } => panic!("read whole: {reason}"),
            }
        }
        panic!("no plan in 16 rounds");
    }

    #[test]
    fn answers_cross_the_protocol_as_json() {
        let answer = PlanAnswer::Need {
            ranges: vec![FileRange {
                file: 2,
                range: ByteRange::at(10, 5),
            }],
        };
        let text = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            text,
            r#"{"answer":"need","ranges":[{"file":2,"range":[10,15]}]}"#
        );
        assert_eq!(serde_json::from_str::<PlanAnswer>(&text).unwrap(), answer);
    }
}
