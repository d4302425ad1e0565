//! Operator faults are never the requester's (issue 21): with the output bucket
//! missing, a valid request gets no failure record; it waits while `/readyz` answers
//! 503 and the log names the output and the fix. Once the operator creates the bucket,
//! the same request ends in a response and the service is ready again.

use std::time::Duration;

use crate::support::infra::Stack;
use crate::support::kafka::{DLQ_TOPIC, REQUEST_TOPIC, RESPONSE_TOPIC, Tail, produce};
use crate::support::request::Request;
use crate::support::service::Service;
use crate::support::*;

fn readyz(port: u16) -> Option<u16> {
    http_get(port, "/readyz").map(|(status, _)| status)
}

#[test]
fn a_missing_output_bucket_holds_requests_and_readiness_until_the_operator_creates_it() {
    let stack = Stack::start(
        "[kafka.topics]\npartitions = 1\n[storage]\noutput = \"gs://thumbs-later/\"\n",
        |_| {},
    );
    let log = stack.dir.path().join("service.log");
    let _service = Service::start_logged(&stack.config, &stack.env(&[]), &log);
    let port = stack.http_port;
    let log_names_the_fix = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("thumbs-later") && text.contains("create it")
    };
    assert!(
        eventually(Duration::from_secs(60), log_names_the_fix),
        "the preflight names the missing bucket and the fix"
    );
    assert_eq!(
        readyz(port),
        Some(503),
        "not ready while the output is missing"
    );

    let tail = Tail::new(&stack.bootstrap(), &[RESPONSE_TOPIC, DLQ_TOPIC], 1);
    produce(
        &stack.bootstrap(),
        REQUEST_TOPIC,
        &[(0, "waits".into(), Request::new("waits").bytes())],
    );
    // No failure record blames the slide for the operator's bucket.
    if let Some((topic, value)) = tail.next(Duration::from_secs(10)) {
        panic!(
            "an answer while the output is missing: {topic}: {}",
            String::from_utf8_lossy(&value)
        );
    }
    assert_eq!(readyz(port), Some(503));

    // The operator creates the bucket (the emulator's JSON API).
    let (status, body) = http_post(
        stack.gcs.port,
        "/storage/v1/b?project=test",
        br#"{"name":"thumbs-later"}"#,
    )
    .expect("create the bucket");
    assert!(status == 200 || status == 201, "{status}: {body}");
    let (topic, value) = tail
        .next(Duration::from_secs(90))
        .expect("the waiting request is answered");
    let value: serde_json::Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(topic, RESPONSE_TOPIC, "{value}");
    assert_eq!(value["id"], "waits");
    assert_eq!(
        value["thumbnail_image_link"],
        "gs://thumbs-later/CMU-1-Small-Region_thumbnail.png"
    );
    assert!(
        eventually(Duration::from_secs(60), || readyz(port) == Some(200)),
        "ready again once the output can be written"
    );
}
