//! The NDPI flavour of the [`crate::planning::plan`]: which bytes of a Hamamatsu NDPI file
//! OpenSlide 3.4.1 and the engine's direct path ([`crate::formats::ndpi::read`]) read for one
//! thumbnail.
//!
//! - the header and every directory, NDPI-style (entries, 8-byte next offset and the
//!   block of high-32-bit extensions), with every value stored out of line (McuStarts,
//!   resolutions, the property map): OpenSlide's TIFF parser loads them at open;
//! - the first [`HEADER_PREFIX`] bytes of every directory's strip: OpenSlide reads the
//!   JPEG header of every level (and of the macro image) when it opens the file;
//! - the narrowest native level's whole strip when it is at most 5 MiB: OpenSlide hashes
//!   it for `openslide.quickhash-1`;
//! - the whole strip of the native level behind the level the engine reads (a derived
//!   level is its native level decoded smaller): the direct path scans it for restart
//!   markers and decodes its chunks.
//!
//! Files the direct path would not take (no restart markers, a stream over
//! [`MAX_STREAM_BYTES`], offsets OpenSlide 3.4.1 guesses differently) are
//! [`PlanError::Unplannable`]: OpenSlide then reads them whole, so they are fetched whole.

use std::io::{Read, Seek, SeekFrom};

use crate::formats::ndpi::file::{self as ndpi, HEADER_PREFIX, NdpiError, NdpiFile};
use crate::formats::ndpi::read::MAX_STREAM_BYTES;
use crate::formats::tiled_tiff::plan::{Flavour, PlanError, ReadPlan};
use crate::planning::partial::Missing;
use crate::slide::geometry::{choose_level, thumbnail_dims};
use crate::storage::ranged::ranges::ByteRange;
use crate::tiff::tags;

/// OpenSlide skips `quickhash-1` when the narrowest level's strip is larger.
const QUICKHASH_MAX_BYTES: u64 = 5 << 20;

fn missing(e: &NdpiError) -> Option<ByteRange> {
    match e {
        NdpiError::Io(io) => Missing::of(io).map(|m| ByteRange::at(m.offset, m.len)),
        _ => None,
    }
}

fn unplannable_or_need(e: NdpiError) -> PlanError {
    match missing(&e) {
        Some(range) => PlanError::Need(vec![range]),
        None => PlanError::Unplannable(e.to_string()),
    }
}

/// One planning pass over an NDPI file (its first directory holds tag 65420).
pub fn read_plan<R: Read + Seek>(
    r: &mut R,
    max_size: u32,
    max_slide_pixels: u64,
) -> Result<ReadPlan, PlanError> {
    let file = NdpiFile::read(r).map_err(unplannable_or_need)?;
    let mut ranges = vec![ByteRange::at(0, 16)];
    let mut needed = Vec::new();
    for dir in &file.directories {
        ranges.push(ByteRange::at(dir.ifd_offset, dir.ifd_len));
        ranges.extend(dir.out_of_line().map(|(o, l)| ByteRange::at(o, l)));
        let strip = (
            dir.uint(tags::STRIP_OFFSETS),
            dir.uint(tags::STRIP_BYTE_COUNTS),
        );
        if let (Some(offset), Some(len)) = strip
            && offset.saturating_add(len) <= file.file_len
        {
            let prefix = ByteRange::at(offset, len.min(HEADER_PREFIX));
            ranges.push(prefix);
            // Every level's header in one round, not one round per level.
            if let Err(e) = probe(r, prefix) {
                match missing(&e) {
                    Some(range) => needed.push(range),
                    None => return Err(PlanError::Unplannable(e.to_string())),
                }
            }
        }
    }
    if !needed.is_empty() {
        return Err(PlanError::Need(needed));
    }
    let bomb = file.directories.iter().any(|d| {
        let w = d.uint(tags::IMAGE_WIDTH).unwrap_or(0);
        let h = d.uint(tags::IMAGE_LENGTH).unwrap_or(0);
        w.saturating_mul(h) > max_slide_pixels
    });
    // A decompression bomb is refused from its directories alone: fetch no pixels.
    if bomb {
        return Ok(ReadPlan {
            flavour: Flavour::Ndpi,
            level: 0,
            ranges,
        });
    }
    let pyramid = ndpi::pyramid(r, &file).map_err(unplannable_or_need)?;
    let dims: Vec<(u64, u64)> = pyramid.levels.iter().map(|l| (l.width, l.height)).collect();
    let (w0, h0) = dims[0];
    let level = choose_level(&dims, thumbnail_dims(w0, h0, max_size));
    {
        let stream = &pyramid.streams[pyramid.levels[level].stream];
        if stream.header.restart_interval == 0 {
            return Err(PlanError::Unplannable(
                "the NDPI level has no restart markers (OpenSlide decodes it whole)".into(),
            ));
        }
        if stream.len > MAX_STREAM_BYTES {
            return Err(PlanError::Unplannable(format!(
                "the NDPI level's stream is {} bytes",
                stream.len
            )));
        }
        ranges.push(ByteRange::at(stream.offset, stream.len));
        let smallest = &pyramid.streams[pyramid.smallest];
        if smallest.len <= QUICKHASH_MAX_BYTES {
            ranges.push(ByteRange::at(smallest.offset, smallest.len));
        }
    }
    Ok(ReadPlan {
        flavour: Flavour::Ndpi,
        level,
        ranges,
    })
}

/// Reads `range` (to learn whether it is held), discarding the bytes.
fn probe<R: Read + Seek>(r: &mut R, range: ByteRange) -> Result<(), NdpiError> {
    let mut buf = vec![0u8; range.len() as usize];
    r.seek(SeekFrom::Start(range.start))?;
    r.read_exact(&mut buf)?;
    Ok(())
}
