//! The fast path: decode a tiled TIFF level's tiles directly, shrinking by 2, 4 or 8 on
//! the way: JPEG tiles with libjpeg-turbo (the IDCT scales), Aperio's JPEG 2000 tiles
//! (33003 YCbCr, 33005 RGB) from the wavelet levels the scale needs
//! ([`crate::slide::jpeg2000`]), with no OpenSlide involved.
//!
//! OpenSlide's tile path (libtiff, cairo, a tile cache, premultiplied ARGB) is what
//! separates a straightforward engine from the fastest peers; for Aperio and generic
//! tiled JPEG TIFFs the pixels are just JPEG tiles, so we decode them ourselves (as
//! cuCIM does) and keep OpenSlide for opening, metadata and every other format. The
//! colour handling follows libtiff: Photometric RGB means the JPEG data is not colour
//! transformed, YCbCr means it is. Tests prove this path agrees with OpenSlide's.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::slide::error::SlideError;
use crate::slide::geometry::{self, Rect};
use crate::slide::jp2k_guard::APERIO_JP2K;
use crate::slide::jpeg_decode::{
    ColourPolicy, TileDecoder, decode_scaled, decode_scaled_into, decode_scaled_rows,
    prepare_stream,
};
use crate::slide::jpeg2000;
use crate::slide::source::{RegionReader, RegionSource, copy_rows};
use crate::tiff::{Directory, TiffFile, tags};

/// Tiles larger than this compressed size are refused (a 512 x 512 RGB tile is 768 KiB raw).
const MAX_TILE_BYTES: u64 = 32 * 1024 * 1024;

/// Why a level cannot use the fast path (the OpenSlide path then serves it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotEligible(pub String);

/// How a level's tiles are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TileCodec {
    Jpeg,
    /// Aperio JPEG 2000: 33003 stores YCbCr components (converted here, as OpenSlide
    /// does), 33005 RGB.
    Jpeg2000 {
        ycbcr: bool,
    },
}

/// One tiled JPEG or JPEG 2000 level, ready to be read in scaled pixel space.
pub struct JpegTileSource {
    path: PathBuf,
    file: File,
    level_dims: (u64, u64),
    tile: (u32, u32),
    grid: (u64, u64),
    offsets: Vec<u64>,
    counts: Vec<u64>,
    tables: Option<Vec<u8>>,
    rgb_photometric: bool,
    codec: TileCodec,
    denominator: u32,
    background: [u8; 3],
}

impl JpegTileSource {
    /// Prepares the directory whose size is `level_dims`, decoding at 1/`denominator`.
    pub fn open(
        path: &Path,
        tiff: &TiffFile,
        level_dims: (u64, u64),
        denominator: u32,
        background: [u8; 3],
    ) -> Result<JpegTileSource, NotEligible> {
        let dir = find_level_directory(tiff, level_dims)?;
        let codec = check_eligible(dir)?;
        let (tw, th) = (dir.tile_width.unwrap_or(0), dir.tile_height.unwrap_or(0));
        let grid = dir
            .tile_grid()
            .ok_or_else(|| NotEligible("not tiled".into()))?;
        let mut file =
            File::open(path).map_err(|e| NotEligible(format!("cannot open file: {e}")))?;
        let (offsets, counts) = tiff
            .tile_locations(&mut file, dir)
            .map_err(|e| NotEligible(e.to_string()))?;
        let tables = tiff
            .read_blob(&mut file, dir, tags::JPEG_TABLES)
            .map_err(|e| NotEligible(e.to_string()))?;
        Ok(JpegTileSource {
            path: path.to_path_buf(),
            file,
            level_dims,
            tile: (tw, th),
            grid,
            offsets,
            counts,
            tables,
            rgb_photometric: dir.photometric == Some(tags::PHOTOMETRIC_RGB),
            codec,
            denominator,
            background,
        })
    }

