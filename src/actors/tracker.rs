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
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};

use crate::delivery::journal::{Journal, MAX_DEATHS};
use crate::delivery::key_order::KeyOrder;
use crate::delivery::ledger::Ledger;
use crate::delivery::limits::Limits;
use crate::delivery::room::Room;
use crate::error_kind::ErrorKind;
use crate::kafka::commit::commit_list;
use crate::kafka::context::ServiceContext;
use crate::log_throttle::LogThrottle;
use crate::messages::pipeline::{Admit, Admitted, Completed, Fail, Failure, Fetch};
use crate::messages::ticket::KafkaRecord;
use crate::messages::timeline::Mark;
use crate::telemetry::record;

pub struct OffsetTracker {
    consumer: Arc<StreamConsumer<ServiceContext>>,
    ledger: Arc<Mutex<Ledger>>,
    keys: KeyOrder<Admitted>,
    /// Where admitted jobs go (the fetcher) and where failures go (the publisher).
    fetch: Recipient<Fetch>,
    fail: Recipient<Fail>,
    limits: Limits,
    /// The global budget the reader waits on.
    room: Arc<Room>,
    /// Requests in flight, on disk, so a restart loop can be noticed and broken.
    journal: Option<Journal>,
}

impl OffsetTracker {
    pub fn new(
        consumer: Arc<StreamConsumer<ServiceContext>>,
        ledger: Arc<Mutex<Ledger>>,
        fetch: Recipient<Fetch>,
        fail: Recipient<Fail>,
        limits: Limits,
        room: Arc<Room>,
        journal: Option<Journal>,
    ) -> Self {
        OffsetTracker {
            room,
            journal,
            consumer,
            ledger,
            keys: KeyOrder::default(),
            fetch,
            fail,
            limits,
        }
    }

    fn dispatch(&mut self, item: Admitted) {
        match item {
            Admitted::Job(job) => match job.ticket.record().map(|r| self.journal_begin(r)) {
                Some(Err(deaths)) => {
                    record::restart_loop_broken();
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
                    self.fail.do_send(Fail(failure));
                }
                _ => {
                    job.ticket.timeline.mark(Mark::Admitted);
                    self.fetch.do_send(Fetch(job))
                }
            },
            Admitted::Failure(f) => self.fail.do_send(Fail(f)),
        }
    }

    /// Journals a Kafka request as in flight, or says how often it killed the service.
    fn journal_begin(&mut self, request: &KafkaRecord) -> Result<(), u32> {
        let Some(journal) = self.journal.as_mut() else {
            return Ok(());
        };
        let deaths = journal.deaths(&request.topic, request.partition, request.offset);
        if deaths >= MAX_DEATHS {
            return Err(deaths);
        }
        if let Err(e) = journal.begin(&request.topic, request.partition, request.offset) {
            tracing::warn!(error = %e, "cannot write the in-flight journal");
        }
        Ok(())
    }

    /// Commits every partition whose contiguous done prefix moved.
    fn commit(&self, mode: CommitMode) {
        let Ok(mut ledger) = self.ledger.lock() else {
            return;
        };
        let pending = ledger.pending_commits();
        if pending.is_empty() {
            return;
        }
        let tpl = commit_list(&pending);
        match self.consumer.commit(&tpl, mode) {
            Ok(()) => {
                for (tp, offset, metadata) in &pending {
                    ledger.mark_committed(tp, *offset, metadata.clone());
                    record::committed_offset(tp.1, *offset);
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

    /// Pauses partitions whose budget is full and resumes those with room again (see
    /// [`Limits::keep_paused`]), and tells the reader when the total went down.
    fn apply_budgets(&mut self) {
        let Ok(mut ledger) = self.ledger.lock() else {
            return;
        };
        let total = ledger.in_flight_total();
        record::in_flight(total);
        if self.room.is_open(total) {
            self.room.changed();
        }
        let (mut pause, mut resume) = (TopicPartitionList::new(), TopicPartitionList::new());
        for ((topic, partition), state) in ledger.partitions_mut() {
            let paused = self
                .limits
                .keep_paused(state.paused, state.offsets.in_flight());
            if paused && !state.paused {
                let _ = pause.add_partition(topic, *partition);
            } else if !paused && state.paused {
                let _ = resume.add_partition(topic, *partition);
            }
            state.paused = paused;
        }
        if pause.count() + resume.count() > 0 {
            tracing::debug!(
                total,
                paused = pause.count(),
                resumed = resume.count(),
                "in-flight budgets"
            );
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

impl Handler<Admit> for OffsetTracker {
    type Result = ();

    fn handle(&mut self, Admit(item): Admit, _: &mut Self::Context) {
        // Only Kafka records are admitted (`POST /process` jobs skip the tracker).
        let Some(request) = item.ticket().record() else {
            return;
        };
        let (accepted, already_done) = self
            .ledger
            .lock()
            .map(|mut ledger| {
                let done = ledger.already_done(request);
                let accepted = ledger.begin(request);
                if accepted && done {
                    ledger.finish(request);
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
            record::request_skipped();
            tracing::debug!(%request, "already done; skipped");
            return;
        }
        record::request_admitted();
        let key = item.ticket().key().map(<[u8]>::to_vec);
        if let Some(ready) = self.keys.admit(key.as_deref(), item) {
            self.dispatch(ready);
        }
        self.apply_budgets();
    }
}

impl Handler<Completed> for OffsetTracker {
    type Result = ();

    fn handle(&mut self, Completed { ticket }: Completed, _: &mut Self::Context) {
        let Some(request) = ticket.record() else {
            return;
        };
        if let Some(journal) = self.journal.as_mut()
            && let Err(e) = journal.end(&request.topic, request.partition, request.offset)
        {
            tracing::warn!(error = %e, "cannot write the in-flight journal");
        }
        let counted = self
            .ledger
            .lock()
            .map(|mut ledger| ledger.finish(request))
            .unwrap_or(false);
        if !counted {
            tracing::debug!(%request, "completion for a revoked partition ignored");
        }
        self.release_key(ticket.key());
        self.apply_budgets();
    }
}

impl OffsetTracker {
    /// Hands a finished request's key to the next waiting request of a partition we
    /// still own.
    fn release_key(&mut self, key: Option<&[u8]>) {
        let mut next = self.keys.release(key);
        while let Some(item) = next {
            let current = item.ticket().record().is_some_and(|request| {
                self.ledger
                    .lock()
                    .map(|ledger| ledger.is_current(request))
                    .unwrap_or(false)
            });
            if current {
                self.dispatch(item);
                break;
            }
            next = self.keys.release(key);
        }
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
        let ledger = self.ledger.clone();
        Box::pin(
            async move {
                loop {
                    let left = ledger.lock().map(|l| l.in_flight_total()).unwrap_or(0);
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
