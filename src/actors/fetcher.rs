//! Fetcher: gets each slide onto local disk.
//!
//! Receives: `Fetch` from the tracker (and from `POST /process`).
//! Sends: `Decode` to the decoder pool, or `Fail` to the publisher.
//! Owns: the fetch strategy (ranged reads or whole downloads, behind one trait) and the
//! pool of fresh worker processes: a slide whose read must be planned gets its worker
//! here, and the worker travels with the slide to the decoder.
//! Fetches run concurrently; the tracker's budgets bound how many.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::stage::{Routes, run_async, storage_failure};
use crate::messages::pipeline::{Decode, Fetch};
use crate::storage::fetch::SlideFetcher;
use crate::storage::retry::{RetryConfig, with_retries};
use crate::telemetry::record::{self, Stage};
use crate::worker::{SlidePlanner, WorkerPool};

pub struct Fetcher {
    pub strategy: Arc<dyn SlideFetcher>,
    /// Workers for planning; none under `thumbnail.isolation = "none"`.
    pub workers: Option<Arc<WorkerPool>>,
    pub retry: RetryConfig,
    pub timeout: Duration,
    pub routes: Routes<Decode>,
}

impl Actor for Fetcher {
    type Context = Context<Self>;
}

impl Handler<Fetch> for Fetcher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, Fetch(job): Fetch, _: &mut Self::Context) -> Self::Result {
        let strategy = self.strategy.clone();
        let planner = SlidePlanner::new(self.workers.as_ref());
        let (retry, timeout) = (self.retry.clone(), self.timeout);
        run_async(
            Stage::Fetch,
            job,
            self.routes.clone(),
            move |job| async move {
                let (result, attempts) = with_retries(&retry, timeout, "fetch", || {
                    strategy.fetch(&job.input, &planner)
                })
                .await;
                if let Some(pid) = planner.pid() {
                    job.ticket.timeline.set_worker_pid(pid);
                }
                match result {
                    Ok(slide) => {
                        record::slide_fetched(slide.bytes_fetched, slide.via.label());
                        tracing::info!(
                            path = slide.via.label(),
                            bytes = slide.bytes_fetched,
                            "slide fetched"
                        );
                        let worker = planner.into_worker();
                        Ok(Decode { job, slide, worker })
                    }
                    Err(e) => Err(storage_failure(&job, "fetch", &e, attempts)),
                }
            },
        )
    }
}
