//! The objects ranged reads read from: [`RangeRead`] is "give me bytes `start..end` of
//! this object", with the object's size and generation learnt from the first read and
//! every later read pinned to that generation. Two implementations: a GCS object (the
//! service) and a local file (tests, benchmarks and the CLI measure the ranged path
//! without a bucket).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;
use futures::future::BoxFuture;
use google_cloud_storage::model_ext::ReadRange;

use super::ranges::ByteRange;
use crate::storage::error::StorageError;
use crate::storage::fetch::suffix_of;
use crate::storage::gcs::{GcsObject, emulator_object_size};

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

impl RangeRead for GcsObject {
    fn head(&self, len: u64) -> BoxFuture<'_, Result<(ObjectInfo, Bytes), StorageError>> {
        Box::pin(async move {
            let read = self.open(ReadRange::segment(0, len), 0).await?;
            let mut info = ObjectInfo {
                size: read.size,
                generation: read.generation,
            };
            let bytes = read.collect().await?;
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
            let bytes = self
                .open(
                    ReadRange::segment(range.start, range.len()),
                    info.generation,
                )
                .await?
                .collect()
                .await?;
            short_read_check(&self.link(), range, &bytes)?;
            Ok(bytes)
        })
    }

    fn suffix(&self) -> String {
        suffix_of(&self.object)
    }

    fn link(&self) -> String {
        // The inherent `GcsObject::link`, which the GCS errors name too.
        GcsObject::link(self)
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
