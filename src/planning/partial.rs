//! The bytes of a remote object fetched so far, readable as a file (in memory; the local
//! copy OpenSlide opens is [`super::sparse::SparseFile`]).
//!
//! The ranged fetcher plans with the same TIFF reader the engine uses, over this view of
//! a partly fetched object. A read of a byte not fetched yet fails with [`Missing`],
//! which says exactly which bytes to fetch next; the planner is then simply run again.
//! That keeps the planner synchronous and pure (tested on local files) while every
//! byte it looks at comes over the network.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};

use bytes::Bytes;

use crate::storage::ranged::ranges::ByteRange;

/// A read touched bytes that have not been fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bytes {offset}..+{len} have not been fetched")]
pub struct Missing {
    pub offset: u64,
    pub len: u64,
}

impl Missing {
    /// The `Missing` inside an I/O error, if that is what it is.
    pub fn of(error: &io::Error) -> Option<Missing> {
        error.get_ref()?.downcast_ref::<Missing>().copied()
    }
}

/// Fetched segments of an object of known size, with a read position.
#[derive(Debug, Clone)]
pub struct PartialObject {
    size: u64,
    segments: BTreeMap<u64, Bytes>,
    pos: u64,
}

impl PartialObject {
    pub fn new(size: u64) -> PartialObject {
        PartialObject {
            size,
            segments: BTreeMap::new(),
            pos: 0,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds fetched bytes starting at `offset`. Callers fetch only what is missing, so
    /// segments do not overlap; if they did, reads would still be correct.
    pub fn insert(&mut self, offset: u64, bytes: Bytes) {
        if !bytes.is_empty() {
            self.segments.insert(offset, bytes);
        }
    }

    /// The fetched segments in offset order.
    pub fn segments(&self) -> impl Iterator<Item = (u64, &Bytes)> {
        self.segments.iter().map(|(o, b)| (*o, b))
    }

    /// The fetched ranges, sorted and merged.
    pub fn held(&self) -> Vec<ByteRange> {
        crate::storage::ranged::ranges::coalesce(
            self.segments()
                .map(|(o, b)| ByteRange::at(o, b.len() as u64)),
            self.size,
            0,
        )
    }

    /// Bytes held, counting each fetched segment once.
    pub fn held_bytes(&self) -> u64 {
        self.segments.values().map(|b| b.len() as u64).sum()
    }

    /// The segment holding byte `at` and the offset of that byte inside it.
    fn find(&self, at: u64) -> Option<(&Bytes, usize)> {
        // Segments are few (one per fetch), so a backward scan is cheap and stays correct
        // even if a short segment starts inside a longer one.
        self.segments
            .range(..=at)
            .rev()
            .find(|(start, b)| at < **start + b.len() as u64)
            .map(|(start, b)| (b, (at - start) as usize))
    }
}

impl Read for PartialObject {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        match self.find(self.pos) {
            Some((segment, inner)) => {
                let n = buf.len().min(segment.len() - inner);
                buf[..n].copy_from_slice(&segment[inner..inner + n]);
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

impl Seek for PartialObject {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = seek_target(self.pos, self.size, to)?;
        Ok(self.pos)
    }
}

/// Where a seek from `pos` in an object of `size` bytes lands (past the end is allowed,
/// before the start is not), for the views of partly fetched objects.
pub fn seek_target(pos: u64, size: u64, to: SeekFrom) -> io::Result<u64> {
    match to {
        SeekFrom::Start(p) => Some(p),
        SeekFrom::End(d) => size.checked_add_signed(d),
        SeekFrom::Current(d) => pos.checked_add_signed(d),
    }
    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fetched_bytes_and_names_the_missing_ones() {
        let mut partial = PartialObject::new(100);
        partial.insert(10, Bytes::from_static(b"abcdef"));
        partial.seek(SeekFrom::Start(12)).unwrap();
        let mut buf = [0u8; 3];
        partial.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"cde");

        let mut buf = [0u8; 8];
        let err = partial.read_exact(&mut buf).unwrap_err();
        // The first byte came from the segment; the rest is named precisely.
        assert_eq!(Missing::of(&err), Some(Missing { offset: 16, len: 7 }));
    }

    #[test]
    fn end_of_object_is_eof_not_missing() {
        let mut partial = PartialObject::new(4);
        assert_eq!(partial.seek(SeekFrom::End(0)).unwrap(), 4);
        assert_eq!(partial.read(&mut [0u8; 4]).unwrap(), 0);
        assert!(partial.seek(SeekFrom::Current(-5)).is_err());
    }

    #[test]
    fn a_short_segment_inside_a_long_one_does_not_hide_it() {
        let mut partial = PartialObject::new(100);
        partial.insert(0, Bytes::from(vec![1u8; 50]));
        partial.insert(10, Bytes::from(vec![2u8; 5]));
        partial.seek(SeekFrom::Start(30)).unwrap();
        let mut buf = [0u8; 4];
        partial.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [1, 1, 1, 1]);
        assert_eq!(partial.held(), vec![ByteRange::at(0, 50)]);
    }
}
