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

/// Behind a front that enforces `roles/storage.objectCreator` (create, never replace),
/// the service stays ready, and a request whose thumbnail landed just before the
/// service was killed (so its offset was never committed) is redelivered and ends in
/// a response, keeping the thumbnail it wrote: never a failure record blaming the
/// slide for the role.
#[test]
fn with_a_create_only_role_a_redelivery_after_a_kill_between_upload_and_commit_is_answered() {
    use crate::support::creator_front::CreatorOnlyFront;
    use std::sync::atomic::Ordering;

    let stack = Stack::start(
        "[kafka.topics]\npartitions = 1\n[storage]\noutput = \"gs://thumbs/\"\n",
        |_| {},
    );
    let front = CreatorOnlyFront::start(&stack.gcs.url(), "thumbs");
    let env = vec![("STORAGE_EMULATOR_HOST", front.url())];
    front.state.hold_next_upload.store(true, Ordering::SeqCst);
    let first = Service::start(&stack.config, &env);
    let port = stack.http_port;
    assert!(
        becomes_ready(port),
        "ready: the output can be written, though not replaced"
    );
    assert!(
        front.state.refused.load(Ordering::SeqCst) >= 1,
        "the preflight's replacement of its probe was refused, and it went on"
    );

    let tail = Tail::new(&stack.bootstrap(), &[RESPONSE_TOPIC, DLQ_TOPIC], 1);
    produce(
        &stack.bootstrap(),
        REQUEST_TOPIC,
        &[(0, "again".into(), Request::new("again").bytes())],
    );
    assert!(
        eventually(Duration::from_secs(60), || front
            .state
            .landed
            .load(Ordering::SeqCst)
            >= 1),
        "the thumbnail lands in the bucket"
    );
    // The upload's answer is held: the offset is not committed. Kill the service now.
    let refused_before = front.state.refused.load(Ordering::SeqCst);
    drop(first); // SIGKILL, and reaped
    assert!(
        tail.next(Duration::from_secs(2)).is_none(),
        "nothing was answered before the kill"
    );

    let second = Service::start(&stack.config, &env);
    let (topic, value) = tail
        .next(Duration::from_secs(120))
        .expect("the redelivered request is answered");
    let value: serde_json::Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(topic, RESPONSE_TOPIC, "{value}");
    assert_eq!(value["id"], "again");
    assert_eq!(
        value["thumbnail_image_link"],
        "gs://thumbs/CMU-1-Small-Region_thumbnail.png"
    );
    assert!(
        front.state.refused.load(Ordering::SeqCst) >= refused_before + 2,
        "the redelivered upload met the existing thumbnail (and the new preflight its probe)"
    );
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    assert!(
        crate::support::infra::metric(&metrics, "wsi_thumbnail_output_kept_total")
            .is_some_and(|n| n >= 2.0),
        "{metrics}"
    );
    assert_eq!(http_get(port, "/readyz").map(|(s, _)| s), Some(200));
    drop(second);
}
