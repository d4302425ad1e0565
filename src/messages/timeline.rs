//! A request's timeline: when it reached each point of the pipeline, in milliseconds
//! after its Kafka timestamp (or after it was read, for `POST /process`). It travels on
//! the ticket, each stage marks it, and the publisher logs it with the request's last
//! line, so a slow request shows where it waited (queued behind a budget, behind the
//! decoders, in the fetch long-poll) rather than only that it was slow. The end-to-end
//! bench prints the median of each step.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// The points a request passes, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The reader received the record.
    Received,
    /// The tracker dispatched it (after per-key order).
    Admitted,
    FetchStart,
    FetchEnd,
    DecodeStart,
    DecodeEnd,
    ResizeEnd,
    UploadStart,
    UploadEnd,
    /// The broker acknowledged the response.
    Published,
}

impl Mark {
    pub const ALL: [Mark; 10] = [
        Mark::Received,
        Mark::Admitted,
        Mark::FetchStart,
        Mark::FetchEnd,
        Mark::DecodeStart,
        Mark::DecodeEnd,
        Mark::ResizeEnd,
        Mark::UploadStart,
        Mark::UploadEnd,
        Mark::Published,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Mark::Received => "received",
            Mark::Admitted => "admitted",
            Mark::FetchStart => "fetch_start",
            Mark::FetchEnd => "fetch_end",
            Mark::DecodeStart => "decode_start",
            Mark::DecodeEnd => "decode_end",
            Mark::ResizeEnd => "resize_end",
            Mark::UploadStart => "upload_start",
            Mark::UploadEnd => "upload_end",
            Mark::Published => "published",
        }
    }
}

/// Not marked (a request that failed early skips the later points).
const UNMARKED: u32 = u32::MAX;

/// Shared by every clone of a job's ticket.
#[derive(Debug, Clone)]
pub struct Timeline(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// The clock's origin: when the record was read, less how long it had waited on
    /// the broker by its Kafka timestamp.
    origin: Instant,
    marks: [AtomicU32; Mark::ALL.len()],
    /// The worker process that held the slide (0: none), so a timeline shows that two
    /// slides never shared one.
    worker_pid: AtomicU32,
}

impl Timeline {
    /// A timeline whose zero is `waited_ms` before now (the record's age when read).
    pub fn starting(waited_ms: u64) -> Timeline {
        let now = Instant::now();
        let origin = now
            .checked_sub(std::time::Duration::from_millis(waited_ms))
            .unwrap_or(now);
        let timeline = Timeline(Arc::new(Inner {
            origin,
            marks: std::array::from_fn(|_| AtomicU32::new(UNMARKED)),
            worker_pid: AtomicU32::new(0),
        }));
        timeline.mark(Mark::Received);
        timeline
    }

    pub fn mark(&self, mark: Mark) {
        let ms = self
            .0
            .origin
            .elapsed()
            .as_millis()
            .min(u128::from(UNMARKED - 1)) as u32;
        self.0.marks[mark as usize].store(ms, Ordering::Relaxed);
    }

    /// Records the worker process that holds the slide.
    pub fn set_worker_pid(&self, pid: u32) {
        self.0.worker_pid.store(pid, Ordering::Relaxed);
    }

    pub fn worker_pid(&self) -> Option<u32> {
        Some(self.0.worker_pid.load(Ordering::Relaxed)).filter(|&pid| pid != 0)
    }

    pub fn get(&self, mark: Mark) -> Option<u32> {
        Some(self.0.marks[mark as usize].load(Ordering::Relaxed)).filter(|&ms| ms != UNMARKED)
    }
}

/// `received=3 admitted=3 fetch_start=3 ...` (milliseconds), marked points only.
impl std::fmt::Display for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for mark in Mark::ALL {
            if let Some(ms) = self.get(mark) {
                write!(f, "{}{}={ms}", if first { "" } else { " " }, mark.label())?;
                first = false;
            }
        }
        if let Some(pid) = self.worker_pid() {
            write!(f, "{}worker_pid={pid}", if first { "" } else { " " })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_count_from_the_records_timestamp_and_print_in_order() {
        let t = Timeline::starting(120);
        let received = t.get(Mark::Received).expect("marked at start");
        assert!((120..1000).contains(&received), "{received}");
        assert_eq!(t.get(Mark::FetchStart), None);
        t.clone().mark(Mark::Published);
        let printed = t.to_string();
        assert!(printed.starts_with("received="), "{printed}");
        assert!(printed.contains(" published="), "{printed}");
        assert!(!printed.contains("fetch_start"), "{printed}");
    }
}
