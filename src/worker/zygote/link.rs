//! The service's side of a zygote: exec it with its limits, fork workers from it, stop
//! them, and learn how each one ended.
//!
//! Limits are set between `fork` and `exec` (so they hold before the zygote runs a line
//! of our code, and every child inherits them): the address space (`RLIMIT_AS` =
//! `thumbnail.worker_memory_mb`; the zygote itself stays far below it), no core dumps,
//! the decoding stack, death with the thread that started it (`PR_SET_PDEATHSIG`: a
//! service that dies never leaves a zygote or its children behind), no inherited
//! descriptors and an environment with nothing secret in it.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command as Exec, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{Command, Event, receive, send};
use crate::worker::outcome::Ending;
use crate::worker::process::{StartError, WorkerProcess, WorkerSettings};

/// The only environment variables a zygote (and so a worker) gets: locale, logging,
/// paths, and the fault-injection switch the tests use.
pub const PASSED_ENV: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
    crate::faults::INJECT_PANIC_ENV,
];

/// The variables the zygote is given on top of [`PASSED_ENV`].
pub const SET_ENV: &[(&str, &str)] = &[
    // Every symbol bound at start-up, once in the zygote, instead of lazily in every
    // child on first call.
    ("LD_BIND_NOW", "1"),
    // One malloc arena, the main one, for every thread. A worker decodes on one core
    // under load; a lone slide's decoding threads (`worker::cores`) allocate little once
    // their readers' buffers are grown, so they rarely contend for it. And only the main
    // arena grows in huge-page steps:
    // a thread arena (a 64 MiB reservation that would also eat into RLIMIT_AS) faults
    // its memory in 4 KiB pages, which measured 5,000 faults and about 25 ms of CPU
    // per CMU-1-Small-Region thumbnail in a fresh child, a quarter of its cost.
    ("MALLOC_ARENA_MAX", "1"),
    // Every child starts with an untouched heap, so every buffer it uses is faulted in
    // afresh: malloc asks for transparent huge pages (`hugetlb=1`, madvise mode); freed
    // buffers stay on the heap for the slide's next stage (the thresholds).
    (
        "GLIBC_TUNABLES",
        "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432:\
         glibc.malloc.trim_threshold=134217728",
    ),
];

/// The thresholds of [`SET_ENV`]'s `GLIBC_TUNABLES`, for a zygote that was forked, not
/// exec'd, and so sets them with `mallopt` ([`super::forked`]).
pub(super) const MMAP_THRESHOLD_BYTES: usize = 32 << 20;
pub(super) const TRIM_THRESHOLD_BYTES: usize = 128 << 20;

/// How long a zygote, or a child, may take to say it is ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One running zygote. Dropping it closes the control socket: the zygote kills its
/// children and exits.
pub struct Zygote {
    process: Mutex<Handle>,
    control: OwnedFd,
    board: Arc<Board>,
    /// The sandbox the zygote (and so every child) is in.
    pub sandbox: String,
}

/// Children's ends, as the zygote reports them.
#[derive(Default)]
struct Board {
    state: Mutex<BoardState>,
    changed: Condvar,
}

#[derive(Default)]
struct BoardState {
    ended: HashMap<u32, Ending>,
    /// Children nobody will ask about (dropped before they ended): their reports are
    /// discarded, so the board does not grow.
    forgotten: HashSet<u32>,
    /// The zygote is gone (its children die with it).
    closed: bool,
}

/// The zygote's process, as the process that started it holds it: a `Child` when it was
/// exec'd, a bare pid when this process forked it ([`super::forked`]).
pub(super) enum Handle {
    Exec(Child),
    Forked { pid: Pid, reaped: bool },
}

impl Handle {
    fn id(&self) -> u32 {
        match self {
            Handle::Exec(child) => child.id(),
            Handle::Forked { pid, .. } => pid.as_raw() as u32,
        }
    }

