//! Slides made of a header and companion files, read from a bucket (contract §1): a
//! MIRAX `.mrxs` with its folder of the same stem, and a Hamamatsu VMS header with the
//! files it names. Through the real service and emulator, a generated MIRAX slide and a
//! generated VMS slide each give the thumbnail and metadata OpenSlide gives for the same
//! files on local disk, and fetch exactly their members (not the other objects beside
//! them); the VMS thumbnail is also held against OpenSlide's own read of level 0,
//! resized. A missing companion is `slide_not_found` naming it; a header naming a file
//! outside its folder is `corrupt_slide`; a folder beyond the cap is refused, naming it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::dicom_shared::lanczos;
use crate::support::infra::{Stack, metric};
use crate::support::request::Request;
use crate::support::service::Service;
use crate::support::*;
use openslide_rs::{Address, OpenSlide, Region};
use wsi_thumbnail::fixtures::mirax::MiraxSpec;
use wsi_thumbnail::fixtures::vms::VmsSpec;
use wsi_thumbnail::planning::SlideLayout;
use wsi_thumbnail::slide::reduce::composite_argb;
use wsi_thumbnail::slide::{ThumbnailOptions, make_thumbnail};
use wsi_thumbnail::storage::fetch::{FetchPath, LocalSlide};
use wsi_thumbnail::storage::ranged::FetchMode;
use wsi_thumbnail::storage::ranged::companions::MAX_COMPANIONS;
use wsi_thumbnail::storage::ranged::companions::fetch_companions;
use wsi_thumbnail::storage::ranged::folder::LocalFolder;

fn spec() -> MiraxSpec {
    MiraxSpec::new(4096, 3072)
}

/// 2 x 2 image files of 1024 x 768, the map at 1/16, an optimisation file.
fn vms_spec() -> VmsSpec {
    VmsSpec::new(2048, 1536)
}

/// Copies every file of the folder `from` into `to`.
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("stage a file");
    }
}

/// Copies the `.mrxs` and its companion folder under `into/` as `<name>.mrxs` and
/// `<name>/`; returns the companion folder there.
fn stage_mirax(mrxs: &Path, into: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(into).unwrap();
    std::fs::copy(mrxs, into.join(format!("{name}.mrxs"))).expect("stage the .mrxs");
    let to = into.join(name);
    copy_folder(&mrxs.with_extension(""), &to);
    to
}

/// Copies the VMS slide's folder (the `.vms` and the files it names) into `into/`, the
/// header as `scan.vms` (OpenSlide finds the files by the names inside it); returns
/// the header there.
fn stage_vms(vms: &Path, into: &Path) -> PathBuf {
    copy_folder(vms.parent().unwrap(), into);
    let header = into.join("scan.vms");
    std::fs::rename(into.join(vms.file_name().unwrap()), &header).unwrap();
    header
}

/// The line of a `.vms` that names `key`, and the name it gives.
fn vms_key(header: &str, key: &str) -> (String, String) {
    header
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k == key).then(|| (l.to_string(), v.to_string()))
        })
        .unwrap_or_else(|| panic!("the .vms names {key}"))
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn post(port: u16, id: &str, link: &str) -> (u16, Value) {
    let body = Request::new(id).slide(id).link(link).bytes();
    let (status, text) = http_post(port, "/process", &body).expect("POST /process");
    let answer = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, answer)
}

