//! What can go wrong turning a slide file into a thumbnail, mapped once to the
//! contract's failure kinds. Messages say what happened and what the user can do.

use std::path::PathBuf;

use crate::error_kind::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum SlideError {
    #[error("slide {path} does not exist: check the path or object name")]
    NotFound { path: PathBuf },

    #[error(
        "{path} is not a slide format this service reads ({reason}); supported are Aperio, \
         Hamamatsu, Leica, MIRAX, Philips, Sakura, Trestle, Ventana, generic tiled TIFF and \
         DICOM whole-slide images (JPEG, JPEG 2000, HTJ2K or uncompressed frames)"
    )]
    Unsupported { path: PathBuf, reason: String },

    #[error(
        "{path} cannot be read as a slide ({reason}); the file may be truncated or damaged: upload it again"
    )]
    Corrupt { path: PathBuf, reason: String },

    #[error(
        "{path} declares {width} x {height} pixels, more than the limit of {limit} pixels \
         (thumbnail.max_slide_pixels); raise the limit if the slide is genuine"
    )]
    TooLarge {
        path: PathBuf,
        width: u64,
        height: u64,
        limit: u64,
    },

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("internal error while making the thumbnail: {0}")]
    Internal(String),
}

impl SlideError {
    /// The message for a failure record: the error itself, except that a library
    /// running out of memory is described as what it is, not as damage.
    pub fn describe(&self) -> String {
        match self {
            SlideError::Corrupt { path, reason } if mentions_memory_exhaustion(reason) => {
                format!(
                    "decoding {} ran out of memory under thumbnail.worker_memory_mb ({reason}); \
                     raise the limit if the slide is genuine",
                    path.display()
                )
            }
            other => other.to_string(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            SlideError::NotFound { .. } => ErrorKind::SlideNotFound,
            SlideError::Unsupported { .. } => ErrorKind::UnsupportedFormat,
            SlideError::Corrupt { reason, .. } if mentions_memory_exhaustion(reason) => {
                ErrorKind::SlideTooLarge
            }
            SlideError::Corrupt { .. } => ErrorKind::CorruptSlide,
            SlideError::TooLarge { .. } => ErrorKind::SlideTooLarge,
            SlideError::Io { .. } | SlideError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Whether a library's error says it ran out of memory (libjpeg's "Insufficient
/// memory", GLib's and libc's wording): under the worker's memory cap that is a slide
/// too large to decode, not a damaged one.
pub fn mentions_memory_exhaustion(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    [
        "insufficient memory",
        "out of memory",
        "cannot allocate memory",
        "failed to allocate",
        // OpenJPEG, when the tile buffer cannot be allocated.
        "exceeds system limits",
    ]
    .iter()
    .any(|m| reason.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_out_of_memory_is_too_large_not_corrupt() {
        let oom = SlideError::Corrupt {
            path: "s.svs".into(),
            reason: "JPEG error: Insufficient memory (case 4)".into(),
        };
        assert_eq!(oom.kind(), ErrorKind::SlideTooLarge);
        let damaged = SlideError::Corrupt {
            path: "s.svs".into(),
            reason: "Premature end of JPEG file".into(),
        };
        assert_eq!(damaged.kind(), ErrorKind::CorruptSlide);
    }
}
