//! Typed recording helpers: every metric of the contract is written here, by name, so
//! the rest of the code says what happened (`record::completed()`) and a metric's name
//! and labels live in one place (next to their descriptions in [`super`]).

use std::time::Duration;

use crate::error_kind::ErrorKind;

/// The pipeline stages, as the `stage` label of `wsi_thumbnail_stage_seconds`,
/// `wsi_thumbnail_stage_workers` and `wsi_thumbnail_actor_panics_total`, and as the
/// stage names of fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Fetch,
    Decode,
    Resize,
    Encode,
    Upload,
    Publish,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Fetch,
        Stage::Decode,
        Stage::Resize,
        Stage::Encode,
        Stage::Upload,
        Stage::Publish,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Decode => "decode",
            Stage::Resize => "resize",
            Stage::Encode => "encode",
            Stage::Upload => "upload",
            Stage::Publish => "publish",
        }
    }
}

pub const STAGE_SECONDS: &str = "wsi_thumbnail_stage_seconds";
pub const END_TO_END_SECONDS: &str = "wsi_thumbnail_end_to_end_seconds";
pub const REQUESTS: &str = "wsi_thumbnail_requests_total";
pub const COMPLETED: &str = "wsi_thumbnail_completed_total";
pub const FAILED: &str = "wsi_thumbnail_failed_total";
pub const SKIPPED: &str = "wsi_thumbnail_skipped_total";
pub const RETRIES: &str = "wsi_thumbnail_retries_total";
pub const IN_FLIGHT: &str = "wsi_thumbnail_in_flight";
pub const COMMITTED_OFFSET: &str = "wsi_thumbnail_committed_offset";
pub const CONSUMER_LAG: &str = "wsi_thumbnail_consumer_lag";
pub const SLIDE_BYTES_FETCHED: &str = "wsi_thumbnail_slide_bytes_fetched_total";
pub const FETCH_PATH: &str = "wsi_thumbnail_fetch_path_total";
pub const OUTPUT_KEPT: &str = "wsi_thumbnail_output_kept_total";
pub const PIXEL_PATH: &str = "wsi_thumbnail_pixel_path_total";
pub const STAGE_WORKERS: &str = "wsi_thumbnail_stage_workers";
pub const ACTOR_PANICS: &str = "wsi_thumbnail_actor_panics_total";
pub const HTTP_PROCESS: &str = "wsi_thumbnail_http_process_total";
pub const WORKER_RESTARTS: &str = "wsi_thumbnail_worker_restarts_total";
pub const SANDBOX_ENFORCED: &str = "wsi_thumbnail_sandbox_enforced";
pub const BUDGET_WAITS: &str = "wsi_thumbnail_budget_waits_total";
pub const UNPUBLISHABLE: &str = "wsi_thumbnail_unpublishable_total";
pub const RESTART_LOOP: &str = "wsi_thumbnail_restart_loop_total";
pub const TOKEN_REFRESHES: &str = "wsi_thumbnail_kafka_token_refreshes_total";

pub fn stage_seconds(stage: Stage, took: Duration) {
    metrics::histogram!(STAGE_SECONDS, "stage" => stage.label()).record(took.as_secs_f64());
}

pub fn stage_workers(stage: Stage, threads: usize) {
    metrics::gauge!(STAGE_WORKERS, "stage" => stage.label()).set(threads as f64);
}

/// From the request's Kafka timestamp to now (its answer acknowledged).
pub fn end_to_end_since(kafka_timestamp_ms: i64) {
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let took_ms = (now_ms as i64 - kafka_timestamp_ms).max(0);
    metrics::histogram!(END_TO_END_SECONDS).record(took_ms as f64 / 1000.0);
}

pub fn request_admitted() {
    metrics::counter!(REQUESTS).increment(1);
}

pub fn request_skipped() {
    metrics::counter!(SKIPPED).increment(1);
}

pub fn completed() {
    metrics::counter!(COMPLETED).increment(1);
}

pub fn failed(kind: ErrorKind) {
    metrics::counter!(FAILED, "kind" => kind.as_str()).increment(1);
}

pub fn retried() {
    metrics::counter!(RETRIES).increment(1);
}

pub fn in_flight(requests: usize) {
    metrics::gauge!(IN_FLIGHT).set(requests as f64);
}

pub fn committed_offset(partition: i32, offset: i64) {
    metrics::gauge!(COMMITTED_OFFSET, "partition" => partition.to_string()).set(offset as f64);
}

pub fn consumer_lag(partition: i32, lag: i64) {
    metrics::gauge!(CONSUMER_LAG, "partition" => partition.to_string()).set(lag as f64);
}

/// A slide on local disk: how many bytes it took and which path fetched it.
pub fn slide_fetched(bytes: u64, path: &'static str) {
    metrics::counter!(SLIDE_BYTES_FETCHED).increment(bytes);
    metrics::counter!(FETCH_PATH, "path" => path).increment(1);
}

/// A slide decoded: which pixel path read it ([`crate::slide::PixelPath::label`]).
pub fn pixel_path(path: &'static str) {
    metrics::counter!(PIXEL_PATH, "path" => path).increment(1);
}

pub fn actor_panic(stage: Stage) {
    metrics::counter!(ACTOR_PANICS, "stage" => stage.label()).increment(1);
}

/// A `POST /process` answer: `ok` or the failure's kind.
pub fn http_process(outcome: Result<(), ErrorKind>) {
    let label = outcome.map_or_else(ErrorKind::as_str, |()| "ok");
    metrics::counter!(HTTP_PROCESS, "outcome" => label).increment(1);
}

/// A fetch waited for a process-wide budget (`key` is its config key).
/// A thumbnail the output would not let the service replace, kept as it was.
pub fn output_kept() {
    metrics::counter!(OUTPUT_KEPT).increment(1);
}

pub fn budget_wait(key: &'static str) {
    metrics::counter!(BUDGET_WAITS, "budget" => key).increment(1);
}

/// Whether a sandbox layer holds in the worker processes (set by every new zygote).
pub fn sandbox_enforced(layer: String, enforced: bool) {
    metrics::gauge!(SANDBOX_ENFORCED, "layer" => layer).set(if enforced { 1.0 } else { 0.0 });
}

pub fn worker_restart(reason: &'static str) {
    metrics::counter!(WORKER_RESTARTS, "reason" => reason).increment(1);
}

pub fn unpublishable() {
    metrics::counter!(UNPUBLISHABLE).increment(1);
}

pub fn restart_loop_broken() {
    metrics::counter!(RESTART_LOOP).increment(1);
}

pub fn token_refreshed() {
    metrics::counter!(TOKEN_REFRESHES).increment(1);
}
