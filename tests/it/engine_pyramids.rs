//! The slide engine on generated pyramids: the expected level is read, the size is
//! right, and the content matches a reference reduction of the same source field.

use std::fs::File;

use openslide_rs::OpenSlide;
use wsi_thumbnail::fixtures::tissue::TissueField;
use wsi_thumbnail::fixtures::{SlideSpec, Style};
use wsi_thumbnail::formats::tiled_tiff::tiles::JpegTileSource;
use wsi_thumbnail::slide::geometry::Rect;
use wsi_thumbnail::slide::source::{OpenSlideSource, RegionSource};
use wsi_thumbnail::slide::{DecoderChoice, PixelPath, ThumbnailOptions, make_thumbnail};
use wsi_thumbnail::tiff::TiffFile;

use crate::support::*;

/// Tolerance against the reference reduction: JPEG at quality 70 plus the difference
/// between a Lanczos reduction of textured levels and point samples of the smooth field.
const REFERENCE_TOLERANCE: f64 = 1.5;
/// The two pixel paths must agree more tightly with each other than with the reference.
const PATHS_TOLERANCE: f64 = 1.0;

fn check_pyramid(
    spec: &SlideSpec,
    expected_level: u32,
    expected_dims: (u32, u32),
) -> Vec<PixelPath> {
    let path = fixture(spec);
    let field = TissueField::new(spec.seed, spec.width, spec.height);
    let reference = field.render_reference(expected_dims.0, expected_dims.1);
    let mut outputs = Vec::new();
    for decoder in [DecoderChoice::Auto, DecoderChoice::Openslide] {
        let thumb = make_thumbnail(
            &path,
            &ThumbnailOptions {
                decoder,
                ..ThumbnailOptions::default()
            },
        )
        .unwrap();
        assert_eq!(
            thumb.level, expected_level,
            "{decoder:?} read the wrong level"
        );
        let (w, h, rgb) = decode_png(&thumb.png);
        assert_eq!((w, h), expected_dims, "{decoder:?}");
        assert_eq!(thumb.metadata.width, Some(spec.width));
        match spec.style {
            Style::Aperio => {
                assert_eq!(thumb.metadata.vendor, "aperio");
                assert_eq!(thumb.metadata.objective_power, Some(spec.app_mag));
                assert_eq!(thumb.metadata.mpp, Some(spec.mpp));
            }
            Style::GenericTiff => assert_eq!(thumb.metadata.vendor, "generic-tiff"),
            Style::Ndpi => assert_eq!(thumb.metadata.vendor, "hamamatsu"),
        }
        let mad = mean_abs_diff(&rgb, &reference);
        println!(
            "{}: {decoder:?} via {:?}: mean abs diff to reference {mad:.3}",
            spec.file_name(),
            thumb.path
        );
        assert!(mad <= REFERENCE_TOLERANCE, "{decoder:?}: {mad}");
        outputs.push((thumb.path, rgb));
    }
    assert!(matches!(outputs[0].0, PixelPath::JpegTiles { .. }));
    assert_eq!(outputs[1].0, PixelPath::Openslide);
    let between = mean_abs_diff(&outputs[0].1, &outputs[1].1);
    println!("between paths: {between:.3}");
    assert!(between <= PATHS_TOLERANCE, "paths disagree by {between}");
    outputs.into_iter().map(|(p, _)| p).collect()
}

#[test]
fn pyramid_40000_by_30000_with_4x_steps_reads_level_2() {
    // Levels 40000, 10000, 2500, 625: the 2500 x 1875 level is the smallest >= 1024 x 768.
    check_pyramid(&SlideSpec::aperio(40000, 30000, 4), 2, (1024, 768));
}

#[test]
fn pyramid_16000_by_12000_with_2x_steps_reads_level_3() {
    // Levels 16000, 8000, 4000, 2000, 1000: 2000 x 1500 is the smallest >= 1024 x 768.
    check_pyramid(&SlideSpec::aperio(16000, 12000, 2), 3, (1024, 768));
}

