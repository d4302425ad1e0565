//! Building the actor tree (like vector's `topology/builder.rs`): each stage gets the
//! `Recipient`s of the messages it sends, so stages know messages, not each other.
//! The tracker's context is created first, so its address exists before the publisher
//! that reports to it, and nothing is wired late.
//!
//! The tree, in the order a request meets it:
//! RequestReader -> OffsetTracker -> Fetcher -> Decoder pool -> Resizer pool ->
//! Uploader -> Publisher -> (Completed) -> OffsetTracker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use metrics_exporter_prometheus::PrometheusHandle;

use super::clients::Clients;
use crate::actors::decoder::{Decoder, Engine};
use crate::actors::fetcher::Fetcher;
use crate::actors::monitor::Monitor;
use crate::actors::publisher::Publisher;
use crate::actors::reader::RequestReader;
use crate::actors::resizer::Resizer;
use crate::actors::stage::Routes;
use crate::actors::tracker::{Drain, OffsetTracker};
use crate::actors::uploader::Uploader;
use crate::config::Config;
use crate::delivery::room::Room;
use crate::health::Health;
use crate::messages::pipeline::{Decode, Fail, Fetch, Publish, Resize, Upload};
use crate::process_api::ProcessApi;
use crate::shutdown::Shutdown;
use crate::storage::fetch::WholeObjectFetcher;
use crate::storage::output::OutputSink;
use crate::storage::ranged::{RangedFetcher, RangedSettings};
use crate::telemetry::record::{self, Stage};
use crate::worker::cores::CoreShare;
use crate::worker::{Isolation, WorkerPool};

/// The running tree, as the supervisor watches and drains it.
pub struct Pipeline {
    tracker: Addr<OffsetTracker>,
    /// The actors whose death stops the service, by name: the reader, tracker and
    /// publisher hold offsets or the producer; the fetcher and uploader are single
    /// actors every request passes. (The SyncArbiter pools replace their threads.)
    vital: Vec<(&'static str, Alive)>,
    pub process_api: Arc<ProcessApi>,
}

impl Pipeline {
    /// Starts every actor of the tree.
    pub fn start(
        config: &Config,
        clients: Clients,
        health: &Arc<Health>,
        shutdown: &Shutdown,
        metrics: PrometheusHandle,
    ) -> Pipeline {
        let tracker_context = Context::<OffsetTracker>::new();
        let tracker = tracker_context.address();
        let publisher = Publisher::new(
            clients.producer,
            health.clone(),
            &config.kafka.response_topic,
            &config.kafka.dlq_topic,
            tracker.clone().recipient(),
        )
        .start();
        let fail: Recipient<Fail> = publisher.clone().recipient();
        let sink = Arc::new(OutputSink::new(clients.output, clients.gcs.clone()));
        actix::spawn(super::output_check::watch_output(
            sink.clone(),
            health.clone(),
            shutdown.clone(),
        ));
        let uploader = Uploader {
            sink,
            retry: config.retry.clone(),
            timeout: config.timeouts.upload,
            routes: Routes::new(publisher.clone().recipient::<Publish>(), &fail),
            health: health.clone(),
        }
        .start();
        let resizer = start_resizers(
            config,
            Routes::new(uploader.clone().recipient::<Upload>(), &fail),
        );
        // One pool of fresh workers: a slide's worker is checked out by the fetcher
        // when its read must be planned, or by the decoder, and ends with the slide.
        let workers = (config.thumbnail.isolation == Isolation::Process)
            .then(|| WorkerPool::start(config.worker_settings(), config.decoder_threads()));
        let decoder = start_decoders(
            config,
            workers.clone(),
            Routes::new(resizer.recipient::<Resize>(), &fail),
        );
        let budgets = config.storage.budgets();
        let fetcher = Fetcher {
            strategy: Arc::new(RangedFetcher {
                client: clients.gcs.clone(),
                temp_dir: clients.temp_dir.clone(),
                settings: RangedSettings {
                    mode: config.storage.fetch,
                    concurrency: config.storage.fetch_concurrency,
                    max_size: config.thumbnail.max_size,
                    max_slide_pixels: config.thumbnail.max_slide_pixels,
                },
                budgets: budgets.clone(),
                whole: WholeObjectFetcher::new(clients.gcs, clients.temp_dir, budgets),
            }),
            workers,
            retry: config.retry.clone(),
            timeout: config.timeouts.fetch,
            routes: Routes::new(decoder.recipient::<Decode>(), &fail),
        }
        .start();
        let fetch: Recipient<Fetch> = fetcher.clone().recipient();
        let room = Arc::new(Room::new(config.pipeline.max_in_flight));
        tracker_context.run(OffsetTracker::new(
            clients.consumer.clone(),
            clients.ledger.clone(),
            fetch.clone(),
            fail.clone(),
            config.limits(),
            room.clone(),
            clients.journal,
        ));
        let reader = RequestReader {
            consumer: clients.consumer.clone(),
            tracker: tracker.clone().recipient(),
            policy: config.storage.input_policy(),
            template: config.storage.object_name.clone(),
            room,
            shutdown: shutdown.clone(),
        }
        .start();
        Monitor {
            consumer: clients.consumer,
            ledger: clients.ledger,
            health: health.clone(),
            topic: config.kafka.request_topic.clone(),
            metrics,
            interval: Duration::from_secs(5),
            reported: Arc::default(),
        }
        .start();
        let process_api = Arc::new(ProcessApi::new(
            fetch,
            config.storage.input_policy(),
            config.storage.object_name.clone(),
            config.pipeline.max_in_flight,
            config.http.process_timeout,
            clients.http_journal,
        ));
        Pipeline {
            vital: vec![
                ("offset tracker", connected(tracker.clone())),
                ("request reader", connected(reader)),
                ("response publisher", connected(publisher)),
                ("fetcher", connected(fetcher)),
                ("uploader", connected(uploader)),
            ],
            tracker,
            process_api,
        }
    }

