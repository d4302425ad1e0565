//! The zygote's own loop (`wsi-thumbnail worker`, exec'd by the service, never by hand;
//! or a fork of the CLI, [`super::forked`]): take the control socket from stdin, enter the sandbox, say ready,
//! then fork a child per [`Command::Fork`], kill on [`Command::Kill`], and report every
//! child's end, until the service closes the control socket.
//!
//! Single-threaded on purpose: a fork copies only the calling thread, and a lock some
//! other thread held at that moment would stay locked in the child forever.

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::ExitCode;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid};

use super::{Command, Event, receive, send};
use crate::worker::{child, sandbox};

/// The descriptor a child serves its slide on.
pub const SLIDE_FD: RawFd = 3;

/// Runs the zygote until the service closes its control socket.
pub fn run(writable_dir: &Path) -> ExitCode {
    let Some(control) = take_control() else {
        tracing::error!("the zygote has no control socket on stdin");
        return ExitCode::FAILURE;
    };
    let sandbox = sandbox::enter(writable_dir);
    // SIGCHLD through a descriptor, so one poll waits for the service and the children.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    let signals = mask
        .thread_block()
        .map_err(std::io::Error::from)
        .and_then(|()| {
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
                .map_err(std::io::Error::from)
        });
    let signals = match signals {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!(error = %e, "the zygote cannot watch its children");
            return ExitCode::FAILURE;
        }
    };
    let ready = Event::Ready {
        sandbox: sandbox.summary.clone(),
        layers: sandbox.layers,
    };
    if send(control.as_fd(), &ready, None).is_err() {
        return ExitCode::FAILURE;
    }
    let mut zygote = Zygote {
        control,
        signals,
        mask,
        sandbox: sandbox.summary,
        children: HashSet::new(),
    };
    let code = zygote.serve();
    zygote.kill_all();
    code
}

struct Zygote {
    control: OwnedFd,
    signals: SignalFd,
    mask: SigSet,
    sandbox: String,
    /// Forked and not reaped yet: the only pids `Kill` may hit.
    children: HashSet<Pid>,
}

impl Zygote {
    fn serve(&mut self) -> ExitCode {
        loop {
            let (command_ready, child_ended) = {
                let mut fds = [
                    PollFd::new(self.control.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "zygote poll failed");
                        return ExitCode::FAILURE;
                    }
                }
                let any = |fd: &PollFd<'_>| fd.any().unwrap_or(false);
                (any(&fds[0]), any(&fds[1]))
            };
            if child_ended && self.reap().is_err() {
                return ExitCode::FAILURE;
            }
            if !command_ready {
                continue;
            }
            match receive::<Command>(self.control.as_fd()) {
                Ok(Some((Command::Fork, Some(slide)))) => {
                    if self.fork(slide).is_err() {
                        return ExitCode::FAILURE;
                    }
                }
                Ok(Some((Command::Fork, None))) => {
                    tracing::warn!("a fork request without its socket; ignored");
                }
                Ok(Some((Command::Kill { pid }, _))) => {
                    let pid = Pid::from_raw(pid as i32);
                    if self.children.contains(&pid) {
                        let _ = kill(pid, Signal::SIGKILL);
                    }
                }
                // The service is gone or drained its pool (a reset: it closed with our
                // reports unread).
                Ok(None) => return ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return ExitCode::SUCCESS;
                }
                Err(e) => {
                    tracing::error!(error = %e, "unreadable zygote command");
                    return ExitCode::FAILURE;
                }
            }
        }
    }

    /// Forks a child for the slide whose socket is `slide`. Errors only when the control
    /// socket is broken.
    fn fork(&mut self, slide: OwnedFd) -> std::io::Result<()> {
        let zygote = getpid();
        // SAFETY: this process has one thread (see the module doc), so the child's memory
        // is consistent; the child leaves through `process::exit` and never comes back
        // into this loop.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let code = self.become_child(slide, zygote);
                std::process::exit(code);
            }
            Ok(ForkResult::Parent { child }) => {
                drop(slide);
                self.children.insert(child);
                Ok(())
            }
            Err(e) => {
                drop(slide);
                tracing::warn!(error = %e, "the zygote cannot fork");
                send(
                    self.control.as_fd(),
                    &Event::ForkFailed {
                        error: e.to_string(),
                    },
                    None,
                )
            }
        }
    }

    /// In the child: keep the slide's socket as descriptor 3 and nothing else of the
    /// zygote's, die with the zygote, then serve the slide. Returns the exit code.
    fn become_child(&self, slide: OwnedFd, zygote: Pid) -> i32 {
        // SAFETY: prctl with integer arguments.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
        }
        // The zygote died between the fork and the prctl: nobody would reap or watch us.
        if getppid() != zygote {
            return 1;
        }
        let _ = self.mask.thread_unblock();
        let raw = slide.as_raw_fd();
        // SAFETY: descriptor plumbing on our own descriptors. dup2 onto 3 clears its
        // close-on-exec flag, which does not matter (a worker cannot exec); everything
        // from 4 up (the control socket, the signal descriptor) is closed, so a child
        // cannot command the zygote or see its siblings' ends.
        let stream = unsafe {
            if raw != SLIDE_FD && libc::dup2(raw, SLIDE_FD) < 0 {
                return 1;
            }
            std::mem::forget(slide);
            if raw != SLIDE_FD {
                libc::close(raw);
            }
            libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
            std::os::unix::net::UnixStream::from_raw_fd(SLIDE_FD)
        };
        child::serve(stream, &self.sandbox)
    }

    /// Reaps every child that ended and reports it.
    fn reap(&mut self) -> std::io::Result<()> {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        loop {
            let (pid, code, signal) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Some(code), None),
                Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, None, Some(signal as i32)),
                Ok(WaitStatus::StillAlive) | Err(_) => return Ok(()),
                Ok(_) => continue,
            };
            self.children.remove(&pid);
            let event = Event::Exited {
                pid: pid.as_raw() as u32,
                code,
                signal,
            };
            send(self.control.as_fd(), &event, None)?;
        }
    }

    fn kill_all(&mut self) {
        for pid in self.children.drain() {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

/// The control socket (stdin) moved to a private close-on-exec descriptor; stdin then
/// reads `/dev/null` and stdout writes to stderr, so a C library that reads or prints
/// touches neither the control socket nor a slide's frames.
fn take_control() -> Option<OwnedFd> {
    // SAFETY: descriptor plumbing on the standard descriptors; the duplicate is owned.
    unsafe {
        let fd = libc::fcntl(0, libc::F_DUPFD_CLOEXEC, SLIDE_FD + 1);
        if fd < 0 {
            return None;
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if null < 0 || libc::dup2(null, 0) < 0 || libc::dup2(2, 1) < 0 {
            return None;
        }
        if null != 0 {
            libc::close(null);
        }
        Some(OwnedFd::from_raw_fd(fd))
    }
}
