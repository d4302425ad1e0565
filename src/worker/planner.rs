//! The fetch's planner for one slide: its worker process, or (under `thumbnail.isolation
//! = "none"`, trusted input only) a blocking thread of the service.
//!
//! The worker is checked out at the first planning round and travels with the slide to
//! the decoder, so the process that parsed the slide's directories is the one that
//! decodes it, and no other slide ever reaches it. Worker I/O blocks, so every round
//! runs on a blocking thread: the actors' thread only awaits it.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::pool::WorkerPool;
use super::slide::{PLAN_DEADLINE, SlideWorker};
use crate::error_kind::ErrorKind;
use crate::planning::{PlanAnswer, PlanTask, plan_slide};
use crate::storage::fetch::{PlanFailure, Planner};

/// One slide's planner.
pub enum SlidePlanner {
    Worker {
        pool: Arc<WorkerPool>,
        worker: Arc<Mutex<Option<SlideWorker>>>,
    },
    InProcess,
}

impl SlidePlanner {
    /// Plans in a fresh worker from `pool`, or in this process without one.
    pub fn new(pool: Option<&Arc<WorkerPool>>) -> SlidePlanner {
        match pool {
            Some(pool) => SlidePlanner::Worker {
                pool: pool.clone(),
                worker: Arc::default(),
            },
            None => SlidePlanner::InProcess,
        }
    }

    /// The worker that planned the slide, to decode it too (none if no round ran).
    pub fn into_worker(self) -> Option<SlideWorker> {
        match self {
            SlidePlanner::Worker { worker, .. } => {
                worker.lock().unwrap_or_else(|e| e.into_inner()).take()
            }
            SlidePlanner::InProcess => None,
        }
    }

    /// The planning worker's process id, if one was checked out.
    pub fn pid(&self) -> Option<u32> {
        match self {
            SlidePlanner::Worker { worker, .. } => worker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(SlideWorker::pid),
            SlidePlanner::InProcess => None,
        }
    }
}

fn internal(message: String) -> PlanFailure {
    PlanFailure {
        kind: ErrorKind::Internal,
        retryable: true,
        message,
    }
}

impl Planner for SlidePlanner {
    fn plan(&self, task: PlanTask) -> BoxFuture<'_, Result<PlanAnswer, PlanFailure>> {
        Box::pin(async move {
            match self {
                SlidePlanner::Worker { pool, worker } => {
                    let (pool, worker) = (pool.clone(), worker.clone());
                    tokio::task::spawn_blocking(move || {
                        let mut slot = worker.lock().unwrap_or_else(|e| e.into_inner());
                        let slide = match slot.as_mut() {
                            Some(slide) => slide,
                            None => {
                                slot.insert(pool.checkout().map_err(|e| internal(e.to_string()))?)
                            }
                        };
                        slide.plan(&task).map_err(|f| PlanFailure {
                            kind: f.kind,
                            retryable: f.retryable,
                            message: f.message,
                        })
                    })
                    .await
                    .map_err(|e| internal(format!("the planning thread failed: {e}")))?
                }
                SlidePlanner::InProcess => {
                    let planning = tokio::task::spawn_blocking(move || plan_slide(&task));
                    match tokio::time::timeout(PLAN_DEADLINE, planning).await {
                        Ok(Ok(Ok(answer))) => Ok(answer),
                        Ok(Ok(Err(refusal))) => Err(PlanFailure {
                            kind: refusal.kind,
                            retryable: refusal.kind.retryable(),
                            message: refusal.message,
                        }),
                        Ok(Err(e)) => Err(internal(format!("the planner failed: {e}"))),
                        Err(_) => Err(PlanFailure {
                            kind: ErrorKind::Timeout,
                            retryable: false,
                            message: format!(
                                "planning the slide's read took longer than {} s",
                                PLAN_DEADLINE.as_secs()
                            ),
                        }),
                    }
                }
            }
        })
    }
}
