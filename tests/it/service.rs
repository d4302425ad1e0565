//! The service end to end against a real tansu broker and a real fake-gcs-server, each
//! started on free ports: requests in, thumbnails in the bucket (or on disk), responses
//! out, and every partition committed to its end offset afterwards.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use wsi_thumbnail::fixtures::SlideSpec;
use wsi_thumbnail::slide::geometry::thumbnail_dims;

use crate::support::infra::{Broker, Gcs, ensure_topics, metric, service_config};
use crate::support::kafka::{
    CONSUMER_GROUP, DLQ_TOPIC, REQUEST_TOPIC, RESPONSE_TOPIC, committed, end_offsets, produce,
    read_all,
};
use crate::support::request::Request;
use crate::support::service::Service;
use crate::support::*;

const PARTITIONS: i32 = 10;

/// A slide in the input bucket and the metadata its response must carry.
struct Slide {
    object: String,
    metadata: Value,
}

/// Fills `data/slides-in/` (the input bucket) with the real slide and two generated
/// pyramids, and creates an empty `thumbs` output bucket.
fn stage_slides(data: &Path) -> Vec<Slide> {
    let input = data.join("slides-in/wsi");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(data.join("thumbs")).unwrap();
    // fake-gcs-server needs at least one object to create a bucket from a folder.
    std::fs::write(data.join("thumbs/.keep"), b"").unwrap();
    std::fs::copy(cmu_small_region(), input.join("CMU-1-Small-Region.svs")).unwrap();
    let four = fixture(&SlideSpec::aperio(12000, 9000, 4));
    let two = fixture(&SlideSpec::aperio(6000, 4500, 2));
    std::fs::copy(&four, input.join("pyramid four.svs")).unwrap();
    std::fs::copy(&two, input.join("pyramid-two.svs")).unwrap();
    vec![
        Slide {
            object: "wsi/CMU-1-Small-Region.svs".into(),
            metadata: json!({"width":2220,"height":2967,"mpp":0.499,"objective_power":20.0,"vendor":"aperio"}),
        },
        Slide {
            object: "wsi/pyramid four.svs".into(),
            metadata: json!({"width":12000,"height":9000,"mpp":0.2527,"objective_power":40.0,"vendor":"aperio"}),
        },
        Slide {
            object: "wsi/pyramid-two.svs".into(),
            metadata: json!({"width":6000,"height":4500,"mpp":0.2527,"objective_power":40.0,"vendor":"aperio"}),
        },
    ]
}

fn write_config(dir: &Path, broker: &Broker, output: &str) -> PathBuf {
    write_config_at(
        dir,
        &broker.bootstrap(),
        output,
        crate::support::infra::free_port(),
    )
}

fn write_config_at(dir: &Path, bootstrap: &str, output: &str, http_port: u16) -> PathBuf {
    write_config_with_budgets(dir, bootstrap, output, http_port, (12, 3))
}

/// The tests' service configuration with in-flight budgets (in all, per partition).
fn write_config_with_budgets(
    dir: &Path,
    bootstrap: &str,
    output: &str,
    http_port: u16,
    (total, per_partition): (usize, usize),
) -> PathBuf {
    let extra = format!(
        "[kafka.topics]\npartitions = {PARTITIONS}\n[storage]\noutput = \"{output}\"\ntemp_dir = \"{}\"\n\
         [pipeline]\nmax_in_flight = {total}\nmax_in_flight_per_partition = {per_partition}\n\
         shutdown_grace_ms = 20000\n",
        dir.join("tmp").display()
    );
    service_config(dir, bootstrap, http_port, &extra)
}

/// Requests `0..n` round-robin over the partitions, keyed by their slide id.
fn spread(
    n: usize,
    slide_id: impl Fn(usize) -> String,
    link: impl Fn(usize) -> String,
) -> Vec<(i32, String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let id = slide_id(i);
            let record = request(i, &id, &link(i));
            ((i % PARTITIONS as usize) as i32, id, record)
        })
        .collect()
}

fn request(n: usize, slide_id: &str, link: &str) -> Vec<u8> {
    Request::new(format!("req-{n}"))
        .slide(slide_id)
        .link(link)
        .patient(format!("patient-{}", n % 7))
        .block("block-A")
        .bytes()
}

/// Checks one response against the contract's schema and the request it answers.
fn check_response(resp: &Value, expected_metadata: &Value, expected_link: &str) {
    let keys: HashSet<&str> = resp
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from([
            "id",
            "thumbnail_image_link",
            "patient_id",
            "slide_id",
            "metadata",
            "block_id"
        ])
    );
    assert_eq!(&resp["metadata"], expected_metadata);
    assert_eq!(resp["thumbnail_image_link"], expected_link);
    assert_eq!(resp["block_id"], "block-A");
}

