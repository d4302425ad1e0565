//! Decoder pool (SyncArbiter threads): turns each fetched slide into pixels. CPU work,
//! so never on the async runtime.
//!
//! Receives: `Decode` from the fetcher.
//! Sends: `Resize` to the resizer pool, or `Fail` to the publisher.
//! Owns: with `thumbnail.isolation = "process"` (the default), one worker process per
//! decoder thread, replaced when a slide kills it (see [`crate::worker`]); with `none`,
//! a rayon pool of its own. The downloaded file is deleted as soon as it is read,
//! whatever happened to the worker. A panic inside the in-process engine fails that
//! job (`internal`) instead of losing it (see [`super::guard`]).

use std::panic::{AssertUnwindSafe, catch_unwind};

use actix::prelude::*;

use super::guard::{inject_fault, record_panic};
use super::publisher::Publisher;
use super::resizer::Resizer;
use crate::error_kind::ErrorKind;
use crate::messages::pipeline::{Decode, Decoded, Fail, Failure, Job, Resize};
use crate::slide::{ThumbnailOptions, reduce_slide};
use crate::worker::WorkerSlot;

/// Where this decoder thread runs slide code.
pub enum Engine {
    /// A worker process. Built by the SyncArbiter's factory, which runs on the
    /// decoder's own thread, so the worker starts with the service and dies with the
    /// thread (`PR_SET_PDEATHSIG`).
    Process(Box<WorkerSlot>),
    /// This thread, with its own pool for the engine's parallel chunks. With one shared
    /// pool, a huge slide's chunks queue ahead of every other slide's (rayon serves its
    /// workers' own queues before injected work); with a pool per decoder the OS
    /// shares the cores between slides instead.
    InProcess { pool: Option<rayon::ThreadPool> },
}

impl Engine {
    pub fn in_process(threads: usize) -> Engine {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("wsi-decode-{i}"))
            .build()
            .map_err(|e| tracing::warn!(error = %e, "no per-decoder thread pool; sharing the global one"))
            .ok();
        Engine::InProcess { pool }
    }
}

pub struct Decoder {
    pub options: ThumbnailOptions,
    pub engine: Engine,
    pub resizer: Addr<Resizer>,
    pub publisher: Addr<Publisher>,
}

impl Actor for Decoder {
    type Context = SyncContext<Self>;
}

impl Decoder {
    fn fail(&self, job: &Job, kind: ErrorKind, retryable: bool, message: String) {
        tracing::warn!(%kind, reason = %message, "slide failed");
        let mut failure = Failure::of_job(job, kind, message);
        failure.retryable = retryable;
        self.publisher.do_send(Fail(failure));
    }
}

impl Handler<Decode> for Decoder {
    type Result = ();

    fn handle(&mut self, Decode { job, slide }: Decode, _: &mut Self::Context) {
        let _in_job = job.ticket.span.clone().entered();
        let options = &self.options;
        let engine = &mut self.engine;
        let caught = catch_unwind(AssertUnwindSafe(|| {
            inject_fault("decode", &job.request.slide_id);
            match engine {
                Engine::Process(slot) => slot
                    .thumbnail(&slide.path, options)
                    .map(Decoded::Finished)
                    .map_err(|f| (f.kind, f.retryable, f.message)),
                Engine::InProcess { pool } => {
                    let run = || reduce_slide(&slide.path, options);
                    pool.as_ref()
                        .map_or_else(run, |p| p.install(run))
                        .map(Decoded::Reduced)
                        .map_err(|e| (e.kind(), e.kind().retryable(), e.describe()))
                }
            }
        }));
        let decoded = caught.unwrap_or_else(|panic| {
            Err((
                ErrorKind::Internal,
                false,
                record_panic("decode", panic.as_ref()),
            ))
        });
        drop(slide);
        match decoded {
            Ok(decoded) => {
                let t = match &decoded {
                    Decoded::Reduced(r) => r.timings,
                    Decoded::Finished(t) => t.timings,
                };
                metrics::histogram!("wsi_thumbnail_stage_seconds", "stage" => "decode")
                    .record((t.open + t.decode).as_secs_f64());
                self.resizer.do_send(Resize { job, decoded });
            }
            Err((kind, retryable, message)) => self.fail(&job, kind, retryable, message),
        }
    }
}
