//! Slides in, thumbnails out: links and naming ([`location`]), the GCS client
//! ([`gcs`]), fetching slides to local disk ([`fetch`]: the whole object, or [`ranged`]:
//! only the bytes a thumbnail needs) and writing thumbnails ([`output`]).

pub mod budget;
pub mod disk_room;
pub mod error;
pub mod fetch;
pub mod gcs;
pub mod location;
pub mod output;
pub mod output_fault;
pub mod ranged;
pub mod retry;

pub use error::StorageError;
