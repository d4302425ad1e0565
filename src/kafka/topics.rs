//! `wsi-thumbnail topics ensure`: creates the request, response and dead-letter topics
//! with the configured partitions, replication and retention. Existing topics are left
//! as they are, so it is safe to run on every deploy.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};

use super::oauth::AuthContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    #[error(
        "cannot reach the broker at {servers}: {source}; check kafka.bootstrap_servers and security settings"
    )]
    Client {
        servers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(transparent)]
    OAuth(#[from] super::oauth::OAuthError),
    #[error("creating topic {topic} failed: {code}")]
    Create { topic: String, code: String },
}

/// What happened to each topic: created, or already there.
pub async fn ensure(
    kafka: &KafkaConfig,
    client_id: &str,
) -> Result<Vec<(String, bool)>, TopicsError> {
    let auth = AuthContext::from_config(kafka)?;
    let admin: AdminClient<AuthContext> = super::settings::admin(kafka, client_id)
        .create_with_context(auth)
        .map_err(|source| TopicsError::Client {
            servers: kafka.bootstrap_servers.clone(),
            source,
        })?;
    let t = &kafka.topics;
    let specs = [
        (&kafka.request_topic, t.request_retention_ms),
        (&kafka.response_topic, t.response_retention_ms),
        (&kafka.dlq_topic, t.dlq_retention_ms),
    ];
    let retention: Vec<String> = specs.iter().map(|(_, r)| r.to_string()).collect();
    let topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&retention)
        .map(|((name, _), retention)| {
            NewTopic::new(
                name,
                t.partitions,
                TopicReplication::Fixed(t.replication_factor),
            )
            .set("retention.ms", retention)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(|source| TopicsError::Client {
            servers: kafka.bootstrap_servers.clone(),
            source,
        })?;
    results
        .into_iter()
        .map(|r| match r {
            Ok(topic) => Ok((topic, true)),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => Ok((topic, false)),
            Err((topic, code)) => Err(TopicsError::Create {
                topic,
                code: code.to_string(),
            }),
        })
        .collect()
}
