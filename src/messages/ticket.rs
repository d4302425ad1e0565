//! The ticket: which Kafka record a piece of work came from. Every message between the
//! actors carries one, so any stage can end the job and the tracker hears exactly once.

use std::time::Instant;

use super::payload::SourceCoordinates;

#[derive(Debug, Clone)]
pub struct Ticket {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record key (`slide_id`), for per-key ordering and as the response key.
    pub key: Option<Vec<u8>>,
    /// Which assignment of the partition this record was read under; completions from
    /// an earlier assignment (before a revocation) are ignored.
    pub generation: u64,
    /// The record's Kafka timestamp, for end-to-end latency.
    pub kafka_timestamp_ms: Option<i64>,
    pub received: Instant,
}

impl Ticket {
    pub fn source(&self) -> SourceCoordinates {
        SourceCoordinates {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}