    /// The first vital actor that stopped, if any.
    pub fn stopped_actor(&self) -> Option<&'static str> {
        self.vital
            .iter()
            .find(|(_, up)| !up())
            .map(|(name, _)| *name)
    }

    /// Resolves with the name of the first vital actor to stop.
    pub async fn watchdog(&self) -> &'static str {
        loop {
            actix_rt::time::sleep(Duration::from_millis(500)).await;
            if let Some(name) = self.stopped_actor() {
                return name;
            }
        }
    }

    /// Lets in-flight requests finish within `grace` (the reader has stopped), then
    /// commits; returns how many were left unfinished (uncommitted, to be redone).
    pub async fn drain(&self, grace: Duration) -> Result<usize, MailboxError> {
        let started = Instant::now();
        let left = self.tracker.send(Drain { grace }).await?;
        tracing::debug!(
            took_ms = started.elapsed().as_millis() as u64,
            left,
            "drained"
        );
        Ok(left)
    }
}

/// Whether an actor still runs.
type Alive = Box<dyn Fn() -> bool + Send + Sync>;

fn connected<A: Actor>(addr: Addr<A>) -> Alive {
    Box::new(move || addr.connected())
}

/// Resize and encode share the resizer threads.
fn start_resizers(config: &Config, routes: Routes<Upload>) -> Addr<Resizer> {
    let threads = config.pipeline.resizer_threads.max(1);
    for stage in [Stage::Resize, Stage::Encode] {
        record::stage_workers(stage, threads);
    }
    SyncArbiter::start(threads, move || Resizer {
        routes: routes.clone(),
    })
}

/// One decoder thread per core unless configured, each driving one slide's worker
/// process at a time (or its own thread pool under `isolation = "none"`).
fn start_decoders(
    config: &Config,
    workers: Option<Arc<WorkerPool>>,
    routes: Routes<Resize>,
) -> Addr<Decoder> {
    let (threads, isolation) = (config.decoder_threads(), config.thumbnail.isolation);
    let options = config.thumbnail.options();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    record::stage_workers(Stage::Decode, threads);
    tracing::info!(?isolation, decoders = threads, "decoder pool");
    let share = Arc::new(CoreShare::new(threads.min(cores)));
    SyncArbiter::start(threads, move || Decoder {
        options: options.clone(),
        engine: match &workers {
            Some(pool) => Engine::Process(pool.clone(), share.clone()),
            None => Engine::in_process(cores),
        },
        routes: routes.clone(),
    })
}
