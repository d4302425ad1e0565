//! Offset arithmetic for at-least-once, contiguous commits.
//!
//! Per partition we keep the offsets that were handed out and are not done yet. The
//! offset to commit (Kafka's "next offset to read") is the lowest unfinished offset, or
//! one past the highest offset seen when nothing is unfinished. It can never pass an
//! unfinished request, whatever order requests complete in.

use std::collections::BTreeSet;

#[derive(Debug, Default, Clone)]
pub struct PartitionOffsets {
    in_flight: BTreeSet<i64>,
    highest_seen: Option<i64>,
    committed: Option<i64>,
    committed_metadata: String,
}

impl PartitionOffsets {
    /// Records that `offset` has been handed to the pipeline.
    pub fn begin(&mut self, offset: i64) {
        self.in_flight.insert(offset);
        self.highest_seen = Some(self.highest_seen.map_or(offset, |h| h.max(offset)));
    }

    /// Records that `offset` is done (response or failure record acknowledged).
    /// Returns false for an offset that was not in flight (a duplicate completion).
    pub fn finish(&mut self, offset: i64) -> bool {
        self.in_flight.remove(&offset)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The highest offset it is safe to commit now (as "next offset to read").
    pub fn commit_point(&self) -> Option<i64> {
        match self.in_flight.first() {
            Some(lowest) => Some(*lowest),
            None => self.highest_seen.map(|h| h + 1),
        }
    }

    fn mark_committed(&mut self, offset: i64) {
        self.committed = Some(self.committed.map_or(offset, |c| c.max(offset)));
    }

    /// The commit metadata for the current commit point: which offsets above it are
    /// already done (see `commit_metadata`).
    pub fn metadata(&self) -> String {
        match self.commit_point() {
            Some(point) => {
                super::commit_metadata::encode(point, self.highest_seen, &self.in_flight)
            }
            None => String::new(),
        }
    }

    /// The commit to make, if the commit point or the finished set above it changed.
    pub fn pending_commit_with_metadata(&self) -> Option<(i64, String)> {
        let point = self.commit_point()?;
        let metadata = self.metadata();
        let moved = self.committed.is_none_or(|c| point > c);
        (moved || metadata != self.committed_metadata).then_some((point, metadata))
    }

    /// Records a successful commit of `offset` with `metadata`.
    pub fn mark_committed_with_metadata(&mut self, offset: i64, metadata: String) {
        self.mark_committed(offset);
        self.committed_metadata = metadata;
    }

    pub fn committed(&self) -> Option<i64> {
        self.committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn out_of_order_completion_commits_only_the_contiguous_prefix() {
        let mut p = PartitionOffsets::default();
        for o in 10..15 {
            p.begin(o);
        }
        let point = |p: &PartitionOffsets| p.pending_commit_with_metadata().map(|(o, _)| o);
        assert_eq!(point(&p), Some(10));
        p.finish(12);
        p.finish(13);
        assert_eq!(point(&p), Some(10), "10 is still running");
        p.finish(10);
        assert_eq!(point(&p), Some(11));
        let (o, m) = p.pending_commit_with_metadata().unwrap();
        p.mark_committed_with_metadata(o, m);
        assert_eq!(point(&p), None, "nothing new to commit");
        p.finish(11);
        assert_eq!(point(&p), Some(14));
        p.finish(14);
        assert_eq!(point(&p), Some(15));
        assert!(!p.finish(14), "a second completion is reported");
    }

    proptest! {
        /// Messages arrive in offset order (possibly with gaps, as compaction leaves);
        /// completions happen in any order, interleaved with arrivals. The commit point
        /// never passes an unfinished offset, never goes backwards, and ends one past
        /// the last offset.
        #[test]
        fn no_completion_order_commits_past_an_unfinished_offset(
            gaps in prop::collection::vec(1i64..4, 1..60),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 0..200),
            arrivals_first in prop::collection::vec(any::<bool>(), 0..200),
        ) {
            let offsets: Vec<i64> = gaps.iter().scan(0i64, |o, g| { *o += g; Some(*o) }).collect();
            let mut p = PartitionOffsets::default();
            let mut next = 0;
            let mut running: Vec<i64> = Vec::new();
            let mut last_commit = i64::MIN;
            let mut step = 0;
            while next < offsets.len() || !running.is_empty() {
                let arrive = next < offsets.len()
                    && (running.is_empty() || *arrivals_first.get(step).unwrap_or(&true));
                if arrive {
                    p.begin(offsets[next]);
                    running.push(offsets[next]);
                    next += 1;
                } else {
                    let i = picks.get(step).map_or(0, |ix| ix.index(running.len()));
                    let done = running.swap_remove(i);
                    prop_assert!(p.finish(done));
                }
                step += 1;
                if let Some((c, metadata)) = p.pending_commit_with_metadata() {
                    prop_assert!(running.iter().all(|r| *r >= c), "commit {c} passes running {running:?}");
                    prop_assert!(c >= last_commit);
                    // The metadata never claims a running offset is finished.
                    if let Some(finished) = super::super::commit_metadata::decode(&metadata) {
                        prop_assert!(running.iter().all(|r| !finished.contains(*r)));
                    }
                    last_commit = c;
                    p.mark_committed_with_metadata(c, metadata);
                }
            }
            prop_assert_eq!(p.committed(), Some(offsets[offsets.len() - 1] + 1));
        }
    }
}
