//! ResponsePublisher: produces responses and failure records and waits for the broker's
//! acknowledgement before reporting the request done, which is what makes the commit
//! that follows safe (at least once).
//!
//! Receives: `Publish` (a response) and `Fail` (a failure record).
//! Sends: `Completed` to the offset tracker once the record is acknowledged; for a
//! `POST /process` job, the outcome to its caller instead (no record, no offset).
//! Owns: the idempotent producer. A produce that fails for the system's sake (broker
//! down, unauthorised) is retried with exponential backoff and jitter (backon) for as
//! long as it takes, quietly and with `/readyz` at 503; one the broker refuses for the
//! record's sake (too large) is never retried: a refused response becomes a failure
//! record, and a refused failure record is counted, logged and committed.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use backon::{ExponentialBuilder, Retryable};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::Instrument;

use crate::error_kind::ErrorKind;
use crate::health::Health;
use crate::kafka::oauth::AuthContext;
use crate::kafka::produce_error::{ProduceProblem, classify};
use crate::log_throttle::LogThrottle;
use crate::messages::payload::{MAX_FAILURE_RECORD_LEN, now_rfc3339};
use crate::messages::pipeline::{Completed, Fail, Failure, Publish};
use crate::messages::ticket::{KafkaRecord, Origin};
use crate::telemetry::record::{self, Stage};

pub struct Publisher {
    producer: FutureProducer<AuthContext>,
    health: Arc<Health>,
    response_topic: Arc<str>,
    dlq_topic: Arc<str>,
    /// The offset tracker, told of every Kafka request whose answer is acknowledged.
    completed: Recipient<Completed>,
}

impl Publisher {
    pub fn new(
        producer: FutureProducer<AuthContext>,
        health: Arc<Health>,
        response_topic: &str,
        dlq_topic: &str,
        completed: Recipient<Completed>,
    ) -> Self {
        Publisher {
            producer,
            health,
            response_topic: response_topic.into(),
            dlq_topic: dlq_topic.into(),
            completed,
        }
    }
}

impl Actor for Publisher {
    type Context = Context<Self>;
}

/// The smallest form of a failure record: ids and the error, nothing echoed.
const MIN_FAILURE_RECORD_LEN: usize = 768;

/// The broker will never take this record as it is (too large, invalid).
#[derive(Debug)]
struct Refused(KafkaError);

/// At most a few lines a minute about a broker that keeps failing, whatever the
/// number of records waiting on it.
static SYSTEM_ERRORS: LogThrottle = LogThrottle::new(Duration::from_secs(15));

/// Produces one record. Errors about the system (broker down, unauthorised, topic
/// missing) are retried with backoff for as long as it takes, with `/readyz` at 503
/// meanwhile: giving up would lose the request or commit it without an answer. An
/// error about the record itself is returned at once: retrying it would stall its
/// partition forever.
async fn produce(
    producer: FutureProducer<AuthContext>,
    health: Arc<Health>,
    topic: Arc<str>,
    key: Vec<u8>,
    value: Vec<u8>,
    request: &KafkaRecord,
) -> Result<(), Refused> {
    let source = request.to_string();
    let attempt = || {
        let producer = producer.clone();
        let (topic, key, value, source) =
            (topic.clone(), key.clone(), value.clone(), source.clone());
        async move {
            let produced_at = now_rfc3339();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "wsi-source",
                    value: Some(source.as_bytes()),
                })
                .insert(Header {
                    key: "wsi-produced-at",
                    value: Some(produced_at.as_bytes()),
                });
            let record = FutureRecord::to(&topic)
                .key(&key)
                .payload(&value)
                .headers(headers);
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times();
    let result = attempt
        .retry(backoff)
        .when(|e| classify(e) == ProduceProblem::System)
        .notify(|e, wait| {
            health.set_publishing_blocked(true);
            record::retried();
            if let Some(held_back) = SYSTEM_ERRORS.allow() {
                tracing::warn!(error = %e, ?wait, held_back, "producing failed; retrying");
            }
        })
        .await;
    health.set_publishing_blocked(false);
    result.map_err(Refused)
}

impl Handler<Publish> for Publisher {
    type Result = ResponseFuture<()>;

