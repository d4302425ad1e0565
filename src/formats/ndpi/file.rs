//! Hamamatsu NDPI: a classic little-endian TIFF "pretending to be BigTIFF", and the
//! pyramid OpenSlide 3.4.1 builds from it.
//!
//! Why a reader of its own: NDPI stores 8-byte directory offsets (header and next-IFD
//! links) and, after each directory, a block of high-32-bit extensions, one per entry,
//! for offsets past 4 GiB. [`crate::tiff::reader`] reads classic TIFF; this module reads the
//! NDPI layout, so the ranged planner can name every byte a thumbnail needs (the whole
//! directory with its extension block) and the direct decoder can find each level's
//! single JPEG stream. Each level is one JPEG in one strip, cut into tiles by its
//! restart markers; [`levels`] reproduces OpenSlide 3.4.1's level list (native levels
//! plus the 1/2, 1/4, 1/8 levels it derives with libjpeg's DCT scaling), so the engine,
//! the planner and OpenSlide agree on which level is read.
//!
//! Detection is OpenSlide's: the first directory, read NDPI-style, holds tag 65420.
//! Ceilings (directories, entries, array lengths, the header prefix) keep a hostile
//! header from driving allocation or looping.

use std::io::{Read, Seek, SeekFrom};

use crate::tiff::jpeg_header::{self, JpegHeader, JpegHeaderError};
use crate::tiff::tags;

const MAX_DIRECTORIES: usize = 1024;
const MAX_ENTRIES: u64 = 4096;
/// Arrays (McuStarts) beyond this many values are refused.
const MAX_ARRAY: u64 = 16 * 1024 * 1024;
/// How much of a strip's start is read to find its JPEG header (OpenSlide reads the
/// header of every level at open; the ranged planner fetches this prefix for each).
pub const HEADER_PREFIX: u64 = 64 * 1024;

/// Hamamatsu private tags.
pub const SOURCE_LENS: u16 = 65421;
pub const FOCAL_PLANE: u16 = 65424;
pub const MCU_STARTS: u16 = 65426;
/// tifffile's high-byte arrays; no OpenSlide version reads them.
const OFFSET_HIGH_BYTES: u16 = 65324;
const BYTE_COUNT_HIGH_BYTES: u16 = 65325;
const X_RESOLUTION: u16 = 282;
const RESOLUTION_UNIT: u16 = 296;
const ROWS_PER_STRIP: u16 = 278;

#[derive(Debug, thiserror::Error)]
pub enum NdpiError {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an NDPI file")]
    NotNdpi,
    #[error("malformed NDPI: {0}")]
    Malformed(String),
    /// A layout OpenSlide 3.4.1 reads differently from us, or not at all.
    #[error("NDPI layout not handled: {0}")]
    Unhandled(String),
}

fn malformed(m: impl Into<String>) -> NdpiError {
    NdpiError::Malformed(m.into())
}

#[derive(Debug, Clone)]
struct Entry {
    tag: u16,
    field_type: u16,
    count: u64,
    /// The 4-byte value field extended by the entry's high 32 bits.
    value: u64,
    /// The raw 4 value bytes (for inline values of several items).
    raw: [u8; 4],
    /// Where the values are when they do not fit in the entry.
    offset: Option<u64>,
}

