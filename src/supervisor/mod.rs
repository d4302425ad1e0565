//! The supervisor: connects the clients ([`clients`]), builds the actor tree
//! ([`pipeline`]), serves HTTP, runs until SIGTERM or SIGINT, then drains: stop
//! reading, let in-flight requests finish within the grace period, commit, return.
//!
//! Supervision: stage actors survive their own panics (see [`crate::faults`]). The
//! actors that hold offsets or the producer (reader, tracker, publisher) cannot be
//! restarted in place without losing track of what is in flight, so when one of them
//! stops, `run` returns an error: the process exits non-zero, the orchestrator restarts
//! it, and the broker redelivers everything uncommitted (nothing is dropped).

pub mod clients;
pub mod output_check;
pub mod pipeline;

use std::sync::Arc;

use actix::MailboxError;

use self::clients::Clients;
use self::pipeline::Pipeline;
use crate::config::Config;
use crate::health::Health;
use crate::http::{self, Liveness};
use crate::kafka::oauth::OAuthError;
use crate::process_access::ProcessAccess;
use crate::shutdown::{Shutdown, termination_signal};
use crate::telemetry;

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
    let metrics = telemetry::install().map_err(ServiceError::Metrics)?;
    let shutdown = Shutdown::default();
    let health = Arc::new(Health::new(shutdown.clone()));
    let clients = Clients::connect(&config, &shutdown).await?;
    let client_id = clients.client_id.clone();
    let pipeline = Arc::new(Pipeline::start(
        &config,
        clients,
        &health,
        &shutdown,
        metrics.clone(),
    ));
    let alive: Liveness = {
        let pipeline = pipeline.clone();
        Arc::new(move || pipeline.stopped_actor().is_none())
    };
    let access = ProcessAccess::load(
        config.http.process_enabled,
        config.http.process_token_file.as_deref(),
    )
    .map_err(|e| ServiceError::Config(e.to_string()))?;
    let server = http::server(
        &config.http.listen,
        health,
        alive,
        metrics,
        pipeline.process_api.clone(),
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

    let stopped = tokio::select! {
        _ = termination_signal() => None,
        name = pipeline.watchdog() => Some(name),
    };
    shutdown.drain();
    if let Some(name) = stopped {
        shutdown.close();
        server_handle.stop(false).await;
        return Err(ServiceError::ActorStopped(name));
    }
    tracing::info!("termination signal: draining");
    let left = pipeline.drain(config.pipeline.shutdown_grace).await?;
    pipeline.process_api.close();
    // Nothing more will finish: revocations at close must not wait for it.
    shutdown.close();
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
