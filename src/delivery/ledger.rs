//! The ledger of assigned partitions: their offsets in flight, the assignment
//! generation (so work read before a revocation is never counted after it), and which
//! are paused. Shared by the offset tracker and the consumer's rebalance callback.

use std::collections::HashMap;

use super::commit_metadata::Finished;
use super::offsets::PartitionOffsets;
use crate::messages::ticket::KafkaRecord;

pub type TopicPartition = (String, i32);

#[derive(Debug, Default)]
pub struct PartitionState {
    pub offsets: PartitionOffsets,
    pub generation: u64,
    pub paused: bool,
    /// Offsets at or above the committed one that an earlier owner already finished,
    /// from the commit metadata; they are skipped, not redone.
    pub finished: Option<Finished>,
}

#[derive(Debug, Default)]
pub struct Ledger {
    partitions: HashMap<TopicPartition, PartitionState>,
    next_generation: u64,
}

impl Ledger {
    /// Starts tracking a newly assigned partition (no-op if already tracked).
    pub fn assign(&mut self, topic: &str, partition: i32) -> u64 {
        let key = (topic.to_string(), partition);
        if let Some(state) = self.partitions.get(&key) {
            return state.generation;
        }
        self.next_generation += 1;
        let generation = self.next_generation;
        self.partitions.insert(
            key,
            PartitionState {
                generation,
                ..PartitionState::default()
            },
        );
        generation
    }

    /// Stops tracking a revoked partition, returning its final state.
    pub fn revoke(&mut self, topic: &str, partition: i32) -> Option<PartitionState> {
        self.partitions.remove(&(topic.to_string(), partition))
    }

    /// Records what the committed metadata says is already finished for a partition.
    pub fn set_finished(&mut self, topic: &str, partition: i32, finished: Finished) {
        if let Some(state) = self.partitions.get_mut(&(topic.to_string(), partition)) {
            state.finished = Some(finished);
        }
    }

    /// Whether an earlier owner already finished this record (so it must not be redone).
    pub fn already_done(&self, record: &KafkaRecord) -> bool {
        self.partitions
            .get(&(record.topic.clone(), record.partition))
            .filter(|s| s.generation == record.generation)
            .and_then(|s| s.finished.as_ref())
            .is_some_and(|f| f.contains(record.offset))
    }

    pub fn generation(&self, topic: &str, partition: i32) -> Option<u64> {
        self.partitions
            .get(&(topic.to_string(), partition))
            .map(|s| s.generation)
    }

    fn current(&mut self, record: &KafkaRecord) -> Option<&mut PartitionState> {
        self.partitions
            .get_mut(&(record.topic.clone(), record.partition))
            .filter(|s| s.generation == record.generation)
    }

    /// Records a ticket as in flight; false if its partition is no longer ours.
    pub fn begin(&mut self, record: &KafkaRecord) -> bool {
        match self.current(record) {
            Some(state) => {
                state.offsets.begin(record.offset);
                true
            }
            None => false,
        }
    }

    /// Records a ticket as done; false if stale (revoked partition) or a duplicate.
    pub fn finish(&mut self, record: &KafkaRecord) -> bool {
        self.current(record)
            .is_some_and(|state| state.offsets.finish(record.offset))
    }

    pub fn is_current(&self, record: &KafkaRecord) -> bool {
        self.generation(&record.topic, record.partition) == Some(record.generation)
    }

    /// Commits to make: partitions whose commit point or finished set moved, with the
    /// commit metadata that records the finished offsets above the commit point.
    pub fn pending_commits(&self) -> Vec<(TopicPartition, i64, String)> {
        self.partitions
            .iter()
            .filter_map(|(tp, s)| {
                s.offsets
                    .pending_commit_with_metadata()
                    .map(|(o, m)| (tp.clone(), o, m))
            })
            .collect()
    }

    pub fn mark_committed(&mut self, tp: &TopicPartition, offset: i64, metadata: String) {
        if let Some(s) = self.partitions.get_mut(tp) {
            s.offsets.mark_committed_with_metadata(offset, metadata);
        }
    }

    pub fn in_flight_total(&self) -> usize {
        self.partitions
            .values()
            .map(|s| s.offsets.in_flight())
            .sum()
    }

    /// In flight (admitted, not done) across the given partitions that are still ours.
    pub fn in_flight_of(&self, partitions: &[TopicPartition]) -> usize {
        partitions
            .iter()
            .filter_map(|tp| self.partitions.get(tp))
            .map(|s| s.offsets.in_flight())
            .sum()
    }

    pub fn partitions_mut(
        &mut self,
    ) -> impl Iterator<Item = (&TopicPartition, &mut PartitionState)> {
        self.partitions.iter_mut()
    }

    /// Whether the tracker holds this partition paused for its budget.
    pub fn is_paused(&self, topic: &str, partition: i32) -> bool {
        self.partitions
            .get(&(topic.to_string(), partition))
            .is_some_and(|s| s.paused)
    }

    pub fn committed(&self, topic: &str, partition: i32) -> Option<i64> {
        self.partitions
            .get(&(topic.to_string(), partition))
            .and_then(|s| s.offsets.committed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::commit_metadata::decode;

    #[test]
    fn finished_offsets_above_a_slow_head_survive_in_metadata() {
        let mut ledger = Ledger::default();
        let g = ledger.assign("t", 0);
        for o in 0..5 {
            ledger.begin(&ticket(0, o, g));
        }
        for o in 1..5 {
            ledger.finish(&ticket(0, o, g));
        }
        let commits = ledger.pending_commits();
        assert_eq!(commits.len(), 1);
        let (_, point, metadata) = &commits[0];
        assert_eq!(*point, 0, "the slow head holds the commit point");
        // A new owner reads the metadata and skips 1..=4 but redoes 0.
        ledger.revoke("t", 0);
        let g2 = ledger.assign("t", 0);
        ledger.set_finished("t", 0, decode(metadata).unwrap());
        assert!(!ledger.already_done(&ticket(0, 0, g2)));
        assert!((1..5).all(|o| ledger.already_done(&ticket(0, o, g2))));
        assert!(!ledger.already_done(&ticket(0, 5, g2)));
    }

    fn ticket(partition: i32, offset: i64, generation: u64) -> KafkaRecord {
        KafkaRecord {
            topic: "t".into(),
            partition,
            offset,
            key: None,
            generation,
            timestamp_ms: None,
        }
    }

    #[test]
    fn completions_from_before_a_revocation_are_ignored() {
        let mut ledger = Ledger::default();
        let g1 = ledger.assign("t", 0);
        assert!(ledger.begin(&ticket(0, 5, g1)));
        ledger.revoke("t", 0);
        let g2 = ledger.assign("t", 0);
        assert_ne!(g1, g2);
        assert!(!ledger.finish(&ticket(0, 5, g1)), "stale completion");
        assert!(ledger.begin(&ticket(0, 5, g2)));
        assert!(ledger.finish(&ticket(0, 5, g2)));
        assert_eq!(
            ledger.pending_commits(),
            vec![(("t".to_string(), 0), 6, String::new())]
        );
    }
}
