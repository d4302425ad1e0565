//! Aperio JPEG 2000 tiles checked before OpenSlide decodes them.
//!
//! OpenSlide 3.4 (and its main branch: "TODO more checks?") compares only a tile
//! codestream's far corner and component count with the TIFF tile, then copies the
//! decoded component planes as if each were tile-sized. A codestream whose image area
//! starts inside the tile, or whose subsampling does not divide the tile, has smaller
//! planes, and the copy reads past them: a crash if the read leaves the mapping, and
//! otherwise another slide's pixels in this one's thumbnail, depending on the worker's
//! heap. Neither is a safe outcome, so every header OpenSlide will decode is checked
//! against what its copy loop assumes: the tile 0 it test-decodes at open, every tile
//! of the level the thumbnail reads, and every tile of a larger level that OpenSlide
//! decodes to paint one of that level's missing (zero-length) tiles, recursively
//! ([`crate::tiff::missing_tiles`]): those are decoded as surely as the level's own.
//! A header costs one 64-byte read.

use std::io::{Read, Seek, SeekFrom};

use crate::tiff::{Directory, TiffFile, missing_tiles};

/// Aperio's JPEG 2000 compressions (YCbCr and RGB); only Aperio slides carry them and
/// only OpenSlide's Aperio driver decodes them.
pub const APERIO_JP2K: [u16; 2] = [33003, 33005];

const SOC: [u8; 2] = [0xFF, 0x4F];
const SIZ: [u8; 2] = [0xFF, 0x51];
/// SOC, the SIZ marker and SIZ's fixed part (38 bytes from Lsiz to Csiz).
const FIXED: usize = 4 + 38;
/// Enough for the fixed part and three components (3 bytes each).
const HEADER_BYTES: u64 = 64;

/// Which tiles of a JPEG 2000 directory OpenSlide is about to decode.
#[derive(Debug, Clone, Copy)]
pub enum Tiles {
    /// Tile 0 of every JPEG 2000 directory: OpenSlide's open-time test decode.
    First,
    /// Every tile of the directories of this size (the level being read, `level` among
    /// the tiled directories) and every tile of a larger level painted into it.
    All {
        width: u64,
        height: u64,
        level: usize,
    },
}

/// Checks the headers of the tiles `which` selects; the error says which tile and why.
pub fn check_tiles<R: Read + Seek>(
    file: &mut R,
    tiff: &TiffFile,
    which: Tiles,
) -> Result<(), String> {
    for (index, dir) in tiff.directories.iter().enumerate() {
        if !APERIO_JP2K.contains(&dir.compression) || !dir.is_tiled() {
            continue;
        }
        let count = match which {
            Tiles::First => 1,
            Tiles::All { width, height, .. } if (dir.width, dir.height) == (width, height) => {
                u64::MAX
            }
            Tiles::All { .. } => continue,
        };
        check_directory(file, tiff, dir, &mut (0..count))
            .map_err(|why| format!("directory {index}: {why}"))?;
    }
    let any_jp2k = tiff
        .directories
        .iter()
        .any(|d| APERIO_JP2K.contains(&d.compression));
    if let Tiles::All { level, .. } = which
        && any_jp2k
    {
        let painted = missing_tiles::painted_from(file, tiff, level).map_err(|e| e.to_string())?;
        for p in painted {
            let Some(dir) = tiff.directories.get(p.directory) else {
                continue;
            };
            if !APERIO_JP2K.contains(&dir.compression) {
                continue;
            }
            check_directory(file, tiff, dir, &mut p.tiles.iter().copied()).map_err(|why| {
                format!(
                    "directory {} (painted into a missing tile of the level read): {why}",
                    p.directory
                )
            })?;
        }
    }
    Ok(())
}

/// Checks the headers of the `tiles` (numbers, increasing) of one directory.
fn check_directory<R: Read + Seek>(
    file: &mut R,
    tiff: &TiffFile,
    dir: &Directory,
    tiles: &mut dyn Iterator<Item = u64>,
) -> Result<(), String> {
    let (Some(tw), Some(th)) = (dir.tile_width, dir.tile_height) else {
        return Ok(());
    };
    let (offsets, counts) = tiff.tile_locations(file, dir).map_err(|e| e.to_string())?;
    let mut header = Vec::with_capacity(HEADER_BYTES as usize);
    for tile in tiles {
        let (Some(&offset), Some(&len)) = (offsets.get(tile as usize), counts.get(tile as usize))
        else {
            break;
        };
        // A zero-length tile is "missing": OpenSlide paints it from the level above
        // and decodes nothing.
        if len == 0 {
            continue;
        }
        header.clear();
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| format!("tile {tile}: {e}"))?;
        file.by_ref()
            .take(len.min(HEADER_BYTES))
            .read_to_end(&mut header)
            .map_err(|e| format!("tile {tile}: {e}"))?;
        check_header(&header, (tw, th)).map_err(|why| format!("tile {tile}: {why}"))?;
    }
    Ok(())
}

