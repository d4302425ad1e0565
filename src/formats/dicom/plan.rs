//! Planning the ranged read of a DICOM series, inside the slide's worker.
//!
//! A DICOM slide is one instance file per level, linked by any one of them. The service
//! lists the link's folder, creates a sparse copy of every candidate and asks here; this
//! reads each candidate's header from the bytes fetched so far ([`dicom::scan_prefix`],
//! bounded before it allocates), asks for a longer prefix where a header goes on, and
//! once every header is complete asks the series planner ([`dicom::pixel_ranges`])
//! which pixel bytes the engine will read.
//!
//! Siblings that are not DICOM are passed over, as the engine does. A DICOM sibling
//! whose header is broken fails the slide, since its series cannot be known.

use crate::formats::dicom::{self, InstanceHeader, Scan};
use crate::planning::{FileRange, PlanAnswer, PlanFile, PlanRefusal, PlanTask, in_file};
use crate::slide::{DecoderChoice, ThumbnailOptions};
use crate::storage::ranged::ranges::{self, ByteRange};

/// First read of each instance: a whole-slide instance's header is a few KiB (per-frame
/// positions of a sparse tiling make it larger; the scan asks for more).
pub const HEAD_BLOCK: u64 = 16 * 1024;
/// Largest header: past this the instance is refused rather than read on.
pub const MAX_HEADER: u64 = 64 * 1024 * 1024;
/// Most header bytes one series may need, all instances together: a folder of large
/// headers must not multiply [`MAX_HEADER`] by the number of instances.
pub const MAX_SERIES_HEADERS: u64 = 128 * 1024 * 1024;

/// One planning pass over the series' held prefixes.
pub fn plan_series(task: &PlanTask) -> Result<PlanAnswer, PlanRefusal> {
    let mut need = Vec::new();
    let mut heads: Vec<(String, u64, InstanceHeader)> = Vec::new();
    let mut members = Vec::new();
    let mut header_bytes = 0u64;
    for (index, file) in task.files.iter().enumerate() {
        let index = index as u32;
        let head = head_of(file, index == 0)?;
        header_bytes = header_bytes.saturating_add(head.read);
        if header_bytes > MAX_SERIES_HEADERS {
            return Err(PlanRefusal::corrupt(format!(
                "the series' headers add up to more than {} MiB",
                MAX_SERIES_HEADERS >> 20
            )));
        }
        match head.state {
            HeadState::Wants(range) => need.push(FileRange { file: index, range }),
            HeadState::NotDicom => {}
            HeadState::Complete(header) => {
                heads.push((name_of(file), file.size, *header));
                members.push(index);
            }
        }
    }
    if !need.is_empty() {
        return Ok(PlanAnswer::Need { ranges: need });
    }
    let options = ThumbnailOptions {
        max_size: task.max_size,
        max_slide_pixels: task.max_slide_pixels,
        decoder: DecoderChoice::Auto,
        ..ThumbnailOptions::default()
    };
    let linked = name_of(&task.files[0]);
    let wanted = dicom::pixel_ranges(&linked, &heads, &options).map_err(refusal)?;
    let mut out = Vec::new();
    for (member, (name, size, _)) in members.iter().zip(&heads) {
        let mine = wanted
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, r)| ByteRange {
                start: r.start,
                end: r.end,
            });
        out.extend(in_file(
            *member,
            ranges::coalesce(mine, *size, crate::planning::COALESCE_GAP),
        ));
    }
    Ok(PlanAnswer::Ranged {
        level: 0,
        ranges: out,
        members,
    })
}

/// Where one instance's header stands.
struct Head {
    /// Bytes of the prefix read.
    read: u64,
    state: HeadState,
}

enum HeadState {
    /// Fetch this range, then scan again.
    Wants(ByteRange),
    /// A sibling that is not DICOM ("DICM" at 128): passed over.
    NotDicom,
    Complete(Box<InstanceHeader>),
}

fn head_of(file: &PlanFile, linked: bool) -> Result<Head, PlanRefusal> {
    let first = HEAD_BLOCK.min(file.size);
    let copy = crate::planning::open(file)?;
    let have = copy.held_prefix().min(file.size);
    if have < first {
        return Ok(Head {
            read: 0,
            state: HeadState::Wants(ByteRange {
                start: have,
                end: first,
            }),
        });
    }
    let prefix = read_prefix(file, have)?;
    if !linked && !dicom::is_dicom(&prefix) {
        return Ok(Head {
            read: 0,
            state: HeadState::NotDicom,
        });
    }
    let state = match dicom::scan_prefix(&prefix, file.size).map_err(refusal)? {
        Scan::Header(header) => HeadState::Complete(header),
        Scan::NeedMore(wanted) => {
            let wanted = wanted.min(file.size);
            if wanted <= have || wanted > MAX_HEADER {
                return Err(PlanRefusal::corrupt(format!(
                    "{}: its DICOM header does not end within {} bytes (of {})",
                    name_of(file),
                    wanted.max(have),
                    file.size
                )));
            }
            // Grow at least twofold, so a long header costs few round trips.
            let end = wanted.max(have * 2).min(file.size).min(MAX_HEADER);
            HeadState::Wants(ByteRange { start: have, end })
        }
    };
    Ok(Head { read: have, state })
}

fn read_prefix(file: &PlanFile, len: u64) -> Result<Vec<u8>, PlanRefusal> {
    use std::os::unix::fs::FileExt;
    let mut bytes = vec![0u8; len as usize];
    std::fs::File::open(&file.path)
        .and_then(|f| f.read_exact_at(&mut bytes, 0))
        .map_err(|e| PlanRefusal {
            kind: crate::error_kind::ErrorKind::Internal,
            message: format!("cannot read the local copy {}: {e}", file.path.display()),
        })?;
    Ok(bytes)
}

fn name_of(file: &PlanFile) -> String {
    file.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What the headers say is wrong, with the kind the engine would report for it.
fn refusal(e: dicom::DicomError) -> PlanRefusal {
    let message = format!("DICOM: {e}");
    PlanRefusal {
        kind: e.into_slide_error(std::path::Path::new("")).kind(),
        message,
    }
}
