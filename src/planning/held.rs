//! A local sparse copy read as a file in which only the fetched ranges exist.
//!
//! The service writes every fetched byte straight into the slide's sparse local copy and
//! tells the planner which ranges it holds. The planner reads the copy through
//! [`HeldFile`]: a read inside a held range is a positioned read of the file, a read of
//! anything else fails with [`Missing`], which names exactly the bytes to fetch next
//! (the same error the in-memory [`super::partial::PartialObject`]
//! gives, so the format planners run unchanged over either).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::partial::{Missing, seek_target};
use crate::storage::ranged::ranges::{self, ByteRange};

/// A file of `size` bytes of which only `held` has been fetched.
pub struct HeldFile {
    file: File,
    size: u64,
    /// Sorted and disjoint.
    held: Vec<ByteRange>,
    pos: u64,
}

impl HeldFile {
    pub fn open(path: &Path, size: u64, held: &[ByteRange]) -> io::Result<HeldFile> {
        Ok(HeldFile {
            file: File::open(path)?,
            size,
            held: ranges::coalesce(held.iter().copied(), size, 0),
            pos: 0,
        })
    }

    /// How many bytes from the start are held without a gap.
    pub fn held_prefix(&self) -> u64 {
        self.held
            .first()
            .filter(|r| r.start == 0)
            .map_or(0, |r| r.end)
    }

    /// The held range containing byte `at`.
    fn containing(&self, at: u64) -> Option<ByteRange> {
        let i = self.held.partition_point(|r| r.end <= at);
        self.held.get(i).copied().filter(|r| r.start <= at)
    }
}

impl Read for HeldFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        match self.containing(self.pos) {
            Some(range) => {
                let n = (buf.len() as u64).min(range.end - self.pos) as usize;
                self.file.read_exact_at(&mut buf[..n], self.pos)?;
                self.pos += n as u64;
                Ok(n)
            }
            None => Err(io::Error::other(Missing {
                offset: self.pos,
                len: (buf.len() as u64).min(self.size - self.pos),
            })),
        }
    }
}

impl Seek for HeldFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = seek_target(self.pos, self.size, to)?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_held_bytes_and_names_the_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy");
        std::fs::write(&path, (0u8..100).collect::<Vec<_>>()).unwrap();
        let mut held = HeldFile::open(&path, 100, &[ByteRange::at(10, 6)]).unwrap();
        held.seek(SeekFrom::Start(12)).unwrap();
        let mut buf = [0u8; 3];
        held.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [12, 13, 14]);
        // The file holds these bytes, but they were never fetched: they do not exist.
        let mut buf = [0u8; 8];
        let err = held.read_exact(&mut buf).unwrap_err();
        assert_eq!(Missing::of(&err), Some(Missing { offset: 16, len: 7 }));
        assert_eq!(held.held_prefix(), 0);
    }

    #[test]
    fn the_end_is_eof_and_the_prefix_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy");
        std::fs::write(&path, [7u8; 8]).unwrap();
        let mut held =
            HeldFile::open(&path, 8, &[ByteRange::at(4, 4), ByteRange::at(0, 4)]).unwrap();
        assert_eq!(held.held_prefix(), 8);
        held.seek(SeekFrom::End(0)).unwrap();
        assert_eq!(held.read(&mut [0u8; 4]).unwrap(), 0);
    }
}
