//! Hamamatsu NDPI on the direct path: the shared real NanoZoomer file gives OpenSlide's
//! metadata and, decoded from its restart-interval chunks, OpenSlide's thumbnail; our
//! level list is OpenSlide's; a ranged copy holding only the planned bytes makes the
//! same thumbnail. A generated 40960 x 30720 NDPI is read the same by OpenSlide and the
//! direct path, and through the emulator and the service costs at most 3% of its bytes,
//! with the whole file's thumbnail. Damaged NDPI headers give `corrupt_slide` (or
//! `slide_too_large`), or the OpenSlide fallback, never a crash.

use std::fs::File;
use std::path::{Path, PathBuf};

use openslide_rs::OpenSlide;
use serde_json::Value;
use wsi_thumbnail::fixtures::SlideSpec;
use wsi_thumbnail::fixtures::tissue::TissueField;
use wsi_thumbnail::formats::ndpi::file::{self as ndpi, NdpiFile};
use wsi_thumbnail::formats::tiled_tiff::plan;
use wsi_thumbnail::slide::{
    DEFAULT_MAX_SLIDE_PIXELS, DecoderChoice, PixelPath, SlideError, Thumbnail, ThumbnailOptions,
    make_thumbnail,
};
use wsi_thumbnail::storage::fetch::FetchPath;
use wsi_thumbnail::storage::ranged::FetchMode;
use wsi_thumbnail::tiff::tags;

use crate::support::infra::{Stack, metric};
use crate::support::request::Request;
use crate::support::service::Service;
use crate::support::*;

fn shared_ndpi() -> PathBuf {
    cmu_small_region()
        .parent()
        .expect("testdata")
        .join("ndpi/fluorescence-DAPI.ndpi")
}

fn openslide_levels(slide: &OpenSlide) -> Vec<(u64, u64)> {
    slide
        .all_level_dimensions()
        .iter()
        .map(|s| (u64::from(s.w), u64::from(s.h)))
        .collect()
}

