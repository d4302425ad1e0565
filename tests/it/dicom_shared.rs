//! The shared DICOM series (CMU-1-Small-Region converted by Google's wsi2dcm, one
//! instance per level): a link to ANY of its 12 instances names the slide, through the
//! engine and through the CLI. The thumbnail is compared with an independent reference:
//! the level it was read from, decoded here frame by frame with libjpeg's defaults
//! (JFIF means YCbCr, whatever PhotometricInterpretation says), assembled and resized with
//! Lanczos3.

use std::path::{Path, PathBuf};
use std::process::Command;

use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images::Image};
use wsi_thumbnail::formats::dicom::{Scan, scan_prefix};
use wsi_thumbnail::slide::{PixelPath, ThumbnailOptions, make_thumbnail};

use crate::support::*;

const CONTRACT: &str =
    r#"{"width":2220,"height":2967,"mpp":0.499,"objective_power":null,"vendor":"dicom"}"#;

fn series_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/dicom/CMU-1-Small-Region")
}

fn instances() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(series_dir())
        .expect("the shared DICOM set")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    out.sort();
    assert_eq!(out.len(), 12);
    out
}

/// The level an instance holds, decoded independently of the engine: items walked by
/// hand after the header, each frame decoded with turbojpeg's defaults and placed in
/// TILED_FULL order.
pub fn decode_level(path: &Path) -> (u32, u32, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let Scan::Header(h) = scan_prefix(&bytes, bytes.len() as u64).unwrap() else {
        panic!("header")
    };
    let (w, hgt) = (h.total_columns as usize, h.total_rows as usize);
    let (fw, fh) = (h.columns as usize, h.rows as usize);
    let across = w.div_ceil(fw);
    let le32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mut at = h.pixel_value_start as usize;
    at += 8 + le32(at + 4); // the Basic Offset Table item
    let mut level = vec![255u8; w * hgt * 3];
    let mut index = 0;
    while le32(at) == 0xE000_FFFE {
        let len = le32(at + 4);
        let frame =
            turbojpeg::decompress(&bytes[at + 8..at + 8 + len], turbojpeg::PixelFormat::RGB)
                .unwrap();
        assert_eq!((frame.width, frame.height), (fw, fh));
        let (x0, y0) = ((index % across) * fw, (index / across) * fh);
        for y in 0..fh.min(hgt.saturating_sub(y0)) {
            let run = fw.min(w - x0) * 3;
            let dst = ((y0 + y) * w + x0) * 3;
            let src = y * frame.pitch;
            level[dst..dst + run].copy_from_slice(&frame.pixels[src..src + run]);
        }
        at += 8 + len;
        index += 1;
    }
    assert_eq!(index as u64, h.number_of_frames);
    (w as u32, hgt as u32, level)
}

pub fn lanczos(width: u32, height: u32, rgb: Vec<u8>, target: (u32, u32)) -> Vec<u8> {
    let src = Image::from_vec_u8(width, height, rgb, PixelType::U8x3).unwrap();
    let mut dst = Image::new(target.0, target.1, PixelType::U8x3);
    Resizer::new()
        .resize(
            &src,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
        )
        .unwrap();
    dst.into_vec()
}

fn level_1_reference() -> Vec<u8> {
    let level_1 = instances()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("level-1-"))
        .unwrap();
    let (w, h, rgb) = decode_level(&level_1);
    assert_eq!((w, h), (1110, 1483));
    lanczos(w, h, rgb, (766, 1024))
}

#[test]
fn engine_from_every_instance_link() {
    let reference = level_1_reference();
    for link in instances() {
        let thumb = make_thumbnail(&link, &ThumbnailOptions::default()).unwrap();
        assert_eq!(serde_json::to_string(&thumb.metadata).unwrap(), CONTRACT);
        assert_eq!(
            thumb.level,
            1,
            "{}: a 1024 thumbnail needs level 1",
            link.display()
        );
        assert_eq!(thumb.path, PixelPath::Dicom { denominator: 1 });
        assert_eq!(thumb.path.label(), "dicom");
        let (w, h, rgb) = decode_png(&thumb.png);
        assert_eq!((w, h), (766, 1024));
        let mad = mean_abs_diff(&rgb, &reference);
        println!("{}: mean abs diff {mad:.3}", link.display());
        assert!(mad <= 3.0, "{}: mean abs diff {mad}", link.display());
    }
}

#[test]
fn cli_from_every_instance_link() {
    let reference = level_1_reference();
    let dir = tempfile::tempdir().unwrap();
    for (i, link) in instances().into_iter().enumerate() {
        let out = dir.path().join(format!("{i}.png"));
        let run = Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"))
            .arg("thumbnail")
            .arg(&link)
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}: {}",
            link.display(),
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(
            String::from_utf8(run.stdout).unwrap(),
            format!("{CONTRACT}\n")
        );
        let (w, h, rgb) = decode_png(&std::fs::read(&out).unwrap());
        assert_eq!((w, h), (766, 1024));
        let mad = mean_abs_diff(&rgb, &reference);
        println!("cli {}: mean abs diff {mad:.3}", link.display());
        assert!(mad <= 3.0, "{}: mean abs diff {mad}", link.display());
    }
}

#[test]
fn the_pixel_limit_applies() {
    let options = ThumbnailOptions {
        max_slide_pixels: 2220 * 2967 - 1,
        ..ThumbnailOptions::default()
    };
    let err = make_thumbnail(&instances()[3], &options).err().unwrap();
    assert_eq!(err.kind(), wsi_thumbnail::ErrorKind::SlideTooLarge, "{err}");
}

#[test]
fn small_thumbnails_read_smaller_levels() {
    // 200 px: level 3 (277 x 370) is the smallest still large enough.
    let link = &instances()[0];
    let options = ThumbnailOptions {
        max_size: 200,
        ..ThumbnailOptions::default()
    };
    let thumb = make_thumbnail(link, &options).unwrap();
    assert_eq!(thumb.level, 3);
    assert_eq!((thumb.width, thumb.height), (150, 200));
}

/// Metadata equals OpenSlide 4.0.1's, which reads DICOM itself: the same instance opened
/// through OpenSlide gives the same width, height, mpp, objective power and vendor as
/// the engine's own DICOM reader, from every instance link.
#[test]
fn metadata_equals_openslides_own_dicom_reader() {
    use wsi_thumbnail::slide::SlideMetadata;
    for link in instances() {
        let slide = openslide_rs::OpenSlide::new(&link)
            .unwrap_or_else(|e| panic!("OpenSlide 4 opens {}: {e}", link.display()));
        let level0 = *slide.all_level_dimensions().first().expect("level 0");
        let theirs = SlideMetadata::from_properties(
            Some((u64::from(level0.w), u64::from(level0.h))),
            |name| slide.property_value(name).ok(),
        );
        let ours = make_thumbnail(&link, &ThumbnailOptions::default())
            .unwrap()
            .metadata;
        assert_eq!(
            serde_json::to_value(&ours).unwrap(),
            serde_json::to_value(&theirs).unwrap(),
            "{}",
            link.display()
        );
    }
}
