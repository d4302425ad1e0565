//! Getting a slide onto local disk for OpenSlide. The strategy sits behind
//! [`SlideFetcher`] so a ranged reader ([`super::ranged`]) can replace the whole-object
//! download without touching any actor. Both read GCS through [`GcsObject::open`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use google_cloud_storage::client::Storage;
use google_cloud_storage::model_ext::ReadRange;
use tempfile::{TempDir, TempPath};
use tokio::io::AsyncWriteExt;

use super::budget::{Budgets, Share};
use super::error::StorageError;
use super::gcs::GcsObject;
use super::location::InputLink;
use crate::planning::{PlanAnswer, PlanTask};

/// How a slide reached local disk (a metric label and a log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPath {
    /// Only the planned byte ranges, in a sparse file.
    Ranged,
    /// The whole object.
    Whole,
    /// A `file://` input used in place.
    Local,
}

impl FetchPath {
    pub fn label(self) -> &'static str {
        match self {
            FetchPath::Ranged => "ranged",
            FetchPath::Whole => "whole",
            FetchPath::Local => "local",
        }
    }
}

/// A slide available as a local file. A downloaded copy is deleted when this is dropped.
#[derive(Debug)]
pub struct LocalSlide {
    /// The file the engine opens (for a DICOM series, the linked instance, with the
    /// rest of the series beside it).
    pub path: PathBuf,
    /// Bytes read from storage for this request.
    pub bytes_fetched: u64,
    pub via: FetchPath,
    _temp: Option<Temporary>,
    /// The copy's share of `storage.max_temp_disk_mb`, given back with the copy.
    _disk: Option<Share>,
}

/// What a fetched copy deletes when it is dropped (held only for its `Drop`).
#[derive(Debug)]
enum Temporary {
    File {
        _path: TempPath,
    },
    /// A folder of copies (the instances of a DICOM series).
    Folder {
        _dir: TempDir,
    },
}

impl LocalSlide {
    /// A fetched copy, deleted when the returned value is dropped.
    pub fn temporary(temp: TempPath, bytes_fetched: u64, via: FetchPath) -> LocalSlide {
        LocalSlide {
            path: temp.to_path_buf(),
            bytes_fetched,
            via,
            _temp: Some(Temporary::File { _path: temp }),
            _disk: None,
        }
    }

    /// The same copy, holding its share of the temp-disk budget until it is dropped.
    pub fn holding(mut self, disk: Share) -> LocalSlide {
        self._disk = Some(disk);
        self
    }

    /// `name` inside a fetched folder, which is deleted (with everything in it) when the
    /// returned value is dropped.
    pub fn in_folder(
        folder: TempDir,
        name: &str,
        bytes_fetched: u64,
        via: FetchPath,
    ) -> LocalSlide {
        LocalSlide {
            path: folder.path().join(name),
            bytes_fetched,
            via,
            _temp: Some(Temporary::Folder { _dir: folder }),
            _disk: None,
        }
    }
}

/// `.ext` of an object or file name, or nothing.
pub fn suffix_of(name: &str) -> String {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| format!(".{e}"))
        .unwrap_or_default()
}

/// A new temporary file for a slide, keeping the object's extension (some OpenSlide
/// drivers look at it) and our prefix (so [`sweep_stale`] finds what a crash left).
pub fn temp_slide(
    temp_dir: &Path,
    suffix: &str,
) -> Result<(std::fs::File, TempPath), StorageError> {
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(suffix)
        .tempfile_in(temp_dir)
        .map(|t| t.into_parts())
        .map_err(|source| StorageError::Local {
            path: temp_dir.display().to_string(),
            source,
        })
}

pub trait SlideFetcher: Send + Sync {
    /// Fetches the slide `input` names; `planner` answers planning rounds (the slide's
    /// worker process: the fetcher itself never parses slide bytes).
    fn fetch<'a>(
        &'a self,
        input: &'a InputLink,
        planner: &'a dyn Planner,
    ) -> BoxFuture<'a, Result<LocalSlide, StorageError>>;
}

/// Who answers planning rounds for one slide: its worker process, or (under
/// `thumbnail.isolation = "none"`) a blocking thread of this process.
pub trait Planner: Send + Sync {
    fn plan(&self, task: PlanTask) -> BoxFuture<'_, Result<PlanAnswer, PlanFailure>>;
}

/// A slide refused while planning, or a planner that could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanFailure {
    pub kind: crate::error_kind::ErrorKind,
    pub retryable: bool,
    pub message: String,
}

impl PlanFailure {
    /// As a storage error about `link`.
    pub fn about(self, link: String) -> StorageError {
        StorageError::Slide {
            link,
            kind: self.kind,
            message: self.message,
        }
    }
}

/// Downloads the whole object to a temporary file (keeping its extension, which some
/// OpenSlide drivers look at). Local `file://` inputs are used in place.
pub struct WholeObjectFetcher {
    client: Option<Arc<Storage>>,
    temp_dir: PathBuf,
    budgets: Budgets,
}

