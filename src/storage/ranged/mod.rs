//! Ranged reads: fetch only the bytes a thumbnail needs into a sparse local file.
//!
//! Why: a 1024-pixel thumbnail of a multi-gigabyte TIFF pyramid needs its directories
//! and one small level, so reading those bytes instead of the whole object is the
//! difference between megabytes and gigabytes per slide.
//!
//! The flow for one slide ([`fetch_ranged`]):
//! 1. read the first block, which also tells the object's size and generation
//!    ([`object::RangeRead`]); every later read is pinned to that generation, so an
//!    object replaced mid-fetch fails instead of mixing two files;
//! 2. run the planner ([`plan`]) over the bytes held so far ([`partial::PartialObject`]),
//!    fetch the ranges it says it is missing, in batches, until it has a
//!    [`plan::ReadPlan`] or a reason to read the whole object;
//! 3. merge the wanted ranges across small gaps and cut them into bounded GETs
//!    ([`ranges`]), fetch those with bounded concurrency, and write every fetched byte at
//!    its offset in a local file of the object's size ([`sparse::SparseFile`]), which
//!    OpenSlide opens as if it were the whole slide.
//!
//! Files the planner does not model, and (in `auto` mode) plans that would fetch most of
//! the object anyway, get the rest of the object the same way instead: still concurrent
//! ranged GETs, nothing fetched twice.
//!
//! Which path serves a slide is [`FetchMode`] (`storage.fetch`), applied by
//! [`RangedFetcher`]: `auto` and `ranged` go through [`fetch_ranged`], `whole` (and every
//! `file://` input) through [`WholeObjectFetcher`].
//!
//! The word "plan" means one thing here: the byte ranges one thumbnail needs
//! ([`plan::ReadPlan`]) and the making of it. The engine's choice of level and chunks is
//! [`crate::slide::geometry`].

pub mod folder;
pub mod ndpi_plan;
pub mod object;
pub mod partial;
pub mod plan;
pub mod ranges;
pub mod series;
pub mod sparse;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use google_cloud_storage::client::Storage;
use serde::{Deserialize, Serialize};

use super::error::StorageError;
use super::fetch::{FetchPath, LocalSlide, SlideFetcher, WholeObjectFetcher};
use super::gcs::GcsObject;
use super::location::InputLink;
use folder::GcsFolder;
use partial::PartialObject;
use plan::Decision;
use ranges::ByteRange;
use sparse::SparseFile;

pub use object::{FileObject, ObjectInfo, RangeRead};

/// First read and the unit of planning reads: TIFF headers and directories are small,
/// and one block usually holds a directory and the values right after it.
const PLAN_BLOCK: u64 = 64 * 1024;
/// Gaps up to this size between wanted ranges are read rather than split around.
const COALESCE_GAP: u64 = 16 * 1024;
/// Largest single GET: bounds the memory each concurrent request holds.
const PIECE: u64 = 4 * 1024 * 1024;
/// In `auto` mode, a plan covering more than this fraction of the object is served by
/// reading the whole object (still ranged and concurrent, but with no planning gaps).
const AUTO_MAX_FRACTION: f64 = 0.5;

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

/// Fetches `object` to a sparse local file in `temp_dir`, ranged where it can.
pub async fn fetch_ranged(
    object: &dyn RangeRead,
    settings: &RangedSettings,
    temp_dir: &Path,
) -> Result<LocalSlide, StorageError> {
    let (info, head) = object.head(PLAN_BLOCK).await?;
    let mut partial = PartialObject::new(info.size);
    partial.insert(0, head);

    let mut decision = plan::decide(object, info, settings, &mut partial).await?;
    let size = info.size;
    let whole = [ByteRange {
        start: 0,
        end: size,
    }];
    let held = partial.held();
    let mut remaining = match &decision {
        Decision::Ranged { ranges, .. } => ranges::subtract(
            &ranges::coalesce(ranges.iter().copied(), size, COALESCE_GAP),
            &held,
        ),
        Decision::Whole { .. } => ranges::subtract(&whole, &held),
    };
    // In auto mode a plan that covers most of the object is not worth its gaps.
    if matches!(decision, Decision::Ranged { .. })
        && settings.mode == FetchMode::Auto
        && (ranges::total(&remaining) + partial.held_bytes()) as f64
            > size as f64 * AUTO_MAX_FRACTION
    {
        decision = Decision::Whole {
            reason: "the plan covers most of the object".into(),
        };
        remaining = ranges::subtract(&whole, &held);
    }

    let (copy, temp) = SparseFile::create(temp_dir, &object.suffix(), size)?;
    let mut written = 0u64;
    for (offset, bytes) in partial.segments() {
        copy.write_at(offset, bytes.clone()).await?;
        written += bytes.len() as u64;
    }
    // The piece futures share the copy by reference.
    let copy_ref = &copy;
    let pieces = ranges::split(&remaining, PIECE);
    let fetched: u64 = futures::stream::iter(pieces.into_iter().map(|piece| async move {
        let bytes = object.range(info, piece).await?;
        let n = bytes.len() as u64;
        copy_ref.write_at(piece.start, bytes).await?;
        Ok::<u64, StorageError>(n)
    }))
    .buffer_unordered(settings.concurrency.max(1))
    .try_fold(0u64, |sum, n| async move { Ok(sum + n) })
    .await?;

    let bytes_fetched = written + fetched;
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
    Ok(LocalSlide::temporary(temp, bytes_fetched, via))
}

/// The fetch strategy the service uses: ranged or whole per `storage.fetch`, local
/// `file://` inputs in place.
pub struct RangedFetcher {
    pub client: Option<Arc<Storage>>,
    pub temp_dir: PathBuf,
    pub settings: RangedSettings,
    pub whole: WholeObjectFetcher,
}

impl SlideFetcher for RangedFetcher {
    fn fetch<'a>(
        &'a self,
        input: &'a InputLink,
    ) -> BoxFuture<'a, Result<LocalSlide, StorageError>> {
        Box::pin(async move {
            match (input, &self.client) {
                // A DICOM instance is one file of a series: whatever the mode, the
                // series is fetched together (whole mode reads every instance whole).
                (InputLink::Gcs { bucket, object }, Some(client))
                    if series::is_dicom_link(object) =>
                {
                    let folder = GcsFolder::of(client.clone(), bucket, object);
                    let linked = object.rsplit('/').next().unwrap_or(object);
                    series::fetch_series(&folder, linked, &self.settings, &self.temp_dir).await
                }
                (InputLink::Gcs { bucket, object }, Some(client))
                    if self.settings.mode != FetchMode::Whole =>
                {
                    let object = GcsObject {
                        client: client.clone(),
                        bucket: bucket.clone(),
                        object: object.clone(),
                    };
                    fetch_ranged(&object, &self.settings, &self.temp_dir).await
                }
                _ => self.whole.fetch(input).await,
            }
        })
    }
}
