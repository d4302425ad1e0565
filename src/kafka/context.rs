//! The consumer's rebalance hooks. On revocation the contiguous done prefix of each
//! revoked partition is committed and the partition leaves the ledger, so work still in
//! flight for it is never committed by us (its new owner redoes it: at least once). On
//! assignment the partition enters the ledger under a new generation.

use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::pipeline::book::Book;

pub struct ServiceContext {
    pub book: Arc<Mutex<Book>>,
}

impl ClientContext for ServiceContext {}

impl ConsumerContext for ServiceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut commit = TopicPartitionList::new();
        {
            let Ok(mut book) = self.book.lock() else {
                return;
            };
            for elem in revoked.elements() {
                if let Some(state) = book.revoke(elem.topic(), elem.partition()) {
                    if let Some(next) = state.offsets.pending_commit() {
                        let _ = commit.add_partition_offset(
                            elem.topic(),
                            elem.partition(),
                            Offset::Offset(next),
                        );
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
        if commit.count() > 0
            && let Err(e) = consumer.commit(&commit, CommitMode::Sync)
        {
            tracing::warn!(error = %e, "commit on revocation failed; the new owner may redo some requests");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance
            && let Ok(mut book) = self.book.lock()
        {
            for elem in assigned.elements() {
                book.assign(elem.topic(), elem.partition());
                tracing::info!(
                    topic = elem.topic(),
                    partition = elem.partition(),
                    "partition assigned"
                );
            }
        }
    }
}
