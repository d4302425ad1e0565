//! The failure kinds of the external contract (`error.kind` in a failure record).
//!
//! Every typed error in the crate maps to exactly one of these, in one place per error
//! type, so the contract's vocabulary never drifts from the code.

use serde::{Deserialize, Serialize};

/// `error.kind` of the contract's failure record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidRequest,
    InputNotAllowed,
    SlideNotFound,
    UnsupportedFormat,
    CorruptSlide,
    SlideTooLarge,
    StorageUnavailable,
    Timeout,
    Internal,
}

impl ErrorKind {
    /// Every kind, in the contract's order.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::InvalidRequest,
        ErrorKind::InputNotAllowed,
        ErrorKind::SlideNotFound,
        ErrorKind::UnsupportedFormat,
        ErrorKind::CorruptSlide,
        ErrorKind::SlideTooLarge,
        ErrorKind::StorageUnavailable,
        ErrorKind::Timeout,
        ErrorKind::Internal,
    ];

    /// The contract's spelling, as used in metric labels and failure records.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::InputNotAllowed => "input_not_allowed",
            ErrorKind::SlideNotFound => "slide_not_found",
            ErrorKind::UnsupportedFormat => "unsupported_format",
            ErrorKind::CorruptSlide => "corrupt_slide",
            ErrorKind::SlideTooLarge => "slide_too_large",
            ErrorKind::StorageUnavailable => "storage_unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether trying the same request again later may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::StorageUnavailable | ErrorKind::Timeout)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_spelling_matches_as_str() {
        for kind in ErrorKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }
}
