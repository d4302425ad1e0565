//! The service's actor tree (actix). Each actor moves messages and owns state; the
//! decisions live in plain modules ([`crate::pipeline`], [`crate::slide`],
//! [`crate::storage`]). Read them in the order a request meets them:
//! [`reader`], [`tracker`], [`fetcher`], [`decoder`], [`resizer`], [`uploader`],
//! [`publisher`]; [`supervisor`] assembles the tree.

pub mod decoder;
pub mod fetcher;
pub mod guard;
pub mod monitor;
pub mod publisher;
pub mod reader;
pub mod resizer;
pub mod supervisor;
pub mod tracker;
pub mod uploader;