/// One NDPI directory: its entries and where it lies.
#[derive(Debug, Clone)]
pub struct NdpiDirectory {
    /// Entry count, entries, 8-byte next offset and the extension block.
    pub ifd_offset: u64,
    pub ifd_len: u64,
    /// True when OpenSlide 3.4.1's offset heuristic (it ignores the extension block)
    /// would place some out-of-line value elsewhere than the extensions say.
    pub heuristic_disagrees: bool,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
pub struct NdpiFile {
    pub file_len: u64,
    pub directories: Vec<NdpiDirectory>,
}

fn type_size(t: u16) -> Option<u64> {
    Some(match t {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => return None,
    })
}

/// OpenSlide 3.4.1's `fix_offset_ndpi`: the largest offset with these low 32 bits
/// below the directory's own offset.
fn fix_offset_ndpi(diroff: u64, offset: u64) -> u64 {
    let result = (diroff & !u64::from(u32::MAX)) | (offset & u64::from(u32::MAX));
    if result >= diroff {
        result.wrapping_sub(1 << 32).min(result)
    } else {
        result
    }
}

impl NdpiFile {
    /// Reads the header and the directory chain; `Err(NotNdpi)` for anything that is
    /// not a little-endian TIFF whose first directory, read NDPI-style, has tag 65420.
    pub fn read<R: Read + Seek>(r: &mut R) -> Result<NdpiFile, NdpiError> {
        let file_len = r.seek(SeekFrom::End(0))?;
        let mut header = [0u8; 12];
        if file_len < 12 {
            return Err(NdpiError::NotNdpi);
        }
        read_at(r, 0, &mut header)?;
        if header[..4] != *b"II*\0" {
            return Err(NdpiError::NotNdpi);
        }
        let mut next = u64_le(&header[4..12]);
        let mut directories: Vec<NdpiDirectory> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while next != 0 {
            if directories.len() >= MAX_DIRECTORIES || !seen.insert(next) {
                return Err(malformed("the directory chain loops or is too long"));
            }
            if next >= file_len {
                if directories.is_empty() {
                    return Err(NdpiError::NotNdpi);
                }
                return Err(malformed(format!(
                    "directory offset {next} is past the end of the file ({file_len} bytes)"
                )));
            }
            let (dir, following) = match read_directory(r, next, file_len) {
                Ok(d) => d,
                Err(NdpiError::Malformed(_)) if directories.is_empty() => {
                    return Err(NdpiError::NotNdpi);
                }
                Err(e) => return Err(e),
            };
            if directories.is_empty() && dir.entry(tags::NDPI_FORMAT_FLAG).is_none() {
                return Err(NdpiError::NotNdpi);
            }
            directories.push(dir);
            next = following;
        }
        if directories.is_empty() {
            return Err(NdpiError::NotNdpi);
        }
        Ok(NdpiFile {
            file_len,
            directories,
        })
    }
}

fn u64_le(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn read_at<R: Read + Seek>(r: &mut R, offset: u64, buf: &mut [u8]) -> Result<(), NdpiError> {
    r.seek(SeekFrom::Start(offset))?;
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            malformed(format!(
                "{} bytes at offset {offset} run past the end of the file",
                buf.len()
            ))
        } else {
            NdpiError::Io(e)
        }
    })
}

fn read_directory<R: Read + Seek>(
    r: &mut R,
    ifd_offset: u64,
    file_len: u64,
) -> Result<(NdpiDirectory, u64), NdpiError> {
    let mut count = [0u8; 2];
    read_at(r, ifd_offset, &mut count)?;
    let count = u64::from(u16::from_le_bytes(count));
    if count == 0 || count > MAX_ENTRIES {
        return Err(malformed(format!("a directory with {count} entries")));
    }
    // Entries, the 8-byte next offset, then one 4-byte extension per entry.
    let body_len = count * 12 + 8 + count * 4;
    let mut body = vec![0u8; body_len as usize];
    read_at(r, ifd_offset + 2, &mut body)?;
    let next = u64_le(&body[(count * 12) as usize..]);
    let extensions = &body[(count * 12 + 8) as usize..];
    let mut entries = Vec::with_capacity(count as usize);
    let mut heuristic_disagrees = false;
    for i in 0..count as usize {
        let e = &body[i * 12..i * 12 + 12];
        let field_type = u16::from_le_bytes([e[2], e[3]]);
        let count = u64::from(u32_le(&e[4..8]));
        let raw = [e[8], e[9], e[10], e[11]];
        let high = u64::from(u32_le(&extensions[i * 4..]));
        let value = u64::from(u32_le(&raw)) | (high << 32);
        let size = type_size(field_type)
            .ok_or_else(|| malformed(format!("unknown field type {field_type}")))?;
        let offset = (size.saturating_mul(count) > 4).then_some(value);
        if let Some(o) = offset {
            if o.saturating_add(size * count) > file_len {
                return Err(malformed(format!(
                    "tag {} values at {o} run past the end of the file",
                    u16::from_le_bytes([e[0], e[1]])
                )));
            }
            heuristic_disagrees |= fix_offset_ndpi(ifd_offset, o) != o;
        }
        entries.push(Entry {
            tag: u16::from_le_bytes([e[0], e[1]]),
            field_type,
            count,
            value,
            raw,
            offset,
        });
    }
    let dir = NdpiDirectory {
        ifd_offset,
        ifd_len: 2 + body_len,
        heuristic_disagrees,
        entries,
    };
    Ok((dir, next))
}

