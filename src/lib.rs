//! wsi-thumbnail: whole-slide-image thumbnails and metadata, as a library, a one-shot
//! CLI and a Kafka service.
//!
//! - [`slide`]: the slide engine (a file in, a PNG and the contract's metadata out).
//! - [`supervisor`]: connects the clients, builds the actor tree, runs and drains it.
//! - [`actors`]: the service pipeline's actors, each knowing only messages.
//! - [`messages`]: the contract's payloads and the messages between actors.
//! - [`admission`]: a request's value to a job or a failure (validation, naming).
//! - [`delivery`]: offsets, the ledger, per-key order and the journal, as plain code.
//! - [`dicom`]: DICOM whole-slide series (headers, levels, frames) from byte prefixes.
//! - [`storage`], [`kafka`], [`config`]: the outside world.
//! - [`worker`]: disposable, limited worker processes that decode untrusted slides.
//! - [`fixtures`], [`tiff`]: generated slides for tests and benchmarks.

pub mod actors;
pub mod admission;
pub mod config;
pub mod delivery;
pub mod error_kind;
pub mod faults;
pub mod fixtures;
pub mod formats;
pub mod health;
pub mod http;
pub mod kafka;
pub mod log_throttle;
pub mod messages;
pub mod naming;
pub mod planning;
pub mod process_access;
pub mod process_api;
pub mod shutdown;
pub mod slide;
pub mod storage;
pub mod supervisor;
pub mod telemetry;
pub mod tiff;
pub mod worker;

pub use error_kind::ErrorKind;
