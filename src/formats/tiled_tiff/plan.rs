//! Which bytes of a TIFF slide OpenSlide and the engine read to make one thumbnail: the
//! [`ReadPlan`], made by [`read_plan`] from the bytes fetched so far. It parses slide
//! bytes, so it runs in the slide's worker process ([`crate::planning`]), never in the
//! service.
//!
//! A 1024-pixel thumbnail of a multi-gigabyte pyramid needs the directories and one
//! small level, so fetching only those bytes (and leaving the rest of a local sparse
//! file empty) is the difference between reading megabytes and gigabytes. The plan must
//! cover every byte any reader touches, or the thumbnail silently changes, so it is
//! deliberately generous about metadata and exact about pixels:
//!
//! - the header and every directory, with every value stored out of line (tile and strip
//!   arrays, descriptions, JPEG tables): libtiff and OpenSlide's own TIFF parser load
//!   these for every directory when the slide is opened;
//! - the start of strip or tile 0 of every directory: libtiff's JPEG codec reads it
//!   while loading a directory, to check the YCbCr subsampling;
//! - every tile of the smallest level, when they add up to at most 5 MiB: OpenSlide
//!   hashes them for `openslide.quickhash-1` (and skips the hash otherwise);
//! - all of tile 0 of every JPEG 2000 (Aperio) directory: OpenSlide test-decodes it;
//! - every tile of the level the engine will read ([`crate::slide::geometry::choose_level`]
//!   over the same dimensions OpenSlide reports);
//! - for Aperio, every tile of a larger level that OpenSlide decodes to paint a missing
//!   (zero-length) tile of that level, recursively ([`crate::tiff::missing_tiles`]).
//!
//! Planning is bounded by the bytes present, not by what the directories declare:
//! values stored out of line that several directories share (the same offset) are
//! planned once, directories that share one tile array are expanded once, and a plan
//! expands at most [`MAX_PLANNED_TILES`] tile entries in all. Past that the slide is
//! [`PlanError::Unplannable`] (downloaded whole, within the fetch's own size limits),
//! not refused here: the planner only decides which bytes to fetch, and the engine,
//! which has its own bounds (levels, declared pixels, bytes referenced), gives the
//! slide its one failure kind from the bytes it then holds.
//!
//! Only layouts whose reads are modelled here are planned: Aperio and generic tiled
//! TIFF, the two OpenSlide drivers whose levels are plain tiled directories, and
//! Hamamatsu NDPI (one JPEG stream per level, [`crate::formats::ndpi::plan`]). Anything else
//! (Ventana, Philips, Leica, Trestle, strip-only files) is [`PlanError::Unplannable`]
//! and is downloaded whole.
//!
//! The TIFF structure itself (directories, tags, tile locations) is [`crate::tiff`]'s;
//! this module decides which of its bytes a thumbnail needs.

use std::io::{Read, Seek};

use crate::planning::partial::Missing;
use crate::slide::geometry::{choose_level, thumbnail_dims};
use crate::storage::ranged::ranges::ByteRange;
// Aperio's JPEG 2000 compressions: OpenSlide decodes tile 0 of each level at open.
use crate::formats::ndpi::file::{NdpiError, NdpiFile};
use crate::slide::jp2k_guard::APERIO_JP2K;
use crate::tiff::missing_tiles;
use crate::tiff::reader::{Directory, TiffError, TiffFile};
use crate::tiff::tags;

/// libtiff's subsampling check stops at the JPEG start-of-frame marker, a few hundred
/// bytes in; this bounds the prefix of strip 0 we provide for it.
const FIRST_STRILE_PREFIX: u64 = 64 * 1024;
/// OpenSlide skips `quickhash-1` (and so never reads the smallest level's tiles at open)
/// when those tiles add up to more than this.
const QUICKHASH_MAX_BYTES: u64 = 5 << 20;
/// Most tile entries (over every tile array the plan expands) a plan may expand: a
/// 1M x 1M pixel level of 512-pixel tiles has 3.8 M. Each costs 16 bytes of offsets and
/// counts and 16 of range, so the plan stays well under 1 GiB of a worker's memory.
pub const MAX_PLANNED_TILES: u64 = 4 * 1024 * 1024;
/// Compressions whose codecs read only the tile or strip bytes (and the JPEG tables):
/// none, LZW, JPEG, Deflate (two codes), and Aperio's JPEG 2000. Old-style JPEG (6)
/// reads tables from offsets stored in other tags, so it is not planned.
const PLANNED_COMPRESSIONS: [u16; 7] = [1, 5, 7, 8, 32946, 33003, 33005];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Aperio,
    GenericTiff,
    /// Hamamatsu NDPI, planned by [`crate::formats::ndpi::plan`].
    Ndpi,
}

