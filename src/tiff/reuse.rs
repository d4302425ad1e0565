//! Compressed bytes referenced many times over: a decompression amplification.
//!
//! A tile array may point many tiles at the same bytes, and nothing in TIFF forbids
//! it (some writers share one blank tile). But the work of decoding a level is the sum
//! of its tiles' byte counts, not the size of the file: 59536 tiles pointing at one
//! 4096 x 4096 JPEG in a 0.7 MB file are 12 GB of entropy decoding, which held a worker
//! at full CPU until its deadline. So the bytes a level references, counting each
//! reference, must be backed by the bytes present: at most [`MAX_REUSE`] times the file
//! (a generous allowance for shared blank tiles), or [`REUSE_FLOOR`] for small files.

/// How many times over a level may reference the file's bytes.
pub const MAX_REUSE: u64 = 16;

/// Referenced bytes always allowed (a few seconds of decoding at most), so that a small
/// slide with many shared blank tiles is never refused.
pub const REUSE_FLOOR: u64 = 64 << 20;

/// Checks the byte counts of one level's tiles against the length of the file; the
/// error says what was found.
pub fn check_referenced_bytes(counts: &[u64], file_len: u64) -> Result<(), String> {
    let referenced = counts.iter().fold(0u64, |sum, c| sum.saturating_add(*c));
    let allowed = file_len.saturating_mul(MAX_REUSE).max(REUSE_FLOOR);
    if referenced > allowed {
        return Err(format!(
            "its tiles reference {referenced} bytes of compressed data in a file of \
             {file_len} bytes (the same bytes decoded over and over; at most {MAX_REUSE} \
             times the file is accepted)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tile_referenced_59536_times_is_refused() {
        let counts = vec![196_000u64; 59_536];
        let err = check_referenced_bytes(&counts, 700_000).unwrap_err();
        assert!(err.contains("11669056000 bytes"), "{err}");
    }

    #[test]
    fn a_level_within_its_file_and_shared_blank_tiles_pass() {
        assert_eq!(check_referenced_bytes(&[1 << 20; 100], 200 << 20), Ok(()));
        // 90% of 100k tiles are one 2 KB blank tile in a 100 MB file.
        let mut counts = vec![2_000u64; 90_000];
        counts.extend(vec![9_000u64; 10_000]);
        assert_eq!(check_referenced_bytes(&counts, 100 << 20), Ok(()));
        // Saturates rather than wrapping.
        assert!(check_referenced_bytes(&[u64::MAX, u64::MAX], 1 << 40).is_err());
    }
}
