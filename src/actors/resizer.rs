//! Resizer pool (SyncArbiter threads): final Lanczos resize and PNG encoding of slides
//! decoded in the service process (a worker process hands over a finished PNG, which
//! passes straight through).
//!
//! Receives: `Resize` from the decoder pool.
//! Sends: `Upload` to the uploader, or `Fail` to the publisher.

use std::panic::{AssertUnwindSafe, catch_unwind};

use actix::prelude::*;
use bytes::Bytes;

use super::guard::{inject_fault, record_panic};
use super::publisher::Publisher;
use super::uploader::Uploader;
use crate::error_kind::ErrorKind;
use crate::messages::pipeline::{Decoded, Fail, Failure, Resize, Upload};
use crate::slide::finish;

pub struct Resizer {
    pub uploader: Addr<Uploader>,
    pub publisher: Addr<Publisher>,
}

impl Actor for Resizer {
    type Context = SyncContext<Self>;
}

impl Handler<Resize> for Resizer {
    type Result = ();

    fn handle(&mut self, Resize { job, decoded }: Resize, _: &mut Self::Context) {
        let _in_job = job.ticket.span.clone().entered();
        let result = catch_unwind(AssertUnwindSafe(|| {
            inject_fault("resize", &job.request.slide_id);
            match decoded {
                Decoded::Reduced(reduced) => finish(reduced),
                // A worker process already resized and encoded it.
                Decoded::Finished(thumbnail) => Ok(thumbnail),
            }
        }));
        match result {
            Ok(Ok(thumb)) => {
                let t = thumb.timings;
                metrics::histogram!("wsi_thumbnail_stage_seconds", "stage" => "resize")
                    .record(t.resize.as_secs_f64());
                metrics::histogram!("wsi_thumbnail_stage_seconds", "stage" => "encode")
                    .record(t.encode.as_secs_f64());
                self.uploader.do_send(Upload {
                    job,
                    png: Bytes::from(thumb.png),
                    metadata: thumb.metadata,
                });
            }
            Ok(Err(e)) => {
                self.publisher
                    .do_send(Fail(Failure::of_job(&job, e.kind(), e.to_string())))
            }
            Err(panic) => {
                let message = record_panic("resize", panic.as_ref());
                self.publisher
                    .do_send(Fail(Failure::of_job(&job, ErrorKind::Internal, message)));
            }
        }
    }
}
