//! The service's actors (actix). Each actor moves messages and owns state; the
//! decisions live in plain modules ([`crate::delivery`], [`crate::admission`],
//! [`crate::slide`], [`crate::storage`]). No actor imports another: each is handed
//! the `Recipient`s of the messages it sends (see [`crate::supervisor::pipeline`]).
//! Read them in the order a request meets them: [`reader`], [`tracker`], [`fetcher`],
//! [`decoder`], [`resizer`], [`uploader`], [`publisher`]; [`stage`] is what the four
//! stages between tracker and publisher share, and [`monitor`] watches the outside.

pub mod decoder;
pub mod fetcher;
pub mod monitor;
pub mod publisher;
pub mod reader;
pub mod resizer;
pub mod stage;
pub mod tracker;
pub mod uploader;
