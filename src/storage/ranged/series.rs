//! Ranged reads of a DICOM whole-slide image: a series of instance files in one folder.
//!
//! Why: a DICOM slide is one instance per level, and a thumbnail needs one small level.
//! Reading every instance's header and then only the chosen level's pixel data costs a
//! fraction of the series, where a download costs all of it.
//!
//! The service moves bytes; the slide's worker reads them ([`crate::planning::series`]).
//! The flow for one link ([`fetch_series`]):
//! 1. read the linked object's first block: a link to a missing object is
//!    `slide_not_found` whatever its folder holds;
//! 2. list the folder once (names, sizes and generations: no lookup per sibling) and
//!    keep the instances that may belong to the slide ([`dicom::is_candidate`], a rule
//!    on names); a folder too large to list is refused, naming the cap;
//! 3. create a sparse copy of every candidate, under its own name, in one temporary
//!    folder, and ask the planner which bytes it needs: first each header's first block,
//!    then longer prefixes where a header goes on, then the chosen level's pixel data;
//!    every read is pinned to the generation the listing gave;
//! 4. the engine opens the linked instance there and finds the series beside it, as on
//!    local disk. Candidates that turned out not to be DICOM are removed.
//!
//! In `whole` mode (and in `auto` when the plan covers most of the series) the series'
//! members are read whole, after their headers: only DICOM instances, within the
//! temp-disk budget. Series fetched at once are bounded by `storage.max_series_fetches`.

use std::path::Path;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::folder::{Listed, ObjectFolder, too_large};
use super::object::ObjectInfo;
use super::ranges::{self, ByteRange};
use super::sparse::SparseFile;
use super::{AUTO_MAX_FRACTION, FetchContext, FetchMode, MAX_PLAN_ROUNDS, PIECE, take_disk};
use crate::dicom;
use crate::error_kind::ErrorKind;
use crate::planning::series::{HEAD_BLOCK, MAX_SERIES_HEADERS};
use crate::planning::{FileRange, PlanAnswer, PlanFile, PlanTask};
use crate::storage::error::StorageError;
use crate::storage::fetch::{FetchPath, LocalSlide, over_budget, temp_folder};

/// Most instances one slide may have in its folder. Real series have tens (one per
/// level, a label, an overview); more is a folder this lookup was not meant for.
pub const MAX_INSTANCES: usize = 1024;

/// Whether a link's object name is a DICOM instance (`.dcm`, any case).
pub fn is_dicom_link(object: &str) -> bool {
    Path::new(object)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm"))
}

/// One candidate and its copy.
struct Member {
    listed: Listed,
    copy: SparseFile,
    held: Vec<ByteRange>,
}

/// Fetches the series `linked` belongs to from `folder` into a temporary folder.
pub async fn fetch_series(
    folder: &dyn ObjectFolder,
    linked: &str,
    ctx: &FetchContext<'_>,
) -> Result<LocalSlide, StorageError> {
    let link = format!("{}{linked}", folder.link());
    let _turn = ctx
        .budgets
        .series
        .take(1, ErrorKind::Internal)
        .await
        .map_err(|e| over_budget(link.clone(), e))?;
    // The link itself first: a missing object is `slide_not_found`, whatever the folder.
    let (info, first) = folder.object(linked).head(HEAD_BLOCK).await?;
    let listed = candidates(folder, linked, info).await?;
    let total: u64 = listed.iter().map(|m| m.size).sum();
    let reserved = take_disk(ctx, total.min(MAX_SERIES_HEADERS), &link).await?;

    let dir = temp_folder(ctx.temp_dir)?;
    let mut members = Vec::with_capacity(listed.len());
    for listed in listed {
        let copy = SparseFile::create_in(dir.path(), &listed.name, listed.size)?;
        members.push(Member {
            listed,
            copy,
            held: Vec::new(),
        });
    }
    members[0].held.push(ByteRange::at(0, first.len() as u64));
    members[0].copy.write_at(0, first).await?;

    let mut answer = None;
    for _ in 0..MAX_PLAN_ROUNDS {
        let task = PlanTask {
            files: members
                .iter()
                .map(|m| PlanFile {
                    path: dir.path().join(&m.listed.name),
                    size: m.listed.size,
                    held: m.held.clone(),
                })
                .collect(),
            dicom: true,
            max_size: ctx.settings.max_size,
            max_slide_pixels: ctx.settings.max_slide_pixels,
        };
        match ctx
            .planner
            .plan(task)
            .await
            .map_err(|f| f.about(link.clone()))?
        {
            PlanAnswer::Need { ranges } => {
                let held_bytes: u64 = members.iter().map(|m| ranges::total(&m.held)).sum();
                let wanted = wanted_by_member(&members, &ranges);
                let more: u64 = wanted.iter().map(|(_, r)| r.len()).sum();
                if more == 0 || held_bytes + more > MAX_SERIES_HEADERS {
                    return Err(StorageError::Slide {
                        link,
                        kind: ErrorKind::CorruptSlide,
                        message: format!(
                            "the series' headers need more than {} MiB",
                            MAX_SERIES_HEADERS >> 20
                        ),
                    });
                }
                fetch_pieces(folder, &members, &wanted, ctx).await?;
                for (index, range) in wanted {
                    let m = &mut members[index];
                    m.held = ranges::coalesce(m.held.drain(..).chain([range]), m.listed.size, 0);
                }
            }
            final_answer => {
                answer = Some(final_answer);
                break;
            }
        }
    }
    let Some(answer) = answer else {
        return Err(StorageError::Slide {
            link,
            kind: ErrorKind::CorruptSlide,
            message: format!("the series' headers did not settle in {MAX_PLAN_ROUNDS} rounds"),
        });
    };
    let (in_series, planned) = match answer {
        PlanAnswer::Ranged {
            ranges, members: m, ..
        } => (m, ranges),
        PlanAnswer::Whole { members: m, .. } => (m, Vec::new()),
        PlanAnswer::Need { .. } => (Vec::new(), Vec::new()),
    };
    let in_series: Vec<usize> = in_series
        .into_iter()
        .map(|i| i as usize)
        .filter(|&i| i < members.len())
        .collect();
    let held_bytes: u64 = members.iter().map(|m| ranges::total(&m.held)).sum();
    let series_bytes: u64 = in_series.iter().map(|&i| members[i].listed.size).sum();
    let mut wanted = wanted_by_member(&members, &planned);
    let more: u64 = wanted.iter().map(|(_, r)| r.len()).sum();
    let whole = ctx.settings.mode == FetchMode::Whole
        || (ctx.settings.mode == FetchMode::Auto
            && (held_bytes + more) as f64 > series_bytes as f64 * AUTO_MAX_FRACTION);
    if whole {
        wanted = in_series
            .iter()
            .flat_map(|&i| {
                let m = &members[i];
                ranges::subtract(&[ByteRange::at(0, m.listed.size)], &m.held)
                    .into_iter()
                    .map(move |r| (i, r))
            })
            .collect();
    }
    let more: u64 = wanted.iter().map(|(_, r)| r.len()).sum();
    let disk = super::grow_disk(ctx, reserved, held_bytes + more, &link).await?;
    let fetched = fetch_pieces(folder, &members, &wanted, ctx).await?;
    // Candidates that are not DICOM (or of no use) leave the folder, so the engine
    // sees only what was fetched for it.
    for (index, m) in members.iter().enumerate() {
        if !in_series.contains(&index) && index != 0 {
            let _ = std::fs::remove_file(dir.path().join(&m.listed.name));
        }
    }
    let bytes_fetched = held_bytes + fetched;
    let via = if whole {
        FetchPath::Whole
    } else {
        FetchPath::Ranged
    };
    tracing::debug!(link = %folder.link(), instances = in_series.len(), bytes_fetched, series_bytes, via = via.label(), "fetched the series");
    drop(members);
    Ok(LocalSlide::in_folder(dir, linked, bytes_fetched, via).holding(disk))
}

