//! The tracker's budgets: how many requests may be in flight in all and per partition
//! (a partition, or every partition, pauses when its budget is full), and how often
//! the contiguous done prefix is committed.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_in_flight: usize,
    pub max_in_flight_per_partition: usize,
    pub commit_interval: Duration,
}
