//! The direct path for Hamamatsu NDPI: a level is one JPEG stream with restart markers,
//! decoded one restart interval at a time exactly as OpenSlide 3.4.1 does, with the DCT
//! scaling of [`crate::formats::tiled_tiff::tiles`] on top.
//!
//! OpenSlide cuts each NDPI level into tiles of (restart interval x MCU width) by MCU
//! height: a tile is the stream's header up to the start of scan, with the frame size
//! set to the tile's, followed by the bytes between two restart markers, the last
//! marker byte overwritten with EOI. Decoding each chunk on its own (rather than the
//! whole stream) matters: with 4:2:0 sampling the fancy upsampler blends across chunk
//! edges otherwise. OpenSlide's derived levels (a native level at 1/2, 1/4, 1/8) are the
//! same chunks decoded with libjpeg's DCT scaling, which we fold into our own.
//!
//! Restart markers are found by scanning the stream (the McuStarts tag is only
//! cross-checked, as OpenSlide calls it unreliable). Anything that does not fit — no
//! restart markers, marker counts or McuStarts that do not add up, a level list that
//! differs from OpenSlide's, a stream over [`MAX_STREAM_BYTES`] — is [`NotEligible`] and
//! the engine falls back to OpenSlide, saying why.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

use crate::formats::ndpi::file::{self as ndpi, MCU_STARTS, NdpiFile, Stream};
use crate::formats::tiled_tiff::tiles::NotEligible;
use crate::slide::error::SlideError;
use crate::slide::geometry::{self, Rect, jpeg_denominator};
use crate::slide::jpeg_decode::scaled_decompressor;
use crate::slide::source::{RegionReader, RegionSource};

/// Level streams larger than this are left to OpenSlide (the scan reads all of it).
pub const MAX_STREAM_BYTES: u64 = 512 * 1024 * 1024;
/// One restart chunk larger than this is refused (a 4096-pixel-wide band of 16 rows
/// is about 200 KiB raw).
const MAX_CHUNK_BYTES: u64 = 32 * 1024 * 1024;
/// Bytes read per step of the restart-marker scan.
const SCAN_BLOCK: usize = 1 << 20;
/// Most restart chunks a level may have (bounds the position table).
const MAX_CHUNKS: u64 = 64 * 1024 * 1024;

/// One NDPI level, ready to be read in scaled pixel space.
pub struct NdpiSource {
    path: PathBuf,
    file: File,
    stream: Stream,
    level_dims: (u64, u64),
    /// Total JPEG scale denominator: the derived level's and the DCT pre-shrink's.
    total: u32,
    /// Extra shrink on top of the level (what the reduction sees).
    denominator: u32,
    /// The stream's header up to the scan data, frame size set to one tile.
    header: Vec<u8>,
    /// File offset of each restart chunk's first byte, then the stream's end.
    bounds: Vec<u64>,
    background: [u8; 3],
}

impl NdpiSource {
    /// Prepares OpenSlide's level of size `level_dims`, after checking our level list
    /// is OpenSlide's (`openslide_levels`).
    pub fn open(
        path: &Path,
        openslide_levels: &[(u64, u64)],
        level_dims: (u64, u64),
        target: (u32, u32),
        background: [u8; 3],
    ) -> Result<NdpiSource, NotEligible> {
        let not = |m: String| NotEligible(m);
        let mut file = File::open(path).map_err(|e| not(format!("cannot open file: {e}")))?;
        let parsed = NdpiFile::read(&mut file).map_err(|e| not(e.to_string()))?;
        let pyramid = ndpi::pyramid(&mut file, &parsed).map_err(|e| not(e.to_string()))?;
        let ours: Vec<(u64, u64)> = pyramid.levels.iter().map(|l| (l.width, l.height)).collect();
        if ours != openslide_levels {
            return Err(not(format!(
                "our level list {ours:?} is not OpenSlide's {openslide_levels:?}"
            )));
        }
        let level = pyramid
            .levels
            .iter()
            .find(|l| (l.width, l.height) == level_dims)
            .ok_or_else(|| not("no level of that size".into()))?;
        let stream = pyramid.streams[level.stream].clone();
        if stream.header.restart_interval == 0 {
            return Err(not("the level's JPEG has no restart markers".into()));
        }
        if stream.len > MAX_STREAM_BYTES {
            return Err(not(format!("the level's stream is {} bytes", stream.len)));
        }
        let (denominator, total) = scales(&stream, level.scale, level_dims, target);
        let bounds = chunk_bounds(&file, &stream)?;
        cross_check_mcu_starts(&mut file, &parsed, &stream, &bounds)?;
        let header = tile_header(&file, &stream)?;
        Ok(NdpiSource {
            path: path.to_path_buf(),
            file,
            stream,
            level_dims,
            total,
            denominator,
            header,
            bounds,
            background,
        })
    }

