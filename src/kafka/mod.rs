//! Kafka plumbing: client settings ([`settings`]), rebalance hooks ([`context`]),
//! commit lists ([`commit`]),
//! OAUTHBEARER tokens from Google credentials ([`oauth`]), topic creation
//! ([`topics`]) and which produce errors are the record's fault ([`produce_error`]).

pub mod commit;
pub mod context;
pub mod oauth;
pub mod produce_error;
pub mod quiet_logs;
pub mod settings;
pub mod topics;
