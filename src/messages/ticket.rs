//! The ticket: where a piece of work came from. Every message between the actors carries
//! one, so any stage can end the job and exactly one party hears about it: the offset
//! tracker for a Kafka record, the waiting HTTP caller for a `POST /process` request.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::payload::{SourceCoordinates, ThumbnailResponse};
use super::pipeline::Failure;
use super::timeline::Timeline;

/// The `source.topic` of `POST /process` failure bodies, which keep the record's shape
/// (`{"topic": "http", "partition": -1, "offset": <sequence>}`) though no record exists.
pub const HTTP_ORIGIN: &str = "http";

#[derive(Debug, Clone)]
pub struct Ticket {
    pub origin: Origin,
    /// The job's log span: every line logged about this job, in any actor, carries its
    /// coordinates, and its request and slide ids once parsed.
    pub span: tracing::Span,
    /// When the job reached each point of the pipeline.
    pub timeline: Timeline,
}

/// Where the work came from, which decides who hears how it ended.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A record of the request topic: its answer is produced, then its offset is done.
    Kafka(KafkaRecord),
    /// A `POST /process` call: the outcome goes back to the waiting caller; nothing is
    /// produced and no offset is involved. `sequence` numbers them for the logs.
    Http { sequence: i64, reply: Reply },
}

/// The coordinates of a request record, and what the ledger needs to count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record key (`slide_id`), for per-key ordering and as the response key.
    pub key: Option<Vec<u8>>,
    /// Which assignment of the partition this record was read under; completions from
    /// an earlier assignment (before a revocation) are ignored.
    pub generation: u64,
    /// The record's Kafka timestamp, for end-to-end latency.
    pub timestamp_ms: Option<i64>,
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
    pub fn kafka(record: KafkaRecord) -> Ticket {
        let span = job_span(&record.topic, record.partition, record.offset);
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let waited_ms = record.timestamp_ms.map_or(0, |ts| {
            (now_ms as i64 - ts).clamp(0, i64::from(u32::MAX)) as u64
        });
        Ticket {
            origin: Origin::Kafka(record),
            span,
            timeline: Timeline::starting(waited_ms),
        }
    }

    /// A ticket for a `POST /process` request.
    pub fn http(sequence: i64, reply: Reply) -> Ticket {
        Ticket {
            origin: Origin::Http { sequence, reply },
            span: job_span(HTTP_ORIGIN, -1, sequence),
            timeline: Timeline::starting(0),
        }
    }

    /// The Kafka record behind this ticket (none for `POST /process`).
    pub fn record(&self) -> Option<&KafkaRecord> {
        match &self.origin {
            Origin::Kafka(record) => Some(record),
            Origin::Http { .. } => None,
        }
    }

    /// The request record's key, if it came from Kafka with one.
    pub fn key(&self) -> Option<&[u8]> {
        self.record().and_then(|r| r.key.as_deref())
    }

    /// The same ticket without the caller's reply channel: for answers built outside
    /// the pipeline, which must not look like the pipeline's own.
    pub fn detached(&self) -> Ticket {
        let origin = match &self.origin {
            Origin::Http { sequence, .. } => Origin::Http {
                sequence: *sequence,
                reply: Reply::channel().0,
            },
            kafka => kafka.clone(),
        };
        Ticket {
            origin,
            span: self.span.clone(),
            timeline: self.timeline.clone(),
        }
    }

    /// The failure record's `source`.
    pub fn source(&self) -> SourceCoordinates {
        match &self.origin {
            Origin::Kafka(r) => SourceCoordinates {
                topic: r.topic.clone(),
                partition: r.partition,
                offset: r.offset,
            },
            Origin::Http { sequence, .. } => SourceCoordinates {
                topic: HTTP_ORIGIN.to_string(),
                partition: -1,
                offset: *sequence,
            },
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

impl std::fmt::Display for KafkaRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

fn job_span(topic: &str, partition: i32, offset: i64) -> tracing::Span {
    tracing::info_span!(
        "job",
        topic,
        partition,
        offset,
        id = tracing::field::Empty,
        slide_id = tracing::field::Empty,
        // Which pixel path decoded the slide, recorded by the decoder.
        pixel_path = tracing::field::Empty
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
