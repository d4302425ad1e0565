//! The Google Cloud Storage client, and the one path every slide read takes
//! ([`GcsObject::open`]: the whole-object download and the ranged reads alike).
//! `STORAGE_EMULATOR_HOST` (the standard variable) points every call at an emulator with
//! anonymous credentials; otherwise Application Default Credentials are used, as on GKE
//! and Cloud Run.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::model_ext::ReadRange;
use google_cloud_storage::read_object::ReadObjectResponse;
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
pub fn emulator_endpoint() -> Option<String> {
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

/// One GCS object.
pub struct GcsObject {
    pub client: Arc<Storage>,
    pub bucket: String,
    pub object: String,
}

/// One GET of a [`GcsObject`] under way: what the response said about the object, and
/// its bytes as they arrive.
pub struct GcsRead {
    /// The object's size as the response reported it (`x-goog-stored-content-length`):
    /// 0 when the store left it out (fake-gcs-server) or the object is empty.
    pub size: u64,
    /// The generation that answered; 0 where the store did not say.
    pub generation: i64,
    /// `None` for an empty object, which has no bytes to stream.
    response: Option<ReadObjectResponse>,
    link: String,
}

impl GcsObject {
    /// `gs://bucket/object`, for errors and logs.
    pub fn link(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.object)
    }

    /// Starts a GET of `range` ([`ReadRange::all`] for the whole object), pinned to
    /// `generation` unless that is 0. One attempt: the caller's retry loop
    /// ([`super::retry`]) owns the retries.
    pub async fn open(&self, range: ReadRange, generation: i64) -> Result<GcsRead, StorageError> {
        let link = self.link();
        let mut request = self
            .client
            .read_object(bucket_path(&self.bucket), &self.object)
            .set_read_range(range);
        if generation > 0 {
            request = request.set_generation(generation);
        }
        let response = match request.send().await {
            Ok(r) => r,
            // A range that starts at 0 is unsatisfiable only for an empty object.
            Err(e) if e.http_status_code() == Some(416) => {
                return Ok(GcsRead {
                    size: 0,
                    generation: 0,
                    response: None,
                    link,
                });
            }
            // A pinned generation that is gone means the object was replaced while we
            // read it: transient, so the retry starts over on the new version.
            Err(e) if generation > 0 && e.http_status_code() == Some(404) => {
                return Err(StorageError::Unavailable {
                    link,
                    message: "the object was replaced while it was being read".into(),
                });
            }
            Err(e) => return Err(StorageError::from_gcs(&link, &e)),
        };
        let highlights = response.object();
        Ok(GcsRead {
            size: u64::try_from(highlights.size).unwrap_or(0),
            generation: highlights.generation,
            response: Some(response),
            link,
        })
    }
}

impl GcsRead {
    /// The next bytes of the response, or `None` at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, StorageError> {
        let Some(response) = self.response.as_mut() else {
            return Ok(None);
        };
        response
            .next()
            .await
            .transpose()
            .map_err(|e| StorageError::from_gcs(&self.link, &e))
    }

    /// The rest of the response in one buffer: for ranged reads, whose size the caller
    /// bounds (a whole download streams with [`GcsRead::next`] instead).
    pub async fn collect(mut self) -> Result<Bytes, StorageError> {
        let mut bytes = BytesMut::new();
        while let Some(chunk) = self.next().await? {
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes.freeze())
    }
}

/// The object's size from the emulator's JSON API. Real GCS reports the stored size on
/// every read (`x-goog-stored-content-length`, which the client exposes as
/// `ObjectHighlights::size`); fake-gcs-server leaves that header out, so under
/// `STORAGE_EMULATOR_HOST` the ranged fetcher asks the metadata endpoint instead.
pub async fn emulator_object_size(bucket: &str, object: &str) -> Option<u64> {
    let base = emulator_endpoint()?;
    let url = format!(
        "{}/storage/v1/b/{}/o/{}",
        base.trim_end_matches('/'),
        encode(bucket),
        encode(object)
    );
    let body = http_client()
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

/// A path segment or query value, percent-encoded for the JSON API.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// One HTTP client for the process's JSON API calls: building one loads the system's
/// root certificates, which is far more work than a request.
pub fn http_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}
