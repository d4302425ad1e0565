//! A zygote forked from the CLI itself instead of exec'd: for a command that makes a
//! few thumbnails and exits, the zygote's own start (the loader binding some 6,500
//! symbols of fifty libraries, the runtime, the sandbox) was a tenth of a run.
//!
//! The CLI forks it first thing, while it has one thread, and the child is made
//! what an exec'd zygote starts as ([`super::link`]) in all that limits it, before it runs
//! the zygote's loop:
//! - its control socket as stdin and `/dev/null` as stdout;
//! - the same limits (address space, no core dumps, the decoding stack, death with the
//!   thread that forked it) and no descriptor from 3 up;
//! - only the allowed environment ([`PASSED_ENV`]). Every other variable's bytes are
//!   overwritten where they lie, not only unlinked, since a worker can read its own
//!   memory and `/proc/self/environ` shows that block;
//! - malloc's arena and thresholds set with `mallopt`, as the exec'd zygote's
//!   `GLIBC_TUNABLES` sets them.
//!
//! Where it differs from an exec'd zygote, none of it a limit:
//! - no eager symbol binding (`LD_BIND_NOW`: a worker binds the few hundred functions it
//!   calls on first use) and no malloc huge-page hint (`glibc.malloc.hugetlb` has no
//!   `mallopt`; it measured no difference either way);
//! - it keeps what the CLI holds in memory: the libraries its loader was told to load
//!   (`LD_PRELOAD`, `LD_LIBRARY_PATH`: the user's own choice for their own run), its log
//!   filter, and its arguments (the run's slide and output paths, no slide's bytes). So
//!   the CLI must not read a secret before it forks: it reads `RUST_LOG` and `TMPDIR`.
//!
//! A process that already runs a second thread cannot fork a sound zygote (a lock held
//! by another thread stays held in the child), so [`fork`] refuses and the caller execs
//! one as the service does.

use std::ffi::CStr;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::Arc;

use nix::unistd::{ForkResult, Pid, getpid, getppid};

use super::link::{
    Handle, MMAP_THRESHOLD_BYTES, PASSED_ENV, TRIM_THRESHOLD_BYTES, Zygote, apply_limits,
    control_pair,
};
use crate::worker::process::{StartError, WorkerSettings};

/// A zygote forked and not yet heard from: [`Pending::ready`] waits for its `Ready`, so
/// the caller can go on (start its threads) while the zygote sandboxes itself.
/// Dropped unused, it kills and reaps the zygote.
pub struct Pending {
    started: Option<(Handle, OwnedFd)>,
}

impl Pending {
    /// The running zygote, once it said ready.
    pub fn ready(mut self) -> Result<Arc<Zygote>, StartError> {
        let (process, control) = self
            .started
            .take()
            .ok_or_else(|| StartError::Handshake("the forked zygote was taken".into()))?;
        Zygote::connect(process, control)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((mut process, _control)) = self.started.take() {
            process.stop();
        }
    }
}

/// Forks a zygote from this process. Refused when this process runs more than one
/// thread (or cannot tell), and when the fork fails: the caller then execs one.
pub fn fork(settings: &WorkerSettings) -> Result<Pending, StartError> {
    match threads() {
        Some(1) => {}
        seen => {
            return Err(StartError::Handshake(format!(
                "cannot fork a zygote from a process with {} threads",
                seen.map_or_else(|| "an unknown number of".to_string(), |n| n.to_string())
            )));
        }
    }
    let (ours, theirs) = control_pair()?;
    let parent = getpid();
    // Everything the child needs is computed before the fork: after it, only our own
    // single thread runs, and the child never returns from `become_zygote`.
    let writable_dir = settings.writable_dir.clone();
    let cap = settings.memory_cap_bytes;
    // SAFETY: this process has one thread (checked above), so the child's memory is
    // consistent and no lock is held by a thread that does not exist there.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(ours);
            let code = become_zygote(theirs, parent, cap, &writable_dir);
            std::process::exit(code);
        }
        Ok(ForkResult::Parent { child }) => {
            drop(theirs);
            let process = Handle::Forked {
                pid: child,
                reaped: false,
            };
            Ok(Pending {
                started: Some((process, ours)),
            })
        }
        Err(e) => Err(StartError::Spawn {
            program: "a forked zygote".into(),
            source: e.into(),
        }),
    }
}

/// In the child: become what an exec'd zygote starts as, then run the zygote's loop.
fn become_zygote(control: OwnedFd, parent: Pid, cap: u64, writable_dir: &std::path::Path) -> i32 {
    // SAFETY: descriptor plumbing on the standard descriptors and our own socket; the
    // control socket ends up as stdin, where the zygote's loop takes it from, and
    // `apply_limits` closes everything from 3 up, the socket's original among them.
    let control = control.into_raw_fd();
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null < 0 || libc::dup2(control, 0) < 0 || libc::dup2(null, 1) < 0 {
            return 1;
        }
    }
    if apply_limits(cap).is_err() {
        return 1;
    }
    // Forked by the CLI's main thread: if that is gone already, so is the CLI, and the
    // death signal set by `apply_limits` came too late.
    if getppid() != parent {
        return 1;
    }
    // An exec'd process starts with no signal blocked (`Command` clears the mask).
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    scrub_environment();
    tune_malloc();
    let code = super::serve::run(writable_dir);
    if code == ExitCode::SUCCESS { 0 } else { 1 }
}

