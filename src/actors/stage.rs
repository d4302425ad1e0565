//! The stage runner: what every stage between the tracker and the publisher does around
//! its real work, written once. It enters the job's log span, injects the test faults,
//! catches a panic (the job becomes an `internal` failure and the actor goes on; see
//! [`crate::faults`]), times I/O stages, marks the request's timeline, and
//! routes the outcome: the next stage's message on success, `Fail` to the publisher
//! otherwise. A stage file is then only its own work.
//!
//! Stages know each other only by the messages they send ([`Routes`] holds
//! `Recipient`s handed in by the supervisor), so no actor imports another.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use actix::prelude::*;
use futures::FutureExt;
use tracing::Instrument;

use crate::error_kind::ErrorKind;
use crate::faults::{inject_fault, record_panic};
use crate::messages::pipeline::{Fail, Failure, Job};
use crate::messages::timeline::{Mark, Timeline};
use crate::storage::StorageError;
use crate::telemetry::record::{self, Stage};

/// What a stage's work ends in: the next stage's message, or the job's failure (boxed:
/// it is large, and the rare case).
pub type Outcome<M> = Result<M, Box<Failure>>;

/// Where a stage sends its outcome.
pub struct Routes<M: Message<Result = ()> + Send> {
    pub next: Recipient<M>,
    pub fail: Recipient<Fail>,
}

impl<M: Message<Result = ()> + Send> Clone for Routes<M> {
    fn clone(&self) -> Self {
        Routes {
            next: self.next.clone(),
            fail: self.fail.clone(),
        }
    }
}

impl<M: Message<Result = ()> + Send> Routes<M> {
    pub fn new(next: Recipient<M>, fail: &Recipient<Fail>) -> Self {
        Routes {
            next,
            fail: fail.clone(),
        }
    }

    fn route(&self, outcome: Outcome<M>) {
        match outcome {
            Ok(message) => self.next.do_send(message),
            Err(failure) => self.fail.do_send(Fail(*failure)),
        }
    }
}

/// Marks the timeline points a stage passes before (`end` false) and after its work.
fn mark(stage: Stage, timeline: &Timeline, end: bool) {
    let point = match (stage, end) {
        (Stage::Fetch, false) => Mark::FetchStart,
        (Stage::Fetch, true) => Mark::FetchEnd,
        (Stage::Decode, false) => Mark::DecodeStart,
        (Stage::Decode, true) => Mark::DecodeEnd,
        (Stage::Resize | Stage::Encode, true) => Mark::ResizeEnd,
        (Stage::Upload, false) => Mark::UploadStart,
        (Stage::Upload, true) => Mark::UploadEnd,
        _ => return,
    };
    timeline.mark(point);
}

/// A panic in a stage: counted, logged, and the job's `internal` failure.
fn panicked(stage: Stage, job: &Job, payload: &(dyn std::any::Any + Send)) -> Box<Failure> {
    let message = record_panic(stage, payload);
    Box::new(Failure::of_job(job, ErrorKind::Internal, message))
}

/// A storage stage that gave up: logged, and the job's failure with its attempts.
pub fn storage_failure(job: &Job, what: &str, error: &StorageError, attempts: u32) -> Box<Failure> {
    tracing::warn!(error = %error, attempts, "{what} failed");
    let mut failure = Failure::of_job(job, error.kind(), error.to_string());
    failure.attempts = attempts;
    failure.retryable = error.retryable();
    Box::new(failure)
}

/// Runs a CPU stage's work on the calling (SyncArbiter) thread.
pub fn run_sync<M>(stage: Stage, job: Job, routes: &Routes<M>, work: impl FnOnce(Job) -> Outcome<M>)
where
    M: Message<Result = ()> + Send + 'static,
{
    let _in_job = job.ticket.span.clone().entered();
    let held = job.clone();
    mark(stage, &held.ticket.timeline, false);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        inject_fault(stage.label(), &job.request.slide_id);
        work(job)
    }))
    .unwrap_or_else(|panic| Err(panicked(stage, &held, panic.as_ref())));
    mark(stage, &held.ticket.timeline, true);
    routes.route(outcome);
}

