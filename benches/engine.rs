//! Criterion benchmarks of the slide engine: each CPU stage on its own, then whole
//! thumbnails through both pixel paths. Run with `cargo bench --bench engine`.
//! Whole-process comparisons with the peers are in `benches/compare_peers.sh`.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use wsi_thumbnail::fixtures::real_tissue::{self, RealTissueSpec};
use wsi_thumbnail::slide::encode::{PngCompression, encode_png};
use wsi_thumbnail::slide::reduce::{box_shrink, composite_argb};
use wsi_thumbnail::slide::render::{Rgb, resize};
use wsi_thumbnail::slide::{DecoderChoice, ThumbnailOptions, make_thumbnail};

fn cmu() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/CMU-1-Small-Region.svs")
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-fixtures")
}

/// A pyramid of real tissue (CMU-1-Small-Region's pixels tiled, as `end_to_end.sh` and
/// `compare_peers.sh` make them): synthetic tiles decode faster and flatter the figures.
fn real_tissue(width: u64, height: u64, level_step: u32) -> PathBuf {
    let spec = RealTissueSpec {
        level_step,
        ..RealTissueSpec::new(cmu(), width, height)
    };
    let path = fixture_dir().join(spec.file_name());
    if !path.exists() {
        std::fs::create_dir_all(fixture_dir()).expect("fixture dir");
        real_tissue::write_slide(&path, &spec).expect("generate fixture");
    }
    path
}

fn noise(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn stages(c: &mut Criterion) {
    let mut g = c.benchmark_group("stages");
    let strip = noise(2500 * 256 * 3);
    let mut out = Vec::new();
    g.bench_function("box_shrink 2500x256 k=2", |b| {
        b.iter(|| box_shrink(black_box(&strip), 2500, 256, 2, &mut out))
    });
    let argb = noise(1024 * 1024 * 4);
    let mut rgb = vec![0u8; 1024 * 1024 * 3];
    g.bench_function("composite_argb 1 Mpx", |b| {
        b.iter(|| composite_argb(black_box(&argb), [255, 255, 255], &mut rgb))
    });
    let level = noise(2500 * 1875 * 3);
    g.bench_function("lanczos3 2500x1875 -> 1024x768", |b| {
        b.iter(|| {
            let img = Rgb {
                width: 2500,
                height: 1875,
                pixels: level.clone(),
            };
            resize(img, (1024, 768)).unwrap()
        })
    });
    let thumb = Rgb {
        width: 1024,
        height: 768,
        pixels: noise(1024 * 768 * 3),
    };
    for compression in [PngCompression::Fast, PngCompression::Small] {
        g.bench_function(format!("png encode 1024x768 {compression:?}"), |b| {
            b.iter(|| encode_png(black_box(&thumb), compression).unwrap())
        });
    }
    g.finish();
}

fn thumbnails(c: &mut Criterion) {
    let mut g = c.benchmark_group("thumbnail");
    g.sample_size(20);
    let slides = [
        ("cmu-small-region", cmu()),
        ("real-40000x30000-4x", real_tissue(40000, 30000, 4)),
        ("real-40000x30000-2x", real_tissue(40000, 30000, 2)),
    ];
    for (name, path) in &slides {
        for decoder in [DecoderChoice::Auto, DecoderChoice::Openslide] {
            let options = ThumbnailOptions {
                decoder,
                ..ThumbnailOptions::default()
            };
            g.bench_function(format!("{name}/{decoder:?}"), |b| {
                b.iter(|| make_thumbnail(black_box(path), &options).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, stages, thumbnails);
criterion_main!(benches);
