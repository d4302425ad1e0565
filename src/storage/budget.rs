//! Process-wide budgets for what fetches hold: bytes buffered in memory, bytes on the
//! temp disk, planned ranges, concurrent series fetches.
//!
//! Why: per-request bounds multiply by the requests in flight (16 requests on a series
//! with large headers once took the service to 1.9 GB). A budget is a counting
//! semaphore shared by every request: past it a request waits (backpressure, fair,
//! first come first served), and a request that alone needs more than the whole budget
//! fails at once with a message naming the config key, instead of waiting forever.
//!
//! A request never waits on a budget while holding part of the same budget, so budgets
//! cannot deadlock: amounts are taken in one piece (see the callers).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error_kind::ErrorKind;

/// One budget.
#[derive(Debug)]
pub struct Budget {
    /// The config key, named in errors.
    key: &'static str,
    /// Bytes (or items) per permit.
    unit: u64,
    total_units: u32,
    semaphore: Arc<Semaphore>,
}

/// A share of a budget, given back when dropped.
#[derive(Debug)]
pub struct Share {
    _permit: Option<OwnedSemaphorePermit>,
    pub amount: u64,
}

/// A request needs more than the whole budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the slide needs {needed} of {key}, whose whole budget is {total}; raise {key} if the slide is genuine"
)]
pub struct OverBudget {
    pub key: &'static str,
    pub needed: String,
    pub total: String,
    pub kind: ErrorKind,
}

impl Budget {
    /// A budget of `total` (bytes or items) counted in `unit`s.
    pub fn new(key: &'static str, total: u64, unit: u64) -> Arc<Budget> {
        let unit = unit.max(1);
        let total_units = (total / unit).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Arc::new(Budget {
            key,
            unit,
            total_units,
            semaphore: Arc::new(Semaphore::new(total_units as usize)),
        })
    }

    pub fn total(&self) -> u64 {
        u64::from(self.total_units) * self.unit
    }

    /// What is free now (a gauge and test figure).
    pub fn available(&self) -> u64 {
        self.semaphore.available_permits() as u64 * self.unit
    }

    /// Takes `amount`, waiting while others hold the budget; fails at once when
    /// `amount` is more than the whole budget. `kind` is the failure's kind then.
    pub async fn take(&self, amount: u64, kind: ErrorKind) -> Result<Share, OverBudget> {
        let units = amount.div_ceil(self.unit);
        if units > u64::from(self.total_units) {
            return Err(OverBudget {
                key: self.key,
                needed: self.show(amount),
                total: self.show(self.total()),
                kind,
            });
        }
        if units == 0 {
            return Ok(Share {
                _permit: None,
                amount,
            });
        }
        let waited = self.semaphore.available_permits() < units as usize;
        if waited {
            crate::telemetry::record::budget_wait(self.key);
        }
        let permit = self
            .semaphore
            .clone()
            .acquire_many_owned(units as u32)
            .await
            .ok();
        Ok(Share {
            _permit: permit,
            amount,
        })
    }

    /// Whether shares other than `mine` are held now.
    pub fn held_by_others(&self, mine: &Share) -> bool {
        let mine_units = mine.amount.div_ceil(self.unit);
        let held_units = u64::from(self.total_units) - self.semaphore.available_permits() as u64;
        held_units > mine_units
    }

    fn show(&self, amount: u64) -> String {
        if self.unit >= 1024 {
            format!("{} MiB", amount.div_ceil(1024 * 1024))
        } else {
            amount.to_string()
        }
    }
}

/// The four budgets of a service.
#[derive(Debug, Clone)]
pub struct Budgets {
    /// Fetched bytes held in memory at once (every in-flight GET's buffer).
    pub buffered: Arc<Budget>,
    /// Bytes of local copies on the temp disk.
    pub temp_disk: Arc<Budget>,
    /// Ranges of final plans waiting to be fetched.
    pub planned_ranges: Arc<Budget>,
    /// DICOM series fetched at once.
    pub series: Arc<Budget>,
}

impl Budgets {
    pub fn new(buffered_mb: u64, temp_disk_mb: u64, planned_ranges: u64, series: u64) -> Budgets {
        const MIB: u64 = 1024 * 1024;
        Budgets {
            buffered: Budget::new("storage.max_buffered_mb", buffered_mb * MIB, 1024),
            temp_disk: Budget::new("storage.max_temp_disk_mb", temp_disk_mb * MIB, 1024),
            planned_ranges: Budget::new("storage.max_planned_ranges", planned_ranges, 1),
            series: Budget::new("storage.max_series_fetches", series, 1),
        }
    }

    /// Budgets for tools and tests: generous, never in the way.
    pub fn unlimited() -> Budgets {
        Budgets::new(1 << 20, 1 << 24, 1 << 26, 1 << 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn past_the_budget_a_request_waits_until_a_share_comes_back() {
        let budget = Budget::new("test.key", 10 * 1024, 1024);
        let first = budget
            .take(8 * 1024, ErrorKind::SlideTooLarge)
            .await
            .unwrap();
        assert_eq!(budget.available(), 2 * 1024);
        let second = budget.take(4 * 1024, ErrorKind::SlideTooLarge);
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut second)
                .await
                .is_err(),
            "waits while the budget is held"
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), second)
            .await
            .expect("goes on once the first share is back")
            .unwrap();
        assert_eq!(second.amount, 4 * 1024);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_fails_at_once_naming_the_key() {
        let budget = Budget::new("storage.max_temp_disk_mb", 1024 * 1024, 1024);
        let err = budget
            .take(3 * 1024 * 1024, ErrorKind::SlideTooLarge)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::SlideTooLarge);
        let text = err.to_string();
        assert!(
            text.contains("3 MiB") && text.contains("storage.max_temp_disk_mb"),
            "{text}"
        );
    }
}
