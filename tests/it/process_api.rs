//! `POST /process`, the synchronous API, against the real broker and emulator: the same
//! ThumbnailResponse JSON as the Kafka path for the same request, a 4xx with the
//! failure record's error kind for bad requests, nothing on the dead-letter topic; and,
//! from the same run's JSON log, every line about a job carries its request id, slide
//! id, partition and offset.

use std::time::Duration;

use serde_json::Value;

use crate::support::infra::Stack;
use crate::support::kafka::{DLQ_TOPIC, REQUEST_TOPIC, RESPONSE_TOPIC, produce, read_all};
use crate::support::request::{CMU_LINK, Request};
use crate::support::service::Service;
use crate::support::*;

fn request(id: &str, slide_id: &str, link: &str) -> Request {
    Request::new(id)
        .slide(slide_id)
        .link(link)
        .patient("patient-1")
        .block("block-A")
}

#[test]
fn process_answers_like_the_kafka_path_and_logs_carry_job_ids() {
    let stack = Stack::start(
        "[kafka.topics]\npartitions = 2\n[storage]\noutput = \"gs://thumbs/\"\n\
         allowed_buckets = [\"slides-in\"]\n[log]\njson = true\n",
        |_| {},
    );
    let (port, broker) = (stack.http_port, &stack.broker);
    let log = stack.dir.path().join("service.log");
    let mut service = Service::start_logged(&stack.config, &stack.env(&[]), &log);
    assert!(becomes_ready(port));

    let body = request("sync-1", "slide-sync", CMU_LINK).bytes();
    let (status, text) = http_post(port, "/process", &body).expect("POST /process");
    assert_eq!(status, 200, "{text}");
    let via_http: Value = serde_json::from_str(&text).unwrap();
    produce(
        &broker.bootstrap(),
        REQUEST_TOPIC,
        &[(0, "slide-sync".into(), body)],
    );
    let responses = read_all(
        &broker.bootstrap(),
        RESPONSE_TOPIC,
        2,
        1,
        Duration::from_secs(60),
    );
    assert_eq!(responses.len(), 1, "the Kafka path answered");
    let via_kafka: Value = serde_json::from_slice(&responses[0].value).unwrap();
    assert_eq!(via_http, via_kafka, "same request, same response JSON");
    assert_eq!(via_http["metadata"]["width"], 2220);
    assert_eq!(
        via_http["thumbnail_image_link"],
        "gs://thumbs/CMU-1-Small-Region_thumbnail.png"
    );

    // Nothing else wrong with it (the link is valid), so its 400 is for the missing field.
    let missing_field = request("b2", "s", CMU_LINK).without("slide_id");
    let bad = [
        (b"not json".to_vec(), 400, "invalid_request"),
        (missing_field.bytes(), 400, "invalid_request"),
        (
            request("b3", "s3", "gs://other-bucket/a.svs").bytes(),
            403,
            "input_not_allowed",
        ),
        (
            request("b4", "s4", "file:///etc/passwd").bytes(),
            403,
            "input_not_allowed",
        ),
        (
            request("b5", "s5", "gs://slides-in/missing.svs").bytes(),
            404,
            "slide_not_found",
        ),
    ];
    for (body, want_status, want_kind) in bad {
        let (status, text) = http_post(port, "/process", &body).expect("POST /process");
        let answer: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        assert_eq!(
            (status, answer["error"]["kind"].as_str()),
            (want_status, Some(want_kind)),
            "{}: {text}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let dead_letters = read_all(
        &broker.bootstrap(),
        DLQ_TOPIC,
        2,
        usize::MAX,
        Duration::from_secs(3),
    );
    assert!(
        dead_letters.is_empty(),
        "/process failures are answered, not dead-lettered"
    );
    assert!(service.terminate(Duration::from_secs(30)).success());

    // Every log line about a job carries its ids and coordinates (from the job span).
    let text = std::fs::read_to_string(&log).unwrap();
    let job_lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["span"]["name"] == "job")
        .collect();
    let done: Vec<&Value> = job_lines
        .iter()
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("thumbnail done"))
        })
        .collect();
    assert_eq!(
        done.len(),
        2,
        "one Kafka and one HTTP completion logged:\n{text}"
    );
    for line in &done {
        assert_eq!(line["span"]["id"], "sync-1", "{line}");
        assert_eq!(line["span"]["slide_id"], "slide-sync", "{line}");
        assert!(line["span"]["partition"].is_i64() && line["span"]["offset"].is_i64());
    }
    assert!(
        done.iter().any(|l| l["span"]["topic"] == REQUEST_TOPIC
            && l["span"]["partition"] == 0
            && l["span"]["offset"] == 0),
        "the Kafka job's coordinates are on its lines"
    );
    let refused = job_lines
        .iter()
        .filter(|v| v["fields"]["message"] == "POST /process refused")
        .count();
    assert!(
        refused >= 4,
        "refusals are logged inside their job span:\n{text}"
    );
}

/// `POST /process` can be turned off, and when on can require a bearer token.
#[test]
fn process_can_be_turned_off_or_require_a_bearer_token() {
    let body = request("auth-1", "slide-auth", CMU_LINK).bytes();
    let serve = |extra: &str, env: &[(&'static str, String)]| {
        let stack = Stack::start(
            // The test config ends inside [http]: its keys come first.
            &format!("{extra}[storage]\noutput = \"gs://thumbs/\"\n"),
            |_| {},
        );
        let service = Service::start(&stack.config, &stack.env(env));
        assert!(becomes_ready(stack.http_port));
        (stack, service)
    };

    let (stack, mut service) = serve("process_enabled = false\n", &[]);
    let (status, _) = http_post(stack.http_port, "/process", &body).unwrap();
    assert_eq!(status, 404, "turned off");
    assert!(service.terminate(Duration::from_secs(30)).success());

    let token = "4f1c-a-long-random-token";
    let (stack, mut service) = serve("", &[("WSI_THUMBNAIL_PROCESS_TOKEN", token.into())]);
    let port = stack.http_port;
    assert_eq!(
        http_post(port, "/process", &body).unwrap().0,
        401,
        "no token"
    );
    let wrong = http_post_with(port, "/process", &body, "Authorization: Bearer nope\r\n");
    assert_eq!(wrong.unwrap().0, 401, "wrong token");
    let right = format!("Authorization: Bearer {token}\r\n");
    let (status, text) = http_post_with(port, "/process", &body, &right).unwrap();
    assert_eq!(status, 200, "{text}");
    let response: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(response["id"], "auth-1");
    // The token never shows in the effective configuration.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"))
        .args(["serve", "--check", "--config"])
        .arg(&stack.config)
        .env("WSI_THUMBNAIL_PROCESS_TOKEN", token)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&check.stdout).contains(token));
    assert!(service.terminate(Duration::from_secs(30)).success());
}
