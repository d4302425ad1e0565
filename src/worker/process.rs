//! The service's side of one worker process (a child of the [zygote](super::zygote)):
//! its handshake, and one request run under watch: the reply, or the worker's end,
//! within the deadline and the resident-memory cap, both enforced from here, because a
//! worker stuck in a C loop cannot be trusted to stop itself.

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::outcome::Ending;
use super::protocol::{self, MAX_PNG_FRAME, Reply, Request};
use super::zygote::link::{START_TIMEOUT, Zygote};
use crate::error_kind::ErrorKind;
use crate::planning::PlanAnswer;
use crate::slide::Thumbnail;

pub use super::zygote::link::PASSED_ENV;

/// How often a busy worker's memory and deadline are checked.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);
/// How long a worker that closed its socket may take to be reported gone before it is
/// killed (it may still be flushing, or it may be a worker that hides).
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// How every worker of a pool is started.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The binary to run as `BINARY worker` (the service's own).
    pub program: PathBuf,
    /// Address-space cap and resident-memory watch, in bytes (0 = none).
    pub memory_cap_bytes: u64,
    /// One slide's open + read + reduce + encode.
    pub deadline: Duration,
    /// The one directory a worker may write to (its sandbox allows nothing else).
    pub writable_dir: PathBuf,
    /// Log lines as JSON (the service's `log.json`).
    pub log_json: bool,
}

