//! Generated DICOM series (src/fixtures/dicom.rs), in the engine: the engine reads only the headers and
//! the chosen level, every offset-table layout and TILED_SPARSE give the same thumbnail,
//! LABEL and foreign-series instances beside the link are never read, and hostile
//! headers end in `corrupt_slide` through the CLI's worker, never a crash.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use wsi_thumbnail::ErrorKind;
use wsi_thumbnail::fixtures::dicom::{DicomSpec, FrameEncoding, Hostile, OffsetTable, level_file};
use wsi_thumbnail::fixtures::tissue::TissueField;
use wsi_thumbnail::formats::dicom::{
    InstanceHeader, Scan, is_candidate, pixel_ranges, scan_prefix,
};
use wsi_thumbnail::slide::{PixelPath, ThumbnailOptions, make_thumbnail};

use crate::support::*;

/// Each candidate beside `link`, with its header read from a growing prefix, and the
/// prefix length that took.
fn headers(link: &Path) -> Vec<(String, u64, InstanceHeader, u64)> {
    let dir = link.parent().unwrap();
    let linked = link.file_name().unwrap().to_string_lossy().into_owned();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !is_candidate(&linked, &name) {
            continue;
        }
        let file = File::open(dir.join(&name)).unwrap();
        let size = file.metadata().unwrap().len();
        let mut n = (16 * 1024).min(size);
        loop {
            let mut prefix = vec![0; n as usize];
            file.read_exact_at(&mut prefix, 0).unwrap();
            match scan_prefix(&prefix, size).unwrap() {
                Scan::NeedMore(m) => n = m,
                Scan::Header(h) => {
                    out.push((name, size, *h, n));
                    break;
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A copy of the series holding only what the ranged fetcher would fetch (each
/// candidate's header prefix and `pixel_ranges`); everything else reads as zeros.
/// Returns the link in the copy and the bytes copied.
fn sparse_copy(link: &Path, into: &Path, options: &ThumbnailOptions) -> (PathBuf, u64, u64) {
    let found = headers(link);
    let instances: Vec<(String, u64, InstanceHeader)> = found
        .iter()
        .map(|(n, s, h, _)| (n.clone(), *s, h.clone()))
        .collect();
    let linked = link.file_name().unwrap().to_string_lossy().into_owned();
    let ranges = pixel_ranges(&linked, &instances, options).unwrap();
    let dir = link.parent().unwrap();
    let (mut copied, mut total) = (0u64, 0u64);
    for (name, size, _, prefix) in &found {
        let source = File::open(dir.join(name)).unwrap();
        let target = File::create(into.join(name)).unwrap();
        target.set_len(*size).unwrap();
        let mut copy = |start: u64, end: u64| {
            let mut buf = vec![0; (end - start) as usize];
            source.read_exact_at(&mut buf, start).unwrap();
            target.write_all_at(&buf, start).unwrap();
            copied += end - start;
        };
        copy(0, *prefix);
        for (_, range) in ranges.iter().filter(|(n, _)| n == name) {
            copy(range.start.max(*prefix), range.end);
        }
        total += size;
    }
    (into.join(linked), copied, total)
}

#[test]
fn large_series_reads_only_headers_and_the_chosen_level() {
    // JPEG frames, and the same pyramid in JPEG 2000 (what archives convert Aperio's
    // JPEG 2000 to): the ranged plan is the same for both.
    for encoding in [FrameEncoding::JpegBaseline, FrameEncoding::J2kLossy] {
        large_series_case(DicomSpec {
            encodings: vec![encoding],
            ..DicomSpec::new(40960, 30720)
        });
    }
}

fn large_series_case(spec: DicomSpec) {
    let dir = dicom_fixture(&spec);
    let options = ThumbnailOptions::default();
    let link = dir.join(level_file(0));
    let whole = make_thumbnail(&link, &options).unwrap();
    assert_eq!(
        whole.level, 2,
        "2560 x 1920 is the smallest level >= 1024 x 768"
    );
    assert_eq!((whole.width, whole.height), (1024, 768));
    assert_eq!(whole.path, PixelPath::Dicom { denominator: 1 });
    assert_eq!(whole.metadata.width, Some(40960));
    assert_eq!(whole.metadata.height, Some(30720));
    assert_eq!(whole.metadata.mpp, Some(0.00025 * 1000.0));
    assert_eq!(whole.metadata.objective_power, Some(40.0));
    assert_eq!(whole.metadata.vendor, "dicom");

    let copy = tempfile::tempdir().unwrap();
    let (sparse_link, copied, total) = sparse_copy(&link, copy.path(), &options);
    let fraction = copied as f64 / total as f64;
    println!(
        "{:?}: read {copied} of {total} bytes ({:.2}%) for a 1024 thumbnail",
        spec.encodings,
        fraction * 100.0
    );
    assert!(
        fraction <= 0.03,
        "read {:.2}% of the series",
        fraction * 100.0
    );
    let sparse = make_thumbnail(&sparse_link, &options).unwrap();
    assert_eq!(
        sparse.png, whole.png,
        "the engine read bytes outside its plan"
    );

    // The thumbnail shows the tissue (not the black LABEL or the red foreign series).
    let field = TissueField::new(spec.seed, spec.width, spec.height);
    let (_, _, rgb) = decode_png(&whole.png);
    let mad = mean_abs_diff(&rgb, &field.render_reference(1024, 768));
    println!("mean abs diff to the tissue reference {mad:.3}");
    assert!(mad <= 6.0, "{mad}");

    // Any instance names the slide.
    let from_level_3 = make_thumbnail(&dir.join(level_file(3)), &options).unwrap();
    assert_eq!(from_level_3.png, whole.png);
}

#[test]
fn offset_tables_sparse_tiling_and_extras_give_the_same_thumbnail() {
    let base = DicomSpec::new(8192, 6144);
    let variants = [
        DicomSpec {
            table: OffsetTable::Basic,
            ..base.clone()
        },
        DicomSpec {
            table: OffsetTable::Extended,
            ..base.clone()
        },
        DicomSpec {
            sparse: true,
            ..base.clone()
        },
        DicomSpec {
            sparse: true,
            table: OffsetTable::Extended,
            ..base.clone()
        },
        DicomSpec {
            extras: false,
            ..base.clone()
        },
    ];
    let options = ThumbnailOptions::default();
    let reference = make_thumbnail(&dicom_fixture(&base).join(level_file(0)), &options).unwrap();
    assert_eq!(reference.level, 1, "2048 x 1536 for 1024 x 768");
    assert_eq!(reference.path, PixelPath::Dicom { denominator: 1 });
    for spec in variants {
        let link = dicom_fixture(&spec).join(level_file(0));
        let thumb = make_thumbnail(&link, &options).unwrap();
        assert_eq!(thumb.level, reference.level, "{}", spec.dir_name());
        assert!(thumb.png == reference.png, "{} differs", spec.dir_name());
    }
}

#[test]
fn a_single_level_series_is_shrunk_by_the_dct() {
    let spec = DicomSpec {
        level_step: 1,
        sparse: true,
        ..DicomSpec::new(8192, 6144)
    };
    let thumb = make_thumbnail(
        &dicom_fixture(&spec).join(level_file(0)),
        &ThumbnailOptions::default(),
    )
    .unwrap();
    assert_eq!(thumb.level, 0);
    // 8192 / 4 = 2048 >= 2 x 1024; 512-pixel frames divide by 4.
    assert_eq!(thumb.path, PixelPath::Dicom { denominator: 4 });
    let field = TissueField::new(spec.seed, spec.width, spec.height);
    let (_, _, rgb) = decode_png(&thumb.png);
    let mad = mean_abs_diff(&rgb, &field.render_reference(1024, 768));
    println!("mean abs diff to the tissue reference {mad:.3}");
    assert!(mad <= 1.5, "{mad}");
}

#[test]
fn hostile_headers_are_corrupt_in_the_engine_and_the_cli() {
    for kind in Hostile::ALL {
        let link = dicom_fixture(&DicomSpec::hostile(kind)).join(level_file(0));
        let err = make_thumbnail(&link, &ThumbnailOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{kind:?} made a thumbnail"));
        println!("{kind:?}: {err}");
        assert_eq!(err.kind(), ErrorKind::CorruptSlide, "{kind:?}: {err}");

        let out = tempfile::tempdir().unwrap();
        let png = out.path().join("out.png");
        let run = Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"))
            .arg("thumbnail")
            .arg(&link)
            .arg("--output")
            .arg(&png)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{kind:?}: {stderr}");
        assert!(
            stderr.starts_with("error: corrupt_slide: "),
            "{kind:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{kind:?}: {stderr}");
        assert!(!stderr.contains("panicked"));
        assert!(run.stdout.is_empty());
        assert!(!png.exists());
    }
}
