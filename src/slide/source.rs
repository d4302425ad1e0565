//! Where a level's pixels come from. The reduction driver only sees this trait, so the
//! OpenSlide path (every format) and the direct JPEG tile path (tiled JPEG TIFFs) are
//! interchangeable and can be checked against each other.

use openslide_rs::{Address, OpenSlide, Region, Size};

use super::error::SlideError;
use super::geometry::Rect;
use super::reduce::composite_argb;

/// A source of RGB pixels for rectangles of one level (at the source's own scale).
pub trait RegionSource: Sync {
    /// Size of the pixel space `read_rgb` addresses.
    fn dims(&self) -> (u64, u64);
    /// Natural chunk alignment (tile size), used to avoid decoding a tile twice.
    fn alignment(&self) -> (u32, u32);
    /// A per-thread reader with its own scratch buffers and decoder state.
    fn reader(&self) -> Result<Box<dyn RegionReader + '_>, SlideError>;
}

pub trait RegionReader {
    /// Fills `out` with `rect.w * rect.h` RGB pixels of the rectangle.
    fn read_rgb(&mut self, rect: Rect, out: &mut Vec<u8>) -> Result<(), SlideError>;

    /// Fills `out`, exactly `rect.w * rect.h * 3` bytes, with the rectangle's pixels: the
    /// reduction hands over its part of the intermediate image, so a reader that can
    /// decode in place copies nothing. By default through `scratch` and one copy.
    fn read_rgb_into(
        &mut self,
        rect: Rect,
        out: &mut [u8],
        scratch: &mut Vec<u8>,
    ) -> Result<(), SlideError> {
        self.read_rgb(rect, scratch)?;
        if scratch.len() != out.len() {
            return Err(SlideError::Internal(format!(
                "a reader gave {} bytes for a {} x {} region",
                scratch.len(),
                rect.w,
                rect.h
            )));
        }
        out.copy_from_slice(scratch);
        Ok(())
    }

    /// Fills `rows`, `rect.h` slices of `rect.w * 3` bytes each (the rectangle's part of
    /// every row of a wider image, which other threads fill beside it), with the
    /// rectangle's pixels. By default through `scratch` and a copy per row.
    fn read_rgb_rows(
        &mut self,
        rect: Rect,
        rows: &mut [&mut [u8]],
        scratch: &mut Vec<u8>,
    ) -> Result<(), SlideError> {
        self.read_rgb(rect, scratch)?;
        copy_rows(rect, scratch, rows)
    }
}

/// A rectangle's pixels from a function of their place, packed as `read_rgb` gives them:
/// what the test sources of the reduction read.
#[cfg(test)]
pub fn fill_from(rect: Rect, out: &mut Vec<u8>, pixel: impl Fn(u64, u64) -> [u8; 3]) {
    out.clear();
    for y in rect.y..rect.y + rect.h {
        for x in rect.x..rect.x + rect.w {
            out.extend_from_slice(&pixel(x, y));
        }
    }
}

/// Copies a rectangle's packed pixels, as `read_rgb` gives them, into its row slices.
pub fn copy_rows(rect: Rect, pixels: &[u8], rows: &mut [&mut [u8]]) -> Result<(), SlideError> {
    let row_bytes = rect.w as usize * 3;
    if rows.len() as u64 != rect.h
        || pixels.len() != row_bytes * rows.len()
        || rows.iter().any(|row| row.len() != row_bytes)
    {
        return Err(SlideError::Internal(format!(
            "{} bytes for a {} x {} region of {} row slices",
            pixels.len(),
            rect.w,
            rect.h,
            rows.len()
        )));
    }
    for (row, line) in rows.iter_mut().zip(pixels.chunks_exact(row_bytes)) {
        row.copy_from_slice(line);
    }
    Ok(())
}

/// Reads a level through OpenSlide's `read_region` and composites onto the background.
pub struct OpenSlideSource<'a> {
    pub slide: &'a OpenSlide,
    pub path: &'a std::path::Path,
    pub level: u32,
    pub dims: (u64, u64),
    pub downsample: f64,
    pub background: [u8; 3],
}

impl RegionSource for OpenSlideSource<'_> {
    fn dims(&self) -> (u64, u64) {
        self.dims
    }

    fn alignment(&self) -> (u32, u32) {
        (1, 1)
    }

    fn reader(&self) -> Result<Box<dyn RegionReader + '_>, SlideError> {
        Ok(Box::new(OpenSlideReader { source: self }))
    }
}

struct OpenSlideReader<'a> {
    source: &'a OpenSlideSource<'a>,
}

impl RegionReader for OpenSlideReader<'_> {
    fn read_rgb(&mut self, rect: Rect, out: &mut Vec<u8>) -> Result<(), SlideError> {
        let s = self.source;
        let too_far = |_| SlideError::Internal("region address past 2^32".into());
        // read_region takes level-0 coordinates for the origin and level pixels for the size.
        let region = Region {
            address: Address {
                x: u32::try_from((rect.x as f64 * s.downsample).round() as u64).map_err(too_far)?,
                y: u32::try_from((rect.y as f64 * s.downsample).round() as u64).map_err(too_far)?,
            },
            level: s.level,
            size: Size {
                w: u32::try_from(rect.w).map_err(too_far)?,
                h: u32::try_from(rect.h).map_err(too_far)?,
            },
        };
        let argb = s
            .slide
            .read_region(&region)
            .map_err(|e| SlideError::Corrupt {
                path: s.path.to_path_buf(),
                reason: format!("reading level {} failed: {e}", s.level),
            })?;
        out.resize((rect.w * rect.h * 3) as usize, 0);
        composite_argb(&argb, s.background, out);
        Ok(())
    }
}
