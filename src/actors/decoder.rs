//! Decoder pool (SyncArbiter threads): opens each slide and reads its chosen level
//! through the bounded reduction. CPU work, so never on the async runtime.
//!
//! Receives: `Decode` from the fetcher.
//! Sends: `Resize` to the resizer pool, or `Fail` to the publisher.
//! Owns: nothing between jobs; the downloaded file is deleted as soon as it is read.
//! A panic inside the slide engine fails that job (`internal`) instead of losing it
//! (see [`super::guard`]).

use std::panic::{AssertUnwindSafe, catch_unwind};

use actix::prelude::*;

use super::guard::{inject_fault, record_panic};
use super::publisher::Publisher;
use super::resizer::Resizer;
use crate::error_kind::ErrorKind;
use crate::messages::pipeline::{Decode, Fail, Failure, Resize};
use crate::slide::{ThumbnailOptions, reduce_slide};

pub struct Decoder {
    pub options: ThumbnailOptions,
    pub resizer: Addr<Resizer>,
    pub publisher: Addr<Publisher>,
    /// This decoder thread's own pool for the engine's parallel chunks. With one shared
    /// pool, a huge slide's chunks queue ahead of every other slide's (rayon serves its
    /// workers' own queues before injected work), so one slide would stall the pipeline;
    /// with a pool per decoder the OS shares the cores between slides instead.
    pub pool: Option<rayon::ThreadPool>,
}

impl Decoder {
    pub fn pool(threads: usize) -> Option<rayon::ThreadPool> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("wsi-decode-{i}"))
            .build()
            .map_err(|e| tracing::warn!(error = %e, "no per-decoder thread pool; sharing the global one"))
            .ok()
    }
}

impl Actor for Decoder {
    type Context = SyncContext<Self>;
}

impl Handler<Decode> for Decoder {
    type Result = ();

    fn handle(&mut self, Decode { job, slide }: Decode, _: &mut Self::Context) {
        let _in_job = job.ticket.span.clone().entered();
        let result = catch_unwind(AssertUnwindSafe(|| {
            inject_fault("decode", &job.request.slide_id);
            reduce_slide(&slide.path, &self.options)
        }));
        drop(slide);
        match result {
            Ok(Ok(reduced)) => {
                let t = reduced.timings;
                metrics::histogram!("wsi_thumbnail_stage_seconds", "stage" => "decode")
                    .record((t.open + t.decode).as_secs_f64());
                self.resizer.do_send(Resize { job, reduced });
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "slide failed");
                self.publisher
                    .do_send(Fail(Failure::of_job(&job, e.kind(), e.to_string())));
            }
            Err(panic) => {
                let message = record_panic("decode", panic.as_ref());
                self.publisher
                    .do_send(Fail(Failure::of_job(&job, ErrorKind::Internal, message)));
            }
        }
    }
}
