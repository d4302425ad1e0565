//! Service configuration: built-in defaults, then a TOML file (`--config`, else
//! `$WSI_THUMBNAIL_CONFIG`), then the contract's environment variables, layered with
//! figment (the layering crate Rocket and many services use, with errors that name the
//! offending key and source).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_with::{DurationMilliSeconds, serde_as};

use crate::delivery::limits::Limits;
use crate::slide::encode::PngCompression;
use crate::slide::{DEFAULT_MAX_SLIDE_PIXELS, DecoderChoice, ThumbnailOptions};
use crate::storage::location::{InputPolicy, OutputLocation, parse_output};
use crate::storage::ranged::FetchMode;
use crate::storage::retry::RetryConfig;
use crate::worker::{Isolation, WorkerSettings};

/// Environment variables of the contract and the keys they override.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("KAFKA_BOOTSTRAP_SERVER", "kafka.bootstrap_servers"),
    ("KAFKA_REQUEST_TOPIC", "kafka.request_topic"),
    ("KAFKA_RESPONSE_TOPIC", "kafka.response_topic"),
    ("KAFKA_DLQ_TOPIC", "kafka.dlq_topic"),
    ("KAFKA_CONSUMER_GROUP", "kafka.consumer_group"),
    ("THUMBNAIL_OUTPUT_BUCKET", "storage.output"),
];
pub const CONFIG_ENV: &str = "WSI_THUMBNAIL_CONFIG";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub storage: StorageConfig,
    pub thumbnail: ThumbnailConfig,
    pub pipeline: PipelineConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub retry: RetryConfig,
    pub timeouts: TimeoutConfig,
}

/// Per-attempt bounds on storage stages; a stage past its bound fails that attempt
/// with `timeout` (retried within the retry budget).
#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutConfig {
    #[serde(rename = "fetch_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub fetch: Duration,
    #[serde(rename = "upload_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub upload: Duration,
    /// One slide's open + read + reduce in a worker process; past it the worker is
    /// stopped and the slide becomes a `timeout` failure that is not retryable.
    #[serde(rename = "decode_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub decode: Duration,
}

#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub request_topic: String,
    pub response_topic: String,
    pub dlq_topic: String,
    pub consumer_group: String,
    /// librdkafka consumer properties, passed through verbatim (they win over ours).
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka producer properties, passed through verbatim.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
    /// How often contiguous offsets are committed.
    #[serde(rename = "commit_interval_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub commit_interval: Duration,
    pub topics: TopicsConfig,
    /// `google`: SASL_SSL + OAUTHBEARER with tokens from Google Application Default
    /// Credentials (GCP Managed Kafka); `none`: whatever `[kafka.consumer]` and
    /// `[kafka.producer]` say (PLAINTEXT, SSL, SCRAM, librdkafka's own OIDC).
    pub oauth: OAuthProvider,
    /// The service account email the token is for; found from the credentials (key
    /// file or metadata server) when empty.
    pub oauth_principal: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OAuthProvider {
    None,
    Google,
}

/// What `wsi-thumbnail topics ensure` creates (the seed's defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    pub partitions: i32,
    pub replication_factor: i32,
    pub request_retention_ms: i64,
    pub response_retention_ms: i64,
    pub dlq_retention_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `gs://BUCKET/PREFIX/`, a bare bucket name, or `file:///DIR/`.
    pub output: String,
    /// Object-name template: `{stem}`, `{name}`, `{slide_id}`, `{id}`, `{block_id}`, `{patient_id}`.
    pub object_name: String,
    /// Where slides are downloaded to; defaults to the system temp dir.
    pub temp_dir: Option<PathBuf>,
    /// Buckets requests may read from; empty allows any bucket.
    pub allowed_buckets: Vec<String>,
    /// Serve `file://` input links (local runs and tests only).
    pub allow_file_inputs: bool,
    /// How slides are read: `auto` (ranged reads where they pay), `ranged` or `whole`.
    pub fetch: FetchMode,
    /// Concurrent range requests per slide.
    pub fetch_concurrency: usize,
    /// Fetched bytes held in the service's memory at once, all requests together (every
    /// in-flight GET holds its piece, at most 4 MiB, until it is on disk).
    pub max_buffered_mb: u64,
    /// Bytes of slide copies on the temp disk, all requests together. A request waits
    /// for room; a slide needing more than all of it is `slide_too_large`.
    pub max_temp_disk_mb: u64,
    /// Byte ranges of plans being fetched, all requests together.
    pub max_planned_ranges: u64,
    /// DICOM series fetched at once (each lists a folder and reads every candidate's
    /// header).
    pub max_series_fetches: u64,
}