    /// The JPEG scale denominator the chunks are decoded at (the metric's label).
    pub fn total_denominator(&self) -> u32 {
        self.total
    }

    fn scaled_tile(&self) -> (u64, u64) {
        let t = u64::from(self.total);
        (
            u64::from(self.stream.tile.0) / t,
            u64::from(self.stream.tile.1) / t,
        )
    }

    fn corrupt(&self, reason: String) -> SlideError {
        SlideError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }
}

/// The extra DCT shrink (the project's "decoded level at least twice the thumbnail"
/// rule, [`jpeg_denominator`]) and the total with the derived level's own scale, kept
/// within libjpeg's 1/8 and to exact divisions of the tile.
fn scales(stream: &Stream, scale: u32, level: (u64, u64), target: (u32, u32)) -> (u32, u32) {
    let mut d = jpeg_denominator(level, target);
    while d > 1
        && (scale * d > 8
            || !stream.tile.0.is_multiple_of(scale * d)
            || !stream.tile.1.is_multiple_of(scale * d))
    {
        d /= 2;
    }
    (d, scale * d)
}

/// Scans the stream for restart markers: returns each chunk's first byte (absolute)
/// and the stream's end, checking their number and sequence.
fn chunk_bounds(file: &File, stream: &Stream) -> Result<Vec<u64>, NotEligible> {
    let (across, down) = stream.chunks();
    let chunks = across
        .checked_mul(down)
        .filter(|n| (1..=MAX_CHUNKS).contains(n))
        .ok_or_else(|| NotEligible(format!("{across} x {down} restart chunks")))?;
    let data_at = stream.offset + stream.header.data_at as u64;
    let end = stream.offset + stream.len;
    let mut bounds = Vec::with_capacity(chunks as usize + 1);
    bounds.push(data_at);
    let mut block = vec![0u8; SCAN_BLOCK];
    let mut at = data_at;
    let mut last_ff = false;
    while at < end {
        let n = (end - at).min(SCAN_BLOCK as u64) as usize;
        file.read_exact_at(&mut block[..n], at)
            .map_err(|e| NotEligible(format!("reading the level's stream: {e}")))?;
        for (i, &b) in block[..n].iter().enumerate() {
            if last_ff && (0xD0..=0xD7).contains(&b) {
                let k = bounds.len() as u64 - 1;
                if k + 1 >= chunks || u64::from(b - 0xD0) != k % 8 {
                    return Err(NotEligible(format!(
                        "restart marker {k} (RST{}) does not fit {chunks} chunks",
                        b - 0xD0
                    )));
                }
                bounds.push(at + i as u64 + 1);
            }
            last_ff = b == 0xFF;
        }
        at += n as u64;
    }
    if bounds.len() as u64 != chunks {
        return Err(NotEligible(format!(
            "the stream has {} restart chunks, its size says {chunks}",
            bounds.len()
        )));
    }
    bounds.push(end);
    Ok(bounds)
}

/// OpenSlide trusts an McuStarts value only when a restart marker precedes it; we
/// require them all to agree with the scan, or the layout is not one we model.
fn cross_check_mcu_starts(
    file: &mut File,
    parsed: &NdpiFile,
    stream: &Stream,
    bounds: &[u64],
) -> Result<(), NotEligible> {
    let dir = &parsed.directories[stream.dir];
    let starts = dir
        .uints(file, MCU_STARTS)
        .map_err(|e| NotEligible(e.to_string()))?;
    let Some(starts) = starts else {
        return Ok(());
    };
    let chunks = &bounds[..bounds.len() - 1];
    if starts.len() != chunks.len() {
        // OpenSlide then scans too (McuStarts counts tiles, which may be fewer).
        return Ok(());
    }
    let disagree = starts
        .iter()
        .zip(chunks)
        .skip(1)
        .any(|(s, b)| stream.offset + s != *b);
    if disagree {
        return Err(NotEligible(
            "McuStarts disagree with the restart markers".into(),
        ));
    }
    Ok(())
}

