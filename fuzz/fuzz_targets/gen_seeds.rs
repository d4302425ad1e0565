//! Not a fuzz target: writes the seed corpora (`fuzz/generated/<target>/`, at every
//! `scripts/fuzz.sh` run; generated slides are never committed) of the slide
//! planning targets from the project's own fixture generators (`wsi_thumbnail::fixtures`)
//! and a few hand-built TIFFs, at sizes that keep every seed under 64 KiB. It is built
//! with the targets (so it needs no second build of the dependencies) and does its work
//! in libFuzzer's initialisation, then exits:
//!
//! ```sh
//! cd fuzz
//! RUSTC_BOOTSTRAP=1 cargo fuzz build -O -s none gen_seeds
//! WSI_FUZZ_SEEDS_OUT=$PWD/generated target/x86_64-unknown-linux-gnu/release/gen_seeds
//! ```
//!
//! Deterministic: the fixtures are seeded, so the same sources write the same seeds.
#![no_main]
// The init block exits, so the (empty) fuzz body is unreachable.
#![allow(unreachable_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use wsi_thumbnail::formats::dicom::{Scan, scan_prefix};
use wsi_thumbnail::fixtures::dicom::{DicomSpec, Hostile, OffsetTable, write_series};
use wsi_thumbnail::fixtures::j2k_encode::encode_part1;
use wsi_thumbnail::fixtures::{SlideSpec, broken, poison, pyramid};
use wsi_thumbnail::tiff::tags;
use wsi_thumbnail::tiff::writer::{TiffWriter, Value};

const MAX_SEED: usize = 64 * 1024;
const SEPARATOR: &[u8] = b"--next-instance--";

fuzz_target!(
    init: {
        let out = std::env::var_os("WSI_FUZZ_SEEDS_OUT")
            .map(PathBuf::from)
            .expect("set WSI_FUZZ_SEEDS_OUT to the seeds directory (fuzz/generated)");
        generate(&out).expect("writing the seeds");
        std::process::exit(0);
    },
    |_data: &[u8]| {}
);

