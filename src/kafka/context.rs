//! The consumer's rebalance hooks. On revocation the contiguous done prefix of each
//! revoked partition is committed and the partition leaves the ledger, so work still in
//! flight for it is never committed by us (its new owner redoes it: at least once). On
//! assignment the partition enters the ledger under a new generation.

use std::sync::{Arc, Mutex};

use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};

use crate::actors::tracker::commit_list;
use crate::pipeline::book::Book;
use crate::pipeline::commit_metadata::decode;

pub struct ServiceContext {
    pub book: Arc<Mutex<Book>>,
}

impl ClientContext for ServiceContext {}

impl ConsumerContext for ServiceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut pending = Vec::new();
        {
            let Ok(mut book) = self.book.lock() else {
                return;
            };
            for elem in revoked.elements() {
                if let Some(state) = book.revoke(elem.topic(), elem.partition()) {
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
        let Ok(mut book) = self.book.lock() else {
            return;
        };
        for elem in assigned.elements() {
            book.assign(elem.topic(), elem.partition());
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
                book.set_finished(elem.topic(), elem.partition(), finished);
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
