//! DICOM series read by ranges: from a link to any one instance, the storage side lists
//! the folder, reads every instance's header and only the chosen level's pixel data, and
//! the engine makes from that sparse copy the thumbnail it makes from the whole series.
//! Through the real service and emulator, a link to each of the shared CMU instances
//! gives the contract's metadata for at most half the series' bytes, and a generated
//! 40960 x 30720 series costs at most 3%. Hostile headers end as `corrupt_slide`, at
//! the fetch or in the engine, never as a read of what they declare.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::infra::{Stack, metric};
use crate::support::request::Request;
use crate::support::service::Service;
use crate::support::*;
use wsi_thumbnail::ErrorKind;
use wsi_thumbnail::fixtures::dicom::{DicomSpec, Hostile, level_file};
use wsi_thumbnail::slide::{ThumbnailOptions, make_thumbnail};
use wsi_thumbnail::storage::fetch::{FetchPath, LocalSlide};
use wsi_thumbnail::storage::ranged::FetchMode;
use wsi_thumbnail::storage::ranged::folder::LocalFolder;
use wsi_thumbnail::storage::ranged::series::fetch_series;

fn cmu_series() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/dicom/CMU-1-Small-Region")
}

fn instances(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dcm"))
        .collect();
    names.sort();
    names
}

fn folder_bytes(dir: &Path) -> u64 {
    instances(dir)
        .iter()
        .map(|n| std::fs::metadata(dir.join(n)).unwrap().len())
        .sum()
}

fn fetch(dir: &Path, linked: &str, mode: FetchMode, temp: &Path) -> LocalSlide {
    try_fetch(dir, linked, mode, temp).expect("series fetch")
}

fn try_fetch(
    dir: &Path,
    linked: &str,
    mode: FetchMode,
    temp: &Path,
) -> Result<LocalSlide, wsi_thumbnail::storage::error::StorageError> {
    let settings = Planning::settings(mode);
    let folder = LocalFolder {
        dir: dir.to_path_buf(),
    };
    let planning = Planning::new();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(fetch_series(
            &folder,
            linked,
            &planning.context(&settings, temp),
        ))
}

fn contract_metadata() -> Value {
    json!({"width": 2220, "height": 2967, "mpp": 0.499, "objective_power": null, "vendor": "dicom"})
}

#[test]
fn a_ranged_copy_of_the_cmu_series_from_any_instance_makes_the_same_thumbnail() {
    let dir = cmu_series();
    let total = folder_bytes(&dir);
    let temp = tempfile::tempdir().unwrap();
    let options = ThumbnailOptions::default();
    let reference = make_thumbnail(&dir.join("level-0-frames-0-30.dcm"), &options)
        .expect("thumbnail of the series in place");
    for name in instances(&dir) {
        let ranged = fetch(&dir, &name, FetchMode::Auto, temp.path());
        assert_eq!(ranged.via, FetchPath::Ranged, "{name}");
        assert!(
            ranged.bytes_fetched * 2 <= total,
            "{name}: read {} of {total} bytes",
            ranged.bytes_fetched
        );
        let made = make_thumbnail(&ranged.path, &options).expect("thumbnail of the ranged copy");
        assert_eq!(
            serde_json::to_value(&made.metadata).unwrap(),
            contract_metadata(),
            "{name}"
        );
        assert!(
            made.png == reference.png,
            "{name}: the ranged copy's thumbnail differs"
        );
    }
    let whole = fetch(
        &dir,
        "level-5-frames-0-1.dcm",
        FetchMode::Whole,
        temp.path(),
    );
    assert_eq!(whole.via, FetchPath::Whole);
    assert_eq!(
        whole.bytes_fetched, total,
        "whole mode reads every instance once"
    );
    let made = make_thumbnail(&whole.path, &options).expect("thumbnail of the whole copy");
    assert!(made.png == reference.png);
    drop((whole, temp));
}

#[test]
fn the_fetched_folder_goes_when_the_slide_is_dropped() {
    let temp = tempfile::tempdir().unwrap();
    let slide = fetch(
        &cmu_series(),
        "level-1-frames-0-9.dcm",
        FetchMode::Auto,
        temp.path(),
    );
    let folder = slide.path.parent().unwrap().to_path_buf();
    assert!(folder.join("level-0-frames-0-30.dcm").exists());
    drop(slide);
    assert!(!folder.exists(), "the temporary series folder is removed");
}

