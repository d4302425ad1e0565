//! What OpenSlide would report on opening an Aperio or generic tiled TIFF (its levels,
//! in its order, and the properties the response's metadata is made of), read from the
//! directories without opening the slide.
//!
//! Why: `openslide_open` loads every directory through libtiff and hashes the smallest
//! level's tiles for `openslide.quickhash-1` (up to 5 MiB of SHA-256, read tile by tile).
//! That is 4.1 ms of CPU on CMU-1-Small-Region, about 8% of its thumbnail, spent on a
//! hash nobody reads. When the direct path reads the level, the engine needs nothing
//! else from OpenSlide.
//!
//! The mirror is exact or silent. OpenSlide itself names the vendor
//! (`openslide_detect_vendor`, which parses the directories but hashes nothing), and the
//! planner's own detection must agree. Anything whose OpenSlide reading is not modelled
//! here gives `None`: a compression or image depth its drivers refuse, a resolution
//! stored as another type, a number `g_ascii_strtod` would read differently. The engine
//! then opens the slide with OpenSlide, as it always did. The rules follow OpenSlide
//! 4.0.0's `openslide-vendor-aperio.c`, `openslide-vendor-generic-tiff.c` and
//! `_openslide_tifflike_set_resolution_props`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use openslide_rs::OpenSlide;

use super::plan::{self, Flavour, MAX_PLANNED_TILES};
// Aperio's JPEG 2000 compressions, which its driver accepts besides libtiff's.
use crate::slide::jp2k_guard::APERIO_JP2K;
use crate::slide::metadata::{PROP_MPP_X, PROP_OBJECTIVE_POWER, PROP_VENDOR};
use crate::tiff::tags::{FIELD_RATIONAL, IMAGE_DEPTH, RESOLUTION_UNIT, X_RESOLUTION, Y_RESOLUTION};
use crate::tiff::{Directory, TiffFile, tags};

/// Compressions the libtiff inside OpenSlide decodes for certain: none, LZW, JPEG,
/// Deflate (both codes) and PackBits. A directory with any other one is left to
/// OpenSlide, which may refuse the slide for it.
const CODECS: [u16; 6] = [1, 5, 7, 8, 32773, 32946];

/// A slide as OpenSlide would open it.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// `openslide.vendor`: `aperio` or `generic-tiff` (also the `openslide.vendor`
    /// property).
    pub vendor: String,
    /// Every level's dimensions, largest first, as OpenSlide numbers them.
    pub levels: Vec<(u64, u64)>,
    /// The standard properties OpenSlide would set that the metadata reads.
    pub properties: Vec<(&'static str, String)>,
}

impl Description {
    /// A property by name, as `openslide_get_property_value` would give it.
    pub fn property(&self, name: &str) -> Option<String> {
        if name == PROP_VENDOR {
            return Some(self.vendor.clone());
        }
        self.properties
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }
}

/// The description of the slide at `path`, whose directories are `tiff`, or `None` when
/// OpenSlide has to open it.
pub fn describe(path: &Path, tiff: &TiffFile) -> Option<Description> {
    let vendor = OpenSlide::detect_vendor(path).ok()?;
    let mut file = File::open(path).ok()?;
    describe_detected(&mut file, tiff, &vendor)
}

/// [`describe`] once OpenSlide has named the vendor.
fn describe_detected<R: Read + Seek>(
    r: &mut R,
    tiff: &TiffFile,
    vendor: &str,
) -> Option<Description> {
    let flavour = plan::flavour(r, tiff).ok()?;
    let expected = match flavour {
        Flavour::Aperio => "aperio",
        Flavour::GenericTiff => "generic-tiff",
        Flavour::Ndpi => return None,
    };
    if vendor != expected {
        return None;
    }
    let levels = plan::openslide_levels(flavour, tiff);
    if levels.is_empty() || levels.iter().any(|d| d.tile_grid().is_none()) {
        return None;
    }
    let checked: Vec<&Directory> = match flavour {
        // The Aperio driver checks every directory, the generic one only its levels.
        Flavour::Aperio => tiff.directories.iter().collect(),
        _ => levels.clone(),
    };
    for d in checked {
        let codec = CODECS.contains(&d.compression)
            || (flavour == Flavour::Aperio && APERIO_JP2K.contains(&d.compression));
        // Aperio writes ImageDepth = 1 in every directory; its driver refuses another.
        let depth = !d.has_tag(IMAGE_DEPTH) || tiff.first_uint(r, d, IMAGE_DEPTH).ok()? == Some(1);
        if !codec || !depth {
            return None;
        }
    }
    if !every_tile_present(r, tiff, &levels)? {
        return None;
    }
    let first = tiff.directories.first()?;
    let properties = match flavour {
        Flavour::Aperio => {
            let text = tiff
                .read_blob(r, first, tags::IMAGE_DESCRIPTION)
                .ok()
                .flatten()?;
            aperio_properties(&text)?
        }
        _ => resolution_properties(r, tiff, first)?,
    };
    Some(Description {
        vendor: vendor.to_string(),
        levels: levels.iter().map(|d| (d.width, d.height)).collect(),
        properties,
    })
}

