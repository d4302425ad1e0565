//! The Google Cloud Storage client. `STORAGE_EMULATOR_HOST` (the standard variable)
//! points every call at an emulator with anonymous credentials; otherwise Application
//! Default Credentials are used, as on GKE and Cloud Run.

use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::retry_policy::RetryableErrors;

use super::error::StorageError;

pub const EMULATOR_ENV: &str = "STORAGE_EMULATOR_HOST";

pub async fn client() -> Result<Storage, StorageError> {
    // One attempt per call: our own retry loop (storage::retry) owns the budget, the
    // backoff and the retry metric, so that an outage becomes a failure record in
    // bounded time rather than an unbounded wait inside the client.
    let mut builder = Storage::builder().with_retry_policy(RetryableErrors.with_attempt_limit(1));
    if let Some(url) = emulator_endpoint() {
        tracing::info!(endpoint = %url, "using a storage emulator");
        builder = builder
            .with_endpoint(url)
            .with_credentials(Anonymous::new().build());
    }
    builder
        .build()
        .await
        .map_err(|e| StorageError::Client(e.to_string()))
}

/// The emulator's base URL from `STORAGE_EMULATOR_HOST` (a bare `host:port` means http).
fn emulator_endpoint() -> Option<String> {
    let host = std::env::var(EMULATOR_ENV).ok()?;
    Some(if host.contains("://") {
        host
    } else {
        format!("http://{host}")
    })
}

/// The bucket resource name the v2 API expects.
pub fn bucket_path(bucket: &str) -> String {
    format!("projects/_/buckets/{bucket}")
}

/// The object's size from the emulator's JSON API. Real GCS reports the stored size on
/// every read (`x-goog-stored-content-length`, which the client exposes as
/// `ObjectHighlights::size`); fake-gcs-server leaves that header out, so under
/// `STORAGE_EMULATOR_HOST` the ranged fetcher asks the metadata endpoint instead.
pub async fn emulator_object_size(bucket: &str, object: &str) -> Option<u64> {
    let base = emulator_endpoint()?;
    let encode = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let url = format!(
        "{}/storage/v1/b/{}/o/{}",
        base.trim_end_matches('/'),
        encode(bucket),
        encode(object)
    );
    // One client for the process: building one loads the system's root certificates,
    // which is far more work than the request.
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let body = CLIENT
        .get_or_init(reqwest::Client::new)
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .ok()?
        .bytes()
        .await
        .ok()?;
    let meta: serde_json::Value = serde_json::from_slice(&body).ok()?;
    // The JSON API writes 64-bit integers as strings.
    meta.get("size")?.as_str()?.parse().ok()
}
