//! Resizer pool (SyncArbiter threads): final Lanczos resize and PNG encoding of slides
//! decoded in the service process (a worker process hands over a finished PNG, which
//! passes straight through); a DICOM slide's thumbnail is renamed after its series here,
//! the first stage that knows it.
//!
//! Receives: `Resize` from the decoder pool.
//! Sends: `Upload` to the uploader, or `Fail` to the publisher.
//! Owns: nothing between jobs.

use actix::prelude::*;
use bytes::Bytes;

use super::stage::{Routes, run_sync};
use crate::admission::name_after_series;
use crate::messages::pipeline::{Decoded, Failure, Resize, Upload};
use crate::slide::finish;
use crate::telemetry::record::{self, Stage};

pub struct Resizer {
    pub routes: Routes<Upload>,
}

impl Actor for Resizer {
    type Context = SyncContext<Self>;
}

impl Handler<Resize> for Resizer {
    type Result = ();

    fn handle(&mut self, Resize { job, decoded }: Resize, _: &mut Self::Context) {
        run_sync(Stage::Resize, job, &self.routes, |job| {
            let thumb = match decoded {
                Decoded::Reduced(reduced) => finish(reduced),
                // A worker process already resized and encoded it.
                Decoded::Finished(thumbnail) => Ok(thumbnail),
            }
            .map_err(|e| Box::new(Failure::of_job(&job, e.kind(), e.to_string())))?;
            record::stage_seconds(Stage::Resize, thumb.timings.resize);
            record::stage_seconds(Stage::Encode, thumb.timings.encode);
            let mut job = job;
            if let Some(series) = &thumb.series
                && let Err(e) = name_after_series(&mut job, series)
            {
                return Err(Box::new(Failure::of_job(&job, e.kind, e.message)));
            }
            Ok(Upload {
                job,
                png: Bytes::from(thumb.png),
                metadata: thumb.metadata,
            })
        });
    }
}
