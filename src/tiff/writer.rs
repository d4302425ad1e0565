//! A streaming writer for tiled TIFF and BigTIFF files, used by the fixture generator.
//!
//! Tile data is appended as it is produced; directories are written at the end, so a
//! multi-gigabyte pyramid never has to be held in memory. No crate writes pre-encoded
//! JPEG tiles with shared JPEGTables and Aperio-style descriptions, hence this module.

use std::io::{self, Seek, SeekFrom, Write};

/// A tag value, in the TIFF field type it will be written as.
#[derive(Debug, Clone)]
pub enum Value {
    Short(Vec<u16>),
    Long(Vec<u32>),
    Long8(Vec<u64>),
    Ascii(String),
    Undefined(Vec<u8>),
    Rational(Vec<(u32, u32)>),
}

impl Value {
    fn field_type(&self) -> u16 {
        match self {
            Value::Short(_) => 3,
            Value::Long(_) => 4,
            Value::Long8(_) => 16,
            Value::Ascii(_) => 2,
            Value::Undefined(_) => 7,
            Value::Rational(_) => 5,
        }
    }

    fn count(&self) -> u64 {
        match self {
            Value::Short(v) => v.len() as u64,
            Value::Long(v) => v.len() as u64,
            Value::Long8(v) => v.len() as u64,
            Value::Ascii(s) => s.len() as u64 + 1,
            Value::Undefined(v) => v.len() as u64,
            Value::Rational(v) => v.len() as u64,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Value::Short(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Value::Long(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Value::Long8(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Value::Ascii(s) => {
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            }
            Value::Undefined(v) => out.extend_from_slice(v),
            Value::Rational(v) => v.iter().for_each(|(n, d)| {
                out.extend_from_slice(&n.to_le_bytes());
                out.extend_from_slice(&d.to_le_bytes());
            }),
        }
        out
    }
}

/// Writes little-endian TIFF (or BigTIFF) with tile data first and directories last.
pub struct TiffWriter<W: Write + Seek> {
    w: W,
    bigtiff: bool,
    pos: u64,
    directories: Vec<Vec<(u16, Value)>>,
}

impl<W: Write + Seek> TiffWriter<W> {
    pub fn new(mut w: W, bigtiff: bool) -> io::Result<Self> {
        let header: Vec<u8> = if bigtiff {
            let mut h = b"II\x2b\x00\x08\x00\x00\x00".to_vec();
            h.extend_from_slice(&0u64.to_le_bytes());
            h
        } else {
            let mut h = b"II\x2a\x00".to_vec();
            h.extend_from_slice(&0u32.to_le_bytes());
            h
        };
        w.write_all(&header)?;
        Ok(TiffWriter {
            w,
            bigtiff,
            pos: header.len() as u64,
            directories: Vec::new(),
        })
    }

    /// Appends raw bytes (a tile) and returns their file offset.
    pub fn append(&mut self, data: &[u8]) -> io::Result<u64> {
        let at = self.pos;
        self.w.write_all(data)?;
        self.pos += data.len() as u64;
        Ok(at)
    }

    /// Offsets or byte counts in the widest type the flavour allows.
    pub fn offsets_value(&self, values: &[u64]) -> io::Result<Value> {
        if self.bigtiff {
            return Ok(Value::Long8(values.to_vec()));
        }
        let narrow: Result<Vec<u32>, _> = values.iter().map(|v| u32::try_from(*v)).collect();
        narrow.map(Value::Long).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "offset past 4 GiB in a classic TIFF: write BigTIFF instead",
            )
        })
    }

    /// Queues a directory; directories are chained in the order they are added.
    pub fn add_directory(&mut self, mut entries: Vec<(u16, Value)>) {
        entries.sort_by_key(|(tag, _)| *tag);
        self.directories.push(entries);
    }

