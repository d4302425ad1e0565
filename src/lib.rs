//! wsi-thumbnail: whole-slide-image thumbnails and metadata, as a library, a one-shot
//! CLI and a Kafka service.
//!
//! - [`slide`]: the slide engine (a file in, a PNG and the contract's metadata out).
//! - [`actors`]: the service pipeline, assembled by [`actors::supervisor`].
//! - [`messages`]: the contract's payloads and the messages between actors.
//! - [`pipeline`]: offsets, per-key order and request preparation, as plain code.
//! - [`storage`], [`kafka`], [`config`]: the outside world.
//! - [`worker`]: disposable, limited worker processes that decode untrusted slides.
//! - [`fixtures`], [`tiff`]: generated slides for tests and benchmarks.

pub mod actors;
pub mod config;
pub mod error_kind;
pub mod fixtures;
pub mod health;
pub mod http;
pub mod kafka;
pub mod log_throttle;
pub mod messages;
pub mod pipeline;
pub mod process_access;
pub mod process_api;
pub mod slide;
pub mod storage;
pub mod telemetry;
pub mod tiff;
pub mod worker;

pub use error_kind::ErrorKind;
