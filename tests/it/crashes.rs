//! The service killed and stopped under load: SIGTERM drains and exits 0 without
//! leaving anything to redo; `kill -9` at random moments loses nothing (duplicates are
//! allowed by at-least-once, and counted).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::infra::{Stack, free_port, metric};
use crate::support::kafka::{REQUEST_TOPIC, RESPONSE_TOPIC, produce, read_all};
use crate::support::request::numbered;
use crate::support::service::Service;
use crate::support::{eventually, http_get};

const PARTITIONS: i32 = 4;

fn setup() -> Stack {
    Stack::start(
        &format!(
            "[kafka.topics]\npartitions = {PARTITIONS}\n[storage]\noutput = \"gs://thumbs/\"\n\
             [pipeline]\nmax_in_flight = 8\nmax_in_flight_per_partition = 2\nshutdown_grace_ms = 20000\n"
        ),
        |_| {},
    )
}

fn enqueue(bootstrap: &str, total: usize) {
    produce(bootstrap, REQUEST_TOPIC, &numbered(0..total, PARTITIONS));
}

/// Response count per request id, reading the response topic for up to `timeout` or
/// until `want` distinct ids are seen.
fn answered(bootstrap: &str, want: usize, timeout: Duration) -> HashMap<String, usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let records = read_all(
            bootstrap,
            RESPONSE_TOPIC,
            PARTITIONS,
            usize::MAX,
            Duration::from_secs(2),
        );
        let mut counts = HashMap::new();
        for r in records {
            *counts.entry(r.id()).or_insert(0) += 1;
        }
        if counts.len() >= want || Instant::now() > deadline {
            return counts;
        }
    }
}

/// The `wsi_thumbnail_consumer_lag` gauges an instance exports, partition by partition.
fn lags(metrics_text: &str) -> Vec<f64> {
    (0..PARTITIONS)
        .filter_map(|p| {
            metric(
                metrics_text,
                &format!("wsi_thumbnail_consumer_lag{{partition=\"{p}\"}}"),
            )
        })
        .collect()
}

fn start(s: &Stack) -> Service {
    Service::start(&s.config, &s.env(&[]))
}

/// Another instance of the same group, with its own HTTP port.
fn start_another(s: &Stack) -> Service {
    Service::start(&s.config, &s.env(&[("PORT", free_port().to_string())]))
}

#[test]
fn sigterm_drains_exits_zero_and_a_restart_redoes_nothing() {
    let s = setup();
    let total = 80;
    enqueue(&s.broker.bootstrap(), total);
    let mut service = start(&s);
    let seen = answered(&s.broker.bootstrap(), 10, Duration::from_secs(60));
    assert!(seen.len() >= 10);
    let signalled = Instant::now();
    let status = service.terminate(Duration::from_secs(25));
    println!("exited {status} after {:?}", signalled.elapsed());
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(20),
        "past the grace period"
    );
    let before = answered(&s.broker.bootstrap(), 0, Duration::ZERO);

    let mut service = start(&s);
    let after = answered(&s.broker.bootstrap(), total, Duration::from_secs(120));
    assert_eq!(after.len(), total, "every request answered");
    let redone: Vec<_> = before.keys().filter(|id| after[*id] > 1).collect();
    assert!(
        redone.is_empty(),
        "requests answered before SIGTERM were redone: {redone:?}"
    );
    assert!(service.terminate(Duration::from_secs(25)).success());

    // Restarted on a fully committed group: the lag is 0 from the first report (it
    // used to be each partition's whole history until this instance committed).
    let service = start(&s);
    let mut last = Vec::new();
    let reported = eventually(Duration::from_secs(60), || {
        last = http_get(s.http_port, "/metrics")
            .map(|(_, body)| lags(&body))
            .unwrap_or_default();
        last.len() == PARTITIONS as usize
    });
    assert!(reported, "lag gauges for every partition: {last:?}");
    assert!(
        last.iter().all(|l| *l == 0.0),
        "lag after a restart: {last:?}"
    );
    let mut service = service;
    assert!(service.terminate(Duration::from_secs(25)).success());
}

