//! Slides in, thumbnails out: links and naming ([`location`]), the GCS client
//! ([`gcs`]), fetching slides to local disk ([`fetch`], whole or [`ranged`]) and writing thumbnails
//! ([`output`]).

pub mod error;
pub mod fetch;
pub mod gcs;
pub mod location;
pub mod output;
pub mod ranged;
pub mod ranges;
pub mod retry;
pub mod sparse;

pub use error::StorageError;
