//! ResponsePublisher: produces responses and failure records and waits for the broker's
//! acknowledgement before reporting the request done, which is what makes the commit
//! that follows safe (at least once).
//!
//! Receives: `Publish` (a response) and `Fail` (a failure record).
//! Sends: `Completed` to the offset tracker once the record is acknowledged; for a
//! `POST /process` job, the outcome to its caller instead (no record, no offset).
//! Owns: the idempotent producer. A produce that fails is retried with exponential
//! backoff and jitter (backon) for as long as it takes: giving up would either lose the
//! request or commit it without an answer.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use backon::{ExponentialBuilder, Retryable};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::Instrument;

use super::tracker::OffsetTracker;
use crate::kafka::oauth::AuthContext;
use crate::messages::payload::now_rfc3339;
use crate::messages::pipeline::{Completed, Fail, Publish};
use crate::messages::ticket::Ticket;

pub struct Publisher {
    producer: FutureProducer<AuthContext>,
    response_topic: Arc<str>,
    dlq_topic: Arc<str>,
    tracker: Option<Addr<OffsetTracker>>,
}

impl Publisher {
    pub fn new(
        producer: FutureProducer<AuthContext>,
        response_topic: &str,
        dlq_topic: &str,
    ) -> Self {
        Publisher {
            producer,
            response_topic: response_topic.into(),
            dlq_topic: dlq_topic.into(),
            tracker: None,
        }
    }
}

impl Actor for Publisher {
    type Context = Context<Self>;
}

/// The tracker is created after the publisher (it needs its address), so it is wired
/// in afterwards.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetTracker(pub Addr<OffsetTracker>);

impl Handler<SetTracker> for Publisher {
    type Result = ();
    fn handle(&mut self, msg: SetTracker, _: &mut Self::Context) {
        self.tracker = Some(msg.0);
    }
}

/// Produces one record, retrying until the broker acknowledges it.
async fn produce(
    producer: FutureProducer<AuthContext>,
    topic: Arc<str>,
    key: Vec<u8>,
    value: Vec<u8>,
    ticket: &Ticket,
) {
    let source = format!("{}/{}/{}", ticket.topic, ticket.partition, ticket.offset);
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
    let _ = attempt
        .retry(backoff)
        .notify(|e, wait| {
            metrics::counter!("wsi_thumbnail_retries_total").increment(1);
            tracing::warn!(error = %e, ?wait, "producing failed; retrying");
        })
        .await;
}

impl Handler<Publish> for Publisher {
    type Result = ResponseFuture<()>;

    fn handle(
        &mut self,
        Publish { job, response }: Publish,
        _: &mut Self::Context,
    ) -> Self::Result {
        if let Some(reply) = &job.ticket.reply {
            let _in_job = job.ticket.span.clone().entered();
            tracing::info!(link = %response.thumbnail_image_link, "thumbnail done (POST /process)");
            metrics::counter!("wsi_thumbnail_http_process_total", "outcome" => "ok").increment(1);
            reply.send(Ok(response));
            return Box::pin(async {});
        }
        let producer = self.producer.clone();
        let topic = self.response_topic.clone();
        let tracker = self.tracker.clone();
        let span = job.ticket.span.clone();
        Box::pin(
            async move {
                let started = std::time::Instant::now();
                let value = serde_json::to_vec(&response).unwrap_or_default();
                let key = response.slide_id.clone().into_bytes();
                produce(producer, topic, key, value, &job.ticket).await;
                metrics::histogram!("wsi_thumbnail_stage_seconds", "stage" => "publish")
                    .record(started.elapsed().as_secs_f64());
                if let Some(ts) = job.ticket.kafka_timestamp_ms {
                    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
                    metrics::histogram!("wsi_thumbnail_end_to_end_seconds")
                        .record((now_ms as i64 - ts).max(0) as f64 / 1000.0);
                }
                metrics::counter!("wsi_thumbnail_completed_total").increment(1);
                tracing::info!(link = %response.thumbnail_image_link, "thumbnail done");
                if let Some(t) = tracker {
                    t.do_send(Completed { ticket: job.ticket });
                }
            }
            .instrument(span),
        )
    }
}

impl Handler<Fail> for Publisher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, Fail(f): Fail, _: &mut Self::Context) -> Self::Result {
        if let Some(reply) = f.ticket.reply.clone() {
            let _in_job = f.ticket.span.clone().entered();
            tracing::warn!(kind = %f.kind, reason = %f.message, "request failed (POST /process)");
            metrics::counter!("wsi_thumbnail_http_process_total", "outcome" => f.kind.as_str())
                .increment(1);
            reply.send(Err(f));
            return Box::pin(async {});
        }
        let producer = self.producer.clone();
        let topic = self.dlq_topic.clone();
        let tracker = self.tracker.clone();
        let span = f.ticket.span.clone();
        Box::pin(async move {
            let record = f.record();
            let value = serde_json::to_vec(&record).unwrap_or_default();
            let key = f
                .slide_id
                .clone()
                .map(String::into_bytes)
                .or_else(|| f.ticket.key.clone())
                .unwrap_or_default();
            produce(producer, topic, key, value, &f.ticket).await;
            metrics::counter!("wsi_thumbnail_failed_total", "kind" => f.kind.as_str()).increment(1);
            tracing::warn!(kind = %f.kind, reason = %f.message, "request failed; failure record published");
            if let Some(t) = tracker {
                t.do_send(Completed { ticket: f.ticket });
            }
        }.instrument(span))
    }
}
