//! Supervision on a real run: a stage that panics (injected with
//! `WSI_THUMBNAIL_INJECT_PANIC`) fails the job it held with one `internal` failure
//! record, goes on serving the requests behind it, and the process stays alive and
//! commits to the end offsets.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::infra::{Stack, metric};
use crate::support::kafka::{
    CONSUMER_GROUP, DLQ_TOPIC, REQUEST_TOPIC, RESPONSE_TOPIC, committed, end_offsets, produce,
    read_all,
};
use crate::support::request::Request;
use crate::support::service::Service;
use crate::support::*;

const STAGES: [&str; 4] = ["fetch", "decode", "resize", "upload"];

#[test]
fn a_panicking_stage_fails_its_job_and_keeps_serving() {
    let stack = Stack::start(
        "[kafka.topics]\npartitions = 1\n[storage]\noutput = \"gs://thumbs/\"\n",
        |_| {},
    );
    let (port, broker) = (stack.http_port, &stack.broker);
    let inject: Vec<String> = STAGES.iter().map(|s| format!("{s}:panic-{s}")).collect();
    let mut service = Service::start(
        &stack.config,
        &stack.env(&[("WSI_THUMBNAIL_INJECT_PANIC", inject.join(","))]),
    );

    // Good requests around and between the poisoned ones, all on one partition, so the
    // ones after a panic prove the stage still serves.
    let mut records = Vec::new();
    for (i, stage) in STAGES.iter().enumerate() {
        for j in 0..3 {
            records.push(format!("good-{i}-{j}"));
        }
        records.push(format!("panic-{stage}"));
    }
    records.extend((0..3).map(|j| format!("good-tail-{j}")));
    let values: Vec<(i32, String, Vec<u8>)> = records
        .iter()
        .map(|slide| {
            let value = Request::new(format!("id-{slide}")).slide(slide).bytes();
            (0, slide.clone(), value)
        })
        .collect();
    produce(&broker.bootstrap(), REQUEST_TOPIC, &values);
    let good = records.len() - STAGES.len();

    let responses = read_all(
        &broker.bootstrap(),
        RESPONSE_TOPIC,
        1,
        good,
        Duration::from_secs(120),
    );
    let failures = read_all(
        &broker.bootstrap(),
        DLQ_TOPIC,
        1,
        STAGES.len(),
        Duration::from_secs(60),
    );
    let answered: Vec<String> = responses
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.value).unwrap()["slide_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        answered.len(),
        good,
        "every good request answered: {answered:?}"
    );
    assert!(answered.iter().all(|s| s.starts_with("good-")));
    let mut by_slide: HashMap<String, Value> = HashMap::new();
    for f in &failures {
        let v: Value = serde_json::from_slice(&f.value).unwrap();
        let slide = v["slide_id"].as_str().unwrap().to_string();
        assert!(
            by_slide.insert(slide.clone(), v).is_none(),
            "two records for {slide}"
        );
    }
    for stage in STAGES {
        let record = &by_slide[&format!("panic-{stage}")];
        assert_eq!(record["error"]["kind"], "internal", "{record}");
        assert_eq!(record["error"]["retryable"], false);
        let message = record["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("the {stage} stage panicked")),
            "{message}"
        );
    }

    assert_eq!(
        http_get(port, "/healthz").map(|r| r.0),
        Some(200),
        "still alive"
    );
    let (_, text) = http_get(port, "/metrics").unwrap();
    for stage in STAGES {
        let series = format!("wsi_thumbnail_actor_panics_total{{stage=\"{stage}\"}}");
        assert_eq!(metric(&text, &series), Some(1.0), "{series} in:\n{text}");
    }
    let end = end_offsets(&broker.bootstrap(), REQUEST_TOPIC, 1)[0];
    assert!(eventually(Duration::from_secs(20), || {
        committed(&broker.bootstrap(), CONSUMER_GROUP, REQUEST_TOPIC, 1)[0] == Some(end)
    }));
    assert!(service.terminate(Duration::from_secs(30)).success());
}
