//! Shared by the slide-planning targets: the control byte that chooses the planning
//! options, the "fetch what the planner says is missing" loop over a partly held object,
//! and the DICOM header read (a first block, grown while `scan_prefix` asks for more).
#![allow(dead_code)]

use bytes::Bytes;
use wsi_thumbnail::formats::dicom::{self, InstanceHeader, Scan};
use wsi_thumbnail::planning::partial::PartialObject;
use wsi_thumbnail::formats::tiled_tiff::plan::{PlanError, ReadPlan};
use wsi_thumbnail::storage::ranged::ranges;

/// Planning options from one control byte: bits 0-1 the thumbnail size, bit 2 a small
/// decompression-bomb limit, bits 3-7 how much of the object is held at first (in 32nds).
pub struct Control {
    pub max_size: u32,
    pub max_slide_pixels: u64,
    pub held_32nds: u64,
}

impl Control {
    pub fn from(byte: u8) -> Control {
        Control {
            max_size: [1024, 256, 4096, 1][usize::from(byte & 3)],
            max_slide_pixels: if byte & 4 == 0 {
                wsi_thumbnail::slide::DEFAULT_MAX_SLIDE_PIXELS
            } else {
                1 << 20
            },
            held_32nds: u64::from(byte >> 3),
        }
    }
}

/// Plans over a partial view of `file`: holds its first `held` bytes, then fetches (from
/// `file`) exactly the missing bytes each pass names, as `plan::decide` does, until the
/// planner answers. Checks that every `Need` names bytes inside the object that are not
/// held yet (else the real fetcher gives up: "the planner did not converge").
pub fn plan_partially(
    file: &[u8],
    held: usize,
    mut pass: impl FnMut(&mut PartialObject) -> Result<ReadPlan, PlanError>,
) -> Result<ReadPlan, PlanError> {
    let size = file.len() as u64;
    let mut partial = PartialObject::new(size);
    partial.insert(0, Bytes::copy_from_slice(&file[..held.min(file.len())]));
    // Each round adds at least one byte, so the object's size bounds the rounds.
    for _ in 0..=file.len() {
        let wanted = match pass(&mut partial) {
            Err(PlanError::Need(wanted)) => wanted,
            other => return other,
        };
        assert!(!wanted.is_empty(), "Need() names no bytes");
        for r in &wanted {
            assert!(
                r.start < r.end && r.end <= size,
                "Need({r:?}) outside an object of {size} bytes"
            );
        }
        let missing = ranges::subtract(
            &ranges::coalesce(wanted.iter().copied(), size, 0),
            &partial.held(),
        );
        assert!(
            !missing.is_empty(),
            "the planner asked for bytes it holds: {wanted:?}, held {:?}",
            partial.held()
        );
        for r in missing {
            let piece = &file[r.start as usize..r.end as usize];
            partial.insert(r.start, Bytes::copy_from_slice(piece));
        }
    }
    panic!("the planner did not finish in {} rounds", file.len() + 1);
}

/// Both answers describe the same decision: the same plan, or both unplannable.
pub fn assert_same(complete: &Result<ReadPlan, PlanError>, partial: &Result<ReadPlan, PlanError>) {
    match (complete, partial) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.flavour, b.flavour);
            assert_eq!(a.level, b.level);
            assert_eq!(a.ranges, b.ranges);
        }
        (Err(PlanError::Unplannable(_)), Err(PlanError::Unplannable(_))) => {}
        (a, b) => panic!("complete file: {a:?}\npartly held: {b:?}"),
    }
}

/// Checks a plan made over a complete file: never `Need`, no inverted range.
pub fn check_plan(plan: &Result<ReadPlan, PlanError>) {
    match plan {
        Ok(p) => {
            for r in &p.ranges {
                assert!(r.start <= r.end, "inverted range {r:?}");
            }
        }
        Err(PlanError::Need(n)) => panic!("a complete object needs more bytes: {n:?}"),
        Err(PlanError::Unplannable(_)) => {}
    }
}

/// One stored instance for the DICOM targets: `[u32 LE bytes past the blob][blob]`. The
/// blob is the object's first bytes; the object is `blob.len() + past` bytes long.
pub struct Instance<'a> {
    pub size: u64,
    pub held: &'a [u8],
}

impl<'a> Instance<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Instance<'a>> {
        let past = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
        let held = &data[4..];
        Some(Instance {
            size: held.len() as u64 + u64::from(past),
            held,
        })
    }
}

/// Reads one instance's header as the series fetch does: a first block of `first` bytes
/// (or all that is held, when less), then longer prefixes while `scan_prefix` answers
/// `NeedMore`. `None` when the scan asks for bytes past the held blob (a real fetch would
/// read them from the object) or fails. Checks that every `NeedMore` asks for more than
/// is held, within the object and the header limit.
pub fn read_header(instance: &Instance, first: u64) -> Option<InstanceHeader> {
    let mut have = first.min(instance.held.len() as u64);
    loop {
        if have > instance.held.len() as u64 {
            return None;
        }
        let prefix = &instance.held[..have as usize];
        match dicom::scan_prefix(prefix, instance.size) {
            Ok(Scan::Header(h)) => {
                assert!(
                    h.pixel_value_start <= have,
                    "pixel data at {} past the {have}-byte prefix",
                    h.pixel_value_start
                );
                return Some(*h);
            }
            Ok(Scan::NeedMore(wanted)) => {
                assert!(
                    wanted > have && wanted <= instance.size && wanted <= dicom::header::MAX_HEADER,
                    "NeedMore({wanted}) with {have} of {} bytes held",
                    instance.size
                );
                have = wanted;
            }
            Err(e) => {
                let _ = e.to_string();
                return None;
            }
        }
    }
}

/// libFuzzer's panic hook aborts at any panic, even one the code under test catches on
/// purpose (`dicom::scan_prefix` turns a panic inside the DICOM parser into a corrupt
/// header). Called first in each input: a panic that escapes the target still aborts,
/// through libfuzzer-sys's own `catch_unwind`.
pub fn let_caught_panics_be() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}
