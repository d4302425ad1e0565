//! The service's configuration as an operator meets it: a file alone is enough, every
//! documented environment variable overrides its key, and `--check` validates.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::kafka::{CONSUMER_GROUP, DLQ_TOPIC, REQUEST_TOPIC, RESPONSE_TOPIC};

fn check(config: Option<&Path>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"));
    cmd.args(["serve", "--check"]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    for var in [
        "KAFKA_BOOTSTRAP_SERVER",
        "KAFKA_REQUEST_TOPIC",
        "KAFKA_RESPONSE_TOPIC",
        "KAFKA_DLQ_TOPIC",
        "KAFKA_CONSUMER_GROUP",
        "THUMBNAIL_OUTPUT_BUCKET",
        "PORT",
        "WSI_THUMBNAIL_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn effective(config: Option<&Path>, env: &[(&str, &str)]) -> Value {
    let out = check(config, env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const FILE: &str = r#"
[kafka]
bootstrap_servers = "file-broker:9092"
request_topic = "file-req"
response_topic = "file-resp"
dlq_topic = "file-dlq"
consumer_group = "file-group"
[kafka.consumer]
"session.timeout.ms" = "6000"
[kafka.producer]
"security.protocol" = "SASL_SSL"
[storage]
output = "gs://file-bucket/prefix/"
[thumbnail]
max_size = 512
[http]
listen = "127.0.0.1:9000"
"#;

#[test]
fn a_config_file_alone_sets_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, FILE).unwrap();
    let c = effective(Some(&path), &[]);
    assert_eq!(c["kafka"]["bootstrap_servers"], "file-broker:9092");
    assert_eq!(c["kafka"]["request_topic"], "file-req");
    assert_eq!(c["kafka"]["consumer"]["session.timeout.ms"], "6000");
    assert_eq!(c["kafka"]["producer"]["security.protocol"], "SASL_SSL");
    assert_eq!(c["storage"]["output"], "gs://file-bucket/prefix/");
    assert_eq!(c["thumbnail"]["max_size"], 512);
    assert_eq!(c["http"]["listen"], "127.0.0.1:9000");
    // The same file through $WSI_THUMBNAIL_CONFIG.
    let via_env = effective(None, &[("WSI_THUMBNAIL_CONFIG", path.to_str().unwrap())]);
    assert_eq!(via_env, c);
}

#[test]
fn each_environment_variable_overrides_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, FILE).unwrap();
    let cases: &[(&str, &str, &[&str], Value)] = &[
        (
            "KAFKA_BOOTSTRAP_SERVER",
            "env-broker:9093",
            &["kafka", "bootstrap_servers"],
            "env-broker:9093".into(),
        ),
        (
            "KAFKA_REQUEST_TOPIC",
            "env-req",
            &["kafka", "request_topic"],
            "env-req".into(),
        ),
        (
            "KAFKA_RESPONSE_TOPIC",
            "env-resp",
            &["kafka", "response_topic"],
            "env-resp".into(),
        ),
        (
            "KAFKA_DLQ_TOPIC",
            "env-dlq",
            &["kafka", "dlq_topic"],
            "env-dlq".into(),
        ),
        (
            "KAFKA_CONSUMER_GROUP",
            "env-group",
            &["kafka", "consumer_group"],
            "env-group".into(),
        ),
        (
            "THUMBNAIL_OUTPUT_BUCKET",
            "env-bucket",
            &["storage", "output"],
            "env-bucket".into(),
        ),
        ("PORT", "7070", &["http", "listen"], "127.0.0.1:7070".into()),
    ];
    for (var, value, key, expected) in cases {
        let c = effective(Some(&path), &[(var, value)]);
        let got = key.iter().fold(&c, |v, k| &v[k]);
        assert_eq!(got, expected, "{var}");
    }
}

#[test]
fn built_in_defaults_without_any_file() {
    let c = effective(None, &[]);
    assert_eq!(c["kafka"]["request_topic"], REQUEST_TOPIC);
    assert_eq!(c["kafka"]["response_topic"], RESPONSE_TOPIC);
    assert_eq!(c["kafka"]["dlq_topic"], DLQ_TOPIC);
    assert_eq!(c["kafka"]["consumer_group"], CONSUMER_GROUP);
    assert_eq!(c["storage"]["object_name"], "{stem}_thumbnail.png");
}

#[test]
fn the_shipped_configs_load() {
    for file in ["config/wsi-thumbnail.toml", "config/local.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        effective(Some(&path), &[]);
    }
}

#[test]
fn invalid_configs_are_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[kafka]\nbootstrap_server = \"typo\"\n").unwrap();
    let out = check(Some(&path), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bootstrap_server"));
    std::fs::write(&path, "[storage]\noutput = \"s3://nope/\"\n").unwrap();
    assert!(!check(Some(&path), &[]).status.success());
    let out = check(Some(&dir.path().join("missing.toml")), &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

/// The README's configuration reference lists exactly the keys `--check` prints, with
/// the defaults it prints.
#[test]
fn the_readme_reference_matches_the_effective_defaults() {
    fn leaves(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
        match value.as_object() {
            // librdkafka pass-through maps are one key each.
            Some(map)
                if !prefix.ends_with("kafka.consumer") && !prefix.ends_with("kafka.producer") =>
            {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            _ => out.push((prefix.to_string(), value.clone())),
        }
    }
    let mut defaults = Vec::new();
    leaves("", &effective(None, &[]), &mut defaults);
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let table: std::collections::HashMap<String, String> = readme
        .split("### Configuration reference")
        .nth(1)
        .expect("a configuration reference in the README")
        .split("\n#")
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((key.to_string(), cells.get(2)?.trim_matches('`').to_string()))
        })
        .collect();
    for (key, value) in &defaults {
        let documented = table.get(key).unwrap_or_else(|| {
            panic!("`{key}` is missing from the README's configuration reference")
        });
        let printed = match value {
            Value::String(s) => s.clone(),
            Value::Null => "null".into(),
            other => other.to_string(),
        };
        let free_text = ["system temp dir", "empty", "null"];
        assert!(
            *documented == printed
                || (printed.is_empty() && free_text.contains(&documented.as_str()))
                || (value.is_null() && free_text.contains(&documented.as_str())),
            "`{key}`: README says {documented}, the code's default is {printed}"
        );
    }
    assert_eq!(
        table.len(),
        defaults.len(),
        "README lists keys the code does not have"
    );
}