/// The bytes one thumbnail needs.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub flavour: Flavour,
    /// Index of the level to be read, counted as OpenSlide counts (largest first).
    pub level: usize,
    /// Wanted byte ranges, unsorted and possibly overlapping.
    pub ranges: Vec<ByteRange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The planner has to see these bytes before it can decide: fetch them, plan again.
    Need(Vec<ByteRange>),
    /// Not a layout the planner models (the reason says why): download the whole object.
    Unplannable(String),
}

/// Collects every missing read of one planning pass, so that the fetcher gets them in
/// one batch instead of one round trip each.
#[derive(Default)]
struct Needs(Vec<ByteRange>);

impl Needs {
    fn take<T>(&mut self, result: Result<T, TiffError>) -> Result<Option<T>, PlanError> {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e) => match missing(&e) {
                Some(range) => {
                    self.0.push(range);
                    Ok(None)
                }
                None => Err(PlanError::Unplannable(e.to_string())),
            },
        }
    }

    fn settle(self) -> Result<(), PlanError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(PlanError::Need(self.0))
        }
    }
}

fn missing(e: &TiffError) -> Option<ByteRange> {
    match e {
        TiffError::Io(io) => Missing::of(io).map(|m| ByteRange::at(m.offset, m.len)),
        _ => None,
    }
}

/// One planning pass: the reads for a thumbnail whose longest side is `max_size`. `r` is
/// usually a [`crate::planning::partial::PartialObject`] or a [`crate::planning::held::HeldFile`]; on a complete file the plan is final at once.
pub fn read_plan<R: Read + Seek>(
    r: &mut R,
    max_size: u32,
    max_slide_pixels: u64,
) -> Result<ReadPlan, PlanError> {
    plan_within(r, max_size, max_slide_pixels, MAX_PLANNED_TILES)
}

