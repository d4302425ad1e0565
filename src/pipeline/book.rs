//! The ledger of assigned partitions: their offsets in flight, the assignment
//! generation (so work read before a revocation is never counted after it), and which
//! are paused. Shared by the offset tracker and the consumer's rebalance callback.

use std::collections::HashMap;

use super::offsets::PartitionOffsets;
use crate::messages::ticket::Ticket;

pub type TopicPartition = (String, i32);

#[derive(Debug, Default)]
pub struct PartitionState {
    pub offsets: PartitionOffsets,
    pub generation: u64,
    pub paused: bool,
}

#[derive(Debug, Default)]
pub struct Book {
    partitions: HashMap<TopicPartition, PartitionState>,
    next_generation: u64,
}

impl Book {
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

    pub fn generation(&self, topic: &str, partition: i32) -> Option<u64> {
        self.partitions
            .get(&(topic.to_string(), partition))
            .map(|s| s.generation)
    }

    fn current(&mut self, ticket: &Ticket) -> Option<&mut PartitionState> {
        self.partitions
            .get_mut(&(ticket.topic.clone(), ticket.partition))
            .filter(|s| s.generation == ticket.generation)
    }

    /// Records a ticket as in flight; false if its partition is no longer ours.
    pub fn begin(&mut self, ticket: &Ticket) -> bool {
        match self.current(ticket) {
            Some(state) => {
                state.offsets.begin(ticket.offset);
                true
            }
            None => false,
        }
    }

    /// Records a ticket as done; false if stale (revoked partition) or a duplicate.
    pub fn finish(&mut self, ticket: &Ticket) -> bool {
        self.current(ticket)
            .is_some_and(|state| state.offsets.finish(ticket.offset))
    }

    pub fn is_current(&self, ticket: &Ticket) -> bool {
        self.generation(&ticket.topic, ticket.partition) == Some(ticket.generation)
    }

    /// Offsets whose commit point moved since the last commit.
    pub fn pending_commits(&self) -> Vec<(TopicPartition, i64)> {
        self.partitions
            .iter()
            .filter_map(|(tp, s)| s.offsets.pending_commit().map(|o| (tp.clone(), o)))
            .collect()
    }

    pub fn mark_committed(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(s) = self.partitions.get_mut(tp) {
            s.offsets.mark_committed(offset);
        }
    }

    pub fn in_flight_total(&self) -> usize {
        self.partitions
            .values()
            .map(|s| s.offsets.in_flight())
            .sum()
    }

    pub fn partitions_mut(
        &mut self,
    ) -> impl Iterator<Item = (&TopicPartition, &mut PartitionState)> {
        self.partitions.iter_mut()
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
    use std::time::Instant;

    fn ticket(partition: i32, offset: i64, generation: u64) -> Ticket {
        Ticket {
            topic: "t".into(),
            partition,
            offset,
            key: None,
            generation,
            kafka_timestamp_ms: None,
            received: Instant::now(),
        }
    }

    #[test]
    fn completions_from_before_a_revocation_are_ignored() {
        let mut book = Book::default();
        let g1 = book.assign("t", 0);
        assert!(book.begin(&ticket(0, 5, g1)));
        book.revoke("t", 0);
        let g2 = book.assign("t", 0);
        assert_ne!(g1, g2);
        assert!(!book.finish(&ticket(0, 5, g1)), "stale completion");
        assert!(book.begin(&ticket(0, 5, g2)));
        assert!(book.finish(&ticket(0, 5, g2)));
        assert_eq!(book.pending_commits(), vec![(("t".to_string(), 0), 6)]);
    }
}
