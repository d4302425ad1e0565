//! Resizer pool (SyncArbiter threads): final Lanczos resize and PNG encoding.
//!
//! Receives: `Resize` from the decoder pool.
//! Sends: `Upload` to the uploader, or `Fail` to the publisher.

use std::panic::{AssertUnwindSafe, catch_unwind};

use actix::prelude::*;
use bytes::Bytes;

use super::publisher::Publisher;
use super::uploader::Uploader;
use crate::error_kind::ErrorKind;
use crate::messages::pipeline::{Fail, Failure, Resize, Upload};
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

    fn handle(&mut self, Resize { job, reduced }: Resize, _: &mut Self::Context) {
        match catch_unwind(AssertUnwindSafe(|| finish(reduced))) {
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
            Err(_) => self.publisher.do_send(Fail(Failure::of_job(
                &job,
                ErrorKind::Internal,
                "resizing panicked on this slide".into(),
            ))),
        }
    }
}