impl NdpiDirectory {
    fn entry(&self, tag: u16) -> Option<&Entry> {
        self.entries.iter().find(|e| e.tag == tag)
    }

    pub fn has_tag(&self, tag: u16) -> bool {
        self.entry(tag).is_some()
    }

    /// `(offset, length)` of every value stored outside its entry.
    pub fn out_of_line(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.entries
            .iter()
            .filter_map(|e| Some((e.offset?, type_size(e.field_type)?.saturating_mul(e.count))))
    }

    /// The single value of an inline unsigned tag (a LONG extended to 64 bits).
    pub fn uint(&self, tag: u16) -> Option<u64> {
        let e = self.entry(tag)?;
        if e.count != 1 || e.offset.is_some() {
            return None;
        }
        match e.field_type {
            3 => Some(u64::from(u16::from_le_bytes([e.raw[0], e.raw[1]]))),
            4 | 13 => Some(e.value),
            1 => Some(u64::from(e.raw[0])),
            _ => None,
        }
    }

    /// The single value of an inline signed or floating tag, as OpenSlide reads it.
    pub fn number(&self, tag: u16) -> Option<f64> {
        let e = self.entry(tag)?;
        if e.count != 1 || e.offset.is_some() {
            return None;
        }
        Some(match e.field_type {
            11 => f64::from(f32::from_le_bytes(e.raw)),
            9 => f64::from(i32::from_le_bytes(e.raw)),
            8 => f64::from(i16::from_le_bytes([e.raw[0], e.raw[1]])),
            3 => f64::from(u16::from_le_bytes([e.raw[0], e.raw[1]])),
            4 => f64::from(u32::from_le_bytes(e.raw)),
            _ => return None,
        })
    }

    /// The first RATIONAL of a tag (XResolution), read from the file.
    pub fn rational<R: Read + Seek>(&self, r: &mut R, tag: u16) -> Result<Option<f64>, NdpiError> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        let (5, Some(offset)) = (e.field_type, e.offset) else {
            return Ok(None);
        };
        let mut b = [0u8; 8];
        read_at(r, offset, &mut b)?;
        Ok(Some(f64::from(u32_le(&b)) / f64::from(u32_le(&b[4..]))))
    }

    /// All values of a LONG array tag (McuStarts), at most `max`.
    pub fn uints<R: Read + Seek>(
        &self,
        r: &mut R,
        tag: u16,
    ) -> Result<Option<Vec<u64>>, NdpiError> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        if e.field_type != 4 || e.count > MAX_ARRAY {
            return Err(malformed(format!(
                "tag {tag} is not a plausible LONG array"
            )));
        }
        let Some(offset) = e.offset else {
            return Ok(Some(vec![e.value & u64::from(u32::MAX)]));
        };
        let mut b = vec![0u8; (e.count * 4) as usize];
        read_at(r, offset, &mut b)?;
        Ok(Some(
            b.chunks_exact(4).map(|c| u64::from(u32_le(c))).collect(),
        ))
    }

    fn required(&self, tag: u16) -> Result<u64, NdpiError> {
        self.uint(tag)
            .ok_or_else(|| malformed(format!("tag {tag} is missing or not a single integer")))
    }
}

/// A native level's stream: the directory's strip and what its JPEG header says.
#[derive(Debug, Clone)]
pub struct Stream {
    pub dir: usize,
    pub width: u64,
    pub height: u64,
    pub offset: u64,
    pub len: u64,
    pub header: JpegHeader,
    /// OpenSlide's tile: restart interval x MCU width by MCU height (the whole image
    /// when there are no restart markers).
    pub tile: (u32, u32),
}

impl Stream {
    /// Tiles OpenSlide paints (floor: a partial last column or row is never painted).
    pub fn tiles(&self) -> (u64, u64) {
        (
            self.width / u64::from(self.tile.0),
            self.height / u64::from(self.tile.1),
        )
    }

