//! Bad input never stalls a partition and never crashes the service: a corpus of
//! malformed requests and bad slides, interleaved with good requests on one partition,
//! yields exactly one failure record of the right kind per bad request, a response per
//! good one, and commits up to the end offset.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use wsi_thumbnail::fixtures::broken;

use crate::support::infra::Stack;
use crate::support::kafka::{
    CONSUMER_GROUP, DLQ_TOPIC, REQUEST_TOPIC, RESPONSE_TOPIC, committed, end_offsets, produce,
    read_all,
};
use crate::support::request::Request;
use crate::support::service::Service;
use crate::support::*;

/// A valid request for `id` with some fields replaced (`Value::Null` removes a field).
fn with(id: &str, changes: &[(&str, Value)]) -> Vec<u8> {
    changes
        .iter()
        .fold(Request::new(id), |r, (field, value)| {
            if value.is_null() {
                r.without(field)
            } else {
                r.set(field, value.clone())
            }
        })
        .bytes()
}

fn link(l: &str) -> Vec<(&'static str, Value)> {
    vec![("image_bucket_link", json!(l))]
}

#[test]
fn every_bad_request_gets_one_failure_record_and_nothing_stalls() {
    let stack = Stack::start(
        "[kafka.topics]\npartitions = 1\n[storage]\noutput = \"gs://thumbs/\"\nallowed_buckets = [\"slides-in\"]\n",
        |input| {
            broken::write_empty(&input.join("empty.svs")).unwrap();
            broken::write_truncated(&cmu_small_region(), &input.join("truncated.svs"), 300_000)
                .unwrap();
            broken::write_random(&input.join("random.svs"), 50_000, 3).unwrap();
            std::fs::copy(cmu_reference_png(), input.join("picture.png")).unwrap();
            broken::write_bomb(&input.join("bomb.tif"), u32::MAX, u32::MAX).unwrap();
        },
    );
    let broker = &stack.broker;

    let long = "x".repeat(5000);
    // (value, expected kind or None for a good request)
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"not json at all".to_vec(), "invalid_request"),
        (b"[1,2,3]".to_vec(), "invalid_request"),
        (b"\"just a string\"".to_vec(), "invalid_request"),
        (b"{}".to_vec(), "invalid_request"),
        (b"\xff\xfe\x00garbage".to_vec(), "invalid_request"),
        (Vec::new(), "invalid_request"),
        (with("m1", &[("slide_id", Value::Null)]), "invalid_request"),
        (
            with("m2", &[("image_bucket_link", Value::Null)]),
            "invalid_request",
        ),
        (with("m3", &[("patient_id", json!(42))]), "invalid_request"),
        (
            with("m4", &[("created_on", json!(20260225))]),
            "invalid_request",
        ),
        (
            with("m5", &[("created_on", json!("yesterday"))]),
            "invalid_request",
        ),
        (with("m6", &[("block_id", json!("   "))]), "invalid_request"),
        (with("m7", &[("patient_id", json!(""))]), "invalid_request"),
        (with("m8", &[("block_id", json!(long))]), "invalid_request"),
        (
            with("m9", &[("slide_id", json!("a\u{0}b"))]),
            "invalid_request",
        ),
        (
            with("m10", &link("s3://slides-in/CMU-1-Small-Region.svs")),
            "invalid_request",
        ),
        (
            with("m11", &link("ftp://example.org/slide.svs")),
            "invalid_request",
        ),
        (
            with("m12", &link("https://example.com/slides-in/x.svs")),
            "invalid_request",
        ),
        (with("m13", &link("gs://slides-in")), "invalid_request"),
        (
            with("m14", &link("gs://Bad_Bucket!/x.svs")),
            "invalid_request",
        ),
        (
            with("m15", &link("gs://slides-in/../../etc/passwd")),
            "invalid_request",
        ),
        (
            with("m16", &link("gs://slides-in/a/./../../x.svs")),
            "invalid_request",
        ),
        (
            with("m17", &link("gs://other-bucket/CMU-1-Small-Region.svs")),
            "input_not_allowed",
        ),
        (
            with(
                "m18",
                &link("https://storage.googleapis.com/other-bucket/x.svs"),
            ),
            "input_not_allowed",
        ),
        (
            with("m19", &link("file:///etc/passwd")),
            "input_not_allowed",
        ),
        (
            with("s1", &link("gs://slides-in/missing.svs")),
            "slide_not_found",
        ),
        (
            with("s2", &link("gs://slides-in/empty.svs")),
            "corrupt_slide",
        ),
        (
            with("s3", &link("gs://slides-in/truncated.svs")),
            "corrupt_slide",
        ),
        (
            with("s4", &link("gs://slides-in/random.svs")),
            "unsupported_format",
        ),
        (
            with("s5", &link("gs://slides-in/picture.png")),
            "unsupported_format",
        ),
        (
            with("s6", &link("gs://slides-in/bomb.tif")),
            "slide_too_large",
        ),
    ];
    // Interleave: good, bad, good, bad, ... all on partition 0 so offset = index.
    let mut records = Vec::new();
    let mut expected_kind: Vec<Option<&str>> = Vec::new();
    for (i, (value, kind)) in bad.iter().enumerate() {
        let id = format!("good-{i}");
        records.push((0, format!("slide-{id}"), Request::new(&id).bytes()));
        expected_kind.push(None);
        records.push((0, format!("bad-key-{i}"), value.clone()));
        expected_kind.push(Some(kind));
    }
    produce(&broker.bootstrap(), REQUEST_TOPIC, &records);

    let mut service = Service::start(&stack.config, &stack.env(&[]));
    let goods = expected_kind.iter().filter(|k| k.is_none()).count();
    let responses = read_all(
        &broker.bootstrap(),
        RESPONSE_TOPIC,
        1,
        goods,
        Duration::from_secs(120),
    );
    let failures = read_all(
        &broker.bootstrap(),
        DLQ_TOPIC,
        1,
        bad.len(),
        Duration::from_secs(60),
    );
    // Linger a moment to catch any extra (duplicate) records.
    let failures_again = read_all(
        &broker.bootstrap(),
        DLQ_TOPIC,
        1,
        bad.len() + 1,
        Duration::from_secs(2),
    );
    assert_eq!(responses.len(), goods);
    assert_eq!(
        failures.len(),
        bad.len(),
        "one failure record per bad request"
    );
    assert_eq!(
        failures_again.len(),
        bad.len(),
        "no duplicate failure records"
    );

    let mut seen = HashSet::new();
    for f in &failures {
        let rec: Value = serde_json::from_slice(&f.value).unwrap();
        let offset = rec["source"]["offset"].as_i64().unwrap() as usize;
        assert!(seen.insert(offset), "two records for offset {offset}");
        let kind = expected_kind[offset]
            .unwrap_or_else(|| panic!("failure for good request {offset}: {rec}"));
        assert_eq!(rec["error"]["kind"], kind, "offset {offset}: {rec}");
        assert_eq!(rec["error"]["retryable"], false);
        assert_eq!(rec["attempts"], 1);
        assert_eq!(rec["source"]["topic"], REQUEST_TOPIC);
        assert_eq!(rec["source"]["partition"], 0);
        assert!(
            rec["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(rec["failed_at"].as_str().is_some_and(|t| t.ends_with('Z')));
        if rec["request"].is_null() {
            assert!(
                rec["raw_value"].is_string(),
                "raw_value carried when request is null: {rec}"
            );
            assert!(rec["id"].is_null());
        } else {
            assert!(rec.get("raw_value").is_none());
            assert!(rec["request"].is_object());
        }
        // Key: the slide_id when known, else the original key.
        let expected_key = rec["slide_id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("bad-key-{}", offset / 2));
        assert_eq!(f.key.as_deref(), Some(expected_key.as_str()), "{rec}");
    }
    for r in &responses {
        let resp: Value = serde_json::from_slice(&r.value).unwrap();
        assert!(resp["id"].as_str().unwrap().starts_with("good-"));
    }

    let child = service.child.as_mut().unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the service exited on bad input"
    );
    // Commits reach the end offset once the tracker's timer fires.
    let end = end_offsets(&broker.bootstrap(), REQUEST_TOPIC, 1)[0];
    assert_eq!(end as usize, records.len());
    assert!(
        eventually(Duration::from_secs(10), || committed(
            &broker.bootstrap(),
            CONSUMER_GROUP,
            REQUEST_TOPIC,
            1
        )[0] == Some(end)),
        "commits did not reach the end offset"
    );
    assert!(service.terminate(Duration::from_secs(30)).success());
}
