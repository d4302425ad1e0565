//! DICOM series in every transfer syntax the pixel path decodes (JPEG baseline and
//! progressive, JPEG 2000 lossless and lossy, HTJ2K lossless and lossy, uncompressed
//! explicit / implicit VR, interleaved / planar, RGB / MONOCHROME2), and a series that
//! mixes them from one level to the next: each thumbnail against the pixels the
//! generator encoded, reduced independently of any decoder.

use std::process::Command;

use wsi_thumbnail::fixtures::dicom::{DicomSpec, FrameEncoding, level_file};
use wsi_thumbnail::fixtures::dicom_encoding::grey;
use wsi_thumbnail::fixtures::tissue::TissueField;
use wsi_thumbnail::slide::reduce::box_shrink;
use wsi_thumbnail::slide::{PixelPath, ThumbnailOptions, make_thumbnail};

use crate::support::*;

/// The level the generator encoded (the tissue field rendered tile by tile, as
/// `write_series` does), box-averaged by `k`: what a full decode of a lossless level
/// reduced to the thumbnail's size shows.
fn source_level_reduced(spec: &DicomSpec, k: u32, monochrome: bool) -> Vec<u8> {
    let field = TissueField::new(spec.seed, spec.width, spec.height);
    let (w, h, t) = (spec.width, spec.height, u64::from(spec.tile));
    let mut level = vec![0u8; (w * h * 3) as usize];
    let mut tile = Vec::new();
    for ty in 0..h.div_ceil(t) {
        for tx in 0..w.div_ceil(t) {
            field.render_tile(1.0, tx * t, ty * t, spec.tile, spec.tile, false, &mut tile);
            for row in 0..t.min(h - ty * t) {
                let cols = t.min(w - tx * t) as usize;
                let src = &tile[(row * t * 3) as usize..][..cols * 3];
                let at = (((ty * t + row) * w + tx * t) * 3) as usize;
                level[at..at + cols * 3].copy_from_slice(src);
            }
        }
    }
    if monochrome {
        for px in level.chunks_exact_mut(3) {
            let g = grey(px);
            px.copy_from_slice(&[g, g, g]);
        }
    }
    let mut out = Vec::new();
    box_shrink(&level, w as usize, h as usize, k, &mut out);
    out
}

#[test]
fn every_syntax_gives_the_thumbnail_of_the_encoded_level() {
    let options = ThumbnailOptions::default();
    let spec_for = |encoding| DicomSpec {
        level_step: 1,
        extras: false,
        encodings: vec![encoding],
        ..DicomSpec::new(8192, 6144)
    };
    let thumbnail = |encoding| {
        let link = dicom_fixture(&spec_for(encoding)).join(level_file(0));
        let thumb = make_thumbnail(&link, &options).unwrap_or_else(|e| panic!("{encoding:?}: {e}"));
        assert_eq!((thumb.width, thumb.height), (1024, 768), "{encoding:?}");
        // 8192 / 4 = 2048 (twice the thumbnail): JPEG's IDCT, JPEG 2000's wavelet
        // levels or the box make that first reduction.
        assert_eq!(
            thumb.path,
            PixelPath::Dicom { denominator: 4 },
            "{encoding:?}"
        );
        assert_eq!(thumb.metadata.width, Some(8192));
        assert_eq!(thumb.metadata.vendor, "dicom");
        decode_png(&thumb.png).2
    };
    // The anchors: uncompressed frames against the encoded pixels reduced here (only the
    // final resize differs), then every codec against the uncompressed series' thumbnail
    // of the same pixels (only the codec and its reduced decode differ).
    let colour = thumbnail(FrameEncoding::ExplicitRgb);
    let grey_level = thumbnail(FrameEncoding::ExplicitMonochrome2);
    for (rgb, monochrome) in [(&colour, false), (&grey_level, true)] {
        let boxed = source_level_reduced(&spec_for(FrameEncoding::ExplicitRgb), 8, monochrome);
        let mad = mean_abs_diff(rgb, &boxed);
        println!(
            "uncompressed (monochrome {monochrome}) vs the encoded level box-reduced: {mad:.3}"
        );
        assert!(mad <= 1.5, "{mad}");
    }
    for encoding in FrameEncoding::ALL {
        let rgb = thumbnail(encoding);
        let reference = if encoding == FrameEncoding::ExplicitMonochrome2 {
            &grey_level
        } else {
            &colour
        };
        let mad = mean_abs_diff(&rgb, reference);
        println!("{encoding:?}: mean abs diff to the uncompressed level's thumbnail: {mad:.3}");
        let limit = if encoding.native() {
            0.0
        } else if encoding.lossless() {
            1.0
        } else {
            3.0
        };
        assert!(mad <= limit, "{encoding:?}: MAD {mad:.3} > {limit}");
    }
}