/// Checks one codestream header against the `tile` it fills. Bytes that are not a
/// codestream pass: OpenJPEG refuses them itself, cleanly.
pub fn check_header(bytes: &[u8], (tw, th): (u32, u32)) -> Result<(), String> {
    if bytes.get(..2) != Some(&SOC[..]) || bytes.get(2..4) != Some(&SIZ[..]) {
        return Ok(());
    }
    let u32_at = |at: usize| -> Result<u32, String> {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| "the JPEG 2000 header is cut short".to_string())
    };
    // After SOC (2), the SIZ marker (2), Lsiz (2) and Rsiz (2).
    let (xsiz, ysiz, x0, y0) = (u32_at(8)?, u32_at(12)?, u32_at(16)?, u32_at(20)?);
    if (xsiz, ysiz) != (tw, th) {
        return Err(format!(
            "its JPEG 2000 image is {xsiz} x {ysiz}, not the {tw} x {th} tile it fills"
        ));
    }
    if (x0, y0) != (0, 0) {
        return Err(format!(
            "its JPEG 2000 image area starts at ({x0}, {y0}), not at the tile's corner"
        ));
    }
    let components = bytes
        .get(FIXED - 2..FIXED)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or("the JPEG 2000 header is cut short")?;
    if components != 3 {
        return Err(format!(
            "its JPEG 2000 image has {components} components, not 3"
        ));
    }
    for c in 0..3 {
        let at = FIXED + 3 * c;
        let (dx, dy) = match bytes.get(at + 1..at + 3) {
            Some(&[dx, dy]) => (u32::from(dx), u32::from(dy)),
            _ => return Err("the JPEG 2000 header is cut short".into()),
        };
        if dx == 0 || dy == 0 || tw % dx != 0 || th % dy != 0 {
            return Err(format!(
                "its JPEG 2000 component {c} is subsampled {dx} x {dy}, which does not \
                 divide the {tw} x {th} tile"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOC and a SIZ for a `w` x `h` image from (`x0`, `y0`), components subsampled by
    /// `sub`.
    fn header(w: u32, h: u32, x0: u32, y0: u32, sub: [(u8, u8); 3]) -> Vec<u8> {
        let mut b = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 47, 0, 0];
        for v in [w, h, x0, y0, w, h, 0, 0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&3u16.to_be_bytes());
        for (dx, dy) in sub {
            b.extend_from_slice(&[7, dx, dy]);
        }
        b
    }

    const FULL: [(u8, u8); 3] = [(1, 1); 3];

    #[test]
    fn aperio_rgb_and_ycbcr_headers_pass() {
        assert_eq!(
            check_header(&header(240, 240, 0, 0, FULL), (240, 240)),
            Ok(())
        );
        let ycbcr = [(1, 1), (2, 1), (2, 1)];
        assert_eq!(
            check_header(&header(240, 240, 0, 0, ycbcr), (240, 240)),
            Ok(())
        );
    }

    #[test]
    fn an_image_area_inside_the_tile_is_refused() {
        let err = check_header(&header(1024, 1024, 511, 511, FULL), (1024, 1024)).unwrap_err();
        assert!(err.contains("(511, 511)"), "{err}");
        assert!(check_header(&header(1024, 1024, 0, 1023, FULL), (1024, 1024)).is_err());
    }

    #[test]
    fn subsampling_that_does_not_divide_the_tile_is_refused() {
        let odd = [(1, 1), (2, 1), (2, 1)];
        assert!(check_header(&header(241, 240, 0, 0, odd), (241, 240)).is_err());
        assert!(
            check_header(
                &header(240, 240, 0, 0, [(1, 1), (0, 1), (1, 1)]),
                (240, 240)
            )
            .is_err()
        );
    }

    #[test]
    fn size_components_and_truncation_are_checked() {
        assert!(check_header(&header(512, 512, 0, 0, FULL), (240, 240)).is_err());
        let mut two = header(240, 240, 0, 0, FULL);
        two[FIXED - 1] = 2;
        assert!(check_header(&two, (240, 240)).is_err());
        let whole = header(240, 240, 0, 0, FULL);
        for cut in 4..whole.len() {
            assert!(
                check_header(&whole[..cut], (240, 240)).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bytes_that_are_not_a_codestream_are_left_to_openjpeg() {
        assert_eq!(check_header(&[0u8; 64], (240, 240)), Ok(()));
        assert_eq!(check_header(&[], (240, 240)), Ok(()));
    }

    #[test]
    fn a_bad_tile_painted_into_a_missing_tile_of_the_level_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leak.svs");
        crate::fixtures::poison::write_leak_through_missing_tile(&path).unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        let tiff = TiffFile::read(&mut file).unwrap();
        // Tile 0 of each level and every tile of level 1 are sound.
        assert_eq!(check_tiles(&mut file, &tiff, Tiles::First), Ok(()));
        let err = check_tiles(
            &mut file,
            &tiff,
            Tiles::All {
                width: 1024,
                height: 512,
                level: 1,
            },
        )
        .unwrap_err();
        assert!(err.contains("painted into a missing tile"), "{err}");
        assert!(
            err.contains("tile 1: its JPEG 2000 image area starts at (511, 511)"),
            "{err}"
        );
    }
}
