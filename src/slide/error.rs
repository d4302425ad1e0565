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
         Hamamatsu, Leica, MIRAX, Philips, Sakura, Trestle, Ventana and generic tiled TIFF"
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
    pub fn kind(&self) -> ErrorKind {
        match self {
            SlideError::NotFound { .. } => ErrorKind::SlideNotFound,
            SlideError::Unsupported { .. } => ErrorKind::UnsupportedFormat,
            SlideError::Corrupt { .. } => ErrorKind::CorruptSlide,
            SlideError::TooLarge { .. } => ErrorKind::SlideTooLarge,
            SlideError::Io { .. } | SlideError::Internal(_) => ErrorKind::Internal,
        }
    }
}
