//! Hostile slides and requests cost one worker process or one failure record each,
//! never the service: a generated poison corpus (slides that crash, hang, balloon and
//! overflow the stack inside OpenSlide and the libraries under it), requests at each
//! size limit and one byte past it, and answers too large for any broker, interleaved
//! with good requests, against the real broker and emulator, with the service run
//! under a restart loop as an orchestrator would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use wsi_thumbnail::fixtures::poison;
use wsi_thumbnail::messages::payload::{MAX_FIELD_LEN, MAX_LINK_LEN, MAX_VALUE_LEN};

use crate::support::infra::{Stack, metric};
use crate::support::kafka::{
    CONSUMER_GROUP, DLQ_TOPIC, REQUEST_TOPIC, RESPONSE_TOPIC, committed, end_offsets, produce,
    read_all,
};
use crate::support::process_tree::{cpu_ticks, tree_rss_bytes, workers};
use crate::support::request::Request;
use crate::support::service::Service;
use crate::support::*;

const PARTITIONS: i32 = 2;

/// What a record should end as.
#[derive(Debug, Clone)]
enum Expect {
    Response,
    /// A failure record of this kind whose message contains this text.
    Failure(&'static str, &'static str),
}

/// A good request padded with an ignored field to exactly `len` bytes.
fn padded(id: &str, len: usize) -> Vec<u8> {
    let base = Request::new(id).set("pad", "").bytes().len();
    let out = Request::new(id).set("pad", "z".repeat(len - base)).bytes();
    assert_eq!(out.len(), len);
    out
}

/// The requests about size limits: each limit exactly (served, or refused for another
/// reason), one byte past it (refused by the limit), and an answer that would be far
/// too large for the broker.
fn limit_cases() -> Vec<(String, Vec<u8>, Expect)> {
    let at = "a".repeat(MAX_FIELD_LEN);
    let over = "a".repeat(MAX_FIELD_LEN + 1);
    let mut cases = Vec::new();
    for field in ["id", "patient_id", "block_id", "slide_id"] {
        let v = Request::new(format!("limit-{field}")).set(field, at.as_str());
        cases.push((format!("limit-{field}"), v.bytes(), Expect::Response));
        let v = Request::new(format!("past-{field}")).set(field, over.as_str());
        cases.push((
            format!("past-{field}"),
            v.bytes(),
            Expect::Failure("invalid_request", "limit of 1024"),
        ));
    }
    let link = |len: usize| {
        format!(
            "gs://slides-in/{}",
            "n".repeat(len - "gs://slides-in/".len())
        )
    };
    // A 4096-byte link passes the request limit; its object name is longer than GCS
    // allows, which is a different refusal (checked below: not the limit's message).
    let v = Request::new("limit-link").link(link(MAX_LINK_LEN));
    cases.push((
        "limit-link".into(),
        v.bytes(),
        Expect::Failure("invalid_request", ""),
    ));
    let v = Request::new("past-link").link(link(MAX_LINK_LEN + 1));
    cases.push((
        "past-link".into(),
        v.bytes(),
        Expect::Failure("invalid_request", "limit of 4096"),
    ));
    cases.push((
        "limit-value".into(),
        padded("limit-value", MAX_VALUE_LEN),
        Expect::Response,
    ));
    cases.push((
        "past-value".into(),
        padded("past-value", MAX_VALUE_LEN + 1),
        Expect::Failure("invalid_request", "message value"),
    ));
    // Echoed fields past 1 MB: answered with a failure record cut to fit.
    let v = Request::new("huge-echo")
        .set("id", "h".repeat(1_100_000))
        .patient("q".repeat(200_000));
    cases.push((
        "huge-echo".into(),
        v.bytes(),
        Expect::Failure("invalid_request", "message value"),
    ));
    cases
}

