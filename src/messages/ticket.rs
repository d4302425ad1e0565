//! The ticket: where a piece of work came from. Every message between the actors carries
//! one, so any stage can end the job and exactly one party hears about it: the offset
//! tracker for a Kafka record, the waiting HTTP caller for a `POST /process` request.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use super::payload::{SourceCoordinates, ThumbnailResponse};
use super::pipeline::Failure;

/// Topic name on tickets of `POST /process` requests (they have no Kafka record).
pub const HTTP_ORIGIN: &str = "http";

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
    /// The job's log span: every line logged about this job, in any actor, carries its
    /// partition and offset, and its request and slide ids once parsed.
    pub span: tracing::Span,
    /// Set for `POST /process` requests: the outcome goes back to the caller instead of
    /// to the response topic, and no offset is involved.
    pub reply: Option<Reply>,
}

/// What a `POST /process` caller gets back.
pub type Outcome = Result<ThumbnailResponse, Failure>;

/// The caller's end of a `POST /process` request. Cloneable because jobs are; the first
/// stage to finish the job takes the sender, so the caller hears exactly once.
#[derive(Clone)]
pub struct Reply(Arc<Mutex<Option<oneshot::Sender<Outcome>>>>);

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

impl Reply {
    pub fn channel() -> (Reply, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        (Reply(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// Answers the caller; false if already answered or the caller went away.
    pub fn send(&self, outcome: Outcome) -> bool {
        let sender = self.0.lock().ok().and_then(|mut s| s.take());
        sender.is_some_and(|tx| tx.send(outcome).is_ok())
    }
}

impl Ticket {
    /// A ticket for a record read from Kafka.
    pub fn kafka(
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        generation: u64,
        kafka_timestamp_ms: Option<i64>,
    ) -> Ticket {
        Ticket {
            topic: topic.to_string(),
            partition,
            offset,
            key,
            generation,
            kafka_timestamp_ms,
            received: Instant::now(),
            span: job_span(topic, partition, offset),
            reply: None,
        }
    }

    /// A ticket for a `POST /process` request; `sequence` numbers them for the logs.
    pub fn http(sequence: i64, reply: Reply) -> Ticket {
        Ticket {
            topic: HTTP_ORIGIN.to_string(),
            partition: -1,
            offset: sequence,
            key: None,
            generation: 0,
            kafka_timestamp_ms: None,
            received: Instant::now(),
            span: job_span(HTTP_ORIGIN, -1, sequence),
            reply: Some(reply),
        }
    }

    pub fn source(&self) -> SourceCoordinates {
        SourceCoordinates {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }

    /// Records the parsed request's ids on the job's span.
    pub fn identify(&self, id: Option<&str>, slide_id: Option<&str>) {
        if let Some(id) = id {
            self.span.record("id", id);
        }
        if let Some(slide_id) = slide_id {
            self.span.record("slide_id", slide_id);
        }
    }
}

fn job_span(topic: &str, partition: i32, offset: i64) -> tracing::Span {
    tracing::info_span!(
        "job",
        topic,
        partition,
        offset,
        id = tracing::field::Empty,
        slide_id = tracing::field::Empty
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_delivered_once() {
        let (reply, mut rx) = Reply::channel();
        let failure = |msg: &str| Failure {
            ticket: Ticket::http(1, reply.clone()),
            id: None,
            slide_id: None,
            request: None,
            raw_value: Vec::new(),
            kind: crate::error_kind::ErrorKind::Internal,
            retryable: false,
            message: msg.into(),
            attempts: 1,
        };
        assert!(reply.clone().send(Err(failure("first"))));
        assert!(!reply.send(Err(failure("second"))), "second answer refused");
        match rx.try_recv() {
            Ok(Err(f)) => assert_eq!(f.message, "first"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
