//! Ranged reads: a slide rebuilt from only the planned byte ranges (a sparse file, zeros
//! elsewhere) must give the same thumbnail, metadata and OpenSlide properties (including
//! `openslide.quickhash-1`) as the whole file, with both pixel paths; files the planner
//! does not model still succeed through the whole-object fallback; and through the real
//! service and emulator, a 1024-pixel thumbnail of a 40000 x 30000 pyramid reads at most
//! 3% of the object.

use std::path::Path;

use openslide_rs::OpenSlide;
use serde_json::Value;

use crate::support::infra::{Stack, metric};
use crate::support::request::Request;
use crate::support::service::Service;
use crate::support::*;
use wsi_thumbnail::fixtures::{SlideSpec, Style};
use wsi_thumbnail::slide::{DecoderChoice, ThumbnailOptions, make_thumbnail};
use wsi_thumbnail::storage::fetch::{FetchPath, LocalSlide};
use wsi_thumbnail::storage::ranged::{FetchMode, FileObject, RangedSettings, fetch_ranged};

fn settings(mode: FetchMode) -> RangedSettings {
    Planning::settings(mode)
}

pub(crate) fn fetch(path: &Path, mode: FetchMode, temp: &Path) -> LocalSlide {
    let object = FileObject {
        path: path.to_path_buf(),
    };
    let (planning, settings) = (Planning::new(), settings(mode));
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(fetch_ranged(&object, &planning.context(&settings, temp)))
        .expect("ranged fetch")
}

fn properties(path: &Path) -> Vec<(String, String)> {
    let slide = OpenSlide::new(path).expect("OpenSlide opens it");
    let mut names = slide.property_names().expect("property names");
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let v = slide.property_value(&n).unwrap_or_default();
            (n, v)
        })
        .collect()
}

/// The sparse copy must be indistinguishable from the original to everything we run.
pub(crate) fn assert_same_slide(original: &Path, copy: &Path) {
    let props = properties(original);
    // OpenSlide 3.4 hashes the smallest level only when it is small enough: Aperio
    // slides and every pyramid here have one; the single-level generic fixture does not.
    let has = |name: &str, value: &str| props.iter().any(|(n, v)| n == name && v == value);
    if has("openslide.vendor", "aperio") || !has("openslide.level-count", "1") {
        assert!(
            props.iter().any(|(n, _)| n == "openslide.quickhash-1"),
            "the original has a quickhash: {props:?}"
        );
    }
    assert_eq!(props, properties(copy), "OpenSlide properties differ");
    for decoder in [DecoderChoice::Auto, DecoderChoice::Openslide] {
        let options = ThumbnailOptions {
            decoder,
            ..ThumbnailOptions::default()
        };
        let want = make_thumbnail(original, &options).expect("thumbnail of the original");
        let got = make_thumbnail(copy, &options).expect("thumbnail of the sparse copy");
        assert_eq!(got.metadata, want.metadata, "{decoder:?}");
        assert_eq!(
            (got.level, got.path),
            (want.level, want.path),
            "{decoder:?}"
        );
        assert!(got.png == want.png, "{decoder:?}: the PNGs differ");
    }
}

#[test]
fn ranged_copies_of_real_and_generated_slides_make_identical_thumbnails() {
    let temp = tempfile::tempdir().unwrap();
    let generic_2x = SlideSpec {
        style: Style::GenericTiff,
        ..SlideSpec::aperio(12000, 9000, 2)
    };
    let cases = [
        (cmu_small_region(), false),
        (fixture(&SlideSpec::aperio(16000, 12000, 4)), true),
        (fixture(&SlideSpec::aperio(16000, 12000, 2)), true),
        (fixture(&generic_2x), true),
    ];
    for (slide, pyramid) in cases {
        let size = std::fs::metadata(&slide).unwrap().len();
        let local = fetch(&slide, FetchMode::Ranged, temp.path());
        assert_eq!(local.via, FetchPath::Ranged, "{}", slide.display());
        assert_eq!(std::fs::metadata(&local.path).unwrap().len(), size);
        if pyramid {
            assert!(
                local.bytes_fetched * 10 < size,
                "{}: fetched {} of {size} bytes",
                slide.display(),
                local.bytes_fetched
            );
        }
        assert_same_slide(&slide, &local.path);
    }
}

