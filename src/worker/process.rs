//! The service's side of one worker process: start it with its limits, hand it a slide,
//! and wait for the reply while watching its deadline and its memory from outside.
//!
//! Limits are set between `fork` and `exec` (so they hold before the worker runs a line
//! of slide code): the address space (`RLIMIT_AS` = `thumbnail.worker_memory_mb`), no
//! core dumps, death with the thread that started it (`PR_SET_PDEATHSIG`), so a
//! service that dies never leaves workers behind, no inherited descriptors and an
//! environment with nothing secret in it. The deadline and the resident-memory
//! watch are enforced from here, because a worker stuck in a C loop cannot be trusted
//! to stop itself.

use std::io::BufReader;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::outcome::Ending;
use super::protocol::{self, MAX_PNG_FRAME, Reply, Request};
use crate::error_kind::ErrorKind;
use crate::planning::PlanAnswer;
use crate::slide::Thumbnail;

/// The only environment variables a worker gets: locale, logging, paths, and the
/// fault-injection switch the tests use.
pub const PASSED_ENV: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
    crate::faults::INJECT_PANIC_ENV,
];

/// How often a busy worker's memory and deadline are checked.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);
/// How long a new worker may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

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
    child: Child,
    stdin: ChildStdin,
    incoming: Receiver<Incoming>,
    /// The sandbox the worker reported at start-up.
    pub sandbox: String,
    /// The names of the worker's environment variables, as it reported them.
    pub environment: Vec<String>,
    /// The worker's open descriptors at start-up (`N -> target`): stdin, its protocol
    /// stdout, stderr and descriptor 1 (stderr again), nothing of the service's.
    pub open_fds: Vec<String>,
}