pub(crate) async fn read_gcs_object(url: &str, bucket: &str, object: &str) -> Vec<u8> {
    let client = google_cloud_storage::client::Storage::builder()
        .with_endpoint(url)
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap();
    let mut resp = client
        .read_object(format!("projects/_/buckets/{bucket}"), object)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{bucket}/{object}: {e}"));
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    bytes
}

fn assert_all_committed(bootstrap: &str, topic: &str) {
    let ends = end_offsets(bootstrap, topic, PARTITIONS);
    let done = committed(bootstrap, CONSUMER_GROUP, topic, PARTITIONS);
    for p in 0..PARTITIONS as usize {
        if ends[p] > 0 {
            assert_eq!(
                done[p],
                Some(ends[p]),
                "partition {p}: committed {:?}, end {}",
                done[p],
                ends[p]
            );
        }
    }
}

#[actix_rt::test]
async fn two_hundred_requests_over_ten_partitions_from_gcs() {
    let dir = tempfile::tempdir().unwrap();
    let slides = stage_slides(&dir.path().join("gcs"));
    let gcs = Gcs::start(&dir.path().join("gcs"));
    let broker = Broker::start();
    let config = write_config(dir.path(), &broker, "gs://thumbs/out/");
    ensure_topics(&config);

    let total = 200;
    let requests = spread(
        total,
        |n| format!("slide-{n:03}"),
        |n| format!("gs://slides-in/{}", slides[n % slides.len()].object),
    );
    produce(&broker.bootstrap(), REQUEST_TOPIC, &requests);

    let mut service = Service::start(&config, &[("STORAGE_EMULATOR_HOST", gcs.url())]);
    let responses = read_all(
        &broker.bootstrap(),
        RESPONSE_TOPIC,
        PARTITIONS,
        total,
        Duration::from_secs(240),
    );
    assert_eq!(responses.len(), total, "responses");
    let dlq = read_all(
        &broker.bootstrap(),
        DLQ_TOPIC,
        PARTITIONS,
        1,
        Duration::from_millis(500),
    );
    assert!(dlq.is_empty(), "unexpected failure records");

    let mut seen = HashSet::new();
    for r in &responses {
        let resp: Value = serde_json::from_slice(&r.value).unwrap();
        let n: usize = resp["id"].as_str().unwrap()["req-".len()..]
            .parse()
            .unwrap();
        assert!(seen.insert(n), "duplicate response for {n}");
        assert_eq!(
            r.key.as_deref(),
            resp["slide_id"].as_str(),
            "response key is the slide_id"
        );
        let slide = &slides[n % slides.len()];
        let stem = Path::new(&slide.object)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        check_response(
            &resp,
            &slide.metadata,
            &format!("gs://thumbs/out/{stem}_thumbnail.png"),
        );
    }
    for slide in &slides {
        let stem = Path::new(&slide.object)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let png = read_gcs_object(&gcs.url(), "thumbs", &format!("out/{stem}_thumbnail.png")).await;
        let (w, h, _) = decode_png(&png);
        let (sw, sh) = (
            slide.metadata["width"].as_u64().unwrap(),
            slide.metadata["height"].as_u64().unwrap(),
        );
        assert_eq!((w, h), thumbnail_dims(sw, sh, 1024), "{}", slide.object);
    }

    let status = service.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    assert_all_committed(&broker.bootstrap(), REQUEST_TOPIC);
}

#[actix_rt::test]
async fn https_links_in_and_local_disk_out() {
    let dir = tempfile::tempdir().unwrap();
    let slides = stage_slides(&dir.path().join("gcs"));
    let gcs = Gcs::start(&dir.path().join("gcs"));
    let broker = Broker::start();
    let out = dir.path().join("out");
    let config = write_config(dir.path(), &broker, &format!("file://{}/", out.display()));
    ensure_topics(&config);

    let total = 30;
    let requests = spread(
        total,
        |n| format!("s{n}"),
        |n| {
            let encoded = slides[n % slides.len()].object.replace(' ', "%20");
            format!("https://storage.googleapis.com/slides-in/{encoded}")
        },
    );
    produce(&broker.bootstrap(), REQUEST_TOPIC, &requests);
    let mut service = Service::start(&config, &[("STORAGE_EMULATOR_HOST", gcs.url())]);
    let responses = read_all(
        &broker.bootstrap(),
        RESPONSE_TOPIC,
        PARTITIONS,
        total,
        Duration::from_secs(120),
    );
    assert_eq!(responses.len(), total);
    for r in &responses {
        let resp: Value = serde_json::from_slice(&r.value).unwrap();
        let n: usize = resp["id"].as_str().unwrap()["req-".len()..]
            .parse()
            .unwrap();
        let slide = &slides[n % slides.len()];
        let stem = Path::new(&slide.object)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let file = out.join(format!("{stem}_thumbnail.png"));
        check_response(
            &resp,
            &slide.metadata,
            &format!("file://{}", file.display()),
        );
        let (w, h, _) = decode_png(&std::fs::read(&file).unwrap());
        assert_eq!(w.max(h), 1024);
    }
    assert!(service.terminate(Duration::from_secs(30)).success());
    assert_all_committed(&broker.bootstrap(), REQUEST_TOPIC);
}

