//! A small, defensive TIFF/BigTIFF directory reader.
//!
//! OpenSlide opens and describes slides; this reader exists for the two things OpenSlide
//! cannot do for us: refuse a decompression bomb *before* any library allocates for it,
//! and locate the raw JPEG tiles of one level so the fast decoder can read them directly.
//! It reads directory entries only; large arrays (tile offsets, JPEG tables) are loaded on
//! demand and only within explicit bounds, so a hostile header cannot make it allocate.

use std::io::{Read, Seek, SeekFrom};

use super::tags;

/// Hard ceilings that keep a hostile file from driving allocation or looping forever.
const MAX_DIRECTORIES: usize = 1024;
const MAX_ENTRIES_PER_DIRECTORY: u64 = 4096;
/// Tile arrays beyond this many entries are refused (a 1M x 1M slide with 240-px tiles
/// has about 17M tiles).
const MAX_TILE_ENTRIES: u64 = 64 * 1024 * 1024;
const MAX_BLOB_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TiffError {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a TIFF file")]
    NotTiff,
    #[error("malformed TIFF: {0}")]
    Malformed(String),
}

fn malformed(msg: impl Into<String>) -> TiffError {
    TiffError::Malformed(msg.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        }
    }
    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }
    fn u64(self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        match self {
            Endian::Little => u64::from_le_bytes(a),
            Endian::Big => u64::from_be_bytes(a),
        }
    }
}

/// One raw directory entry: where its values live, not the values themselves.
#[derive(Debug, Clone)]
struct Entry {
    tag: u16,
    field_type: u16,
    count: u64,
    /// The value bytes when they fit in the entry, else empty.
    inline: Vec<u8>,
    /// File offset of the values when they do not fit inline.
    offset: Option<u64>,
}

fn type_size(field_type: u16) -> Option<u64> {
    Some(match field_type {
        1 | 2 | 6 | 7 => 1,              // BYTE, ASCII, SBYTE, UNDEFINED
        3 | 8 => 2,                      // SHORT, SSHORT
        4 | 9 | 11 | 13 => 4,            // LONG, SLONG, FLOAT, IFD
        5 | 10 | 12 | 16 | 17 | 18 => 8, // RATIONAL, SRATIONAL, DOUBLE, LONG8, SLONG8, IFD8
        _ => return None,
    })
}

/// The scalar facts of one image file directory, plus lazy access to its arrays.
#[derive(Debug, Clone)]
pub struct Directory {
    pub width: u64,
    pub height: u64,
    pub tile_width: Option<u32>,
    pub tile_height: Option<u32>,
    pub compression: u16,
    pub photometric: Option<u16>,
    pub samples_per_pixel: u16,
    pub bits_per_sample: u16,
    pub planar_config: u16,
    pub subfile_type: u32,
    /// Where the directory itself lies in the file: entry count, entries, next offset.
    pub ifd_offset: u64,
    pub ifd_len: u64,
    entries: Vec<Entry>,
}

impl Directory {
    pub fn is_tiled(&self) -> bool {
        self.tile_width.is_some() && self.tile_height.is_some()
    }

    fn entry(&self, tag: u16) -> Option<&Entry> {
        self.entries.iter().find(|e| e.tag == tag)
    }

    /// `(offset, length)` of every value stored outside its entry (arrays, long
    /// strings, JPEG tables): what any TIFF library reads when it loads the directory.
    pub fn out_of_line(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.entries.iter().filter_map(|e| {
            let offset = e.offset?;
            Some((offset, type_size(e.field_type)?.saturating_mul(e.count)))
        })
    }

    /// Where a tag's values lie when they are stored out of line: two directories
    /// whose tile arrays share this offset describe the same tiles, and are read once.
    pub fn value_offset(&self, tag: u16) -> Option<u64> {
        self.entry(tag)?.offset
    }

    pub fn has_tag(&self, tag: u16) -> bool {
        self.entry(tag).is_some()
    }

    /// The TIFF field type a tag is stored with ([`tags::FIELD_RATIONAL`], say), when present.
    pub fn field_type(&self, tag: u16) -> Option<u16> {
        self.entry(tag).map(|e| e.field_type)
    }

    /// Number of tiles across and down, when tiled with non-zero tile sizes.
    pub fn tile_grid(&self) -> Option<(u64, u64)> {
        let (tw, th) = (u64::from(self.tile_width?), u64::from(self.tile_height?));
        if tw == 0 || th == 0 {
            return None;
        }
        Some((self.width.div_ceil(tw), self.height.div_ceil(th)))
    }