/// The linked object and the folder's other instances that may belong to its slide.
async fn candidates(
    folder: &dyn ObjectFolder,
    linked: &str,
    info: ObjectInfo,
) -> Result<Vec<Listed>, StorageError> {
    let listed = folder.list().await?;
    let mut members = vec![Listed {
        name: linked.to_string(),
        size: info.size,
        generation: info.generation,
    }];
    members.extend(
        listed
            .into_iter()
            .filter(|l| l.name != linked && dicom::is_candidate(linked, &l.name)),
    );
    if members.len() > MAX_INSTANCES {
        return Err(StorageError::Slide {
            link: folder.link(),
            kind: ErrorKind::CorruptSlide,
            message: format!(
                "the folder holds {} instances beside {linked}; a slide has at most \
                 {MAX_INSTANCES}: keep each slide's series in a folder of its own",
                members.len()
            ),
        });
    }
    if members.len() > super::folder::MAX_LISTED {
        return Err(too_large(folder.link()));
    }
    Ok(members)
}

/// The planner's ranges by member index: clipped to each object, merged, less what is
/// held. Ranges naming no member are dropped (the answer is untrusted).
fn wanted_by_member(members: &[Member], ranges: &[FileRange]) -> Vec<(usize, ByteRange)> {
    let mut out = Vec::new();
    for (index, m) in members.iter().enumerate() {
        let mine = ranges
            .iter()
            .filter(|r| r.file as usize == index)
            .map(|r| r.range);
        let merged = ranges::coalesce(mine, m.listed.size, super::COALESCE_GAP);
        out.extend(
            ranges::subtract(&merged, &m.held)
                .into_iter()
                .map(|r| (index, r)),
        );
    }
    out
}

/// Fetches the wanted ranges into the members' copies in bounded, concurrent GETs pinned
/// to the listed generations; returns the bytes fetched.
async fn fetch_pieces(
    folder: &dyn ObjectFolder,
    members: &[Member],
    wanted: &[(usize, ByteRange)],
    ctx: &FetchContext<'_>,
) -> Result<u64, StorageError> {
    let pieces: Vec<(usize, ByteRange)> = wanted
        .iter()
        .flat_map(|&(i, r)| ranges::split(&[r], PIECE).into_iter().map(move |p| (i, p)))
        .collect();
    let _ranges = ctx
        .budgets
        .planned_ranges
        .take(pieces.len() as u64, ErrorKind::SlideTooLarge)
        .await
        .map_err(|e| over_budget(folder.link(), e))?;
    futures::stream::iter(pieces.into_iter().map(|(index, piece)| async move {
        let m = &members[index];
        let object = folder.object(&m.listed.name);
        let _buffer = ctx
            .budgets
            .buffered
            .take(piece.len(), ErrorKind::SlideTooLarge)
            .await
            .map_err(|e| over_budget(object.link(), e))?;
        let info = ObjectInfo {
            size: m.listed.size,
            generation: m.listed.generation,
        };
        let bytes: Bytes = object.range(info, piece).await?;
        let n = bytes.len() as u64;
        m.copy.write_at(piece.start, bytes).await?;
        Ok::<u64, StorageError>(n)
    }))
    .buffer_unordered(ctx.settings.concurrency.max(1))
    .try_fold(0u64, |sum, n| async move { Ok(sum + n) })
    .await
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