    fn handle(
        &mut self,
        Publish { job, response }: Publish,
        _: &mut Self::Context,
    ) -> Self::Result {
        let span = job.ticket.span.clone();
        let request = match &job.ticket.origin {
            Origin::Http { reply, .. } => {
                let _in_job = span.entered();
                tracing::info!(link = %response.thumbnail_image_link, "thumbnail done (POST /process)");
                record::http_process(Ok(()));
                reply.send(Ok(response));
                return Box::pin(async {});
            }
            Origin::Kafka(request) => request.clone(),
        };
        let to = self.destination();
        Box::pin(
            async move {
                let started = std::time::Instant::now();
                let value = serde_json::to_vec(&response).unwrap_or_default();
                let key = response.slide_id.clone().into_bytes();
                let produced = produce(to.producer.clone(), to.health.clone(), to.response_topic.clone(), key, value, &request).await;
                if let Err(Refused(e)) = produced {
                    // The thumbnail exists, but its answer can never be delivered as it
                    // is: the request ends as a failure record instead.
                    tracing::warn!(error = %e, "the broker refused the response; publishing a failure record instead");
                    let failure = Failure::of_job(
                        &job,
                        ErrorKind::Internal,
                        format!(
                            "the broker refused the response ({e}); check the response topic's max.message.bytes"
                        ),
                    );
                    publish_failure(to, failure, request).await;
                    return;
                }
                record::stage_seconds(Stage::Publish, started.elapsed());
                if let Some(ts) = request.timestamp_ms {
                    record::end_to_end_since(ts);
                }
                record::completed();
                tracing::info!(link = %response.thumbnail_image_link, "thumbnail done");
                to.completed.do_send(Completed { ticket: job.ticket });
            }
            .instrument(span),
        )
    }
}

impl Handler<Fail> for Publisher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, Fail(f): Fail, _: &mut Self::Context) -> Self::Result {
        let span = f.ticket.span.clone();
        let request = match &f.ticket.origin {
            Origin::Http { reply, .. } => {
                let _in_job = span.entered();
                tracing::warn!(kind = %f.kind, reason = %f.message, "request failed (POST /process)");
                record::http_process(Err(f.kind));
                reply.clone().send(Err(f));
                return Box::pin(async {});
            }
            Origin::Kafka(request) => request.clone(),
        };
        Box::pin(publish_failure(self.destination(), f, request).instrument(span))
    }
}

impl Publisher {
    fn destination(&self) -> Destination {
        Destination {
            producer: self.producer.clone(),
            health: self.health.clone(),
            response_topic: self.response_topic.clone(),
            dlq_topic: self.dlq_topic.clone(),
            completed: self.completed.clone(),
        }
    }
}

/// What a publication in flight needs of the publisher.
struct Destination {
    producer: FutureProducer<AuthContext>,
    health: Arc<Health>,
    response_topic: Arc<str>,
    dlq_topic: Arc<str>,
    completed: Recipient<Completed>,
}

/// Produces a failure record (cut to the contract's bound) and reports the request
/// done. A record the broker refuses even then is logged with its coordinates, counted
/// and committed: one lost answer is better than a partition that never moves again.
async fn publish_failure(to: Destination, f: Failure, request: KafkaRecord) {
    let record = f.record();
    let key: Vec<u8> = f
        .slide_id
        .clone()
        .map(String::into_bytes)
        .or_else(|| request.key.clone())
        .unwrap_or_default();
    // Keys are echoed from the request: keep them as short as the ids in the record.
    let key = key[..key.len().min(1024)].to_vec();
    // The contract's bound first; a broker with a smaller limit gets the bare record
    // (ids, error and coordinates) before the request is given up on.
    let mut refused = None;
    let mut sent: Option<Vec<u8>> = None;
    for limit in [MAX_FAILURE_RECORD_LEN, MIN_FAILURE_RECORD_LEN] {
        let value = record.to_bytes_within(limit);
        if sent.as_ref() == Some(&value) {
            // Already as small as it gets, and refused.
            break;
        }
        sent = Some(value.clone());
        let produced = produce(
            to.producer.clone(),
            to.health.clone(),
            to.dlq_topic.clone(),
            key.clone(),
            value,
            &request,
        )
        .await;
        match produced {
            Ok(()) => {
                refused = None;
                break;
            }
            Err(Refused(e)) => refused = Some(e),
        }
    }
    match refused {
        None => {
            record::failed(f.kind);
            tracing::warn!(kind = %f.kind, reason = %f.message, "request failed; failure record published");
        }
        Some(e) => {
            record::unpublishable();
            tracing::error!(
                error = %e,
                topic = %request.topic,
                partition = request.partition,
                offset = request.offset,
                kind = %f.kind,
                reason = %f.message,
                "the broker refused even the cut failure record; the request is committed without an answer"
            );
        }
    }
    to.completed.do_send(Completed { ticket: f.ticket });
}