    /// Restart-interval chunks in the stream across and down (ceil: every MCU is coded).
    pub fn chunks(&self) -> (u64, u64) {
        let (mw, mh) = self.header.mcu();
        let mcus_across = self.width.div_ceil(u64::from(mw));
        let ri = u64::from(self.header.restart_interval.max(1));
        if self.header.restart_interval == 0 {
            return (1, 1);
        }
        (mcus_across / ri, self.height.div_ceil(u64::from(mh)))
    }
}

/// One of OpenSlide's levels: a native stream decoded at 1/`scale`.
#[derive(Debug, Clone)]
pub struct NdpiLevel {
    pub width: u64,
    pub height: u64,
    pub stream: usize,
    pub scale: u32,
}

/// The pyramid as OpenSlide 3.4.1 builds it: the native streams (directory order)
/// and the levels, largest first.
#[derive(Debug, Clone)]
pub struct Pyramid {
    pub streams: Vec<Stream>,
    pub levels: Vec<NdpiLevel>,
    /// The native level OpenSlide hashes for `quickhash-1` (the narrowest).
    pub smallest: usize,
}

/// Reads every pyramid directory's JPEG header and builds the level list.
pub fn pyramid<R: Read + Seek>(r: &mut R, file: &NdpiFile) -> Result<Pyramid, NdpiError> {
    let mut streams: Vec<Stream> = Vec::new();
    for (index, dir) in file.directories.iter().enumerate() {
        let (width, height) = (
            dir.required(tags::IMAGE_WIDTH)?,
            dir.required(tags::IMAGE_LENGTH)?,
        );
        if dir.required(ROWS_PER_STRIP)? != height {
            return Err(malformed(format!(
                "directory {index}: rows per strip is not the height"
            )));
        }
        let lens = dir
            .number(SOURCE_LENS)
            .ok_or_else(|| malformed(format!("directory {index} has no source lens")))?;
        if lens <= 0.0 {
            continue;
        }
        if dir
            .number(FOCAL_PLANE)
            .ok_or_else(|| malformed("no focal plane"))?
            != 0.0
        {
            continue;
        }
        if streams.last().is_some_and(|s| width >= s.width) {
            return Err(malformed(
                "unexpected directory layout (widths do not decrease)",
            ));
        }
        streams.push(stream(r, file, index, (width, height))?);
    }
    if streams.is_empty() {
        return Err(malformed("no pyramid levels"));
    }
    let smallest = streams.len() - 1;
    Ok(Pyramid {
        levels: level_list(&streams),
        streams,
        smallest,
    })
}

fn stream<R: Read + Seek>(
    r: &mut R,
    file: &NdpiFile,
    index: usize,
    (width, height): (u64, u64),
) -> Result<Stream, NdpiError> {
    let dir = &file.directories[index];
    let offset = dir.required(tags::STRIP_OFFSETS)?;
    let len = dir.required(tags::STRIP_BYTE_COUNTS)?;
    if offset
        .checked_add(len)
        .is_none_or(|end| end > file.file_len)
        || len < 4
    {
        return Err(malformed(format!(
            "directory {index}: the strip lies outside the file"
        )));
    }
    if fix_offset_ndpi(dir.ifd_offset, offset) != offset
        || dir.heuristic_disagrees
        || dir.has_tag(OFFSET_HIGH_BYTES)
        || dir.has_tag(BYTE_COUNT_HIGH_BYTES)
    {
        return Err(NdpiError::Unhandled(format!(
            "directory {index}: offsets OpenSlide 3.4.1 would guess differently"
        )));
    }
    let mut prefix = vec![0u8; len.min(HEADER_PREFIX) as usize];
    read_at(r, offset, &mut prefix)?;
    let header = jpeg_header::parse(&prefix).map_err(|e| match e {
        JpegHeaderError::Unsupported(_) | JpegHeaderError::Truncated(_) => {
            NdpiError::Unhandled(format!("directory {index}: {e}"))
        }
        JpegHeaderError::Malformed(_) => malformed(format!("directory {index}: {e}")),
    })?;
    if header.components != 3 {
        return Err(malformed(format!(
            "directory {index}: JPEG components != 3"
        )));
    }
    let tile = if header.restart_interval == 0 {
        (width as u32, height as u32)
    } else {
        if (u64::from(header.width), u64::from(header.height)) != (width, height) {
            return Err(malformed(format!(
                "directory {index}: the JPEG is {} x {}, the directory says {width} x {height}",
                header.width, header.height
            )));
        }
        let (mw, mh) = header.mcu();
        let mcus = width.div_ceil(u64::from(mw));
        let ri = u64::from(header.restart_interval);
        if ri > mcus || mcus % ri != 0 {
            return Err(malformed(format!(
                "directory {index}: restart interval {ri} does not divide {mcus} MCUs per row"
            )));
        }
        (mw * u32::from(header.restart_interval), mh)
    };
    if tile.0 == 0 || tile.1 == 0 {
        return Err(malformed(format!("directory {index}: empty image")));
    }
    Ok(Stream {
        dir: index,
        width,
        height,
        offset,
        len,
        header,
        tile,
    })
}

