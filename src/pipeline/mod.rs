//! The bookkeeping and decisions behind the pipeline, as plain code the actors call:
//! contiguous offsets per partition, per-key ordering, preparing a record, and the
//! journal that breaks restart loops.

pub mod book;
pub mod commit_metadata;
pub mod journal;
pub mod key_order;
pub mod offsets;
pub mod prepare;
