//! The folder a slide's link points into. A DICOM whole-slide image is one instance file
//! per level (or more), and a link names only one of them: the others are found beside
//! it, as OpenSlide 4 finds them on local disk (contract §1). [`ObjectFolder`] lists a
//! folder and opens its objects for ranged reads; a GCS prefix ([`GcsFolder`]) in the
//! service, a local directory ([`LocalFolder`]) in tests and benchmarks.
//!
//! GCS listing goes through the JSON API (`objects.list` with a `/` delimiter, so
//! sub-folders are not descended) because the storage client lists over gRPC only,
//! which emulators do not serve; the request carries the same Application Default
//! Credentials the client uses.

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use google_cloud_auth::credentials::{AccessTokenCredentials, Builder};
use google_cloud_storage::client::Storage;
use serde::Deserialize;

use super::object::{FileObject, RangeRead};
use crate::storage::error::StorageError;
use crate::storage::gcs::{GcsObject, emulator_endpoint, encode, http_client};

/// Most objects a folder listing looks at. A series has one instance per level (tens);
/// a folder of thousands is a bucket layout this lookup was not meant for.
pub const MAX_LISTED: usize = 10_000;

const READ_ONLY_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_only";
const GCS_JSON_API: &str = "https://storage.googleapis.com";

/// One object in a folder: its name inside the folder, its size and its generation
/// (0 where the store has none), so reading it needs no lookup of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    pub generation: i64,
}

/// A folder of objects read by ranges.
pub trait ObjectFolder: Send + Sync {
    /// The objects directly in the folder (not in sub-folders). A folder holding more
    /// than [`MAX_LISTED`] is refused ([`too_large`]) rather than cut.
    fn list(&self) -> BoxFuture<'_, Result<Vec<Listed>, StorageError>>;
    /// One object of the folder, by its name in it (`sub/name` for one in a sub-folder).
    fn object(&self, name: &str) -> Box<dyn RangeRead + '_>;
    /// The sub-folder `name` (a plain name), e.g. a MIRAX slide's companion folder.
    fn child(&self, name: &str) -> Box<dyn ObjectFolder + '_>;
    /// For error messages.
    fn link(&self) -> String;
}

/// A local directory.
pub struct LocalFolder {
    pub dir: PathBuf,
}

impl ObjectFolder for LocalFolder {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Listed>, StorageError>> {
        Box::pin(async move {
            let local = |source: std::io::Error| StorageError::Local {
                path: self.dir.display().to_string(),
                source,
            };
            let mut listed = Vec::new();
            // A folder that does not exist holds nothing (as a GCS prefix would).
            let entries = match std::fs::read_dir(&self.dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                entries => entries.map_err(local)?,
            };
            for entry in entries {
                let entry = entry.map_err(local)?;
                let meta = entry.metadata().map_err(local)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if meta.is_file() && is_plain_name(&name) {
                    listed.push(Listed {
                        name,
                        size: meta.len(),
                        generation: 0,
                    });
                }
                if listed.len() > MAX_LISTED {
                    return Err(too_large(self.link()));
                }
            }
            Ok(listed)
        })
    }

    fn object(&self, name: &str) -> Box<dyn RangeRead + '_> {
        Box::new(FileObject {
            path: self.dir.join(name),
        })
    }

    fn child(&self, name: &str) -> Box<dyn ObjectFolder + '_> {
        Box::new(LocalFolder {
            dir: self.dir.join(name),
        })
    }

    fn link(&self) -> String {
        format!("file://{}/", self.dir.display())
    }
}

/// A GCS prefix ending in `/` (or the bucket's root, `""`).
pub struct GcsFolder {
    pub client: Arc<Storage>,
    pub bucket: String,
    pub prefix: String,
}

impl GcsFolder {
    /// The folder holding `object`.
    pub fn of(client: Arc<Storage>, bucket: &str, object: &str) -> GcsFolder {
        let prefix = object
            .rfind('/')
            .map_or(String::new(), |i| object[..=i].to_string());
        GcsFolder {
            client,
            bucket: bucket.to_string(),
            prefix,
        }
    }
}

/// One page of `objects.list` (only the fields asked for).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    items: Vec<Item>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    name: String,
    /// The JSON API writes 64-bit integers as strings.
    size: String,
    #[serde(default)]
    generation: Option<String>,
}

