//! Monitor: watches the outside world for the probes and the lag metrics.
//!
//! Receives: nothing; runs on a timer.
//! Sends: nothing; updates `Health` and the `wsi_thumbnail_consumer_lag{partition}`
//! gauges (high watermark minus the group's committed offset, as the broker has it;
//! 0 for partitions this instance no longer owns), and runs the metrics upkeep.
//! Owns: a handle on the consumer for metadata and watermark queries (blocking calls,
//! so they run on the blocking pool, never on the actor's thread).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::Offset;
use rdkafka::consumer::{Consumer, StreamConsumer};

use crate::delivery::ledger::Ledger;
use crate::health::Health;
use crate::kafka::context::ServiceContext;
use crate::telemetry::record;

pub struct Monitor {
    pub consumer: Arc<StreamConsumer<ServiceContext>>,
    pub ledger: Arc<Mutex<Ledger>>,
    pub health: Arc<Health>,
    pub topic: String,
    pub metrics: PrometheusHandle,
    pub interval: Duration,
    /// Partitions whose lag the last check reported.
    pub reported: Arc<Mutex<HashSet<i32>>>,
}

/// Records not yet done: the high watermark minus the committed offset, or minus the
/// low watermark when the group has never committed (what is still on the broker).
fn consumer_lag(low: i64, high: i64, committed: Option<i64>) -> i64 {
    (high - committed.unwrap_or(low).max(low)).max(0)
}

impl Monitor {
    fn check(&self, ctx: &mut Context<Self>) {
        let consumer = self.consumer.clone();
        let ledger = self.ledger.clone();
        let health = self.health.clone();
        let topic = self.topic.clone();
        let reported = self.reported.clone();
        self.metrics.run_upkeep();
        let probe = tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(3);
            let reachable = consumer.fetch_metadata(Some(&topic), timeout).is_ok();
            health.set_broker_reachable(reachable);
            if !reachable {
                return;
            }
            let Ok(assignment) = consumer.assignment() else {
                return;
            };
            // The group's committed offsets as the broker has them: right after a
            // restart this instance has committed nothing yet, but the group has.
            let broker_committed = consumer.committed_offsets(assignment.clone(), timeout).ok();
            let mut assigned = HashSet::new();
            for elem in assignment.elements() {
                let (topic, partition) = (elem.topic(), elem.partition());
                assigned.insert(partition);
                let Ok((low, high)) = consumer.fetch_watermarks(topic, partition, timeout) else {
                    continue;
                };
                let ours = ledger
                    .lock()
                    .ok()
                    .and_then(|l| l.committed(topic, partition));
                let group = broker_committed
                    .as_ref()
                    .and_then(|tpl| tpl.find_partition(topic, partition))
                    .and_then(|e| match e.offset() {
                        Offset::Offset(n) => Some(n),
                        _ => None,
                    });
                let lag = consumer_lag(low, high, ours.max(group));
                record::consumer_lag(partition, lag);
            }
            // Partitions no longer ours: their lag is another instance's to report.
            if let Ok(mut previous) = reported.lock() {
                for gone in previous.difference(&assigned) {
                    record::consumer_lag(*gone, 0);
                }
                *previous = assigned;
            }
        });
        ctx.spawn(
            async move {
                let _ = probe.await;
            }
            .into_actor(self),
        );
    }
}

impl Actor for Monitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.check(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.check(ctx));
    }
}

#[cfg(test)]
mod tests {
    use super::consumer_lag;

    #[test]
    fn lag_counts_from_the_commit_or_what_the_broker_still_holds() {
        assert_eq!(consumer_lag(0, 20, Some(20)), 0, "fully committed");
        assert_eq!(consumer_lag(0, 20, Some(15)), 5);
        assert_eq!(consumer_lag(0, 20, None), 20, "never committed");
        assert_eq!(consumer_lag(12, 20, None), 8, "retention removed the start");
        assert_eq!(
            consumer_lag(12, 20, Some(3)),
            8,
            "a commit older than retention"
        );
    }
}
