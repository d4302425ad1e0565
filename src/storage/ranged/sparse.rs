//! The local copy OpenSlide opens after a ranged fetch: a temporary file of the object's
//! full size in which only the fetched ranges are written. The rest is a hole that reads
//! as zeros and takes no disk space; the plan guarantees that nothing reads those bytes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tempfile::TempPath;

use crate::storage::error::StorageError;
use crate::storage::fetch::temp_slide;

/// A temporary file of an object's size, written at offsets (concurrently: each write
/// is a positioned write on a blocking thread).
pub struct SparseFile {
    file: Arc<File>,
    /// Named in errors.
    temp_dir: PathBuf,
}

impl SparseFile {
    /// A new temporary file in `temp_dir`, `size` bytes long and all hole, and its path,
    /// which deletes it when dropped.
    pub fn create(
        temp_dir: &Path,
        suffix: &str,
        size: u64,
    ) -> Result<(SparseFile, TempPath), StorageError> {
        let (file, temp) = temp_slide(temp_dir, suffix)?;
        Ok((SparseFile::sized(file, temp_dir, size)?, temp))
    }

    /// A new file `name` in `folder` (a temporary folder, which deletes it), `size`
    /// bytes long and all hole.
    pub fn create_in(folder: &Path, name: &str, size: u64) -> Result<SparseFile, StorageError> {
        let file = File::create_new(folder.join(name)).map_err(|source| StorageError::Local {
            path: folder.display().to_string(),
            source,
        })?;
        SparseFile::sized(file, folder, size)
    }

    fn sized(file: File, dir: &Path, size: u64) -> Result<SparseFile, StorageError> {
        let sparse = SparseFile {
            file: Arc::new(file),
            temp_dir: dir.to_path_buf(),
        };
        sparse.file.set_len(size).map_err(|e| sparse.local(e))?;
        Ok(sparse)
    }

    /// Writes `bytes` at `offset`.
    pub async fn write_at(&self, offset: u64, bytes: Bytes) -> Result<(), StorageError> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.write_all_at(&bytes, offset))
            .await
            .map_err(std::io::Error::other)
            .and_then(|written| written)
            .map_err(|e| self.local(e))
    }

    fn local(&self, source: std::io::Error) -> StorageError {
        StorageError::Local {
            path: self.temp_dir.display().to_string(),
            source,
        }
    }
}
