//! Liveness and readiness, as the HTTP probes report them: alive while the pipeline's
//! actors run; ready once the broker answers, while answers can be published and
//! thumbnails written, and until draining starts.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::shutdown::Shutdown;

#[derive(Debug, Default)]
pub struct Health {
    broker_reachable: AtomicBool,
    shutdown: Shutdown,
    /// Answers cannot be produced (broker down, unauthorised, topic missing).
    publishing_blocked: AtomicBool,
    /// Thumbnails cannot be written (output bucket missing, role missing): an
    /// operator fault, during which requests wait.
    output_blocked: AtomicBool,
}

impl Health {
    pub fn new(shutdown: Shutdown) -> Health {
        Health {
            shutdown,
            ..Health::default()
        }
    }

    pub fn set_broker_reachable(&self, ok: bool) {
        self.broker_reachable.store(ok, Ordering::Relaxed);
    }

    pub fn set_publishing_blocked(&self, blocked: bool) {
        self.publishing_blocked.store(blocked, Ordering::Relaxed);
    }

    pub fn set_output_blocked(&self, blocked: bool) {
        self.output_blocked.store(blocked, Ordering::Relaxed);
    }

    pub fn is_output_blocked(&self) -> bool {
        self.output_blocked.load(Ordering::Relaxed)
    }

    pub fn is_draining(&self) -> bool {
        self.shutdown.is_draining()
    }

    /// Ready to take work: connected to Kafka, able to publish answers and to write
    /// thumbnails, and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.broker_reachable.load(Ordering::Relaxed)
            && !self.publishing_blocked.load(Ordering::Relaxed)
            && !self.is_output_blocked()
            && !self.is_draining()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_reachable_and_not_draining() {
        let shutdown = Shutdown::default();
        let h = Health::new(shutdown.clone());
        assert!(!h.is_ready());
        h.set_broker_reachable(true);
        assert!(h.is_ready());
        h.set_publishing_blocked(true);
        assert!(!h.is_ready());
        h.set_publishing_blocked(false);
        assert!(h.is_ready());
        h.set_output_blocked(true);
        assert!(
            !h.is_ready(),
            "not ready while thumbnails cannot be written"
        );
        h.set_output_blocked(false);
        assert!(h.is_ready());
        shutdown.drain();
        assert!(!h.is_ready());
    }
}