    fn running(&mut self) -> bool {
        match self {
            Handle::Exec(child) => matches!(child.try_wait(), Ok(None)),
            Handle::Forked { reaped: true, .. } => false,
            Handle::Forked { pid, reaped } => {
                let alive = matches!(
                    waitpid(*pid, Some(WaitPidFlag::WNOHANG)),
                    Ok(WaitStatus::StillAlive)
                );
                // Reaped (or not ours any more): its pid is never signalled again.
                *reaped = !alive;
                alive
            }
        }
    }

    /// Kills the zygote (its children die with it) and reaps it.
    pub(super) fn stop(&mut self) {
        match self {
            Handle::Exec(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Handle::Forked { reaped: true, .. } => {}
            Handle::Forked { pid, reaped } => {
                let _ = kill(*pid, Signal::SIGKILL);
                let _ = waitpid(*pid, None);
                *reaped = true;
            }
        }
    }
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Zygote {
    /// Execs a zygote and waits for its `Ready`.
    pub fn start(settings: &WorkerSettings) -> Result<Arc<Zygote>, StartError> {
        let (ours, theirs) = control_pair()?;
        let mut exec = Exec::new(&settings.program);
        exec.arg("worker")
            .arg("--writable-dir")
            .arg(&settings.writable_dir)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Nothing of the service's environment (credentials, SASL settings) is the
            // worker's business: a compromised worker could hide it in a thumbnail.
            .env_clear()
            .envs(
                std::env::vars_os()
                    .filter(|(k, _)| PASSED_ENV.iter().any(|p| k.to_str() == Some(*p))),
            )
            .envs(SET_ENV.iter().copied());
        if settings.log_json {
            exec.arg("--log-json");
        }
        let cap = settings.memory_cap_bytes;
        // SAFETY: only async-signal-safe calls (setrlimit, prctl) between fork and exec.
        unsafe {
            exec.pre_exec(move || apply_limits(cap));
        }
        let child = exec.spawn().map_err(|source| StartError::Spawn {
            program: settings.program.display().to_string(),
            source,
        })?;
        Zygote::connect(Handle::Exec(child), ours)
    }

    /// Waits for the `Ready` of a zygote just started as `process`, whose control socket's
    /// other end is `control`, and starts reading its reports.
    pub(super) fn connect(
        mut process: Handle,
        control: OwnedFd,
    ) -> Result<Arc<Zygote>, StartError> {
        let sandbox = match wait_ready(&control) {
            Ok(sandbox) => sandbox,
            Err(why) => {
                process.stop();
                return Err(StartError::Handshake(why));
            }
        };
        let board = Arc::new(Board::default());
        let reader = control.try_clone().and_then(|reading| {
            let board = board.clone();
            std::thread::Builder::new()
                .name(format!("wsi-zygote-{}", process.id()))
                .spawn(move || read_events(reading, board))
        });
        if let Err(e) = reader {
            process.stop();
            return Err(StartError::Handshake(format!("no reader thread: {e}")));
        }
        tracing::debug!(pid = process.id(), "zygote ready");
        Ok(Arc::new(Zygote {
            process: Mutex::new(process),
            control,
            board,
            sandbox,
        }))
    }

    /// A fresh child for one slide, handshake done.
    pub fn fork(self: &Arc<Zygote>) -> Result<WorkerProcess, StartError> {
        let (ours, theirs) = UnixStream::pair()
            .map_err(|e| StartError::Handshake(format!("no slide socket: {e}")))?;
        send(self.control.as_fd(), &Command::Fork, Some(theirs.as_fd()))
            .map_err(|e| StartError::Handshake(format!("the zygote is gone: {e}")))?;
        drop(theirs);
        WorkerProcess::handshake(ours, self.clone())
    }

    /// Whether the zygote still runs (and can fork).
    pub fn is_alive(&self) -> bool {
        !self.board.lock().closed
            && self
                .process
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .running()
    }

    /// Asks the zygote to kill `pid`, if it is still its unreaped child.
    pub fn kill(&self, pid: u32) {
        let _ = send(self.control.as_fd(), &Command::Kill { pid }, None);
    }

    /// Whether child `pid` is still running.
    pub fn child_alive(&self, pid: u32) -> bool {
        let state = self.board.lock();
        !state.closed && !state.ended.contains_key(&pid)
    }

    /// How child `pid` ended, waiting up to `timeout` for the zygote's report. A child of
    /// a zygote that is gone was killed with it (`PR_SET_PDEATHSIG`).
    pub fn wait_exit(&self, pid: u32, timeout: Duration) -> Option<Ending> {
        let deadline = Instant::now() + timeout;
        let mut state = self.board.lock();
        loop {
            if let Some(ending) = state.ended.remove(&pid) {
                return Some(ending);
            }
            if state.closed {
                return Some(Ending::Signal(libc::SIGKILL));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self
                .board
                .changed
                .wait_timeout(state, left)
                .map_or_else(|e| e.into_inner().0, |(s, _)| s);
        }
    }

    /// Nobody will ask how `pid` ended: drop its report now or when it comes.
    pub fn forget(&self, pid: u32) {
        let mut state = self.board.lock();
        if state.ended.remove(&pid).is_none() && !state.closed {
            state.forgotten.insert(pid);
        }
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // Closing the control socket ends the zygote; kill it too, in case it hangs.
        self.process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stop();
    }
}

fn wait_ready(control: &OwnedFd) -> Result<String, String> {
    let mut fds = [nix::poll::PollFd::new(
        control.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let timeout =
        nix::poll::PollTimeout::try_from(START_TIMEOUT).unwrap_or(nix::poll::PollTimeout::MAX);
    match nix::poll::poll(&mut fds, timeout) {
        Ok(0) => {
            return Err(format!(
                "the zygote did not answer within {} s",
                START_TIMEOUT.as_secs()
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(format!("waiting for the zygote: {e}")),
    }
    match receive::<Event>(control.as_fd()) {
        Ok(Some((Event::Ready { sandbox, layers }, _))) => {
            for (layer, enforced) in layers {
                crate::telemetry::record::sandbox_enforced(layer, enforced);
            }
            Ok(sandbox)
        }
        Ok(Some((other, _))) => Err(format!("unexpected first message {other:?}")),
        Ok(None) => Err("the zygote exited at start-up".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Files the zygote's reports on the board until it is gone.
fn read_events(control: OwnedFd, board: Arc<Board>) {
    loop {
        match receive::<Event>(control.as_fd()) {
            Ok(Some((Event::Exited { pid, code, signal }, _))) => {
                let ending = match (signal, code) {
                    (Some(signal), _) => Ending::Signal(signal),
                    (None, Some(code)) => Ending::Exit(code),
                    (None, None) => Ending::Protocol,
                };
                let mut state = board.lock();
                if !state.forgotten.remove(&pid) {
                    state.ended.insert(pid, ending);
                    board.changed.notify_all();
                }
            }
            Ok(Some((Event::ForkFailed { error }, _))) => {
                tracing::warn!(error, "the zygote could not fork a worker");
            }
            Ok(Some((Event::Ready { .. }, _))) => {}
            Ok(None) | Err(_) => {
                let mut state = board.lock();
                state.closed = true;
                state.ended.clear();
                state.forgotten.clear();
                board.changed.notify_all();
                return;
            }
        }
    }
}

/// A zygote's control socket pair: `SOCK_SEQPACKET`, so messages keep their boundaries.
pub(super) fn control_pair() -> Result<(OwnedFd, OwnedFd), StartError> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| StartError::Handshake(format!("no control socket: {e}")))
}

/// Runs in the zygote between fork and exec (or in a forked zygote before anything
/// else): async-signal-safe calls only.
pub(super) fn apply_limits(memory_cap_bytes: u64) -> std::io::Result<()> {
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
    // A child decodes on its main thread (the zygote's), whose stack grows up to this.
    set(
        libc::RLIMIT_STACK,
        crate::worker::child::DECODE_STACK_BYTES as u64,
    )?;
    if memory_cap_bytes > 0 {
        set(libc::RLIMIT_AS, memory_cap_bytes)?;
    }
    // SAFETY: prctl and close_range with integer arguments. Descriptors the service
    // holds (broker sockets, files) must not reach the zygote even where a library
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
