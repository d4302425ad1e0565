//! The outside world the pipeline talks to, connected once before any actor starts:
//! the Kafka consumer (subscribed, with the rebalance hooks and the shared ledger) and
//! producer, the GCS client, the output location, the temporary directory (swept of
//! what a killed predecessor left) and the in-flight journal.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use google_cloud_storage::client::Storage;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;

use super::ServiceError;
use crate::config::Config;
use crate::delivery::journal::{Journal, journal_file};
use crate::delivery::ledger::Ledger;
use crate::kafka::context::ServiceContext;
use crate::kafka::oauth::AuthContext;
use crate::kafka::settings;
use crate::shutdown::Shutdown;
use crate::storage::fetch::sweep_stale;
use crate::storage::gcs;
use crate::storage::location::OutputLocation;

pub struct Clients {
    pub client_id: String,
    pub consumer: Arc<StreamConsumer<ServiceContext>>,
    pub producer: FutureProducer<AuthContext>,
    /// Shared by the tracker and the consumer's rebalance hooks.
    pub ledger: Arc<Mutex<Ledger>>,
    /// None on a purely local run (`file://` in and out) without credentials.
    pub gcs: Option<Arc<Storage>>,
    pub output: OutputLocation,
    pub temp_dir: PathBuf,
    pub journal: Option<Journal>,
    /// The restart-loop journal of `POST /process` calls (by link).
    pub http_journal: Option<Journal>,
}

impl Clients {
    pub async fn connect(config: &Config, shutdown: &Shutdown) -> Result<Clients, ServiceError> {
        let output = config.output_location().map_err(ServiceError::Config)?;
        // A GCS client is needed for gs:// outputs and any gs:// input; a purely local
        // run (file:// in and out) can do without credentials.
        let gcs = match gcs::client().await {
            Ok(c) => Some(Arc::new(c)),
            Err(e) if matches!(output, OutputLocation::Gcs { .. }) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "no GCS client; only file:// inputs can be served");
                None
            }
        };
        let temp_dir = prepare_temp_dir(config)?;
        let journal = Journal::open(
            &temp_dir,
            &journal_file(&config.kafka.consumer_group, &config.kafka.bootstrap_servers),
        )
        .map_err(|e| tracing::warn!(error = %e, dir = %temp_dir.display(), "no in-flight journal; restart loops will not be broken"))
        .ok();
        let http_journal = Journal::open(
            &temp_dir,
            &journal_file(
                &format!("{}-http", config.kafka.consumer_group),
                &config.kafka.bootstrap_servers,
            ),
        )
        .map_err(|e| tracing::warn!(error = %e, dir = %temp_dir.display(), "no /process journal; restart loops will not be broken"))
        .ok();
        let client_id = settings::client_id();
        let auth = AuthContext::from_config(&config.kafka)?;
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let context = ServiceContext {
            ledger: ledger.clone(),
            revocation_deadline: config.pipeline.revocation_deadline,
            shutdown: shutdown.clone(),
            auth: auth.clone(),
        };
        let kafka = |what| move |source| ServiceError::Kafka { what, source };
        let consumer: StreamConsumer<ServiceContext> =
            settings::consumer(&config.kafka, &client_id)
                .create_with_context(context)
                .map_err(kafka("consumer"))?;
        consumer
            .subscribe(&[&config.kafka.request_topic])
            .map_err(kafka("subscription"))?;
        let producer = settings::producer(&config.kafka, &client_id)
            .create_with_context(auth)
            .map_err(kafka("producer"))?;
        Ok(Clients {
            client_id,
            consumer: Arc::new(consumer),
            producer,
            ledger,
            gcs,
            output,
            temp_dir,
            journal,
            http_journal,
        })
    }
}

/// Creates the temporary directory and removes slides a killed predecessor left.
fn prepare_temp_dir(config: &Config) -> Result<PathBuf, ServiceError> {
    let temp_dir = config.temp_dir();
    std::fs::create_dir_all(&temp_dir).map_err(|source| ServiceError::TempDir {
        path: temp_dir.display().to_string(),
        source,
    })?;
    let swept = sweep_stale(&temp_dir, Duration::from_secs(3600));
    if swept > 0 {
        tracing::info!(swept, dir = %temp_dir.display(), "removed stale temporary slides");
    }
    Ok(temp_dir)
}
