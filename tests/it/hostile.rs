//! Hostile slides next to normal requests, on the shipped defaults but one decoder, with
//! the service under a 3 GiB address-space cap: every hostile slide is one failure
//! record, the service never exits, the service process stays under 512 MiB resident,
//! and the normal request sent right after each hostile one is answered within 3 s
//! (after the deadline, for the classes that hold the one decoder until it).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use wsi_thumbnail::fixtures::poison;

use crate::support::infra::Stack;
use crate::support::kafka::{DLQ_TOPIC, REQUEST_TOPIC, RESPONSE_TOPIC, Tail, produce};
use crate::support::process_tree::rss_bytes;
use crate::support::request::Request;
use crate::support::service::Service;
use crate::support::*;

const ADDRESS_SPACE: u64 = 3 << 30;
const SERVICE_RSS: u64 = 512 << 20;
const NEIGHBOUR: Duration = Duration::from_secs(3);
const DECODE_DEADLINE: Duration = Duration::from_secs(15);

#[test]
fn hostile_slides_cost_one_record_each_and_never_delay_their_neighbour() {
    let mut corpus = Vec::new();
    let stack = Stack::start(
        &format!(
            "[kafka.topics]\npartitions = 2\n[storage]\noutput = \"gs://thumbs/\"\n\
             [pipeline]\ndecoder_threads = 1\n[thumbnail]\nworker_memory_mb = 1024\n\
             [timeouts]\ndecode_ms = {}\n",
            DECODE_DEADLINE.as_millis()
        ),
        |input| corpus = poison::write_corpus(input).expect("poison corpus"),
    );
    assert!(!corpus.is_empty());
    let log = stack.dir.path().join("service.log");
    let mut service = Service::start_capped(&stack.config, &stack.env(&[]), &log, ADDRESS_SPACE);
    assert!(
        becomes_ready(stack.http_port),
        "the service starts under the cap"
    );
    let tail = Tail::new(&stack.bootstrap(), &[RESPONSE_TOPIC, DLQ_TOPIC], 2);
    let pid = service.pid();
    let mut peak_rss = 0u64;
    let mut seen: HashMap<String, (String, Value)> = HashMap::new();
    // Waits for `id`'s answer, sampling the service's memory meanwhile.
    let mut wait_for = |id: &str, within: Duration, seen: &mut HashMap<String, (String, Value)>| {
        let started = Instant::now();
        while !seen.contains_key(id) && started.elapsed() < within + Duration::from_secs(30) {
            peak_rss = peak_rss.max(rss_bytes(pid));
            if let Some((topic, value)) = tail.next(Duration::from_millis(50)) {
                let value: Value = serde_json::from_slice(&value).expect("JSON answers");
                if let Some(got) = value["id"].as_str() {
                    seen.insert(got.to_string(), (topic, value));
                }
            }
        }
        started.elapsed()
    };

    for (n, p) in corpus.iter().enumerate() {
        let hostile = format!("hostile-{n}");
        let neighbour = format!("neighbour-{n}");
        produce(
            &stack.bootstrap(),
            REQUEST_TOPIC,
            &[(
                0,
                hostile.clone(),
                Request::new(&hostile)
                    .set("slide_id", hostile.as_str())
                    .link(format!("gs://slides-in/{}", p.file_name))
                    .bytes(),
            )],
        );
        let sent = Instant::now();
        produce(
            &stack.bootstrap(),
            REQUEST_TOPIC,
            &[(
                1,
                neighbour.clone(),
                Request::new(&neighbour)
                    .set("slide_id", neighbour.as_str())
                    .bytes(),
            )],
        );
        let _ = wait_for(&neighbour, NEIGHBOUR, &mut seen);
        let took = sent.elapsed();
        let allowed = if p.kind.as_str() == "timeout" {
            DECODE_DEADLINE + NEIGHBOUR
        } else {
            NEIGHBOUR
        };
        assert!(
            took <= allowed,
            "{}: the neighbour took {took:?} (at most {allowed:?})",
            p.file_name
        );
        let (topic, answer) = seen.get(&neighbour).expect("the neighbour answered");
        assert_eq!(topic, RESPONSE_TOPIC, "the neighbour succeeded: {answer}");
        let _ = wait_for(&hostile, DECODE_DEADLINE, &mut seen);
        let (topic, answer) = seen
            .get(&hostile)
            .unwrap_or_else(|| panic!("{}: no answer", p.file_name));
        assert_eq!(
            topic, DLQ_TOPIC,
            "{}: a failure record: {answer}",
            p.file_name
        );
        assert_eq!(
            answer["error"]["kind"],
            p.kind.as_str(),
            "{} ({}): {answer}",
            p.file_name,
            p.class
        );
        assert!(service.is_running(), "{}: the service exited", p.file_name);
    }
    // Exactly one record each: nothing answered twice while the tail ran on.
    let mut extra = 0;
    while let Some((_, value)) = tail.next(Duration::from_secs(2)) {
        let value: Value = serde_json::from_slice(&value).unwrap();
        if value["id"].as_str().is_some_and(|id| seen.contains_key(id)) {
            extra += 1;
        }
    }
    assert_eq!(extra, 0, "some request was answered twice");
    assert!(
        peak_rss <= SERVICE_RSS,
        "the service process peaked at {} MiB resident",
        peak_rss >> 20
    );
    eprintln!(
        "{} hostile slides: service peak RSS {} MiB",
        corpus.len(),
        peak_rss >> 20
    );
    assert!(service.terminate(Duration::from_secs(30)).success());
}
