//! One slide, one process: every slide is planned and decoded by a worker process that
//! never held another slide, shown by the worker pid on each request's timeline.

use std::collections::HashSet;
use std::time::Duration;

use wsi_thumbnail::fixtures::SlideSpec;

use crate::support::infra::{Stack, metric};
use crate::support::kafka::{REQUEST_TOPIC, RESPONSE_TOPIC, produce, read_all};
use crate::support::request::Request;
use crate::support::service::Service;
use crate::support::*;

#[test]
fn consecutive_slides_never_share_a_worker_process() {
    let pyramid = fixture(&SlideSpec::aperio(16000, 12000, 4));
    let stack = Stack::start(
        "[kafka.topics]\npartitions = 2\n[storage]\noutput = \"gs://thumbs/\"\n\
         [pipeline]\ndecoder_threads = 1\n",
        |input| {
            std::fs::copy(&pyramid, input.join("pyramid.svs")).expect("stage the pyramid");
        },
    );
    let log = stack.dir.path().join("service.log");
    let mut service = Service::start_logged(&stack.config, &stack.env(&[]), &log);
    assert!(becomes_ready(stack.http_port));

    // Alternating a whole download (CMU, read in place by one worker) and a ranged
    // fetch (the pyramid, planned and decoded by one worker), one decoder thread.
    const N: usize = 8;
    let records: Vec<(i32, String, Vec<u8>)> = (0..N)
        .map(|i| {
            let link = if i % 2 == 0 {
                "gs://slides-in/CMU-1-Small-Region.svs"
            } else {
                "gs://slides-in/pyramid.svs"
            };
            let slide = format!("iso-{i}");
            let body = Request::new(format!("iso-id-{i}"))
                .set("slide_id", slide.as_str())
                .link(link)
                .bytes();
            ((i % 2) as i32, slide, body)
        })
        .collect();
    produce(&stack.bootstrap(), REQUEST_TOPIC, &records);
    let responses = read_all(
        &stack.bootstrap(),
        RESPONSE_TOPIC,
        2,
        N,
        Duration::from_secs(90),
    );
    assert_eq!(responses.len(), N, "every slide answered");
    let metrics = http_get(stack.http_port, "/metrics").expect("metrics").1;
    assert!(service.terminate(Duration::from_secs(30)).success());

    let text = std::fs::read_to_string(&log).expect("the service log");
    // Every sandbox layer is a gauge an alert can watch; this kernel has all three
    // (Landlock as the log's sandbox line says).
    let layer = |l: &str| {
        metric(
            &metrics,
            &format!("wsi_thumbnail_sandbox_enforced{{layer=\"{l}\"}}"),
        )
    };
    assert_eq!(layer("seccomp"), Some(1.0), "{metrics}");
    assert_eq!(layer("no_new_privs"), Some(1.0), "{metrics}");
    let landlock = if text.contains("(landlock)") {
        1.0
    } else {
        0.0
    };
    assert_eq!(layer("landlock"), Some(landlock), "{metrics}");
    let pids: Vec<u32> = text
        .lines()
        .filter(|l| l.contains("thumbnail done"))
        .map(|l| {
            let at = l
                .find("worker_pid=")
                .unwrap_or_else(|| panic!("no pid: {l}"));
            l[at + "worker_pid=".len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .expect("a pid")
        })
        .collect();
    assert_eq!(pids.len(), N, "a timeline per slide: {text}");
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        N,
        "no two slides shared a process: {pids:?}"
    );
    assert!(
        !distinct.contains(&(service.pid() as u32)),
        "slides are never decoded in the service process"
    );
}

/// The parent of a process, from `/proc`.
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the worker runs");
    // `pid (comm) state ppid ...`; comm may hold spaces, so read after its `)`.
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    after
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("a parent pid")
}

/// The thread count a thumbnail task carries is the pool the worker decodes with: the
/// service gives a slide that starts alone every core (`worker::cores`), a busy one one.
#[test]
fn a_worker_decodes_with_the_threads_its_task_asks_for() {
    let pool = worker_pool();
    for threads in [1, 3] {
        let thumbnail = pool
            .checkout()
            .expect("a worker")
            .thumbnail(&cmu_small_region(), &Default::default(), threads)
            .expect("a thumbnail");
        assert_eq!(thumbnail.decode_threads, threads);
        assert_eq!((thumbnail.width, thumbnail.height), (766, 1024));
    }
}

/// Workers are forked from a zygote, not from the service; when the zygote dies (the
/// OOM killer, an operator), its children die with it, the slide a dead child held is
/// retried once on a fresh worker, and the pool forks from a new zygote.
#[test]
fn a_pool_for_known_checkouts_starts_no_spare_past_them() {
    let pool = wsi_thumbnail::worker::WorkerPool::start_for(worker_settings(), 1, Some(1));
    // The one worker expected is started ahead of need, as any spare.
    assert!(eventually(Duration::from_secs(30), || pool.ready() == 1));
    let first = pool.checkout().expect("a worker");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pool.ready(), 0, "no spare past the last expected checkout");
    // A checkout past them (a retry) still gets a fresh worker.
    let second = pool.checkout().expect("a worker for a retry");
    assert_ne!(first.pid(), second.pid());
    // An open-ended pool replaces the spare it hands out.
    let open = worker_pool();
    let _taken = open.checkout().expect("a worker");
    assert!(eventually(Duration::from_secs(30), || open.ready() == 1));
}

#[test]
fn a_dead_zygote_costs_no_slide_and_is_replaced() {
    let pool = worker_pool();
    let mut worker = pool.checkout().expect("a worker");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    worker.observe_pid(move |pid| record.lock().unwrap().push(pid));
    let zygote = parent_of(worker.pid());
    assert_ne!(
        zygote,
        std::process::id(),
        "workers are the zygote's children"
    );
    assert_eq!(
        parent_of(zygote),
        std::process::id(),
        "the zygote is the service's child"
    );

    // SAFETY: kill with a pid we just read and a constant signal.
    assert_eq!(unsafe { libc::kill(zygote as i32, libc::SIGKILL) }, 0);
    let thumbnail = worker
        .thumbnail(&cmu_small_region(), &Default::default(), 1)
        .expect("the slide is retried on a worker of a new zygote");
    assert_eq!((thumbnail.width, thumbnail.height), (766, 1024));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        2,
        "the first worker, then the retry's: {seen:?}"
    );
    assert_ne!(seen[0], seen[1], "the retry ran in another process");

    let next = pool.checkout().expect("the pool forks again");
    let new_zygote = parent_of(next.pid());
    assert_ne!(new_zygote, zygote, "a new zygote");
    assert_eq!(parent_of(new_zygote), std::process::id());
}
