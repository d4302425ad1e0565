//! Ranged reads: fetch only the bytes a thumbnail needs into a sparse local file.
//!
//! Why: a 1024-pixel thumbnail of a multi-gigabyte TIFF pyramid needs its directories
//! and one small level, so reading those bytes instead of the whole object is the
//! difference between megabytes and gigabytes per slide.
//!
//! The service only moves bytes here; it never parses them. The flow for one slide
//! ([`fetch_ranged`]):
//! 1. read the first block, which also tells the object's size and generation
//!    ([`object::RangeRead`]); every later read is pinned to that generation, so an
//!    object replaced mid-fetch fails instead of mixing two files;
//! 2. write every fetched byte at its offset in a local file of the object's size
//!    ([`sparse::SparseFile`]), and ask the slide's planner (its worker process, see
//!    [`crate::planning`]) which bytes it needs, given the ranges held so far; fetch
//!    what it names, in batches, until it answers with a final plan or a reason to read
//!    the whole object;
//! 3. merge, subtract what is held and cut into bounded GETs ([`ranges`]), and fetch
//!    those with bounded concurrency into the same file, which OpenSlide then opens as
//!    if it were the whole slide.
//!
//! Everything a fetch holds comes out of process-wide budgets
//! ([`crate::storage::budget`]): GET buffers, bytes on the temp disk, planned ranges.
//! The planner's answers are untrusted too: their sizes are bounded here
//! ([`MAX_PLAN_BYTES`], [`MAX_PLAN_ROUNDS`]) before anything is fetched.
//!
//! Which path serves a slide is [`FetchMode`] (`storage.fetch`), applied by
//! [`RangedFetcher`]: `auto` and `ranged` go through [`fetch_ranged`], `whole` and
//! every `file://` input through [`WholeObjectFetcher`]. Links to a slide of several
//! objects go through [`members`] in every mode: DICOM instances via [`series`], MIRAX
//! and VMS headers via [`companions`].
//!
//! The word "plan" means one thing here: the byte ranges one thumbnail needs
//! ([`crate::formats::tiled_tiff::plan::ReadPlan`]) and the making of it. The engine's choice of level and chunks is
//! [`crate::slide::geometry`].

pub mod companions;
pub mod folder;
pub mod members;
pub mod object;
pub mod ranges;
pub mod series;
pub mod sparse;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use google_cloud_storage::client::Storage;
use serde::{Deserialize, Serialize};

use super::budget::{Budgets, Share};
use super::error::StorageError;
use super::fetch::{FetchPath, LocalSlide, Planner, SlideFetcher, WholeObjectFetcher, over_budget};
use super::gcs::GcsObject;
use super::location::InputLink;
use crate::error_kind::ErrorKind;
use crate::planning::{PlanAnswer, PlanFile, PlanTask, SlideLayout};
use folder::GcsFolder;
use ranges::ByteRange;
use sparse::SparseFile;

pub use crate::planning::{COALESCE_GAP, PLAN_BLOCK};
pub use object::{FileObject, ObjectInfo, RangeRead};

/// Largest single GET: bounds the memory each concurrent request holds.
const PIECE: u64 = 4 * 1024 * 1024;
/// In `auto` mode, a plan covering more than this fraction of the object is served by
/// reading the whole object (still ranged and concurrent, but with no planning gaps).
const AUTO_MAX_FRACTION: f64 = 0.5;
/// Planning round trips before giving up on a file (a directory chain this long is
/// either hostile or better downloaded whole).
pub const MAX_PLAN_ROUNDS: usize = 64;
/// Planning reads beyond this many bytes mean the metadata alone is huge: download whole.
pub const MAX_PLAN_BYTES: u64 = 64 * 1024 * 1024;

/// How slides are read from the bucket (`storage.fetch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FetchMode {
    /// Ranged when the planner can plan the slide and the plan is under half the object;
    /// the whole object otherwise.
    #[default]
    Auto,
    /// Ranged whenever the planner can plan the slide, however much it covers.
    Ranged,
    /// Always download the whole object in one stream (the seed's behaviour).
    Whole,
}

/// What the thumbnail settings the planner needs to pick the level the engine will read.
#[derive(Debug, Clone, Copy)]
pub struct RangedSettings {
    pub mode: FetchMode,
    pub concurrency: usize,
    pub max_size: u32,
    pub max_slide_pixels: u64,
}

/// Where a fetch writes and who it asks.
pub struct FetchContext<'a> {
    pub settings: &'a RangedSettings,
    pub temp_dir: &'a Path,
    pub planner: &'a dyn Planner,
    pub budgets: &'a Budgets,
}