    fn scaled_tile(&self) -> (u64, u64) {
        let d = u64::from(self.denominator);
        (u64::from(self.tile.0) / d, u64::from(self.tile.1) / d)
    }

    fn corrupt(&self, reason: String) -> SlideError {
        SlideError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }
}

/// The tiled directory with exactly the level's dimensions (OpenSlide's levels for
/// Aperio and generic TIFF are the tiled directories).
fn find_level_directory(tiff: &TiffFile, dims: (u64, u64)) -> Result<&Directory, NotEligible> {
    tiff.directories
        .iter()
        .find(|d| d.is_tiled() && (d.width, d.height) == dims)
        .ok_or_else(|| NotEligible(format!("no tiled directory of {} x {}", dims.0, dims.1)))
}

fn check_eligible(dir: &Directory) -> Result<TileCodec, NotEligible> {
    let fail = |what: &str| Err(NotEligible(what.to_string()));
    let codec = if dir.compression == tags::COMPRESSION_JPEG {
        TileCodec::Jpeg
    } else if APERIO_JP2K.contains(&dir.compression) {
        // OpenSlide decides the colour of these by the compression, not Photometric.
        TileCodec::Jpeg2000 {
            ycbcr: dir.compression == APERIO_JP2K[0],
        }
    } else {
        return fail("neither JPEG nor Aperio JPEG 2000");
    };
    if codec == TileCodec::Jpeg
        && !matches!(
            dir.photometric,
            Some(tags::PHOTOMETRIC_RGB | tags::PHOTOMETRIC_YCBCR)
        )
    {
        return fail("photometric is neither RGB nor YCbCr");
    }
    if dir.samples_per_pixel != 3 || dir.bits_per_sample != 8 || dir.planar_config != 1 {
        return fail("not 8-bit, 3-sample, contiguous");
    }
    match (dir.tile_width, dir.tile_height) {
        (Some(w), Some(h))
            if w > 0 && h > 0 && w % 16 == 0 && h % 16 == 0 && w <= 4096 && h <= 4096 =>
        {
            Ok(codec)
        }
        _ => fail("tile size is not a multiple of 16 up to 4096"),
    }
}

/// Turns a TIFF tile into a self-contained JPEG stream: splices in the shared JPEGTables
/// and states the colour transform explicitly with an Adobe APP14 marker, as libtiff
/// does by setting the decoder's colour space from the Photometric tag.
pub fn assemble_stream(
    tile: &[u8],
    tables: Option<&[u8]>,
    rgb_photometric: bool,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&[0xFF, 0xD8]);
    // Adobe APP14: version 100, flags 0, transform 0 (none, RGB) or 1 (YCbCr).
    out.extend_from_slice(&[
        0xFF, 0xEE, 0x00, 0x0E, b'A', b'd', b'o', b'b', b'e', 0x00, 0x64,
    ]);
    out.extend_from_slice(&[0, 0, 0, 0, if rgb_photometric { 0 } else { 1 }]);
    if let Some(tables) = tables {
        let body = tables.strip_prefix(&[0xFF, 0xD8]).unwrap_or(tables);
        let body = body.strip_suffix(&[0xFF, 0xD9]).unwrap_or(body);
        out.extend_from_slice(body);
    }
    let body = tile.strip_prefix(&[0xFF, 0xD8]).unwrap_or(tile);
    append_without_jfif(body, out);
}

/// Copies a JPEG body, dropping a leading JFIF APP0 segment: JFIF would override the
/// Adobe marker and force a YCbCr interpretation that the TIFF may contradict.
fn append_without_jfif(body: &[u8], out: &mut Vec<u8>) {
    if body.len() > 4 && body[0] == 0xFF && body[1] == 0xE0 {
        let len = usize::from(u16::from_be_bytes([body[2], body[3]]));
        if body.len() >= 2 + len && body[4..].starts_with(b"JFIF") {
            out.extend_from_slice(&body[2 + len..]);
            return;
        }
    }
    out.extend_from_slice(body);
}

