//! How a worker's end maps to the contract's failure kinds, and why it was replaced.
//!
//! Plain code so that the rules are unit-tested: a worker the service stopped for its
//! deadline is `timeout` (not retryable: the slide would loop again); one stopped, or
//! dead of exhaustion, near its memory cap is `slide_too_large`; one killed by any other
//! signal crashed inside a slide library and is `corrupt_slide`. A `SIGKILL` nobody here
//! sent (the kernel's OOM killer, an operator) says nothing about the slide, so the
//! slide is tried once more on a fresh worker before it is judged.

use std::time::Duration;

use crate::error_kind::ErrorKind;

/// How a worker stopped while it held a slide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Killed by a signal it did not get from us.
    Signal(i32),
    /// Exited on its own with this code (it should only exit when its input closes).
    Exit(i32),
    /// We stopped it: the slide ran past `timeouts.decode_ms`.
    Deadline(Duration),
    /// We stopped it: its resident memory passed the cap.
    Memory { resident_bytes: u64 },
    /// It broke the protocol (a frame over its bound, garbage): we stopped it.
    Protocol,
}

/// What to do about a worker that stopped while it held a slide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub kind: ErrorKind,
    /// Overrides the kind's usual `retryable` (a decode timeout is not).
    pub retryable: bool,
    pub message: String,
    /// `reason` label of `wsi_thumbnail_worker_restarts_total`.
    pub restart_reason: &'static str,
    /// Try the slide once more on a fresh worker before judging it.
    pub retry_once: bool,
}

/// A death with the address space this full was an exhaustion, not a wild pointer.
const NEAR_CAP: f64 = 0.75;

/// Judges a worker's end. `peak_virtual_bytes` is the largest address-space size seen
/// while it held the slide; `cap_bytes` is `thumbnail.worker_memory_mb`.
pub fn judge(ending: Ending, peak_virtual_bytes: u64, cap_bytes: u64) -> Verdict {
    let cap_mb = cap_bytes / (1024 * 1024);
    let too_large = |message: String| Verdict {
        kind: ErrorKind::SlideTooLarge,
        retryable: false,
        message,
        restart_reason: "memory",
        retry_once: false,
    };
    match ending {
        Ending::Deadline(after) => Verdict {
            kind: ErrorKind::Timeout,
            retryable: false,
            message: format!(
                "decoding the slide took longer than timeouts.decode_ms ({} ms); the slide \
                 may make the decoder loop forever, or it needs a longer deadline",
                after.as_millis()
            ),
            restart_reason: "timeout",
            retry_once: false,
        },
        Ending::Memory { resident_bytes } => too_large(format!(
            "decoding the slide needed more than thumbnail.worker_memory_mb ({cap_mb} MiB; \
             {} MiB resident when stopped); raise the limit if the slide is genuine",
            resident_bytes / (1024 * 1024)
        )),
        Ending::Signal(signal)
            if cap_bytes > 0 && peak_virtual_bytes as f64 >= NEAR_CAP * cap_bytes as f64 =>
        {
            too_large(format!(
                "decoding the slide exhausted thumbnail.worker_memory_mb ({cap_mb} MiB) and \
                 the decoder died with {}; raise the limit if the slide is genuine",
                signal_name(signal)
            ))
        }
        Ending::Signal(signal) if signal == libc::SIGKILL => Verdict {
            kind: ErrorKind::Internal,
            retryable: true,
            message: "the decoder process was killed from outside (SIGKILL) twice while \
                      reading this slide; check the host's memory limits"
                .into(),
            restart_reason: "killed",
            retry_once: true,
        },
        Ending::Signal(signal) => Verdict {
            kind: ErrorKind::CorruptSlide,
            retryable: false,
            message: format!(
                "the slide crashed the decoder with {} inside the slide libraries; the file \
                 is malformed or hostile: check it with the scanner's software",
                signal_name(signal)
            ),
            restart_reason: "crash",
            retry_once: false,
        },
        Ending::Exit(code) => Verdict {
            kind: ErrorKind::CorruptSlide,
            retryable: false,
            message: format!(
                "the decoder exited with code {code} while reading the slide; the file is \
                 malformed or hostile"
            ),
            restart_reason: "exit",
            retry_once: false,
        },
        Ending::Protocol => Verdict {
            kind: ErrorKind::Internal,
            retryable: false,
            message: "the decoder process broke its protocol while reading the slide".into(),
            restart_reason: "protocol",
            retry_once: false,
        },
    }
}

/// `SIGSEGV (signal 11)` and the like.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXCPU => "SIGXCPU",
        _ => "signal",
    };
    format!("{name} (signal {signal})")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: u64 = 1024 * 1024 * 1024;

    #[test]
    fn a_crash_far_from_the_cap_is_a_corrupt_slide_naming_the_signal() {
        let v = judge(Ending::Signal(libc::SIGFPE), 200 << 20, CAP);
        assert_eq!(v.kind, ErrorKind::CorruptSlide);
        assert!(v.message.contains("SIGFPE"), "{}", v.message);
        assert!(v.message.contains("crashed the decoder"));
        assert!(!v.retry_once);
        assert_eq!(v.restart_reason, "crash");
    }

    #[test]
    fn an_abort_with_the_address_space_nearly_full_is_too_large() {
        let v = judge(Ending::Signal(libc::SIGABRT), 900 << 20, CAP);
        assert_eq!(v.kind, ErrorKind::SlideTooLarge);
        assert_eq!(v.restart_reason, "memory");
    }

    #[test]
    fn a_deadline_is_a_timeout_that_is_not_retryable() {
        let v = judge(Ending::Deadline(Duration::from_secs(20)), 0, CAP);
        assert_eq!(v.kind, ErrorKind::Timeout);
        assert!(!v.retryable);
        assert!(v.message.contains("20000 ms"));
    }

    #[test]
    fn memory_cap_is_too_large() {
        let v = judge(
            Ending::Memory {
                resident_bytes: 1100 << 20,
            },
            0,
            CAP,
        );
        assert_eq!(v.kind, ErrorKind::SlideTooLarge);
        assert!(v.message.contains("1024 MiB"));
    }

    #[test]
    fn an_outside_sigkill_is_retried_once() {
        let v = judge(Ending::Signal(libc::SIGKILL), 100 << 20, CAP);
        assert!(v.retry_once);
        assert_eq!(v.restart_reason, "killed");
    }
}
