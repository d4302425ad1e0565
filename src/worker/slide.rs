//! The process that holds one slide: it plans the slide's ranged read, makes its
//! thumbnail, and is gone. The one place that turns a worker's end into a failure the
//! contract knows.
//!
//! Why one process per slide: a library that reads uninitialised or freed memory (an
//! OpenSlide JPEG 2000 path once painted heap contents into a thumbnail) can only ever
//! show bytes of the slide its process was given, since no process holds two.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::outcome::{self, Verdict};
use super::pool::WorkerPool;
use super::process::{Finish, WorkerProcess};
use super::protocol::{Request, Task};
use crate::error_kind::ErrorKind;
use crate::planning::{PlanAnswer, PlanTask};
use crate::slide::{Thumbnail, ThumbnailOptions};

/// Longest one planning round may take. Real slides plan in milliseconds (directories
/// and headers only); a round past this is a planning bomb.
pub const PLAN_DEADLINE: Duration = Duration::from_secs(20);

/// Workers found gone before a request reached them, replaced without counting as an
/// attempt, at most this many times per request.
const MAX_UNDELIVERED: u32 = 3;

/// A slide that did not become a thumbnail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct DecodeFailure {
    pub kind: ErrorKind,
    pub retryable: bool,
    pub message: String,
}

impl DecodeFailure {
    fn new(kind: ErrorKind, message: String) -> DecodeFailure {
        DecodeFailure {
            kind,
            retryable: kind.retryable(),
            message,
        }
    }
}

/// Told the pid of every process that holds the slide (a retry moves it to a new one).
pub type PidObserver = Box<dyn Fn(u32) + Send>;

/// One slide's worker process.
pub struct SlideWorker {
    process: Option<WorkerProcess>,
    pool: Arc<WorkerPool>,
    observer: Option<PidObserver>,
}

impl SlideWorker {
    pub(super) fn new(process: WorkerProcess, pool: Arc<WorkerPool>) -> SlideWorker {
        SlideWorker {
            process: Some(process),
            pool,
            observer: None,
        }
    }

    /// Reports the process's pid now, and the new one whenever a retry replaces it (a
    /// request's timeline names the process that made its thumbnail).
    pub fn observe_pid(&mut self, observer: impl Fn(u32) + Send + 'static) {
        observer(self.pid());
        self.observer = Some(Box::new(observer));
    }

    /// The process id (0 once it is gone), for the request's timeline.
    pub fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, WorkerProcess::pid)
    }

    /// One planning round.
    pub fn plan(&mut self, task: &PlanTask) -> Result<PlanAnswer, DecodeFailure> {
        let request = Request::Plan(task.clone());
        match self.run(&request, PLAN_DEADLINE)? {
            Finish::Planned(answer) => Ok(answer),
            _ => Err(DecodeFailure::new(
                ErrorKind::Internal,
                "the worker answered a plan with something else".into(),
            )),
        }
    }

    /// Makes the thumbnail of the slide at `path` with `threads` decoding threads; the
    /// process ends with it.
    pub fn thumbnail(
        mut self,
        path: &Path,
        options: &ThumbnailOptions,
        threads: usize,
    ) -> Result<Thumbnail, DecodeFailure> {
        let request = Request::Thumbnail(Task {
            path: path.to_path_buf(),
            options: options.clone(),
            threads,
        });
        let deadline = self.pool.settings().deadline;
        match self.run(&request, deadline)? {
            Finish::Done(thumbnail) => Ok(thumbnail),
            _ => Err(DecodeFailure::new(
                ErrorKind::Internal,
                "the worker answered a thumbnail with something else".into(),
            )),
        }
    }

    /// Runs `request`, judging a worker that stops under it. A `SIGKILL` nobody here sent
    /// is retried once on a fresh process (requests are idempotent: they read the local
    /// copies, which do not change). A worker that was gone before the request reached
    /// it (a kill from outside that hit the spares too) is replaced without counting as
    /// an attempt, a bounded number of times.
    fn run(&mut self, request: &Request, deadline: Duration) -> Result<Finish, DecodeFailure> {
        let cap = self.pool.settings().memory_cap_bytes;
        let mut attempt = 1;
        let mut undelivered = 0;
        loop {
            let process = self.process.as_mut().ok_or_else(|| {
                DecodeFailure::new(ErrorKind::Internal, "the worker process is gone".into())
            })?;
            let pid = process.pid();
            match process.run(request, deadline, cap) {
                Finish::Failed { kind, message } => return Err(DecodeFailure::new(kind, message)),
                Finish::Undelivered => {
                    self.process = None;
                    undelivered += 1;
                    if undelivered > MAX_UNDELIVERED {
                        return Err(DecodeFailure::new(
                            ErrorKind::Internal,
                            format!(
                                "{undelivered} worker processes in a row were gone before they got the slide; \
                                 check what kills them (the host's memory limits)"
                            ),
                        ));
                    }
                    self.replace()?;
                }
                Finish::Stopped {
                    ending,
                    peak_virtual_bytes,
                } => {
                    self.process = None;
                    let verdict = outcome::judge(ending, peak_virtual_bytes, cap);
                    crate::telemetry::record::worker_restart(verdict.restart_reason);
                    // The job's own failure line (with the kind and reason) is the
                    // warning; this one is about the process.
                    tracing::info!(
                        pid,
                        ?ending,
                        kind = %verdict.kind,
                        reason = verdict.restart_reason,
                        "worker process stopped while holding a slide"
                    );
                    if verdict.retry_once && attempt == 1 {
                        attempt += 1;
                        self.replace()?;
                        continue;
                    }
                    return Err(failure_of(verdict));
                }
                done => return Ok(done),
            }
        }
    }

    /// A fresh process takes the slide over.
    fn replace(&mut self) -> Result<(), DecodeFailure> {
        let fresh = self
            .pool
            .checkout()
            .map_err(|e| DecodeFailure::new(ErrorKind::Internal, e.to_string()))?;
        self.process = fresh.into_process();
        if let Some(observer) = &self.observer {
            observer(self.pid());
        }
        Ok(())
    }

    fn into_process(mut self) -> Option<WorkerProcess> {
        self.process.take()
    }
}

fn failure_of(verdict: Verdict) -> DecodeFailure {
    DecodeFailure {
        kind: verdict.kind,
        retryable: verdict.retryable,
        message: verdict.message,
    }
}

/// Logs, once per process, a sandbox that the kernel could not fully put in place.
pub(super) fn report_sandbox(sandbox: &str) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if !REPORTED.swap(true, Ordering::Relaxed) {
        if sandbox.contains("not ") || sandbox.contains("partial") {
            tracing::warn!(
                sandbox,
                "worker sandbox degraded: the kernel lacks a feature"
            );
        } else {
            tracing::info!(sandbox, "worker processes sandboxed");
        }
    }
}