/// Removes every variable [`PASSED_ENV`] does not name, and overwrites its bytes: where
/// `environ` points (the kernel's block, or our heap after a `setenv`), and anywhere in
/// the kernel's block, where a string `environ` no longer points to may still lie (a
/// variable changed before the fork; glibc's copy of `GLIBC_TUNABLES`).
fn scrub_environment() {
    let mut doomed: Vec<(Vec<u8>, *mut libc::c_char)> = Vec::new();
    // SAFETY: one thread; `environ` is a null-terminated array of C strings, read before
    // anything changes it. The names are copied (they are not secret), the values not.
    unsafe {
        let mut entry = libc::environ;
        while !entry.is_null() && !(*entry).is_null() {
            let text = CStr::from_ptr(*entry).to_bytes();
            let name = text.split(|b| *b == b'=').next().unwrap_or_default();
            if !PASSED_ENV.iter().any(|p| p.as_bytes() == name) {
                doomed.push((name.to_vec(), *entry));
            }
            entry = entry.add(1);
        }
    }
    // Unset first: `unsetenv` finds an entry by its `NAME=`, which the overwrite erases.
    for (name, _) in &doomed {
        if let Ok(name) = std::ffi::CString::new(name.as_slice()) {
            // SAFETY: one thread; a valid C string.
            unsafe { libc::unsetenv(name.as_ptr()) };
        }
    }
    for (_, text) in doomed {
        // SAFETY: glibc never frees an environment string, so `text` is still a live,
        // writable C string; nothing points to it any more.
        unsafe {
            let len = libc::strlen(text);
            zero(std::slice::from_raw_parts_mut(text.cast::<u8>(), len));
        }
    }
    if let Some((start, end)) = environment_block() {
        // SAFETY: `[start, end)` is the block of `NAME=value` strings the kernel wrote on
        // this process's stack at exec: mapped, writable, and referenced by no Rust value.
        let block = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
        zero_unallowed(block, PASSED_ENV);
    }
}

/// Overwrites, in `block` (NUL-separated `NAME=value` strings, as the kernel lays out a
/// process's environment), every string whose name `allowed` does not hold.
fn zero_unallowed(block: &mut [u8], allowed: &[&str]) {
    for entry in block.split_mut(|b| *b == 0) {
        let name = entry.split(|b| *b == b'=').next().unwrap_or_default();
        let keep = entry.is_empty() || allowed.iter().any(|a| a.as_bytes() == name);
        if !keep {
            zero(entry);
        }
    }
}

/// Overwrites `bytes` with zeros, in writes the compiler may not drop.
fn zero(bytes: &mut [u8]) {
    for byte in bytes {
        // SAFETY: a valid, exclusive reference.
        unsafe { std::ptr::write_volatile(byte, 0) };
    }
}

/// Where the kernel put this process's environment strings: `env_start` and `env_end`,
/// fields 50 and 51 of `/proc/self/stat`.
fn environment_block() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields from the third on follow the command name's closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let start: usize = fields.get(50 - 3)?.parse().ok()?;
    let end: usize = fields.get(51 - 3)?.parse().ok()?;
    (start > 0 && end > start).then_some((start, end))
}

/// What the exec'd zygote's `GLIBC_TUNABLES` and `MALLOC_ARENA_MAX` say (see
/// [`super::link::SET_ENV`]), set from inside.
fn tune_malloc() {
    // SAFETY: mallopt with integer arguments, on our one thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES as libc::c_int);
    }
}

/// This process's threads, from `/proc/self/task`.
fn threads() -> Option<usize> {
    std::fs::read_dir("/proc/self/task")
        .ok()
        .map(|tasks| tasks.count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::zygote::link::SET_ENV;

    #[test]
    fn malloc_is_tuned_as_the_exec_d_zygote_s_tunables_say() {
        let tunables = SET_ENV
            .iter()
            .find(|(name, _)| *name == "GLIBC_TUNABLES")
            .map(|(_, value)| *value)
            .unwrap();
        assert!(
            tunables.contains(&format!(
                "glibc.malloc.mmap_threshold={MMAP_THRESHOLD_BYTES}"
            )),
            "{tunables}"
        );
        assert!(
            tunables.contains(&format!(
                "glibc.malloc.trim_threshold={TRIM_THRESHOLD_BYTES}"
            )),
            "{tunables}"
        );
        assert!(SET_ENV.contains(&("MALLOC_ARENA_MAX", "1")));
    }

    #[test]
    fn only_allowed_variables_survive_in_an_environment_block() {
        let mut block =
            b"PATH=/bin\0AWS_SECRET=s3cr3t\0\0LANG=C\0PATHX=no\0junk\0RUST_LOG".to_vec();
        zero_unallowed(&mut block, &["PATH", "LANG", "RUST_LOG"]);
        let kept: Vec<&[u8]> = block.split(|b| *b == 0).filter(|e| !e.is_empty()).collect();
        assert_eq!(kept, [&b"PATH=/bin"[..], b"LANG=C", b"RUST_LOG"]);
        assert_eq!(block.len(), 58, "overwritten in place, never moved or cut");
    }

    #[test]
    fn a_process_with_threads_does_not_fork_a_zygote() {
        // The test harness runs this on a thread of its own, so there are at least two.
        let settings = WorkerSettings::new(
            1024,
            std::time::Duration::from_secs(5),
            std::env::temp_dir(),
        );
        assert!(threads().is_some_and(|n| n > 1));
        let refused = fork(&settings).err().map(|e| e.to_string());
        assert!(
            refused.as_deref().is_some_and(|e| e.contains("threads")),
            "{refused:?}"
        );
    }
}
