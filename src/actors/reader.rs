//! PartitionReader: reads the request topic and admits each record to the tracker.
//!
//! Receives: `StopReading` (shutdown).
//! Sends: `Admit` to the offset tracker, one per record, in offset order per partition.
//! Owns: the consumer's message loop. All assigned partitions share one consumer; the
//! tracker pauses and resumes individual partitions on that consumer when their
//! in-flight budget fills, so backpressure is per partition without one reader per
//! partition (librdkafka fetches per partition anyway).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::watch;

use super::tracker::OffsetTracker;
use crate::kafka::context::ServiceContext;
use crate::messages::pipeline::Admit;
use crate::messages::ticket::Ticket;
use crate::pipeline::prepare::prepare;
use crate::storage::location::InputPolicy;

pub struct PartitionReader {
    consumer: Arc<StreamConsumer<ServiceContext>>,
    tracker: Addr<OffsetTracker>,
    policy: InputPolicy,
    template: String,
    stop: watch::Sender<bool>,
}

impl PartitionReader {
    pub fn new(
        consumer: Arc<StreamConsumer<ServiceContext>>,
        tracker: Addr<OffsetTracker>,
        policy: InputPolicy,
        template: String,
    ) -> Self {
        PartitionReader {
            consumer,
            tracker,
            policy,
            template,
            stop: watch::channel(false).0,
        }
    }
}

impl Actor for PartitionReader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let consumer = self.consumer.clone();
        let tracker = self.tracker.clone();
        let policy = self.policy.clone();
        let template = self.template.clone();
        let mut stop = self.stop.subscribe();
        ctx.spawn(
            async move {
                loop {
                    let message = tokio::select! {
                        m = consumer.recv() => m,
                        _ = stop.changed() => break,
                    };
                    let message = match message {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, "consumer error");
                            continue;
                        }
                    };
                    let generation = consumer
                        .context()
                        .book
                        .lock()
                        .ok()
                        .and_then(|b| b.generation(message.topic(), message.partition()));
                    let Some(generation) = generation else {
                        continue;
                    };
                    let ticket = Ticket {
                        topic: message.topic().to_string(),
                        partition: message.partition(),
                        offset: message.offset(),
                        key: message.key().map(<[u8]>::to_vec),
                        generation,
                        kafka_timestamp_ms: message.timestamp().to_millis(),
                        received: Instant::now(),
                    };
                    let value = message.payload().unwrap_or_default();
                    let item = prepare(ticket, value, &policy, &template);
                    // Awaiting the tracker keeps offsets in order and gives backpressure.
                    if tracker.send(Admit(item)).await.is_err() {
                        break;
                    }
                }
                tracing::info!("stopped reading requests");
            }
            .into_actor(self),
        );
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct StopReading;

impl Handler<StopReading> for PartitionReader {
    type Result = ();

    fn handle(&mut self, _: StopReading, _: &mut Self::Context) {
        let _ = self.stop.send(true);
    }
}
