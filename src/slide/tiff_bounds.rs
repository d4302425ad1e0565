//! Bounds on a TIFF slide's structure, checked from its directories before OpenSlide
//! opens it and before any tile of the level read is decoded.
//!
//! Both refuse work that the bytes present do not justify: more pyramid levels than a
//! scanner writes (OpenSlide would load every level's tile arrays at open, and paint
//! missing tiles recursively through all of them), and a level whose tiles reference
//! the same compressed bytes over and over ([`crate::tiff::reuse`]). A refusal is
//! `corrupt_slide`, in milliseconds, instead of a worker busy until its deadline.

use std::fs::File;
use std::path::Path;

use super::{MAX_LEVELS, SlideError};
use crate::tiff::{TiffFile, reuse, tags};

/// The directories OpenSlide 3.4 takes as levels, counted without opening the slide:
/// every tiled one for Aperio (its description starts with "Aperio"), the first and
/// the tiled reduced-resolution ones otherwise (the generic driver); other vendors'
/// counts are checked after OpenSlide opens them.
pub fn check_level_count(path: &Path, file: &mut File, tiff: &TiffFile) -> Result<(), SlideError> {
    const REDUCED_IMAGE: u32 = 1;
    let aperio = tiff
        .read_ascii(file, &tiff.directories[0], tags::IMAGE_DESCRIPTION)
        .ok()
        .flatten()
        .is_some_and(|d| d.starts_with("Aperio"));
    let levels = tiff
        .directories
        .iter()
        .enumerate()
        .filter(|(i, d)| d.is_tiled() && (aperio || *i == 0 || d.subfile_type & REDUCED_IMAGE != 0))
        .count();
    if levels > MAX_LEVELS {
        return Err(SlideError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "it declares {levels} pyramid levels; slides have fewer than {MAX_LEVELS}"
            ),
        });
    }
    Ok(())
}

/// The compressed bytes of the level of `level_dims` (every tiled directory of that
/// size, as the direct path and the planner find it) against the file's length.
pub fn check_level_bytes(
    path: &Path,
    file: &mut File,
    tiff: &TiffFile,
    level_dims: (u64, u64),
) -> Result<(), SlideError> {
    let corrupt = |reason: String| SlideError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let file_len = file
        .metadata()
        .map_err(|e| SlideError::Io {
            path: path.to_path_buf(),
            source: e,
        })?
        .len();
    // Directories sharing one tile array are one level's tiles, checked once.
    let mut seen = std::collections::HashSet::new();
    for dir in tiff
        .directories
        .iter()
        .filter(|d| d.is_tiled() && (d.width, d.height) == level_dims)
    {
        let key = (
            dir.value_offset(tags::TILE_OFFSETS),
            dir.value_offset(tags::TILE_BYTE_COUNTS),
        );
        if key.0.is_some() && !seen.insert(key) {
            continue;
        }
        // Arrays that do not match the grid are the readers' to refuse.
        let Ok((_, counts)) = tiff.tile_locations(file, dir) else {
            continue;
        };
        reuse::check_referenced_bytes(&counts, file_len).map_err(corrupt)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_of_one_tile_referenced_59536_times_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reuse.tif");
        crate::fixtures::poison::write_tile_reuse(&path).unwrap();
        let mut file = File::open(&path).unwrap();
        let tiff = TiffFile::read(&mut file).unwrap();
        let level = (tiff.directories[0].width, tiff.directories[0].height);
        let err = check_level_bytes(&path, &mut file, &tiff, level).unwrap_err();
        assert!(err.to_string().contains("decoded over and over"), "{err}");
        assert!(check_level_bytes(&path, &mut file, &tiff, (1, 1)).is_ok());
    }

    #[test]
    fn more_aperio_levels_than_slides_have_are_refused_before_opening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("levels.svs");
        for (levels, refused) in [(MAX_LEVELS as u32, false), (MAX_LEVELS as u32 + 1, true)] {
            std::fs::write(
                &path,
                crate::fixtures::poison::shared_tile_arrays(levels, 256, 16),
            )
            .unwrap();
            let mut file = File::open(&path).unwrap();
            let tiff = TiffFile::read(&mut file).unwrap();
            let result = check_level_count(&path, &mut file, &tiff);
            assert_eq!(result.is_err(), refused, "{levels} levels: {result:?}");
        }
    }
}