/// Whether every tile of every level has bytes, inside the file. OpenSlide's open works
/// on missing (zero-length) tiles: the Aperio driver propagates them through the levels,
/// which is where hostile files make it divide by zero or loop, and it hashes the
/// smallest level's tiles. A slide with any missing or outlying tile is left to
/// OpenSlide, so the failure it gives (a crash contained in the worker, a timeout) stays
/// the slide's one record. `None` past [`MAX_PLANNED_TILES`] entries: OpenSlide reads
/// those arrays anyway.
fn every_tile_present<R: Read + Seek>(
    r: &mut R,
    tiff: &TiffFile,
    levels: &[&Directory],
) -> Option<bool> {
    let mut entries = 0u64;
    for dir in levels {
        entries = entries.checked_add(dir.tile_entries().ok()?)?;
    }
    if entries > MAX_PLANNED_TILES {
        return None;
    }
    let len = r.seek(SeekFrom::End(0)).ok()?;
    for dir in levels {
        let (offsets, counts) = tiff.tile_locations(r, dir).ok()?;
        let inside = offsets.iter().zip(&counts).all(|(&offset, &count)| {
            offset > 0 && count > 0 && offset.checked_add(count).is_some_and(|end| end <= len)
        });
        if !inside {
            return Some(false);
        }
    }
    Some(true)
}

/// The Aperio driver's properties: `key = value` pairs after the first `|`-separated
/// field of ImageDescription, the last of a key winning; `AppMag` gives the objective
/// power and `MPP` the resolution.
fn aperio_properties(description: &[u8]) -> Option<Vec<(&'static str, String)>> {
    // libtiff hands OpenSlide a C string: it ends at the first NUL.
    let end = description
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(description.len());
    // OpenSlide splits bytes; text that is not UTF-8 is left to it.
    let text = std::str::from_utf8(&description[..end]).ok()?;
    let (mut app_mag, mut mpp) = (None, None);
    for field in text.split('|').skip(1) {
        let mut pair = field.splitn(2, '=');
        let name = strip(pair.next().unwrap_or_default());
        // A field without `=` is no pair: it changes nothing.
        let Some(value) = pair.next().map(strip) else {
            continue;
        };
        match name {
            "AppMag" => app_mag = Some(value),
            "MPP" => mpp = Some(value),
            _ => {}
        }
    }
    let mut properties = Vec::new();
    for (name, value) in [(PROP_OBJECTIVE_POWER, app_mag), (PROP_MPP_X, mpp)] {
        if let Some(v) = value.map(parse_double).transpose().ok()?.flatten() {
            properties.push((name, v.to_string()));
        }
    }
    Some(properties)
}

/// `g_strstrip`: ASCII whitespace, vertical tab included.
fn strip(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'))
}

/// Stands for "OpenSlide's reading is not modelled here": the slide is opened by it.
struct Unmodelled;

/// `_openslide_parse_double`: commas read as decimal points, the whole text a number,
/// no overflow or underflow; `Ok(None)` where OpenSlide sets no property.
fn parse_double(text: &str) -> Result<Option<f64>, Unmodelled> {
    let canonical = text.replace(',', ".");
    if canonical.is_empty() {
        return Ok(None);
    }
    let Some(mantissa_nonzero) = plain_decimal(&canonical) else {
        // Hexadecimal, infinity and NaN are numbers to strtod: not modelled. Anything
        // else leaves strtod text it cannot read, and OpenSlide sets nothing.
        let body = canonical
            .trim_start_matches(['+', '-'])
            .to_ascii_lowercase();
        if body.starts_with("0x") || body.starts_with("inf") || body.starts_with("nan") {
            return Err(Unmodelled);
        }
        return Ok(None);
    };
    let Ok(value) = canonical.parse::<f64>() else {
        return Err(Unmodelled);
    };
    if value.is_infinite() || (value == 0.0 && mantissa_nonzero) {
        return Ok(None); // ERANGE
    }
    if value != 0.0 && value.abs() < f64::MIN_POSITIVE {
        return Err(Unmodelled); // subnormal: whether strtod says ERANGE depends
    }
    Ok(Some(value))
}