/// `create_scaled_jpeg_levels`: each stream, then its 1/2, 1/4, 1/8 versions where
/// the tile divides, keyed by width (a later level replaces an earlier one of the
/// same width), sorted by width, largest first.
fn level_list(streams: &[Stream]) -> Vec<NdpiLevel> {
    let mut by_width: std::collections::BTreeMap<u64, NdpiLevel> = Default::default();
    for (i, s) in streams.iter().enumerate() {
        for scale in [1u32, 2, 4, 8] {
            if scale > 1 && (s.tile.0 % scale != 0 || s.tile.1 % scale != 0) {
                continue;
            }
            let level = NdpiLevel {
                width: s.width / u64::from(scale),
                height: s.height / u64::from(scale),
                stream: i,
                scale,
            };
            by_width.insert(level.width, level);
        }
    }
    by_width.into_values().rev().collect()
}

/// What OpenSlide reports for an NDPI slide, computed the way it computes it: level 0
/// size from directory 0, `mpp` = 10000 / XResolution when the unit is centimetres,
/// objective power = SourceLens of directory 0.
#[derive(Debug, Clone, PartialEq)]
pub struct NdpiMetadata {
    pub width: u64,
    pub height: u64,
    pub mpp: Option<f64>,
    pub objective_power: Option<f64>,
}

pub fn metadata<R: Read + Seek>(r: &mut R, file: &NdpiFile) -> Result<NdpiMetadata, NdpiError> {
    const CENTIMETER: u64 = 3;
    let dir = &file.directories[0];
    let unit = dir.uint(RESOLUTION_UNIT).unwrap_or(2);
    let mpp = match dir.rational(r, X_RESOLUTION)? {
        Some(res) if unit == CENTIMETER => Some(10000.0 / res),
        _ => None,
    };
    Ok(NdpiMetadata {
        width: dir.required(tags::IMAGE_WIDTH)?,
        height: dir.required(tags::IMAGE_LENGTH)?,
        mpp,
        objective_power: dir.number(SOURCE_LENS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openslide_offset_heuristic_keeps_offsets_below_the_directory() {
        assert_eq!(fix_offset_ndpi(5000, 4000), 4000);
        assert_eq!(fix_offset_ndpi(5000, 6000), 6000);
        let dir = (1u64 << 32) + 100;
        assert_eq!(fix_offset_ndpi(dir, 50), (1 << 32) + 50);
        assert_eq!(fix_offset_ndpi(dir, 200), 200);
    }

    fn stream_of(width: u64, tile: (u32, u32)) -> Stream {
        Stream {
            dir: 0,
            width,
            height: width,
            offset: 0,
            len: 0,
            header: JpegHeader {
                width: width as u32,
                height: width as u32,
                components: 3,
                max_sampling: (1, 1),
                restart_interval: 1,
                sof_at: 0,
                data_at: 0,
            },
            tile,
        }
    }

    #[test]
    fn derived_levels_are_replaced_by_native_ones_of_the_same_width() {
        // The shared file: 3968, 1984, 992, 496 wide, 8-pixel-high tiles.
        let streams: Vec<Stream> = [3968u64, 1984, 992, 496]
            .iter()
            .map(|&w| stream_of(w, (w as u32, 8)))
            .collect();
        let levels = level_list(&streams);
        let widths: Vec<u64> = levels.iter().map(|l| l.width).collect();
        assert_eq!(widths, vec![3968, 1984, 992, 496, 248, 124, 62]);
        assert!(levels[..4].iter().all(|l| l.scale == 1));
        assert_eq!((levels[6].stream, levels[6].scale), (3, 8));
    }
}