impl StorageConfig {
    /// The process-wide fetch budgets these keys set.
    pub fn budgets(&self) -> crate::storage::budget::Budgets {
        crate::storage::budget::Budgets::new(
            self.max_buffered_mb,
            self.max_temp_disk_mb,
            self.max_planned_ranges,
            self.max_series_fetches,
        )
    }

    pub fn input_policy(&self) -> InputPolicy {
        InputPolicy {
            allowed_buckets: self.allowed_buckets.clone(),
            allow_file_inputs: self.allow_file_inputs,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailConfig {
    pub max_size: u32,
    pub max_slide_pixels: u64,
    pub decoder: DecoderChoice,
    /// `process`: slides are decoded in disposable, limited worker processes; `none`:
    /// in the service process (trusted input only, or to measure the difference).
    pub isolation: Isolation,
    /// Address-space cap of one worker process; a slide past it is `slide_too_large`.
    pub worker_memory_mb: u64,
    /// `fast` (fdeflate) or `small` (zlib level 6: Pillow's size, more CPU).
    #[serde(default)]
    pub png_compression: PngCompression,
}

impl ThumbnailConfig {
    /// The slide engine's options. The engine does not know the file's other keys
    /// (isolation and the worker's memory belong to the service), so they are
    /// converted here rather than the engine's type being flattened into the file.
    pub fn options(&self) -> ThumbnailOptions {
        ThumbnailOptions {
            max_size: self.max_size,
            max_slide_pixels: self.max_slide_pixels,
            decoder: self.decoder,
            png_compression: self.png_compression,
        }
    }
}

#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Requests in flight across all partitions; reading waits when full.
    pub max_in_flight: usize,
    /// Requests in flight per partition; that partition pauses when full.
    pub max_in_flight_per_partition: usize,
    /// Decoder threads (0 = number of cores).
    pub decoder_threads: usize,
    /// Resize/encode threads.
    pub resizer_threads: usize,
    /// Drain time on SIGTERM/SIGINT before in-flight work is abandoned (uncommitted).
    #[serde(rename = "shutdown_grace_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub shutdown_grace: Duration,
    /// How long a revoked partition's in-flight requests may take to finish before it
    /// is released (what misses it is redone by the new owner). Keep it well below the
    /// consumer's `max.poll.interval.ms`.
    #[serde(rename = "revocation_deadline_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub revocation_deadline: Duration,
}

#[serde_as]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
    /// Longest a `POST /process` caller waits for its thumbnail (then 504 `timeout`).
    #[serde(rename = "process_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub process_timeout: Duration,
    /// Serve `POST /process` at all (404 when off).
    pub process_enabled: bool,
    /// A file holding the bearer token `POST /process` callers must present (else the
    /// `WSI_THUMBNAIL_PROCESS_TOKEN` environment variable; neither: no token).
    pub process_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter, e.g. `info` or `wsi_thumbnail=debug,rdkafka=warn`.
    pub level: String,
    /// Emit JSON lines instead of human-readable text.
    pub json: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kafka: KafkaConfig {
                bootstrap_servers: "localhost:9092".into(),
                request_topic: "wsi-thumbnail-req".into(),
                response_topic: "wsi-thumbnail-resp".into(),
                dlq_topic: "wsi-thumbnail-dlq".into(),
                consumer_group: "wsi-thumbnail-processor".into(),
                consumer: BTreeMap::new(),
                producer: BTreeMap::new(),
                commit_interval: Duration::from_secs(1),
                oauth: OAuthProvider::None,
                oauth_principal: String::new(),
                topics: TopicsConfig {
                    partitions: 10,
                    replication_factor: 1,
                    request_retention_ms: 7 * 24 * 3600 * 1000,
                    response_retention_ms: 30 * 24 * 3600 * 1000,
                    dlq_retention_ms: 30 * 24 * 3600 * 1000,
                },
            },
            storage: StorageConfig {
                output: "gs://my-thumbnails-bucket/".into(),
                object_name: "{stem}_thumbnail.png".into(),
                temp_dir: None,
                allowed_buckets: Vec::new(),
                allow_file_inputs: false,
                fetch: FetchMode::Auto,
                fetch_concurrency: 8,
                max_buffered_mb: 128,
                max_temp_disk_mb: 8192,
                max_planned_ranges: 1_000_000,
                max_series_fetches: 4,
            },
            thumbnail: ThumbnailConfig {
                max_size: 1024,
                max_slide_pixels: DEFAULT_MAX_SLIDE_PIXELS,
                decoder: DecoderChoice::Auto,
                isolation: Isolation::Process,
                worker_memory_mb: 2048,
                png_compression: PngCompression::Fast,
            },
            pipeline: PipelineConfig {
                max_in_flight: 16,
                max_in_flight_per_partition: 4,
                decoder_threads: 0,
                resizer_threads: 1,
                shutdown_grace: Duration::from_secs(30),
                revocation_deadline: Duration::from_secs(20),
            },
            http: HttpConfig {
                listen: "0.0.0.0:8080".into(),
                process_timeout: Duration::from_secs(300),
                process_enabled: false,
                process_token_file: None,
            },
            log: LogConfig {
                level: "info".into(),
                json: false,
            },
            retry: RetryConfig::default(),
            timeouts: TimeoutConfig {
                fetch: Duration::from_secs(600),
                upload: Duration::from_secs(120),
                decode: Duration::from_secs(120),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads the layered configuration. `file` is `--config`; when absent,
    /// `$WSI_THUMBNAIL_CONFIG` is used if set.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let from_env = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        let file = file.map(Path::to_path_buf).or(from_env);
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &file {
            if !path.exists() {
                return Err(ConfigError::Missing(path.clone()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let names: Vec<&str> = ENV_OVERRIDES.iter().map(|(env, _)| *env).collect();
        figment = figment.merge(Env::raw().only(&names).map(|name| {
            ENV_OVERRIDES
                .iter()
                .find(|(env, _)| name.as_str().eq_ignore_ascii_case(env))
                .map_or_else(|| name.as_str().to_string(), |(_, key)| key.to_string())
                .into()
        }));
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Ok(port) = std::env::var("PORT") {
            config.http.listen = with_port(&config.http.listen, &port)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what the type system cannot: parseable locations, sane budgets.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        self.output_location().map_err(ConfigError::Invalid)?;
        if !self.storage.object_name.contains('{') {
            return invalid("storage.object_name must use a placeholder such as {stem}, or every slide would overwrite one object".into());
        }
        if self.pipeline.max_in_flight == 0 || self.pipeline.max_in_flight_per_partition == 0 {
            return invalid(
                "pipeline.max_in_flight and max_in_flight_per_partition must be at least 1".into(),
            );
        }
        if self.thumbnail.isolation == Isolation::Process && self.thumbnail.worker_memory_mb < 256 {
            return invalid(
                "thumbnail.worker_memory_mb must be at least 256 (a worker needs that much address space to start)"
                    .into(),
            );
        }
        if self.timeouts.decode.is_zero() {
            return invalid("timeouts.decode_ms must be at least 1".into());
        }
        if self.thumbnail.max_size == 0 || self.thumbnail.max_size > 16384 {
            return invalid("thumbnail.max_size must be between 1 and 16384".into());
        }
        self.http.listen.parse::<SocketAddr>().map_err(|e| {
            ConfigError::Invalid(format!("http.listen `{}`: {e}", self.http.listen))
        })?;
        Ok(())
    }

    /// A copy safe to print: librdkafka properties that hold secrets (SASL and SSL
    /// passwords, OIDC client secrets, keys) are replaced, so `--check` output and
    /// logs never carry them.
    pub fn redacted(&self) -> Config {
        let mut copy = self.clone();
        for props in [&mut copy.kafka.consumer, &mut copy.kafka.producer] {
            for (key, value) in props.iter_mut() {
                let key = key.to_ascii_lowercase();
                if [
                    "password",
                    "secret",
                    "sasl.jaas",
                    "key.pem",
                    "certificate.pem",
                    "token",
                ]
                .iter()
                .any(|s| key.contains(s))
                {
                    *value = "<redacted>".into();
                }
            }
        }
        copy
    }

    pub fn output_location(&self) -> Result<OutputLocation, String> {
        parse_output(&self.storage.output)
    }

    /// Decoder threads (each with one worker process under `isolation = "process"`):
    /// one per core unless set.
    pub fn decoder_threads(&self) -> usize {
        match self.pipeline.decoder_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// The per-partition budget and commit cadence of the offset tracker (the global
    /// budget is the reader's gate, `delivery::room`).
    pub fn limits(&self) -> Limits {
        Limits {
            max_in_flight_per_partition: self.pipeline.max_in_flight_per_partition,
            // A commit per 10 ms at most, whatever the file says.
            commit_interval: self.kafka.commit_interval.max(Duration::from_millis(10)),
        }
    }

    /// What a decoder's worker process is started with.
    pub fn worker_settings(&self) -> WorkerSettings {
        let mut settings = WorkerSettings::new(
            self.thumbnail.worker_memory_mb,
            self.timeouts.decode,
            self.temp_dir(),
        );
        settings.log_json = self.log.json;
        settings
    }

    pub fn temp_dir(&self) -> PathBuf {
        self.storage
            .temp_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("wsi-thumbnail"))
    }
}

fn with_port(listen: &str, port: &str) -> Result<String, ConfigError> {
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|_| ConfigError::Invalid(format!("PORT `{port}` is not a port number")))?;
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_contracts() {
        let c = Config::default();
        assert_eq!(c.kafka.request_topic, "wsi-thumbnail-req");
        assert_eq!(c.kafka.consumer_group, "wsi-thumbnail-processor");
        assert_eq!(c.thumbnail.max_size, 1024);
        assert_eq!(c.http.listen, "0.0.0.0:8080");
        c.validate().unwrap();
    }

    #[test]
    fn secrets_are_redacted_for_printing() {
        let mut config = Config::default();
        for (k, v) in [
            ("sasl.password", "hunter2"),
            ("sasl.oauthbearer.client.secret", "s3cr3t-value"),
            ("ssl.key.pem", "-----BEGIN"),
            ("sasl.username", "svc"),
        ] {
            config.kafka.producer.insert(k.into(), v.into());
        }
        let printed = serde_json::to_string(&config.redacted()).unwrap();
        for secret in ["hunter2", "s3cr3t-value", "-----BEGIN"] {
            assert!(!printed.contains(secret), "{secret} printed");
        }
        assert!(printed.contains("svc"), "non-secrets stay readable");
    }

    #[test]
    fn port_replaces_only_the_port() {
        assert_eq!(with_port("0.0.0.0:8080", "9000").unwrap(), "0.0.0.0:9000");
        assert!(with_port("0.0.0.0:8080", "http").is_err());
    }
}