#[test]
fn a_series_mixing_syntaxes_reads_whichever_level_the_size_picks() {
    // Levels 8192 (JPEG 2000 lossless), 2048 (uncompressed), 512 (HTJ2K lossy).
    let spec = DicomSpec {
        extras: false,
        encodings: vec![
            FrameEncoding::J2kLossless,
            FrameEncoding::ExplicitRgb,
            FrameEncoding::Htj2kLossy,
        ],
        ..DicomSpec::new(8192, 6144)
    };
    let dir = dicom_fixture(&spec);
    let field = TissueField::new(spec.seed, spec.width, spec.height);
    for (max_size, level, denominator) in [(4096, 0, 1), (1024, 1, 1), (256, 2, 1)] {
        let options = ThumbnailOptions {
            max_size,
            ..ThumbnailOptions::default()
        };
        // Any instance names the slide, whatever its syntax.
        for link in [level_file(0), level_file(2)] {
            let thumb = make_thumbnail(&dir.join(&link), &options)
                .unwrap_or_else(|e| panic!("{max_size} from {link}: {e}"));
            assert_eq!(thumb.level, level, "{max_size}");
            assert_eq!(thumb.path, PixelPath::Dicom { denominator }, "{max_size}");
            let (w, h, rgb) = decode_png(&thumb.png);
            let mad = mean_abs_diff(&rgb, &field.render_reference(w, h));
            println!("{max_size} from {link}: level {level}, MAD to the tissue {mad:.3}");
            assert!(mad <= 6.0, "{max_size}: {mad}");
        }
    }
}

#[test]
fn the_cli_worker_decodes_htj2k_and_names_a_syntax_it_does_not() {
    let spec = DicomSpec {
        level_step: 1,
        extras: false,
        encodings: vec![FrameEncoding::Htj2kLossless],
        ..DicomSpec::new(2048, 1536)
    };
    let link = dicom_fixture(&spec).join(level_file(0));
    let out = tempfile::tempdir().unwrap();
    let png = out.path().join("out.png");
    let run = Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"))
        .arg("thumbnail")
        .arg(&link)
        .arg("--output")
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (w, h, _) = decode_png(&std::fs::read(&png).unwrap());
    assert_eq!((w, h), (1024, 768));

    // The same series relabelled JPEG lossless, process 14 (.4.57): unsupported_format,
    // naming the UID.
    let relabelled = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&link).unwrap();
    let from = spec.encodings[0].transfer_syntax().as_bytes();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("the transfer syntax in the meta group");
    let mut patched = bytes.clone();
    // Same length (".4.201" -> ".4.57\0"), so every length in the group still holds.
    patched[at..at + from.len()].copy_from_slice(b"1.2.840.10008.1.2.4.57\0");
    let target = relabelled.path().join(level_file(0));
    std::fs::write(&target, patched).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"))
        .arg("thumbnail")
        .arg(&target)
        .arg("--output")
        .arg(out.path().join("ls.png"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: unsupported_format: ")
            && stderr.contains("1.2.840.10008.1.2.4.57"),
        "{stderr}"
    );
}
