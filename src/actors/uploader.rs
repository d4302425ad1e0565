//! Uploader: writes each thumbnail to the output location.
//!
//! Receives: `Upload` from the resizer pool.
//! Sends: `Publish` to the publisher, or `Fail` to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::Instrument;

use super::guard::{guarded, inject_fault};
use super::publisher::Publisher;
use crate::error_kind::ErrorKind;
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
        let span = job.ticket.span.clone();
        let held = job.clone();
        let stage = async move {
            inject_fault("upload", &job.request.slide_id);
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
                    tracing::warn!(error = %e, attempts, "upload failed");
                    let mut failure = Failure::of_job(&job, e.kind(), e.to_string());
                    failure.attempts = attempts;
                    publisher.do_send(Fail(failure));
                }
            }
        };
        let publisher = self.publisher.clone();
        Box::pin(
            async move {
                if let Err(message) = guarded("upload", stage).await {
                    publisher.do_send(Fail(Failure::of_job(&held, ErrorKind::Internal, message)));
                }
            }
            .instrument(span),
        )
    }
}
