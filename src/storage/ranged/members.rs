//! Ranged reads of a slide made of several objects in one folder: a DICOM series
//! ([`super::series`]), a MIRAX slide or a Hamamatsu VMS ([`super::companions`]).
//!
//! Why: which objects make the slide, and which of their bytes a thumbnail needs, is
//! written in the objects themselves, and those are hostile. So the service moves bytes
//! and the slide's worker decides ([`crate::planning`]). For one link ([`fetch_members`]),
//! given the candidates its format's lookup listed (the linked object first):
//! 1. create a sparse copy of every candidate, under its name (a companion folder's
//!    objects in a sub-folder of the same name), in one temporary folder;
//! 2. ask the planner which bytes it needs, fetch them (every read pinned to the
//!    generation the listing gave), and ask again until it answers with the members
//!    and their ranges, or the members to read whole;
//! 3. remove the candidates that are not members, so the engine sees only the slide,
//!    and open the linked object there, with its members beside it as on local disk.
//!
//! In `whole` mode (and in `auto` when the plan covers most of the members) the members
//! are read whole, within the temp-disk budget. Multi-object slides fetched at once are
//! bounded by `storage.max_series_fetches`.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::folder::{Listed, ObjectFolder};
use super::object::ObjectInfo;
use super::ranges::{self, ByteRange};
use super::sparse::SparseFile;
use super::{AUTO_MAX_FRACTION, FetchContext, FetchMode, MAX_PLAN_ROUNDS, PIECE, take_disk};
use crate::error_kind::ErrorKind;
use crate::formats::dicom::plan::MAX_SERIES_HEADERS;
use crate::planning::{FileRange, PlanAnswer, PlanFile, PlanTask, SlideLayout};
use crate::storage::error::StorageError;
use crate::storage::fetch::{FetchPath, LocalSlide, over_budget, temp_folder};

/// One candidate and its copy.
struct Member {
    listed: Listed,
    copy: SparseFile,
    held: Vec<ByteRange>,
}

/// Fetches the slide `linked` names from `folder`: `listed` are its candidates, the
/// linked object first (of which `first` is already read), laid out as `layout` says.
pub async fn fetch_members(
    folder: &dyn ObjectFolder,
    linked: &str,
    first: Bytes,
    listed: Vec<Listed>,
    layout: SlideLayout,
    ctx: &FetchContext<'_>,
) -> Result<LocalSlide, StorageError> {
    let link = format!("{}{linked}", folder.link());
    let total: u64 = listed.iter().map(|m| m.size).sum();
    let reserved = take_disk(ctx, total.min(MAX_SERIES_HEADERS), &link).await?;

    let dir = temp_folder(ctx.temp_dir)?;
    let mut members = Vec::with_capacity(listed.len());
    for listed in listed {
        if let Some((sub, _)) = listed.name.rsplit_once('/') {
            std::fs::create_dir_all(dir.path().join(sub)).map_err(|source| {
                StorageError::Local {
                    path: dir.path().display().to_string(),
                    source,
                }
            })?;
        }
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
            layout,
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
                            "the slide's headers need more than {} MiB",
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
            message: format!("the slide's headers did not settle in {MAX_PLAN_ROUNDS} rounds"),
        });
    };
    // A `Whole` answer names members to read whole, whatever the mode.
    let (in_series, planned, whole_answer) = match answer {
        PlanAnswer::Ranged {
            ranges, members: m, ..
        } => (m, ranges, false),
        PlanAnswer::Whole { members: m, .. } => (m, Vec::new(), true),
        PlanAnswer::Need { .. } => (Vec::new(), Vec::new(), false),
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
    let whole = whole_answer
        || ctx.settings.mode == FetchMode::Whole
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