#[test]
fn through_the_service_any_instance_link_gives_the_contract_metadata_for_half_the_bytes() {
    let dir = cmu_series();
    let total = folder_bytes(&dir);
    let names = instances(&dir);
    let stack = Stack::start(
        "[storage]\noutput = \"gs://thumbs/\"\nallowed_buckets = [\"slides-in\"]\n",
        |input| {
            let series = input.join("cases/cmu");
            std::fs::create_dir_all(&series).unwrap();
            for n in instances(&cmu_series()) {
                std::fs::copy(cmu_series().join(&n), series.join(&n)).expect("stage");
            }
            // Another slide's file in a sub-folder, and files beside the series that
            // are not DICOM: none is part of the slide.
            std::fs::create_dir_all(series.join("other")).unwrap();
            std::fs::write(series.join("other/x.dcm"), b"not this one").unwrap();
            std::fs::write(series.join("notes.txt"), b"not a slide").unwrap();
            std::fs::write(series.join("readme.dcm"), b"a .dcm that is not DICOM").unwrap();
            // A folder holding two series: the CMU one and a generated one.
            let mixed = input.join("cases/mixed");
            std::fs::create_dir_all(&mixed).unwrap();
            for n in instances(&cmu_series()) {
                std::fs::copy(cmu_series().join(&n), mixed.join(&n)).expect("stage");
            }
            let generated = dicom_fixture(&DicomSpec::new(8192, 6144));
            for n in instances(&generated) {
                std::fs::copy(generated.join(&n), mixed.join(&n)).expect("stage");
            }
        },
    );
    let port = stack.http_port;
    let _service = Service::start(&stack.config, &stack.env(&[]));
    assert!(becomes_ready(port));
    let mut fetched_before = 0.0;
    for (i, name) in names.iter().enumerate() {
        let body = Request::new(format!("dicom-{i}"))
            .slide("cmu-dicom")
            .link(format!("gs://slides-in/cases/cmu/{name}"))
            .bytes();
        let (status, text) = http_post(port, "/process", &body).expect("POST /process");
        assert_eq!(status, 200, "{name}: {text}");
        let response: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(response["metadata"], contract_metadata(), "{name}");
        // Contract §1: the series' folder names the thumbnail, whichever instance is linked.
        assert_eq!(
            response["thumbnail_image_link"], "gs://thumbs/cmu_thumbnail.png",
            "{name}"
        );
        let (_, metrics) = http_get(port, "/metrics").expect("metrics");
        let fetched =
            metric(&metrics, "wsi_thumbnail_slide_bytes_fetched_total").expect("bytes metric");
        let this = fetched - fetched_before;
        fetched_before = fetched;
        assert!(
            this > 0.0 && this * 2.0 <= total as f64,
            "{name}: read {this} of {total} bytes"
        );
    }
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let n = names.len() as f64;
    assert_eq!(
        metric(&metrics, "wsi_thumbnail_fetch_path_total{path=\"ranged\"}"),
        Some(n)
    );
    assert_eq!(
        metric(&metrics, "wsi_thumbnail_pixel_path_total{path=\"dicom\"}"),
        Some(n)
    );

    // Where the folder holds two series, each is named `<folder>_<SeriesInstanceUID>`.
    let generated = dicom_fixture(&DicomSpec::new(8192, 6144));
    for (dir, name) in [
        (cmu_series(), names[0].clone()),
        (generated.clone(), instances(&generated)[0].clone()),
    ] {
        let uid = series_uid(&dir.join(&name));
        let body = Request::new(format!("mixed-{name}"))
            .slide("mixed")
            .link(format!("gs://slides-in/cases/mixed/{name}"))
            .bytes();
        let (status, text) = http_post(port, "/process", &body).expect("POST /process");
        assert_eq!(status, 200, "{name}: {text}");
        let response: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            response["thumbnail_image_link"],
            format!("gs://thumbs/mixed_{uid}_thumbnail.png"),
            "{name}"
        );
    }
}

