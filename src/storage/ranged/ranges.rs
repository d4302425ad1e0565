//! Byte-range arithmetic for ranged reads: the planner says which bytes a slide needs,
//! this turns them into few, bounded GET requests. Pure functions, unit- and
//! property-tested, so the fetcher only moves bytes.

/// A half-open byte range `[start, end)` of an object. On the worker protocol it is a
/// two-element array.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(from = "(u64, u64)", into = "(u64, u64)")]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl From<(u64, u64)> for ByteRange {
    fn from((start, end): (u64, u64)) -> ByteRange {
        ByteRange { start, end }
    }
}

impl From<ByteRange> for (u64, u64) {
    fn from(r: ByteRange) -> (u64, u64) {
        (r.start, r.end)
    }
}

impl ByteRange {
    /// `len` bytes from `start`, saturating rather than wrapping on hostile offsets.
    pub fn at(start: u64, len: u64) -> ByteRange {
        ByteRange {
            start,
            end: start.saturating_add(len),
        }
    }

    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The part of this range inside an object of `size` bytes.
    pub fn clip(self, size: u64) -> ByteRange {
        ByteRange {
            start: self.start.min(size),
            end: self.end.min(size),
        }
    }
}

/// Sorts, clips to the object, drops empty ranges and merges ranges that overlap or are
/// at most `gap` bytes apart. Reading a small gap costs less than another request (on
/// GCS a request costs tens of milliseconds, 16 KiB costs well under one), and tiles of
/// one level sit next to each other, so a level usually becomes a single range.
pub fn coalesce(
    ranges: impl IntoIterator<Item = ByteRange>,
    size: u64,
    gap: u64,
) -> Vec<ByteRange> {
    let mut sorted: Vec<ByteRange> = ranges
        .into_iter()
        .map(|r| r.clip(size))
        .filter(|r| !r.is_empty())
        .collect();
    sorted.sort_unstable();
    let mut out: Vec<ByteRange> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Removes from sorted, disjoint `ranges` every byte of the sorted, disjoint `have`.
pub fn subtract(ranges: &[ByteRange], have: &[ByteRange]) -> Vec<ByteRange> {
    let mut out = Vec::new();
    for r in ranges {
        let mut cursor = r.start;
        for h in have.iter().filter(|h| h.end > r.start && h.start < r.end) {
            if h.start > cursor {
                out.push(ByteRange {
                    start: cursor,
                    end: h.start,
                });
            }
            cursor = cursor.max(h.end);
        }
        if cursor < r.end {
            out.push(ByteRange {
                start: cursor,
                end: r.end,
            });
        }
    }
    out
}

/// Cuts ranges into pieces of at most `max` bytes, so that one huge level becomes many
/// requests that run concurrently and each holds a bounded buffer.
pub fn split(ranges: &[ByteRange], max: u64) -> Vec<ByteRange> {
    let max = max.max(1);
    let mut out = Vec::new();
    for r in ranges {
        let mut start = r.start;
        while start < r.end {
            let end = r.end.min(start.saturating_add(max));
            out.push(ByteRange { start, end });
            start = end;
        }
    }
    out
}

/// Total bytes of disjoint ranges.
pub fn total(ranges: &[ByteRange]) -> u64 {
    ranges.iter().map(ByteRange::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn coalesce_merges_overlaps_and_small_gaps_only() {
        let merged = coalesce(
            [
                r(100, 200),
                r(0, 50),
                r(150, 300),
                r(310, 400),
                r(1000, 1100),
            ],
            2000,
            10,
        );
        assert_eq!(merged, vec![r(0, 50), r(100, 400), r(1000, 1100)]);
    }

    #[test]
    fn coalesce_clips_to_the_object_and_drops_empty_ranges() {
        assert_eq!(
            coalesce([r(90, 200), r(300, 400), r(5, 5)], 100, 0),
            vec![r(90, 100)]
        );
        assert_eq!(ByteRange::at(u64::MAX - 1, 10).end, u64::MAX);
    }

    #[test]
    fn subtract_leaves_the_holes() {
        let left = subtract(&[r(0, 100), r(200, 300)], &[r(10, 20), r(50, 250)]);
        assert_eq!(left, vec![r(0, 10), r(20, 50), r(250, 300)]);
        assert_eq!(subtract(&[r(0, 10)], &[r(0, 10)]), vec![]);
    }

    #[test]
    fn split_bounds_every_piece() {
        assert_eq!(split(&[r(0, 25)], 10), vec![r(0, 10), r(10, 20), r(20, 25)]);
    }

    fn arb_ranges() -> impl Strategy<Value = Vec<ByteRange>> {
        prop::collection::vec((0u64..5000, 0u64..600), 0..40)
            .prop_map(|v| v.into_iter().map(|(s, l)| ByteRange::at(s, l)).collect())
    }

    fn covers(ranges: &[ByteRange], byte: u64) -> bool {
        ranges.iter().any(|r| r.start <= byte && byte < r.end)
    }

    proptest! {
        /// Every requested byte inside the object is fetched, the pieces are sorted,
        /// disjoint and bounded, and the merging adds at most `gap` per merge.
        #[test]
        fn the_fetch_covers_every_wanted_byte(wanted in arb_ranges(), have in arb_ranges(), size in 1u64..6000, gap in 0u64..64) {
            let have = coalesce(have, size, 0);
            let merged = coalesce(wanted.clone(), size, gap);
            let pieces = split(&subtract(&merged, &have), 100);
            for w in &wanted {
                for byte in w.clip(size).start..w.clip(size).end {
                    prop_assert!(covers(&pieces, byte) || covers(&have, byte), "byte {byte} lost");
                }
            }
            for pair in pieces.windows(2) {
                prop_assert!(pair[0].end <= pair[1].start);
            }
            for p in &pieces {
                prop_assert!(!p.is_empty() && p.len() <= 100 && p.end <= size);
                prop_assert!(!have.iter().any(|h| h.start < p.end && p.start < h.end), "refetches held bytes");
            }
            let exact = coalesce(wanted, size, 0);
            prop_assert!(total(&merged) <= total(&exact) + gap * exact.len() as u64);
        }
    }
}
