//! Kafka plumbing: client settings ([`settings`]), rebalance hooks ([`context`]),
//! OAUTHBEARER tokens from Google credentials ([`oauth`]) and topic creation
//! ([`topics`]).

pub mod context;
pub mod oauth;
pub mod settings;
pub mod topics;