impl WorkerProcess {
    /// Starts a worker and waits for its `Ready`.
    pub fn start(settings: &WorkerSettings) -> Result<WorkerProcess, StartError> {
        let mut command = Command::new(&settings.program);
        command
            .arg("worker")
            .arg("--writable-dir")
            .arg(&settings.writable_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Nothing of the service's environment (credentials, SASL settings) is the
            // worker's business: a compromised worker could hide it in a thumbnail.
            .env_clear()
            .envs(
                std::env::vars_os()
                    .filter(|(k, _)| PASSED_ENV.iter().any(|p| k.to_str() == Some(*p))),
            )
            // Fewer malloc arenas (each reserves 64 MiB of address space, which would eat
            // into RLIMIT_AS without holding slide data). A worker is fresh for every
            // slide, so every buffer it touches is faulted in afresh: malloc asks for
            // transparent huge pages (`hugetlb=1`, madvise mode), so a 20 MB level costs
            // ten faults instead of five thousand; freed buffers stay on the heap for the
            // slide's next stage (the thresholds).
            .env("MALLOC_ARENA_MAX", "2")
            .env(
                "GLIBC_TUNABLES",
                "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432:\
                 glibc.malloc.trim_threshold=134217728",
            );
        if settings.log_json {
            command.arg("--log-json");
        }
        let cap = settings.memory_cap_bytes;
        // SAFETY: only async-signal-safe calls (setrlimit, prctl) between fork and exec.
        unsafe {
            command.pre_exec(move || apply_limits(cap));
        }
        let mut child = command.spawn().map_err(|source| StartError::Spawn {
            program: settings.program.display().to_string(),
            source,
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartError::Handshake("no pipes to the worker".into()));
        };
        let (tx, incoming) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name(format!("wsi-worker-{}", child.id()))
            .spawn(move || read_replies(BufReader::new(stdout), tx));
        if let Err(e) = reader {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartError::Handshake(format!("no reader thread: {e}")));
        }
        let mut worker = WorkerProcess {
            child,
            stdin,
            incoming,
            sandbox: String::new(),
            environment: Vec::new(),
            open_fds: Vec::new(),
        };
        match worker.incoming.recv_timeout(START_TIMEOUT) {
            Ok(Incoming::Reply(
                Reply::Ready {
                    sandbox,
                    environment,
                    open_fds,
                },
                _,
            )) => {
                worker.sandbox = sandbox;
                worker.environment = environment;
                worker.open_fds = open_fds;
                Ok(worker)
            }
            Ok(Incoming::Broken(why)) => {
                worker.stop();
                Err(StartError::Handshake(why))
            }
            Ok(Incoming::Reply(..)) => {
                worker.stop();
                Err(StartError::Handshake("unexpected first frame".into()))
            }
            Err(_) => {
                worker.stop();
                Err(StartError::Handshake("no answer within 30 s".into()))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs (a spare may have been killed while it waited:
    /// the OOM killer, an operator).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs one request to its end within `deadline`. After `Finish::Stopped` the worker
    /// is dead.
    pub fn run(&mut self, request: &Request, deadline: Duration, memory_cap: u64) -> Finish {
        if let Err(e) = protocol::write_json(&mut self.stdin, request) {
            tracing::warn!(error = %e, "cannot hand the slide to the decoder process");
            return self.stopped(None, 0);
        }
        let started = Instant::now();
        let mut peak_virtual = 0;
        loop {
            match self.incoming.recv_timeout(WATCH_INTERVAL) {
                Ok(Incoming::Reply(Reply::Done(_), None))
                | Ok(Incoming::Reply(Reply::Ready { .. }, _)) => {
                    self.stop();
                    return Finish::Stopped {
                        ending: Ending::Protocol,
                        peak_virtual_bytes: peak_virtual,
                    };
                }
                Ok(Incoming::Reply(Reply::Done(mut thumbnail), Some(png))) => {
                    thumbnail.png = png;
                    return Finish::Done(thumbnail);
                }
                Ok(Incoming::Reply(Reply::Failed { kind, message }, _)) => {
                    return Finish::Failed { kind, message };
                }
                Ok(Incoming::Reply(Reply::Planned(answer), _)) => {
                    return Finish::Planned(answer);
                }
                Ok(Incoming::Broken(why)) => {
                    tracing::debug!(reason = %why, "decoder process output ended");
                    return self.stopped(None, peak_virtual);
                }
                Err(RecvTimeoutError::Disconnected) => return self.stopped(None, peak_virtual),
                Err(RecvTimeoutError::Timeout) => {
                    let (virt, resident) = memory_of(self.child.id());
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

    /// Kills the worker if `ours` says why, reaps it, and reports how it ended.
    fn stopped(&mut self, ours: Option<Ending>, peak_virtual_bytes: u64) -> Finish {
        if ours.is_some() {
            let _ = self.child.kill();
        }
        let status = self.child.wait();
        let ending = ours.unwrap_or_else(|| match status {
            Ok(status) => ending_of(status),
            Err(_) => Ending::Protocol,
        });
        Finish::Stopped {
            ending,
            peak_virtual_bytes,
        }
    }

    /// Kills and reaps the worker.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ending_of(status: ExitStatus) -> Ending {
    match (status.signal(), status.code()) {
        (Some(signal), _) => Ending::Signal(signal),
        (None, Some(code)) => Ending::Exit(code),
        (None, None) => Ending::Protocol,
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

/// Runs in the child between fork and exec: async-signal-safe calls only.
fn apply_limits(memory_cap_bytes: u64) -> std::io::Result<()> {
    let set = |resource, value: u64| {
        let limit = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the struct we pass and nothing else.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    set(libc::RLIMIT_CORE, 0)?;
    // The worker decodes on its main thread, whose stack grows up to this.
    set(libc::RLIMIT_STACK, super::child::DECODE_STACK_BYTES as u64)?;
    if memory_cap_bytes > 0 {
        set(libc::RLIMIT_AS, memory_cap_bytes)?;
    }
    // SAFETY: prctl and close_range with integer arguments. Descriptors the service
    // holds (broker sockets, files) must not reach the worker even where a library
    // opened them without close-on-exec; stdio is already in place at this point.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
    Ok(())
}