impl RegionSource for JpegTileSource {
    fn dims(&self) -> (u64, u64) {
        geometry::scaled_dims(self.level_dims, self.denominator)
    }

    fn alignment(&self) -> (u32, u32) {
        let (w, h) = self.scaled_tile();
        (w as u32, h as u32)
    }

    fn reader(&self) -> Result<Box<dyn RegionReader + '_>, SlideError> {
        let decompressor = match self.codec {
            TileCodec::Jpeg => Some(TileDecoder::new(self.denominator)?),
            TileCodec::Jpeg2000 { .. } => None,
        };
        Ok(Box::new(JpegTileReader {
            source: self,
            decompressor,
            compressed: Vec::new(),
            stream: Vec::new(),
            tile_rgb: Vec::new(),
        }))
    }
}

struct JpegTileReader<'a> {
    source: &'a JpegTileSource,
    /// For JPEG tiles only.
    decompressor: Option<TileDecoder>,
    compressed: Vec<u8>,
    stream: Vec<u8>,
    tile_rgb: Vec<u8>,
}

impl JpegTileReader<'_> {
    /// Reads tile `index`'s bytes (for JPEG, into a whole stream with the shared tables);
    /// false if the tile is absent (sparse TIFF), which OpenSlide renders as background.
    fn load_tile(&mut self, index: usize) -> Result<bool, SlideError> {
        let s = self.source;
        let (offset, count) = (s.offsets[index], s.counts[index]);
        if count == 0 || offset == 0 {
            return Ok(false);
        }
        if count > MAX_TILE_BYTES {
            return Err(s.corrupt(format!("tile {index} claims {count} bytes")));
        }
        self.compressed.resize(count as usize, 0);
        s.file
            .read_exact_at(&mut self.compressed, offset)
            .map_err(|e| s.corrupt(format!("tile {index} at offset {offset}: {e}")))?;
        if s.codec == TileCodec::Jpeg {
            prepare_stream(
                ColourPolicy::TiffPhotometric {
                    rgb: s.rgb_photometric,
                },
                &self.compressed,
                s.tables.as_deref(),
                &mut self.stream,
            );
        }
        Ok(true)
    }

    fn tile_error(&self, index: usize, e: String) -> SlideError {
        let s = self.source;
        s.corrupt(format!(
            "tile {index} (directory tile {} x {}): {e}",
            s.tile.0, s.tile.1
        ))
    }

    /// Decodes tile `index` into `self.tile_rgb` (scaled size); false if it is absent.
    fn decode_tile(&mut self, index: usize) -> Result<bool, SlideError> {
        if !self.load_tile(index)? {
            return Ok(false);
        }
        let s = self.source;
        let made = match (s.codec, &mut self.decompressor) {
            (TileCodec::Jpeg, Some(decompressor)) => decode_scaled(
                decompressor,
                &self.stream,
                s.denominator,
                s.scaled_tile(),
                &mut self.tile_rgb,
            ),
            (TileCodec::Jpeg2000 { ycbcr }, _) => {
                jpeg2000::decode_scaled(&self.compressed, s.tile, s.denominator, &mut self.tile_rgb)
                    .map(|()| {
                        if ycbcr {
                            crate::slide::native_frame::ycbcr_to_rgb_in_place(&mut self.tile_rgb);
                        }
                    })
            }
            (TileCodec::Jpeg, None) => Err("no JPEG decoder".into()),
        };
        made.map_err(|e| self.tile_error(index, e))?;
        Ok(true)
    }

    /// Decodes JPEG tile `index` straight into `out` at `start`, rows `pitch` apart: a
    /// tile wholly inside the region costs no copy. False if it is absent.
    fn decode_tile_in_place(
        &mut self,
        index: usize,
        out: &mut [u8],
        start: usize,
        pitch: usize,
    ) -> Result<bool, SlideError> {
        if !self.load_tile(index)? {
            return Ok(false);
        }
        let s = self.source;
        let Some(decompressor) = &mut self.decompressor else {
            return Err(self.tile_error(index, "no JPEG decoder".into()));
        };
        let dest = out.get_mut(start..).unwrap_or_default();
        decode_scaled_into(
            decompressor,
            &self.stream,
            s.denominator,
            s.scaled_tile(),
            dest,
            pitch,
        )
        .map_err(|e| self.tile_error(index, e))?;
        Ok(true)
    }
}