/// SeriesInstanceUID of a DICOM instance file.
fn series_uid(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    match wsi_thumbnail::formats::dicom::scan_prefix(&bytes, bytes.len() as u64).unwrap() {
        wsi_thumbnail::formats::dicom::Scan::Header(h) => h.series_uid,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_generated_40960_x_30720_series_costs_at_most_3_percent_and_matches_the_whole_copy() {
    let dir = dicom_fixture(&DicomSpec::new(40960, 30720));
    let total = folder_bytes(&dir);
    let temp = tempfile::tempdir().unwrap();
    let options = ThumbnailOptions::default();
    let linked = level_file(1);
    let ranged = fetch(&dir, &linked, FetchMode::Auto, temp.path());
    assert_eq!(ranged.via, FetchPath::Ranged);
    let fraction = ranged.bytes_fetched as f64 / total as f64;
    println!(
        "read {} of {total} bytes ({:.3}%)",
        ranged.bytes_fetched,
        fraction * 100.0
    );
    assert!(
        fraction <= 0.03,
        "read {:.2}% of the series",
        fraction * 100.0
    );
    let whole = fetch(&dir, &linked, FetchMode::Whole, temp.path());
    assert_eq!(whole.bytes_fetched, total);
    let from_ranged = make_thumbnail(&ranged.path, &options).expect("ranged thumbnail");
    let from_whole = make_thumbnail(&whole.path, &options).expect("whole thumbnail");
    assert!(
        from_ranged.png == from_whole.png,
        "the ranged copy's thumbnail differs from the whole copy's"
    );
    assert_eq!(from_ranged.metadata.width, Some(40960));
}

#[test]
fn hostile_headers_fail_as_corrupt_at_the_fetch_or_in_the_engine() {
    let temp = tempfile::tempdir().unwrap();
    for hostile in Hostile::ALL {
        let dir = dicom_fixture(&DicomSpec::hostile(hostile));
        let linked = level_file(0);
        let kind = match try_fetch(&dir, &linked, FetchMode::Auto, temp.path()) {
            Err(e) => e.kind(),
            Ok(local) => {
                assert!(
                    local.bytes_fetched <= folder_bytes(&dir),
                    "{hostile:?}: read more than the series holds"
                );
                make_thumbnail(&local.path, &ThumbnailOptions::default())
                    .map(|_| ErrorKind::Internal)
                    .expect_err("a hostile series makes no thumbnail")
                    .kind()
            }
        };
        assert_eq!(kind, ErrorKind::CorruptSlide, "{hostile:?}");
    }
}

#[test]
fn through_the_service_a_generated_40960_x_30720_series_costs_at_most_3_percent() {
    let series = dicom_fixture(&DicomSpec::new(40960, 30720));
    let total = folder_bytes(&series);
    let stack = Stack::start(
        "[storage]\noutput = \"gs://thumbs/\"\nallowed_buckets = [\"slides-in\"]\n",
        |input| {
            let to = input.join("big");
            std::fs::create_dir_all(&to).unwrap();
            for n in instances(&series) {
                std::fs::copy(series.join(&n), to.join(&n)).expect("stage");
            }
        },
    );
    let port = stack.http_port;
    let _service = Service::start(&stack.config, &stack.env(&[]));
    assert!(becomes_ready(port));
    let body = Request::new("big-dicom")
        .slide("big-dicom")
        .link(format!("gs://slides-in/big/{}", level_file(0)))
        .bytes();
    let (status, text) = http_post(port, "/process", &body).expect("POST /process");
    assert_eq!(status, 200, "{text}");
    let response: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(response["metadata"]["width"], 40960, "{text}");
    assert_eq!(response["metadata"]["vendor"], "dicom", "{text}");
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let fetched =
        metric(&metrics, "wsi_thumbnail_slide_bytes_fetched_total").expect("bytes metric");
    assert!(
        fetched > 0.0 && fetched <= 0.03 * total as f64,
        "fetched {fetched} of {total} bytes ({:.2}%)",
        100.0 * fetched / total as f64
    );
    assert_eq!(
        metric(&metrics, "wsi_thumbnail_fetch_path_total{path=\"ranged\"}"),
        Some(1.0)
    );
}
