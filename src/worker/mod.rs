//! Disposable, limited worker processes for slide decoding.
//!
//! OpenSlide and the libraries under it (libtiff, libjpeg, OpenJPEG, GLib) crash, spin
//! and balloon on small crafted files; no list of fixes keeps up with that. So slides
//! are decoded in processes forked, one per slide, from a zygote of the same binary
//! (`wsi-thumbnail worker`), each with an address-space cap, a deadline enforced from
//! outside, a large decoding stack, no core dumps and a sandbox. A slide that kills its worker costs that worker
//! and becomes one failure record; the service process never runs slide code, and
//! no process ever holds two slides.
//!
//! - [`zygote`]: the one exec'd, limited, sandboxed process that forks a worker per
//!   slide, and the service's link to it.
//! - [`protocol`]: the frames on a worker's slide socket.
//! - [`process`]: one worker's handshake, and a request run under watch.
//! - [`pool`]: fresh workers forked ahead of need, from one long-lived thread.
//! - [`slide`]: the process that holds one slide (plan, thumbnail, gone), and how its
//!   end becomes a failure.
//! - [`outcome`]: how a worker's end maps to a failure kind.
//! - [`sandbox`]: what a worker may do.
//! - [`child`]: the worker's own main loop.

pub mod child;
pub mod cores;
pub mod outcome;
pub mod planner;
pub mod pool;
pub mod process;
pub mod protocol;
pub mod sandbox;
pub mod slide;
pub mod zygote;

pub use planner::SlidePlanner;
pub use pool::WorkerPool;
pub use process::WorkerSettings;
pub use slide::{DecodeFailure, SlideWorker};

/// Where slides are decoded.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// In disposable worker processes with memory, time and sandbox limits.
    #[default]
    Process,
    /// In the calling process (measuring the isolation's cost; trusted input only).
    None,
}