/// Runs the service, restarting it whenever it exits, until `stop`; counts restarts.
struct RestartLoop {
    stop: Arc<AtomicBool>,
    restarts: Arc<AtomicU64>,
    pid: Arc<Mutex<i32>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RestartLoop {
    fn start(stack: &Stack) -> RestartLoop {
        let (stop, restarts, pid) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(Mutex::new(0)),
        );
        let (config, env) = (stack.config.clone(), stack.env(&[]));
        let (s, r, p) = (stop.clone(), restarts.clone(), pid.clone());
        let thread = std::thread::spawn(move || {
            let mut service = Service::start(&config, &env);
            *p.lock().unwrap() = service.pid();
            while !s.load(Ordering::Relaxed) {
                let exited = service.child.as_mut().unwrap().try_wait().unwrap();
                if let Some(status) = exited {
                    eprintln!("service exited ({status}); restarting it");
                    r.fetch_add(1, Ordering::Relaxed);
                    service = Service::start(&config, &env);
                    *p.lock().unwrap() = service.pid();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(service.terminate(Duration::from_secs(30)).success());
        });
        RestartLoop {
            stop,
            restarts,
            pid,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("restart loop");
        }
        self.restarts.load(Ordering::Relaxed)
    }
}

#[test]
fn hostile_slides_and_requests_cost_one_record_each_never_the_service() {
    let mut corpus = Vec::new();
    let stack = Stack::start(
        &format!(
            "[kafka.topics]\npartitions = {PARTITIONS}\n[storage]\noutput = \"gs://thumbs/\"\n\
             allowed_buckets = [\"slides-in\"]\n[thumbnail]\nworker_memory_mb = 1024\n\
             [timeouts]\ndecode_ms = 20000\n"
        ),
        |input| corpus = poison::write_corpus(input).expect("poison corpus"),
    );
    assert!(corpus.len() >= 6, "one poison slide per class at least");

    // Interleave: good requests between every poison and limit case, round-robin over
    // the partitions; keys are unique so no request waits for another.
    let mut bad: Vec<(String, Vec<u8>, Expect)> = corpus
        .iter()
        .map(|p| {
            let v = Request::new(format!("poison-{}", p.file_name))
                .link(format!("gs://slides-in/{}", p.file_name));
            (
                p.file_name.to_string(),
                v.bytes(),
                Expect::Failure(p.kind.as_str(), ""),
            )
        })
        .collect();
    bad.extend(limit_cases());
    let goods = 40.max(bad.len() + 1);
    let mut records = Vec::new();
    let mut expected: HashMap<(i32, i64), (String, Expect)> = HashMap::new();
    let mut next_offset = [0i64; PARTITIONS as usize];
    let mut push = |value: Vec<u8>, what: String, expect: Expect| {
        let n = records.len();
        let partition = (n % PARTITIONS as usize) as i32;
        records.push((partition, format!("key-{n}"), value));
        expected.insert((partition, next_offset[partition as usize]), (what, expect));
        next_offset[partition as usize] += 1;
    };
    let mut bad_iter = bad.into_iter();
    for i in 0..goods {
        push(
            Request::new(format!("good-{i}")).bytes(),
            format!("good-{i}"),
            Expect::Response,
        );
        if let Some((label, value, expect)) = bad_iter.next() {
            push(value, label, expect);
        }
    }
    let total = records.len();
    produce(&stack.bootstrap(), REQUEST_TOPIC, &records);

    let service = RestartLoop::start(&stack);
    // Peak resident memory of the service and its workers, sampled while it works.
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), service.pid.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                let pid = *pid.lock().unwrap();
                peak.fetch_max(tree_rss_bytes(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let responses_wanted = expected
        .values()
        .filter(|(_, e)| matches!(e, Expect::Response))
        .count();
    let failures_wanted = total - responses_wanted;
    let responses = read_all(
        &stack.bootstrap(),
        RESPONSE_TOPIC,
        PARTITIONS,
        responses_wanted,
        Duration::from_secs(300),
    );
    let failures = read_all(
        &stack.bootstrap(),
        DLQ_TOPIC,
        PARTITIONS,
        failures_wanted,
        Duration::from_secs(300),
    );
    let end = end_offsets(&stack.bootstrap(), REQUEST_TOPIC, PARTITIONS);
    let all_committed = eventually(Duration::from_secs(30), || {
        committed(
            &stack.bootstrap(),
            CONSUMER_GROUP,
            REQUEST_TOPIC,
            PARTITIONS,
        ) == end.iter().map(|e| Some(*e)).collect::<Vec<_>>()
    });
    let metrics_text = http_get(stack.http_port, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let restarts = service.finish();
    // Linger for duplicates.
    let failures_again = read_all(
        &stack.bootstrap(),
        DLQ_TOPIC,
        PARTITIONS,
        failures_wanted + 1,
        Duration::from_secs(2),
    );

    assert_eq!(restarts, 0, "the service process stopped");
    assert_eq!(
        responses.len(),
        responses_wanted,
        "every good request answered"
    );
    assert_eq!(
        failures.len(),
        failures_wanted,
        "one failure record per hostile input"
    );
    assert_eq!(
        failures_again.len(),
        failures_wanted,
        "no duplicate failure records"
    );
    assert!(
        all_committed,
        "commits did not reach the end offsets {end:?}"
    );

    for r in &responses {
        let v: Value = serde_json::from_slice(&r.value).unwrap();
        let id = v["id"].as_str().unwrap();
        assert!(
            id.starts_with("good-") || id.starts_with("limit-") || id.len() == MAX_FIELD_LEN,
            "unexpected response {id:.40}"
        );
        assert_eq!(v["metadata"]["width"], 2220);
    }
    let mut seen = std::collections::HashSet::new();
    for f in &failures {
        assert!(
            f.value.len() < 16 * 1024,
            "a failure record of {} bytes",
            f.value.len()
        );
        let rec: Value = serde_json::from_slice(&f.value).unwrap();
        let coordinates = (
            rec["source"]["partition"].as_i64().unwrap() as i32,
            rec["source"]["offset"].as_i64().unwrap(),
        );
        assert!(seen.insert(coordinates), "two records for {coordinates:?}");
        let (what, expect) = &expected[&coordinates];
        let Expect::Failure(kind, text) = expect else {
            panic!("{what} failed: {rec}");
        };
        assert_eq!(rec["error"]["kind"], *kind, "{what}: {rec}");
        let message = rec["error"]["message"].as_str().unwrap();
        assert!(message.contains(text), "{what}: `{message}` lacks `{text}`");
        if what == "limit-link" {
            assert!(
                !message.contains("limit of"),
                "a link at the limit passes the limit: {message}"
            );
        }
        if *kind == "timeout" {
            assert_eq!(
                rec["error"]["retryable"], false,
                "a decode timeout would loop again"
            );
        }
        if message.contains("message value") {
            // Over 64 KiB of value: its echo is cut to keep the record under 16 KiB.
            assert_eq!(rec["truncated"], true, "{what}: {rec}");
        }
    }
    let crashed = metric(
        &metrics_text,
        "wsi_thumbnail_worker_restarts_total{reason=\"crash\"}",
    )
    .unwrap_or(0.0);
    assert!(
        crashed >= 1.0,
        "worker restarts for crashes counted:\n{metrics_text}"
    );
    let peak_mib = peak.load(Ordering::Relaxed) / (1024 * 1024);
    println!("peak RSS of the process tree: {peak_mib} MiB; worker restarts: {crashed} crash");
    assert!(peak_mib < 1536, "process tree peaked at {peak_mib} MiB");
}

/// `kill -9` of a worker while it decodes: the slide is decoded again on a fresh
/// worker, the service goes on, and the pool is back to full strength.
#[test]
fn a_worker_killed_mid_decode_loses_nothing() {
    let big = fixture(&wsi_thumbnail::fixtures::SlideSpec::generic_single_level(
        12000, 9000,
    ));
    let stack = Stack::start(
        "[kafka.topics]\npartitions = 1\n[storage]\noutput = \"gs://thumbs/\"\n\
         [thumbnail]\ndecoder = \"openslide\"\n[pipeline]\ndecoder_threads = 2\n",
        |input| {
            std::fs::copy(&big, input.join("big.tif")).unwrap();
        },
    );
    let total = 4;
    let records: Vec<_> = (0..total)
        .map(|i| {
            (
                0,
                format!("k{i}"),
                Request::new(format!("slow-{i}"))
                    .link("gs://slides-in/big.tif")
                    .bytes(),
            )
        })
        .collect();
    let mut service = Service::start(&stack.config, &stack.env(&[]));
    let pid = service.pid();
    assert!(
        eventually(Duration::from_secs(30), || workers(pid).len() == 2),
        "two workers start with the service"
    );
    produce(&stack.bootstrap(), REQUEST_TOPIC, &records);
    // Wait until a worker is busy decoding, then kill every worker.
    let before: HashMap<i32, u64> = workers(pid)
        .into_iter()
        .map(|c| (c, cpu_ticks(c)))
        .collect();
    assert!(
        eventually(Duration::from_secs(60), || before
            .iter()
            .any(|(c, t)| cpu_ticks(*c) > t + 20)),
        "no worker got busy"
    );
    // Stopped first, then killed: one event for the service, as a kill of the whole
    // set at once. Killed one by one, a retry could reach a spare that was still on
    // the list and be killed again, which the service rightly reports as a slide
    // killed twice.
    let victims = workers(pid);
    for signal in [libc::SIGSTOP, libc::SIGKILL] {
        for &c in &victims {
            // SAFETY: kill(2) on a process of our own test tree.
            unsafe {
                libc::kill(c, signal);
            }
        }
    }
    let responses = read_all(
        &stack.bootstrap(),
        RESPONSE_TOPIC,
        1,
        total,
        Duration::from_secs(180),
    );
    assert_eq!(
        responses.len(),
        total,
        "every request answered after the kill"
    );
    let failures = read_all(&stack.bootstrap(), DLQ_TOPIC, 1, 1, Duration::from_secs(1));
    assert!(
        failures.is_empty(),
        "a worker killed from outside is not the slide's fault"
    );
    assert!(service.is_running(), "service alive");
    assert!(
        eventually(Duration::from_secs(10), || workers(pid).len() == 2),
        "pool back to two workers"
    );
    let text = http_get(stack.http_port, "/metrics").unwrap().1;
    assert!(
        metric(
            &text,
            "wsi_thumbnail_worker_restarts_total{reason=\"killed\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert!(service.terminate(Duration::from_secs(30)).success());
}

/// With slide code in the service process (`isolation = "none"`), a slide that crashes
/// it takes the process down; after the second death the request is answered with an
/// `internal` failure record instead of being served a third time, and everything
/// behind it goes on.
#[test]
fn a_request_that_stopped_the_service_twice_is_not_served_a_third_time() {
    let stack = Stack::start(
        "[kafka.topics]\npartitions = 1\n[storage]\noutput = \"gs://thumbs/\"\n\
         [thumbnail]\nisolation = \"none\"\n[pipeline]\nmax_in_flight = 1\n",
        |input| {
            std::fs::copy(shared_poison(), input.join("sigfpe.svs")).unwrap();
        },
    );
    let records = vec![
        (0, "a".to_string(), Request::new("before").bytes()),
        (
            0,
            "b".to_string(),
            Request::new("crasher")
                .link("gs://slides-in/sigfpe.svs")
                .bytes(),
        ),
        (0, "c".to_string(), Request::new("after").bytes()),
    ];
    produce(&stack.bootstrap(), REQUEST_TOPIC, &records);
    let mut deaths = 0;
    let mut service = Service::start(&stack.config, &stack.env(&[]));
    let failure = loop {
        let failures = read_all(&stack.bootstrap(), DLQ_TOPIC, 1, 1, Duration::from_secs(1));
        if let Some(f) = failures.into_iter().next() {
            break f;
        }
        if let Some(status) = service.child.as_mut().unwrap().try_wait().unwrap() {
            deaths += 1;
            eprintln!("service died ({status}); restart {deaths}");
            assert!(
                deaths <= 2,
                "the service was served the crashing request a third time"
            );
            service = Service::start(&stack.config, &stack.env(&[]));
        }
    };
    assert_eq!(
        deaths, 2,
        "the crashing slide stops an unisolated service twice"
    );
    let rec: Value = serde_json::from_slice(&failure.value).unwrap();
    assert_eq!(rec["error"]["kind"], "internal", "{rec}");
    assert_eq!(rec["id"], "crasher");
    assert!(
        rec["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped 2 times"),
        "{rec}"
    );
    let responses = read_all(
        &stack.bootstrap(),
        RESPONSE_TOPIC,
        1,
        2,
        Duration::from_secs(60),
    );
    assert_eq!(responses.len(), 2, "the requests around it are answered");
    assert!(service.terminate(Duration::from_secs(30)).success());
}

/// Answers the broker refuses: a response too large becomes a failure record cut to
/// fit; a request whose every record is refused is counted and committed. Nothing is
/// retried forever. (librdkafka enforces `message.max.bytes` before sending.)
#[test]
fn answers_the_broker_refuses_never_stall_the_partition() {
    let stack = Stack::start(
        "[kafka.topics]\npartitions = 1\n[storage]\noutput = \"gs://thumbs/\"\n",
        |_| {},
    );
    let text = std::fs::read_to_string(&stack.config).unwrap().replace(
        "\"compression.type\" = \"none\"",
        "\"compression.type\" = \"none\"\n\"message.max.bytes\" = \"1000\"",
    );
    std::fs::write(&stack.config, text).unwrap();
    let big_response = Request::new("big-response").patient("p".repeat(900));
    let big_key = Request::new("big-key").slide("k".repeat(1000));
    let records = vec![
        (0, "k0".to_string(), big_response.bytes()),
        (0, "k1".to_string(), big_key.bytes()),
        (0, "k2".to_string(), Request::new("fine").bytes()),
    ];
    produce(&stack.bootstrap(), REQUEST_TOPIC, &records);
    let mut service = Service::start(&stack.config, &stack.env(&[]));
    let responses = read_all(
        &stack.bootstrap(),
        RESPONSE_TOPIC,
        1,
        1,
        Duration::from_secs(60),
    );
    assert_eq!(responses.len(), 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&responses[0].value).unwrap()["id"],
        "fine"
    );
    let failures = read_all(&stack.bootstrap(), DLQ_TOPIC, 1, 2, Duration::from_secs(10));
    assert_eq!(
        failures.len(),
        1,
        "only the big response's failure record fits"
    );
    let rec: Value = serde_json::from_slice(&failures[0].value).unwrap();
    assert_eq!(rec["id"], "big-response");
    assert_eq!(rec["error"]["kind"], "internal");
    assert_eq!(rec["truncated"], true, "{rec}");
    assert!(
        eventually(Duration::from_secs(20), || committed(
            &stack.bootstrap(),
            CONSUMER_GROUP,
            REQUEST_TOPIC,
            1
        )[0] == Some(3)),
        "the partition moved past the unpublishable request"
    );
    let text = http_get(stack.http_port, "/metrics").unwrap().1;
    assert_eq!(
        metric(&text, "wsi_thumbnail_unpublishable_total"),
        Some(1.0),
        "{text}"
    );
    assert!(service.terminate(Duration::from_secs(30)).success());
}

/// The worker's sandbox, tried from inside it on this kernel.
#[test]
fn a_worker_has_no_network_no_exec_and_writes_only_its_temp_dir() {
    let dir = tempfile::tempdir().unwrap();
    let writable = dir.path().join("work");
    std::fs::create_dir(&writable).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"))
        .args(["worker", "--probe", "--writable-dir"])
        .arg(&writable)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("{report}");
    assert_eq!(report["tcp_socket"], false, "{report}");
    assert_eq!(report["connect"], false, "{report}");
    assert_eq!(report["exec"], false, "{report}");
    assert_eq!(report["write_inside"], true, "{report}");
    let sandbox = report["sandbox"].as_str().unwrap();
    if sandbox.contains("landlock)") {
        assert_eq!(report["write_outside"], false, "{report}");
    } else {
        println!("this kernel has no Landlock; file writes are not restricted here");
    }
}

/// A worker started the way the service starts it holds nothing of the service's: no
/// environment beyond the allow-list, no inherited descriptors, and its limits.
#[test]
fn a_worker_inherits_no_secrets_no_descriptors_and_its_limits() {
    use wsi_thumbnail::worker::WorkerSettings;
    use wsi_thumbnail::worker::process::PASSED_ENV;
    use wsi_thumbnail::worker::zygote::link::{SET_ENV, Zygote};
    let dir = tempfile::tempdir().unwrap();
    // A descriptor without close-on-exec, as a careless library might leave one.
    let leaked = std::fs::File::open(env!("CARGO_MANIFEST_DIR")).unwrap();
    // SAFETY: clearing FD_CLOEXEC on a descriptor we own.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::fcntl(leaked.as_raw_fd(), libc::F_SETFD, 0);
        std::env::set_var("WSI_TEST_SECRET_TOKEN", "s3cr3t");
    }
    let mut settings = WorkerSettings::new(1024, Duration::from_secs(30), dir.path().to_path_buf());
    settings.program = env!("CARGO_BIN_EXE_wsi-thumbnail").into();
    let zygote = Zygote::start(&settings).expect("the zygote starts");
    let worker = zygote.fork().expect("a worker forks");
    assert_ne!(worker.pid(), std::process::id());
    assert!(
        !worker
            .environment
            .iter()
            .any(|k| k == "WSI_TEST_SECRET_TOKEN"),
        "{:?}",
        worker.environment
    );
    // The allow-list, and the settings the zygote is given (malloc's, eager binding).
    assert!(
        worker.environment.iter().all(|k| PASSED_ENV
            .iter()
            .chain(SET_ENV.iter().map(|(name, _)| name))
            .any(|p| p == k)),
        "{:?}",
        worker.environment
    );
    let leaked_target = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap();
    assert!(
        !worker
            .open_fds
            .iter()
            .any(|f| f.ends_with(&*leaked_target.to_string_lossy())),
        "a descriptor of the service reached the worker: {:?}",
        worker.open_fds
    );
    assert_eq!(
        worker.open_fds.len(),
        4,
        "stdin, stdout and stderr, and the slide's socket only: {:?}",
        worker.open_fds
    );
    assert!(
        worker.open_fds.iter().any(|f| f == "0 -> /dev/null")
            && worker
                .open_fds
                .iter()
                .any(|f| f.starts_with("3 -> socket:")),
        "stdin reads nothing, descriptor 3 is the slide's socket: {:?}",
        worker.open_fds
    );
    crate::support::process_tree::assert_worker_limits(worker.pid() as i32, 1024);
    drop(leaked);
}