#[test]
fn a_mirax_slide_from_the_bucket_is_openslides_thumbnail_for_its_members_bytes() {
    let mrxs = mirax_fixture(&spec());
    let members = std::fs::metadata(&mrxs).unwrap().len() + folder_bytes(&mrxs.with_extension(""));
    let stack = Stack::start(
        "[storage]\noutput = \"gs://thumbs/\"\nallowed_buckets = [\"slides-in\"]\n",
        |input| {
            let case = input.join("cases/m1");
            let companion = stage_mirax(&mrxs, &case, "slide");
            // Beside the slide and inside its folder, objects that are not its members:
            // another slide's files, a file Slidedat.ini does not name, a sub-folder.
            std::fs::write(case.join("other.svs"), vec![7u8; 300_000]).unwrap();
            std::fs::write(companion.join("notes.txt"), vec![1u8; 200_000]).unwrap();
            std::fs::create_dir_all(companion.join("deeper")).unwrap();
            std::fs::write(companion.join("deeper/Data0000.dat"), vec![2u8; 100_000]).unwrap();
        },
    );
    let port = stack.http_port;
    let _service = Service::start(&stack.config, &stack.env(&[]));
    assert!(becomes_ready(port));
    let (status, response) = post(port, "m1", "gs://slides-in/cases/m1/slide.mrxs");
    assert_eq!(status, 200, "{response}");

    // OpenSlide on the generated files, on local disk, is the reference.
    let local = make_thumbnail(&mrxs, &ThumbnailOptions::default()).expect("local MIRAX");
    assert_eq!(local.metadata.vendor, "mirax");
    assert_eq!(
        response["metadata"],
        serde_json::to_value(&local.metadata).unwrap()
    );
    assert_eq!(
        response["thumbnail_image_link"],
        "gs://thumbs/slide_thumbnail.png"
    );
    let png = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crate::service::read_gcs_object(
            &stack.gcs.url(),
            "thumbs",
            "slide_thumbnail.png",
        ));
    let (w, h, pixels) = decode_png(&png);
    let (lw, lh, reference) = decode_png(&local.png);
    assert_eq!((w, h), (lw, lh));
    assert_eq!(pixels, reference, "the bucket's slide is the local slide");

    // Only the level read came from the data files: a fraction of the members' bytes,
    // through the ranged path (the objects beside them not at all).
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let fetched = metric(&metrics, "wsi_thumbnail_slide_bytes_fetched_total").expect("bytes");
    assert!(
        (fetched as u64) * 4 < members,
        "fetched {fetched} of the members' {members} bytes"
    );
    assert_eq!(
        metric(&metrics, "wsi_thumbnail_fetch_path_total{path=\"ranged\"}"),
        Some(1.0),
        "{metrics}"
    );
}

fn fetch_local(mrxs: &Path, mode: FetchMode, temp: &Path) -> LocalSlide {
    let settings = Planning::settings(mode);
    let folder = LocalFolder {
        dir: mrxs.parent().unwrap().to_path_buf(),
    };
    let linked = mrxs.file_name().unwrap().to_string_lossy().into_owned();
    let planning = Planning::new();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(fetch_companions(
            &folder,
            &linked,
            SlideLayout::Mirax,
            &planning.context(&settings, temp),
        ))
        .expect("MIRAX fetch")
}

/// The planner reads `Slidedat.ini` and `Index.dat` and fetches the level OpenSlide will
/// read, the smallest level and the camera positions: a copy holding only those bytes
/// (holes elsewhere) gives OpenSlide's thumbnail of the whole slide, pixel for pixel.
#[test]
fn a_ranged_mirax_copy_makes_the_whole_slides_thumbnail_from_a_fraction_of_its_bytes() {
    let mut flat = MiraxSpec::new(6144, 4096);
    flat.position_buffer = false;
    flat.data_file_bytes = 4 << 20;
    for spec in [spec(), flat, MiraxSpec::new(1024, 768)] {
        let mrxs = mirax_fixture(&spec);
        let total =
            std::fs::metadata(&mrxs).unwrap().len() + folder_bytes(&mrxs.with_extension(""));
        let whole = make_thumbnail(&mrxs, &ThumbnailOptions::default()).expect("whole slide");
        let temp = tempfile::tempdir().unwrap();
        let ranged = fetch_local(&mrxs, FetchMode::Auto, temp.path());
        let made = make_thumbnail(&ranged.path, &ThumbnailOptions::default()).expect("ranged copy");
        assert_eq!(made.level, whole.level, "{}", spec.stem());
        assert_eq!(
            serde_json::to_value(&made.metadata).unwrap(),
            serde_json::to_value(&whole.metadata).unwrap()
        );
        assert_eq!(
            decode_png(&made.png),
            decode_png(&whole.png),
            "{}: the ranged copy's thumbnail differs",
            spec.stem()
        );
        if whole.level > 0 {
            assert_eq!(ranged.via, FetchPath::Ranged, "{}", spec.stem());
            assert!(
                ranged.bytes_fetched * 4 < total,
                "{}: fetched {} of {total}",
                spec.stem(),
                ranged.bytes_fetched
            );
        } else {
            // A slide whose level 0 is the thumbnail's level is most of its bytes: read
            // whole, as the fetch's `auto` mode reads any plan past half the slide.
            assert_eq!(ranged.via, FetchPath::Whole, "{}", spec.stem());
        }
        let whole_copy = fetch_local(&mrxs, FetchMode::Whole, temp.path());
        assert_eq!(whole_copy.bytes_fetched, total, "{}", spec.stem());
    }
}