/// [`read_plan`] with the tile budget as a parameter (tests use small ones).
fn plan_within<R: Read + Seek>(
    r: &mut R,
    max_size: u32,
    max_slide_pixels: u64,
    max_tiles: u64,
) -> Result<ReadPlan, PlanError> {
    // NDPI first: its 8-byte directory links are not classic TIFF, and past 4 GiB the
    // classic reader would follow them to the wrong places (or fail).
    match NdpiFile::read(r) {
        Err(NdpiError::NotNdpi) => {}
        Err(NdpiError::Io(e)) if Missing::of(&e).is_some() => {
            let m = Missing::of(&e).map(|m| ByteRange::at(m.offset, m.len));
            return Err(PlanError::Need(m.into_iter().collect()));
        }
        _ => return crate::formats::ndpi::plan::read_plan(r, max_size, max_slide_pixels),
    }
    let tiff = TiffFile::read(r).map_err(|e| match missing(&e) {
        Some(range) => PlanError::Need(vec![range]),
        None => PlanError::Unplannable(e.to_string()),
    })?;
    let flavour = flavour(r, &tiff)?;

    if let Some(dir) = tiff
        .directories
        .iter()
        .find(|d| !PLANNED_COMPRESSIONS.contains(&d.compression))
    {
        return Err(PlanError::Unplannable(format!(
            "compression {} is not planned",
            dir.compression
        )));
    }

    let mut needs = Needs::default();
    let mut ranges = vec![ByteRange::at(0, 16)];
    // Out-of-line values shared by several directories are planned once.
    let mut out_of_line = std::collections::HashSet::new();
    for dir in &tiff.directories {
        ranges.push(ByteRange::at(dir.ifd_offset, dir.ifd_len));
        for (o, l) in dir.out_of_line() {
            if out_of_line.insert((o, l)) {
                ranges.push(ByteRange::at(o, l));
            }
        }
        let (offsets, counts) = if dir.is_tiled() {
            (tags::TILE_OFFSETS, tags::TILE_BYTE_COUNTS)
        } else {
            (tags::STRIP_OFFSETS, tags::STRIP_BYTE_COUNTS)
        };
        let offset = needs.take(tiff.first_uint(r, dir, offsets))?.flatten();
        let count = needs.take(tiff.first_uint(r, dir, counts))?.flatten();
        if let (Some(offset), Some(count)) = (offset, count) {
            let len = if APERIO_JP2K.contains(&dir.compression) {
                count
            } else {
                count.min(FIRST_STRILE_PREFIX)
            };
            ranges.push(ByteRange::at(offset, len));
        }
    }

    let levels = openslide_levels(flavour, &tiff);
    let Some(level0) = levels.first() else {
        return Err(PlanError::Unplannable("no tiled directory".into()));
    };
    let dims: Vec<(u64, u64)> = levels.iter().map(|d| (d.width, d.height)).collect();
    let level = choose_level(&dims, thumbnail_dims(level0.width, level0.height, max_size));
    let bomb = tiff
        .directories
        .iter()
        .any(|d| d.width.saturating_mul(d.height) > max_slide_pixels);
    // A decompression bomb is refused by the engine from its directories alone: fetch
    // no pixels for it.
    if !bomb {
        let mut tiles = TileBudget::new(max_tiles);
        // The direct JPEG path finds its directory by size among all tiled ones, so
        // every tiled directory of the chosen level's size is read (normally just one).
        let chosen = tiff
            .directories
            .iter()
            .filter(|d| d.is_tiled() && (d.width, d.height) == dims[level]);
        for dir in chosen {
            if let Some(found) = tiles.expand(&mut needs, r, &tiff, dir)? {
                ranges.extend(found.into_iter().map(|(_, range)| range));
            }
        }
        // OpenSlide hashes the last level's tiles for quickhash-1, unless they are big.
        let smallest = levels[levels.len() - 1];
        if let Some(found) = tiles.expand(&mut needs, r, &tiff, smallest)?
            && found.iter().map(|(_, t)| t.len()).sum::<u64>() <= QUICKHASH_MAX_BYTES
        {
            ranges.extend(found.into_iter().map(|(_, range)| range));
        }
        // Aperio paints missing tiles of the level read from the larger levels.
        if flavour == Flavour::Aperio
            && let Some(painted) = needs.take(missing_tiles::painted_from(r, &tiff, level))?
        {
            for p in painted {
                let Some(dir) = tiff.directories.get(p.directory) else {
                    continue;
                };
                if let Some(found) = tiles.expand(&mut needs, r, &tiff, dir)? {
                    let wanted: std::collections::HashSet<u64> = p.tiles.into_iter().collect();
                    ranges.extend(
                        found
                            .into_iter()
                            .filter(|(t, _)| wanted.contains(t))
                            .map(|(_, range)| range),
                    );
                }
            }
        }
    }
    needs.settle()?;
    // Tiles that share their bytes are fetched once.
    ranges.sort_unstable_by_key(|r| (r.start, r.end));
    ranges.dedup();
    Ok(ReadPlan {
        flavour,
        level,
        ranges,
    })
}

/// The tile arrays one plan expands: each shared array once, and at most a budget of
/// entries in all.
struct TileBudget {
    left: u64,
    max: u64,
    /// The (TileOffsets, TileByteCounts) value offsets already expanded.
    seen: std::collections::HashSet<(Option<u64>, Option<u64>)>,
}

impl TileBudget {
    fn new(max: u64) -> TileBudget {
        TileBudget {
            left: max,
            max,
            seen: Default::default(),
        }
    }

    /// The non-empty tiles of `dir` (tile number and bytes), `Ok(None)` when its arrays
    /// are still to be fetched or were expanded already (through another directory
    /// that shares them); unplannable past the budget.
    fn expand<R: Read + Seek>(
        &mut self,
        needs: &mut Needs,
        r: &mut R,
        tiff: &TiffFile,
        dir: &Directory,
    ) -> Result<Option<Vec<(u64, ByteRange)>>, PlanError> {
        // Every directory's grid is checked against the arrays it names, shared or
        // not, so whether a plan succeeds never depends on which directory happened to
        // expand a shared array first (or on which bytes are held yet).
        let entries = dir
            .tile_entries()
            .map_err(|e| PlanError::Unplannable(e.to_string()))?;
        let key = (
            dir.value_offset(tags::TILE_OFFSETS),
            dir.value_offset(tags::TILE_BYTE_COUNTS),
        );
        if key.0.is_some() && self.seen.contains(&key) {
            return Ok(None);
        }
        if entries > self.left {
            return Err(PlanError::Unplannable(format!(
                "the plan would expand more than {} tile entries",
                self.max
            )));
        }
        let Some((offsets, counts)) = needs.take(tiff.tile_locations(r, dir))? else {
            return Ok(None);
        };
        self.left -= entries;
        self.seen.insert(key);
        Ok(Some(
            offsets
                .iter()
                .zip(&counts)
                .enumerate()
                .filter(|(_, (_, c))| **c > 0)
                .map(|(t, (o, c))| (t as u64, ByteRange::at(*o, *c)))
                .collect(),
        ))
    }
}