#[test]
fn ndpi_levels_and_metadata_are_openslides() {
    let path = shared_ndpi();
    let slide = OpenSlide::new(&path).expect("OpenSlide opens the shared NDPI");
    let mut file = File::open(&path).unwrap();
    let parsed = NdpiFile::read(&mut file).expect("an NDPI file");
    assert_eq!(parsed.directories.len(), 6);
    let pyramid = ndpi::pyramid(&mut file, &parsed).expect("its pyramid");
    let ours: Vec<(u64, u64)> = pyramid.levels.iter().map(|l| (l.width, l.height)).collect();
    assert_eq!(ours, openslide_levels(&slide));
    assert_eq!(pyramid.streams[2].tile, (992, 8));

    let meta = ndpi::metadata(&mut file, &parsed).unwrap();
    let prop = |n: &str| {
        slide
            .property_value(n)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(meta.mpp, prop("openslide.mpp-x"));
    assert_eq!(meta.objective_power, prop("openslide.objective-power"));
    assert_eq!((meta.width, meta.height), (3968, 4864));

    let thumb = make_thumbnail(&path, &ThumbnailOptions::default()).expect("thumbnail");
    assert_eq!(
        serde_json::to_string(&thumb.metadata).unwrap(),
        r#"{"width":3968,"height":4864,"mpp":0.2281750559028887,"objective_power":40.0,"vendor":"hamamatsu"}"#
    );
    assert_eq!(thumb.metadata.mpp, meta.mpp);
}

#[test]
fn ndpi_shared_slide_thumbnails_match_openslide_on_the_direct_path() {
    let path = shared_ndpi();
    // 1024 reads the native 992 x 1216 level; 300 and 100 read OpenSlide's derived
    // levels 248 x 304 and 124 x 152 (the 496-wide level at 1/2 and 1/4).
    for (size, level, denominator) in [(1024, 2, 1), (300, 4, 2), (100, 5, 4)] {
        let options = |decoder| ThumbnailOptions {
            max_size: size,
            decoder,
            ..ThumbnailOptions::default()
        };
        let direct = make_thumbnail(&path, &options(DecoderChoice::Auto)).expect("direct");
        let reference =
            make_thumbnail(&path, &options(DecoderChoice::Openslide)).expect("OpenSlide");
        assert_eq!(direct.path, PixelPath::Ndpi { denominator }, "size {size}");
        assert_eq!(reference.path, PixelPath::Openslide);
        assert_eq!(
            (direct.level, reference.level),
            (level, level),
            "size {size}"
        );
        let (w, h, a) = decode_png(&direct.png);
        let (rw, rh, b) = decode_png(&reference.png);
        assert_eq!((w, h), (rw, rh));
        let mad = mean_abs_diff(&a, &b);
        println!(
            "size {size}: level {level}, 1/{denominator}, MAD {mad:.4}, max {}",
            max_abs_diff(&a, &b)
        );
        assert!(mad <= 1.0, "size {size}: mean abs diff {mad}");
    }
}

#[test]
fn ndpi_ranged_copy_of_the_shared_slide_reads_its_level_and_makes_the_same_thumbnail() {
    let path = shared_ndpi();
    let size = std::fs::metadata(&path).unwrap().len();
    let temp = tempfile::tempdir().unwrap();
    let local = crate::ranged::fetch(&path, FetchMode::Ranged, temp.path());
    assert_eq!(local.via, FetchPath::Ranged);
    // Of 3.5 MB: the 313 KB level 2, the 120 KB level OpenSlide hashes, and 64 KiB
    // planning blocks for the six directories and strip headers (about 27% in all; on
    // a real multi-gigabyte NDPI the blocks are noise, see the 40960 x 30720 test).
    println!("fetched {} of {size} bytes", local.bytes_fetched);
    assert!(
        local.bytes_fetched * 3 < size,
        "fetched {} of {size}",
        local.bytes_fetched
    );
    crate::ranged::assert_same_slide(&path, &local.path);
    let thumb = make_thumbnail(&local.path, &ThumbnailOptions::default()).unwrap();
    assert_eq!(thumb.path, PixelPath::Ndpi { denominator: 1 });
}

/// The generated NDPI of the acceptance test: 4x steps to 640 x 480, restart tiles of
/// 1024 x 8 (tile widths divide every level, so OpenSlide paints every pixel).
fn big_ndpi() -> SlideSpec {
    SlideSpec::ndpi(40960, 30720)
}

#[test]
fn ndpi_generated_slide_is_read_by_openslide_and_the_direct_path_alike() {
    let spec = big_ndpi();
    let path = fixture(&spec);
    let slide = OpenSlide::new(&path).expect("OpenSlide opens the generated NDPI");
    assert_eq!(
        slide.property_value("openslide.vendor").ok().as_deref(),
        Some("hamamatsu")
    );
    let widths: Vec<u64> = openslide_levels(&slide).iter().map(|l| l.0).collect();
    assert_eq!(
        widths,
        vec![40960, 20480, 10240, 5120, 2560, 1280, 640, 320, 160, 80]
    );
    let field = TissueField::new(spec.seed, spec.width, spec.height);
    // 1024 reads 1280 x 960 (the 2560 level at 1/2); 256 reads 320 x 240.
    for (size, level, denominator) in [(1024, 5, 2), (256, 7, 2)] {
        let options = |decoder| ThumbnailOptions {
            max_size: size,
            decoder,
            ..ThumbnailOptions::default()
        };
        let direct = make_thumbnail(&path, &options(DecoderChoice::Auto)).expect("direct");
        let reference =
            make_thumbnail(&path, &options(DecoderChoice::Openslide)).expect("OpenSlide");
        assert_eq!(direct.path, PixelPath::Ndpi { denominator }, "size {size}");
        assert_eq!((direct.level, reference.level), (level, level));
        assert_eq!(direct.metadata, reference.metadata);
        assert_eq!(direct.metadata.mpp, Some(0.25));
        assert_eq!(direct.metadata.objective_power, Some(40.0));
        let (w, h, a) = decode_png(&direct.png);
        let (_, _, b) = decode_png(&reference.png);
        let paths = mean_abs_diff(&a, &b);
        let truth = mean_abs_diff(&a, &field.render_reference(w, h));
        println!("size {size}: paths MAD {paths:.4}, to the field {truth:.3}");
        assert!(paths <= 1.0, "size {size}: the paths differ by {paths}");
        assert!(truth <= 1.5, "size {size}: {truth} from the source field");
    }
}

#[test]
fn ndpi_through_the_service_a_40960_x_30720_slide_costs_at_most_3_percent_of_its_bytes() {
    let slide = fixture(&big_ndpi());
    let size = std::fs::metadata(&slide).unwrap().len();
    let stack = Stack::start(
        "[storage]\noutput = \"gs://thumbs/\"\nallowed_buckets = [\"slides-in\"]\n",
        |input| {
            std::fs::copy(&slide, input.join("big.ndpi")).expect("stage the NDPI");
        },
    );
    let port = stack.http_port;
    let _service = Service::start(&stack.config, &stack.env(&[]));
    assert!(becomes_ready(port));
    let body = Request::new("ndpi-1")
        .slide("big")
        .link("gs://slides-in/big.ndpi")
        .bytes();
    let (status, text) = http_post(port, "/process", &body).expect("POST /process");
    assert_eq!(status, 200, "{text}");
    let response: Value = serde_json::from_str(&text).unwrap();
    let whole = make_thumbnail(&slide, &ThumbnailOptions::default()).expect("whole file");
    assert_eq!(whole.path, PixelPath::Ndpi { denominator: 2 });
    assert_eq!(
        response["metadata"],
        serde_json::to_value(&whole.metadata).unwrap()
    );
    let link = response["thumbnail_image_link"].as_str().expect("a link");
    let object = link
        .strip_prefix("gs://thumbs/")
        .expect("in the output bucket");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let png = runtime.block_on(crate::service::read_gcs_object(
        &stack.gcs.url(),
        "thumbs",
        object,
    ));
    assert_eq!(
        decode_png(&png),
        decode_png(&whole.png),
        "the ranged thumbnail is the whole file's"
    );

    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let fetched =
        metric(&metrics, "wsi_thumbnail_slide_bytes_fetched_total").expect("bytes metric");
    assert_eq!(
        metric(&metrics, "wsi_thumbnail_fetch_path_total{path=\"ranged\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "wsi_thumbnail_pixel_path_total{path=\"ndpi\"}"),
        Some(1.0),
        "the NDPI is decoded from its restart chunks directly"
    );
    println!(
        "fetched {fetched} of {size} bytes ({:.3}%)",
        100.0 * fetched / size as f64
    );
    assert!(
        fetched > 0.0 && fetched <= 0.03 * size as f64,
        "fetched {fetched} of {size} bytes ({:.2}%)",
        100.0 * fetched / size as f64
    );
}

/// A small generated NDPI's bytes, its directories and its pyramid, to be damaged.
fn small_ndpi(dir: &Path) -> (Vec<u8>, NdpiFile, ndpi::Pyramid) {
    let path = dir.join("pristine.ndpi");
    wsi_thumbnail::fixtures::ndpi::write_slide(&path, &SlideSpec::ndpi(4096, 3072)).unwrap();
    let mut file = File::open(&path).unwrap();
    let parsed = NdpiFile::read(&mut file).unwrap();
    let pyramid = ndpi::pyramid(&mut file, &parsed).unwrap();
    (std::fs::read(&path).unwrap(), parsed, pyramid)
}

/// Overwrites the 4-byte value field of `tag` in the directory at `ifd`.
fn patch_tag(bytes: &mut [u8], ifd: u64, tag: u16, value: u32) {
    let ifd = ifd as usize;
    let count = usize::from(u16::from_le_bytes([bytes[ifd], bytes[ifd + 1]]));
    let entry = (0..count)
        .map(|i| ifd + 2 + 12 * i)
        .find(|&e| u16::from_le_bytes([bytes[e], bytes[e + 1]]) == tag)
        .expect("the tag is there");
    bytes[entry + 8..entry + 12].copy_from_slice(&value.to_le_bytes());
}

/// The engine's answer for damaged bytes, and a ranged planning pass over them (which
/// must not panic whatever it decides).
fn thumbnail_of(dir: &Path, name: &str, bytes: &[u8]) -> Result<Thumbnail, SlideError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let _ = plan::read_plan(
        &mut File::open(&path).unwrap(),
        1024,
        DEFAULT_MAX_SLIDE_PIXELS,
    );
    make_thumbnail(&path, &ThumbnailOptions::default())
}

#[test]
fn ndpi_hostile_directories_are_corrupt_or_too_large_never_a_crash() {
    let temp = tempfile::tempdir().unwrap();
    let (pristine, parsed, pyramid) = small_ndpi(temp.path());
    let dirs = &parsed.directories;
    let corrupt = |r: Result<Thumbnail, SlideError>, what: &str| match r {
        Err(SlideError::Corrupt { reason, .. }) => println!("{what}: corrupt ({reason})"),
        other => panic!("{what}: {:?}", other.map(|t| t.path)),
    };

    // The last directory links back to the first.
    let mut looped = pristine.clone();
    let last = &dirs[dirs.len() - 1];
    let next_at = (last.ifd_offset + 2 + 12 * ((last.ifd_len - 10) / 16)) as usize;
    looped[next_at..next_at + 8].copy_from_slice(&dirs[0].ifd_offset.to_le_bytes());
    corrupt(thumbnail_of(temp.path(), "loop.ndpi", &looped), "IFD loop");

    // The level the thumbnail reads has its strip past the end of the file.
    let mut beyond = pristine.clone();
    let chosen = &pyramid.streams[1];
    let past = u32::try_from(pristine.len() + 4096).unwrap();
    patch_tag(
        &mut beyond,
        dirs[chosen.dir].ifd_offset,
        tags::STRIP_OFFSETS,
        past,
    );
    corrupt(
        thumbnail_of(temp.path(), "beyond.ndpi", &beyond),
        "strip beyond the file",
    );

    // Level 0 declares 60000 x 60000 (its JPEG says otherwise), then a bomb.
    let mut huge = pristine.clone();
    patch_tag(&mut huge, dirs[0].ifd_offset, tags::IMAGE_WIDTH, 60_000);
    patch_tag(&mut huge, dirs[0].ifd_offset, tags::IMAGE_LENGTH, 60_000);
    patch_tag(&mut huge, dirs[0].ifd_offset, 278, 60_000);
    corrupt(
        thumbnail_of(temp.path(), "huge.ndpi", &huge),
        "huge declared dims",
    );
    let mut bomb = pristine.clone();
    patch_tag(&mut bomb, dirs[0].ifd_offset, tags::IMAGE_WIDTH, u32::MAX);
    patch_tag(&mut bomb, dirs[0].ifd_offset, tags::IMAGE_LENGTH, u32::MAX);
    assert!(matches!(
        thumbnail_of(temp.path(), "bomb.ndpi", &bomb),
        Err(SlideError::TooLarge { .. })
    ));
}

#[test]
fn ndpi_restart_markers_that_do_not_add_up_fall_back_to_openslide() {
    let temp = tempfile::tempdir().unwrap();
    let (pristine, _, pyramid) = small_ndpi(temp.path());
    let want = thumbnail_of(temp.path(), "ok.ndpi", &pristine).unwrap();
    assert_eq!(want.path, PixelPath::Ndpi { denominator: 1 });
    // The 1024 x 768 level (128 chunks of 1024 x 8): renumber its fourth restart
    // marker. OpenSlide overwrites each chunk's marker with EOI, so it never sees the
    // number; our scan counts and checks the sequence, and hands the level over.
    let stream = &pyramid.streams[1];
    let data =
        (stream.offset as usize + stream.header.data_at)..(stream.offset + stream.len) as usize;
    let mut markers = data
        .clone()
        .filter(|&i| pristine[i] == 0xFF && (0xD0..=0xD7).contains(&pristine[i + 1]));
    let fourth = markers.nth(3).expect("restart markers");
    assert_eq!(pristine[fourth + 1], 0xD3);
    let mut renumbered = pristine.clone();
    renumbered[fourth + 1] = 0xD5;
    let got = thumbnail_of(temp.path(), "renumbered.ndpi", &renumbered).unwrap();
    assert_eq!(
        got.path,
        PixelPath::Openslide,
        "the direct path declined it"
    );
    assert_eq!(decode_png(&got.png), decode_png(&want.png));

    // A marker fewer: the count no longer adds up; OpenSlide reads it or calls it
    // corrupt, but nothing crashes and the direct path does not guess.
    let mut merged = pristine.clone();
    merged[fourth + 1] = 0x00;
    match thumbnail_of(temp.path(), "merged.ndpi", &merged) {
        Ok(t) => assert_eq!(t.path, PixelPath::Openslide),
        Err(e) => assert!(matches!(e, SlideError::Corrupt { .. }), "{e}"),
    }
}

/// NDPI files past 4 GiB (common for real scans) keep offsets' high 32 bits in each
/// directory's extension block. A sparse 4 GiB hole after level 0 puts the level a
/// 1024 thumbnail reads, its values and its directory past 4 GiB: the bomb check, the
/// level list and the direct path must all follow the extensions, and agree with
/// OpenSlide 3.4.1 (which guesses the high bits and gets them right on this layout).
#[test]
fn ndpi_levels_past_4_gib_are_found_through_the_extension_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("past-4gib.ndpi");
    let spec = SlideSpec::ndpi(8192, 6144);
    wsi_thumbnail::fixtures::ndpi::write_slide_with_gap(&path, &spec, 1 << 32).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 1 << 32);
    let options = |decoder| ThumbnailOptions {
        decoder,
        ..ThumbnailOptions::default()
    };
    let direct = make_thumbnail(&path, &options(DecoderChoice::Auto)).expect("direct");
    let reference = make_thumbnail(&path, &options(DecoderChoice::Openslide)).expect("OpenSlide");
    assert!(
        matches!(direct.path, PixelPath::Ndpi { .. }),
        "{:?}",
        direct.path
    );
    assert_eq!(direct.level, reference.level);
    assert!(direct.level >= 1, "the level read lies past the hole");
    assert_eq!(direct.metadata, reference.metadata);
    assert_eq!(direct.metadata.width, Some(8192));
    let (_, _, a) = decode_png(&direct.png);
    let (_, _, b) = decode_png(&reference.png);
    let mad = mean_abs_diff(&a, &b);
    println!("past 4 GiB: paths MAD {mad:.4}");
    assert!(mad <= 1.0, "the paths differ by {mad}");

    // The ranged planner follows the extensions too: a sparse copy of what it plans
    // makes the same thumbnail.
    let temp = tempfile::tempdir().unwrap();
    let copy = crate::ranged::fetch(&path, FetchMode::Auto, temp.path());
    assert_eq!(copy.via, FetchPath::Ranged);
    println!("past 4 GiB: ranged copy of {} bytes", copy.bytes_fetched);
    let from_copy = make_thumbnail(&copy.path, &options(DecoderChoice::Auto)).expect("copy");
    assert!(
        from_copy.png == direct.png,
        "the ranged copy's thumbnail differs"
    );
}
