//! The engine's DICOM branch: a link to one instance file names the slide; its
//! siblings are listed ([`crate::formats::dicom::is_candidate`]), only each candidate's header is
//! read (growing prefix reads), the series is built and the chosen level's frames are
//! decoded. OpenSlide 3.4 does not read DICOM, so this path is the only one.
//!
//! Reads nothing but headers and the chosen level's pixel data: the folder may be a
//! temporary directory of sparse copies made by the ranged fetcher (`pixel_ranges`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::formats::dicom::DicomError;
use crate::formats::dicom::header::{FIRST_READ, InstanceHeader, Scan, is_dicom, scan_prefix};
use crate::formats::dicom::series::{MAX_INSTANCES, build_series, chosen_level, is_candidate};
use crate::formats::dicom::source::DicomLevelSource;
use crate::slide::{
    PixelPath, Reduced, SlideError, StageTimings, ThumbnailOptions, geometry, render,
};

/// Most prefix reads for one header (each at least doubles the prefix).
const MAX_ROUNDS: usize = 64;

/// Whether the file at `path` is a DICOM Part 10 file ("DICM" at 128).
pub fn is_dicom_file(path: &Path) -> bool {
    let mut head = [0u8; 132];
    File::open(path)
        .and_then(|f| f.read_exact_at(&mut head, 0))
        .is_ok()
        && is_dicom(&head)
}

/// Reads one instance's header with growing prefix reads.
pub fn read_header(path: &Path) -> Result<(u64, InstanceHeader), SlideError> {
    let io = |e: std::io::Error| SlideError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut wanted = FIRST_READ.min(size);
    let mut prefix = Vec::new();
    for _ in 0..MAX_ROUNDS {
        prefix.resize(wanted as usize, 0);
        file.read_exact_at(&mut prefix, 0).map_err(io)?;
        match scan_prefix(&prefix, size).map_err(|e| e.into_slide_error(path))? {
            Scan::Header(header) => return Ok((size, *header)),
            Scan::NeedMore(more) if more > wanted => wanted = more,
            Scan::NeedMore(_) => break,
        }
    }
    Err(DicomError::corrupt("the header does not end").into_slide_error(path))
}

/// The candidate instances beside `path` (the linked file among them), with headers.
/// Files that are not DICOM are passed over; a DICOM file whose header is broken makes
/// the slide corrupt (its series cannot be known).
fn read_instances(path: &Path) -> Result<Vec<(String, u64, InstanceHeader)>, SlideError> {
    let linked = file_name(path);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let io = |e: std::io::Error| SlideError::Io {
        path: dir.clone(),
        source: e,
    };
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_candidate(&linked, &name) || !entry.path().is_file() {
            continue;
        }
        names.push(name);
        if names.len() > MAX_INSTANCES {
            return Err(DicomError::corrupt(format!(
                "more than {MAX_INSTANCES} files beside the link"
            ))
            .into_slide_error(path));
        }
    }
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let sibling = dir.join(&name);
        if name != linked && !is_dicom_file(&sibling) {
            continue;
        }
        let (size, header) = read_header(&sibling)?;
        out.push((name, size, header));
    }
    Ok(out)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The largest DCT denominator the frames allow (it must divide the frame size).
fn frame_denominator(level: (u64, u64), target: (u32, u32), frame: (u32, u32)) -> u32 {
    let mut d = geometry::jpeg_denominator(level, target);
    while d > 1 && (!frame.0.is_multiple_of(d) || !frame.1.is_multiple_of(d)) {
        d /= 2;
    }
    d
}

/// Reads and reduces the DICOM slide `path` links to (see the module doc).
pub fn reduce_dicom(path: &Path, options: &ThumbnailOptions) -> Result<Reduced, SlideError> {
    let started = Instant::now();
    let instances = read_instances(path)?;
    let linked = file_name(path);
    let series =
        build_series(&linked, &instances, options).map_err(|e| e.into_slide_error(path))?;
    let (index, target) = chosen_level(&series, options);
    let level = series
        .levels
        .get(index)
        .ok_or_else(|| DicomError::corrupt("no level").into_slide_error(path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let members: Vec<(PathBuf, u64, &InstanceHeader)> = level
        .instances
        .iter()
        .filter_map(|&i| instances.get(i))
        .map(|(name, size, header)| (dir.join(name), *size, header))
        .collect();
    let frame = members
        .first()
        .map_or((1, 1), |(_, _, h)| (h.columns, h.rows));
    let level_dims = (level.width, level.height);
    let denominator = frame_denominator(level_dims, target, frame);
    let open = started.elapsed();

    let decode_started = Instant::now();
    let source = DicomLevelSource::open(path, &members, level_dims, denominator)?;
    let intermediate = render::reduce_source(&source, target)?;
    Ok(Reduced {
        intermediate,
        target,
        metadata: series.metadata,
        series: Some(series.identity),
        level: index as u32,
        path: PixelPath::Dicom { denominator },
        timings: StageTimings {
            open,
            decode: decode_started.elapsed(),
            ..StageTimings::default()
        },
        png_compression: options.png_compression,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denominator_divides_the_frame() {
        assert_eq!(
            frame_denominator((40960, 30720), (1024, 768), (512, 512)),
            8
        );
        assert_eq!(
            frame_denominator((40960, 30720), (1024, 768), (500, 500)),
            4
        );
        assert_eq!(
            frame_denominator((40960, 30720), (1024, 768), (250, 250)),
            2
        );
        assert_eq!(frame_denominator((1110, 1483), (766, 1024), (500, 500)), 1);
    }
}