impl ObjectFolder for GcsFolder {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Listed>, StorageError>> {
        Box::pin(async move {
            let (base, token) = match emulator_endpoint() {
                Some(base) => (base, None),
                None => (GCS_JSON_API.to_string(), Some(self.access_token().await?)),
            };
            let url = format!(
                "{}/storage/v1/b/{}/o",
                base.trim_end_matches('/'),
                encode(&self.bucket)
            );
            let mut listed = Vec::new();
            let mut page_token: Option<String> = None;
            loop {
                let mut page_url = format!(
                    "{url}?prefix={}&delimiter=%2F&fields={}",
                    encode(&self.prefix),
                    encode("items(name,size,generation),nextPageToken")
                );
                if let Some(t) = page_token.take() {
                    page_url.push_str(&format!("&pageToken={}", encode(&t)));
                }
                let page = self.page(&page_url, token.as_deref()).await?;
                for item in page.items {
                    let Some(name) = item.name.strip_prefix(&self.prefix) else {
                        continue;
                    };
                    if !is_plain_name(name) {
                        continue;
                    }
                    let size = item.size.parse().map_err(|_| {
                        self.unavailable(format!(
                            "the listing gave {name} the size {:?}",
                            item.size
                        ))
                    })?;
                    let generation = item
                        .generation
                        .as_deref()
                        .and_then(|g| g.parse().ok())
                        .unwrap_or(0);
                    listed.push(Listed {
                        name: name.to_string(),
                        size,
                        generation,
                    });
                }
                if listed.len() > MAX_LISTED {
                    return Err(too_large(self.link()));
                }
                match page.next_page_token {
                    Some(t) => page_token = Some(t),
                    None => break,
                }
            }
            Ok(listed)
        })
    }

    fn object(&self, name: &str) -> Box<dyn RangeRead + '_> {
        Box::new(GcsObject {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            object: format!("{}{name}", self.prefix),
        })
    }

    fn child(&self, name: &str) -> Box<dyn ObjectFolder + '_> {
        Box::new(GcsFolder {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            prefix: format!("{}{name}/", self.prefix),
        })
    }

    fn link(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.prefix)
    }
}

/// The refusal of a folder too large to list: the slide exists, but its series cannot
/// be told apart from thousands of other objects.
pub fn too_large(link: String) -> StorageError {
    StorageError::Slide {
        link,
        kind: crate::error_kind::ErrorKind::UnsupportedFormat,
        message: format!(
            "the folder holds more than {MAX_LISTED} objects, more than a DICOM series is \
             looked up in (the cap is {MAX_LISTED}); keep each slide's series in a folder of \
             its own"
        ),
    }
}

/// A name that is one path component: never empty, `.`, `..` or holding a separator or
/// NUL, so a hostile object name cannot place a copy outside its temporary folder.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

impl GcsFolder {
    async fn page(&self, url: &str, token: Option<&str>) -> Result<Page, StorageError> {
        let mut request = http_client().get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            404 => return Err(StorageError::NotFound(self.link())),
            401 | 403 => {
                return Err(StorageError::Forbidden {
                    link: self.link(),
                    status,
                });
            }
            _ => return Err(self.unavailable(format!("listing answered {status}"))),
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| self.unavailable(e.to_string()))?;
        serde_json::from_slice(&body)
            .map_err(|e| self.unavailable(format!("the listing is not what GCS sends: {e}")))
    }

    async fn access_token(&self) -> Result<String, StorageError> {
        // Built once: google-cloud-auth caches the token and refreshes it before expiry.
        static CREDENTIALS: std::sync::OnceLock<Result<AccessTokenCredentials, String>> =
            std::sync::OnceLock::new();
        let credentials = CREDENTIALS
            .get_or_init(|| {
                Builder::default()
                    .with_scopes([READ_ONLY_SCOPE])
                    .build_access_token_credentials()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| StorageError::Client(format!("no Google credentials for listing: {e}")))?;
        credentials
            .access_token()
            .await
            .map(|t| t.token)
            .map_err(|e| self.unavailable(format!("cannot get an access token: {e}")))
    }

    fn unavailable(&self, message: String) -> StorageError {
        StorageError::Unavailable {
            link: self.link(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_the_folder_are_not_plain() {
        assert!(is_plain_name("level-0.dcm"));
        for name in ["", ".", "..", "a/b", "a\0b"] {
            assert!(!is_plain_name(name), "{name:?}");
        }
    }

    #[tokio::test]
    async fn a_local_folder_lists_its_files_not_its_sub_folders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.dcm"), b"12345").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("b.dcm"), b"1").unwrap();
        let folder = LocalFolder {
            dir: dir.path().to_path_buf(),
        };
        let listed = folder.list().await.unwrap();
        assert_eq!(
            listed,
            vec![Listed {
                name: "a.dcm".into(),
                size: 5,
                generation: 0,
            }]
        );
    }
}
