//! One round of the banded reduction: full-width bands read into a row-major window, the
//! work shared among the pool's threads a tile column at a time rather than a band at a
//! time.
//!
//! Why: with a band per thread, a round lasts as long as its slowest band, and bands are
//! uneven (dense tissue against glass, the first touch of the window's pages), so a lone
//! slide's decode (the CLI, an idle service) left a core idle at every round's end. A
//! round of two 240-row bands of a 2500-pixel-wide level is twenty-two pieces here,
//! which work stealing spreads evenly. Each piece gets its own slice of every row it
//! covers (disjoint, so no locking and no unsafe code); a whole JPEG tile is decoded
//! straight into them (`RegionReader::read_rgb_rows`), anything else through a buffer.
//! A pool of one thread (a worker under load) reads whole bands in place, as before.

use rayon::prelude::*;

use super::error::SlideError;
use super::geometry::Rect;
use super::render::read_bands;
use super::source::RegionSource;

/// Narrowest piece worth a task of its own, in pixels: tiles scaled down by the decoder
/// (240 / 8 = 30 pixels) are grouped so a piece's decode outweighs its overhead.
const MIN_PIECE_WIDTH: u64 = 128;

/// The column ranges `[x, x + w)` a level `width` pixels wide is cut into for a reader
/// aligned to `align_x`-pixel tiles: whole tiles, at least [`MIN_PIECE_WIDTH`] wide but
/// for the last. A reader with no tile grid (`align_x` of 1: OpenSlide, which caches its
/// own tiles) keeps whole rows, so no tile is cut by a piece edge.
pub fn piece_columns(width: u64, align_x: u32) -> Vec<(u64, u64)> {
    let align = u64::from(align_x.max(1));
    let piece = if align == 1 {
        width.max(1)
    } else {
        align * MIN_PIECE_WIDTH.div_ceil(align).max(1)
    };
    (0..width)
        .step_by(piece as usize)
        .map(|x| (x, piece.min(width - x)))
        .collect()
}

