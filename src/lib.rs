//! wsi-thumbnail: whole-slide-image thumbnails and metadata, as a library, a one-shot
//! CLI and (later) a Kafka service.
//!
//! - [`slide`]: the slide engine (a file in, a PNG and the contract's metadata out).
//! - [`fixtures`]: deterministic generated slides for tests and benchmarks.
//! - [`tiff`]: the small TIFF reader/writer both of them need.

pub mod error_kind;
pub mod fixtures;
pub mod slide;
pub mod tiff;

pub use error_kind::ErrorKind;
