//! Metrics: the Prometheus recorder behind the `metrics` facade, with histogram buckets
//! for the contract's timing metrics, and every contract metric registered at zero so a
//! scrape shows the full set from the first second.

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error_kind::ErrorKind;

const STAGES: [&str; 6] = ["fetch", "decode", "resize", "encode", "upload", "publish"];
/// The `reason` labels of `wsi_thumbnail_worker_restarts_total` (see `worker::outcome`).
const WORKER_RESTART_REASONS: [&str; 6] =
    ["crash", "timeout", "memory", "killed", "exit", "protocol"];

/// Installs the global recorder; call once per process.
pub fn install() -> Result<PrometheusHandle, String> {
    let seconds = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("wsi_thumbnail_stage_seconds".into()),
            &seconds,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("wsi_thumbnail_end_to_end_seconds".into()),
                &seconds,
            )
        })
        .and_then(|b| b.install_recorder())
        .map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}

fn describe() {
    metrics::describe_counter!(
        "wsi_thumbnail_requests_total",
        "Requests read from the request topic"
    );
    metrics::describe_counter!(
        "wsi_thumbnail_completed_total",
        "Responses acknowledged by the broker"
    );
    metrics::describe_counter!(
        "wsi_thumbnail_failed_total",
        "Failure records acknowledged, by error kind"
    );
    metrics::describe_counter!(
        "wsi_thumbnail_retries_total",
        "Retried operations (storage, broker)"
    );
    metrics::describe_gauge!(
        "wsi_thumbnail_in_flight",
        "Requests admitted and not yet done"
    );
    metrics::describe_histogram!(
        "wsi_thumbnail_stage_seconds",
        Unit::Seconds,
        "Time per pipeline stage"
    );
    metrics::describe_histogram!(
        "wsi_thumbnail_end_to_end_seconds",
        Unit::Seconds,
        "From the request's Kafka timestamp to the response acknowledged"
    );
    metrics::describe_gauge!(
        "wsi_thumbnail_committed_offset",
        "Last committed offset, by partition"
    );
    metrics::describe_gauge!(
        "wsi_thumbnail_consumer_lag",
        "High watermark minus committed offset, by partition"
    );
    metrics::describe_counter!(
        "wsi_thumbnail_slide_bytes_fetched_total",
        Unit::Bytes,
        "Slide bytes read from storage"
    );
    metrics::describe_counter!(
        "wsi_thumbnail_fetch_path_total",
        "Slides fetched, by path: ranged (planned byte ranges), whole, or local (file://)"
    );
    metrics::describe_gauge!(
        "wsi_thumbnail_stage_workers",
        "Threads serving a CPU stage; rate(stage_seconds_sum) / workers is its utilisation"
    );
    metrics::describe_counter!(
        "wsi_thumbnail_actor_panics_total",
        "Panics caught in a stage actor, by stage (each failed one job)"
    );
    metrics::describe_counter!(
        "wsi_thumbnail_http_process_total",
        "POST /process requests answered, by outcome (ok or the error kind)"
    );
    metrics::describe_counter!(
        "wsi_thumbnail_worker_restarts_total",
        "Decoder worker processes replaced, by reason: crash (a signal from a slide library), \
         timeout (timeouts.decode_ms), memory (thumbnail.worker_memory_mb), killed (SIGKILL \
         from outside), exit, protocol"
    );
    metrics::describe_counter!(
        "wsi_thumbnail_unpublishable_total",
        "Requests committed without an answer: the broker refused even their cut failure record"
    );
    metrics::describe_counter!(
        "wsi_thumbnail_restart_loop_total",
        "Requests failed as `internal` because the service stopped twice while serving them"
    );
    for reason in WORKER_RESTART_REASONS {
        metrics::counter!("wsi_thumbnail_worker_restarts_total", "reason" => reason).absolute(0);
    }
    for name in [
        "wsi_thumbnail_unpublishable_total",
        "wsi_thumbnail_restart_loop_total",
        "wsi_thumbnail_requests_total",
        "wsi_thumbnail_completed_total",
        "wsi_thumbnail_retries_total",
        "wsi_thumbnail_slide_bytes_fetched_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    for kind in ErrorKind::ALL {
        metrics::counter!("wsi_thumbnail_failed_total", "kind" => kind.as_str()).absolute(0);
    }
    metrics::gauge!("wsi_thumbnail_in_flight").set(0.0);
    // Histograms appear once observed; register their series so scrapes show them.
    for stage in STAGES {
        let _ = metrics::histogram!("wsi_thumbnail_stage_seconds", "stage" => stage);
    }
    let _ = metrics::histogram!("wsi_thumbnail_end_to_end_seconds");
}
