//! What can be wrong with a DICOM series, mapped once to the slide engine's failure kinds.

use std::path::Path;

use crate::slide::SlideError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DicomError {
    /// Headers, offset tables or frames that do not add up (`corrupt_slide`).
    #[error("{0}")]
    Corrupt(String),
    /// Well-formed but not something this service decodes, e.g. a transfer syntax
    /// other than JPEG baseline (`unsupported_format`).
    #[error("{0}")]
    Unsupported(String),
    /// A level larger than `thumbnail.max_slide_pixels` (`slide_too_large`).
    #[error("{width} x {height} pixels, more than the limit of {limit}")]
    TooLarge { width: u64, height: u64, limit: u64 },
}

impl DicomError {
    pub(crate) fn corrupt(reason: impl Into<String>) -> Self {
        DicomError::Corrupt(reason.into())
    }

    /// The engine's error for the slide at `path`.
    pub fn into_slide_error(self, path: &Path) -> SlideError {
        let path = path.to_path_buf();
        match self {
            DicomError::Corrupt(reason) => SlideError::Corrupt {
                path,
                reason: format!("DICOM: {reason}"),
            },
            DicomError::Unsupported(reason) => SlideError::Unsupported {
                path,
                reason: format!("DICOM: {reason}"),
            },
            DicomError::TooLarge {
                width,
                height,
                limit,
            } => SlideError::TooLarge {
                path,
                width,
                height,
                limit,
            },
        }
    }
}
