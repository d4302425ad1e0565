//! librdkafka settings for the service, after the seeds and librdkafka's at-least-once
//! guidance: manual commits of stored offsets only, cooperative-sticky assignment, a long
//! poll interval (a slide can take a while), an idempotent `acks=all` producer with
//! compression. Properties from `[kafka.consumer]`/`[kafka.producer]` are applied last,
//! verbatim, so operators can override anything (security settings in particular).
//! With `kafka.oauth = "google"` the defaults also say SASL_SSL + OAUTHBEARER.
//!
//! OpenSSL is linked into the binary (rdkafka's `ssl-vendored`: one library fewer to
//! load and bind at every start, see README "Start-up"), and a vendored OpenSSL looks
//! for CA certificates under `/usr/local/ssl` (the `--openssldir` openssl-src builds
//! with), not where the system keeps them. So every client says `ssl.ca.location =
//! "probe"`: librdkafka then loads the first system CA store it finds
//! (`/etc/ssl/certs/ca-certificates.crt` on Debian, the Red Hat and Alpine paths too).
//! Not when `SSL_CERT_FILE` or `SSL_CERT_DIR` is set: OpenSSL's default paths honour
//! those, and the probe would not. An operator's own `ssl.ca.location` still wins, as
//! every property does.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

use crate::config::{KafkaConfig, OAuthProvider};

/// `wsi-thumbnail-<host>-<random>`: unique per process, recognisable in broker logs.
pub fn client_id() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into());
    let suffix: u32 = rand::random();
    format!("wsi-thumbnail-{host}-{suffix:08x}")
}

fn build(
    kafka: &KafkaConfig,
    base: &[(&str, String)],
    overrides: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    if let Some(location) = default_ca_location(&|name| std::env::var_os(name).is_some()) {
        cfg.set("ssl.ca.location", location);
    }
    for (k, v) in base {
        cfg.set(*k, v);
    }
    if kafka.oauth == OAuthProvider::Google {
        cfg.set("security.protocol", "SASL_SSL");
        cfg.set("sasl.mechanism", "OAUTHBEARER");
    }
    for (k, v) in overrides {
        cfg.set(k, v);
    }
    cfg
}

/// Where TLS clients look for CA certificates unless told: the system's store, probed,
/// unless OpenSSL's own variables name one (`SSL_CERT_FILE`, `SSL_CERT_DIR`).
fn default_ca_location(is_set: &dyn Fn(&str) -> bool) -> Option<&'static str> {
    (!is_set("SSL_CERT_FILE") && !is_set("SSL_CERT_DIR")).then_some("probe")
}

pub fn consumer(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    build(
        kafka,
        &[
            ("bootstrap.servers", kafka.bootstrap_servers.clone()),
            ("group.id", kafka.consumer_group.clone()),
            ("client.id", client_id.to_string()),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
            ("auto.offset.reset", "earliest".into()),
            ("partition.assignment.strategy", "cooperative-sticky".into()),
            ("max.poll.interval.ms", "900000".into()),
            ("enable.partition.eof", "false".into()),
            // Latency (issue 14). Apache Kafka answers a waiting fetch as soon as
            // `fetch.min.bytes` are readable, so the wait only bounds an empty poll;
            // tansu 0.6 holds every fetch for up to the wait, data or not. 25 ms keeps
            // an idle request's wait short on both, for 40 empty fetches a second per
            // broker connection while idle (2 at librdkafka's 500).
            ("fetch.wait.max.ms", "25".into()),
            ("fetch.min.bytes", "1".into()),
            // A leader move stalls a partition for 100 ms, not 500.
            ("fetch.error.backoff.ms", "100".into()),
            // Requests are units of seconds of work, not a stream: a thousand queued
            // records is plenty, and a pause throws away whatever was pre-fetched.
            ("queued.min.messages", "1000".into()),
            ("queued.max.messages.kbytes", "8192".into()),
            // With the thresholds above, librdkafka's 1 s backoff once they are
            // reached would leave the queue empty for up to a second.
            ("fetch.queue.backoff.ms", "20".into()),
        ],
        &kafka.consumer,
    )
}

pub fn producer(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    build(
        kafka,
        &[
            ("bootstrap.servers", kafka.bootstrap_servers.clone()),
            ("client.id", client_id.to_string()),
            ("enable.idempotence", "true".into()),
            ("acks", "all".into()),
            ("compression.type", "zstd".into()),
            ("linger.ms", "5".into()),
            ("message.timeout.ms", "60000".into()),
        ],
        &kafka.producer,
    )
}

