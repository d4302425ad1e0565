//! The JPEG decoder's own reduction (DCT scaling) is only used where it costs nothing
//! visible: the thumbnail made from a level decoded at reduced scale stays within a mean
//! absolute difference of 1.0 of the one made from the same level decoded in full, on
//! the real slide and on generated pyramids.

use std::fs::File;
use std::path::Path;

use wsi_thumbnail::fixtures::SlideSpec;
use wsi_thumbnail::formats::tiled_tiff::tiles::JpegTileSource;
use wsi_thumbnail::slide::{PixelPath, ThumbnailOptions, geometry, make_thumbnail, render};
use wsi_thumbnail::tiff::TiffFile;

use crate::support::*;

/// The thumbnail of `level_dims` through the direct path, decoded at 1/`denominator`.
fn thumbnail_at(
    path: &Path,
    level_dims: (u64, u64),
    target: (u32, u32),
    denominator: u32,
) -> Vec<u8> {
    let tiff = TiffFile::read(&mut File::open(path).unwrap()).unwrap();
    let source =
        JpegTileSource::open(path, &tiff, level_dims, denominator, [255, 255, 255]).unwrap();
    let reduced = render::reduce_source(&source, target).unwrap();
    render::resize(reduced, target).unwrap().pixels
}

/// The mean absolute difference between the thumbnails of a level decoded at
/// 1/`denominator` and in full.
fn scaled_against_full(
    path: &Path,
    level_dims: (u64, u64),
    target: (u32, u32),
    denominator: u32,
) -> f64 {
    let scaled = thumbnail_at(path, level_dims, target, denominator);
    let full = thumbnail_at(path, level_dims, target, 1);
    let mad = mean_abs_diff(&scaled, &full);
    println!(
        "{}: 1/{denominator} against full scale: mean abs diff {mad:.3}",
        path.display()
    );
    mad
}

/// The service decodes at the denominator the rule picks, and that is within 1.0.
fn check_chosen(path: &Path, level_dims: (u64, u64), target: (u32, u32), expected: u32) {
    let thumb = make_thumbnail(path, &ThumbnailOptions::default()).unwrap();
    assert_eq!(
        thumb.path,
        PixelPath::JpegTiles {
            denominator: expected
        }
    );
    assert_eq!(geometry::jpeg_denominator(level_dims, target), expected);
    let mad = scaled_against_full(path, level_dims, target, expected);
    assert!(mad <= 1.0, "{}: {mad}", path.display());
}

#[test]
fn real_tissue_is_decoded_in_full_where_half_scale_would_blur_it() {
    // CMU-1-Small-Region to 766 x 1024 leaves 2.9x of reduction. At 1/2 scale the
    // decoder's output is a 2 x 2 box average of the full decode (within 0.1), but that
    // box before a 1.45x Lanczos blurs real tissue visibly against a 2.9x Lanczos: the
    // rule keeps at least twice the thumbnail (as libvips's shrink-on-load does), so
    // this slide is decoded in full.
    let path = cmu_small_region();
    assert!(scaled_against_full(&path, (2220, 2967), (766, 1024), 2) > 1.0);
    let thumb = make_thumbnail(&path, &ThumbnailOptions::default()).unwrap();
    assert_eq!(thumb.path, PixelPath::JpegTiles { denominator: 1 });
}

#[test]
fn where_the_rule_decodes_at_reduced_scale_it_stays_within_1_of_full_scale() {
    // A single 8000 x 6000 level to 1024 x 768: 1/2 leaves 4000 x 3000.
    check_chosen(
        &fixture(&SlideSpec::generic_single_level(8000, 6000)),
        (8000, 6000),
        (1024, 768),
        2,
    );
    // A single 16000 x 12000 level: 1/4 leaves 4000 x 3000.
    check_chosen(
        &fixture(&SlideSpec::generic_single_level(16000, 12000)),
        (16000, 12000),
        (1024, 768),
        4,
    );
}
