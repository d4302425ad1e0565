//! Fetcher: gets each slide onto local disk.
//!
//! Receives: `Fetch` from the tracker.
//! Sends: `Decode` to the decoder pool, or `Fail` to the publisher.
//! Owns: the fetch strategy (ranged reads or whole downloads, behind one trait).
//! Fetches run concurrently; the tracker's budgets bound how many.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::Instrument;

use super::decoder::Decoder;
use super::guard::{guarded, inject_fault};
use super::publisher::Publisher;
use crate::error_kind::ErrorKind;
use crate::messages::pipeline::{Decode, Fail, Failure, Fetch};
use crate::storage::fetch::SlideFetcher;
use crate::storage::retry::{RetryConfig, with_retries};

pub struct Fetcher {
    pub strategy: Arc<dyn SlideFetcher>,
    pub retry: RetryConfig,
    pub timeout: Duration,
    pub decoder: Addr<Decoder>,
    pub publisher: Addr<Publisher>,
}

impl Actor for Fetcher {
    type Context = Context<Self>;
}

impl Handler<Fetch> for Fetcher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, Fetch(job): Fetch, _: &mut Self::Context) -> Self::Result {
        let strategy = self.strategy.clone();
        let decoder = self.decoder.clone();
        let publisher = self.publisher.clone();
        let (retry, timeout) = (self.retry.clone(), self.timeout);
        let span = job.ticket.span.clone();
        let held = job.clone();
        let stage = async move {
            inject_fault("fetch", &job.request.slide_id);
            let started = Instant::now();
            let (result, attempts) =
                with_retries(&retry, timeout, "fetch", || strategy.fetch(&job.input)).await;
            match result {
                Ok(slide) => {
                    metrics::histogram!("wsi_thumbnail_stage_seconds", "stage" => "fetch")
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("wsi_thumbnail_slide_bytes_fetched_total")
                        .increment(slide.bytes_fetched);
                    metrics::counter!("wsi_thumbnail_fetch_path_total", "path" => slide.via.label())
                        .increment(1);
                    tracing::info!(
                        path = slide.via.label(),
                        bytes = slide.bytes_fetched,
                        "slide fetched"
                    );
                    decoder.do_send(Decode { job, slide });
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempts, "fetch failed");
                    let mut failure = Failure::of_job(&job, e.kind(), e.to_string());
                    failure.attempts = attempts;
                    publisher.do_send(Fail(failure));
                }
            }
        };
        let publisher = self.publisher.clone();
        Box::pin(
            async move {
                if let Err(message) = guarded("fetch", stage).await {
                    publisher.do_send(Fail(Failure::of_job(&held, ErrorKind::Internal, message)));
                }
            }
            .instrument(span),
        )
    }
}