    /// The number of tiles, once the tile arrays' declared lengths are checked against
    /// the grid (before anything is read: a hostile length must not decide how much is
    /// read or allocated).
    pub fn tile_entries(&self) -> Result<u64, TiffError> {
        let (across, down) = self
            .tile_grid()
            .ok_or_else(|| malformed("directory is not tiled"))?;
        let expected = across
            .checked_mul(down)
            .filter(|n| *n <= MAX_TILE_ENTRIES)
            .ok_or_else(|| malformed("too many tiles"))?;
        for tag in [tags::TILE_OFFSETS, tags::TILE_BYTE_COUNTS] {
            let count = self.entry(tag).map_or(0, |e| e.count);
            if count != expected {
                return Err(malformed(format!(
                    "tag {tag} holds {count} values for a {across} x {down} grid"
                )));
            }
        }
        Ok(expected)
    }
}

/// An open TIFF: the byte order, the flavour and its directories in file order.
#[derive(Debug, Clone)]
pub struct TiffFile {
    endian: Endian,
    bigtiff: bool,
    pub directories: Vec<Directory>,
}

impl TiffFile {
    /// Reads the header and the whole directory chain, without any large arrays.
    pub fn read<R: Read + Seek>(r: &mut R) -> Result<TiffFile, TiffError> {
        let mut header = [0u8; 16];
        r.seek(SeekFrom::Start(0))?;
        let n = read_up_to(r, &mut header)?;
        if n < 8 {
            return Err(TiffError::NotTiff);
        }
        let endian = match &header[..2] {
            b"II" => Endian::Little,
            b"MM" => Endian::Big,
            _ => return Err(TiffError::NotTiff),
        };
        let (bigtiff, mut next) = match endian.u16(&header[2..4]) {
            42 => (false, u64::from(endian.u32(&header[4..8]))),
            43 => {
                if n < 16 || endian.u16(&header[4..6]) != 8 {
                    return Err(malformed("bad BigTIFF header"));
                }
                (true, endian.u64(&header[8..16]))
            }
            _ => return Err(TiffError::NotTiff),
        };
        let file_len = r.seek(SeekFrom::End(0))?;
        let mut directories = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while next != 0 {
            if directories.len() >= MAX_DIRECTORIES || !seen.insert(next) {
                return Err(malformed("directory chain loops or is too long"));
            }
            if next >= file_len {
                return Err(malformed(format!(
                    "directory offset {next} is past the end of the file ({file_len} bytes); the file is shorter than its directories say"
                )));
            }
            let (dir, following) = read_directory(r, endian, bigtiff, next)?;
            directories.push(dir);
            next = following;
        }
        if directories.is_empty() {
            return Err(malformed("no image directories"));
        }
        Ok(TiffFile {
            endian,
            bigtiff,
            directories,
        })
    }

    pub fn is_bigtiff(&self) -> bool {
        self.bigtiff
    }

    /// Tile offsets and byte counts of a tiled directory, checked against its grid.
    pub fn tile_locations<R: Read + Seek>(
        &self,
        r: &mut R,
        dir: &Directory,
    ) -> Result<(Vec<u64>, Vec<u64>), TiffError> {
        let expected = dir.tile_entries()?;
        let offsets = self.read_uints(r, dir, tags::TILE_OFFSETS, MAX_TILE_ENTRIES)?;
        let counts = self.read_uints(r, dir, tags::TILE_BYTE_COUNTS, MAX_TILE_ENTRIES)?;
        if offsets.len() as u64 != expected || counts.len() as u64 != expected {
            return Err(malformed(format!(
                "tile arrays hold {} offsets and {} counts for {expected} tiles",
                offsets.len(),
                counts.len()
            )));
        }
        Ok((offsets, counts))
    }

    /// The first value of an unsigned integer tag (the first strip or tile's offset or
    /// byte count), reading only that value, not the whole array.
    pub fn first_uint<R: Read + Seek>(
        &self,
        r: &mut R,
        dir: &Directory,
        tag: u16,
    ) -> Result<Option<u64>, TiffError> {
        let Some(entry) = dir.entry(tag) else {
            return Ok(None);
        };
        let size = type_size(entry.field_type).unwrap_or(1);
        if entry.count == 0 {
            return Ok(None);
        }
        let bytes = match entry.offset {
            None => match entry.inline.get(..size as usize) {
                Some(b) => b.to_vec(),
                None => return Ok(None),
            },
            Some(offset) => {
                let mut buf = vec![0u8; size as usize];
                r.seek(SeekFrom::Start(offset))?;
                r.read_exact(&mut buf)?;
                buf
            }
        };
        Ok(decode_uints(self.endian, entry.field_type, &bytes).and_then(|v| v.first().copied()))
    }

