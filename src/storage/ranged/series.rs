//! Ranged reads of a DICOM whole-slide image: a series of instance files in one folder.
//!
//! Why: a DICOM slide is one instance per level, and a thumbnail needs one small level.
//! Reading every instance's header and then only the chosen level's pixel data costs a
//! fraction of the series, where a download costs all of it.
//!
//! The flow for one link ([`fetch_series`]):
//! 1. list the link's folder and keep the instances that may belong to the slide
//!    ([`dicom::is_candidate`], the rule the engine applies to the same folder);
//! 2. read each one's header: a first block, grown while the bounded header scan
//!    ([`dicom::scan_prefix`]) asks for more; every later read of an object is pinned to
//!    the generation its first read saw;
//! 3. ask the series planner ([`dicom::pixel_ranges`]) which pixel bytes the engine will
//!    read, and fetch those in bounded, concurrent GETs;
//! 4. write each instance as a sparse file of its full size, under its own name, into
//!    one temporary folder: the engine opens the linked instance there and finds the
//!    rest of the series beside it, as it would on local disk.
//!
//! In `whole` mode (and in `auto` when the plan covers most of the series) every
//! instance is read whole into the same layout: the comparison path.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use super::folder::{Listed, ObjectFolder};
use super::object::ObjectInfo;
use super::ranges::{self, ByteRange};
use super::sparse::SparseFile;
use super::{AUTO_MAX_FRACTION, COALESCE_GAP, FetchMode, PIECE, RangedSettings};
use crate::dicom::{self, InstanceHeader, Scan};
use crate::slide::{DecoderChoice, ThumbnailOptions};
use crate::storage::error::StorageError;
use crate::storage::fetch::{FetchPath, LocalSlide, temp_folder};

/// First read of each instance: a whole-slide instance's header is a few KiB (the
/// per-frame positions of a sparse tiling can make it larger; the scan asks for more).
const HEAD_BLOCK: u64 = 16 * 1024;
/// Largest header read: past this the instance is refused rather than read on.
const MAX_HEADER: u64 = 64 * 1024 * 1024;
/// Most header bytes one series may hold in memory at once, all instances together: the
/// headers are kept until the pixel data is written, so a folder of large headers must
/// not multiply [`MAX_HEADER`] by [`MAX_INSTANCES`].
const MAX_SERIES_HEADERS: u64 = 128 * 1024 * 1024;
/// Most instances one slide may have in its folder. Real series have tens (one per
/// level, a label, an overview); more is a folder this lookup was not meant for.
pub const MAX_INSTANCES: usize = 1024;

/// One instance's header, as read.
struct Head {
    name: String,
    info: ObjectInfo,
    prefix: Bytes,
    header: InstanceHeader,
}

/// Whether a link's object name is a DICOM instance (`.dcm`, any case).
pub fn is_dicom_link(object: &str) -> bool {
    Path::new(object)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm"))
}

