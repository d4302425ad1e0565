//! Builds the actor tree from the configuration (in one place, like vector's topology),
//! runs it until SIGTERM or SIGINT, then drains: stop reading, let in-flight requests
//! finish within the grace period, commit, return.
//!
//! Supervision: stage actors survive their own panics (see [`super::guard`]). The
//! actors that hold offsets or the producer (reader, tracker, publisher) cannot be
//! restarted in place without losing track of what is in flight, so when one of them
//! stops, `run` returns an error: the process exits non-zero, the orchestrator restarts
//! it, and the broker redelivers everything uncommitted (nothing is dropped).
//!
//! The tree, in the order a request meets it:
//! PartitionReader -> OffsetTracker -> Fetcher -> Decoder pool -> Resizer pool ->
//! Uploader -> Publisher -> (Completed) -> OffsetTracker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;

use super::decoder::{Decoder, Engine};
use super::fetcher::Fetcher;
use super::monitor::Monitor;
use super::publisher::{Publisher, SetTracker};
use super::reader::{PartitionReader, StopReading};
use super::resizer::Resizer;
use super::tracker::{Drain, Limits, OffsetTracker};
use super::uploader::Uploader;
use crate::config::Config;
use crate::health::Health;
use crate::http::{self, Liveness};
use crate::kafka::context::ServiceContext;
use crate::kafka::oauth::{AuthContext, OAuthError};
use crate::kafka::settings;
use crate::pipeline::book::Book;
use crate::pipeline::journal::{Journal, journal_file};
use crate::process_access::ProcessAccess;
use crate::process_api::ProcessApi;
use crate::slide::ThumbnailOptions;
use crate::storage::fetch::{WholeObjectFetcher, sweep_stale};
use crate::storage::gcs;
use crate::storage::location::OutputLocation;
use crate::storage::output::OutputSink;
use crate::storage::ranged::{RangedFetcher, RangedSettings};
use crate::telemetry;
use crate::worker::{Isolation, WorkerSettings, WorkerSlot};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot create the Kafka {what}: {source}; check the [kafka] settings")]
    Kafka {
        what: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot use the temporary directory {path}: {source}")]
    TempDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error("actor system error: {0}")]
    Mailbox(#[from] MailboxError),
    #[error("cannot start metrics: {0}")]
    Metrics(String),
    #[error(
        "the {0} actor stopped unexpectedly (see the panic above); exiting so the \
         orchestrator restarts the service and uncommitted requests are redelivered"
    )]
    ActorStopped(&'static str),
    #[error("cannot listen on {listen} (http.listen / PORT): {source}")]
    Http {
        listen: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the service until a termination signal; returns after draining.
pub async fn run(config: Config) -> Result<(), ServiceError> {
    let output = config.output_location().map_err(ServiceError::Config)?;
    let client_id = settings::client_id();
    let metrics_handle = telemetry::install().map_err(ServiceError::Metrics)?;
    let health = Arc::new(Health::default());

    // A GCS client is needed for gs:// outputs and any gs:// input; a purely local run
    // (file:// in and out) can do without credentials.
    let gcs = match gcs::client().await {
        Ok(c) => Some(Arc::new(c)),
        Err(e) if matches!(output, OutputLocation::Gcs { .. }) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "no GCS client; only file:// inputs can be served");
            None
        }
    };
    let temp_dir = config.temp_dir();
    std::fs::create_dir_all(&temp_dir).map_err(|source| ServiceError::TempDir {
        path: temp_dir.display().to_string(),
        source,
    })?;
    let swept = sweep_stale(&temp_dir, Duration::from_secs(3600));
    if swept > 0 {
        tracing::info!(swept, dir = %temp_dir.display(), "removed stale temporary slides");
    }

    let journal = Journal::open(
        &temp_dir,
        &journal_file(&config.kafka.consumer_group, &config.kafka.bootstrap_servers),
    )
    .map_err(|e| tracing::warn!(error = %e, dir = %temp_dir.display(), "no in-flight journal; restart loops will not be broken"))
    .ok();
    let auth = AuthContext::from_config(&config.kafka)?;
    let book = Arc::new(Mutex::new(Book::default()));
    let closing = Arc::new(AtomicBool::new(false));
    let context = ServiceContext {
        book: book.clone(),
        revocation_deadline: Duration::from_millis(config.pipeline.revocation_deadline_ms),
        closing: closing.clone(),
        auth: auth.clone(),
    };
    let consumer: StreamConsumer<ServiceContext> = settings::consumer(&config.kafka, &client_id)
        .create_with_context(context)
        .map_err(|source| ServiceError::Kafka {
            what: "consumer",
            source,
        })?;
    consumer
        .subscribe(&[&config.kafka.request_topic])
        .map_err(|source| ServiceError::Kafka {
            what: "subscription",
            source,
        })?;
    let consumer = Arc::new(consumer);
    let producer: FutureProducer<AuthContext> = settings::producer(&config.kafka, &client_id)
        .create_with_context(auth)
        .map_err(|source| ServiceError::Kafka {
            what: "producer",
            source,
        })?;

    let publisher = Publisher::new(
        producer,
        health.clone(),
        &config.kafka.response_topic,
        &config.kafka.dlq_topic,
    )
    .start();
    let uploader = Uploader {
        sink: Arc::new(OutputSink::new(output, gcs.clone())),
        retry: config.retry.clone(),
        timeout: Duration::from_millis(config.timeouts.upload_ms),
        publisher: publisher.clone(),
    }
    .start();
    let resizer = {
        let (uploader, publisher) = (uploader.clone(), publisher.clone());
        // Resize and encode share the resizer threads.
        for stage in ["resize", "encode"] {
            metrics::gauge!("wsi_thumbnail_stage_workers", "stage" => stage)
                .set(config.pipeline.resizer_threads.max(1) as f64);
        }
        SyncArbiter::start(config.pipeline.resizer_threads.max(1), move || Resizer {
            uploader: uploader.clone(),
            publisher: publisher.clone(),
        })
    };
    let decoder = {
        let (resizer, publisher) = (resizer.clone(), publisher.clone());
        let options = ThumbnailOptions {
            max_size: config.thumbnail.max_size,
            max_slide_pixels: config.thumbnail.max_slide_pixels,
            decoder: config.thumbnail.decoder,
        };
        let isolation = config.thumbnail.isolation;
        let mut settings = WorkerSettings::new(
            config.thumbnail.worker_memory_mb,
            Duration::from_millis(config.timeouts.decode_ms),
            temp_dir.clone(),
        );
        settings.log_json = config.log.json;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        metrics::gauge!("wsi_thumbnail_stage_workers", "stage" => "decode")
            .set(config.decoder_threads() as f64);
        tracing::info!(
            ?isolation,
            decoders = config.decoder_threads(),
            "decoder pool"
        );
        SyncArbiter::start(config.decoder_threads(), move || Decoder {
            options: options.clone(),
            engine: match isolation {
                Isolation::Process => {
                    Engine::Process(Box::new(WorkerSlot::start(settings.clone())))
                }
                Isolation::None => Engine::in_process(cores),
            },
            resizer: resizer.clone(),
            publisher: publisher.clone(),
        })
    };
    let fetcher = Fetcher {
        strategy: Arc::new(RangedFetcher {
            client: gcs.clone(),
            temp_dir: temp_dir.clone(),
            settings: RangedSettings {
                mode: config.storage.fetch,
                concurrency: config.storage.fetch_concurrency,
                max_size: config.thumbnail.max_size,
                max_slide_pixels: config.thumbnail.max_slide_pixels,
            },
            whole: WholeObjectFetcher::new(gcs, temp_dir),
        }),
        retry: config.retry.clone(),
        timeout: Duration::from_millis(config.timeouts.fetch_ms),
        decoder,
        publisher: publisher.clone(),
    }
    .start();
    Monitor {
        consumer: consumer.clone(),
        book: book.clone(),
        health: health.clone(),
        topic: config.kafka.request_topic.clone(),
        metrics: metrics_handle.clone(),
        interval: Duration::from_secs(5),
        reported: Arc::default(),
    }
    .start();
    let process_api = Arc::new(ProcessApi::new(
        fetcher.clone(),
        config.storage.input_policy(),
        config.storage.object_name.clone(),
        config.pipeline.max_in_flight,
        Duration::from_millis(config.http.process_timeout_ms),
    ));
    let tracker = OffsetTracker::new(
        consumer.clone(),
        book,
        fetcher.clone(),
        publisher.clone(),
        Limits {
            max_in_flight: config.pipeline.max_in_flight,
            max_in_flight_per_partition: config.pipeline.max_in_flight_per_partition,
            commit_interval: Duration::from_millis(config.kafka.commit_interval_ms.max(10)),
        },
        journal,
    )
    .start();
    publisher.do_send(SetTracker(tracker.clone()));
    let reader = PartitionReader::new(
        consumer,
        tracker.clone(),
        config.storage.input_policy(),
        config.storage.object_name.clone(),
    )
    .start();
    let stopped_actor: Arc<dyn Fn() -> Option<&'static str> + Send + Sync> = {
        let (tracker, reader, publisher, fetcher, uploader) = (
            tracker.clone(),
            reader.clone(),
            publisher.clone(),
            fetcher,
            uploader,
        );
        Arc::new(move || {
            [
                ("offset tracker", tracker.connected()),
                ("partition reader", reader.connected()),
                ("response publisher", publisher.connected()),
                ("fetcher", fetcher.connected()),
                ("uploader", uploader.connected()),
            ]
            .into_iter()
            .find(|(_, up)| !up)
            .map(|(name, _)| name)
        })
    };
    let alive: Liveness = {
        let stopped_actor = stopped_actor.clone();
        Arc::new(move || stopped_actor().is_none())
    };
    let access = ProcessAccess::load(
        config.http.process_enabled,
        config.http.process_token_file.as_deref(),
    )
    .map_err(|e| ServiceError::Config(e.to_string()))?;
    let server = http::server(
        &config.http.listen,
        health.clone(),
        alive,
        metrics_handle,
        process_api,
        access,
    )
    .map_err(|source| ServiceError::Http {
        listen: config.http.listen.clone(),
        source,
    })?;
    let server_handle = server.handle();
    actix_rt::spawn(server);
    tracing::info!(
        listen = %config.http.listen,
        topic = %config.kafka.request_topic,
        group = %config.kafka.consumer_group,
        client_id = %client_id,
        "serving"
    );

    let watchdog = async {
        loop {
            actix_rt::time::sleep(Duration::from_millis(500)).await;
            if let Some(name) = stopped_actor() {
                return name;
            }
        }
    };
    tokio::select! {
        _ = wait_for_signal() => {}
        name = watchdog => {
            health.start_draining();
            closing.store(true, Ordering::Relaxed);
            server_handle.stop(false).await;
            return Err(ServiceError::ActorStopped(name));
        }
    }
    tracing::info!("termination signal: draining");
    health.start_draining();
    reader.send(StopReading).await?;
    let grace = Duration::from_millis(config.pipeline.shutdown_grace_ms);
    let left = tracker.send(Drain { grace }).await?;
    // Nothing more will finish: revocations at close must not wait for it.
    closing.store(true, Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(
            left,
            "grace period over; unfinished requests stay uncommitted and will be redone"
        );
    } else {
        tracing::info!("drained; offsets committed");
    }
    server_handle.stop(true).await;
    Ok(())
}

async fn wait_for_signal() {
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
