//! JPEG 2000 and HTJ2K frame decoding, ours against OpenJPEG, on real tissue: a 512 x 512
//! region of CMU-1-Small-Region (`../shared/testdata`), encoded as DICOM converters and
//! Aperio do (Part 1 lossless 5/3 + RCT, lossy 9/7 + ICT at 20:1; HTJ2K lossless and
//! lossy). For each, the time to decode at full size and at 1/4 (what a thumbnail reads),
//! by hayro-jpeg2000 (our Part 1 decoder) and OpenJPEG 2.5.3 (our HTJ2K decoder, and the
//! reference), and the mean absolute difference between the two decoders' pixels.
//! Run with `cargo bench --bench jpeg2000`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use openslide_rs::{Address, OpenSlide, Region, Size};
use wsi_thumbnail::fixtures::j2k_encode::{encode_htj2k, encode_part1};
use wsi_thumbnail::slide::jpeg2000::decode_scaled;
use wsi_thumbnail::slide::openjpeg::decode_reduced;
use wsi_thumbnail::slide::reduce::composite_argb;

const SIDE: u32 = 512;

/// 512 x 512 RGB of real tissue from the middle of CMU-1-Small-Region.
fn tissue() -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/CMU-1-Small-Region.svs");
    let slide = OpenSlide::new(&path).expect("CMU-1-Small-Region (../shared/testdata)");
    let argb = slide
        .read_region(&Region {
            address: Address { x: 800, y: 1200 },
            level: 0,
            size: Size { w: SIDE, h: SIDE },
        })
        .expect("read region");
    let mut rgb = vec![0u8; (SIDE * SIDE * 3) as usize];
    composite_argb(&argb, [255, 255, 255], &mut rgb);
    rgb
}

fn mad(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.len().max(1) as f64
}

fn decoders(c: &mut Criterion) {
    let rgb = tissue();
    let streams = [
        (
            "j2k lossless",
            encode_part1(&rgb, SIDE, true).expect("encode"),
        ),
        (
            "j2k lossy",
            encode_part1(&rgb, SIDE, false).expect("encode"),
        ),
        (
            "htj2k lossless",
            encode_htj2k(&rgb, SIDE, true).expect("encode"),
        ),
        (
            "htj2k lossy",
            encode_htj2k(&rgb, SIDE, false).expect("encode"),
        ),
    ];
    let mut g = c.benchmark_group("jpeg2000 512x512 tissue");
    for (name, bytes) in &streams {
        // Pixels: ours (the service's decode) against OpenJPEG's full decode.
        let mut ours = Vec::new();
        decode_scaled(bytes, (SIDE, SIDE), 1, &mut ours).expect("ours");
        let (reference, _) = decode_reduced(bytes, (SIDE, SIDE), 1).expect("OpenJPEG");
        println!(
            "{name}: {} bytes; ours vs OpenJPEG at full size: MAD {:.4}; vs the source: {:.3}",
            bytes.len(),
            mad(&ours, &reference),
            mad(&ours, &rgb)
        );
        for denominator in [1, 4] {
            let mut out = Vec::new();
            g.bench_function(format!("{name} 1/{denominator} ours"), |b| {
                b.iter(|| decode_scaled(black_box(bytes), (SIDE, SIDE), denominator, &mut out))
            });
            g.bench_function(format!("{name} 1/{denominator} openjpeg"), |b| {
                b.iter(|| decode_reduced(black_box(bytes), (SIDE, SIDE), denominator))
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = decoders
}
criterion_main!(benches);
