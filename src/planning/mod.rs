//! Planning a ranged read where slide bytes may be parsed: inside the slide's own worker
//! process (or the calling process under `thumbnail.isolation = "none"`).
//!
//! Why: a plan is made by parsing the slide's directories and headers, and those are as
//! hostile as its pixels (a 379 KB TIFF once expanded into 268 M ranges and aborted the
//! service). So the service never plans: it creates the slide's sparse local copies,
//! asks the worker for a [`PlanTask`], fetches what the [`PlanAnswer`] names into the
//! copies, and asks again until the answer is final. The worker reads the copies
//! through [`held::HeldFile`], which refuses bytes not fetched yet, and asks the format
//! that plans the task's layout ([`crate::formats::planner`]): each format's room holds
//! its planner. [`partial`] is the in-memory twin of the held view (tests and fuzzing),
//! and the `Missing` error both raise; [`named_files`] is what the planners of formats
//! made of a header and the files it names share.
//!
//! Everything that crosses back to the service is bounded here: ranges are merged
//! across small gaps and their number capped, so a hostile layout costs the worker (under
//! its memory cap and deadline), never the service.

pub mod held;
pub mod named_files;
pub mod partial;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error_kind::ErrorKind;
use crate::storage::ranged::ranges::ByteRange;
use held::HeldFile;

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

/// How a slide's files are laid out, which decides the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlideLayout {
    /// One file (TIFF, BigTIFF, NDPI, or anything else read whole).
    Single,
    /// A DICOM series: the linked instance and its folder's other candidates.
    DicomSeries,
    /// A MIRAX `.mrxs` and its companion folder's objects (`<stem>/<name>`).
    Mirax,
    /// A Hamamatsu `.vms`/`.vmu` header and the objects beside it.
    Vms,
}

/// What the service asks: which bytes of these files the thumbnail needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanTask {
    /// The linked file first; for a multi-file layout, the candidates after it.
    pub files: Vec<PlanFile>,
    pub layout: SlideLayout,
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
    let format = crate::formats::planner(task.layout)
        .ok_or_else(|| PlanRefusal::corrupt(format!("no format plans {:?} slides", task.layout)))?;
    format.plan(task)
}

pub(crate) fn open(file: &PlanFile) -> Result<HeldFile, PlanRefusal> {
    HeldFile::open(&file.path, file.size, &file.held).map_err(|e| PlanRefusal {
        kind: ErrorKind::Internal,
        message: format!("cannot open the local copy {}: {e}", file.path.display()),
    })
}

pub(crate) fn in_file(file: u32, ranges: Vec<ByteRange>) -> Vec<FileRange> {
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
            layout: SlideLayout::Single,
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