impl RegionReader for JpegTileReader<'_> {
    fn read_rgb(&mut self, rect: Rect, out: &mut Vec<u8>) -> Result<(), SlideError> {
        out.resize((rect.w * rect.h * 3) as usize, 0);
        self.read_rgb_into(rect, out, &mut Vec::new())
    }

    /// One whole JPEG tile is decoded straight into the row slices; anything else (an
    /// edge tile, several tiles, JPEG 2000, a missing tile) goes the default way.
    fn read_rgb_rows(
        &mut self,
        rect: Rect,
        rows: &mut [&mut [u8]],
        scratch: &mut Vec<u8>,
    ) -> Result<(), SlideError> {
        let s = self.source;
        let (stw, sth) = s.scaled_tile();
        let whole_tile = s.codec == TileCodec::Jpeg
            && (rect.w, rect.h) == (stw, sth)
            && rect.x.is_multiple_of(stw)
            && rect.y.is_multiple_of(sth)
            && rect.x / stw < s.grid.0
            && rect.y / sth < s.grid.1;
        if whole_tile {
            let index = ((rect.y / sth) * s.grid.0 + rect.x / stw) as usize;
            if self.load_tile(index)? {
                let Some(decompressor) = &mut self.decompressor else {
                    return Err(self.tile_error(index, "no JPEG decoder".into()));
                };
                return decode_scaled_rows(
                    decompressor,
                    &self.stream,
                    s.denominator,
                    (stw, sth),
                    rows,
                )
                .map_err(|e| self.tile_error(index, e));
            }
        }
        self.read_rgb(rect, scratch)?;
        copy_rows(rect, scratch, rows)
    }

    fn read_rgb_into(
        &mut self,
        rect: Rect,
        out: &mut [u8],
        _scratch: &mut Vec<u8>,
    ) -> Result<(), SlideError> {
        let s = self.source;
        if out.len() as u64 != rect.w * rect.h * 3 {
            return Err(SlideError::Internal(format!(
                "{} bytes for a {} x {} region",
                out.len(),
                rect.w,
                rect.h
            )));
        }
        let (stw, sth) = s.scaled_tile();
        let pitch = (rect.w * 3) as usize;
        let (tx0, tx1) = (rect.x / stw, (rect.x + rect.w).div_ceil(stw).min(s.grid.0));
        let (ty0, ty1) = (rect.y / sth, (rect.y + rect.h).div_ceil(sth).min(s.grid.1));
        for ty in ty0..ty1 {
            for tx in tx0..tx1 {
                let index = (ty * s.grid.0 + tx) as usize;
                // Intersection of the tile with the rectangle, in scaled pixels.
                let (x0, y0) = ((tx * stw).max(rect.x), (ty * sth).max(rect.y));
                let x1 = ((tx + 1) * stw).min(rect.x + rect.w);
                let y1 = ((ty + 1) * sth).min(rect.y + rect.h);
                let whole =
                    (x0, y0, x1, y1) == (tx * stw, ty * sth, (tx + 1) * stw, (ty + 1) * sth);
                let corner = (((y0 - rect.y) * rect.w + (x0 - rect.x)) * 3) as usize;
                let present = if whole && s.codec == TileCodec::Jpeg {
                    if self.decode_tile_in_place(index, out, corner, pitch)? {
                        continue;
                    }
                    false
                } else {
                    self.decode_tile(index)?
                };
                let run = ((x1 - x0) * 3) as usize;
                for y in y0..y1 {
                    let dst = corner + ((y - y0) as usize) * pitch;
                    let dst = &mut out[dst..dst + run];
                    if present {
                        let src = (((y - ty * sth) * stw + (x0 - tx * stw)) * 3) as usize;
                        dst.copy_from_slice(&self.tile_rgb[src..src + run]);
                    } else {
                        for px in dst.chunks_exact_mut(3) {
                            px.copy_from_slice(&s.background);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CMU-1-Small-Region's tiles read as a banded round reads them: every piece's row
    /// slices (whole tiles decoded straight into them, the partial edge tiles through a
    /// buffer) hold exactly what `read_rgb` gives for the same rectangle, at full scale
    /// and at 1/2, and nothing beside them is written.
    #[test]
    fn row_slices_get_the_pixels_read_rgb_gives() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/CMU-1-Small-Region.svs");
        let mut file = File::open(&path).expect("CMU-1-Small-Region");
        let tiff = TiffFile::read(&mut file).expect("TIFF");
        for denominator in [1u32, 2] {
            let source = JpegTileSource::open(&path, &tiff, (2220, 2967), denominator, [255; 3])
                .expect("direct path");
            let (width, height) = source.dims();
            let (_, th) = source.scaled_tile();
            let mut reader = source.reader().expect("reader");
            // The first band and the last (shorter) one.
            for y in [0, (height - 1) / th * th] {
                let h = th.min(height - y);
                let pitch = width as usize * 3 + 7;
                let mut wide = vec![9u8; pitch * h as usize];
                let columns = crate::slide::round::piece_columns(width, source.alignment().0);
                assert!(columns.len() > 2, "{columns:?}");
                let mut scratch = Vec::new();
                for &(x, w) in &columns {
                    let rect = Rect { x, y, w, h };
                    let at = x as usize * 3;
                    let mut rows: Vec<&mut [u8]> = wide
                        .chunks_exact_mut(pitch)
                        .map(|row| &mut row[at..at + w as usize * 3])
                        .collect();
                    reader
                        .read_rgb_rows(rect, &mut rows, &mut scratch)
                        .expect("rows");
                }
                let mut want = Vec::new();
                reader
                    .read_rgb(
                        Rect {
                            x: 0,
                            y,
                            w: width,
                            h,
                        },
                        &mut want,
                    )
                    .expect("band");
                for (row, line) in wide
                    .chunks_exact(pitch)
                    .zip(want.chunks_exact(width as usize * 3))
                {
                    assert!(row[..line.len()] == *line, "1/{denominator}, band at {y}");
                    assert_eq!(&row[line.len()..], &[9u8; 7]);
                }
            }
        }
    }

    #[test]
    fn stream_splices_tables_and_marks_colour_transform() {
        let tables = [0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x03, 0x07, 0xFF, 0xD9];
        let tile = [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x02, 0xFF, 0xD9];
        let mut out = Vec::new();
        assemble_stream(&tile, Some(&tables), true, &mut out);
        assert_eq!(&out[..2], &[0xFF, 0xD8]);
        assert_eq!(&out[2..4], &[0xFF, 0xEE]);
        assert_eq!(out[17], 0, "RGB photometric means no colour transform");
        assert_eq!(
            &out[18..],
            &[
                0xFF, 0xDB, 0x00, 0x03, 0x07, 0xFF, 0xC0, 0x00, 0x02, 0xFF, 0xD9
            ]
        );
        assemble_stream(&tile, None, false, &mut out);
        assert_eq!(out[17], 1);
        assert_eq!(&out[18..], &tile[2..]);
    }

    #[test]
    fn jfif_marker_is_dropped() {
        let mut tile = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x07];
        tile.extend_from_slice(b"JFIF\0");
        tile.extend_from_slice(&[0xFF, 0xD9]);
        let mut out = Vec::new();
        assemble_stream(&tile, None, true, &mut out);
        assert_eq!(&out[18..], &[0xFF, 0xD9]);
    }
}