#[test]
fn kill_nine_at_random_moments_loses_nothing() {
    let s = setup();
    let total = 300;
    enqueue(&s.broker.bootstrap(), total);
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
    let mut service = start(&s);
    for kill in 0..3 {
        // Kill after a random number of further responses.
        let done = answered(&s.broker.bootstrap(), 0, Duration::ZERO).len();
        let target = (done + rand::RngExt::random_range(&mut rng, 10..50)).min(total - 1);
        answered(&s.broker.bootstrap(), target, Duration::from_secs(120));
        // SAFETY: kill(2) with SIGKILL on our own child.
        unsafe {
            libc::kill(service.pid(), libc::SIGKILL);
        }
        drop(service);
        println!("kill {kill} after {target} answered");
        service = start(&s);
    }
    let counts = answered(&s.broker.bootstrap(), total, Duration::from_secs(240));
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    println!(
        "answered {} of {total}, {duplicates} duplicate responses",
        counts.len()
    );
    assert_eq!(counts.len(), total, "requests lost");
    assert!(service.terminate(Duration::from_secs(25)).success());
}

#[test]
fn when_one_of_two_instances_stops_the_other_takes_over() {
    let s = setup();
    let total = 200;
    enqueue(&s.broker.bootstrap(), total);
    let mut first = start_another(&s);
    let mut second = start_another(&s);
    answered(&s.broker.bootstrap(), 40, Duration::from_secs(120));
    assert!(first.terminate(Duration::from_secs(25)).success());
    let counts = answered(&s.broker.bootstrap(), total, Duration::from_secs(180));
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    println!(
        "answered {} of {total}, {duplicates} duplicates",
        counts.len()
    );
    assert_eq!(
        counts.len(),
        total,
        "requests lost when an instance left the group"
    );
    assert!(second.terminate(Duration::from_secs(25)).success());
}

/// Invariant 7: when a second instance joins, the first gives up partitions only after
/// their in-flight requests are done and committed, so the newcomer redoes nothing.
#[test]
fn a_joining_instance_redoes_nothing_the_first_had_in_flight() {
    let s = setup();
    let total = 200;
    enqueue(&s.broker.bootstrap(), total);
    // The first instance on the stack's own HTTP port, so its metrics can be read.
    let mut first = start(&s);
    answered(&s.broker.bootstrap(), 30, Duration::from_secs(120));
    // The first instance reports lag for every partition before the second joins, so
    // the gauges of the partitions it gives away have something stale to forget.
    let all_reported = eventually(Duration::from_secs(30), || {
        let text = http_get(s.http_port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        lags(&text).len() == PARTITIONS as usize
    });
    assert!(
        all_reported,
        "the first instance reported lag for every partition"
    );
    let mut second = start_another(&s);
    let counts = answered(&s.broker.bootstrap(), total, Duration::from_secs(180));
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    println!(
        "answered {} of {total}, {duplicates} duplicates",
        counts.len()
    );
    assert_eq!(counts.len(), total, "requests lost in the rebalance");
    assert_eq!(
        duplicates, 0,
        "revoked partitions were handed over before their in-flight work was committed"
    );
    // The first instance reported lag for all partitions before the join; for the ones
    // it gave away its gauges go to 0 (they are the other instance's to report), and
    // for its own the lag is 0 once everything is committed: no stale lag remains.
    let mut last = Vec::new();
    let settled = eventually(Duration::from_secs(30), || {
        let text = http_get(s.http_port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        last = lags(&text);
        last.len() == PARTITIONS as usize && last.iter().all(|l| *l == 0.0)
    });
    assert!(
        settled,
        "the first instance's lag gauges after the rebalance: {last:?}"
    );
    assert!(first.terminate(Duration::from_secs(25)).success());
    assert!(second.terminate(Duration::from_secs(25)).success());
}
