//! RequestReader: reads the request topic and admits each record to the tracker.
//!
//! Receives: nothing; it stops when the shutdown starts draining.
//! Sends: `Admit` to the offset tracker, one per record, in offset order per partition.
//! Owns: the consumer's message loop. All assigned partitions share one consumer; the
//! tracker pauses and resumes individual partitions on that consumer when their
//! in-flight budget fills, so backpressure is per partition without one reader per
//! partition (librdkafka fetches per partition anyway).

use std::sync::Arc;
use std::time::Duration;

use crate::admission::admit;
use crate::kafka::context::ServiceContext;
use crate::log_throttle::LogThrottle;
use crate::messages::pipeline::Admit;
use crate::messages::ticket::{KafkaRecord, Ticket};
use crate::shutdown::Shutdown;
use crate::storage::location::InputPolicy;
use actix::prelude::*;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};

pub struct RequestReader {
    pub consumer: Arc<StreamConsumer<ServiceContext>>,
    /// The offset tracker, which admits each record.
    pub tracker: Recipient<Admit>,
    pub policy: InputPolicy,
    /// The thumbnail object-name template.
    pub template: String,
    pub shutdown: Shutdown,
}

impl Actor for RequestReader {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        let consumer = self.consumer.clone();
        let tracker = self.tracker.clone();
        let policy = self.policy.clone();
        let template = self.template.clone();
        let shutdown = self.shutdown.clone();
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
                runtime.block_on(read_loop(consumer, tracker, policy, template, shutdown));
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the reader thread");
        }
    }
}

async fn read_loop(
    consumer: Arc<StreamConsumer<ServiceContext>>,
    tracker: Recipient<Admit>,
    policy: InputPolicy,
    template: String,
    shutdown: Shutdown,
) {
    loop {
        let message = tokio::select! {
            m = consumer.recv() => m,
            _ = shutdown.draining() => break,
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
            .ledger
            .lock()
            .ok()
            .and_then(|l| l.generation(message.topic(), message.partition()));
        let Some(generation) = generation else {
            continue;
        };
        let ticket = Ticket::kafka(KafkaRecord {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            generation,
            timestamp_ms: message.timestamp().to_millis(),
        });
        let value = message.payload().unwrap_or_default();
        let item = admit(ticket, value, &policy, &template);
        // Awaiting the tracker keeps offsets in order and gives backpressure.
        if tracker.send(Admit(item)).await.is_err() {
            break;
        }
    }
    tracing::info!("stopped reading requests");
}
