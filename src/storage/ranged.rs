//! Ranged reads: fetch only the bytes a thumbnail needs into a sparse local file.
//!
//! The flow for one slide: read the first block (which also tells the object's size and
//! generation), run the planner ([`crate::tiff::read_plan`]) over what has been fetched,
//! fetch what it asks for in batches until it has a plan, then fetch the planned ranges
//! with bounded concurrency and write every fetched byte at its offset in a sparse file
//! of the object's size. OpenSlide opens that file as if it were the whole slide.
//!
//! Files the planner does not model, and (in `auto` mode) plans that would fetch most of
//! the object anyway, get the rest of the object the same way instead: still concurrent
//! ranged GETs, nothing fetched twice. Every later GET is pinned to the generation the
//! first one saw, so an object replaced mid-fetch fails instead of mixing two files.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use google_cloud_storage::client::Storage;
use google_cloud_storage::model_ext::ReadRange;
use serde::{Deserialize, Serialize};

use super::error::StorageError;
use super::fetch::{
    FetchPath, LocalSlide, SlideFetcher, WholeObjectFetcher, suffix_of, temp_slide,
};
use super::gcs::{bucket_path, emulator_object_size};
use super::location::InputLink;
use super::ranges::{self, ByteRange};
use super::sparse::RangeCache;
use crate::tiff::read_plan::{self, PlanError};

/// First read and the unit of planning reads: TIFF headers and directories are small,
/// and one block usually holds a directory and the values right after it.
const PLAN_BLOCK: u64 = 64 * 1024;
/// Gaps up to this size between wanted ranges are read rather than split around.
const COALESCE_GAP: u64 = 16 * 1024;
/// Largest single GET: bounds the memory each concurrent request holds.
const PIECE: u64 = 4 * 1024 * 1024;
/// Planning round trips before giving up on a file (a directory chain this long is
/// either hostile or better downloaded whole).
const MAX_PLAN_ROUNDS: usize = 64;
/// Planning reads beyond this many bytes mean the metadata alone is huge: download whole.
const MAX_PLAN_BYTES: u64 = 64 * 1024 * 1024;
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

/// Size and version of a remote object, reported by its first read.
#[derive(Debug, Clone, Copy)]
pub struct ObjectInfo {
    pub size: u64,
    /// Pinned on every later read; 0 where the store has no generations.
    pub generation: i64,
}

/// One object read by byte ranges.
pub trait RangeRead: Send + Sync {
    /// The first `len` bytes (fewer if the object is shorter) and the object's size.
    fn head(&self, len: u64) -> BoxFuture<'_, Result<(ObjectInfo, Bytes), StorageError>>;
    /// The bytes of `range`, which lies inside the object.
    fn range(
        &self,
        info: ObjectInfo,
        range: ByteRange,
    ) -> BoxFuture<'_, Result<Bytes, StorageError>>;
    /// File-name suffix for the local copy (OpenSlide drivers look at extensions).
    fn suffix(&self) -> String;
    /// For error messages.
    fn link(&self) -> String;
}

/// A GCS object.
pub struct GcsObject {
    pub client: Arc<Storage>,
    pub bucket: String,
    pub object: String,
}

impl GcsObject {
    async fn read(
        &self,
        range: ReadRange,
        generation: i64,
    ) -> Result<(ObjectInfo, Bytes), StorageError> {
        let link = self.link();
        let mut request = self
            .client
            .read_object(bucket_path(&self.bucket), &self.object)
            .set_read_range(range);
        if generation > 0 {
            request = request.set_generation(generation);
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            // A range that starts at 0 is unsatisfiable only for an empty object.
            Err(e) if e.http_status_code() == Some(416) => {
                return Ok((
                    ObjectInfo {
                        size: 0,
                        generation: 0,
                    },
                    Bytes::new(),
                ));
            }
            // A pinned generation that is gone means the object was replaced while we
            // read it: transient, so the retry starts over on the new version.
            Err(e) if generation > 0 && e.http_status_code() == Some(404) => {
                return Err(StorageError::Unavailable {
                    link,
                    message: "the object was replaced while it was being read".into(),
                });
            }
            Err(e) => return Err(StorageError::from_gcs(&link, &e)),
        };
        let highlights = response.object();
        let info = ObjectInfo {
            size: u64::try_from(highlights.size).unwrap_or(0),
            generation: highlights.generation,
        };
        let mut bytes = BytesMut::new();
        while let Some(chunk) = response.next().await {
            bytes.extend_from_slice(&chunk.map_err(|e| StorageError::from_gcs(&link, &e))?);
        }
        Ok((info, bytes.freeze()))
    }
}