#[test]
fn portrait_pyramid_with_odd_sizes() {
    // Partial edge tiles on every level; 4x steps: 9001x13007, 2251x3252, 563x813.
    let spec = SlideSpec {
        seed: 9,
        ..SlideSpec::aperio(9001, 13007, 4)
    };
    check_pyramid(&spec, 1, (709, 1024));
}

#[test]
fn single_level_generic_tiff_uses_dct_scaling_and_agrees_with_openslide() {
    // 8000 x 6000 to 1024 x 768: the decoder shrinks by 2 in the IDCT (4000 >= 2 x 1024).
    let paths = check_pyramid(&SlideSpec::generic_single_level(8000, 6000), 0, (1024, 768));
    assert_eq!(paths[0], PixelPath::JpegTiles { denominator: 2 });
}

#[test]
fn direct_decoding_equals_openslide_on_generated_levels() {
    for spec in [
        SlideSpec::aperio(16000, 12000, 2),
        SlideSpec::generic_single_level(3000, 2000),
    ] {
        let path = fixture(&spec);
        let slide = OpenSlide::new(&path).unwrap();
        let tiff = TiffFile::read(&mut File::open(&path).unwrap()).unwrap();
        let level = slide.level_count() - 1;
        let size = slide.level_dimensions(level).unwrap();
        let dims = (u64::from(size.w), u64::from(size.h));
        let fast = JpegTileSource::open(&path, &tiff, dims, 1, [255, 255, 255]).unwrap();
        let reference = OpenSlideSource {
            slide: &slide,
            path: &path,
            level,
            dims,
            downsample: slide.level_downsample(level).unwrap(),
            background: [255, 255, 255],
        };
        let rect = Rect {
            x: 0,
            y: 0,
            w: dims.0,
            h: dims.1,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        fast.reader().unwrap().read_rgb(rect, &mut a).unwrap();
        reference.reader().unwrap().read_rgb(rect, &mut b).unwrap();
        let (mad, max) = (mean_abs_diff(&a, &b), max_abs_diff(&a, &b));
        println!(
            "{}: level {level}: mean {mad:.4}, max {max}",
            spec.file_name()
        );
        assert!(
            max <= 2 && mad < 0.05,
            "{}: mean {mad}, max {max}",
            spec.file_name()
        );
    }
}

#[test]
fn aperio_jpeg2000_tiles_take_the_direct_path_and_agree_with_openslide() {
    // 8192 x 6144 with 8x steps: level 1 (1024 x 768) for a 256 x 192 thumbnail, read at
    // 1/2 from the wavelet levels. OpenSlide (its OpenJPEG, converting 33003's YCbCr
    // itself) is the independent decode.
    for compression in [33003, 33005] {
        let spec = SlideSpec {
            jp2k: Some(compression),
            ..SlideSpec::aperio(8192, 6144, 8)
        };
        let path = fixture(&spec);
        let field = TissueField::new(spec.seed, spec.width, spec.height);
        let mut outputs = Vec::new();
        for decoder in [DecoderChoice::Auto, DecoderChoice::Openslide] {
            let thumb = make_thumbnail(
                &path,
                &ThumbnailOptions {
                    max_size: 256,
                    decoder,
                    ..ThumbnailOptions::default()
                },
            )
            .unwrap();
            assert_eq!(thumb.level, 1, "{compression} {decoder:?}");
            assert_eq!(thumb.metadata.vendor, "aperio");
            let (w, h, rgb) = decode_png(&thumb.png);
            assert_eq!((w, h), (256, 192));
            let mad = mean_abs_diff(&rgb, &field.render_reference(w, h));
            println!(
                "{compression} {decoder:?} via {:?}: MAD to the tissue {mad:.3}",
                thumb.path
            );
            assert!(mad <= 3.0, "{compression} {decoder:?}: {mad}");
            outputs.push((thumb.path, rgb));
        }
        assert_eq!(
            outputs[0].0,
            PixelPath::JpegTiles { denominator: 2 },
            "{compression}"
        );
        assert_eq!(outputs[1].0, PixelPath::Openslide);
        let between = mean_abs_diff(&outputs[0].1, &outputs[1].1);
        println!("{compression}: between paths {between:.3}");
        assert!(between <= 1.0, "{compression}: paths disagree by {between}");
    }
}
