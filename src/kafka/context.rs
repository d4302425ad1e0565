//! The consumer's rebalance hooks (design invariant 7). On revocation the reader has
//! stopped (the hook runs inside its poll), the revoked partitions' in-flight work gets
//! until the revocation deadline to finish, then their contiguous done prefix is
//! committed and they leave the ledger; whatever missed the deadline is never committed
//! by us (its new owner redoes it: at least once). On assignment a partition enters the
//! ledger under a new generation, with what earlier owners recorded as finished.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::client::OAuthToken;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};

use super::commit::commit_list;
use super::oauth::AuthContext;
use crate::delivery::commit_metadata::decode;
use crate::delivery::ledger::Ledger;
use crate::shutdown::Shutdown;

pub struct ServiceContext {
    pub ledger: Arc<Mutex<Ledger>>,
    /// How long a revoked partition's in-flight work may take to finish.
    pub revocation_deadline: Duration,
    /// Once closed, nothing in flight will finish any more, so revocations at close
    /// do not wait.
    pub shutdown: Shutdown,
    pub auth: AuthContext,
}

impl ServiceContext {
    /// Waits until the given partitions have nothing in flight, the deadline passes or
    /// the service is closing; returns what is still in flight.
    fn wait_for_in_flight(&self, partitions: &[(String, i32)]) -> usize {
        let deadline = Instant::now() + self.revocation_deadline;
        loop {
            let left = self
                .ledger
                .lock()
                .map(|l| l.in_flight_of(partitions))
                .unwrap_or(0);
            if left == 0 || Instant::now() >= deadline || self.shutdown.is_closed() {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl ClientContext for ServiceContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::quiet_logs::log(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        super::quiet_logs::error(error, reason);
    }

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.auth.generate()
    }
}

impl ConsumerContext for ServiceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let partitions: Vec<(String, i32)> = revoked
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let started = Instant::now();
        let left = self.wait_for_in_flight(&partitions);
        if left > 0 {
            tracing::warn!(
                left,
                deadline_ms = self.revocation_deadline.as_millis() as u64,
                "revocation deadline passed; unfinished requests will be redone by the new owner"
            );
        } else {
            tracing::info!(
                waited_ms = started.elapsed().as_millis() as u64,
                "revoked partitions drained"
            );
        }
        let mut pending = Vec::new();
        {
            let Ok(mut ledger) = self.ledger.lock() else {
                return;
            };
            for elem in revoked.elements() {
                if let Some(state) = ledger.revoke(elem.topic(), elem.partition()) {
                    if let Some((next, metadata)) = state.offsets.pending_commit_with_metadata() {
                        pending.push((
                            (elem.topic().to_string(), elem.partition()),
                            next,
                            metadata,
                        ));
                    }
                    tracing::info!(
                        topic = elem.topic(),
                        partition = elem.partition(),
                        in_flight = state.offsets.in_flight(),
                        "partition revoked"
                    );
                }
            }
        }
        let commit = commit_list(&pending);
        if commit.count() > 0
            && let Err(e) = consumer.commit(&commit, CommitMode::Sync)
        {
            tracing::warn!(error = %e, "commit on revocation failed; the new owner may redo some requests");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(assigned) = rebalance else {
            return;
        };
        // What earlier owners finished above their commit (commit metadata), read before
        // any record of these partitions is delivered.
        let committed = consumer
            .committed_offsets((*assigned).clone(), Duration::from_secs(10))
            .map_err(|e| tracing::warn!(error = %e, "cannot read commit metadata; finished work may be redone"))
            .ok();
        let Ok(mut ledger) = self.ledger.lock() else {
            return;
        };
        for elem in assigned.elements() {
            ledger.assign(elem.topic(), elem.partition());
            let finished = committed
                .as_ref()
                .and_then(|c| c.find_partition(elem.topic(), elem.partition()))
                .and_then(|c| decode(c.metadata()));
            if let Some(finished) = finished {
                tracing::info!(
                    topic = elem.topic(),
                    partition = elem.partition(),
                    highest = finished.highest,
                    pending = finished.pending.len(),
                    "partition assigned; skipping work finished by the previous owner"
                );
                ledger.set_finished(elem.topic(), elem.partition(), finished);
            } else {
                tracing::info!(
                    topic = elem.topic(),
                    partition = elem.partition(),
                    "partition assigned"
                );
            }
        }
    }
}
