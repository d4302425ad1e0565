//! Which produce errors are about the record and which about the system.
//!
//! The distinction decides between two very different reactions. A record the broker
//! will never take (too large, invalid) must not be retried: retrying forever stalls
//! its partition. An unreachable, unauthorised or misconfigured broker says nothing
//! about the record: the publisher keeps retrying (with backoff, quietly) and the
//! service reports itself not ready until it recovers.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What a failed produce says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceProblem {
    /// This record can never be produced as it is.
    Record,
    /// The broker or the connection; the same record may go through later.
    System,
}

/// Classifies a produce error.
pub fn classify(error: &KafkaError) -> ProduceProblem {
    match error.rdkafka_error_code() {
        Some(code) if is_record_specific(code) => ProduceProblem::Record,
        _ => ProduceProblem::System,
    }
}

fn is_record_specific(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::BadMessage
            | RDKafkaErrorCode::KeySerialization
            | RDKafkaErrorCode::ValueSerialization
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_validity_errors_are_the_records_everything_else_the_systems() {
        let produce = |code| KafkaError::MessageProduction(code);
        assert_eq!(
            classify(&produce(RDKafkaErrorCode::MessageSizeTooLarge)),
            ProduceProblem::Record
        );
        assert_eq!(
            classify(&produce(RDKafkaErrorCode::InvalidRecord)),
            ProduceProblem::Record
        );
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::MessageTimedOut,
        ] {
            assert_eq!(classify(&produce(code)), ProduceProblem::System, "{code:?}");
        }
    }
}