/// Runs an I/O stage's work as the actor's response future. Its wall time is its cost
/// (storage I/O), so that is what `wsi_thumbnail_stage_seconds` records; CPU stages
/// record the engine's own timings, since a worker does several stages in one call.
pub fn run_async<M, F, Fut>(
    stage: Stage,
    job: Job,
    routes: Routes<M>,
    work: F,
) -> ResponseFuture<()>
where
    M: Message<Result = ()> + Send + 'static,
    F: FnOnce(Job) -> Fut + 'static,
    Fut: Future<Output = Outcome<M>> + 'static,
{
    let span = job.ticket.span.clone();
    let held = job.clone();
    Box::pin(
        async move {
            let started = Instant::now();
            mark(stage, &held.ticket.timeline, false);
            let outcome = AssertUnwindSafe(async move {
                inject_fault(stage.label(), &job.request.slide_id);
                work(job).await
            })
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(panicked(stage, &held, panic.as_ref())));
            if outcome.is_ok() {
                record::stage_seconds(stage, started.elapsed());
            }
            mark(stage, &held.ticket.timeline, true);
            routes.route(outcome);
        }
        .instrument(span),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::payload::ThumbnailRequest;
    use crate::messages::ticket::{Reply, Ticket};
    use crate::storage::location::InputLink;

    /// Collects what a stage routed.
    struct Sink(std::sync::mpsc::Sender<Result<String, (ErrorKind, String)>>);
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Next(String);
    impl Handler<Next> for Sink {
        type Result = ();
        fn handle(&mut self, Next(s): Next, _: &mut Self::Context) {
            let _ = self.0.send(Ok(s));
        }
    }
    impl Handler<Fail> for Sink {
        type Result = ();
        fn handle(&mut self, Fail(f): Fail, _: &mut Self::Context) {
            let _ = self.0.send(Err((f.kind, f.message)));
        }
    }

    fn job(slide_id: &str) -> Job {
        Job {
            ticket: Ticket::http(1, Reply::channel().0),
            request: ThumbnailRequest {
                id: "r1".into(),
                created_on: String::new(),
                image_bucket_link: "file:///tmp/x.svs".into(),
                patient_id: "p".into(),
                slide_id: slide_id.into(),
                block_id: "b".into(),
            },
            input: InputLink::File {
                path: "/tmp/x.svs".into(),
            },
            object_name: "x.png".into(),
            template: "{stem}.png".into(),
        }
    }

    /// Runs `body` with a sink's routes on an actix system; returns what was routed.
    fn routed(
        body: impl FnOnce(Routes<Next>) + 'static,
    ) -> Vec<Result<String, (ErrorKind, String)>> {
        let (tx, rx) = std::sync::mpsc::channel();
        System::new().block_on(async move {
            let sink = Sink(tx).start();
            body(Routes {
                next: sink.clone().recipient(),
                fail: sink.recipient(),
            });
            actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
        });
        rx.try_iter().collect()
    }

    #[test]
    fn success_goes_to_the_next_stage_and_failure_to_the_publisher() {
        let got = routed(|routes| {
            run_sync(Stage::Resize, job("a"), &routes, |j| {
                Ok(Next(j.request.slide_id))
            });
            run_sync(Stage::Resize, job("b"), &routes, |j| {
                Err(Box::new(Failure::of_job(
                    &j,
                    ErrorKind::CorruptSlide,
                    "bad".into(),
                )))
            });
        });
        assert_eq!(
            got,
            vec![Ok("a".into()), Err((ErrorKind::CorruptSlide, "bad".into()))]
        );
    }

    #[test]
    fn a_panic_becomes_one_internal_failure_in_sync_and_async_stages() {
        let got = routed(|routes| {
            run_sync(Stage::Decode, job("a"), &routes, |_| -> Result<Next, _> {
                panic!("boom")
            });
            actix_rt::spawn(run_async(Stage::Fetch, job("b"), routes, |_| async {
                panic!("bang")
            }));
        });
        assert_eq!(
            got,
            vec![
                Err((
                    ErrorKind::Internal,
                    "the decode stage panicked: boom".into()
                )),
                Err((ErrorKind::Internal, "the fetch stage panicked: bang".into())),
            ]
        );
    }
}
