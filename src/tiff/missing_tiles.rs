//! Which tiles of the larger levels OpenSlide 3.4's Aperio driver decodes to read one
//! level that has missing tiles.
//!
//! Aperio slides may hold zero-length ("missing") tiles. OpenSlide 3.4.1
//! (`openslide-vendor-aperio.c`) marks them missing, then marks the covering tile of
//! the next smaller level missing too (`propagate_missing_tile`: tile column and row
//! divided by the rounded ratio of the two levels' tile grids), and paints a missing
//! tile from the next larger level, recursively (`render_missing_tile`: the region
//! from `((col * tw - 1) / rel, (row * th - 1) / rel)` of `ceil((tw + 2) / rel)` x
//! `ceil((th + 2) / rel)` pixels, `rel` the ratio of the two levels' downsamples,
//! through the simple grid's tile range: truncated start, ceiled end, clamped). So
//! reading one level can decode tiles of every larger level. Whatever checks the tiles
//! OpenSlide decodes (the JPEG 2000 guard) and whatever fetches them (the ranged
//! planner) must see those tiles too; [`painted_from`] lists them, by the same
//! arithmetic. The walk is bounded: each level's tiles are visited at most once
//! (bit sets), and the levels' grids together may hold at most [`MAX_TILES`] tiles.

use std::io::{Read, Seek};

use super::{Directory, TiffError, TiffFile};

/// Most tiles, over all the levels from level 0 to the level read, that the walk
/// will consider (the bit sets and the byte-count arrays it loads are this big).
pub const MAX_TILES: u64 = 16 * 1024 * 1024;

/// Tiles of one larger level that painting the read level's missing tiles decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Painted {
    /// Index of the directory in the file.
    pub directory: usize,
    /// Tile numbers (row-major) with data, in increasing order.
    pub tiles: Vec<u64>,
}

/// A fixed-size set of tile numbers.
#[derive(Clone)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: u64) -> Bits {
        Bits(vec![0; n.div_ceil(64) as usize])
    }
    fn set(&mut self, i: u64) {
        if let Some(w) = self.0.get_mut((i / 64) as usize) {
            *w |= 1 << (i % 64);
        }
    }
    fn get(&self, i: u64) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    fn ones(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().enumerate().flat_map(|(k, &w)| {
            (0..64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| k as u64 * 64 + b)
        })
    }
}

/// One Aperio level: its directory and grid.
struct Level<'a> {
    directory: usize,
    dir: &'a Directory,
    across: u64,
    down: u64,
    tile: (u64, u64),
}

