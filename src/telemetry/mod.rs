//! Metrics: the Prometheus recorder behind the `metrics` facade, with histogram buckets
//! for the contract's timing metrics, and every contract metric registered at zero so a
//! scrape shows the full set from the first second.

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub mod record;

use self::record::*;
use crate::error_kind::ErrorKind;

/// The `reason` labels of `wsi_thumbnail_worker_restarts_total` (see `worker::outcome`).
const WORKER_RESTART_REASONS: [&str; 6] =
    ["crash", "timeout", "memory", "killed", "exit", "protocol"];

/// Installs the global recorder; call once per process.
pub fn install() -> Result<PrometheusHandle, String> {
    let seconds = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(STAGE_SECONDS.into()), &seconds)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(END_TO_END_SECONDS.into()), &seconds))
        .and_then(|b| b.install_recorder())
        .map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}

fn describe() {
    metrics::describe_counter!(REQUESTS, "Requests read from the request topic");
    metrics::describe_counter!(COMPLETED, "Responses acknowledged by the broker");
    metrics::describe_counter!(FAILED, "Failure records acknowledged, by error kind");
    metrics::describe_counter!(RETRIES, "Retried operations (storage, broker)");
    metrics::describe_gauge!(IN_FLIGHT, "Requests admitted and not yet done");
    metrics::describe_histogram!(STAGE_SECONDS, Unit::Seconds, "Time per pipeline stage");
    metrics::describe_histogram!(
        END_TO_END_SECONDS,
        Unit::Seconds,
        "From the request's Kafka timestamp to the response acknowledged"
    );
    metrics::describe_gauge!(COMMITTED_OFFSET, "Last committed offset, by partition");
    metrics::describe_gauge!(
        CONSUMER_LAG,
        "High watermark minus committed offset, by partition"
    );
    metrics::describe_counter!(
        SLIDE_BYTES_FETCHED,
        Unit::Bytes,
        "Slide bytes read from storage"
    );
    metrics::describe_counter!(
        FETCH_PATH,
        "Slides fetched, by path: ranged (planned byte ranges), whole, or local (file://)"
    );
    metrics::describe_counter!(
        OUTPUT_KEPT,
        "Thumbnails the output would not let the service replace (a create-only role), kept as they were"
    );
    metrics::describe_counter!(
        PIXEL_PATH,
        "Slides decoded, by pixel path: jpeg_tiles (direct tile decoding) or openslide"
    );
    metrics::describe_gauge!(
        STAGE_WORKERS,
        "Threads serving a CPU stage; rate(stage_seconds_sum) / workers is its utilisation"
    );
    metrics::describe_counter!(
        ACTOR_PANICS,
        "Panics caught in a stage actor, by stage (each failed one job)"
    );
    metrics::describe_counter!(
        HTTP_PROCESS,
        "POST /process requests answered, by outcome (ok or the error kind)"
    );
    metrics::describe_counter!(
        WORKER_RESTARTS,
        "Worker processes that stopped while holding a slide, by reason: crash (a signal from a slide library), \
         timeout (timeouts.decode_ms), memory (thumbnail.worker_memory_mb), killed (SIGKILL \
         from outside), exit, protocol"
    );
    metrics::describe_gauge!(
        SANDBOX_ENFORCED,
        "Whether a sandbox layer of the worker processes is enforced by the kernel (1) or \
         missing (0), by layer: seccomp, landlock (0 on gVisor, e.g. Cloud Run's first \
         generation), no_new_privs"
    );
    metrics::describe_counter!(
        BUDGET_WAITS,
        "Fetches that waited for a process-wide budget, by budget (its config key): \
         storage.max_buffered_mb, storage.max_temp_disk_mb, storage.max_planned_ranges, \
         storage.max_series_fetches"
    );
    metrics::describe_counter!(
        UNPUBLISHABLE,
        "Requests committed without an answer: the broker refused even their cut failure record"
    );
    metrics::describe_counter!(
        RESTART_LOOP,
        "Requests failed as `internal` because the service stopped twice while serving them"
    );
    for key in [
        "storage.max_buffered_mb",
        "storage.max_temp_disk_mb",
        "storage.max_planned_ranges",
        "storage.max_series_fetches",
    ] {
        metrics::counter!(BUDGET_WAITS, "budget" => key).absolute(0);
    }
    for reason in WORKER_RESTART_REASONS {
        metrics::counter!(WORKER_RESTARTS, "reason" => reason).absolute(0);
    }
    for name in [
        UNPUBLISHABLE,
        RESTART_LOOP,
        REQUESTS,
        COMPLETED,
        RETRIES,
        SLIDE_BYTES_FETCHED,
    ] {
        metrics::counter!(name).absolute(0);
    }
    for kind in ErrorKind::ALL {
        metrics::counter!(FAILED, "kind" => kind.as_str()).absolute(0);
    }
    metrics::gauge!(IN_FLIGHT).set(0.0);
    // Histograms appear once observed; register their series so scrapes show them.
    for stage in Stage::ALL {
        let _ = metrics::histogram!(STAGE_SECONDS, "stage" => stage.label());
    }
    let _ = metrics::histogram!(END_TO_END_SECONDS);
}