/// The header bytes up to the scan data, with the frame's size set to one tile.
fn tile_header(file: &File, stream: &Stream) -> Result<Vec<u8>, NotEligible> {
    let mut header = vec![0u8; stream.header.data_at];
    file.read_exact_at(&mut header, stream.offset)
        .map_err(|e| NotEligible(format!("reading the JPEG header: {e}")))?;
    let at = stream.header.sof_at + 5;
    let (tw, th) = (stream.tile.0 as u16, stream.tile.1 as u16);
    header[at..at + 2].copy_from_slice(&th.to_be_bytes());
    header[at + 2..at + 4].copy_from_slice(&tw.to_be_bytes());
    Ok(header)
}

impl RegionSource for NdpiSource {
    fn dims(&self) -> (u64, u64) {
        geometry::scaled_dims(self.level_dims, self.denominator)
    }

    fn alignment(&self) -> (u32, u32) {
        let (w, h) = self.scaled_tile();
        (w as u32, h as u32)
    }

    fn reader(&self) -> Result<Box<dyn RegionReader + '_>, SlideError> {
        let decompressor = scaled_decompressor(self.total)?;
        Ok(Box::new(NdpiReader {
            source: self,
            decompressor,
            jpeg: Vec::new(),
            tile_rgb: Vec::new(),
        }))
    }
}

struct NdpiReader<'a> {
    source: &'a NdpiSource,
    decompressor: Decompressor,
    jpeg: Vec<u8>,
    tile_rgb: Vec<u8>,
}

impl NdpiReader<'_> {
    /// Decodes restart chunk `index` into `self.tile_rgb` at the scaled tile size.
    fn decode_chunk(&mut self, index: usize) -> Result<(), SlideError> {
        let s = self.source;
        let (start, end) = (s.bounds[index], s.bounds[index + 1]);
        let len = end - start;
        if !(2..=MAX_CHUNK_BYTES).contains(&len) {
            return Err(s.corrupt(format!("restart chunk {index} is {len} bytes")));
        }
        self.jpeg.clear();
        self.jpeg.extend_from_slice(&s.header);
        let at = self.jpeg.len();
        self.jpeg.resize(at + len as usize, 0);
        s.file
            .read_exact_at(&mut self.jpeg[at..], start)
            .map_err(|e| s.corrupt(format!("restart chunk {index} at offset {start}: {e}")))?;
        // The chunk ends with its restart marker (or the stream's EOI): end the image.
        if let Some(last) = self.jpeg.last_mut() {
            *last = 0xD9;
        }
        let (sw, sh) = s.scaled_tile();
        let header = self
            .decompressor
            .read_header(&self.jpeg)
            .map_err(|e| s.corrupt(format!("restart chunk {index}: {e}")))?;
        let scaled = header.scaled(ScalingFactor::new(1, s.total as usize));
        if (scaled.width as u64, scaled.height as u64) != (sw, sh) {
            return Err(s.corrupt(format!(
                "restart chunk {index} decodes to {} x {}, not {sw} x {sh}",
                scaled.width, scaled.height
            )));
        }
        self.tile_rgb.resize((sw * sh * 3) as usize, 0);
        let image = Image {
            pixels: self.tile_rgb.as_mut_slice(),
            width: sw as usize,
            pitch: sw as usize * 3,
            height: sh as usize,
            format: PixelFormat::RGB,
        };
        self.decompressor
            .decompress(&self.jpeg, image)
            .map_err(|e| s.corrupt(format!("restart chunk {index}: {e}")))
    }
}

