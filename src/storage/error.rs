//! Storage failures, mapped to the contract's kinds.

use crate::error_kind::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("slide {0} does not exist: check the link and that the object was uploaded")]
    NotFound(String),
    #[error("storage refused access to {link} ({status}): grant the service account read access")]
    Forbidden { link: String, status: u16 },
    #[error("storage is unavailable for {link}: {message}")]
    Unavailable { link: String, message: String },
    #[error("local file error on {path}: {source}")]
    Local {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the storage client: {0}")]
    Client(String),
    #[error("storage did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// What the bytes read so far say about the slide, before any decoding (a DICOM
    /// series whose headers do not add up, say).
    #[error("{link}: {message}")]
    Slide {
        link: String,
        kind: ErrorKind,
        message: String,
    },
}

impl StorageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::NotFound(_) => ErrorKind::SlideNotFound,
            StorageError::Forbidden { .. } => ErrorKind::InputNotAllowed,
            StorageError::Unavailable { .. } => ErrorKind::StorageUnavailable,
            StorageError::Timeout(_) => ErrorKind::Timeout,
            StorageError::Local { .. } | StorageError::Client(_) => ErrorKind::Internal,
            StorageError::Slide { kind, .. } => *kind,
        }
    }

    /// Whether the same request may succeed later. A slide refused while planning is
    /// judged as its decode would be: a planning deadline is not worth another try.
    pub fn retryable(&self) -> bool {
        match self {
            StorageError::Slide {
                kind: ErrorKind::Timeout,
                ..
            } => false,
            other => other.kind().retryable(),
        }
    }

    /// Classifies a GCS client error for `link`.
    pub fn from_gcs(link: &str, e: &google_cloud_storage::Error) -> StorageError {
        match e.http_status_code() {
            Some(404) => StorageError::NotFound(link.to_string()),
            Some(status @ (401 | 403)) => StorageError::Forbidden {
                link: link.to_string(),
                status,
            },
            _ => StorageError::Unavailable {
                link: link.to_string(),
                message: e.to_string(),
            },
        }
    }
}
