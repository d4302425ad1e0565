//! The tracker's per-partition budget (a partition pauses when it is full) and how
//! often the contiguous done prefix is committed.
//!
//! Pausing has a price: librdkafka throws away what it pre-fetched for the partition,
//! and resuming costs a fetch round trip. Resuming as soon as one request finishes
//! would pay it for nearly every completion at saturation, so a paused partition
//! resumes only once its in-flight work is down to half its budget: the round trip
//! then overlaps with the half still running. The global budget does not pause at all:
//! it gates the reader (see [`super::room`]).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_in_flight_per_partition: usize,
    pub commit_interval: Duration,
}

impl Limits {
    /// Whether a partition with `in_flight` requests should be paused, given whether
    /// it is now.
    pub fn keep_paused(&self, paused: bool, in_flight: usize) -> bool {
        if paused {
            in_flight > self.max_in_flight_per_partition / 2
        } else {
            in_flight >= self.max_in_flight_per_partition
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_partition: usize) -> Limits {
        Limits {
            max_in_flight_per_partition: per_partition,
            commit_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_full_partition_pauses_and_resumes_at_half_its_budget() {
        let l = limits(4);
        assert!(!l.keep_paused(false, 3));
        assert!(l.keep_paused(false, 4));
        assert!(l.keep_paused(true, 3), "one completion does not resume it");
        assert!(!l.keep_paused(true, 2));
    }

    #[test]
    fn budgets_of_one_still_resume() {
        let l = limits(1);
        assert!(l.keep_paused(false, 1));
        assert!(!l.keep_paused(true, 0));
    }
}
