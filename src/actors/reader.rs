//! PartitionReader: reads the request topic and admits each record to the tracker.
//!
//! Receives: `StopReading` (shutdown).
//! Sends: `Admit` to the offset tracker, one per record, in offset order per partition.
//! Owns: the consumer's message loop. All assigned partitions share one consumer; the
//! tracker pauses and resumes individual partitions on that consumer when their
//! in-flight budget fills, so backpressure is per partition without one reader per
//! partition (librdkafka fetches per partition anyway).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::watch;

use super::tracker::OffsetTracker;
use crate::kafka::context::ServiceContext;
use crate::log_throttle::LogThrottle;
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

    fn started(&mut self, _: &mut Self::Context) {
        let consumer = self.consumer.clone();
        let tracker = self.tracker.clone();
        let policy = self.policy.clone();
        let template = self.template.clone();
        let stop = self.stop.subscribe();
        // The consumer is polled on a thread of its own, because librdkafka runs the
        // rebalance and OAuth callbacks inside the poll: a revocation waits there for the
        // partition's in-flight work (invariant 7), which the actors on the main runtime
        // must be free to finish meanwhile.
        let spawned = std::thread::Builder::new()
            .name("wsi-reader".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the reader's runtime");
                        return;
                    }
                };
                runtime.block_on(read_loop(consumer, tracker, policy, template, stop));
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the reader thread");
        }
    }
}

async fn read_loop(
    consumer: Arc<StreamConsumer<ServiceContext>>,
    tracker: Addr<OffsetTracker>,
    policy: InputPolicy,
    template: String,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let message = tokio::select! {
            m = consumer.recv() => m,
            _ = stop.changed() => break,
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                // The same outage the client context already reports: a few lines a
                // minute, not one per poll.
                static CONSUMER_ERRORS: LogThrottle = LogThrottle::new(Duration::from_secs(15));
                if let Some(held_back) = CONSUMER_ERRORS.allow() {
                    tracing::warn!(error = %e, held_back, "consumer error");
                }
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
        let ticket = Ticket::kafka(
            message.topic(),
            message.partition(),
            message.offset(),
            message.key().map(<[u8]>::to_vec),
            generation,
            message.timestamp().to_millis(),
        );
        let value = message.payload().unwrap_or_default();
        let item = prepare(ticket, value, &policy, &template);
        // Awaiting the tracker keeps offsets in order and gives backpressure.
        if tracker.send(Admit(item)).await.is_err() {
            break;
        }
    }
    tracing::info!("stopped reading requests");
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
