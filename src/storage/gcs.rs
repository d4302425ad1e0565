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
    if let Ok(host) = std::env::var(EMULATOR_ENV) {
        let url = if host.contains("://") {
            host
        } else {
            format!("http://{host}")
        };
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

/// The bucket resource name the v2 API expects.
pub fn bucket_path(bucket: &str) -> String {
    format!("projects/_/buckets/{bucket}")
}
