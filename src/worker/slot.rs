//! One decoder's worker: kept running between slides, replaced when it dies, and the
//! one place that turns a worker's end into a failure the contract knows.
//!
//! The decoder pool actor holds one slot per decoder thread; the CLI holds one slot.

use std::sync::atomic::{AtomicBool, Ordering};

use super::outcome::{self, Verdict};
use super::process::{Finish, StartError, WorkerProcess, WorkerSettings};
use super::protocol::Task;
use crate::error_kind::ErrorKind;
use crate::slide::{Thumbnail, ThumbnailOptions};

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

pub struct WorkerSlot {
    settings: WorkerSettings,
    worker: Option<WorkerProcess>,
}

impl WorkerSlot {
    /// A slot whose worker is started right away (a failure to start is logged and
    /// retried at the first slide).
    pub fn start(settings: WorkerSettings) -> WorkerSlot {
        let mut slot = WorkerSlot {
            settings,
            worker: None,
        };
        if let Err(e) = slot.ensure_running() {
            tracing::error!(error = %e, "cannot start a decoder process");
        }
        slot
    }

    fn ensure_running(&mut self) -> Result<&mut WorkerProcess, StartError> {
        let worker = match self.worker.take() {
            Some(worker) => worker,
            None => {
                let worker = WorkerProcess::start(&self.settings)?;
                report_sandbox(&worker.sandbox);
                tracing::debug!(pid = worker.pid(), "decoder process started");
                worker
            }
        };
        Ok(self.worker.insert(worker))
    }

    /// Makes the thumbnail of the slide at `path` in the worker.
    pub fn thumbnail(
        &mut self,
        path: &std::path::Path,
        options: &ThumbnailOptions,
    ) -> Result<Thumbnail, DecodeFailure> {
        let task = Task {
            path: path.to_path_buf(),
            options: options.clone(),
        };
        let settings = self.settings.clone();
        for attempt in 1..=2 {
            let worker = self.ensure_running().map_err(|e| DecodeFailure {
                kind: ErrorKind::Internal,
                retryable: true,
                message: e.to_string(),
            })?;
            let pid = worker.pid();
            match worker.run(&task, &settings) {
                Finish::Done(thumbnail) => return Ok(thumbnail),
                Finish::Failed { kind, message } => {
                    return Err(DecodeFailure::new(kind, message));
                }
                Finish::Stopped {
                    ending,
                    peak_virtual_bytes,
                } => {
                    self.worker = None;
                    let verdict =
                        outcome::judge(ending, peak_virtual_bytes, self.settings.memory_cap_bytes);
                    crate::telemetry::record::worker_restart(verdict.restart_reason);
                    // The job's own failure line (with the kind and reason) is the warning;
                    // this one is about the process.
                    tracing::info!(
                        pid,
                        ?ending,
                        kind = %verdict.kind,
                        reason = verdict.restart_reason,
                        "decoder process stopped while reading a slide; replacing it"
                    );
                    // The replacement starts now, so the next slide does not wait for it.
                    if let Err(e) = self.ensure_running() {
                        tracing::error!(error = %e, "cannot start a replacement decoder process");
                    }
                    if verdict.retry_once && attempt == 1 {
                        continue;
                    }
                    return Err(failure_of(verdict));
                }
            }
        }
        Err(DecodeFailure::new(
            ErrorKind::Internal,
            "the decoder process was lost twice".into(),
        ))
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
fn report_sandbox(sandbox: &str) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if !REPORTED.swap(true, Ordering::Relaxed) {
        if sandbox.contains("not ") || sandbox.contains("partial") {
            tracing::warn!(
                sandbox,
                "decoder sandbox degraded: the kernel lacks a feature"
            );
        } else {
            tracing::info!(sandbox, "decoder processes sandboxed");
        }
    }
}
