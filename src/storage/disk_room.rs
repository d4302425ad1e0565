//! Room on the temp disk for a local copy: a share of `storage.max_temp_disk_mb` (the
//! process-wide budget) and, with it, the free space the temp directory really has.
//!
//! Why both: the budget bounds what the service's own copies may hold, but the disk
//! may be smaller than the budget (a pod's ephemeral storage, an emptyDir shared with
//! logs) or filled by something else. A download that fills it makes the kubelet evict
//! the pod, and the restart journal goes with it. So before a copy is written, the
//! directory must have the copy's bytes free plus [`RESERVE`]. When it has not:
//! - while other copies are on the disk, the request gives its share back and waits
//!   (backoff; one log line per 15 s), since their end frees the space;
//! - when none is, or after [`MAX_WAIT`], it fails as `storage_unavailable` (a system
//!   fault, retried, never the slide's), naming the directory and the fix.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error_kind::ErrorKind;
use crate::log_throttle::LogThrottle;
use crate::storage::budget::{Budget, Share};
use crate::storage::error::StorageError;
use crate::storage::fetch::over_budget;

/// Free space kept beyond a copy: the PNG being written, logs, the journal.
pub const RESERVE: u64 = 64 * 1024 * 1024;
/// Longest wait for others' copies to free the disk.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
const BUDGET_LABEL: &str = "temp_dir_free_space";

static WAITING: LogThrottle = LogThrottle::new(Duration::from_secs(15));

/// Bytes an unprivileged writer may still put in the file system holding `dir`.
// fsblkcnt_t and c_ulong are u64 here, u32 on 32-bit targets.
#[allow(clippy::useless_conversion)]
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size())))
}

/// Whether `amount` fits in `free` with the reserve left.
pub fn fits(free: u64, amount: u64) -> bool {
    free >= amount.saturating_add(RESERVE)
}

/// Takes `amount` of `budget` once `dir` has room for it; see the module doc.
pub async fn take_room(
    budget: &Budget,
    dir: &Path,
    amount: u64,
    link: &str,
) -> Result<Share, StorageError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        let share = budget
            .take(amount, ErrorKind::SlideTooLarge)
            .await
            .map_err(|e| over_budget(link.to_string(), e))?;
        let free = free_bytes(dir).map_err(|source| StorageError::Local {
            path: dir.display().to_string(),
            source,
        })?;
        if fits(free, amount) {
            return Ok(share);
        }
        let others = budget.held_by_others(&share);
        drop(share);
        if !others || started.elapsed() >= MAX_WAIT {
            return Err(StorageError::Unavailable {
                link: link.to_string(),
                message: format!(
                    "the temp directory {} has {} MiB free; the slide's copy needs {} MiB \
                     plus {} MiB spare: give the service more temp disk (the pod's \
                     ephemeral storage or scratch volume) or lower storage.max_temp_disk_mb \
                     below it",
                    dir.display(),
                    free >> 20,
                    amount.div_ceil(1 << 20),
                    RESERVE >> 20
                ),
            });
        }
        crate::telemetry::record::budget_wait(BUDGET_LABEL);
        if let Some(held_back) = WAITING.allow() {
            tracing::warn!(
                dir = %dir.display(),
                free_mib = free >> 20,
                need_mib = amount.div_ceil(1 << 20),
                held_back,
                "the temp directory is short of space; waiting for other copies to finish"
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_kept_beyond_the_copy() {
        assert!(fits(RESERVE + 10, 10));
        assert!(!fits(RESERVE + 9, 10));
        assert!(!fits(u64::MAX - 1, u64::MAX));
        assert!(free_bytes(Path::new("/")).is_ok());
        assert!(free_bytes(Path::new("/no/such/dir")).is_err());
    }

    #[tokio::test]
    async fn a_copy_larger_than_the_free_space_fails_at_once_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        // A budget larger than the disk, as a misconfigured pod has.
        let budget = Budget::new("storage.max_temp_disk_mb", u64::MAX >> 8, 1 << 20);
        let too_big = free + 1;
        let error = take_room(&budget, dir.path(), too_big, "gs://b/s.svs")
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::StorageUnavailable);
        let text = error.to_string();
        assert!(text.contains("storage.max_temp_disk_mb"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        // The share was given back.
        assert_eq!(budget.available(), budget.total());
        // What fits is taken.
        let share = take_room(&budget, dir.path(), 1 << 20, "gs://b/s.svs")
            .await
            .unwrap();
        assert_eq!(share.amount, 1 << 20);
    }

    #[tokio::test]
    async fn while_other_copies_hold_the_disk_a_request_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        let budget = Budget::new("storage.max_temp_disk_mb", u64::MAX >> 8, 1 << 20);
        let other = budget
            .take(1 << 20, ErrorKind::SlideTooLarge)
            .await
            .unwrap();
        let waiter = {
            let budget = budget.clone();
            let path = dir.path().to_path_buf();
            tokio::spawn(async move { take_room(&budget, &path, free + 1, "gs://b/s").await })
        };
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!waiter.is_finished(), "it waits while another copy is held");
        drop(other);
        // The other copy is gone and the disk is still short: it fails, not hangs.
        let result = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("ends once nothing else holds the disk")
            .unwrap();
        assert_eq!(result.unwrap_err().kind(), ErrorKind::StorageUnavailable);
    }
}
