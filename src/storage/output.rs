//! Writing thumbnails: to a GCS bucket and prefix, or to a local directory (atomically,
//! through a temporary file and a rename, so readers never see half a PNG).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use google_cloud_storage::client::Storage;

use super::error::StorageError;
use super::gcs::bucket_path;
use super::location::OutputLocation;

/// The probe object's name under the output prefix.
pub const PROBE_NAME: &str = ".wsi-thumbnail-probe";

pub struct OutputSink {
    location: OutputLocation,
    client: Option<Arc<Storage>>,
}

impl OutputSink {
    pub fn new(location: OutputLocation, client: Option<Arc<Storage>>) -> Self {
        OutputSink { location, client }
    }

    /// The output, for log lines: `gs://bucket/prefix` or the directory.
    pub fn describe(&self) -> String {
        self.location.link("")
    }

    /// The preflight and periodic check: writes a probe object and writes it again
    /// (a replacement needs the role a redelivered request needs), so that a missing
    /// bucket or role shows before any request meets it. The probe object stays (one
    /// object of a few bytes, `.wsi-thumbnail-probe`): the service's role need not
    /// include deleting.
    pub async fn probe(&self) -> Result<(), StorageError> {
        for round in [b"1", b"2"] {
            self.put(PROBE_NAME, Bytes::from_static(round)).await?;
        }
        Ok(())
    }

    /// Writes `png` under `name` (already checked by `location::object_name`) and
    /// returns the link to report.
    pub async fn put(&self, name: &str, png: Bytes) -> Result<String, StorageError> {
        let link = self.location.link(name);
        match &self.location {
            OutputLocation::Gcs { bucket, prefix } => {
                let client = self
                    .client
                    .as_ref()
                    .ok_or_else(|| StorageError::Client("no GCS client configured".into()))?;
                let write = |create_only: bool| {
                    let request = client
                        .write_object(bucket_path(bucket), format!("{prefix}{name}"), png.clone())
                        .set_content_type("image/png");
                    let request = if create_only {
                        request.set_if_generation_match(0)
                    } else {
                        request
                    };
                    request.send_buffered()
                };
                match write(false).await {
                    Ok(_) => {}
                    // A 403 on a write is either no role at all or a role that may
                    // create but not replace (roles/storage.objectCreator) meeting an
                    // object that exists: a redelivered request's thumbnail, written
                    // before the crash that kept its offset uncommitted. A create-only
                    // write tells them apart: GCS checks the role first, then answers
                    // 412 when the object exists.
                    Err(e) if e.http_status_code() == Some(403) => match write(true).await {
                        Ok(_) => {}
                        Err(e) if e.http_status_code() == Some(412) => kept_existing(&link),
                        Err(e) => return Err(StorageError::from_gcs(&link, &e)),
                    },
                    Err(e) => return Err(StorageError::from_gcs(&link, &e)),
                }
            }
            OutputLocation::Dir { path } => {
                let target: PathBuf = path.join(name);
                let local = |source: std::io::Error| StorageError::Local {
                    path: target.display().to_string(),
                    source,
                };
                let target2 = target.clone();
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    let dir = target2.parent().unwrap_or(std::path::Path::new("/"));
                    std::fs::create_dir_all(dir)?;
                    let mut temp = tempfile::Builder::new()
                        .prefix(".partial-")
                        .tempfile_in(dir)?;
                    std::io::Write::write_all(&mut temp, &png)?;
                    let file = temp.persist(&target2).map_err(|e| e.error)?;
                    use std::os::unix::fs::PermissionsExt;
                    file.set_permissions(std::fs::Permissions::from_mode(0o644))
                })
                .await
                .map_err(|e| local(std::io::Error::other(e)))?
                .map_err(local)?;
            }
        }
        Ok(link)
    }
}

static KEPT: crate::log_throttle::LogThrottle =
    crate::log_throttle::LogThrottle::new(std::time::Duration::from_secs(15));

/// The output may create objects but not replace them, and this one exists: it is the
/// same request's thumbnail (names are the slide's), so the request goes on with it.
fn kept_existing(link: &str) {
    crate::telemetry::record::output_kept();
    if let Some(held_back) = KEPT.allow() {
        tracing::warn!(
            %link,
            held_back,
            "the output bucket refuses to replace an existing thumbnail (the service's role \
             can create objects but not replace them): kept the existing one; grant \
             roles/storage.objectUser on the output bucket so that a re-sent request \
             refreshes its thumbnail"
        );
    }
}