/// Prefix of our temporary files, so a restart can sweep what a crash left behind.
pub const TEMP_PREFIX: &str = "wsi-slide-";

impl WholeObjectFetcher {
    pub fn new(client: Option<Arc<Storage>>, temp_dir: PathBuf, budgets: Budgets) -> Self {
        WholeObjectFetcher {
            client,
            temp_dir,
            budgets,
        }
    }

    async fn download(&self, bucket: &str, object: &str) -> Result<LocalSlide, StorageError> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| StorageError::Client("no GCS client configured".into()))?;
        let local = |source: std::io::Error| StorageError::Local {
            path: self.temp_dir.display().to_string(),
            source,
        };
        let gcs = GcsObject {
            client: client.clone(),
            bucket: bucket.to_string(),
            object: object.to_string(),
        };
        // One streamed GET of everything, unpinned: the same read path as the ranged
        // fetch, asked for the whole object.
        let mut read = gcs.open(ReadRange::all(), 0).await?;
        // An emulator may not report the size on the read; it answers a lookup.
        let size = match read.size {
            0 => super::gcs::emulator_object_size(bucket, object)
                .await
                .unwrap_or(0),
            size => size,
        };
        let disk =
            super::disk_room::take_room(&self.budgets.temp_disk, &self.temp_dir, size, &gcs.link())
                .await?;
        let (std_file, temp_path) = temp_slide(&self.temp_dir, &suffix_of(object))?;
        let mut file = tokio::fs::File::from_std(std_file);
        let mut bytes = 0u64;
        while let Some(chunk) = read.next().await? {
            bytes += chunk.len() as u64;
            // The size the store reported bounds what lands on the disk.
            if size > 0 && bytes > size {
                return Err(StorageError::Unavailable {
                    link: gcs.link(),
                    message: format!("the object grew past its {size} bytes mid-read"),
                });
            }
            file.write_all(&chunk).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        Ok(LocalSlide::temporary(temp_path, bytes, FetchPath::Whole).holding(disk))
    }
}

/// A budget a slide alone exceeds, as the failure of that slide.
pub fn over_budget(link: String, e: super::budget::OverBudget) -> StorageError {
    StorageError::Slide {
        link,
        kind: e.kind,
        message: e.to_string(),
    }
}

impl WholeObjectFetcher {
    /// The whole object, or a `file://` input in place.
    pub fn fetch<'a>(
        &'a self,
        input: &'a InputLink,
    ) -> BoxFuture<'a, Result<LocalSlide, StorageError>> {
        Box::pin(async move {
            match input {
                InputLink::Gcs { bucket, object } => self.download(bucket, object).await,
                InputLink::File { path } => {
                    let meta = tokio::fs::metadata(path)
                        .await
                        .map_err(|e| match e.kind() {
                            std::io::ErrorKind::NotFound => {
                                StorageError::NotFound(format!("file://{}", path.display()))
                            }
                            _ => StorageError::Local {
                                path: path.display().to_string(),
                                source: e,
                            },
                        })?;
                    Ok(LocalSlide {
                        path: path.clone(),
                        bytes_fetched: meta.len(),
                        via: FetchPath::Local,
                        _temp: None,
                        _disk: None,
                    })
                }
            }
        })
    }
}

/// A new temporary folder for the objects of one slide (a DICOM series), with our
/// prefix so [`sweep_stale`] finds what a crash left.
pub fn temp_folder(temp_dir: &Path) -> Result<TempDir, StorageError> {
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempdir_in(temp_dir)
        .map_err(|source| StorageError::Local {
            path: temp_dir.display().to_string(),
            source,
        })
}

/// Removes temporary slides (files, and folders of series) older than `max_age` that a
/// crashed process left behind. Younger ones may belong to another instance sharing the
/// directory.
pub fn sweep_stale(temp_dir: &Path, max_age: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(temp_dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > max_age)
        })
        .filter(|e| {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(path).is_ok(),
                _ => std::fs::remove_file(path).is_ok(),
            }
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn age(path: &Path, by: Duration) {
        let file = std::fs::File::open(path).unwrap();
        file.set_modified(SystemTime::now() - by).unwrap();
    }

    #[test]
    fn old_copies_and_series_folders_are_swept_young_ones_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (_, old_file) = temp_slide(dir.path(), ".svs").unwrap();
        let old_folder = temp_folder(dir.path()).unwrap();
        std::fs::write(old_folder.path().join("level-0.dcm"), b"x").unwrap();
        let (_, young_file) = temp_slide(dir.path(), ".svs").unwrap();
        let foreign = dir.path().join("not-ours");
        std::fs::write(&foreign, b"x").unwrap();
        for path in [
            &old_file.to_path_buf(),
            &old_folder.path().to_path_buf(),
            &foreign,
        ] {
            age(path, Duration::from_secs(7200));
        }
        assert_eq!(sweep_stale(dir.path(), Duration::from_secs(3600)), 2);
        assert!(!old_file.exists() && !old_folder.path().exists());
        assert!(young_file.exists() && foreign.exists());
    }
}