/// Fetches `object` to a sparse local file in `ctx.temp_dir`, ranged where it can.
pub async fn fetch_ranged(
    object: &dyn RangeRead,
    ctx: &FetchContext<'_>,
) -> Result<LocalSlide, StorageError> {
    let buffered = ctx
        .budgets
        .buffered
        .take(PLAN_BLOCK, ErrorKind::SlideTooLarge)
        .await
        .map_err(|e| over_budget(object.link(), e))?;
    let (info, head) = object.head(PLAN_BLOCK).await?;
    let size = info.size;
    // Planning reads are bounded by MAX_PLAN_BYTES: that much of the disk is reserved
    // up front, in one piece.
    let reserved = take_disk(ctx, size.min(MAX_PLAN_BYTES), &object.link()).await?;
    let (copy, temp) = SparseFile::create(ctx.temp_dir, &object.suffix(), size)?;
    let mut held = vec![ByteRange::at(0, head.len() as u64)];
    copy.write_at(0, head).await?;
    drop(buffered);

    let target = Target {
        object,
        info,
        copy: &copy,
    };
    let mut rounds = 0;
    let mut decision = (ctx.settings.mode == FetchMode::Whole).then(|| Decision::Whole {
        reason: "storage.fetch is whole".into(),
    });
    while decision.is_none() && rounds < MAX_PLAN_ROUNDS {
        rounds += 1;
        let task = PlanTask {
            files: vec![PlanFile {
                path: temp.to_path_buf(),
                size,
                held: held.clone(),
            }],
            layout: SlideLayout::Single,
            max_size: ctx.settings.max_size,
            max_slide_pixels: ctx.settings.max_slide_pixels,
        };
        let answer = ctx
            .planner
            .plan(task)
            .await
            .map_err(|f| f.about(object.link()))?;
        match answer {
            PlanAnswer::Need { ranges } => {
                let wanted = ranges.iter().filter(|r| r.file == 0).map(|r| r.range);
                let missing =
                    ranges::subtract(&ranges::coalesce(wanted, size, COALESCE_GAP), &held);
                if missing.is_empty()
                    || ranges::total(&held) + ranges::total(&missing) > MAX_PLAN_BYTES
                {
                    decision = Some(Decision::Whole {
                        reason: "the slide's directories alone are larger than the planning budget"
                            .into(),
                    });
                    break;
                }
                target.fetch(&missing, ctx).await?;
                held = ranges::coalesce(held.into_iter().chain(missing), size, 0);
            }
            PlanAnswer::Ranged { level, ranges, .. } => {
                let ranges = ranges.iter().filter(|r| r.file == 0).map(|r| r.range);
                decision = Some(Decision::Ranged {
                    level,
                    ranges: ranges::coalesce(ranges, size, COALESCE_GAP),
                });
                break;
            }
            PlanAnswer::Whole { reason, .. } => {
                decision = Some(Decision::Whole { reason });
                break;
            }
        }
    }
    let mut decision = decision.unwrap_or(Decision::Whole {
        reason: "the directory chain needs too many round trips".into(),
    });
    let whole = [ByteRange {
        start: 0,
        end: size,
    }];
    let mut remaining = match &decision {
        Decision::Ranged { ranges, .. } => ranges::subtract(ranges, &held),
        Decision::Whole { .. } => ranges::subtract(&whole, &held),
    };
    // In auto mode a plan that covers most of the object is not worth its gaps.
    if matches!(decision, Decision::Ranged { .. })
        && ctx.settings.mode == FetchMode::Auto
        && (ranges::total(&remaining) + ranges::total(&held)) as f64
            > size as f64 * AUTO_MAX_FRACTION
    {
        decision = Decision::Whole {
            reason: "the plan covers most of the object".into(),
        };
        remaining = ranges::subtract(&whole, &held);
    }
    let need = ranges::total(&held) + ranges::total(&remaining);
    let disk = grow_disk(ctx, reserved, need, &object.link()).await?;
    let fetched = target.fetch(&remaining, ctx).await?;
    let bytes_fetched = ranges::total(&held) + fetched;
    let via = match &decision {
        Decision::Ranged { level, .. } => {
            tracing::debug!(link = %object.link(), level, bytes_fetched, object_size = size, "fetched the planned ranges");
            FetchPath::Ranged
        }
        Decision::Whole { reason } => {
            tracing::info!(link = %object.link(), reason = %reason, object_size = size, "fetched the whole object");
            FetchPath::Whole
        }
    };
    drop(copy);
    Ok(LocalSlide::temporary(temp, bytes_fetched, via).holding(disk))
}

