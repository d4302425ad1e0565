//! Uploader: writes each thumbnail to the output location.
//!
//! An operator fault on the output (`storage::output_fault`: bucket missing, role
//! missing) never becomes a failure record: the upload waits, retrying with backoff,
//! while readiness is off and one log line per 15 s names the output and the fix.
//!
//! Receives: `Upload` from the resizer pool.
//! Sends: `Publish` to the publisher, or `Fail` to it.
//! Owns: the output sink.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use backon::{BackoffBuilder, ExponentialBuilder};

use super::stage::{Routes, run_async, storage_failure};
use crate::health::Health;
use crate::log_throttle::LogThrottle;
use crate::messages::payload::ThumbnailResponse;
use crate::messages::pipeline::{Publish, Upload};
use crate::storage::output::OutputSink;
use crate::storage::output_fault::{OutputFault, output_fault};
use crate::storage::retry::{RetryConfig, with_retries};
use crate::telemetry::record::Stage;

pub struct Uploader {
    pub sink: Arc<OutputSink>,
    pub retry: RetryConfig,
    pub timeout: Duration,
    pub routes: Routes<Publish>,
    pub health: Arc<Health>,
}

/// One line per 15 s while the output cannot be written, whoever notices.
pub static OUTPUT_FAULTS: LogThrottle = LogThrottle::new(Duration::from_secs(15));

/// The log line of an operator fault on the output.
pub fn report_output_fault(output: &str, fault: &OutputFault, error: &dyn std::fmt::Display) {
    if let Some(held_back) = OUTPUT_FAULTS.allow() {
        tracing::error!(
            output,
            status = ?fault.status,
            fix = fault.fix,
            %error,
            held_back,
            "the output cannot be written; requests wait until it can: {}",
            fault.fix
        );
    }
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
        let health = self.health.clone();
        let (retry, timeout) = (self.retry.clone(), self.timeout);
        run_async(
            Stage::Upload,
            job,
            self.routes.clone(),
            move |job| async move {
                let mut waits = ExponentialBuilder::default()
                    .with_min_delay(Duration::from_secs(1))
                    .with_max_delay(Duration::from_secs(15))
                    .with_jitter()
                    .without_max_times()
                    .build();
                loop {
                    let (result, attempts) = with_retries(&retry, timeout, "upload", || {
                        sink.put(&job.object_name, png.clone())
                    })
                    .await;
                    let error = match result {
                        Ok(link) => {
                            health.set_output_blocked(false);
                            let response = ThumbnailResponse::new(&job.request, link, metadata);
                            return Ok(Publish { job, response });
                        }
                        Err(e) => e,
                    };
                    let Some(fault) = output_fault(&error) else {
                        return Err(storage_failure(&job, "upload", &error, attempts));
                    };
                    health.set_output_blocked(true);
                    report_output_fault(&sink.describe(), &fault, &error);
                    tokio::time::sleep(waits.next().unwrap_or(Duration::from_secs(15))).await;
                }
            },
        )
    }
}
