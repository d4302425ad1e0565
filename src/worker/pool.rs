//! Fresh worker processes, ready before they are needed.
//!
//! Every slide gets a process of its own that has never held another slide (see
//! [`super::slide`]), forked from the pool's [zygote](super::zygote). A fork and its
//! handshake take a fraction of a millisecond, but the zygote forks one child at a time,
//! so a spawner thread keeps `spares` workers forked and waiting; taking one is a queue
//! pop, and the spawner replaces it while the slide is fetched and decoded.
//!
//! The zygote is exec'd on the spawner thread, which lives as long as the pool:
//! `PR_SET_PDEATHSIG` fires when the *thread* that started a process exits, so a zygote
//! started from a short-lived blocking thread would be killed under its slides. A
//! zygote that dies (the OOM killer, an operator) is replaced there too. The CLI hands
//! the pool a zygote it forked from itself ([`super::zygote::forked`]); the pool takes
//! that one first, and execs any after it.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::process::{StartError, WorkerProcess, WorkerSettings};
use super::slide::SlideWorker;
use super::zygote::forked::Pending;
use super::zygote::link::Zygote;

/// How long a checkout waits for a worker before it fails.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed start, so a broken binary does not spin the spawner.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Hands out fresh worker processes. Dropping it stops the spawner and its spares.
pub struct WorkerPool {
    shared: Arc<Shared>,
}

struct Shared {
    settings: WorkerSettings,
    /// A zygote its starter already forked, taken by the spawner's first start.
    first: Mutex<Option<Pending>>,
    spares: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    ready: VecDeque<WorkerProcess>,
    /// Checkouts waiting for a worker (each one more to start).
    waiting: usize,
    /// Failed starts so far, and the last one's error.
    failures: u64,
    last_error: String,
    closed: bool,
    /// Checkouts still to come, when the caller knows them (a CLI run's slides): no
    /// spare is started past them, since a spare nobody takes is a fork, a handshake
    /// and a kill on cores the slides need. A checkout past them (a retry) still gets
    /// a worker, started for it as for any waiting checkout.
    expected: Option<usize>,
}

impl State {
    /// Workers the spawner keeps ready: the spares still useful, plus one for every
    /// waiting checkout.
    fn wanted(&self, spares: usize) -> usize {
        spares.min(self.expected.unwrap_or(usize::MAX)) + self.waiting
    }
}

impl WorkerPool {
    /// A pool keeping `spares` (at least one) workers started ahead of need.
    pub fn start(settings: WorkerSettings, spares: usize) -> Arc<WorkerPool> {
        Self::start_for(settings, spares, None)
    }

    /// [`WorkerPool::start`] for a known number of checkouts, `expected` (the slides of
    /// a CLI run): spares are started only for checkouts still to come.
    pub fn start_for(
        settings: WorkerSettings,
        spares: usize,
        expected: Option<usize>,
    ) -> Arc<WorkerPool> {
        Self::start_with(settings, spares, expected, None)
    }

    /// [`WorkerPool::start_for`], with `first` as its first zygote when given.
    pub fn start_with(
        settings: WorkerSettings,
        spares: usize,
        expected: Option<usize>,
        first: Option<Pending>,
    ) -> Arc<WorkerPool> {
        let shared = Arc::new(Shared {
            settings,
            first: Mutex::new(first),
            spares: spares.max(1),
            state: Mutex::new(State {
                expected,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let spawner = shared.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("wsi-worker-spawner".into())
            .spawn(move || spawner.run())
        {
            let mut state = shared.lock();
            state.failures += 1;
            state.last_error = format!("no spawner thread: {e}");
        }
        Arc::new(WorkerPool { shared })
    }

    pub fn settings(&self) -> &WorkerSettings {
        &self.shared.settings
    }

    /// Workers started and waiting to be checked out.
    pub fn ready(&self) -> usize {
        self.shared.lock().ready.len()
    }

    /// A fresh worker for one slide: a spare at once, or the next one started.
    pub fn checkout(self: &Arc<WorkerPool>) -> Result<SlideWorker, StartError> {
        let shared = &self.shared;
        let mut state = shared.lock();
        let failures_before = state.failures;
        // Counted before this checkout waits, so the spawner never sees it twice (as one
        // still to come and as one waiting).
        if let Some(left) = state.expected.as_mut() {
            *left = left.saturating_sub(1);
        }
        state.waiting += 1;
        shared.changed.notify_all();
        let deadline = std::time::Instant::now() + CHECKOUT_TIMEOUT;
        let outcome = loop {
            if let Some(process) = state.ready.pop_front() {
                if process.is_alive() {
                    break Ok(process);
                }
                // Died while it waited: never hand out a dead worker.
                tracing::info!(pid = process.pid(), "a spare worker process died; replaced");
                shared.changed.notify_all();
                continue;
            }
            if state.failures > failures_before {
                break Err(StartError::Handshake(state.last_error.clone()));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break Err(StartError::Handshake(format!(
                    "no worker process started within {} s",
                    CHECKOUT_TIMEOUT.as_secs()
                )));
            }
            state = shared
                .changed
                .wait_timeout(state, left)
                .map_or_else(|e| e.into_inner().0, |(s, _)| s);
        };
        state.waiting -= 1;
        shared.changed.notify_all();
        drop(state);
        outcome.map(|process| SlideWorker::new(process, self.clone()))
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.ready.clear();
        self.shared.changed.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The spawner: keeps [`State::wanted`] workers ready.
    fn run(&self) {
        let mut reported = false;
        let mut zygote: Option<Arc<Zygote>> = None;
        loop {
            let mut state = self.lock();
            while !state.closed && state.ready.len() >= state.wanted(self.spares) {
                state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.closed {
                return;
            }
            drop(state);
            let started = self.fork(&mut zygote);
            let mut state = self.lock();
            match started {
                Ok(process) => {
                    if !reported {
                        reported = true;
                        super::slide::report_sandbox(&process.sandbox);
                    }
                    tracing::trace!(pid = process.pid(), "worker process ready");
                    if state.closed {
                        return;
                    }
                    state.ready.push_back(process);
                    self.changed.notify_all();
                }
                Err(_) if state.closed => return,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a worker process");
                    zygote = None;
                    state.failures += 1;
                    state.last_error = e.to_string();
                    self.changed.notify_all();
                    drop(state);
                    std::thread::sleep(RESTART_PAUSE);
                }
            }
        }
    }

    /// A fresh worker, from the running zygote or, when that one is gone or its fork
    /// failed (it may be dying: its death reaches the board a moment after its
    /// children's), from a new one. Only a new zygote's failure is an error.
    fn fork(&self, zygote: &mut Option<Arc<Zygote>>) -> Result<WorkerProcess, StartError> {
        if let Some(running) = zygote.take() {
            match running.is_alive().then(|| running.fork()) {
                Some(Ok(worker)) => {
                    *zygote = Some(running);
                    return Ok(worker);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "a fork of the worker zygote failed; starting a new zygote");
                }
                None => tracing::warn!("the worker zygote died; starting a new one"),
            }
            // Dropped here: killed once the slides its children hold are done.
        }
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
        let fresh = match first.map(Pending::ready) {
            Some(Ok(forked)) => forked,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the forked worker zygote did not start; exec'ing one");
                Zygote::start(&self.settings)?
            }
            None => Zygote::start(&self.settings)?,
        };
        let forked = fresh.fork();
        *zygote = Some(fresh);
        forked
    }
}
