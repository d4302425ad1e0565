//! A MIRAX slide's `Index.dat`, read as OpenSlide 4.0.1 reads it: the version and slide
//! identifier, then little-endian 32-bit pointers to each zoom level's list of images
//! (`hier`) and to the other records (`nonhier`: camera positions, associated images),
//! each image or record being a data file number, an offset and a length.
//!
//! Why: a MIRAX slide's pixels are thousands of JPEG images appended to data files of
//! hundreds of MiB, and a thumbnail reads one level. The index says where that level's
//! images are, so the worker's planner can ask for them alone. The index is as hostile
//! as the pixels: every read is checked against its length, and a level's pages are
//! read back to back as OpenSlide does (it never follows a "next" pointer), so a hostile
//! index cannot make a loop, and one level's records are at most the index's length
//! over 16.

/// Index.dat's version string; OpenSlide refuses any other.
pub const INDEX_VERSION: &[u8] = b"01.02";

/// Where a stored item is: the data file's number in `Slidedat.ini`, the offset and the
/// length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub file: u32,
    pub offset: u64,
    pub length: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("Index.dat does not start with version 01.02")]
    Version,
    #[error("Index.dat's slide identifier is not Slidedat.ini's SLIDE_ID")]
    SlideId,
    #[error("Index.dat ends inside {0}")]
    Truncated(&'static str),
    #[error("Index.dat has a negative {0}")]
    Negative(&'static str),
    #[error("Index.dat names data file {file}; Slidedat.ini names {count}")]
    FileNumber { file: i32, count: usize },
    #[error("Index.dat's {0} does not start as OpenSlide expects")]
    Layout(&'static str),
}

/// The index, held whole in memory (bounded by the planner).
pub struct IndexDat<'a> {
    bytes: &'a [u8],
    hier_root: usize,
    data_files: usize,
}

impl<'a> IndexDat<'a> {
    /// Checks the version and the slide identifier, as OpenSlide does before anything.
    pub fn open(bytes: &'a [u8], slide_id: &str, data_files: usize) -> Result<Self, IndexError> {
        let id = slide_id.as_bytes();
        if !bytes.starts_with(INDEX_VERSION) {
            return Err(IndexError::Version);
        }
        let hier_root = INDEX_VERSION.len() + id.len();
        if bytes.get(INDEX_VERSION.len()..hier_root) != Some(id) {
            return Err(IndexError::SlideId);
        }
        Ok(IndexDat {
            bytes,
            hier_root,
            data_files,
        })
    }

    fn i32_at(&self, at: i64, what: &'static str) -> Result<i32, IndexError> {
        let at = usize::try_from(at).map_err(|_| IndexError::Negative(what))?;
        let end = at.checked_add(4).ok_or(IndexError::Truncated(what))?;
        let word = self.bytes.get(at..end).ok_or(IndexError::Truncated(what))?;
        Ok(i32::from_le_bytes([word[0], word[1], word[2], word[3]]))
    }

    fn stored(&self, file: i32, offset: i32, length: i32) -> Result<Stored, IndexError> {
        if offset < 0 {
            return Err(IndexError::Negative("offset"));
        }
        if length < 0 {
            return Err(IndexError::Negative("length"));
        }
        if file < 0 || file as usize >= self.data_files {
            return Err(IndexError::FileNumber {
                file,
                count: self.data_files,
            });
        }
        Ok(Stored {
            file: file as u32,
            offset: offset as u64,
            length: length as u64,
        })
    }

    /// Nonhier record `record`: root pointer, the record's pointer, a page list whose
    /// first word is 0 and second points at a page of at least one item: its count,
    /// a next pointer, two zeros, then offset, length and file.
    pub fn nonhier(&self, record: u32) -> Result<Stored, IndexError> {
        let table = self.i32_at(self.hier_root as i64 + 4, "the nonhier root")?;
        let list = self.i32_at(
            i64::from(table) + 4 * i64::from(record),
            "a nonhier pointer",
        )?;
        if self.i32_at(i64::from(list), "a nonhier list")? != 0 {
            return Err(IndexError::Layout("nonhier list"));
        }
        let page = i64::from(self.i32_at(i64::from(list) + 4, "a nonhier list")?);
        if self.i32_at(page, "a nonhier page")? < 1 {
            return Err(IndexError::Layout("nonhier page"));
        }
        if self.i32_at(page + 8, "a nonhier page")? != 0
            || self.i32_at(page + 12, "a nonhier page")? != 0
        {
            return Err(IndexError::Layout("nonhier page"));
        }
        let offset = self.i32_at(page + 16, "a nonhier item")?;
        let length = self.i32_at(page + 20, "a nonhier item")?;
        let file = self.i32_at(page + 24, "a nonhier item")?;
        self.stored(file, offset, length)
    }

    /// Every image of zoom level `level`, in index order: the level's pointer in the hier
    /// table, a list (0, then a pointer to the first page), then pages back to back,
    /// each a count, a next pointer (0 on the last page) and that many items of image
    /// number, offset, length and file.
    pub fn level_images(&self, level: usize) -> Result<Vec<Stored>, IndexError> {
        let table = self.i32_at(self.hier_root as i64, "the hier root")?;
        let list =
            i64::from(self.i32_at(i64::from(table) + 4 * level as i64, "a zoom level pointer")?);
        if self.i32_at(list, "a zoom level's list")? != 0 {
            return Err(IndexError::Layout("zoom level's list"));
        }
        let mut at = i64::from(self.i32_at(list + 4, "a zoom level's list")?);
        let mut images = Vec::new();
        loop {
            let count = self.i32_at(at, "a data page")?;
            let next = self.i32_at(at + 4, "a data page")?;
            at += 8;
            for _ in 0..count.max(0) {
                let item = |k: i64| self.i32_at(at + 4 * k, "an image record");
                let (number, offset, length, file) = (item(0)?, item(1)?, item(2)?, item(3)?);
                if number < 0 {
                    return Err(IndexError::Negative("image number"));
                }
                images.push(self.stored(file, offset, length)?);
                at += 16;
            }
            if next == 0 {
                return Ok(images);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(out: &mut Vec<u8>, words: &[i32]) {
        for w in words {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }

    /// An index for slide "id": one level of three images over two pages, one nonhier
    /// record. Offsets: roots at 7, hier table 15, nonhier table 19, the level's list
    /// 23, the record's list 31, pages 39 and 63, the nonhier page 103.
    fn index() -> Vec<u8> {
        let mut out = b"01.02id".to_vec();
        put(&mut out, &[15, 19]);
        put(&mut out, &[23]);
        put(&mut out, &[31]);
        put(&mut out, &[0, 39]);
        put(&mut out, &[0, 103]);
        put(&mut out, &[1, 1, 0, 100, 10, 0]);
        put(&mut out, &[2, 0, 1, 110, 20, 1, 2, 130, 30, 0]);
        put(&mut out, &[1, 0, 0, 0, 500, 9, 1]);
        out
    }

    #[test]
    fn a_levels_pages_are_read_back_to_back() {
        let bytes = index();
        let index = IndexDat::open(&bytes, "id", 2).unwrap();
        assert_eq!(
            index.level_images(0).unwrap(),
            vec![
                Stored {
                    file: 0,
                    offset: 100,
                    length: 10
                },
                Stored {
                    file: 1,
                    offset: 110,
                    length: 20
                },
                Stored {
                    file: 0,
                    offset: 130,
                    length: 30
                },
            ]
        );
        assert_eq!(
            index.nonhier(0).unwrap(),
            Stored {
                file: 1,
                offset: 500,
                length: 9
            }
        );
    }

    #[test]
    fn hostile_indexes_are_errors_never_panics_or_loops() {
        let good = index();
        assert_eq!(
            IndexDat::open(b"01.01id", "id", 1).err(),
            Some(IndexError::Version)
        );
        assert_eq!(
            IndexDat::open(&good, "other", 1).err(),
            Some(IndexError::SlideId)
        );
        // A data file Slidedat.ini does not name.
        let index = IndexDat::open(&good, "id", 1).unwrap();
        assert!(matches!(
            index.level_images(0),
            Err(IndexError::FileNumber { file: 1, .. })
        ));
        // Every truncation makes a read an error: the level's up to byte 103, the
        // nonhier record's after.
        for len in 7..good.len() {
            let index = IndexDat::open(&good[..len], "id", 2).unwrap();
            assert!(
                index.level_images(0).is_err() || index.nonhier(0).is_err(),
                "cut at {len}"
            );
        }
        // Pointers past the end, negative, or at i32::MAX.
        for bad in [-1, -4, i32::MAX, i32::MIN, 1 << 30] {
            let mut bytes = good.clone();
            bytes[7..11].copy_from_slice(&bad.to_le_bytes());
            let index = IndexDat::open(&bytes, "id", 2).unwrap();
            assert!(index.level_images(0).is_err(), "{bad}");
            assert!(index.level_images(64).is_err(), "{bad}");
        }
        // A huge page count ends at the end of the index.
        let mut bytes = good.clone();
        bytes[39..43].copy_from_slice(&i32::MAX.to_le_bytes());
        let index = IndexDat::open(&bytes, "id", 2).unwrap();
        assert!(index.level_images(0).is_err());
    }
}
