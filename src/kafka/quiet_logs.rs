//! librdkafka's own log lines and global errors, at most a few a minute while the
//! broker is down.
//!
//! With the broker unreachable, librdkafka reports every failed connection, request
//! timeout and "all brokers down" from every client (consumer, producer, admin), and
//! the default context logs each one: about 45 warning and error lines a second here,
//! which floods the log pipeline and buries everything else. The contexts route them
//! through these throttles instead: the first line of a kind is logged at once, then
//! one per interval with the number held back.

use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::log_throttle::LogThrottle;

const INTERVAL: Duration = Duration::from_secs(15);
static LOG_PROBLEMS: LogThrottle = LogThrottle::new(INTERVAL);
static GLOBAL_ERRORS: LogThrottle = LogThrottle::new(INTERVAL);

/// `ClientContext::log`: warnings and worse are throttled, the rest passes as it is.
pub fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error
        | RDKafkaLogLevel::Warning => {
            if let Some(held_back) = LOG_PROBLEMS.allow() {
                tracing::warn!(target: "librdkafka", facility, held_back, "{message}");
            }
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}");
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", facility, "{message}");
        }
    }
}

/// `ClientContext::error`: a global client error (all brokers down, transport failure).
pub fn error(error: KafkaError, reason: &str) {
    if let Some(held_back) = GLOBAL_ERRORS.allow() {
        tracing::error!(error = %error, reason, held_back, "Kafka client error");
    }
}
