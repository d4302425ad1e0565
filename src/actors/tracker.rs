//! OffsetTracker: the only place that commits, and the gate every request passes.
//!
//! Receives: `Admit` (a job or failure read by the reader), `Completed` (a response or
//! failure record acknowledged), `Drain` (shutdown).
//! Sends: `Fetch` to the fetcher, `Fail` to the publisher.
//! Owns: the ledger of partitions and offsets (shared with the rebalance callback),
//! per-key ordering, the in-flight budgets that pause and resume partitions, the
//! commit timer, and the in-flight journal that turns a request which stopped the
//! service twice into a failure record (see [`crate::pipeline::journal`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use super::fetcher::Fetcher;
use super::publisher::Publisher;
use crate::error_kind::ErrorKind;
use crate::kafka::context::ServiceContext;
use crate::log_throttle::LogThrottle;
use crate::messages::pipeline::{Admit, Admitted, Completed, Fail, Failure, Fetch};
use crate::messages::ticket::Ticket;
use crate::pipeline::book::Book;
use crate::pipeline::journal::{Journal, MAX_DEATHS};
use crate::pipeline::key_order::KeyOrder;

pub struct Limits {
    pub max_in_flight: usize,
    pub max_in_flight_per_partition: usize,
    pub commit_interval: Duration,
}

pub struct OffsetTracker {
    consumer: Arc<StreamConsumer<ServiceContext>>,
    book: Arc<Mutex<Book>>,
    keys: KeyOrder<Admitted>,
    fetcher: Addr<Fetcher>,
    publisher: Addr<Publisher>,
    limits: Limits,
    globally_paused: bool,
    /// Requests in flight, on disk, so a restart loop can be noticed and broken.
    journal: Option<Journal>,
}

impl OffsetTracker {
    pub fn new(
        consumer: Arc<StreamConsumer<ServiceContext>>,
        book: Arc<Mutex<Book>>,
        fetcher: Addr<Fetcher>,
        publisher: Addr<Publisher>,
        limits: Limits,
        journal: Option<Journal>,
    ) -> Self {
        OffsetTracker {
            journal,
            consumer,
            book,
            keys: KeyOrder::default(),
            fetcher,
            publisher,
            limits,
            globally_paused: false,
        }
    }

    fn dispatch(&mut self, item: Admitted) {
        match item {
            Admitted::Job(job) => match self.journal_begin(&job.ticket) {
                Ok(()) => self.fetcher.do_send(Fetch(job)),
                Err(deaths) => {
                    metrics::counter!("wsi_thumbnail_restart_loop_total").increment(1);
                    tracing::error!(
                        deaths,
                        "the service stopped while serving this request before; failing it instead of serving it again"
                    );
                    let mut failure = Failure::of_job(
                        &job,
                        ErrorKind::Internal,
                        format!(
                            "the service stopped {deaths} times while serving this request; it is \
                             not served again so that it cannot stop the service in a loop"
                        ),
                    );
                    failure.retryable = false;
                    self.publisher.do_send(Fail(failure));
                }
            },
            Admitted::Failure(f) => self.publisher.do_send(Fail(f)),
        }
    }

    /// Journals a Kafka request as in flight, or says how often it killed the service.
    fn journal_begin(&mut self, ticket: &Ticket) -> Result<(), u32> {
        let Some(journal) = self.journal.as_mut().filter(|_| ticket.reply.is_none()) else {
            return Ok(());
        };
        let deaths = journal.deaths(&ticket.topic, ticket.partition, ticket.offset);
        if deaths >= MAX_DEATHS {
            return Err(deaths);
        }
        if let Err(e) = journal.begin(&ticket.topic, ticket.partition, ticket.offset) {
            tracing::warn!(error = %e, "cannot write the in-flight journal");
        }
        Ok(())
    }

    /// Commits every partition whose contiguous done prefix moved.
    fn commit(&self, mode: CommitMode) {
        let Ok(mut book) = self.book.lock() else {
            return;
        };
        let pending = book.pending_commits();
        if pending.is_empty() {
            return;
        }
        let tpl = commit_list(&pending);
        match self.consumer.commit(&tpl, mode) {
            Ok(()) => {
                for (tp, offset, metadata) in &pending {
                    book.mark_committed(tp, *offset, metadata.clone());
                    metrics::gauge!("wsi_thumbnail_committed_offset", "partition" => tp.1.to_string())
                        .set(*offset as f64);
                }
                tracing::debug!(?pending, "committed");
            }
            Err(e) => {
                static COMMIT_ERRORS: LogThrottle = LogThrottle::new(Duration::from_secs(15));
                if let Some(held_back) = COMMIT_ERRORS.allow() {
                    tracing::warn!(error = %e, held_back, "commit failed; will retry on the next tick");
                }
            }
        }
    }

