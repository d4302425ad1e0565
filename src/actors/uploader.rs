//! Uploader: writes each thumbnail to the output location.
//!
//! Receives: `Upload` from the resizer pool.
//! Sends: `Publish` to the publisher, or `Fail` to it.
//! Owns: the output sink.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::stage::{Routes, run_async, storage_failure};
use crate::messages::payload::ThumbnailResponse;
use crate::messages::pipeline::{Publish, Upload};
use crate::storage::output::OutputSink;
use crate::storage::retry::{RetryConfig, with_retries};
use crate::telemetry::record::Stage;

pub struct Uploader {
    pub sink: Arc<OutputSink>,
    pub retry: RetryConfig,
    pub timeout: Duration,
    pub routes: Routes<Publish>,
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
        let (retry, timeout) = (self.retry.clone(), self.timeout);
        run_async(
            Stage::Upload,
            job,
            self.routes.clone(),
            move |job| async move {
                let (result, attempts) = with_retries(&retry, timeout, "upload", || {
                    sink.put(&job.object_name, png.clone())
                })
                .await;
                match result {
                    Ok(link) => {
                        let response = ThumbnailResponse::new(&job.request, link, metadata);
                        Ok(Publish { job, response })
                    }
                    Err(e) => Err(storage_failure(&job, "upload", &e, attempts)),
                }
            },
        )
    }
}
