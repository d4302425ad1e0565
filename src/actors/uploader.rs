//! Uploader: writes each thumbnail to the output location.
//!
//! Receives: `Upload` from the resizer pool.
//! Sends: `Publish` to the publisher, or `Fail` to it.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::publisher::Publisher;
use crate::messages::payload::ThumbnailResponse;
use crate::messages::pipeline::{Fail, Failure, Publish, Upload};
use crate::storage::output::OutputSink;

pub struct Uploader {
    pub sink: Arc<OutputSink>,
    pub publisher: Addr<Publisher>,
}

impl Actor for Uploader {
    type Context = Context<Self>;
}

impl Handler<Upload> for Uploader {
    type Result = ResponseFuture<()>;

    fn handle(
        &mut self,
        Upload { job, png, metadata }: Upload,
        _: &mut Self::Context,
    ) -> Self::Result {
        let sink = self.sink.clone();
        let publisher = self.publisher.clone();
        Box::pin(async move {
            let started = Instant::now();
            match sink.put(&job.object_name, png).await {
                Ok(link) => {
                    metrics::histogram!("wsi_thumbnail_stage_seconds", "stage" => "upload")
                        .record(started.elapsed().as_secs_f64());
                    let response = ThumbnailResponse::new(&job.request, link, metadata);
                    publisher.do_send(Publish { job, response });
                }
                Err(e) => {
                    tracing::warn!(slide_id = %job.request.slide_id, partition = job.ticket.partition, offset = job.ticket.offset, error = %e, "upload failed");
                    publisher.do_send(Fail(Failure::of_job(&job, e.kind(), e.to_string())));
                }
            }
        })
    }
}
