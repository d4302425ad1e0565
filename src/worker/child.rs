//! The worker's own side: a child the [zygote](super::zygote) forked, already limited
//! and sandboxed, says ready, then serves ONE slide on its socket: answers its planning
//! rounds, makes its thumbnail, and exits. A process never holds a second slide,
//! so no library bug can carry one slide's bytes into another's thumbnail.
//!
//! It uses the cores it is given (one under load): its thread pool is its own thread
//! plus one per further core, so the deadline the service enforces bounds the CPU a
//! slide can take, and N decoders use N cores. Under load no other thread runs: each
//! round is decoded where it is asked for, not handed to a pool thread and waited on
//! (measured: a third fewer context switches, and about 1.5 ms less wall per lone
//! CMU-1-Small-Region or 4x-pyramid CLI run).
//!
//! Decoding runs with a large stack (the main thread's, whose limit the zygote's start
//! raised, and the pool threads'): OpenSlide paints a missing tile from the level above, recursively,
//! so a legitimate slide with many levels needs more than the 2 MiB a thread gets by
//! default. A hostile one that recurses past even this costs only this process.

use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;

use super::protocol::{self, Reply, Request, Task};
use super::sandbox;
use crate::error_kind::ErrorKind;
use crate::slide::make_thumbnail;

/// Stack of every decoding thread: the pool threads reserve it (address space, counted
/// by the memory cap, but no memory until a deep recursion touches it); the main
/// thread's grows up to it.
pub const DECODE_STACK_BYTES: usize = 16 * 1024 * 1024;

/// The most threads a task may ask for (each reserves a decoding stack).
pub const MAX_DECODE_THREADS: usize = 64;

/// Serves one slide on `socket` (in a child the zygote just forked, already sandboxed
/// as `sandbox` says), then returns the process's exit code.
pub fn serve(socket: UnixStream, sandbox: &str) -> i32 {
    // What the process holds from outside, before it opens anything itself.
    let open_fds = open_descriptors();
    let Ok(writing) = socket.try_clone() else {
        return 1;
    };
    let mut out = BufWriter::new(writing);
    let ready = Reply::Ready {
        pid: std::process::id(),
        sandbox: sandbox.to_string(),
        environment: std::env::vars_os()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect(),
        open_fds,
    };
    if protocol::write_json(&mut out, &ready).is_err() {
        return 1;
    }
    let mut input = BufReader::new(socket);
    loop {
        let request: Request = match protocol::read_json(&mut input) {
            Ok(Some(request)) => request,
            Ok(None) => return 0,
            // The service closed its end (a spare it no longer needs, or its exit).
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return 0,
            Err(e) => {
                tracing::error!(error = %e, "unreadable request; worker exiting");
                return 1;
            }
        };
        if protocol::write_json(&mut out, &Reply::Accepted).is_err() {
            return 1;
        }
        let (reply, png, last) = match request {
            Request::Plan(task) => (plan(&task), None, false),
            Request::Thumbnail(task) => {
                decoding_threads(task.threads);
                let (reply, png) = decode(task);
                (reply, png, true)
            }
        };
        let written = protocol::write_json(&mut out, &reply).and_then(|()| match &png {
            Some(png) => protocol::write_frame(&mut out, png),
            None => Ok(()),
        });
        if written.is_err() {
            return 1;
        }
        if last {
            // One slide per process: the thumbnail was its last task.
            return 0;
        }
    }
}

/// The decoding threads, built for the slide's one thumbnail task (never in the zygote:
/// a fork carries no threads). Planning rounds use none.
fn decoding_threads(threads: usize) {
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.clamp(1, MAX_DECODE_THREADS))
        // The worker's own thread is one of the pool's: a worker under load decodes on
        // it alone, with no pool thread to hand each round to and wait for.
        .use_current_thread()
        .stack_size(DECODE_STACK_BYTES)
        .thread_name(|i| format!("wsi-worker-{i}"))
        .build_global()
    {
        tracing::warn!(error = %e, "worker thread pool not configured");
    }
}

/// One planning round, a panic included as an `internal` refusal.
fn plan(task: &crate::planning::PlanTask) -> Reply {
    match std::panic::catch_unwind(|| crate::planning::plan_slide(task)) {
        Ok(Ok(answer)) => Reply::Planned(answer),
        Ok(Err(refusal)) => Reply::Failed {
            kind: refusal.kind,
            message: refusal.message,
        },
        Err(panic) => Reply::Failed {
            kind: ErrorKind::Internal,
            message: format!(
                "the planner panicked: {}",
                crate::faults::panic_message(panic.as_ref())
            ),
        },
    }
}

/// `N -> target` for each open descriptor (the one listing them aside).
fn open_descriptors() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            let target = target.to_string_lossy();
            // The directory being listed is itself open.
            (!target.ends_with("/fd"))
                .then(|| format!("{} -> {target}", e.file_name().to_string_lossy()))
        })
        .collect()
}

/// The reply to a task, with the PNG when there is one. Runs on the main thread, whose
/// stack may grow to [`DECODE_STACK_BYTES`] (the service raises the zygote's
/// `RLIMIT_STACK` before exec; a fork inherits it).
fn decode(task: Task) -> (Reply, Option<Vec<u8>>) {
    let made = std::panic::catch_unwind(|| make_thumbnail(&task.path, &task.options));
    match made {
        Ok(Ok(mut thumb)) => {
            let png = std::mem::take(&mut thumb.png);
            // The pool `decoding_threads` built for this task: what the service asked.
            thumb.decode_threads = rayon::current_num_threads();
            (Reply::Done(Box::new(thumb)), Some(png))
        }
        Ok(Err(e)) => (
            Reply::Failed {
                kind: e.kind(),
                message: e.describe(),
            },
            None,
        ),
        Err(panic) => (
            Reply::Failed {
                kind: ErrorKind::Internal,
                message: format!(
                    "the decoder panicked: {}",
                    crate::faults::panic_message(panic.as_ref())
                ),
            },
            None,
        ),
    }
}

/// What the sandbox allows, tried from inside it (`wsi-thumbnail worker --probe`): the
/// tests run this to prove each layer holds on this kernel.
pub fn probe(writable_dir: &Path) -> ExitCode {
    let sandbox = sandbox::enter(writable_dir).summary;
    let outside = writable_dir
        .parent()
        .unwrap_or(Path::new("/"))
        .join("wsi-sandbox-probe-outside");
    let inside = writable_dir.join("wsi-sandbox-probe-inside");
    let report = serde_json::json!({
        "sandbox": sandbox,
        "tcp_socket": std::net::TcpListener::bind("127.0.0.1:0").is_ok(),
        "connect": std::net::TcpStream::connect("127.0.0.1:9").map(|_| ()).map_err(|e| e.raw_os_error()).err().flatten() != Some(libc::EPERM),
        "write_outside": std::fs::write(&outside, b"x").is_ok(),
        "write_inside": std::fs::write(&inside, b"x").is_ok(),
        "exec": std::process::Command::new("/bin/true").status().is_ok(),
    });
    let _ = std::fs::remove_file(&inside);
    let _ = std::fs::remove_file(&outside);
    let _ = writeln!(io::stdout(), "{report}");
    ExitCode::SUCCESS
}
