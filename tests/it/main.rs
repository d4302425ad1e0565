//! Every integration test in one binary (as ripgrep does): one link step instead of one
//! per file, and the helpers in `support` compiled once, so a helper nothing uses is a
//! warning rather than something each file had to silence.
//!
//! Each module is one area of behaviour; test names carry it as a prefix
//! (`poison::a_worker_killed_mid_decode_loses_nothing`), so
//! `cargo nextest run -E 'test(/^poison::/)'` runs one area.
//!
//! Isolation: nextest runs every test in its own process, and a few tests rely on that
//! (see `poison::a_worker_inherits_no_secrets_no_descriptors_and_its_limits`, which sets
//! an environment variable and clears close-on-exec on a descriptor). Under plain
//! `cargo test` all of them share one process; run them with nextest, as CI does.

mod support;

mod architecture;
mod bad_input;
mod cli;
mod config;
mod crashes;
mod deploy;
mod dicom_codecs;
mod dicom_generated;
mod dicom_series;
mod dicom_shared;
mod engine_cmu;
mod engine_pyramids;
mod gcs_headers;
mod hostile;
mod isolation;
mod memory;
mod multi_file;
mod ndpi;
mod oauth;
mod operator_faults;
mod outage;
mod poison;
mod process_api;
mod ranged;
mod scaled_decode;
mod service;
mod supervision;
