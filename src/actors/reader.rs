//! RequestReader: reads the request topic and admits each record to the tracker.
//!
//! Receives: nothing; it stops when the shutdown starts draining.
//! Sends: `Admit` to the offset tracker, one per record, in offset order per partition.
//! Owns: the consumer's message loop. All assigned partitions share one consumer; the
//! tracker pauses and resumes individual partitions on that consumer when their
//! in-flight budget fills, so backpressure is per partition without one reader per
//! partition (librdkafka fetches per partition anyway). The global budget is a gate:
//! the reader takes the next record only when there is room (see
//! [`crate::delivery::room`]). A gate shut for longer than [`STALL`] (every request
//! stuck on storage, say) pauses every partition and polls anyway, so the group's
//! rebalances and the consumer's liveness never wait on slow slides.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admission::admit;
use crate::delivery::room::Room;
use crate::kafka::context::ServiceContext;
use crate::log_throttle::LogThrottle;
use crate::messages::pipeline::Admit;
use crate::messages::ticket::{KafkaRecord, Ticket};
use crate::shutdown::Shutdown;
use crate::storage::location::InputPolicy;
use actix::prelude::*;
use rdkafka::Message as _;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, StreamConsumer};

pub struct RequestReader {
    pub consumer: Arc<StreamConsumer<ServiceContext>>,
    /// The offset tracker, which admits each record.
    pub tracker: Recipient<Admit>,
    pub policy: InputPolicy,
    /// The thumbnail object-name template.
    pub template: String,
    /// The global in-flight budget.
    pub room: Arc<Room>,
    pub shutdown: Shutdown,
}

/// How long the gate may stay shut before the reader pauses every partition and polls.
pub const STALL: Duration = Duration::from_secs(5);

impl Actor for RequestReader {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        let consumer = self.consumer.clone();
        let tracker = self.tracker.clone();
        let policy = self.policy.clone();
        let template = self.template.clone();
        let shutdown = self.shutdown.clone();
        let room = self.room.clone();
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
                runtime.block_on(read_loop(
                    consumer, tracker, room, policy, template, shutdown,
                ));
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the reader thread");
        }
    }
}

async fn read_loop(
    consumer: Arc<StreamConsumer<ServiceContext>>,
    tracker: Recipient<Admit>,
    room: Arc<Room>,
    policy: InputPolicy,
    template: String,
    shutdown: Shutdown,
) {
    let mut gate = Gate::default();
    loop {
        let changed = room.notified();
        let (open, poll) = gate.update(&consumer, &room);
        let message = tokio::select! {
            m = consumer.recv(), if poll => m,
            _ = changed, if !open => continue,
            _ = actix_rt::time::sleep(STALL), if !poll => continue,
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

/// The reader's side of the global budget: when the gate has been shut for [`STALL`],
/// every assigned partition is paused so that polling (for the group's sake) reads
/// nothing; once there is room, those the tracker has not paused itself are resumed.
#[derive(Default)]
struct Gate {
    shut_since: Option<Instant>,
    stall_paused: bool,
}

impl Gate {
    /// Whether there is room, and whether to poll the consumer now.
    fn update(&mut self, consumer: &StreamConsumer<ServiceContext>, room: &Room) -> (bool, bool) {
        let ledger = &consumer.context().ledger;
        let in_flight = ledger.lock().map_or(0, |l| l.in_flight_total());
        let open = room.is_open(in_flight);
        if open {
            self.shut_since = None;
            if std::mem::take(&mut self.stall_paused) {
                resume_unpaused(consumer);
            }
        } else {
            let since = *self.shut_since.get_or_insert_with(Instant::now);
            if !self.stall_paused && since.elapsed() >= STALL {
                tracing::info!(
                    in_flight,
                    "in-flight budget full for a while; pausing all partitions"
                );
                pause_assigned(consumer);
                self.stall_paused = true;
            }
        }
        (open, open || self.stall_paused)
    }
}

fn pause_assigned(consumer: &StreamConsumer<ServiceContext>) {
    if let Err(e) = consumer.assignment().and_then(|a| consumer.pause(&a)) {
        tracing::warn!(error = %e, "pausing partitions failed");
    }
}

/// Resumes the assigned partitions the tracker does not hold paused for their budget.
fn resume_unpaused(consumer: &StreamConsumer<ServiceContext>) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let mut resume = TopicPartitionList::new();
    if let Ok(ledger) = consumer.context().ledger.lock() {
        for e in assignment.elements() {
            if !ledger.is_paused(e.topic(), e.partition()) {
                let _ = resume.add_partition(e.topic(), e.partition());
            }
        }
    }
    if let Err(e) = consumer.resume(&resume) {
        tracing::warn!(error = %e, "resuming partitions failed");
    }
}