/// The tiles of levels larger than `read_level` (an index among the tiled
/// directories, which are the Aperio driver's levels in file order) that OpenSlide
/// decodes to paint the read level's missing tiles; empty when none is missing.
pub fn painted_from<R: Read + Seek>(
    r: &mut R,
    tiff: &TiffFile,
    read_level: usize,
) -> Result<Vec<Painted>, TiffError> {
    let levels: Vec<Level> = tiff
        .directories
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_tiled())
        .take(read_level.saturating_add(1))
        .filter_map(|(directory, dir)| {
            let (across, down) = dir.tile_grid()?;
            let tile = (u64::from(dir.tile_width?), u64::from(dir.tile_height?));
            Some(Level {
                directory,
                dir,
                across,
                down,
                tile,
            })
        })
        .collect();
    if read_level == 0 || levels.len() != read_level + 1 {
        return Ok(Vec::new());
    }
    let tiles = levels.iter().try_fold(0u64, |sum, l| {
        sum.checked_add(l.across.checked_mul(l.down)?)
    });
    if tiles.is_none_or(|n| n > MAX_TILES) {
        return Err(TiffError::Malformed(format!(
            "levels 0 to {read_level} hold more than {MAX_TILES} tiles together"
        )));
    }

    // Missing tiles per level, with OpenSlide's propagation to smaller levels.
    let mut missing: Vec<Bits> = Vec::with_capacity(levels.len());
    let mut empty: Vec<Bits> = Vec::with_capacity(levels.len());
    for (i, level) in levels.iter().enumerate() {
        let (_, counts) = tiff.tile_locations(r, level.dir)?;
        let mut m = Bits::new(level.across * level.down);
        for (t, _) in counts.iter().enumerate().filter(|(_, c)| **c == 0) {
            m.set(t as u64);
        }
        empty.push(m.clone());
        if let Some(prev) = i.checked_sub(1).map(|p| &levels[p]) {
            // `round((double) prev_across / across)`; 0 makes OpenSlide divide by zero
            // at open, which no reading follows.
            let concat = |a: u64, b: u64| (a as f64 / b as f64).round() as u64;
            let (cx, cy) = (
                concat(prev.across, level.across),
                concat(prev.down, level.down),
            );
            if cx > 0 && cy > 0 {
                for t in missing[i - 1].ones() {
                    let (col, row) = ((t % prev.across) / cx, (t / prev.across) / cy);
                    if col < level.across && row < level.down {
                        m.set(row * level.across + col);
                    }
                }
            }
        }
        missing.push(m);
    }

    // OpenSlide's downsample of a level: the mean of the two axes' ratios to level 0.
    let (w0, h0) = (levels[0].dir.width as f64, levels[0].dir.height as f64);
    let downsample = |l: &Level| (w0 / l.dir.width as f64 + h0 / l.dir.height as f64) / 2.0;

    let mut out = Vec::new();
    let mut frontier = missing[read_level].clone();
    for i in (1..=read_level).rev() {
        let (level, prev) = (&levels[i], &levels[i - 1]);
        let rel = downsample(prev) / downsample(level);
        if !(rel.is_finite() && rel > 0.0) {
            break;
        }
        let mut reached = Bits::new(prev.across * prev.down);
        let (tw, th) = (level.tile.0 as f64, level.tile.1 as f64);
        let range = |start: f64, len: f64, tile: u64, n: u64| {
            let first = (start / tile as f64) as i64;
            let end = ((start + len) / tile as f64).ceil() as i64;
            (first.max(0) as u64)..(end.max(0) as u64).min(n)
        };
        for t in frontier.ones() {
            let (col, row) = ((t % level.across) as f64, (t / level.across) as f64);
            let (x, y) = ((col * tw - 1.0) / rel, (row * th - 1.0) / rel);
            // OpenSlide passes these as int32 sizes.
            let w = ((tw + 2.0) / rel).ceil() as i32 as f64;
            let h = ((th + 2.0) / rel).ceil() as i32 as f64;
            for ty in range(y, h, prev.tile.1, prev.down) {
                for tx in range(x, w, prev.tile.0, prev.across) {
                    reached.set(ty * prev.across + tx);
                }
            }
        }
        let tiles: Vec<u64> = reached.ones().filter(|&t| !missing[i - 1].get(t)).collect();
        // A propagated-missing tile is painted too, but an empty tile (no bytes) is
        // never decoded even where OpenSlide would: there is nothing to decode.
        let tiles: Vec<u64> = tiles
            .into_iter()
            .filter(|&t| !empty[i - 1].get(t))
            .collect();
        if !tiles.is_empty() {
            out.push(Painted {
                directory: prev.directory,
                tiles,
            });
        }
        let mut next = Bits::new(prev.across * prev.down);
        for t in reached.ones().filter(|&t| missing[i - 1].get(t)) {
            next.set(t);
        }
        frontier = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiff::tags;
    use crate::tiff::writer::{TiffWriter, Value};
    use std::io::Cursor;

    /// Tiled directories of (width, height, tile, byte counts); every tile with bytes
    /// points at the same 16 bytes.
    fn slide(levels: &[(u32, u32, u32, Vec<u32>)]) -> Vec<u8> {
        let mut w = TiffWriter::new(Cursor::new(Vec::new()), false).unwrap();
        let at = w.append(&[1u8; 16]).unwrap() as u32;
        for (width, height, tile, counts) in levels {
            w.add_directory(vec![
                (tags::IMAGE_WIDTH, Value::Long(vec![*width])),
                (tags::IMAGE_LENGTH, Value::Long(vec![*height])),
                (tags::COMPRESSION, Value::Short(vec![33005])),
                (tags::TILE_WIDTH, Value::Long(vec![*tile])),
                (tags::TILE_LENGTH, Value::Long(vec![*tile])),
                (
                    tags::TILE_OFFSETS,
                    Value::Long(counts.iter().map(|c| if *c > 0 { at } else { 0 }).collect()),
                ),
                (tags::TILE_BYTE_COUNTS, Value::Long(counts.clone())),
            ]);
        }
        w.finish().unwrap().into_inner()
    }

    fn painted(bytes: Vec<u8>, read_level: usize) -> Vec<Painted> {
        let mut c = Cursor::new(bytes);
        let tiff = TiffFile::read(&mut c).unwrap();
        painted_from(&mut c, &tiff, read_level).unwrap()
    }

    #[test]
    fn a_missing_tile_is_painted_from_the_tiles_of_the_larger_level_around_it() {
        // Level 0: 4 x 1 tiles of 256; level 1 (2x smaller): 2 x 1 tiles of 256, tile
        // 1 missing. Its region in level 0 is x = (256 - 1) * 2 = 510, 516 wide: tiles
        // 1 and 2 (from 510 / 256 = 1 to ceil(1026 / 256) = 5, clamped to 4 -> 1..4).
        let bytes = slide(&[(1024, 256, 256, vec![16; 4]), (512, 128, 256, vec![16, 0])]);
        assert_eq!(
            painted(bytes, 1),
            vec![Painted {
                directory: 0,
                tiles: vec![1, 2, 3]
            }]
        );
    }

    #[test]
    fn painting_recurses_through_missing_tiles_and_stops_at_level_0() {
        // Level 0 tile 1 is missing as well: it is not decoded, the others are.
        let bytes = slide(&[
            (1024, 256, 256, vec![16, 0, 16, 16]),
            (512, 128, 256, vec![16, 0]),
            (256, 64, 256, vec![0]),
        ]);
        // Level 0's missing tile 1 propagates to level 1 tile 0 and level 2 tile 0:
        // reading level 2 paints its tile 0 from level 1's tiles 0 and 1 (both
        // missing), which are painted from level 0: every tile but the missing one.
        assert_eq!(
            painted(bytes, 2),
            vec![Painted {
                directory: 0,
                tiles: vec![0, 2, 3]
            }]
        );
    }

    #[test]
    fn nothing_is_painted_when_no_tile_is_missing() {
        let bytes = slide(&[(512, 256, 256, vec![16; 2]), (256, 128, 256, vec![16])]);
        assert_eq!(painted(bytes, 1), vec![]);
    }
}