/// Fetches the series `linked` belongs to from `folder` into a temporary folder.
pub async fn fetch_series(
    folder: &dyn ObjectFolder,
    linked: &str,
    settings: &RangedSettings,
    temp_dir: &Path,
) -> Result<LocalSlide, StorageError> {
    let mut members = members(folder, linked).await?;
    let concurrency = settings.concurrency.max(1);
    let total: u64 = members.iter().map(|m| m.size).sum();

    let (heads, wanted, via) = if settings.mode == FetchMode::Whole {
        let whole = members
            .iter()
            .map(|m| (m.name.clone(), ByteRange::at(0, m.size)))
            .collect();
        (Vec::new(), whole, FetchPath::Whole)
    } else {
        let budget = AtomicU64::new(MAX_SERIES_HEADERS);
        let budget = &budget;
        // Collected first: a lazily mapped iterator of borrowing futures defeats the
        // compiler's lifetime inference inside the boxed `Send` future.
        let reads: Vec<_> = members
            .iter()
            .map(|m| read_head(folder, m, linked, budget))
            .collect();
        let heads: Vec<Option<Head>> = futures::stream::iter(reads)
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        let heads: Vec<Head> = heads.into_iter().flatten().collect();
        // Siblings that are not DICOM at all are passed over, as the engine does.
        members.retain(|m| heads.iter().any(|h| h.name == m.name));
        let planned = plan(folder, linked, &heads, settings)?;
        let held: u64 = heads.iter().map(|h| h.prefix.len() as u64).sum();
        let more: u64 = planned.iter().map(|(_, r)| r.len()).sum();
        if settings.mode == FetchMode::Auto
            && (held + more) as f64 > total as f64 * AUTO_MAX_FRACTION
        {
            tracing::info!(link = %folder.link(), "the plan covers most of the series: reading it whole");
            let whole = heads
                .iter()
                .map(|h| (h.name.clone(), ByteRange::at(0, h.info.size)))
                .collect();
            (heads, whole, FetchPath::Whole)
        } else {
            (heads, planned, FetchPath::Ranged)
        }
    };

    let copy = temp_folder(temp_dir)?;
    let mut files = Vec::with_capacity(members.len());
    let mut bytes_fetched = 0u64;
    for m in &members {
        let file = SparseFile::create_in(copy.path(), &m.name, m.size)?;
        let head = heads.iter().find(|h| h.name == m.name);
        if let Some(h) = head {
            file.write_at(0, h.prefix.clone()).await?;
            bytes_fetched += h.prefix.len() as u64;
        }
        files.push((m, head.map(|h| h.info), file));
    }
    let pieces = pieces(&members, &heads, &wanted);
    let files_ref = &files;
    let fetched: u64 = futures::stream::iter(pieces.into_iter().map(|(index, piece)| async move {
        let (member, info, file) = &files_ref[index];
        let object = folder.object(&member.name);
        let info = info.unwrap_or(ObjectInfo {
            size: member.size,
            generation: 0,
        });
        let bytes = object.range(info, piece).await?;
        let n = bytes.len() as u64;
        file.write_at(piece.start, bytes).await?;
        Ok::<u64, StorageError>(n)
    }))
    .buffer_unordered(concurrency)
    .try_fold(0u64, |sum, n| async move { Ok(sum + n) })
    .await?;
    bytes_fetched += fetched;
    drop(files);
    tracing::debug!(link = %folder.link(), instances = members.len(), bytes_fetched, series_bytes = total, via = via.label(), "fetched the series");
    Ok(LocalSlide::in_folder(copy, linked, bytes_fetched, via))
}

/// The instances of the folder that may belong to the linked slide, the linked one
/// first.
async fn members(folder: &dyn ObjectFolder, linked: &str) -> Result<Vec<Listed>, StorageError> {
    let listed = folder.list().await?;
    let Some(own) = listed.iter().find(|l| l.name == linked).cloned() else {
        return Err(StorageError::NotFound(format!("{}{linked}", folder.link())));
    };
    let mut members = vec![own];
    members.extend(
        listed
            .into_iter()
            .filter(|l| l.name != linked && dicom::is_candidate(linked, &l.name)),
    );
    if members.len() > MAX_INSTANCES {
        return Err(StorageError::Slide {
            link: folder.link(),
            kind: crate::error_kind::ErrorKind::CorruptSlide,
            message: format!(
                "the folder holds {} instances beside {linked}; a slide has at most \
                 {MAX_INSTANCES}: keep each slide's series in a folder of its own",
                members.len()
            ),
        });
    }
    Ok(members)
}

