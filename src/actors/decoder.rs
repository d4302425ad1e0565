//! Decoder pool (SyncArbiter threads): turns each fetched slide into pixels. CPU work,
//! so never on the async runtime.
//!
//! Receives: `Decode` from the fetcher.
//! Sends: `Resize` to the resizer pool, or `Fail` to the publisher.
//! Owns: with `thumbnail.isolation = "process"` (the default), the pool of fresh worker
//! processes: each slide is decoded by the worker that planned its read, or a fresh one,
//! which ends with the slide (see [`crate::worker`]); with `none`, a rayon pool of its
//! own. The downloaded file is deleted as soon as it is read, whatever happened to the
//! worker. A panic inside the in-process engine fails that
//! job (`internal`) instead of losing it (see [`super::stage`]).

use std::sync::Arc;

use actix::prelude::*;

use super::stage::{Routes, run_sync};
use crate::messages::pipeline::{Decode, Decoded, Failure, Resize};
use crate::slide::{ThumbnailOptions, reduce_slide};
use crate::telemetry::record::{self, Stage};
use crate::worker::cores::CoreShare;
use crate::worker::{DecodeFailure, WorkerPool};

/// Where this decoder thread runs slide code.
pub enum Engine {
    /// A worker process per slide, from the service's pool, decoding with the cores no
    /// other slide holds when it starts (shared by every decoder thread).
    Process(Arc<WorkerPool>, Arc<CoreShare>),
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
    pub routes: Routes<Resize>,
}

impl Actor for Decoder {
    type Context = SyncContext<Self>;
}

impl Handler<Decode> for Decoder {
    type Result = ();

    fn handle(&mut self, decode: Decode, _: &mut Self::Context) {
        let Decode { job, slide, worker } = decode;
        let (options, engine) = (&self.options, &mut self.engine);
        run_sync(Stage::Decode, job, &self.routes, |job| {
            let decoded = match engine {
                Engine::Process(pool, cores) => worker
                    .map_or_else(|| pool.checkout(), Ok)
                    .map_err(|e| DecodeFailure {
                        kind: crate::error_kind::ErrorKind::Internal,
                        retryable: true,
                        message: e.to_string(),
                    })
                    .and_then(|mut worker| {
                        let timeline = job.ticket.timeline.clone();
                        worker.observe_pid(move |pid| timeline.set_worker_pid(pid));
                        let share = cores.claim();
                        worker.thumbnail(&slide.path, options, share.threads)
                    })
                    .map(Decoded::Finished)
                    .map_err(|f| (f.kind, f.retryable, f.message)),
                Engine::InProcess { pool } => {
                    let run = || reduce_slide(&slide.path, options);
                    pool.as_ref()
                        .map_or_else(run, |p| p.install(run))
                        .map(Decoded::Reduced)
                        .map_err(|e| (e.kind(), e.kind().retryable(), e.describe()))
                }
            };
            // The slide is read (or unreadable): its download goes now.
            drop(slide);
            match decoded {
                Ok(decoded) => {
                    let (t, path) = match &decoded {
                        Decoded::Reduced(r) => (r.timings, r.path),
                        Decoded::Finished(t) => (t.timings, t.path),
                    };
                    record::stage_seconds(Stage::Decode, t.open + t.decode);
                    record::pixel_path(path.label());
                    job.ticket.span.record("pixel_path", path.label());
                    Ok(Resize { job, decoded })
                }
                Err((kind, retryable, message)) => {
                    tracing::warn!(%kind, reason = %message, "slide failed");
                    let mut failure = Failure::of_job(&job, kind, message);
                    failure.retryable = retryable;
                    Err(Box::new(failure))
                }
            }
        });
    }
}
