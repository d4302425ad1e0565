//! The slide engine on the real Aperio slide CMU-1-Small-Region, against OpenSlide's own
//! reference thumbnail.

use std::fs::File;

use openslide_rs::OpenSlide;
use wsi_thumbnail::formats::tiled_tiff::tiles::JpegTileSource;
use wsi_thumbnail::slide::geometry::Rect;
use wsi_thumbnail::slide::source::{OpenSlideSource, RegionSource};
use wsi_thumbnail::slide::{DecoderChoice, PixelPath, ThumbnailOptions, make_thumbnail};
use wsi_thumbnail::tiff::TiffFile;

use crate::support::*;

fn options(decoder: DecoderChoice) -> ThumbnailOptions {
    ThumbnailOptions {
        decoder,
        ..ThumbnailOptions::default()
    }
}

#[test]
fn metadata_is_exactly_the_contract_object() {
    let thumb = make_thumbnail(&cmu_small_region(), &options(DecoderChoice::Auto)).unwrap();
    assert_eq!(
        serde_json::to_string(&thumb.metadata).unwrap(),
        r#"{"width":2220,"height":2967,"mpp":0.499,"objective_power":20.0,"vendor":"aperio"}"#
    );
}

#[test]
fn both_pixel_paths_match_openslides_reference_thumbnail() {
    let (rw, rh, reference) = decode_png(&std::fs::read(cmu_reference_png()).unwrap());
    assert_eq!((rw, rh), (766, 1024));
    for decoder in [DecoderChoice::Auto, DecoderChoice::Openslide] {
        let thumb = make_thumbnail(&cmu_small_region(), &options(decoder)).unwrap();
        let (w, h, rgb) = decode_png(&thumb.png);
        assert_eq!((w, h), (766, 1024), "{decoder:?}");
        let mad = mean_abs_diff(&rgb, &reference);
        println!("{decoder:?}: path {:?}, mean abs diff {mad:.3}", thumb.path);
        assert!(mad <= 3.0, "{decoder:?}: mean abs diff {mad}");
    }
}

#[test]
fn auto_uses_direct_jpeg_decoding_on_svs() {
    let thumb = make_thumbnail(&cmu_small_region(), &options(DecoderChoice::Auto)).unwrap();
    assert_eq!(thumb.path, PixelPath::JpegTiles { denominator: 1 });
    let thumb = make_thumbnail(&cmu_small_region(), &options(DecoderChoice::Openslide)).unwrap();
    assert_eq!(thumb.path, PixelPath::Openslide);
}

#[test]
fn direct_tile_decoding_equals_openslide_pixels_at_full_scale() {
    let path = cmu_small_region();
    let slide = OpenSlide::new(&path).unwrap();
    let tiff = TiffFile::read(&mut File::open(&path).unwrap()).unwrap();
    let dims = (2220, 2967);
    let fast = JpegTileSource::open(&path, &tiff, dims, 1, [255, 255, 255]).unwrap();
    let reference = OpenSlideSource {
        slide: &slide,
        path: &path,
        level: 0,
        dims,
        downsample: 1.0,
        background: [255, 255, 255],
    };
    // A region crossing tile boundaries (tiles are 240 px) and touching the right edge.
    for rect in [
        Rect {
            x: 100,
            y: 200,
            w: 700,
            h: 500,
        },
        Rect {
            x: 1900,
            y: 2700,
            w: 320,
            h: 267,
        },
    ] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        fast.reader().unwrap().read_rgb(rect, &mut a).unwrap();
        reference.reader().unwrap().read_rgb(rect, &mut b).unwrap();
        let (mad, max) = (mean_abs_diff(&a, &b), max_abs_diff(&a, &b));
        println!("{rect:?}: mean {mad:.4}, max {max}");
        assert!(max <= 2 && mad < 0.05, "{rect:?}: mean {mad}, max {max}");
    }
}

#[test]
fn same_slide_twice_gives_identical_png_bytes() {
    let a = make_thumbnail(&cmu_small_region(), &options(DecoderChoice::Auto)).unwrap();
    let b = make_thumbnail(&cmu_small_region(), &options(DecoderChoice::Auto)).unwrap();
    assert_eq!(a.png, b.png);
}

#[test]
fn smaller_size_keeps_aspect_and_larger_size_never_enlarges() {
    let opts = ThumbnailOptions {
        max_size: 256,
        ..ThumbnailOptions::default()
    };
    let t = make_thumbnail(&cmu_small_region(), &opts).unwrap();
    assert_eq!((t.width, t.height), (192, 256));
    let opts = ThumbnailOptions {
        max_size: 8000,
        ..ThumbnailOptions::default()
    };
    let t = make_thumbnail(&cmu_small_region(), &opts).unwrap();
    assert_eq!((t.width, t.height), (2220, 2967));
    assert_eq!(decode_png(&t.png).0, 2220);
}