/// Reads `member`'s header: a first block, then more while the scan asks for it, taking
/// what it reads from the series' `budget`. `None` for a sibling that is not DICOM
/// ("DICM" at 128); a DICOM file whose header is broken fails the slide, since its
/// series cannot be known (the engine's rule too).
async fn read_head(
    folder: &dyn ObjectFolder,
    member: &Listed,
    linked: &str,
    budget: &AtomicU64,
) -> Result<Option<Head>, StorageError> {
    let object = folder.object(&member.name);
    let spend = |n: u64| {
        budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .map(drop)
            .map_err(|_| StorageError::Slide {
                link: object.link(),
                kind: crate::error_kind::ErrorKind::CorruptSlide,
                message: format!(
                    "the series' headers add up to more than {} MiB",
                    MAX_SERIES_HEADERS >> 20
                ),
            })
    };
    spend(HEAD_BLOCK.min(member.size))?;
    let (info, first) = object.head(HEAD_BLOCK).await?;
    if member.name != linked && !dicom::is_dicom(&first) {
        tracing::debug!(link = %object.link(), "not DICOM: passed over");
        return Ok(None);
    }
    let mut prefix = BytesMut::from(&first[..]);
    loop {
        let scanned =
            dicom::scan_prefix(&prefix, info.size).map_err(|e| slide_error(object.link(), e))?;
        let wanted = match scanned {
            Scan::Header(header) => {
                return Ok(Some(Head {
                    name: member.name.clone(),
                    info,
                    prefix: prefix.freeze(),
                    header: *header,
                }));
            }
            Scan::NeedMore(wanted) => wanted.min(info.size),
        };
        let have = prefix.len() as u64;
        if wanted <= have || wanted > MAX_HEADER {
            return Err(StorageError::Slide {
                link: object.link(),
                kind: crate::error_kind::ErrorKind::CorruptSlide,
                message: format!(
                    "its DICOM header does not end within {} bytes (of {})",
                    wanted.max(have),
                    info.size
                ),
            });
        }
        // Grow at least twofold, so a long header costs few round trips.
        let end = wanted.max(have * 2).min(info.size).min(MAX_HEADER);
        spend(end - have)?;
        let more = object.range(info, ByteRange { start: have, end }).await?;
        prefix.extend_from_slice(&more);
    }
}

/// The pixel ranges the engine will read, per instance, as the series planner says.
fn plan(
    folder: &dyn ObjectFolder,
    linked: &str,
    heads: &[Head],
    settings: &RangedSettings,
) -> Result<Vec<(String, ByteRange)>, StorageError> {
    let instances: Vec<(String, u64, InstanceHeader)> = heads
        .iter()
        .map(|h| (h.name.clone(), h.info.size, h.header.clone()))
        .collect();
    let options = ThumbnailOptions {
        max_size: settings.max_size,
        max_slide_pixels: settings.max_slide_pixels,
        decoder: DecoderChoice::Auto,
    };
    let ranges = dicom::pixel_ranges(linked, &instances, &options)
        .map_err(|e| slide_error(format!("{}{linked}", folder.link()), e))?;
    Ok(ranges
        .into_iter()
        .map(|(name, r)| {
            (
                name,
                ByteRange {
                    start: r.start,
                    end: r.end,
                },
            )
        })
        .collect())
}

/// The GETs to make: the wanted ranges of each instance, less what its header read
/// holds, merged across small gaps and cut into bounded pieces; by member index.
fn pieces(
    members: &[Listed],
    heads: &[Head],
    wanted: &[(String, ByteRange)],
) -> Vec<(usize, ByteRange)> {
    let mut pieces = Vec::new();
    for (index, member) in members.iter().enumerate() {
        let ranges = wanted
            .iter()
            .filter(|(name, _)| *name == member.name)
            .map(|(_, r)| r.clip(member.size));
        let held: Vec<ByteRange> = heads
            .iter()
            .filter(|h| h.name == member.name)
            .map(|h| ByteRange::at(0, h.prefix.len() as u64))
            .collect();
        let remaining =
            ranges::subtract(&ranges::coalesce(ranges, member.size, COALESCE_GAP), &held);
        pieces.extend(
            ranges::split(&remaining, PIECE)
                .into_iter()
                .map(|p| (index, p)),
        );
    }
    pieces
}

/// What the headers say is wrong, with the kind the engine would report for it.
fn slide_error(link: String, e: dicom::DicomError) -> StorageError {
    let message = format!("DICOM: {e}");
    let kind = e.into_slide_error(Path::new(&link)).kind();
    StorageError::Slide {
        link,
        kind,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicom_links_are_told_by_their_extension() {
        assert!(is_dicom_link("slides/a/level-0.dcm"));
        assert!(is_dicom_link("x.DCM"));
        assert!(!is_dicom_link("slides/a.svs"));
        assert!(!is_dicom_link("dcm"));
    }
}