    /// Pauses partitions whose budget is full (all of them when the global budget is)
    /// and resumes those with room again.
    fn apply_budgets(&mut self) {
        let Ok(mut book) = self.book.lock() else {
            return;
        };
        let total = book.in_flight_total();
        metrics::gauge!("wsi_thumbnail_in_flight").set(total as f64);
        let global_full = total >= self.limits.max_in_flight;
        let (mut pause, mut resume) = (TopicPartitionList::new(), TopicPartitionList::new());
        for ((topic, partition), state) in book.partitions_mut() {
            let full =
                global_full || state.offsets.in_flight() >= self.limits.max_in_flight_per_partition;
            if full && !state.paused {
                let _ = pause.add_partition(topic, *partition);
                state.paused = true;
            } else if !full && state.paused {
                let _ = resume.add_partition(topic, *partition);
                state.paused = false;
            }
        }
        if global_full != self.globally_paused {
            self.globally_paused = global_full;
            tracing::debug!(total, global_full, "global in-flight budget");
        }
        if pause.count() > 0
            && let Err(e) = self.consumer.pause(&pause)
        {
            tracing::warn!(error = %e, "pausing partitions failed");
        }
        if resume.count() > 0
            && let Err(e) = self.consumer.resume(&resume)
        {
            tracing::warn!(error = %e, "resuming partitions failed");
        }
    }
}

impl Actor for OffsetTracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.limits.commit_interval, |act, _| {
            act.commit(CommitMode::Async)
        });
    }
}

/// The offsets (and their commit metadata) to commit, as librdkafka wants them.
pub fn commit_list(pending: &[((String, i32), i64, String)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset, metadata) in pending {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        if let Some(mut elem) = tpl.find_partition(topic, *partition) {
            elem.set_metadata(metadata.as_str());
        }
    }
    tpl
}

impl Handler<Admit> for OffsetTracker {
    type Result = ();

    fn handle(&mut self, Admit(item): Admit, _: &mut Self::Context) {
        let (accepted, already_done) = self
            .book
            .lock()
            .map(|mut b| {
                let done = b.already_done(item.ticket());
                let accepted = b.begin(item.ticket());
                if accepted && done {
                    b.finish(item.ticket());
                }
                (accepted, done)
            })
            .unwrap_or((false, false));
        if !accepted {
            // Read just before its partition was revoked: the new owner will read it.
            return;
        }
        if already_done {
            // Finished by an earlier owner (commit metadata): nothing to redo.
            metrics::counter!("wsi_thumbnail_skipped_total").increment(1);
            tracing::debug!(
                partition = item.ticket().partition,
                offset = item.ticket().offset,
                "already done; skipped"
            );
            return;
        }
        metrics::counter!("wsi_thumbnail_requests_total").increment(1);
        let key = item.ticket().key.clone();
        if let Some(ready) = self.keys.admit(key.as_deref(), item) {
            self.dispatch(ready);
        }
        self.apply_budgets();
    }
}

impl Handler<Completed> for OffsetTracker {
    type Result = ();

    fn handle(&mut self, Completed { ticket }: Completed, _: &mut Self::Context) {
        if let Some(journal) = self.journal.as_mut()
            && let Err(e) = journal.end(&ticket.topic, ticket.partition, ticket.offset)
        {
            tracing::warn!(error = %e, "cannot write the in-flight journal");
        }
        let counted = self
            .book
            .lock()
            .map(|mut b| b.finish(&ticket))
            .unwrap_or(false);
        if !counted {
            tracing::debug!(
                partition = ticket.partition,
                offset = ticket.offset,
                "completion for a revoked partition ignored"
            );
        }
        // Hand the key to the next waiting request of a partition we still own.
        let mut next = self.keys.release(ticket.key.as_deref());
        while let Some(item) = next {
            let current = self
                .book
                .lock()
                .map(|b| b.is_current(item.ticket()))
                .unwrap_or(false);
            if current {
                self.dispatch(item);
                break;
            }
            next = self.keys.release(ticket.key.as_deref());
        }
        self.apply_budgets();
    }
}

/// Shutdown: resolves with the number of requests still in flight once everything
/// finished or `grace` ran out, after a final synchronous commit.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain {
    pub grace: Duration,
}

impl Handler<Drain> for OffsetTracker {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, msg: Drain, _: &mut Self::Context) -> Self::Result {
        let deadline = Instant::now() + msg.grace;
        let book = self.book.clone();
        Box::pin(
            async move {
                loop {
                    let left = book.lock().map(|b| b.in_flight_total()).unwrap_or(0);
                    if left == 0 || Instant::now() >= deadline {
                        return left;
                    }
                    actix_rt::time::sleep(Duration::from_millis(50)).await;
                }
            }
            .into_actor(self)
            .map(|left, act, _| {
                act.commit(CommitMode::Sync);
                // Work abandoned by a clean shutdown did not kill anything.
                if let Some(journal) = act.journal.as_mut()
                    && let Err(e) = journal.end_all()
                {
                    tracing::warn!(error = %e, "cannot write the in-flight journal");
                }
                left
            }),
        )
    }
}