    /// The first value of a RATIONAL tag as (numerator, denominator); `None` when the
    /// tag is absent, empty or of another type.
    pub fn first_rational<R: Read + Seek>(
        &self,
        r: &mut R,
        dir: &Directory,
        tag: u16,
    ) -> Result<Option<(u32, u32)>, TiffError> {
        let Some(entry) = dir.entry(tag) else {
            return Ok(None);
        };
        if entry.field_type != tags::FIELD_RATIONAL || entry.count == 0 {
            return Ok(None);
        }
        let mut bytes = [0u8; 8];
        match entry.offset {
            None => match entry.inline.get(..8) {
                Some(b) => bytes.copy_from_slice(b),
                None => return Ok(None),
            },
            Some(offset) => {
                r.seek(SeekFrom::Start(offset))?;
                r.read_exact(&mut bytes)?;
            }
        }
        Ok(Some((
            self.endian.u32(&bytes[..4]),
            self.endian.u32(&bytes[4..]),
        )))
    }

    /// The raw bytes of a BYTE/UNDEFINED/ASCII tag (such as JPEGTables), if present.
    pub fn read_blob<R: Read + Seek>(
        &self,
        r: &mut R,
        dir: &Directory,
        tag: u16,
    ) -> Result<Option<Vec<u8>>, TiffError> {
        let Some(entry) = dir.entry(tag) else {
            return Ok(None);
        };
        if !matches!(entry.field_type, 1 | 2 | 7) {
            return Err(malformed(format!("tag {tag} is not a byte array")));
        }
        if entry.count > MAX_BLOB_BYTES {
            return Err(malformed(format!("tag {tag} is implausibly large")));
        }
        self.entry_bytes(r, entry).map(Some)
    }

    /// An ASCII tag as text (lossy), without its trailing NULs.
    pub fn read_ascii<R: Read + Seek>(
        &self,
        r: &mut R,
        dir: &Directory,
        tag: u16,
    ) -> Result<Option<String>, TiffError> {
        Ok(self.read_blob(r, dir, tag)?.map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .trim_end_matches('\0')
                .to_string()
        }))
    }

    fn entry_bytes<R: Read + Seek>(&self, r: &mut R, entry: &Entry) -> Result<Vec<u8>, TiffError> {
        let size = type_size(entry.field_type).unwrap_or(1) * entry.count;
        match entry.offset {
            None => Ok(entry.inline[..size as usize].to_vec()),
            Some(offset) => {
                let mut buf = vec![0u8; size as usize];
                r.seek(SeekFrom::Start(offset))?;
                r.read_exact(&mut buf).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        malformed(
                            "tag data runs past the end of the file; the file is shorter than its directories say",
                        )
                    } else {
                        TiffError::Io(e)
                    }
                })?;
                Ok(buf)
            }
        }
    }

    fn read_uints<R: Read + Seek>(
        &self,
        r: &mut R,
        dir: &Directory,
        tag: u16,
        max: u64,
    ) -> Result<Vec<u64>, TiffError> {
        let entry = dir
            .entry(tag)
            .ok_or_else(|| malformed(format!("missing tag {tag}")))?;
        if entry.count > max {
            return Err(malformed(format!("tag {tag} has too many values")));
        }
        let bytes = self.entry_bytes(r, entry)?;
        decode_uints(self.endian, entry.field_type, &bytes)
            .ok_or_else(|| malformed(format!("tag {tag} is not an unsigned integer array")))
    }
}