fn generate(out: &Path) -> std::io::Result<()> {
    let scratch = std::env::temp_dir().join(format!("wsi-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = (|| {
        tiff_seeds(&out.join("tiff_plan"), &scratch)?;
        ndpi_seeds(&out.join("ndpi_plan"), &scratch)?;
        dicom_seeds(out, &scratch)?;
        jpeg2000_seeds(&out.join("jpeg2000_frame"))
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Part 1 codestreams of a 64 x 64 gradient (control 1: side 64, scale 1; control 9:
/// side 64, scale 4), lossless and lossy.
fn jpeg2000_seeds(dir: &Path) -> std::io::Result<()> {
    let rgb: Vec<u8> = (0..64u32 * 64)
        .flat_map(|i| [(i % 64 * 4) as u8, (i / 64 * 4) as u8, 128])
        .collect();
    for (name, lossless) in [("lossless", true), ("lossy", false)] {
        let bytes = encode_part1(&rgb, 64, lossless)?;
        write_seed(dir, &format!("{name}-full"), 1, &bytes)?;
        write_seed(dir, &format!("{name}-quarter"), 9, &bytes)?;
    }
    Ok(())
}

/// Writes `[control][bytes]`, refusing seeds past 64 KiB (small seeds fuzz fast).
fn write_seed(dir: &Path, name: &str, control: u8, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut seed = vec![control];
    seed.extend_from_slice(bytes);
    if seed.len() > MAX_SEED {
        eprintln!("skipped {name}: {} bytes", seed.len());
        return Ok(());
    }
    println!("{}/{name}: {} bytes", dir.display(), seed.len());
    std::fs::write(dir.join(name), seed)
}

fn small(spec: SlideSpec, tile: u32, quality: i32) -> SlideSpec {
    SlideSpec {
        tile,
        quality,
        ..spec
    }
}

fn tiff_seeds(dir: &Path, scratch: &Path) -> std::io::Result<()> {
    let slides = [
        // Two levels (1024 x 768 and 256 x 192), shared JPEG tables.
        (
            "aperio-2-levels.svs",
            small(SlideSpec::aperio(1024, 768, 4), 128, 5),
        ),
        (
            "generic-1-level.tif",
            small(SlideSpec::generic_single_level(384, 256), 128, 5),
        ),
        (
            "generic-xml-description.tif",
            SlideSpec {
                description: Some("<?xml version=\"1.0\"?><OME/>".into()),
                ..small(SlideSpec::generic_single_level(256, 256), 128, 5)
            },
        ),
        (
            "ndpi-2-levels.ndpi",
            small(SlideSpec::ndpi(1024, 64), 1024, 5),
        ),
    ];
    for (name, spec) in slides {
        let path = scratch.join(name);
        pyramid::write_slide(&path, &spec)?;
        let bytes = std::fs::read(&path)?;
        write_seed(dir, name, 0, &bytes)?;
        // Half held at first, a small thumbnail and a small pixel limit.
        write_seed(dir, &format!("{name}.half-held"), (16 << 3) | 1, &bytes)?;
        write_seed(dir, &format!("{name}.bomb-limit"), (4 << 3) | 4, &bytes)?;
    }
    for (name, bytes) in hand_built()? {
        write_seed(dir, name, 0, &bytes)?;
    }
    // The poison corpus: small files that hurt OpenSlide (the planner must stay calm).
    let poison_dir = scratch.join("poison");
    for p in poison::write_corpus(&poison_dir)? {
        let bytes = std::fs::read(poison_dir.join(p.file_name))?;
        // A corpus entry may be a file inside a folder (a DICOM series).
        let name = p.file_name.replace('/', "-");
        write_seed(dir, &format!("poison-{name}"), 0, &bytes)?;
    }
    let bomb = scratch.join("bomb.tif");
    broken::write_bomb(&bomb, 1 << 20, 1 << 20)?;
    write_seed(dir, "bomb.tif", 0, &std::fs::read(&bomb)?)?;
    Ok(())
}

/// A one-tile directory's entries.
fn tile_dir(
    w: u32,
    h: u32,
    compression: u16,
    tile: &[u64],
    count: &[u64],
    big: bool,
) -> Vec<(u16, Value)> {
    let wide = |v: &[u64]| {
        if big {
            Value::Long8(v.to_vec())
        } else {
            Value::Long(v.iter().map(|x| *x as u32).collect())
        }
    };
    vec![
        (tags::IMAGE_WIDTH, Value::Long(vec![w])),
        (tags::IMAGE_LENGTH, Value::Long(vec![h])),
        (tags::BITS_PER_SAMPLE, Value::Short(vec![8, 8, 8])),
        (tags::COMPRESSION, Value::Short(vec![compression])),
        (tags::PHOTOMETRIC, Value::Short(vec![tags::PHOTOMETRIC_RGB])),
        (tags::SAMPLES_PER_PIXEL, Value::Short(vec![3])),
        (tags::TILE_WIDTH, Value::Long(vec![16])),
        (tags::TILE_LENGTH, Value::Long(vec![16])),
        (tags::TILE_OFFSETS, wide(tile)),
        (tags::TILE_BYTE_COUNTS, wide(count)),
    ]
}

/// Layouts the fixtures do not write: BigTIFF, strips, JPEG 2000, vendor marks, a
/// reduced-resolution directory chain, an old-style JPEG.
fn hand_built() -> std::io::Result<Vec<(&'static str, Vec<u8>)>> {
    let mut out = Vec::new();
    let tiff =
        |big: bool, dirs: &dyn Fn(&mut TiffWriter<Cursor<Vec<u8>>>) -> std::io::Result<()>| {
            let mut w = TiffWriter::new(Cursor::new(Vec::new()), big)?;
            dirs(&mut w)?;
            Ok::<_, std::io::Error>(w.finish()?.into_inner())
        };
    let jpeg = [0xFF, 0xD8, 0xFF, 0xD9];
    out.push((
        "bigtiff-generic.tif",
        tiff(true, &|w| {
            let a = w.append(&jpeg)?;
            let b = w.append(&jpeg)?;
            w.add_directory(tile_dir(32, 16, 7, &[a, b], &[4, 4], true));
            let mut d = tile_dir(16, 8, 7, &[b], &[4], true);
            d.push((tags::NEW_SUBFILE_TYPE, Value::Long(vec![1])));
            w.add_directory(d);
            Ok(())
        })?,
    ));
    out.push((
        "generic-reduced-levels.tif",
        tiff(false, &|w| {
            let a = w.append(&jpeg)?;
            for (size, subfile) in [(64u32, 0u32), (32, 1), (16, 1), (24, 0)] {
                let n = u64::from(size.div_ceil(16) * size.div_ceil(16));
                let offsets = vec![a; n as usize];
                let counts = vec![4; n as usize];
                let mut d = tile_dir(size, size, 7, &offsets, &counts, false);
                d.push((tags::NEW_SUBFILE_TYPE, Value::Long(vec![subfile])));
                w.add_directory(d);
            }
            Ok(())
        })?,
    ));
    out.push((
        "aperio-jpeg2000.svs",
        tiff(false, &|w| {
            let a = w.append(&[0xFF, 0x4F, 0xFF, 0x51, 0, 0, 0, 0])?;
            let mut d = tile_dir(16, 16, 33003, &[a], &[8], false);
            d.push((
                tags::IMAGE_DESCRIPTION,
                Value::Ascii("Aperio Image Library v12|AppMag = 20|MPP = 0.5".into()),
            ));
            w.add_directory(d);
            Ok(())
        })?,
    ));
    out.push((
        "strips.tif",
        tiff(false, &|w| {
            let a = w.append(&[0u8; 48])?;
            w.add_directory(vec![
                (tags::IMAGE_WIDTH, Value::Long(vec![4])),
                (tags::IMAGE_LENGTH, Value::Long(vec![4])),
                (tags::COMPRESSION, Value::Short(vec![1])),
                (tags::STRIP_OFFSETS, Value::Long(vec![a as u32])),
                (tags::STRIP_BYTE_COUNTS, Value::Long(vec![48])),
            ]);
            Ok(())
        })?,
    ));
    out.push((
        "ventana-xmp.tif",
        tiff(false, &|w| {
            let a = w.append(&jpeg)?;
            let mut d = tile_dir(16, 16, 7, &[a], &[4], false);
            d.push((tags::XMP, Value::Undefined(b"<x:xmpmeta/>".to_vec())));
            w.add_directory(d);
            Ok(())
        })?,
    ));
    out.push((
        "trestle.tif",
        tiff(false, &|w| {
            let a = w.append(&jpeg)?;
            let mut d = tile_dir(16, 16, 7, &[a], &[4], false);
            d.push((tags::SOFTWARE, Value::Ascii("MedScan".into())));
            w.add_directory(d);
            Ok(())
        })?,
    ));
    out.push((
        "old-style-jpeg.tif",
        tiff(false, &|w| {
            let a = w.append(&jpeg)?;
            w.add_directory(tile_dir(16, 16, 6, &[a], &[4], false));
            Ok(())
        })?,
    ));
    Ok(out)
}

fn ndpi_seeds(dir: &Path, scratch: &Path) -> std::io::Result<()> {
    let slides = [
        (
            "ndpi-1024x64.ndpi",
            small(SlideSpec::ndpi(1024, 64), 1024, 5),
        ),
        (
            "ndpi-2048x48-tile256.ndpi",
            small(SlideSpec::ndpi(2048, 48), 256, 5),
        ),
    ];
    for (name, spec) in slides {
        let path = scratch.join(name);
        pyramid::write_slide(&path, &spec)?;
        let bytes = std::fs::read(&path)?;
        write_seed(dir, name, 0, &bytes)?;
        write_seed(dir, &format!("{name}.half-held"), (16 << 3) | 1, &bytes)?;
        write_seed(dir, &format!("{name}.bomb-limit"), 4, &bytes)?;
    }
    Ok(())
}

/// An instance as the DICOM targets take it: `[u32 LE bytes not kept][kept bytes]`,
/// keeping the header and the start of the pixel data.
fn instance_blob(bytes: &[u8]) -> Vec<u8> {
    let keep = match scan_prefix(bytes, bytes.len() as u64) {
        Ok(Scan::Header(h)) => (h.pixel_value_start as usize + 64).min(bytes.len()),
        _ => bytes.len().min(8 * 1024),
    };
    let mut blob = ((bytes.len() - keep) as u32).to_le_bytes().to_vec();
    blob.extend_from_slice(&bytes[..keep]);
    blob
}

fn dicom_seeds(out: &Path, scratch: &Path) -> std::io::Result<()> {
    let base = DicomSpec {
        tile: 256,
        quality: 5,
        ..DicomSpec::new(1024, 1024)
    };
    let mut specs = vec![
        ("full", base.clone()),
        (
            "sparse-extended",
            DicomSpec {
                sparse: true,
                table: OffsetTable::Extended,
                extras: false,
                ..base.clone()
            },
        ),
        (
            "basic-table",
            DicomSpec {
                table: OffsetTable::Basic,
                extras: false,
                ..base.clone()
            },
        ),
    ];
    for kind in Hostile::ALL {
        let name: &'static str =
            Box::leak(format!("hostile-{kind:?}").to_lowercase().into_boxed_str());
        specs.push((
            name,
            DicomSpec {
                width: 512,
                height: 384,
                tile: 128,
                quality: 5,
                ..DicomSpec::hostile(kind)
            },
        ));
    }
    for (name, spec) in specs {
        let series_dir = scratch.join(format!("dicom-{name}"));
        std::fs::create_dir_all(&series_dir)?;
        write_series(&series_dir, &spec)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&series_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .collect();
        files.sort();
        let mut series = Vec::new();
        for (i, file) in files.iter().enumerate() {
            let bytes = std::fs::read(file)?;
            let blob = instance_blob(&bytes);
            let stem = file.file_stem().unwrap().to_string_lossy();
            write_seed(&out.join("dicom_scan"), &format!("{name}-{stem}"), 0, &blob)?;
            if i == 0 {
                // A 128-byte first read: the NeedMore path.
                write_seed(
                    &out.join("dicom_scan"),
                    &format!("{name}-{stem}.small-reads"),
                    16,
                    &blob,
                )?;
            }
            if i > 0 {
                series.extend_from_slice(SEPARATOR);
            }
            series.extend_from_slice(&blob);
        }
        write_seed(&out.join("dicom_series"), name, 0, &series)?;
        write_seed(
            &out.join("dicom_series"),
            &format!("{name}.small-thumbnail"),
            (1 << 3) | 3,
            &series,
        )?;
    }
    Ok(())
}