#[actix_rt::test]
async fn requests_for_one_slide_are_answered_in_offset_order() {
    let dir = tempfile::tempdir().unwrap();
    let slides = stage_slides(&dir.path().join("gcs"));
    let gcs = Gcs::start(&dir.path().join("gcs"));
    let broker = Broker::start();
    let config = write_config(dir.path(), &broker, "gs://thumbs/");
    ensure_topics(&config);

    // 20 requests keyed "same-slide" (all on partition 3, as a keyed producer would put
    // them), interleaved with 60 requests for other slides everywhere, slow and fast
    // slides mixed so that completion order would differ from offset order.
    let mut requests = Vec::new();
    let mut same_order = Vec::new();
    for n in 0..80 {
        let slide = &slides[n % slides.len()];
        let link = format!("gs://slides-in/{}", slide.object);
        if n % 4 == 0 {
            same_order.push(format!("req-{n}"));
            requests.push((3, "same-slide".to_string(), request(n, "same-slide", &link)));
        } else {
            let id = format!("other-{n}");
            let partition = (n % PARTITIONS as usize) as i32;
            requests.push((partition, id.clone(), request(n, &id, &link)));
        }
    }
    produce(&broker.bootstrap(), REQUEST_TOPIC, &requests);
    let mut service = Service::start(&config, &[("STORAGE_EMULATOR_HOST", gcs.url())]);
    let responses = read_all(
        &broker.bootstrap(),
        RESPONSE_TOPIC,
        PARTITIONS,
        80,
        Duration::from_secs(120),
    );
    assert_eq!(responses.len(), 80);
    let mut by_partition: HashMap<i32, Vec<&crate::support::kafka::Record>> = HashMap::new();
    for r in &responses {
        by_partition.entry(r.partition).or_default().push(r);
    }
    let answered: Vec<String> = by_partition
        .values()
        .flat_map(|rs| {
            let mut rs = rs.clone();
            rs.sort_by_key(|r| r.offset);
            rs
        })
        .filter(|r| r.key.as_deref() == Some("same-slide"))
        .map(|r| r.id())
        .collect();
    assert_eq!(
        answered, same_order,
        "responses for one slide_id out of order"
    );
    assert!(service.terminate(Duration::from_secs(30)).success());
}