    /// Writes the directories and links the chain from the header. Returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let inline_len = if self.bigtiff { 8 } else { 4 };
        let mut link_at: u64 = if self.bigtiff { 8 } else { 4 };
        let directories = std::mem::take(&mut self.directories);
        for entries in &directories {
            // Out-of-line values first, each on a word boundary.
            let mut placed = Vec::with_capacity(entries.len());
            for (tag, value) in entries {
                let bytes = value.bytes();
                if bytes.len() > inline_len {
                    self.pad_to_word()?;
                    let at = self.append(&bytes)?;
                    placed.push((*tag, value, None, Some(at)));
                } else {
                    placed.push((*tag, value, Some(bytes), None));
                }
            }
            self.pad_to_word()?;
            let ifd_at = self.pos;
            let mut block = Vec::new();
            if self.bigtiff {
                block.extend_from_slice(&(placed.len() as u64).to_le_bytes());
            } else {
                block.extend_from_slice(&(placed.len() as u16).to_le_bytes());
            }
            for (tag, value, inline, at) in &placed {
                block.extend_from_slice(&tag.to_le_bytes());
                block.extend_from_slice(&value.field_type().to_le_bytes());
                let mut field = match inline {
                    Some(bytes) => bytes.clone(),
                    None => {
                        let at = at.unwrap_or(0);
                        if self.bigtiff {
                            at.to_le_bytes().to_vec()
                        } else {
                            (at as u32).to_le_bytes().to_vec()
                        }
                    }
                };
                field.resize(inline_len, 0);
                if self.bigtiff {
                    block.extend_from_slice(&value.count().to_le_bytes());
                } else {
                    block.extend_from_slice(&(value.count() as u32).to_le_bytes());
                }
                block.extend_from_slice(&field);
            }
            let next_at = ifd_at + block.len() as u64;
            block.extend_from_slice(&vec![0u8; inline_len]);
            self.append(&block)?;
            self.patch_link(link_at, ifd_at)?;
            link_at = next_at;
        }
        self.w.flush()?;
        Ok(self.w)
    }

    fn pad_to_word(&mut self) -> io::Result<()> {
        if self.pos % 2 == 1 {
            self.append(&[0])?;
        }
        Ok(())
    }

    fn patch_link(&mut self, at: u64, target: u64) -> io::Result<()> {
        self.w.seek(SeekFrom::Start(at))?;
        if self.bigtiff {
            self.w.write_all(&target.to_le_bytes())?;
        } else {
            self.w.write_all(&(target as u32).to_le_bytes())?;
        }
        self.w.seek(SeekFrom::Start(self.pos))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiff::{TiffFile, tags};
    use std::io::Cursor;

    fn roundtrip(bigtiff: bool) {
        let mut w = TiffWriter::new(Cursor::new(Vec::new()), bigtiff).unwrap();
        let a = w.append(b"tile-a").unwrap();
        let b = w.append(b"tile-bb").unwrap();
        let offsets = w.offsets_value(&[a, b]).unwrap();
        let counts = w.offsets_value(&[6, 7]).unwrap();
        w.add_directory(vec![
            (tags::IMAGE_WIDTH, Value::Long(vec![300])),
            (tags::IMAGE_LENGTH, Value::Long(vec![100])),
            (tags::TILE_WIDTH, Value::Short(vec![256])),
            (tags::TILE_LENGTH, Value::Short(vec![256])),
            (tags::TILE_OFFSETS, offsets),
            (tags::TILE_BYTE_COUNTS, counts),
            (tags::IMAGE_DESCRIPTION, Value::Ascii("hello world".into())),
        ]);
        w.add_directory(vec![
            (tags::IMAGE_WIDTH, Value::Long(vec![10])),
            (tags::IMAGE_LENGTH, Value::Long(vec![5])),
        ]);
        let mut cur = w.finish().unwrap();
        let tiff = TiffFile::read(&mut cur).unwrap();
        assert_eq!(tiff.is_bigtiff(), bigtiff);
        assert_eq!(tiff.directories.len(), 2);
        let d = &tiff.directories[0];
        assert_eq!((d.width, d.height), (300, 100));
        assert_eq!(d.tile_grid(), Some((2, 1)));
        let (offs, counts) = tiff.tile_locations(&mut cur, d).unwrap();
        assert_eq!(offs, vec![a, b]);
        assert_eq!(counts, vec![6, 7]);
        let desc = tiff
            .read_ascii(&mut cur, d, tags::IMAGE_DESCRIPTION)
            .unwrap();
        assert_eq!(desc.as_deref(), Some("hello world"));
        assert_eq!(tiff.directories[1].width, 10);
    }

    #[test]
    fn classic_roundtrip() {
        roundtrip(false);
    }

    #[test]
    fn bigtiff_roundtrip() {
        roundtrip(true);
    }
}