#[test]
fn a_vms_slide_from_the_bucket_is_openslides_thumbnail_for_the_files_its_header_names() {
    let vms = vms_fixture(&vms_spec());
    let members = folder_bytes(vms.parent().unwrap());
    let stack = Stack::start(
        "[storage]\noutput = \"gs://thumbs/\"\nallowed_buckets = [\"slides-in\"]\n",
        |input| {
            let case = input.join("cases/v1");
            stage_vms(&vms, &case);
            // Beside the slide: another slide's file and a sub-folder, not its members.
            std::fs::write(case.join("other.svs"), vec![7u8; 300_000]).unwrap();
            std::fs::create_dir_all(case.join("deeper")).unwrap();
            std::fs::write(case.join("deeper/x.jpg"), vec![2u8; 100_000]).unwrap();
        },
    );
    let port = stack.http_port;
    let _service = Service::start(&stack.config, &stack.env(&[]));
    assert!(becomes_ready(port));
    let (status, response) = post(port, "v1", "gs://slides-in/cases/v1/scan.vms");
    assert_eq!(status, 200, "{response}");

    // What OpenSlide says of the generated files, on local disk.
    let slide = OpenSlide::new(&vms).expect("OpenSlide opens the generated VMS");
    let size = slide.level_dimensions(0).unwrap();
    assert_eq!(response["metadata"]["vendor"], "hamamatsu");
    assert_eq!(
        (
            &response["metadata"]["width"],
            &response["metadata"]["height"]
        ),
        (&Value::from(size.w), &Value::from(size.h))
    );
    let local = make_thumbnail(&vms, &ThumbnailOptions::default()).expect("local VMS");
    assert_eq!(
        response["metadata"],
        serde_json::to_value(&local.metadata).unwrap()
    );
    assert_eq!(
        response["thumbnail_image_link"],
        "gs://thumbs/scan_thumbnail.png"
    );
    let png = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crate::service::read_gcs_object(
            &stack.gcs.url(),
            "thumbs",
            "scan_thumbnail.png",
        ));
    let (w, h, pixels) = decode_png(&png);
    assert_eq!((w, h), (1024, 768));
    assert_eq!(
        pixels,
        decode_png(&local.png).2,
        "the bucket's slide is the local slide"
    );
    // An independent reference: OpenSlide's own read of level 0, resized.
    let argb = slide
        .read_region(&Region {
            address: Address { x: 0, y: 0 },
            level: 0,
            size,
        })
        .unwrap();
    let mut level0 = vec![0u8; (size.w * size.h * 3) as usize];
    composite_argb(&argb, [255, 255, 255], &mut level0);
    let reference = lanczos(size.w, size.h, level0, (w, h));
    let mad = mean_abs_diff(&pixels, &reference);
    println!("VMS thumbnail against OpenSlide's level 0, resized: {mad:.3}");
    assert!(mad <= 3.0, "mean abs diff {mad}");

    // Exactly the members were fetched: the header and every file beside it it names.
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let fetched = metric(&metrics, "wsi_thumbnail_slide_bytes_fetched_total").expect("bytes");
    assert_eq!(fetched as u64, members, "read the members and nothing else");
}