impl WorkerSettings {
    pub fn new(memory_mb: u64, deadline: Duration, writable_dir: PathBuf) -> WorkerSettings {
        WorkerSettings {
            program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("wsi-thumbnail")),
            memory_cap_bytes: memory_mb.saturating_mul(1024 * 1024),
            deadline,
            writable_dir,
            log_json: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start a decoder process ({program}): {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the decoder process did not start properly: {0}")]
    Handshake(String),
}

/// How a request ended.
pub enum Finish {
    Done(Thumbnail),
    Planned(PlanAnswer),
    /// The engine refused the slide (a typed error from inside the worker).
    Failed {
        kind: ErrorKind,
        message: String,
    },
    /// The worker was gone before the request reached it (killed while it waited): the
    /// request did nothing, so it is no attempt at the slide.
    Undelivered,
    /// The worker stopped (or was stopped) while holding the slide; it is gone.
    Stopped {
        ending: Ending,
        peak_virtual_bytes: u64,
    },
}

enum Incoming {
    Reply(Reply, Option<Vec<u8>>),
    Broken(String),
}

/// One running worker process.
pub struct WorkerProcess {
    pid: u32,
    socket: UnixStream,
    incoming: Receiver<Incoming>,
    zygote: Arc<Zygote>,
    /// Its end was reported and taken off the zygote's board.
    reaped: bool,
    /// The sandbox the worker reported at start-up.
    pub sandbox: String,
    /// The names of the worker's environment variables, as it reported them.
    pub environment: Vec<String>,
    /// The worker's open descriptors at start-up (`N -> target`): `/dev/null` as stdin,
    /// stderr as descriptors 1 and 2, and its slide's socket, nothing of the service's.
    pub open_fds: Vec<String>,
}

impl WorkerProcess {
    /// Waits for the `Ready` of a child just forked with `socket` as its slide socket.
    pub(super) fn handshake(
        socket: UnixStream,
        zygote: Arc<Zygote>,
    ) -> Result<WorkerProcess, StartError> {
        let reading = socket
            .try_clone()
            .map_err(|e| StartError::Handshake(format!("no slide socket: {e}")))?;
        let (tx, incoming) = mpsc::channel();
        std::thread::Builder::new()
            .name("wsi-worker-reader".into())
            .spawn(move || read_replies(BufReader::new(reading), tx))
            .map_err(|e| StartError::Handshake(format!("no reader thread: {e}")))?;
        let first = incoming.recv_timeout(START_TIMEOUT);
        let (pid, sandbox, environment, open_fds) = match first {
            Ok(Incoming::Reply(
                Reply::Ready {
                    pid,
                    sandbox,
                    environment,
                    open_fds,
                },
                _,
            )) if pid != 0 => (pid, sandbox, environment, open_fds),
            Ok(Incoming::Broken(why)) => {
                return Err(StartError::Handshake(format!("the worker ended: {why}")));
            }
            Ok(Incoming::Reply(..)) => {
                return Err(StartError::Handshake("unexpected first frame".into()));
            }
            // A child that does not answer is dropped with its socket; with nothing to
            // read it exits on its own, and the zygote reaps it.
            Err(_) => {
                return Err(StartError::Handshake(format!(
                    "no answer within {} s",
                    START_TIMEOUT.as_secs()
                )));
            }
        };
        Ok(WorkerProcess {
            pid,
            socket,
            incoming,
            zygote,
            reaped: false,
            sandbox,
            environment,
            open_fds,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process still runs (a spare may have been killed while it waited:
    /// the OOM killer, an operator).
    pub fn is_alive(&self) -> bool {
        self.zygote.child_alive(self.pid)
    }

    /// Runs one request to its end within `deadline`. After `Finish::Stopped` the worker
    /// is dead.
    pub fn run(&mut self, request: &Request, deadline: Duration, memory_cap: u64) -> Finish {
        if let Err(e) = protocol::write_json(&mut self.socket, request) {
            tracing::info!(pid = self.pid, error = %e, "a worker was gone before it got the request");
            let _ = self.stopped(None, 0);
            return Finish::Undelivered;
        }
        let started = Instant::now();
        let mut peak_virtual = 0;
        // Until the worker says it took the request, its end is not the slide's doing.
        let mut accepted = false;
        loop {
            match self.incoming.recv_timeout(WATCH_INTERVAL) {
                Ok(Incoming::Reply(Reply::Accepted, _)) if !accepted => accepted = true,
                Ok(Incoming::Reply(Reply::Done(_), None))
                | Ok(Incoming::Reply(Reply::Ready { .. }, _))
                | Ok(Incoming::Reply(Reply::Accepted, _)) => {
                    self.stop();
                    return Finish::Stopped {
                        ending: Ending::Protocol,
                        peak_virtual_bytes: peak_virtual,
                    };
                }
                Ok(Incoming::Reply(Reply::Done(mut thumbnail), Some(png))) => {
                    thumbnail.png = png;
                    return Finish::Done(*thumbnail);
                }
                Ok(Incoming::Reply(Reply::Failed { kind, message }, _)) => {
                    return Finish::Failed { kind, message };
                }
                Ok(Incoming::Reply(Reply::Planned(answer), _)) => {
                    return Finish::Planned(answer);
                }
                Ok(Incoming::Broken(_)) | Err(RecvTimeoutError::Disconnected) if !accepted => {
                    tracing::info!(
                        pid = self.pid,
                        "a worker was gone before it took the request"
                    );
                    let _ = self.stopped(None, 0);
                    return Finish::Undelivered;
                }
                Ok(Incoming::Broken(why)) => {
                    tracing::debug!(reason = %why, "decoder process output ended");
                    return self.stopped(None, peak_virtual);
                }
                Err(RecvTimeoutError::Disconnected) => return self.stopped(None, peak_virtual),
                Err(RecvTimeoutError::Timeout) => {
                    let (virt, resident) = memory_of(self.pid);
                    peak_virtual = peak_virtual.max(virt);
                    let cap = memory_cap;
                    if cap > 0 && resident > cap {
                        return self.stopped(
                            Some(Ending::Memory {
                                resident_bytes: resident,
                            }),
                            peak_virtual,
                        );
                    }
                    let elapsed = started.elapsed();
                    if elapsed > deadline {
                        return self.stopped(Some(Ending::Deadline(elapsed)), peak_virtual);
                    }
                }
            }
        }
    }

    /// Kills the worker if `ours` says why, waits for the zygote's report of its end, and
    /// says how it ended.
    fn stopped(&mut self, ours: Option<Ending>, peak_virtual_bytes: u64) -> Finish {
        if ours.is_some() {
            self.zygote.kill(self.pid);
        }
        let mut reported = self.zygote.wait_exit(self.pid, EXIT_GRACE);
        if reported.is_none() {
            // Its socket closed but it runs on: not a worker we can trust to finish.
            self.zygote.kill(self.pid);
            reported = self.zygote.wait_exit(self.pid, START_TIMEOUT);
        }
        self.reaped = reported.is_some();
        let ending = ours.or(reported).unwrap_or(Ending::Protocol);
        Finish::Stopped {
            ending,
            peak_virtual_bytes,
        }
    }

    /// Kills the worker (the zygote reaps it).
    pub fn stop(&mut self) {
        self.zygote.kill(self.pid);
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if !self.reaped {
            self.zygote.kill(self.pid);
            self.zygote.forget(self.pid);
        }
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// Forwards the worker's frames to the waiting decoder thread until its stdout closes.
fn read_replies(mut out: impl std::io::Read, tx: mpsc::Sender<Incoming>) {
    loop {
        let reply = match protocol::read_json::<Reply>(&mut out) {
            Ok(Some(reply)) => reply,
            Ok(None) => {
                let _ = tx.send(Incoming::Broken("closed".into()));
                return;
            }
            Err(e) => {
                let _ = tx.send(Incoming::Broken(e.to_string()));
                return;
            }
        };
        let png = if matches!(reply, Reply::Done(_)) {
            match protocol::read_frame(&mut out, MAX_PNG_FRAME) {
                Ok(Some(png)) => Some(png),
                Ok(None) => None,
                Err(e) => {
                    let _ = tx.send(Incoming::Broken(e.to_string()));
                    return;
                }
            }
        } else {
            None
        };
        if tx.send(Incoming::Reply(reply, png)).is_err() {
            return;
        }
    }
}

/// Address-space size and resident set of a process, in bytes (zeros once it is gone).
fn memory_of(pid: u32) -> (u64, u64) {
    let Ok(statm) = std::fs::read_to_string(format!("/proc/{pid}/statm")) else {
        return (0, 0);
    };
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let mut fields = statm
        .split_whitespace()
        .map(|f| f.parse::<u64>().unwrap_or(0));
    let size = fields.next().unwrap_or(0);
    let resident = fields.next().unwrap_or(0);
    (size * page, resident * page)
}