/// Reads full-width `bands` (top to bottom, contiguous, all as high as the first but the
/// last) into `pixels`, `width` RGB pixels a row, on all the pool's threads a piece (see
/// [`piece_columns`]) at a time.
pub fn read_round(
    source: &dyn RegionSource,
    bands: &[Rect],
    width: u64,
    pixels: &mut [u8],
) -> Result<(), SlideError> {
    let row_bytes = width as usize * 3;
    let rows: u64 = bands.iter().map(|band| band.h).sum();
    if width == 0
        || pixels.len() != rows as usize * row_bytes
        || bands.iter().any(|b| b.w != width || b.h == 0)
    {
        return Err(SlideError::Internal(format!(
            "a round of {rows} rows {width} wide does not fill {} bytes",
            pixels.len()
        )));
    }
    // A pool of one thread has nothing to balance: each band is read whole, in place
    // (a decoder that would go through a buffer for a piece writes the band directly).
    if rayon::current_num_threads() <= 1
        && let Some(first) = bands.first()
    {
        return read_bands(source, bands, pixels, first.h as usize * row_bytes);
    }
    let columns = piece_columns(width, source.alignment().0);
    // Every row is cut at the piece edges, and each piece gets its own segment of each of
    // its band's rows: disjoint slices, so the threads share the window safely.
    let mut pieces: Vec<(Rect, Vec<&mut [u8]>)> = Vec::with_capacity(bands.len() * columns.len());
    let mut rest = pixels;
    for band in bands {
        let (band_pixels, tail) = rest.split_at_mut(band.h as usize * row_bytes);
        rest = tail;
        let first = pieces.len();
        pieces.extend(columns.iter().map(|&(x, w)| {
            let rect = Rect {
                x,
                y: band.y,
                w,
                h: band.h,
            };
            (rect, Vec::with_capacity(band.h as usize))
        }));
        for mut row in band_pixels.chunks_exact_mut(row_bytes) {
            for (rect, segments) in &mut pieces[first..] {
                let (segment, tail) = std::mem::take(&mut row).split_at_mut(rect.w as usize * 3);
                segments.push(segment);
                row = tail;
            }
        }
    }
    pieces.into_par_iter().try_for_each_init(
        || (source.reader(), Vec::new()),
        |(reader, scratch), (rect, mut rows)| {
            let reader = reader
                .as_mut()
                .map_err(|e| SlideError::Internal(e.to_string()))?;
            reader.read_rgb_rows(rect, &mut rows, scratch)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slide::source::RegionReader;
    use std::sync::Mutex;

    /// A level whose pixel is its position, recording every rectangle read.
    struct Recording {
        dims: (u64, u64),
        read: Mutex<Vec<Rect>>,
    }

    impl RegionSource for Recording {
        fn dims(&self) -> (u64, u64) {
            self.dims
        }
        fn alignment(&self) -> (u32, u32) {
            (240, 240)
        }
        fn reader(&self) -> Result<Box<dyn RegionReader + '_>, SlideError> {
            Ok(Box::new(RecordingReader(self)))
        }
    }

    struct RecordingReader<'a>(&'a Recording);

    fn pixel(x: u64, y: u64) -> [u8; 3] {
        [x as u8, y as u8, (x / 256 + y / 256 * 7) as u8]
    }

    impl RegionReader for RecordingReader<'_> {
        fn read_rgb(&mut self, rect: Rect, out: &mut Vec<u8>) -> Result<(), SlideError> {
            crate::slide::source::fill_from(rect, out, pixel);
            self.0.read.lock().expect("record").push(rect);
            Ok(())
        }
    }

    /// A rectangle read, as (y, x, w, h) so they sort band by band.
    type Read = (u64, u64, u64, u64);

    /// Two bands of a 1000-pixel-wide level on `threads` threads: the pixels, and the
    /// rectangles read, sorted.
    fn round(threads: usize) -> (Vec<u8>, Vec<Read>) {
        let source = Recording {
            dims: (1000, 400),
            read: Mutex::default(),
        };
        let bands = [
            Rect {
                x: 0,
                y: 0,
                w: 1000,
                h: 240,
            },
            Rect {
                x: 0,
                y: 240,
                w: 1000,
                h: 160,
            },
        ];
        let mut pixels = vec![0u8; 1000 * 400 * 3];
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(|| read_round(&source, &bands, 1000, &mut pixels))
            .expect("round");
        let mut read: Vec<_> = source
            .read
            .into_inner()
            .expect("record")
            .iter()
            .map(|r| (r.y, r.x, r.w, r.h))
            .collect();
        read.sort();
        (pixels, read)
    }

    #[test]
    fn a_round_is_read_a_piece_at_a_time_on_a_pool_and_a_band_at_a_time_alone() {
        let want: Vec<u8> = (0..400u64)
            .flat_map(|y| (0..1000u64).flat_map(move |x| pixel(x, y)))
            .collect();
        let (pixels, read) = round(2);
        assert!(pixels == want, "a piece's rows landed elsewhere");
        let pieces: Vec<_> = [(0, 240), (240, 160)]
            .iter()
            .flat_map(|&(y, h)| {
                piece_columns(1000, 240)
                    .into_iter()
                    .map(move |(x, w)| (y, x, w, h))
            })
            .collect();
        assert_eq!(read, pieces);
        let (pixels, read) = round(1);
        assert!(pixels == want);
        assert_eq!(read, vec![(0, 0, 1000, 240), (240, 0, 1000, 160)]);
    }

    /// A round that does not fill its window, or has no width or an empty band, is an
    /// error, never a panic in the slicing.
    #[test]
    fn a_round_that_does_not_fit_its_window_is_refused() {
        let source = Recording {
            dims: (100, 10),
            read: Mutex::default(),
        };
        let band = Rect {
            x: 0,
            y: 0,
            w: 100,
            h: 10,
        };
        let mut short = vec![0u8; 100 * 10 * 3 - 1];
        assert!(read_round(&source, &[band], 100, &mut short).is_err());
        let narrow = Rect { w: 99, ..band };
        let mut exact = vec![0u8; 100 * 10 * 3];
        assert!(read_round(&source, &[narrow], 100, &mut exact).is_err());
        let empty = Rect { w: 0, ..band };
        assert!(read_round(&source, &[empty], 0, &mut []).is_err());
        let flat = Rect { h: 0, ..band };
        assert!(read_round(&source, &[flat, band], 100, &mut exact).is_err());
        assert!(source.read.into_inner().expect("record").is_empty());
    }

    #[test]
    fn pieces_are_whole_tiles_cover_the_row_and_keep_untiled_rows_whole() {
        // A pyramid level 2500 wide in 240-pixel tiles: ten whole tiles and the edge.
        let columns = piece_columns(2500, 240);
        assert_eq!(columns.len(), 11);
        assert!(columns[..10].iter().all(|&(x, w)| w == 240 && x % 240 == 0));
        assert_eq!(columns[10], (2400, 100));
        // Tiles the decoder scaled to 30 pixels are grouped five to a piece (150 >= 128).
        assert_eq!(
            piece_columns(600, 30),
            vec![(0, 150), (150, 150), (300, 150), (450, 150)]
        );
        // OpenSlide's reader has no grid: one piece, the whole row.
        assert_eq!(piece_columns(2500, 1), vec![(0, 2500)]);
        // Any width is covered exactly, in order.
        for (width, align) in [(1, 240), (239, 240), (241, 16), (5000, 512), (7, 1)] {
            let columns = piece_columns(width, align);
            let mut next = 0;
            for (x, w) in columns {
                assert!(x == next && w > 0);
                next = x + w;
            }
            assert_eq!(next, width);
        }
    }
}