#[test]
fn missing_hostile_and_oversized_companions_are_one_failure_each() {
    let mrxs = mirax_fixture(&spec());
    let companion = mrxs.with_extension("");
    let slidedat = std::fs::read_to_string(companion.join("Slidedat.ini")).unwrap();
    let data_file = slidedat
        .lines()
        .find_map(|l| {
            l.strip_prefix("FILE_0")
                .map(|v| v.trim_start_matches([' ', '=']).trim().to_string())
        })
        .expect("Slidedat.ini names FILE_0");
    let vms = vms_fixture(&vms_spec());
    let header = std::fs::read_to_string(&vms).unwrap();
    let (image_line, image_file) = vms_key(&header, "ImageFile(1,1)");
    let stack = Stack::start(
        "[storage]\noutput = \"gs://thumbs/\"\nallowed_buckets = [\"slides-in\"]\n",
        |input| {
            stage_mirax(&mrxs, &input.join("cases/good"), "slide");
            // A data file missing from the upload.
            let missing = stage_mirax(&mrxs, &input.join("cases/missing"), "slide");
            std::fs::remove_file(missing.join(&data_file)).unwrap();
            // No companion folder at all.
            std::fs::create_dir_all(input.join("cases/bare")).unwrap();
            std::fs::copy(&mrxs, input.join("cases/bare/slide.mrxs")).unwrap();
            // Slidedat.ini naming a data file outside its folder, which exists there.
            let escape = stage_mirax(&mrxs, &input.join("cases/escape"), "slide");
            std::fs::copy(
                escape.join(&data_file),
                input.join("cases/escape/stolen.dat"),
            )
            .unwrap();
            let hostile = slidedat.replace(&format!("FILE_0={data_file}"), "FILE_0=../stolen.dat");
            assert_ne!(hostile, slidedat, "the fixture writes `FILE_0 = <name>`");
            std::fs::write(escape.join("Slidedat.ini"), hostile).unwrap();
            // A companion folder holding more objects than a slide may have.
            let crowded = stage_mirax(&mrxs, &input.join("cases/crowded"), "slide");
            for i in 0..MAX_COMPANIONS {
                std::fs::write(crowded.join(format!("extra-{i}.txt")), b"x").unwrap();
            }
            // A VMS slide whose image file (1,1) is missing from the upload, and one
            // whose header names, for it, a file outside its folder (that exists).
            let absent = stage_vms(&vms, &input.join("cases/vms-absent"));
            std::fs::remove_file(absent.with_file_name(&image_file)).unwrap();
            let escape = stage_vms(&vms, &input.join("cases/vms-escape/slide"));
            std::fs::copy(
                escape.with_file_name(&image_file),
                input.join("cases/vms-escape/x.jpg"),
            )
            .unwrap();
            let hostile = header.replace(&image_line, "ImageFile(1,1)=../x.jpg");
            assert_ne!(hostile, header);
            std::fs::write(&escape, hostile).unwrap();
        },
    );
    let port = stack.http_port;
    let _service = Service::start(&stack.config, &stack.env(&[]));
    assert!(becomes_ready(port));
    for (case, link, want_status, want_kind, named) in [
        (
            "missing",
            "gs://slides-in/cases/missing/slide.mrxs",
            404,
            "slide_not_found",
            data_file.as_str(),
        ),
        (
            "bare",
            "gs://slides-in/cases/bare/slide.mrxs",
            404,
            "slide_not_found",
            "Slidedat.ini",
        ),
        (
            "escape",
            "gs://slides-in/cases/escape/slide.mrxs",
            422,
            "corrupt_slide",
            "../stolen.dat",
        ),
        (
            "crowded",
            "gs://slides-in/cases/crowded/slide.mrxs",
            422,
            "slide_too_large",
            "at most 1024",
        ),
        (
            "vms-escape",
            "gs://slides-in/cases/vms-escape/slide/scan.vms",
            422,
            "corrupt_slide",
            "../x.jpg",
        ),
        (
            "vms-absent",
            "gs://slides-in/cases/vms-absent/scan.vms",
            404,
            "slide_not_found",
            image_file.as_str(),
        ),
    ] {
        let (status, answer) = post(port, case, link);
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(
            (answer["error"]["kind"].as_str(), message.contains(named)),
            (Some(want_kind), true),
            "{case}: {answer}"
        );
        assert_eq!(status, want_status, "{case}: {answer}");
    }
    // Each was one failure: the service goes on serving whole slides after them.
    let (status, answer) = post(port, "after", "gs://slides-in/cases/good/slide.mrxs");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["metadata"]["vendor"], "mirax");
}
