//! The zygote: one pre-initialised, limited, sandboxed process that forks a fresh child
//! for every slide (what browsers do for their renderers).
//!
//! Why: a process per slide is the isolation guarantee (no process ever holds two
//! slides), but exec'ing one costs what the slide's decode does not need: loading and
//! relocating some fifty shared libraries, the runtime's start-up, the sandbox's set-up.
//! Measured here, an exec'd worker that does nothing took 18 ms of CPU, a tenth of a
//! real thumbnail. The zygote pays all that once; a fork of it is well under a
//! millisecond and inherits its limits (`RLIMIT_AS`, no core dumps, the decoding
//! stack) and its sandbox (Landlock and seccomp survive fork), and has read nothing
//! of any slide.
//!
//! How:
//! - The service execs `wsi-thumbnail worker` with the zygote's control socket (a
//!   `SOCK_SEQPACKET` pair, so messages keep their boundaries) as its stdin
//!   ([`link`]). The CLI, which exits after a few slides, forks it from itself instead,
//!   before its first thread, and saves a process start per run ([`forked`]).
//! - Per slide, the service makes a stream socket pair and sends one end to the zygote
//!   with [`Command::Fork`] as `SCM_RIGHTS` ancillary data. The zygote forks; the child
//!   keeps that socket as descriptor 3, closes everything else of the zygote's, dies
//!   with the zygote (`PR_SET_PDEATHSIG`), and serves one slide over it
//!   ([`super::child`]).
//! - The zygote reaps its children and reports each exit status ([`Event::Exited`]), so
//!   the service judges a crash exactly as before. The service stops a child by asking
//!   the zygote ([`Command::Kill`]): the zygote kills only a child it has not reaped yet,
//!   so a recycled pid is never hit.
//!
//! The zygote itself never reads a slide and never starts a thread (a fork copies only
//! the calling thread, so every child starts with the zygote's single one).

pub mod forked;
pub mod link;
pub mod serve;

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

/// Longest control message either side accepts.
const MAX_MESSAGE: usize = 64 * 1024;

/// What the service asks of the zygote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Fork a child for one slide; the slide's socket travels as ancillary data.
    Fork,
    /// Kill this child now (a deadline, a memory watch, a worker no longer wanted).
    Kill { pid: u32 },
}

/// What the zygote tells the service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Initialised and sandboxed; forks from now on. `layers`: whether each sandbox
    /// layer is enforced (every child inherits exactly these).
    Ready {
        sandbox: String,
        #[serde(default)]
        layers: std::collections::BTreeMap<String, bool>,
    },
    /// A child ended: its exit code, or the signal that ended it.
    Exited {
        pid: u32,
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// A fork failed (the slide's socket was closed, so its handshake fails too).
    ForkFailed { error: String },
}

/// Sends one message, with `fd` as `SCM_RIGHTS` when given.
pub(crate) fn send<T: Serialize>(
    socket: BorrowedFd<'_>,
    message: &T,
    fd: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    let iov = [IoSlice::new(&bytes)];
    let fds = fd.map(|fd| [fd.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage<'_>> = fds
        .as_ref()
        .map(|fds| ControlMessage::ScmRights(fds))
        .into_iter()
        .collect();
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    if sent != bytes.len() {
        return Err(std::io::Error::other("control message cut short"));
    }
    Ok(())
}

/// Receives one message and the descriptor that came with it; `Ok(None)` once the other
/// side has closed. Descriptors arrive close-on-exec.
pub(crate) fn receive<T: for<'de> Deserialize<'de>>(
    socket: BorrowedFd<'_>,
) -> std::io::Result<Option<(T, Option<OwnedFd>)>> {
    let mut buffer = vec![0u8; MAX_MESSAGE];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (bytes, truncated, fd) = {
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fd = None;
        for cmsg in message.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: the kernel just installed this descriptor for us; we own it
                    // (a second one, which no message carries, is closed on drop).
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
        let truncated = message
            .flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
        (message.bytes, truncated, fd)
    };
    if bytes == 0 {
        return Ok(None);
    }
    if truncated {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "control message over its bound",
        ));
    }
    let message = serde_json::from_slice(&buffer[..bytes])
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(Some((message, fd)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn a_message_carries_its_descriptor_and_keeps_its_boundary() {
        let (a, b) = pair();
        let file = std::fs::File::open("/dev/null").unwrap();
        send(a.as_fd(), &Command::Fork, Some(file.as_fd())).unwrap();
        send(a.as_fd(), &Command::Kill { pid: 42 }, None).unwrap();
        let (first, fd) = receive::<Command>(b.as_fd()).unwrap().unwrap();
        assert_eq!(first, Command::Fork);
        assert!(fd.is_some(), "the descriptor travels with its message");
        let (second, fd) = receive::<Command>(b.as_fd()).unwrap().unwrap();
        assert_eq!(second, Command::Kill { pid: 42 });
        assert!(fd.is_none());
        drop(a);
        assert!(receive::<Command>(b.as_fd()).unwrap().is_none());
    }

    #[test]
    fn an_unknown_message_is_an_error_not_a_command() {
        let (a, b) = pair();
        send(a.as_fd(), &serde_json::json!({"command": "exec"}), None).unwrap();
        assert!(receive::<Command>(b.as_fd()).is_err());
    }
}