impl RangeRead for GcsObject {
    fn head(&self, len: u64) -> BoxFuture<'_, Result<(ObjectInfo, Bytes), StorageError>> {
        Box::pin(async move {
            let (mut info, bytes) = self.read(ReadRange::segment(0, len), 0).await?;
            let got = bytes.len() as u64;
            if info.size > 0 && got < len.min(info.size) {
                return Err(StorageError::Unavailable {
                    link: self.link(),
                    message: format!("read {got} bytes of a {}-byte object", info.size),
                });
            }
            if info.size == 0 && got < len {
                // The whole object is in hand, so its size is known without the header.
                info.size = got;
            } else if info.size == 0 {
                info.size = emulator_object_size(&self.bucket, &self.object)
                    .await
                    .ok_or_else(|| StorageError::Unavailable {
                        link: self.link(),
                        message: "storage did not report the object's size".into(),
                    })?;
            }
            Ok((info, bytes))
        })
    }

    fn range(
        &self,
        info: ObjectInfo,
        range: ByteRange,
    ) -> BoxFuture<'_, Result<Bytes, StorageError>> {
        Box::pin(async move {
            let (_, bytes) = self
                .read(
                    ReadRange::segment(range.start, range.len()),
                    info.generation,
                )
                .await?;
            short_read_check(&self.link(), range, &bytes)?;
            Ok(bytes)
        })
    }

    fn suffix(&self) -> String {
        suffix_of(&self.object)
    }

    fn link(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.object)
    }
}

/// A local file read by ranges: the ranged path exercised and measured without a bucket
/// (tests, benchmarks, the CLI).
pub struct FileObject {
    pub path: PathBuf,
}

impl RangeRead for FileObject {
    fn head(&self, len: u64) -> BoxFuture<'_, Result<(ObjectInfo, Bytes), StorageError>> {
        Box::pin(async move {
            let size = std::fs::metadata(&self.path)
                .map_err(|e| self.local_error(e))?
                .len();
            let info = ObjectInfo {
                size,
                generation: 0,
            };
            let bytes = self.range(info, ByteRange::at(0, len).clip(size)).await?;
            Ok((info, bytes))
        })
    }

    fn range(
        &self,
        _info: ObjectInfo,
        range: ByteRange,
    ) -> BoxFuture<'_, Result<Bytes, StorageError>> {
        Box::pin(async move {
            let file = File::open(&self.path).map_err(|e| self.local_error(e))?;
            let mut buf = vec![0u8; range.len() as usize];
            file.read_exact_at(&mut buf, range.start)
                .map_err(|e| self.local_error(e))?;
            Ok(Bytes::from(buf))
        })
    }

    fn suffix(&self) -> String {
        suffix_of(&self.path.to_string_lossy())
    }

    fn link(&self) -> String {
        format!("file://{}", self.path.display())
    }
}

impl FileObject {
    fn local_error(&self, e: std::io::Error) -> StorageError {
        match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound(self.link()),
            _ => StorageError::Local {
                path: self.path.display().to_string(),
                source: e,
            },
        }
    }
}

/// A store that answers a range with fewer bytes than asked would leave a hole that reads
/// as zeros; treat it as a transient failure instead.
fn short_read_check(link: &str, range: ByteRange, bytes: &Bytes) -> Result<(), StorageError> {
    if bytes.len() as u64 == range.len() {
        return Ok(());
    }
    Err(StorageError::Unavailable {
        link: link.to_string(),
        message: format!(
            "asked for {} bytes at {}, got {}",
            range.len(),
            range.start,
            bytes.len()
        ),
    })
}

/// Why the object was fetched the way it was.
#[derive(Debug, Clone, PartialEq)]
enum Decision {
    Ranged {
        level: usize,
        ranges: Vec<ByteRange>,
    },
    Whole {
        reason: String,
    },
}

