//! The service's shutdown as one value (after mini-redis's `shutdown.rs`): every part
//! that must react holds a clone and asks it, instead of each keeping a flag of its
//! own. It moves one way through three phases:
//!
//! - `Running`;
//! - `Draining` (a termination signal, or an actor stopped): the reader stops reading
//!   and `/readyz` answers 503, while requests in flight finish;
//! - `Closed`: nothing in flight will finish any more, so a revocation during the
//!   consumer's close does not wait for it.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    Draining,
    Closed,
}

#[derive(Debug, Clone)]
pub struct Shutdown(Arc<watch::Sender<Phase>>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(Arc::new(watch::Sender::new(Phase::Running)))
    }
}

impl Shutdown {
    /// Stop taking work; let what is in flight finish.
    pub fn drain(&self) {
        self.advance(Phase::Draining);
    }

    /// Nothing in flight will finish any more.
    pub fn close(&self) {
        self.advance(Phase::Closed);
    }

    fn advance(&self, to: Phase) {
        self.0.send_if_modified(|phase| {
            let moved = *phase < to;
            *phase = (*phase).max(to);
            moved
        });
    }

    pub fn is_draining(&self) -> bool {
        *self.0.borrow() >= Phase::Draining
    }

    pub fn is_closed(&self) -> bool {
        *self.0.borrow() == Phase::Closed
    }

    /// Resolves once draining has begun.
    pub async fn draining(&self) {
        let mut phase = self.0.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = phase.wait_for(|p| *p >= Phase::Draining).await;
    }
}

/// Resolves on SIGTERM (what orchestrators send) or SIGINT.
pub async fn termination_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward_and_wake_waiters() {
        let shutdown = Shutdown::default();
        assert!(!shutdown.is_draining());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let waiter = tokio::spawn({
                let shutdown = shutdown.clone();
                async move { shutdown.draining().await }
            });
            shutdown.drain();
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("the waiter woke")
                .expect("the waiter ran");
        });
        assert!(shutdown.is_draining() && !shutdown.is_closed());
        shutdown.close();
        shutdown.drain();
        assert!(
            shutdown.is_closed(),
            "closing is not undone by a late drain"
        );
    }
}
