//! Uploader: writes each thumbnail to the output location.
//!
//! Receives: `Upload` from the resizer pool.
//! Sends: `Publish` to the publisher, or `Fail` to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::publisher::Publisher;
use crate::messages::payload::ThumbnailResponse;
use crate::messages::pipeline::{Fail, Failure, Publish, Upload};
use crate::storage::output::OutputSink;
use crate::storage::retry::{RetryConfig, with_retries};

pub struct Uploader {
    pub sink: Arc<OutputSink>,
    pub retry: RetryConfig,
    pub timeout: Duration,
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
        let (retry, timeout) = (self.retry.clone(), self.timeout);
        Box::pin(async move {
            let started = Instant::now();
            let (result, attempts) = with_retries(&retry, timeout, "upload", || {
                sink.put(&job.object_name, png.clone())
            })
            .await;
            match result {
                Ok(link) => {
                    metrics::histogram!("wsi_thumbnail_stage_seconds", "stage" => "upload")
                        .record(started.elapsed().as_secs_f64());
                    let response = ThumbnailResponse::new(&job.request, link, metadata);
                    publisher.do_send(Publish { job, response });
                }
                Err(e) => {
                    tracing::warn!(slide_id = %job.request.slide_id, partition = job.ticket.partition, offset = job.ticket.offset, error = %e, "upload failed");
                    let mut failure = Failure::of_job(&job, e.kind(), e.to_string());
                    failure.attempts = attempts;
                    publisher.do_send(Fail(failure));
                }
            }
        })
    }
}
