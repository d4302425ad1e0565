//! Kafka plumbing: client settings ([`settings`]), rebalance hooks ([`context`]) and
//! topic creation ([`topics`]).

pub mod context;
pub mod settings;
pub mod topics;