#[test]
fn a_slide_the_planner_does_not_model_is_fetched_whole_and_still_succeeds() {
    let temp = tempfile::tempdir().unwrap();
    // An OME-style XML description: OpenSlide reads it as generic-tiff, the planner
    // declines to guess which vendor driver would claim it.
    let spec = SlideSpec {
        style: Style::GenericTiff,
        description: Some("<?xml version=\"1.0\"?><OME></OME>".into()),
        ..SlideSpec::aperio(6000, 4000, 2)
    };
    let slide = fixture(&spec);
    let local = fetch(&slide, FetchMode::Ranged, temp.path());
    assert_eq!(local.via, FetchPath::Whole);
    assert_eq!(
        local.bytes_fetched,
        std::fs::metadata(&slide).unwrap().len()
    );
    assert_eq!(
        make_thumbnail(&local.path, &ThumbnailOptions::default())
            .expect("thumbnail")
            .metadata
            .vendor,
        "generic-tiff"
    );
    assert_same_slide(&slide, &local.path);
}

#[test]
fn auto_mode_reads_a_small_single_level_slide_whole_and_whole_mode_always() {
    let temp = tempfile::tempdir().unwrap();
    let slide = cmu_small_region();
    let size = std::fs::metadata(&slide).unwrap().len();
    for mode in [FetchMode::Auto, FetchMode::Whole] {
        let local = fetch(&slide, mode, temp.path());
        assert_eq!(local.via, FetchPath::Whole, "{mode:?}");
        assert_eq!(local.bytes_fetched, size, "{mode:?}: nothing fetched twice");
        assert_eq!(
            std::fs::read(&local.path).unwrap(),
            std::fs::read(&slide).unwrap()
        );
    }
}

#[test]
fn through_the_service_a_40000_x_30000_pyramid_costs_at_most_3_percent_of_its_bytes() {
    let slide = fixture(&SlideSpec::aperio(40000, 30000, 4));
    let size = std::fs::metadata(&slide).unwrap().len();
    let stack = Stack::start(
        "[storage]\noutput = \"gs://thumbs/\"\nallowed_buckets = [\"slides-in\"]\n",
        |input| {
            std::fs::copy(&slide, input.join("pyramid.svs")).expect("stage the pyramid");
        },
    );
    let port = stack.http_port;
    let _service = Service::start(&stack.config, &stack.env(&[]));
    assert!(becomes_ready(port));
    let body = Request::new("big-1")
        .slide("pyramid")
        .link("gs://slides-in/pyramid.svs")
        .bytes();
    let (status, text) = http_post(port, "/process", &body).expect("POST /process");
    assert_eq!(status, 200, "{text}");
    let response: Value = serde_json::from_str(&text).unwrap();
    let local = make_thumbnail(&slide, &ThumbnailOptions::default()).expect("local thumbnail");
    assert_eq!(
        response["metadata"],
        serde_json::to_value(&local.metadata).unwrap(),
        "the ranged service reports what the whole file says"
    );

    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let fetched =
        metric(&metrics, "wsi_thumbnail_slide_bytes_fetched_total").expect("bytes metric");
    assert_eq!(
        metric(&metrics, "wsi_thumbnail_fetch_path_total{path=\"ranged\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "wsi_thumbnail_pixel_path_total{path=\"jpeg_tiles\"}"
        ),
        Some(1.0),
        "the pyramid is decoded from its JPEG tiles directly"
    );
    assert!(
        fetched > 0.0 && fetched <= 0.03 * size as f64,
        "fetched {fetched} of {size} bytes ({:.2}%)",
        100.0 * fetched / size as f64
    );
}