/// What a ranged fetch reads: the planned ranges, or the whole object and why.
#[derive(Debug, Clone, PartialEq)]
enum Decision {
    Ranged {
        /// The level the engine will read (a log field).
        level: usize,
        ranges: Vec<ByteRange>,
    },
    Whole {
        reason: String,
    },
}

/// One object and its local copy.
struct Target<'a> {
    object: &'a dyn RangeRead,
    info: ObjectInfo,
    copy: &'a SparseFile,
}

impl Target<'_> {
    /// Fetches `wanted` (sorted, disjoint) into the copy in bounded, concurrent GETs,
    /// each holding its share of the buffer budget; returns the bytes fetched.
    async fn fetch(
        &self,
        wanted: &[ByteRange],
        ctx: &FetchContext<'_>,
    ) -> Result<u64, StorageError> {
        let pieces = ranges::split(wanted, PIECE);
        let _ranges = ctx
            .budgets
            .planned_ranges
            .take(pieces.len() as u64, ErrorKind::SlideTooLarge)
            .await
            .map_err(|e| over_budget(self.object.link(), e))?;
        futures::stream::iter(pieces.into_iter().map(|piece| async move {
            let _buffer = ctx
                .budgets
                .buffered
                .take(piece.len(), ErrorKind::SlideTooLarge)
                .await
                .map_err(|e| over_budget(self.object.link(), e))?;
            let bytes = self.object.range(self.info, piece).await?;
            let n = bytes.len() as u64;
            self.copy.write_at(piece.start, bytes).await?;
            Ok::<u64, StorageError>(n)
        }))
        .buffer_unordered(ctx.settings.concurrency.max(1))
        .try_fold(0u64, |sum, n| async move { Ok(sum + n) })
        .await
    }
}

/// Takes `amount` of the temp-disk budget for `link`.
pub(crate) async fn take_disk(
    ctx: &FetchContext<'_>,
    amount: u64,
    link: &str,
) -> Result<Share, StorageError> {
    crate::storage::disk_room::take_room(&ctx.budgets.temp_disk, ctx.temp_dir, amount, link).await
}

/// The disk share for a copy of `need` bytes, given the planning reservation: kept when
/// it covers the copy, else given back and the whole amount taken in one piece (never
/// waiting while holding part of the budget, so budgets cannot deadlock; meanwhile the
/// planning bytes, at most [`MAX_PLAN_BYTES`], are on the disk unaccounted).
pub(crate) async fn grow_disk(
    ctx: &FetchContext<'_>,
    reserved: Share,
    need: u64,
    link: &str,
) -> Result<Share, StorageError> {
    if need <= reserved.amount {
        return Ok(reserved);
    }
    drop(reserved);
    take_disk(ctx, need, link).await
}

/// The fetch strategy the service uses: ranged or whole per `storage.fetch`, local
/// `file://` inputs in place.
pub struct RangedFetcher {
    pub client: Option<Arc<Storage>>,
    pub temp_dir: PathBuf,
    pub settings: RangedSettings,
    pub budgets: Budgets,
    pub whole: WholeObjectFetcher,
}

impl SlideFetcher for RangedFetcher {
    fn fetch<'a>(
        &'a self,
        input: &'a InputLink,
        planner: &'a dyn Planner,
    ) -> BoxFuture<'a, Result<LocalSlide, StorageError>> {
        Box::pin(async move {
            let ctx = FetchContext {
                settings: &self.settings,
                temp_dir: &self.temp_dir,
                planner,
                budgets: &self.budgets,
            };
            match (input, &self.client) {
                (InputLink::Gcs { bucket, object }, Some(client)) => {
                    let linked = object.rsplit('/').next().unwrap_or(object);
                    let folder = || GcsFolder::of(client.clone(), bucket, object);
                    match crate::formats::link_layout(object) {
                        // A DICOM instance is one file of a series: whatever the mode,
                        // the series is planned together (whole mode reads its members
                        // whole).
                        SlideLayout::DicomSeries => {
                            series::fetch_series(&folder(), linked, &ctx).await
                        }
                        // A MIRAX or VMS header: the slide is it and its companions,
                        // fetched together in every mode.
                        layout @ (SlideLayout::Mirax | SlideLayout::Vms) => {
                            companions::fetch_companions(&folder(), linked, layout, &ctx).await
                        }
                        SlideLayout::Single if self.settings.mode != FetchMode::Whole => {
                            let object = GcsObject {
                                client: client.clone(),
                                bucket: bucket.clone(),
                                object: object.clone(),
                            };
                            fetch_ranged(&object, &ctx).await
                        }
                        SlideLayout::Single => self.whole.fetch(input).await,
                    }
                }
                _ => self.whole.fetch(input).await,
            }
        })
    }
}