/// Admin operations (topic creation) use the producer's connection settings.
pub fn admin(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    build(
        kafka,
        &[
            ("bootstrap.servers", kafka.bootstrap_servers.clone()),
            ("client.id", client_id.to_string()),
        ],
        &kafka.producer,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use rdkafka::consumer::Consumer;

    #[test]
    fn pass_through_properties_win() {
        let mut kafka = Config::default().kafka;
        kafka
            .consumer
            .insert("session.timeout.ms".into(), "6000".into());
        kafka
            .consumer
            .insert("auto.offset.reset".into(), "latest".into());
        let cfg = consumer(&kafka, "c");
        assert_eq!(cfg.get("session.timeout.ms"), Some("6000"));
        assert_eq!(cfg.get("auto.offset.reset"), Some("latest"));
        assert_eq!(cfg.get("enable.auto.commit"), Some("false"));
        assert_eq!(producer(&kafka, "c").get("acks"), Some("all"));
        assert!(client_id().starts_with("wsi-thumbnail-"));
        assert_eq!(cfg.get("sasl.mechanism"), None);
        kafka.oauth = OAuthProvider::Google;
        kafka
            .producer
            .insert("security.protocol".into(), "SASL_PLAINTEXT".into());
        assert_eq!(
            consumer(&kafka, "c").get("sasl.mechanism"),
            Some("OAUTHBEARER")
        );
        assert_eq!(
            consumer(&kafka, "c").get("security.protocol"),
            Some("SASL_SSL")
        );
        assert_eq!(
            producer(&kafka, "c").get("security.protocol"),
            Some("SASL_PLAINTEXT")
        );
    }

    /// Captures librdkafka's log lines.
    #[derive(Default)]
    struct Captured(std::sync::Mutex<Vec<String>>);

    impl rdkafka::ClientContext for Captured {
        fn log(&self, _: rdkafka::config::RDKafkaLogLevel, _: &str, message: &str) {
            self.0.lock().expect("log").push(message.to_string());
        }
    }

    impl rdkafka::consumer::ConsumerContext for Captured {}

    /// The CA-store lines a TLS client of this binary logs when it starts, on a machine
    /// without OpenSSL's variables (this one may set them).
    fn ca_store_loaded(kafka: &KafkaConfig) -> Vec<String> {
        let mut cfg = consumer(kafka, "c");
        if cfg.get("ssl.ca.location").is_none()
            && let Some(location) = default_ca_location(&|_| false)
        {
            cfg.set("ssl.ca.location", location);
        }
        cfg.set("bootstrap.servers", "127.0.0.1:9")
            .set("security.protocol", "SSL")
            .set("debug", "security")
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        let client: rdkafka::consumer::BaseConsumer<Captured> = cfg
            .create_with_context(Captured::default())
            .expect("a TLS client");
        // Log lines reach the context through the client's queue, when it is polled.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut ssl_lines = Vec::new();
        while std::time::Instant::now() < deadline {
            let _ = client.poll(std::time::Duration::from_millis(50));
            let lines = client.context().0.lock().expect("log").clone();
            ssl_lines = lines
                .into_iter()
                .filter(|l| l.contains("CA certificate"))
                .collect();
            if !ssl_lines.is_empty() {
                break;
            }
        }
        ssl_lines
    }

    #[test]
    fn openssl_s_own_variables_replace_the_probe() {
        // Every client takes the decision, made on this process's environment.
        let here = default_ca_location(&|name| std::env::var_os(name).is_some());
        let kafka = Config::default().kafka;
        assert_eq!(consumer(&kafka, "c").get("ssl.ca.location"), here);
        assert_eq!(producer(&kafka, "c").get("ssl.ca.location"), here);
        assert_eq!(admin(&kafka, "c").get("ssl.ca.location"), here);
        assert_eq!(default_ca_location(&|_| false), Some("probe"));
        assert_eq!(default_ca_location(&|name| name == "SSL_CERT_FILE"), None);
        assert_eq!(default_ca_location(&|name| name == "SSL_CERT_DIR"), None);
    }

    #[test]
    fn a_tls_client_trusts_the_system_ca_store_unless_given_its_own() {
        let mut kafka = Config::default().kafka;
        let loaded = ca_store_loaded(&kafka);
        let system = [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/cert.pem",
            "/etc/ssl/certs",
        ];
        assert!(
            loaded
                .iter()
                .any(|l| system.iter().any(|path| l.contains(&format!("\"{path}\"")))),
            "no system CA store loaded: {loaded:?}"
        );
        // An operator's CA location replaces the probe.
        kafka
            .consumer
            .insert("ssl.ca.location".into(), "/etc/ssl/certs".into());
        let loaded = ca_store_loaded(&kafka);
        assert!(
            loaded
                .iter()
                .any(|l| l.contains("from directory /etc/ssl/certs"))
                && !loaded.iter().any(|l| l.contains("Setting default")),
            "the operator's location was not the one loaded: {loaded:?}"
        );
    }
}
