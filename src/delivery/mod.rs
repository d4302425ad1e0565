//! At-least-once delivery, as plain code the actors call: contiguous offsets per
//! partition, the ledger of assigned partitions, per-key ordering, the commit metadata
//! that remembers finished offsets above the commit point, and the journal that breaks
//! restart loops.

pub mod commit_metadata;
pub mod journal;
pub mod key_order;
pub mod ledger;
pub mod limits;
pub mod link_journal;
pub mod offsets;
pub mod room;
