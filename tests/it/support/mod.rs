//! Shared test helpers: where the real test data lives, cached generated fixtures,
//! image comparison and a minimal HTTP client; the submodules hold the broker and
//! emulator (`infra`), the service child process (`service`), test-side Kafka clients
//! (`kafka`, with the topic names), the request builder (`request`) and /proc readings
//! of a process tree (`process_tree`).

pub mod creator_front;
pub mod infra;
pub mod kafka;
pub mod process_tree;
pub mod request;
pub mod service;

use std::path::{Path, PathBuf};

use wsi_thumbnail::fixtures::{self, SlideSpec};

/// The shared real slide (never copied into the repository).
pub fn cmu_small_region() -> PathBuf {
    testdata().join("CMU-1-Small-Region.svs")
}

pub fn cmu_reference_png() -> PathBuf {
    testdata().join("CMU-1-Small-Region.openslide-1024.png")
}

/// The shared poison example (OpenSlide 3.4.1 divides by zero opening it).
pub fn shared_poison() -> PathBuf {
    testdata().join("poison/aperio_missing_tile_sigfpe.svs")
}

pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata")
}

/// A pool of worker processes of the real binary (the test binary is not one), with the
/// service's default limits.
pub fn worker_pool() -> std::sync::Arc<wsi_thumbnail::worker::WorkerPool> {
    wsi_thumbnail::worker::WorkerPool::start(worker_settings(), 1)
}

/// The settings [`worker_pool`] starts its workers with.
pub fn worker_settings() -> wsi_thumbnail::worker::WorkerSettings {
    let mut settings = wsi_thumbnail::worker::WorkerSettings::new(
        2048,
        std::time::Duration::from_secs(120),
        std::env::temp_dir(),
    );
    settings.program = PathBuf::from(env!("CARGO_BIN_EXE_wsi-thumbnail"));
    settings
}

/// What a ranged fetch needs besides the object: a fresh worker process as its planner
/// (as the service does) and unlimited budgets.
pub struct Planning {
    _pool: std::sync::Arc<wsi_thumbnail::worker::WorkerPool>,
    pub planner: wsi_thumbnail::worker::SlidePlanner,
    pub budgets: wsi_thumbnail::storage::budget::Budgets,
}

impl Planning {
    pub fn new() -> Planning {
        let pool = worker_pool();
        Planning {
            planner: wsi_thumbnail::worker::SlidePlanner::new(Some(&pool)),
            _pool: pool,
            budgets: wsi_thumbnail::storage::budget::Budgets::unlimited(),
        }
    }

    /// The fetch settings of these tests: 1024-pixel thumbnails, 4 GETs at once.
    pub fn settings(
        mode: wsi_thumbnail::storage::ranged::FetchMode,
    ) -> wsi_thumbnail::storage::ranged::RangedSettings {
        wsi_thumbnail::storage::ranged::RangedSettings {
            mode,
            concurrency: 4,
            max_size: 1024,
            max_slide_pixels: wsi_thumbnail::slide::DEFAULT_MAX_SLIDE_PIXELS,
        }
    }

    pub fn context<'a>(
        &'a self,
        settings: &'a wsi_thumbnail::storage::ranged::RangedSettings,
        temp: &'a Path,
    ) -> wsi_thumbnail::storage::ranged::FetchContext<'a> {
        wsi_thumbnail::storage::ranged::FetchContext {
            settings,
            temp_dir: temp,
            planner: &self.planner,
            budgets: &self.budgets,
        }
    }
}

/// Generated fixtures are cached under target/ (deterministic, so safe to reuse).
pub fn fixture(spec: &SlideSpec) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    fixtures::ensure_slide(&dir, spec).expect("generate fixture slide")
}

/// A generated DICOM series, cached under target/ (a folder per spec); returns the folder.
pub fn dicom_fixture(spec: &fixtures::dicom::DicomSpec) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    fixtures::dicom::ensure_series(&dir, spec).expect("generate DICOM fixture series")
}

/// A generated MIRAX slide, cached under target/; returns its `.mrxs` (the companion
/// folder of the same stem beside it).
pub fn mirax_fixture(spec: &fixtures::mirax::MiraxSpec) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    fixtures::mirax::ensure_slide(&dir, spec).expect("generate MIRAX fixture slide")
}

/// A generated Hamamatsu VMS slide, cached under target/; returns its `.vms` (the files
/// it names beside it, in a folder of its own).
pub fn vms_fixture(spec: &fixtures::vms::VmsSpec) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    fixtures::vms::ensure_slide(&dir, spec).expect("generate VMS fixture slide")
}

/// Decodes a PNG into (width, height, RGB bytes).
pub fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    (info.width, info.height, rgb)
}

/// Mean absolute difference over all channels and pixels (0-255 scale).
pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "images differ in size");
    let total: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.len() as f64
}

pub fn max_abs_diff(a: &[u8], b: &[u8]) -> u8 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// A minimal HTTP/1.1 GET against 127.0.0.1: (status code, body), or None if nothing
/// listens yet.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path, b"")
}

/// `POST path` with a JSON body: (status code, body).
pub fn http_post(port: u16, path: &str, body: &[u8]) -> Option<(u16, String)> {
    http_request_with(port, "POST", path, body, "")
}

/// `POST path` with a JSON body and extra header lines (`Name: value\r\n` each).
pub fn http_post_with(port: u16, path: &str, body: &[u8], headers: &str) -> Option<(u16, String)> {
    http_request_with(port, "POST", path, body, headers)
}

fn http_request(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    http_request_with(port, method, path, body, "")
}

fn http_request_with(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &str,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .ok()?;
    stream.write_all(body).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Waits up to 30 s for the service on `port` to answer `/readyz` with 200.
pub fn becomes_ready(port: u16) -> bool {
    eventually(std::time::Duration::from_secs(30), || {
        http_get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    })
}

/// Polls until `check` holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    check()
}