/// Whether `s` is `[+-]digits[.digits][e[+-]digits]` with at least one mantissa digit;
/// if so, whether a mantissa digit is not zero.
fn plain_decimal(s: &str) -> Option<bool> {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut digits = 0;
    let mut nonzero = false;
    let mut points = 0;
    for c in mantissa.chars() {
        match c {
            '0' => digits += 1,
            '1'..='9' => {
                digits += 1;
                nonzero = true;
            }
            '.' => points += 1,
            _ => return None,
        }
    }
    if digits == 0 || points > 1 {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    Some(nonzero)
}

/// The generic driver's resolution: XResolution in ResolutionUnit (inch unless said),
/// as microns per pixel. Nothing when a value is missing, zero or the unit is neither
/// inch nor centimetre.
fn resolution_properties<R: Read + Seek>(
    r: &mut R,
    tiff: &TiffFile,
    dir: &Directory,
) -> Option<Vec<(&'static str, String)>> {
    let dividend = match dir.field_type(RESOLUTION_UNIT) {
        None => 25400.0,
        Some(3 | 4) => match tiff.first_uint(r, dir, RESOLUTION_UNIT).ok()? {
            Some(2) => 25400.0,
            Some(3) => 10000.0,
            Some(_) => return Some(Vec::new()),
            None => return None,
        },
        Some(_) => return None,
    };
    let mut values = [0.0; 2];
    for (value, tag) in values.iter_mut().zip([X_RESOLUTION, Y_RESOLUTION]) {
        match dir.field_type(tag) {
            None => return Some(Vec::new()),
            Some(FIELD_RATIONAL) => {}
            Some(_) => return None,
        }
        let (num, den) = tiff.first_rational(r, dir, tag).ok()??;
        // A zero denominator is an error to OpenSlide's TIFF reader, a zero resolution
        // is no resolution: either way, no property.
        if den == 0 || num == 0 {
            return Some(Vec::new());
        }
        *value = dividend / (f64::from(num) / f64::from(den));
    }
    Some(vec![(PROP_MPP_X, values[0].to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slide::SlideMetadata;

    fn aperio(description: &str) -> Option<SlideMetadata> {
        let props = aperio_properties(description.as_bytes())?;
        Some(SlideMetadata::from_properties(None, |name| {
            props
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        }))
    }

    #[test]
    fn aperio_fields_after_the_first_give_power_and_resolution() {
        let m = aperio("Aperio Image Library v10.0.51\r\n46920x33014 [0,100 46000x32914] (256x256) JPEG/RGB Q=30|AppMag = 20|StripeWidth = 2040|MPP = 0.4990").expect("modelled");
        assert_eq!(m.objective_power, Some(20.0));
        assert_eq!(m.mpp, Some(0.499));
        // The first field is never a pair, even when it looks like one.
        let m = aperio("MPP = 3|AppMag = 40").expect("modelled");
        assert_eq!((m.mpp, m.objective_power), (None, Some(40.0)));
    }

    #[test]
    fn aperio_values_read_as_openslide_reads_them() {
        let read = |v: &str| aperio(&format!("Aperio|MPP = {v}")).map(|m| m.mpp);
        assert_eq!(read("0,25"), Some(Some(0.25)), "a comma is a decimal point");
        assert_eq!(read("\x0b 1.5e-1 \t"), Some(Some(0.15)));
        assert_eq!(read("abc"), Some(None));
        assert_eq!(read("1e"), Some(None));
        assert_eq!(read(""), Some(None));
        assert_eq!(read("1e999"), Some(None), "overflow");
        assert_eq!(read("1e-999"), Some(None), "underflow");
        assert_eq!(read("0"), Some(Some(0.0)));
        assert_eq!(read("0x10"), None, "hexadecimal is strtod's, not modelled");
        assert_eq!(read("inf"), None);
        assert_eq!(read("1e-310"), None, "subnormal");
    }

    #[test]
    fn the_last_aperio_pair_of_a_key_wins() {
        let m = aperio("Aperio|MPP = 0.5|MPP = 0.25").expect("modelled");
        assert_eq!(m.mpp, Some(0.25));
        let m = aperio("Aperio|MPP = 0.5|MPP").expect("modelled");
        assert_eq!(m.mpp, Some(0.5), "a field without `=` changes nothing");
        let m = aperio("Aperio|MPP = 0.5\0|MPP = 9").expect("modelled");
        assert_eq!(m.mpp, Some(0.5), "the description ends at its first NUL");
        assert!(aperio_properties(b"Aperio|MPP = \xff").is_none());
    }
}

/// Every described slide must be what OpenSlide opens: the same vendor, levels and
/// metadata, on small TIFFs written for each rule and on CMU-1-Small-Region.
#[cfg(test)]
mod against_openslide {
    use super::*;
    use crate::slide::SlideMetadata;
    use crate::tiff::writer::{TiffWriter, Value};

    const T: u32 = 16;

    /// Extra tags of one directory, replacing the defaults.
    type Tags = Vec<(u16, Value)>;
    /// One directory to write: its size, whether it is tiled, its extra tags.
    type Dir = ((u32, u32), bool, Tags);

    /// One Deflate RGB directory of `w` x `h`: tiled (16-pixel tiles) or one strip.
    fn directory(
        writer: &mut TiffWriter<std::io::BufWriter<File>>,
        (w, h): (u32, u32),
        tiled: bool,
        extra: &[(u16, Value)],
    ) -> Vec<(u16, Value)> {
        let (tile_w, tile_h) = if tiled { (T, T) } else { (w, h) };
        let n = w.div_ceil(tile_w) * h.div_ceil(tile_h);
        // Deflate: a codec OpenSlide reads and the direct path leaves to it.
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, &vec![200u8; (tile_w * tile_h * 3) as usize]).unwrap();
        let bytes = z.finish().unwrap();
        let offsets: Vec<u64> = (0..n).map(|_| writer.append(&bytes).unwrap()).collect();
        let counts = vec![bytes.len() as u64; n as usize];
        let mut entries = vec![
            (tags::IMAGE_WIDTH, Value::Long(vec![w])),
            (tags::IMAGE_LENGTH, Value::Long(vec![h])),
            (tags::BITS_PER_SAMPLE, Value::Short(vec![8, 8, 8])),
            (tags::COMPRESSION, Value::Short(vec![8])),
            (tags::PHOTOMETRIC, Value::Short(vec![tags::PHOTOMETRIC_RGB])),
            (tags::SAMPLES_PER_PIXEL, Value::Short(vec![3])),
            (tags::PLANAR_CONFIG, Value::Short(vec![1])),
        ];
        if tiled {
            entries.extend([
                (tags::TILE_WIDTH, Value::Long(vec![T])),
                (tags::TILE_LENGTH, Value::Long(vec![T])),
                (tags::TILE_OFFSETS, writer.offsets_value(&offsets).unwrap()),
                (
                    tags::TILE_BYTE_COUNTS,
                    writer.offsets_value(&counts).unwrap(),
                ),
            ]);
        } else {
            entries.extend([
                (tags::STRIP_OFFSETS, writer.offsets_value(&offsets).unwrap()),
                (
                    tags::STRIP_BYTE_COUNTS,
                    writer.offsets_value(&counts).unwrap(),
                ),
                (tags::ROWS_PER_STRIP, Value::Long(vec![h])),
            ]);
        }
        for (tag, value) in extra {
            entries.retain(|(t, _)| t != tag);
            entries.push((*tag, value.clone()));
        }
        entries.sort_by_key(|(t, _)| *t);
        entries
    }

    /// A TIFF of the given directories: (size, tiled, extra tags).
    fn write(dir: &Path, name: &str, dirs: &[Dir]) -> std::path::PathBuf {
        let path = dir.join(name);
        let file = std::io::BufWriter::new(File::create(&path).unwrap());
        let mut writer = TiffWriter::new(file, false).unwrap();
        for (size, tiled, extra) in dirs {
            let entries = directory(&mut writer, *size, *tiled, extra);
            writer.add_directory(entries);
        }
        writer.finish().unwrap();
        path
    }

    fn ascii(s: &str) -> Value {
        Value::Ascii(s.into())
    }

    /// Compares the description with OpenSlide's own reading; `None` when not described.
    fn compare(path: &Path) -> Option<Description> {
        let tiff = TiffFile::read(&mut File::open(path).unwrap()).unwrap();
        let described = describe(path, &tiff)?;
        let slide = OpenSlide::new(path).expect("OpenSlide opens it");
        let levels: Vec<(u64, u64)> = slide
            .all_level_dimensions()
            .iter()
            .map(|s| (u64::from(s.w), u64::from(s.h)))
            .collect();
        assert_eq!(described.levels, levels, "{}", path.display());
        let ours = SlideMetadata::from_properties(Some(levels[0]), |n| described.property(n));
        let theirs =
            SlideMetadata::from_properties(Some(levels[0]), |n| slide.property_value(n).ok());
        assert_eq!(ours, theirs, "{}", path.display());
        Some(described)
    }

    #[test]
    fn generic_tiffs_are_described_as_openslide_opens_them() {
        let dir = tempfile::tempdir().unwrap();
        let res = |x: (u32, u32), y: (u32, u32)| {
            vec![
                (X_RESOLUTION, Value::Rational(vec![x])),
                (Y_RESOLUTION, Value::Rational(vec![y])),
            ]
        };
        let with_unit = |unit: u16, mut v: Vec<(u16, Value)>| {
            v.push((RESOLUTION_UNIT, Value::Short(vec![unit])));
            v
        };
        let cases: Vec<(&str, Tags, Option<f64>)> = vec![
            ("none.tif", vec![], None),
            ("inch.tif", res((96, 1), (96, 1)), Some(25400.0 / 96.0)),
            (
                "inch-said.tif",
                with_unit(2, res((254, 10), (1, 1))),
                Some(1000.0),
            ),
            (
                "cm.tif",
                with_unit(3, res((40000, 1), (40000, 1))),
                Some(0.25),
            ),
            ("unitless.tif", with_unit(1, res((96, 1), (96, 1))), None),
            ("zero.tif", res((0, 1), (96, 1)), None),
            ("zero-den.tif", res((96, 0), (96, 1)), None),
            (
                "no-y.tif",
                vec![(X_RESOLUTION, Value::Rational(vec![(96, 1)]))],
                None,
            ),
        ];
        for (name, extra, mpp) in cases {
            let path = write(dir.path(), name, &[((64, 48), true, extra)]);
            let d = compare(&path).unwrap_or_else(|| panic!("{name} is described"));
            assert_eq!(d.vendor, "generic-tiff");
            let got = d.property(PROP_MPP_X).map(|v| v.parse::<f64>().unwrap());
            assert_eq!(got, mpp, "{name}");
        }
        // Levels: the first directory, then tiled ones marked reduced, largest first.
        let reduced = || vec![(tags::NEW_SUBFILE_TYPE, Value::Long(vec![1]))];
        let path = write(
            dir.path(),
            "levels.tif",
            &[
                ((64, 64), true, vec![]),
                ((16, 16), true, reduced()),
                ((32, 32), true, reduced()),
                ((48, 48), true, vec![]),
                ((8, 8), false, reduced()),
            ],
        );
        let d = compare(&path).expect("described");
        assert_eq!(d.levels, vec![(64, 64), (32, 32), (16, 16)]);
        // A compression left to OpenSlide.
        let zstd = vec![(tags::COMPRESSION, Value::Short(vec![50000]))];
        let path = write(dir.path(), "zstd.tif", &[((64, 48), true, zstd)]);
        let tiff = TiffFile::read(&mut File::open(&path).unwrap()).unwrap();
        assert!(describe(&path, &tiff).is_none());
    }

    #[test]
    fn aperio_slides_are_described_as_openslide_opens_them() {
        let dir = tempfile::tempdir().unwrap();
        let depth = || (IMAGE_DEPTH, Value::Long(vec![1]));
        let cases: Vec<(&str, &str, Option<f64>, Option<f64>)> = vec![
            (
                "plain.svs",
                "Aperio Image Library v1\r\n64x48 (16x16) RGB|AppMag = 20|MPP = 0.4990",
                Some(0.499),
                Some(20.0),
            ),
            (
                "comma.svs",
                "Aperio Image|MPP = 0,25|AppMag=40",
                Some(0.25),
                Some(40.0),
            ),
            (
                "junk.svs",
                "Aperio Image|MPP = abc|AppMag = 1e999",
                None,
                None,
            ),
            (
                "last.svs",
                "Aperio Image|MPP = 0.5|MPP = 2|AppMag = 10",
                Some(2.0),
                Some(10.0),
            ),
            ("bare.svs", "Aperio Image|MPP = 0.5|MPP", Some(0.5), None),
            ("first.svs", "Aperio Image MPP = 0.5", None, None),
        ];
        for (name, description, mpp, power) in cases {
            let path = write(
                dir.path(),
                name,
                &[
                    (
                        (64, 48),
                        true,
                        vec![(tags::IMAGE_DESCRIPTION, ascii(description)), depth()],
                    ),
                    (
                        (12, 9),
                        false,
                        vec![(tags::IMAGE_DESCRIPTION, ascii("thumb")), depth()],
                    ),
                    (
                        (32, 24),
                        true,
                        vec![(tags::IMAGE_DESCRIPTION, ascii(description)), depth()],
                    ),
                    (
                        (16, 12),
                        false,
                        vec![(tags::NEW_SUBFILE_TYPE, Value::Long(vec![1]))],
                    ),
                ],
            );
            let d = compare(&path).unwrap_or_else(|| panic!("{name} is described"));
            assert_eq!(d.vendor, "aperio");
            assert_eq!(d.levels, vec![(64, 48), (32, 24)], "{name}");
            let number = |p| d.property(p).map(|v| v.parse::<f64>().unwrap());
            assert_eq!(
                (number(PROP_MPP_X), number(PROP_OBJECTIVE_POWER)),
                (mpp, power),
                "{name}"
            );
        }
        // A missing tile (the class of the SIGFPE and endless-loop poisons) is OpenSlide's.
        crate::fixtures::poison::write_corpus(&dir.path().join("poison")).unwrap();
        for name in [
            "signal-at-open-sigfpe.svs",
            "endless-loop-missing-tiles.svs",
            "leak-jpeg2000-missing-tile.svs",
        ] {
            let path = dir.path().join("poison").join(name);
            let tiff = TiffFile::read(&mut File::open(&path).unwrap()).unwrap();
            assert!(describe(&path, &tiff).is_none(), "{name}");
        }
        // What strtod reads its own way, and a depth the driver refuses, are OpenSlide's.
        for (name, extra) in [
            (
                "hex.svs",
                vec![(tags::IMAGE_DESCRIPTION, ascii("Aperio|MPP = 0x10"))],
            ),
            (
                "deep.svs",
                vec![
                    (tags::IMAGE_DESCRIPTION, ascii("Aperio|MPP = 1")),
                    (IMAGE_DEPTH, Value::Long(vec![2])),
                ],
            ),
        ] {
            let path = write(dir.path(), name, &[((64, 48), true, extra)]);
            let tiff = TiffFile::read(&mut File::open(&path).unwrap()).unwrap();
            assert!(describe(&path, &tiff).is_none(), "{name}");
        }
    }

    #[test]
    fn a_described_level_the_direct_path_declines_is_read_by_openslide() {
        use crate::slide::{PixelPath, ThumbnailOptions, make_thumbnail};
        let dir = tempfile::tempdir().unwrap();
        // Deflate tiles: described, but not the direct path's to decode.
        let cm = vec![
            (X_RESOLUTION, Value::Rational(vec![(40000, 1)])),
            (Y_RESOLUTION, Value::Rational(vec![(40000, 1)])),
            (RESOLUTION_UNIT, Value::Short(vec![3])),
        ];
        let path = write(dir.path(), "raw.tif", &[((64, 48), true, cm)]);
        let tiff = TiffFile::read(&mut File::open(&path).unwrap()).unwrap();
        assert!(describe(&path, &tiff).is_some());
        let thumbnail = make_thumbnail(&path, &ThumbnailOptions::default()).expect("read");
        assert_eq!(thumbnail.path, PixelPath::Openslide);
        assert_eq!((thumbnail.width, thumbnail.height), (64, 48));
        assert_eq!(thumbnail.metadata.vendor, "generic-tiff");
        assert_eq!(thumbnail.metadata.mpp, Some(0.25));
    }

    #[test]
    fn cmu_small_region_is_described_as_openslide_opens_it() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/CMU-1-Small-Region.svs");
        let d = compare(&path).expect("CMU-1-Small-Region is described");
        assert_eq!(d.levels, vec![(2220, 2967)]);
    }
}