impl RegionReader for NdpiReader<'_> {
    fn read_rgb(&mut self, rect: Rect, out: &mut Vec<u8>) -> Result<(), SlideError> {
        let s = self.source;
        let (stw, sth) = s.scaled_tile();
        let (tiles_across, tiles_down) = s.stream.tiles();
        let (chunks_across, _) = s.stream.chunks();
        out.resize((rect.w * rect.h * 3) as usize, 0);
        // Background first: OpenSlide never paints a partial last column or row.
        for px in out.chunks_exact_mut(3) {
            px.copy_from_slice(&s.background);
        }
        let (tx0, tx1) = (
            rect.x / stw,
            (rect.x + rect.w).div_ceil(stw).min(tiles_across),
        );
        let (ty0, ty1) = (
            rect.y / sth,
            (rect.y + rect.h).div_ceil(sth).min(tiles_down),
        );
        for ty in ty0..ty1 {
            for tx in tx0..tx1 {
                self.decode_chunk((ty * chunks_across + tx) as usize)?;
                let (x0, y0) = ((tx * stw).max(rect.x), (ty * sth).max(rect.y));
                let x1 = ((tx + 1) * stw).min(rect.x + rect.w);
                let y1 = ((ty + 1) * sth).min(rect.y + rect.h);
                let run = ((x1 - x0) * 3) as usize;
                for y in y0..y1 {
                    let dst = (((y - rect.y) * rect.w + (x0 - rect.x)) * 3) as usize;
                    let src = (((y - ty * sth) * stw + (x0 - tx * stw)) * 3) as usize;
                    out[dst..dst + run].copy_from_slice(&self.tile_rgb[src..src + run]);
                }
            }
        }
        Ok(())
    }
}

/// The engine's entry: reduces OpenSlide's level `level_dims` through the direct path,
/// or says why not (logged) so the caller falls back to OpenSlide.
pub fn reduce(
    path: &Path,
    openslide_levels: &[(u64, u64)],
    level_dims: (u64, u64),
    target: (u32, u32),
    background: [u8; 3],
) -> Option<(crate::slide::render::Rgb, crate::slide::PixelPath)> {
    let source = match NdpiSource::open(path, openslide_levels, level_dims, target, background) {
        Ok(source) => source,
        Err(why) => {
            tracing::info!(path = %path.display(), reason = %why, "NDPI direct path not eligible; reading through OpenSlide");
            return None;
        }
    };
    match crate::slide::render::reduce_source(&source, target) {
        Ok(image) => Some((
            image,
            crate::slide::PixelPath::Ndpi {
                denominator: source.total_denominator(),
            },
        )),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "NDPI direct decoding failed; retrying through OpenSlide");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiff::jpeg_header::JpegHeader;

    fn stream(tile: (u32, u32)) -> Stream {
        Stream {
            dir: 0,
            width: 40960,
            height: 30720,
            offset: 0,
            len: 0,
            header: JpegHeader {
                width: 40960,
                height: 30720,
                components: 3,
                max_sampling: (2, 2),
                restart_interval: 64,
                sof_at: 0,
                data_at: 0,
            },
            tile,
        }
    }

    #[test]
    fn the_dct_shrink_stacks_on_the_derived_scale_within_one_eighth() {
        // A native level four times the thumbnail: shrink by 2 on decoding.
        assert_eq!(
            scales(&stream((1024, 16)), 1, (4096, 3072), (1024, 768)),
            (2, 2)
        );
        // A derived 1/2 level eight times the thumbnail: 1/4 more, 1/8 in total.
        assert_eq!(
            scales(&stream((1024, 16)), 2, (8192, 6144), (1024, 768)),
            (4, 8)
        );
        // Never past 1/8, and only exact divisions of the tile.
        assert_eq!(
            scales(&stream((1024, 16)), 4, (16384, 12288), (1024, 768)),
            (2, 8)
        );
        assert_eq!(
            scales(&stream((1024, 8)), 4, (16384, 12288), (1024, 768)),
            (2, 8)
        );
        assert_eq!(
            scales(&stream((1024, 8)), 8, (16384, 12288), (1024, 768)),
            (1, 8)
        );
        assert_eq!(
            scales(&stream((1000, 4)), 2, (8000, 6000), (1000, 750)),
            (2, 4)
        );
        assert_eq!(
            scales(&stream((1000, 2)), 2, (8000, 6000), (1000, 750)),
            (1, 2)
        );
    }
}