fn decode_uints(endian: Endian, field_type: u16, bytes: &[u8]) -> Option<Vec<u64>> {
    Some(match field_type {
        1 | 7 => bytes.iter().map(|b| u64::from(*b)).collect(),
        3 => bytes
            .chunks_exact(2)
            .map(|c| u64::from(endian.u16(c)))
            .collect(),
        4 | 13 => bytes
            .chunks_exact(4)
            .map(|c| u64::from(endian.u32(c)))
            .collect(),
        16 | 18 => bytes.chunks_exact(8).map(|c| endian.u64(c)).collect(),
        _ => return None,
    })
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn read_directory<R: Read + Seek>(
    r: &mut R,
    endian: Endian,
    bigtiff: bool,
    offset: u64,
) -> Result<(Directory, u64), TiffError> {
    let truncated = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            malformed(
                "a directory runs past the end of the file; the file is shorter than its directories say",
            )
        } else {
            TiffError::Io(e)
        }
    };
    r.seek(SeekFrom::Start(offset))?;
    let (count, entry_len, inline_len) = if bigtiff {
        let mut b = [0u8; 8];
        r.read_exact(&mut b).map_err(truncated)?;
        (endian.u64(&b), 20usize, 8usize)
    } else {
        let mut b = [0u8; 2];
        r.read_exact(&mut b).map_err(truncated)?;
        (u64::from(endian.u16(&b)), 12usize, 4usize)
    };
    if count == 0 || count > MAX_ENTRIES_PER_DIRECTORY {
        return Err(malformed(format!("directory with {count} entries")));
    }
    let next_len = if bigtiff { 8 } else { 4 };
    let mut block = vec![0u8; count as usize * entry_len + next_len];
    r.read_exact(&mut block).map_err(truncated)?;

    let mut entries = Vec::with_capacity(count as usize);
    for raw in block[..count as usize * entry_len].chunks_exact(entry_len) {
        let tag = endian.u16(&raw[0..2]);
        let field_type = endian.u16(&raw[2..4]);
        let (count, value) = if bigtiff {
            (endian.u64(&raw[4..12]), &raw[12..20])
        } else {
            (u64::from(endian.u32(&raw[4..8])), &raw[8..12])
        };
        // Unknown types are skipped, as libtiff does.
        let Some(size) = type_size(field_type) else {
            continue;
        };
        let total = size
            .checked_mul(count)
            .ok_or_else(|| malformed(format!("tag {tag} overflows")))?;
        let (inline, offset) = if total <= inline_len as u64 {
            (value.to_vec(), None)
        } else if bigtiff {
            (Vec::new(), Some(endian.u64(value)))
        } else {
            (Vec::new(), Some(u64::from(endian.u32(value))))
        };
        entries.push(Entry {
            tag,
            field_type,
            count,
            inline,
            offset,
        });
    }
    let tail = &block[count as usize * entry_len..];
    let next = if bigtiff {
        endian.u64(tail)
    } else {
        u64::from(endian.u32(tail))
    };

    let scalar = |tag: u16| -> Option<u64> {
        let e = entries.iter().find(|e| e.tag == tag)?;
        // Multi-valued tags stored out of line (BitsPerSample of 3 channels) are not
        // chased: the first value would do, and the callers have safe defaults.
        if e.offset.is_some() {
            return None;
        }
        decode_uints(endian, e.field_type, &e.inline)?
            .first()
            .copied()
    };
    let width = scalar(tags::IMAGE_WIDTH).ok_or_else(|| malformed("missing ImageWidth"))?;
    let height = scalar(tags::IMAGE_LENGTH).ok_or_else(|| malformed("missing ImageLength"))?;
    let dir = Directory {
        width,
        height,
        tile_width: scalar(tags::TILE_WIDTH).and_then(|v| u32::try_from(v).ok()),
        tile_height: scalar(tags::TILE_LENGTH).and_then(|v| u32::try_from(v).ok()),
        compression: scalar(tags::COMPRESSION).map_or(1, |v| v as u16),
        photometric: scalar(tags::PHOTOMETRIC).map(|v| v as u16),
        samples_per_pixel: scalar(tags::SAMPLES_PER_PIXEL).map_or(1, |v| v as u16),
        // Stored out of line for 3 samples in classic TIFF (6 bytes): default to 8, which
        // the fast path double-checks against the decoded JPEG anyway.
        bits_per_sample: scalar(tags::BITS_PER_SAMPLE).map_or(8, |v| v as u16),
        planar_config: scalar(tags::PLANAR_CONFIG).map_or(1, |v| v as u16),
        subfile_type: scalar(tags::NEW_SUBFILE_TYPE).map_or(0, |v| v as u32),
        ifd_offset: offset,
        ifd_len: (if bigtiff { 8 } else { 2 }) + block.len() as u64,
        entries,
    };
    Ok((dir, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn rejects_non_tiff_and_empty_input() {
        assert!(matches!(
            TiffFile::read(&mut Cursor::new(Vec::<u8>::new())),
            Err(TiffError::NotTiff)
        ));
        assert!(matches!(
            TiffFile::read(&mut Cursor::new(b"GIF89a-not-a-tiff".to_vec())),
            Err(TiffError::NotTiff)
        ));
    }

    #[test]
    fn rejects_directory_offset_past_end() {
        let mut bytes = b"II*\0".to_vec();
        bytes.extend_from_slice(&1000u32.to_le_bytes());
        let err = TiffFile::read(&mut Cursor::new(bytes)).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
    }

    #[test]
    fn rejects_a_directory_that_points_to_itself() {
        // Header, then one directory at offset 8 with one entry and next = 8.
        let mut b = b"II*\0".to_vec();
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&tags::IMAGE_WIDTH.to_le_bytes());
        b.extend_from_slice(&3u16.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&[16, 0, 0, 0]);
        b.extend_from_slice(&8u32.to_le_bytes());
        let err = TiffFile::read(&mut Cursor::new(b)).unwrap_err();
        assert!(err.to_string().contains("ImageLength") || err.to_string().contains("loops"));
    }
}