#[actix_rt::test]
async fn probes_and_metrics_tell_the_truth() {
    let dir = tempfile::tempdir().unwrap();

    // No broker yet: alive, not ready.
    let dead = format!("127.0.0.1:{}", crate::support::infra::free_port());
    let port = crate::support::infra::free_port();
    let config = write_config_at(dir.path(), &dead, "gs://thumbs/", port);
    let mut service = Service::start(&config, &[]);
    assert!(eventually(Duration::from_secs(20), || http_get(
        port, "/healthz"
    )
    .is_some_and(|(s, _)| s == 200)));
    let (status, _) = http_get(port, "/readyz").unwrap();
    assert_eq!(status, 503, "ready without a broker");
    // The image's HEALTHCHECK: `wsi-thumbnail health` says alive (PORT as in the image).
    let health = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"))
            .arg("health")
            .env("PORT", port.to_string())
            .output()
            .expect("run wsi-thumbnail health")
    };
    assert!(health().status.success(), "healthy while alive");
    assert!(service.terminate(Duration::from_secs(30)).success());
    let gone = health();
    assert!(!gone.status.success(), "unhealthy once stopped");
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("/healthz"),
        "names what it asked"
    );

    // With a broker: ready, and after N requests every contract metric is there with
    // counters equal to N and lag back to 0.
    let slides = stage_slides(&dir.path().join("gcs"));
    let gcs = Gcs::start(&dir.path().join("gcs"));
    let broker = Broker::start();
    let port = crate::support::infra::free_port();
    let config = write_config_at(dir.path(), &broker.bootstrap(), "gs://thumbs/", port);
    ensure_topics(&config);
    let mut service = Service::start(&config, &[("STORAGE_EMULATOR_HOST", gcs.url())]);
    assert!(becomes_ready(port));
    let n = 20;
    let requests = spread(
        n,
        |i| format!("m{i}"),
        |i| format!("gs://slides-in/{}", slides[i % slides.len()].object),
    );
    produce(&broker.bootstrap(), REQUEST_TOPIC, &requests);
    let responses = read_all(
        &broker.bootstrap(),
        RESPONSE_TOPIC,
        PARTITIONS,
        n,
        Duration::from_secs(120),
    );
    assert_eq!(responses.len(), n);

    let settled = eventually(Duration::from_secs(30), || {
        let Some((200, text)) = http_get(port, "/metrics") else {
            return false;
        };
        metric(&text, "wsi_thumbnail_completed_total") == Some(n as f64)
            && (0..PARTITIONS).all(|p| {
                let series = format!("wsi_thumbnail_consumer_lag{{partition=\"{p}\"}}");
                metric(&text, &series).is_none_or(|lag| lag == 0.0)
            })
            && text.contains("wsi_thumbnail_consumer_lag{")
    });
    let (_, text) = http_get(port, "/metrics").unwrap();
    assert!(settled, "metrics never settled:\n{text}");
    for name in [
        "wsi_thumbnail_requests_total",
        "wsi_thumbnail_completed_total",
        "wsi_thumbnail_failed_total{kind=\"corrupt_slide\"}",
        "wsi_thumbnail_retries_total",
        "wsi_thumbnail_in_flight",
        "wsi_thumbnail_stage_seconds_bucket{stage=\"decode\"",
        "wsi_thumbnail_stage_seconds_count{stage=\"publish\"}",
        "wsi_thumbnail_end_to_end_seconds_count",
        "wsi_thumbnail_committed_offset{partition=",
        "wsi_thumbnail_consumer_lag{partition=",
        "wsi_thumbnail_slide_bytes_fetched_total",
    ] {
        assert!(text.contains(name), "missing {name} in:\n{text}");
    }
    assert_eq!(
        metric(&text, "wsi_thumbnail_requests_total"),
        Some(n as f64)
    );
    assert_eq!(
        metric(&text, "wsi_thumbnail_stage_seconds_count{stage=\"fetch\"}"),
        Some(n as f64)
    );
    assert_eq!(metric(&text, "wsi_thumbnail_in_flight"), Some(0.0));
    assert!(metric(&text, "wsi_thumbnail_slide_bytes_fetched_total").unwrap() > 1_000_000.0);
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
    assert!(service.terminate(Duration::from_secs(30)).success());
}

/// The global budget is a gate on reading: with 30 requests waiting over every
/// partition and room for 3, no more than 3 are ever in flight (without the gate,
/// per-partition budgets alone would admit up to 10 per partition), and the budget is
/// used, not starved.
#[test]
fn the_global_budget_bounds_what_is_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let slides = stage_slides(&dir.path().join("gcs"));
    let gcs = Gcs::start(&dir.path().join("gcs"));
    let broker = Broker::start();
    let port = crate::support::infra::free_port();
    let config = write_config_with_budgets(
        dir.path(),
        &broker.bootstrap(),
        "gs://thumbs/",
        port,
        (3, 10),
    );
    ensure_topics(&config);
    let mut service = Service::start(&config, &[("STORAGE_EMULATOR_HOST", gcs.url())]);
    assert!(becomes_ready(port));
    let n = 30;
    let requests = spread(
        n,
        |i| format!("g{i}"),
        |_| format!("gs://slides-in/{}", slides[0].object),
    );
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = std::thread::spawn({
        let sampling = sampling.clone();
        move || {
            let mut seen = Vec::new();
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some((200, text)) = http_get(port, "/metrics")
                    && let Some(v) = metric(&text, "wsi_thumbnail_in_flight")
                {
                    seen.push(v);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        }
    });
    produce(&broker.bootstrap(), REQUEST_TOPIC, &requests);
    let responses = read_all(
        &broker.bootstrap(),
        RESPONSE_TOPIC,
        PARTITIONS,
        n,
        Duration::from_secs(120),
    );
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let seen = sampler.join().unwrap();
    assert_eq!(responses.len(), n, "every request answered");
    let most = seen.iter().copied().fold(0.0, f64::max);
    println!("{} samples of in_flight, most {most}", seen.len());
    assert!(seen.len() > 20, "too few samples: {}", seen.len());
    assert!(most <= 3.0, "{most} in flight with a budget of 3");
    assert!(
        most >= 2.0,
        "the budget was never used: at most {most} in flight"
    );
    assert!(service.terminate(Duration::from_secs(30)).success());
}
