//! The bookkeeping and decisions behind the pipeline, as plain code the actors call:
//! contiguous offsets per partition, per-key ordering, and preparing a record.

pub mod book;
pub mod commit_metadata;
pub mod key_order;
pub mod offsets;
pub mod prepare;