/// The directories OpenSlide reports as pyramid levels, in its order: the Aperio driver
/// keeps directory order, the generic driver sorts by width, largest first (a stable
/// sort).
pub fn openslide_levels(flavour: Flavour, tiff: &TiffFile) -> Vec<&Directory> {
    let mut levels: Vec<&Directory> = tiff
        .directories
        .iter()
        .enumerate()
        .filter(|(i, d)| is_level(flavour, *i, d))
        .map(|(_, d)| d)
        .collect();
    if flavour == Flavour::GenericTiff {
        levels.sort_by_key(|d| std::cmp::Reverse(d.width));
    }
    levels
}

/// Which directories OpenSlide 3.4 takes as pyramid levels: every tiled one for Aperio;
/// for generic TIFF the first, and later tiled ones marked reduced-resolution.
fn is_level(flavour: Flavour, index: usize, dir: &Directory) -> bool {
    const REDUCED_IMAGE: u32 = 1;
    dir.is_tiled()
        && match flavour {
            Flavour::Aperio => true,
            Flavour::GenericTiff => index == 0 || dir.subfile_type & REDUCED_IMAGE != 0,
            // NDPI levels are strips, planned by `ndpi_plan`, never here.
            Flavour::Ndpi => false,
        }
}

/// The OpenSlide driver that will open this file, when it is one the planner models.
/// The checks mirror OpenSlide's own detection order: vendors that put their marks in
/// the first directory are recognised before the generic driver is considered.
pub fn flavour<R: Read + Seek>(r: &mut R, tiff: &TiffFile) -> Result<Flavour, PlanError> {
    let first = &tiff.directories[0];
    if first.has_tag(tags::XMP) {
        return Err(PlanError::Unplannable("XMP metadata (Ventana)".into()));
    }
    if !first.is_tiled() {
        return Err(PlanError::Unplannable(
            "the first directory is not tiled".into(),
        ));
    }
    let mut needs = Needs::default();
    let description = needs
        .take(tiff.read_ascii(r, first, tags::IMAGE_DESCRIPTION))?
        .flatten();
    let software = needs
        .take(tiff.read_ascii(r, first, tags::SOFTWARE))?
        .flatten();
    needs.settle()?;
    let description = description.unwrap_or_default();
    // OpenSlide tries Trestle before Aperio.
    if software
        .as_deref()
        .is_some_and(|s| s.starts_with("MedScan"))
    {
        return Err(PlanError::Unplannable("Trestle".into()));
    }
    if description.starts_with("Aperio") {
        return Ok(Flavour::Aperio);
    }
    if description.trim_start().starts_with('<') {
        return Err(PlanError::Unplannable(
            "XML image description (Philips, Leica or OME)".into(),
        ));
    }
    Ok(Flavour::GenericTiff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planning::partial::PartialObject;
    use bytes::Bytes;
    use std::io::Cursor;

    #[test]
    fn an_empty_cache_asks_for_the_header() {
        let mut partial = PartialObject::new(1_000_000);
        assert_eq!(
            read_plan(&mut partial, 1024, u64::MAX).unwrap_err(),
            // NDPI is detected first, and its header (with an 8-byte directory link)
            // is 12 bytes; the fetch reads a whole planning block around it anyway.
            PlanError::Need(vec![ByteRange::at(0, 12)])
        );
    }

    #[test]
    fn a_file_that_is_not_a_tiff_is_left_to_the_whole_download() {
        let mut partial = PartialObject::new(4);
        partial.insert(0, Bytes::from_static(b"PK\x03\x04"));
        assert!(matches!(
            read_plan(&mut partial, 1024, u64::MAX),
            Err(PlanError::Unplannable(_))
        ));
        assert!(matches!(
            read_plan(&mut Cursor::new(Vec::<u8>::new()), 1024, u64::MAX),
            Err(PlanError::Unplannable(_))
        ));
    }

    /// A one-tile TIFF with the given compression and description.
    fn one_tile(compression: u16, description: &str) -> Vec<u8> {
        use crate::tiff::writer::{TiffWriter, Value};
        let mut w = TiffWriter::new(Cursor::new(Vec::new()), false).unwrap();
        let at = w.append(&[0u8; 64]).unwrap();
        w.add_directory(vec![
            (tags::IMAGE_WIDTH, Value::Long(vec![16])),
            (tags::IMAGE_LENGTH, Value::Long(vec![16])),
            (tags::COMPRESSION, Value::Short(vec![compression])),
            (tags::IMAGE_DESCRIPTION, Value::Ascii(description.into())),
            (tags::TILE_WIDTH, Value::Long(vec![16])),
            (tags::TILE_LENGTH, Value::Long(vec![16])),
            (tags::TILE_OFFSETS, Value::Long(vec![at as u32])),
            (tags::TILE_BYTE_COUNTS, Value::Long(vec![64])),
        ]);
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn old_style_jpeg_and_trestle_are_left_to_the_whole_download() {
        let ojpeg = one_tile(6, "Aperio Image Library");
        assert!(matches!(
            read_plan(&mut Cursor::new(ojpeg), 1024, u64::MAX),
            Err(PlanError::Unplannable(reason)) if reason.contains("compression 6")
        ));
        let aperio = one_tile(7, "Aperio Image Library");
        let planned = read_plan(&mut Cursor::new(aperio), 1024, u64::MAX).expect("planned");
        assert_eq!(planned.flavour, Flavour::Aperio);
        assert!(
            planned.ranges.contains(&ByteRange::at(8, 64)),
            "the tile is read"
        );
    }

    #[test]
    fn a_directory_pointing_past_the_end_is_unplannable_not_a_loop() {
        // Classic little-endian header whose first directory lies past the end.
        let mut bytes = b"II*\x00".to_vec();
        bytes.extend_from_slice(&1_000u32.to_le_bytes());
        assert!(matches!(
            read_plan(&mut Cursor::new(bytes), 1024, u64::MAX),
            Err(PlanError::Unplannable(_))
        ));
    }

    #[test]
    fn directories_sharing_one_tile_array_are_expanded_once() {
        // 64 levels of 4096 tiles sharing one array: 4096 entries to expand, not
        // 262144 (the budget of 3 levels' worth would refuse the latter).
        let bytes = crate::fixtures::poison::shared_tile_arrays(64, 1024, 16);
        let plan = plan_within(&mut Cursor::new(bytes), 1024, u64::MAX, 3 * 4096)
            .expect("planned within the budget");
        assert_eq!(plan.flavour, Flavour::Aperio);
        // Header, 64 directories, the shared array and description once, the shared
        // tile once.
        assert!(plan.ranges.len() < 64 + 8, "{} ranges", plan.ranges.len());
    }

    #[test]
    fn every_directory_sharing_a_tile_array_must_fit_it() {
        // Two levels sharing one 4096-entry array; the second claims 32 px wide tiles,
        // a 32 x 64 grid the array does not fit. Whichever directory is expanded first,
        // the slide is unplannable (it was planned once, and refused once the shared
        // array was not held yet: the answer depended on the bytes held).
        let mut bytes = crate::fixtures::poison::shared_tile_arrays(2, 1024, 16);
        let first_ifd = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let second_ifd = first_ifd + 2 + 12 * 11 + 4;
        let tile_width_value = second_ifd + 2 + 12 * 7 + 8;
        bytes[tile_width_value..tile_width_value + 4].copy_from_slice(&32u32.to_le_bytes());
        match plan_within(&mut Cursor::new(bytes), 1024, u64::MAX, 1 << 20) {
            Err(PlanError::Unplannable(reason)) => {
                assert!(reason.contains("32 x 64 grid"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_plan_past_the_tile_budget_is_unplannable() {
        let bytes = crate::fixtures::poison::shared_tile_arrays(1, 1024, 16);
        assert!(plan_within(&mut Cursor::new(bytes.clone()), 1024, u64::MAX, 4096).is_ok());
        match plan_within(&mut Cursor::new(bytes), 1024, u64::MAX, 4095) {
            Err(PlanError::Unplannable(reason)) => {
                assert!(reason.contains("4095 tile entries"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tiles_painted_into_a_missing_tile_are_planned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leak.svs");
        crate::fixtures::poison::write_leak_through_missing_tile(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut c = Cursor::new(bytes);
        let tiff = TiffFile::read(&mut c).unwrap();
        let (offsets, counts) = tiff.tile_locations(&mut c, &tiff.directories[0]).unwrap();
        let plan = read_plan(&mut c, 1024, u64::MAX).expect("planned");
        assert_eq!(plan.level, 1, "the 1024 x 512 level is read");
        assert!(
            plan.ranges.contains(&ByteRange::at(offsets[1], counts[1])),
            "level 0's tile 1, painted into level 1's missing tile, is fetched"
        );
    }
}
