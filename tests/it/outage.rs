//! A storage outage: the emulator stops for 10 s in the middle of a run and comes back.
//! Nothing is lost and the retries show in /metrics; then, with storage gone for good,
//! requests whose retry budget runs out become retryable `storage_unavailable` records.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::support::infra::{
    Broker, Gcs, Stack, ensure_topics, free_port, metric, service_config, stage_buckets,
};
use crate::support::kafka::{
    CONSUMER_GROUP, DLQ_TOPIC, REQUEST_TOPIC, RESPONSE_TOPIC, committed, end_offsets, produce,
    read_all,
};
use crate::support::request::numbered;
use crate::support::service::Service;
use crate::support::*;

const PARTITIONS: i32 = 4;

#[test]
fn a_storage_outage_loses_nothing_and_an_endless_one_becomes_failure_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gcs");
    stage_buckets(&data);
    let gcs_port = free_port();
    let gcs = Gcs::start_on(&data, gcs_port);
    let broker = Broker::start();
    let http = free_port();
    let config = service_config(
        dir.path(),
        &broker.bootstrap(),
        http,
        &format!(
            "[kafka.topics]\npartitions = {PARTITIONS}\n[storage]\noutput = \"gs://thumbs/\"\n\
             [pipeline]\nmax_in_flight = 6\nmax_in_flight_per_partition = 2\n\
             [retry]\nmax_attempts = 1000\ninitial_delay_ms = 200\nmax_delay_ms = 1000\nmax_total_delay_ms = 20000\n\
             [timeouts]\nfetch_ms = 5000\nupload_ms = 5000\n"
        ),
    );
    ensure_topics(&config);
    let mut service = Service::start(
        &config,
        &[(
            "STORAGE_EMULATOR_HOST",
            format!("http://127.0.0.1:{gcs_port}"),
        )],
    );

    let total = 60;
    produce(
        &broker.bootstrap(),
        REQUEST_TOPIC,
        &numbered(0..total, PARTITIONS),
    );
    let early = read_all(
        &broker.bootstrap(),
        RESPONSE_TOPIC,
        PARTITIONS,
        5,
        Duration::from_secs(60),
    );
    assert!(early.len() >= 5, "the run did not start");

    drop(gcs);
    std::thread::sleep(Duration::from_secs(10));
    let gcs = Gcs::start_on(&data, gcs_port);

    let responses = read_all(
        &broker.bootstrap(),
        RESPONSE_TOPIC,
        PARTITIONS,
        total,
        Duration::from_secs(120),
    );
    let ids: HashSet<String> = responses.iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), total, "every request answered after the outage");
    assert!(
        read_all(
            &broker.bootstrap(),
            DLQ_TOPIC,
            PARTITIONS,
            1,
            Duration::from_secs(1)
        )
        .is_empty()
    );
    let (_, text) = http_get(http, "/metrics").unwrap();
    let retries = metric(&text, "wsi_thumbnail_retries_total").unwrap_or(0.0);
    println!("retries during the outage: {retries}");
    assert!(retries > 0.0, "retries not visible in /metrics");

    // Storage gone for good: the budget (20 s of backoff) runs out.
    drop(gcs);
    produce(
        &broker.bootstrap(),
        REQUEST_TOPIC,
        &numbered(total..total + 3, PARTITIONS),
    );
    let failures = read_all(
        &broker.bootstrap(),
        DLQ_TOPIC,
        PARTITIONS,
        3,
        Duration::from_secs(90),
    );
    assert_eq!(failures.len(), 3);
    for f in &failures {
        let rec: Value = serde_json::from_slice(&f.value).unwrap();
        assert_eq!(rec["error"]["kind"], "storage_unavailable", "{rec}");
        assert_eq!(rec["error"]["retryable"], true);
        assert!(rec["attempts"].as_u64().unwrap() > 1, "{rec}");
    }
    assert!(service.terminate(Duration::from_secs(30)).success());
    let ends = end_offsets(&broker.bootstrap(), REQUEST_TOPIC, PARTITIONS);
    let done = committed(
        &broker.bootstrap(),
        CONSUMER_GROUP,
        REQUEST_TOPIC,
        PARTITIONS,
    );
    for p in 0..PARTITIONS as usize {
        assert_eq!(done[p], Some(ends[p]), "partition {p}");
    }
}

/// A broker that goes away: readiness turns 503 and the log stays readable, at most a
/// handful of warning and error lines for a 20 s outage instead of dozens a second.
#[test]
fn a_broker_outage_turns_readiness_off_and_stays_quiet_in_the_log() {
    let mut stack = Stack::start("[storage]\noutput = \"gs://thumbs/\"\n", |_| {});
    let log = stack.dir.path().join("serve.log");
    let mut service = Service::start_logged(
        &stack.config,
        &stack.env(&[("RUST_LOG", "warn,wsi_thumbnail=info".into())]),
        &log,
    );
    assert!(
        eventually(Duration::from_secs(60), || http_get(
            stack.http_port,
            "/readyz"
        )
        .is_some_and(|(code, _)| code == 200)),
        "ready before the outage"
    );
    let before = std::fs::read_to_string(&log).unwrap().len();
    stack.broker.kill();
    std::thread::sleep(Duration::from_secs(20));
    let readiness = http_get(stack.http_port, "/readyz").map(|(code, _)| code);
    let text = std::fs::read_to_string(&log).unwrap();
    let during: Vec<&str> = text[before..]
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    println!(
        "{} warning/error lines in 20 s:\n{}",
        during.len(),
        during.join("\n")
    );
    assert_eq!(readiness, Some(503), "not ready without a broker");
    assert!(!during.is_empty(), "the outage is reported");
    assert!(during.len() <= 20, "{} lines in 20 s", during.len());
    assert!(service.is_running(), "alive");
}