/// Fetches `object` to a sparse local file in `temp_dir`, ranged where it can.
pub async fn fetch_ranged(
    object: &dyn RangeRead,
    settings: &RangedSettings,
    temp_dir: &Path,
) -> Result<LocalSlide, StorageError> {
    let (info, head) = object.head(PLAN_BLOCK).await?;
    let mut cache = RangeCache::new(info.size);
    cache.insert(0, head);

    let mut decision = plan(object, info, settings, &mut cache).await?;
    let size = info.size;
    let whole = [ByteRange {
        start: 0,
        end: size,
    }];
    let held = cache.held();
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
        && (ranges::total(&remaining) + cache.bytes()) as f64 > size as f64 * AUTO_MAX_FRACTION
    {
        decision = Decision::Whole {
            reason: "the plan covers most of the object".into(),
        };
        remaining = ranges::subtract(&whole, &held);
    }

    let (file, temp) = temp_slide(temp_dir, &object.suffix())?;
    let file = Arc::new(file);
    let local = |source: std::io::Error| StorageError::Local {
        path: temp_dir.display().to_string(),
        source,
    };
    file.set_len(size).map_err(local)?;
    let mut written = 0u64;
    for (offset, bytes) in cache.segments() {
        write_at(&file, offset, bytes.clone())
            .await
            .map_err(local)?;
        written += bytes.len() as u64;
    }
    let pieces = ranges::split(&remaining, PIECE);
    let fetched: u64 = futures::stream::iter(pieces.into_iter().map(|piece| {
        let file = file.clone();
        async move {
            let bytes = object.range(info, piece).await?;
            let n = bytes.len() as u64;
            write_at(&file, piece.start, bytes).await.map_err(local)?;
            Ok::<u64, StorageError>(n)
        }
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
    Ok(LocalSlide::temporary(temp, bytes_fetched, via))
}

/// Runs the planner until it has a plan or gives up, fetching what it asks for.
async fn plan(
    object: &dyn RangeRead,
    info: ObjectInfo,
    settings: &RangedSettings,
    cache: &mut RangeCache,
) -> Result<Decision, StorageError> {
    if settings.mode == FetchMode::Whole {
        return Ok(Decision::Whole {
            reason: "storage.fetch is whole".into(),
        });
    }
    for _ in 0..MAX_PLAN_ROUNDS {
        let wanted = match read_plan::plan(cache, settings.max_size, settings.max_slide_pixels) {
            Ok(p) => {
                return Ok(Decision::Ranged {
                    level: p.level,
                    ranges: p.ranges,
                });
            }
            Err(PlanError::Unplannable(reason)) => return Ok(Decision::Whole { reason }),
            Err(PlanError::Need(wanted)) => wanted,
        };
        // Read ahead a block past each miss: the next directory is usually nearby.
        let blocks = wanted
            .into_iter()
            .map(|r| ByteRange::at(r.start, r.len().max(PLAN_BLOCK)));
        let missing = ranges::subtract(
            &ranges::coalesce(blocks, info.size, COALESCE_GAP),
            &cache.held(),
        );
        if cache.bytes() + ranges::total(&missing) > MAX_PLAN_BYTES {
            return Ok(Decision::Whole {
                reason: "the slide's directories alone are larger than the planning budget".into(),
            });
        }
        if missing.is_empty() {
            // The planner asked for bytes we hold: a bug, not a reason to loop.
            return Ok(Decision::Whole {
                reason: "the planner did not converge".into(),
            });
        }
        let pieces = ranges::split(&missing, PIECE);
        let got: Vec<(u64, Bytes)> = futures::stream::iter(
            pieces
                .into_iter()
                .map(|p| async move { object.range(info, p).await.map(|b| (p.start, b)) }),
        )
        .buffer_unordered(settings.concurrency.max(1))
        .try_collect()
        .await?;
        for (offset, bytes) in got {
            cache.insert(offset, bytes);
        }
    }
    Ok(Decision::Whole {
        reason: "the directory chain needs too many round trips".into(),
    })
}

async fn write_at(file: &Arc<File>, offset: u64, bytes: Bytes) -> std::io::Result<()> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || file.write_all_at(&bytes, offset))
        .await
        .map_err(std::io::Error::other)?
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
