//! Monitor: watches the outside world for the probes and the lag metrics.
//!
//! Receives: nothing; runs on a timer.
//! Sends: nothing; updates `Health` and the `wsi_thumbnail_consumer_lag{partition}`
//! gauges (high watermark minus committed offset), and runs the metrics upkeep.
//! Owns: a handle on the consumer for metadata and watermark queries (blocking calls,
//! so they run on the blocking pool, never on the actor's thread).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::consumer::{Consumer, StreamConsumer};

use crate::health::Health;
use crate::kafka::context::ServiceContext;
use crate::pipeline::book::Book;

pub struct Monitor {
    pub consumer: Arc<StreamConsumer<ServiceContext>>,
    pub book: Arc<Mutex<Book>>,
    pub health: Arc<Health>,
    pub topic: String,
    pub metrics: PrometheusHandle,
    pub interval: Duration,
}

impl Monitor {
    fn check(&self, ctx: &mut Context<Self>) {
        let consumer = self.consumer.clone();
        let book = self.book.clone();
        let health = self.health.clone();
        let topic = self.topic.clone();
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
            for elem in assignment.elements() {
                let Ok((_, high)) =
                    consumer.fetch_watermarks(elem.topic(), elem.partition(), timeout)
                else {
                    continue;
                };
                let committed = book
                    .lock()
                    .ok()
                    .and_then(|b| b.committed(elem.topic(), elem.partition()));
                // Nothing committed yet by this instance: lag counts from the start.
                let lag = (high - committed.unwrap_or(0)).max(0);
                metrics::gauge!("wsi_thumbnail_consumer_lag", "partition" => elem.partition().to_string())
                    .set(lag as f64);
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
