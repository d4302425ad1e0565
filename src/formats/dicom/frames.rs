//! Where a level's frames go and where their bytes are.
//!
//! Placement: TILED_FULL stores frames column-fastest, then row (then focal plane and
//! optical path, which we never read past the first); TILED_SPARSE gives each frame's
//! top-left pixel (1-based) in the per-frame functional groups, anywhere, overlapping or
//! leaving gaps (white). Bytes: encapsulated pixel data is a Basic Offset Table item and
//! one item per fragment up to a sequence delimiter; frames are located by the Extended
//! Offset Table, the Basic Offset Table, or by walking the items (one fragment per frame).
//! Everything is checked against the bytes at hand, so hostile tables end in
//! `corrupt_slide`, never an out-of-bounds read or a large allocation.

use std::ops::Range;

use super::DicomError;
use super::codec::FrameCodec;
use super::header::{InstanceHeader, Organization};

/// Most frames one instance may declare.
pub const MAX_FRAMES: u64 = 4 * 1024 * 1024;

/// Largest frame side (Rows / Columns).
pub const MAX_FRAME_SIDE: u32 = 16384;

/// Largest compressed frame (one item).
pub const MAX_FRAME_BYTES: u64 = 32 * 1024 * 1024;

const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const SEQUENCE_DELIMITER: (u16, u16) = (0xFFFE, 0xE0DD);

/// Top-left pixel (x, y) of each frame of the first focal plane and optical path, in
/// the instance's frame order (`None` for frames of other planes/paths).
pub fn placements(h: &InstanceHeader) -> Result<Vec<Option<(u64, u64)>>, DicomError> {
    check_frame_geometry(h)?;
    let sparse = match h.organization {
        Organization::TiledSparse => true,
        Organization::TiledFull => false,
        Organization::Unspecified => !h.positions.is_empty(),
    };
    if sparse {
        if h.positions.len() as u64 != h.number_of_frames || h.per_frame_items != h.number_of_frames
        {
            return Err(DicomError::corrupt(format!(
                "TILED_SPARSE with {} frames but {} frame positions",
                h.number_of_frames,
                h.positions.len()
            )));
        }
        return h
            .positions
            .iter()
            .map(|&(c, r)| {
                // 1-based; a frame must touch the matrix.
                let inside = c >= 1
                    && r >= 1
                    && (c as u64 - 1) < h.total_columns
                    && (r as u64 - 1) < h.total_rows;
                if inside {
                    Ok(Some((c as u64 - 1, r as u64 - 1)))
                } else {
                    Err(DicomError::corrupt(format!(
                        "frame position ({c}, {r}) outside the {} x {} matrix",
                        h.total_columns, h.total_rows
                    )))
                }
            })
            .collect();
    }
    let (across, down) = grid(h);
    let per_plane = across.saturating_mul(down);
    let expected = per_plane
        .checked_mul(h.focal_planes.max(1))
        .and_then(|v| v.checked_mul(h.optical_paths.max(1)));
    // A concatenated level spreads its frames over instances; each holds a slice.
    let concatenated = h.concatenation_uid.is_some();
    let fits = match expected {
        Some(e) if concatenated => h.concatenation_frame_offset + h.number_of_frames <= e,
        Some(e) => e == h.number_of_frames,
        None => false,
    };
    if !fits {
        return Err(DicomError::corrupt(format!(
            "TILED_FULL grid of {across} x {down} tiles does not match {} frames",
            h.number_of_frames
        )));
    }
    Ok((0..h.number_of_frames)
        .map(|local| {
            let index = h.concatenation_frame_offset + local;
            (index < per_plane).then(|| {
                (
                    (index % across) * u64::from(h.columns),
                    (index / across) * u64::from(h.rows),
                )
            })
        })
        .collect())
}

/// Tiles across and down the matrix.
pub fn grid(h: &InstanceHeader) -> (u64, u64) {
    (
        h.total_columns.div_ceil(u64::from(h.columns.max(1))),
        h.total_rows.div_ceil(u64::from(h.rows.max(1))),
    )
}

/// Frame count and sizes within bounds (before anything is allocated from them).
pub fn check_frame_geometry(h: &InstanceHeader) -> Result<(), DicomError> {
    if !(1..=MAX_FRAME_SIDE).contains(&h.columns) || !(1..=MAX_FRAME_SIDE).contains(&h.rows) {
        return Err(DicomError::corrupt(format!(
            "frame size {} x {} (1 to {MAX_FRAME_SIDE} allowed)",
            h.columns, h.rows
        )));
    }
    if h.total_columns == 0 || h.total_rows == 0 {
        return Err(DicomError::corrupt("total pixel matrix of size 0"));
    }
    if !(1..=MAX_FRAMES).contains(&h.number_of_frames) {
        return Err(DicomError::corrupt(format!(
            "{} frames (1 to {MAX_FRAMES} allowed)",
            h.number_of_frames
        )));
    }
    Ok(())
}

/// Refuses a header whose declared frames the object's bytes cannot hold, before
/// anything is allocated per frame: an encapsulated frame needs at least its 8-byte item
/// header (after the 8-byte offset table item), a native frame rows x columns x
/// samples x bits allocated. A concatenation of 1024 instances of 1.4 KB each declaring
/// 4 M frames would otherwise cost 100 MB of frame positions per instance.
pub fn check_frames_backed(h: &InstanceHeader, object_size: u64) -> Result<(), DicomError> {
    let present = object_size.saturating_sub(h.pixel_value_start);
    let frames = u128::from(h.number_of_frames);
    let (needed, what) = if h.encapsulated {
        ((frames + 1) * 8, "an 8-byte item header each")
    } else {
        let bits = frames
            * u128::from(h.rows)
            * u128::from(h.columns)
            * u128::from(h.samples_per_pixel)
            * u128::from(h.bits_allocated);
        (bits.div_ceil(8), "rows x columns x samples each")
    };
    let held = match (h.encapsulated, h.pixel_data_length) {
        (false, Some(declared)) => present.min(declared),
        _ => present,
    };
    if needed > u128::from(held) {
        return Err(DicomError::corrupt(format!(
            "it declares {} frames ({what}, {needed} bytes at least) but holds {held} bytes of \
             pixel data",
            h.number_of_frames
        )));
    }
    Ok(())
}

/// The encapsulated pixel data of one instance, from `pixel_value_start` to the end of
/// the object: in memory (tests, the storage side) or a file read piecewise (the engine,
/// which must not read a whole level to find its frames).
pub trait PixelBytes {
    /// Bytes from `pixel_value_start` to the object's end.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset` (relative to `pixel_value_start`); the caller keeps
    /// `offset + buf.len() <= size()`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DicomError>;
}

impl PixelBytes for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DicomError> {
        let start = usize::try_from(offset).map_err(|_| DicomError::corrupt("offset"))?;
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| DicomError::corrupt("read past the pixel data"))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// An item header: (group, element) and the declared length.
type ItemHeader = ((u16, u16), u32);

fn item_header(
    data: &(impl PixelBytes + ?Sized),
    at: u64,
) -> Result<Option<ItemHeader>, DicomError> {
    if at.checked_add(8).is_none_or(|end| end > data.size()) {
        return Ok(None);
    }
    let mut b = [0u8; 8];
    data.read_at(at, &mut b)?;
    let group = u16::from_le_bytes([b[0], b[1]]);
    let element = u16::from_le_bytes([b[2], b[3]]);
    let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    Ok(Some(((group, element), len)))
}

/// Native frames follow each other from the first pixel: frame `i` is the `i`-th run of
/// rows x columns x samples bytes, all within the declared element and the object.
fn native_frames(
    h: &InstanceHeader,
    frames: usize,
    frame_bytes: u64,
    size: u64,
) -> Result<Vec<FrameBytes>, DicomError> {
    if frame_bytes > MAX_FRAME_BYTES {
        return Err(DicomError::Unsupported(format!(
            "uncompressed frames of {frame_bytes} bytes (at most {MAX_FRAME_BYTES})"
        )));
    }
    let held = h
        .pixel_data_length
        .map_or(size, |declared| declared.min(size));
    let needed = frame_bytes.saturating_mul(frames as u64);
    if needed > held {
        return Err(DicomError::corrupt(format!(
            "{frames} uncompressed frames need {needed} bytes; the pixel data holds {held}"
        )));
    }
    Ok((0..frames as u64)
        .map(|i| std::iter::once(i * frame_bytes..(i + 1) * frame_bytes).collect())
        .collect())
}

/// One frame's bytes: ranges relative to `pixel_value_start` (several when the frame is
/// split into fragments).
pub type FrameBytes = Vec<Range<u64>>;

/// Where each frame's data is within `data`, the pixel data of `h` (encapsulated items
/// or native runs). Every table entry and item is checked against the data before it is used.
pub fn locate_frames(
    h: &InstanceHeader,
    data: &(impl PixelBytes + ?Sized),
) -> Result<Vec<FrameBytes>, DicomError> {
    let frames = usize::try_from(h.number_of_frames)
        .ok()
        .filter(|&f| (1..=MAX_FRAMES as usize).contains(&f))
        .ok_or_else(|| DicomError::corrupt(format!("{} frames", h.number_of_frames)))?;
    let size = data.size();
    if let Some(frame_bytes) = FrameCodec::of(h)?.native_frame_bytes(h) {
        return native_frames(h, frames, frame_bytes, size);
    }
    let (tag, bot_len) = item_header(data, 0)?
        .ok_or_else(|| DicomError::corrupt("pixel data ends before its offset table"))?;
    if tag != ITEM {
        return Err(DicomError::corrupt(
            "pixel data does not start with an offset table item",
        ));
    }
    let origin = 8 + u64::from(bot_len); // table offsets count from here
    if origin > size {
        return Err(DicomError::corrupt(
            "basic offset table longer than the pixel data",
        ));
    }

    if let (Some(offsets), Some(lengths)) = (&h.extended_offsets, &h.extended_lengths) {
        if bot_len != 0 {
            return Err(DicomError::corrupt(
                "extended offset table with a non-empty basic one",
            ));
        }
        if offsets.len() != frames || lengths.len() != frames {
            return Err(DicomError::corrupt(format!(
                "extended offset table of {} offsets and {} lengths for {frames} frames",
                offsets.len(),
                lengths.len()
            )));
        }
        let mut out = Vec::with_capacity(frames);
        for (&offset, &length) in offsets.iter().zip(lengths) {
            let bad = || {
                DicomError::corrupt(format!(
                    "extended offset table entry ({offset}, {length}) does not point at a frame item within the {size} bytes of pixel data"
                ))
            };
            let at = offset.checked_add(origin).ok_or_else(bad)?;
            let (tag, item_len) = item_header(data, at)?.ok_or_else(bad)?;
            let start = at + 8;
            let end = start.checked_add(length).ok_or_else(bad)?;
            if tag != ITEM || length > u64::from(item_len) || length > MAX_FRAME_BYTES || end > size
            {
                return Err(bad());
            }
            out.push(std::iter::once(start..end).collect());
        }
        return Ok(out);
    }

    // Walk the items (bounded by the data and the frame count).
    let mut fragments: Vec<(u64, Range<u64>)> = Vec::new();
    let mut at = origin;
    loop {
        let Some((tag, len)) = item_header(data, at)? else {
            return Err(DicomError::corrupt(
                "pixel data ends without a sequence delimiter",
            ));
        };
        if tag == SEQUENCE_DELIMITER {
            break;
        }
        if tag != ITEM {
            return Err(DicomError::corrupt(format!(
                "({:04X},{:04X}) among the pixel data items",
                tag.0, tag.1
            )));
        }
        let start = at + 8;
        let end = start + u64::from(len);
        if end > size || u64::from(len) > MAX_FRAME_BYTES {
            return Err(DicomError::corrupt(format!(
                "an item of {len} bytes at {} runs past the end of the object",
                h.pixel_value_start.saturating_add(at)
            )));
        }
        if fragments.len() >= frames.saturating_mul(16) {
            return Err(DicomError::corrupt("far more fragments than frames"));
        }
        fragments.push((at - origin, start..end));
        at = end;
    }

    if bot_len == 0 {
        if fragments.len() != frames {
            return Err(DicomError::corrupt(format!(
                "{} pixel data items for {frames} frames and no offset table",
                fragments.len()
            )));
        }
        return Ok(fragments
            .into_iter()
            .map(|(_, r)| std::iter::once(r).collect())
            .collect());
    }
    if u64::from(bot_len) != 4 * frames as u64 {
        return Err(DicomError::corrupt(format!(
            "basic offset table of {bot_len} bytes for {frames} frames"
        )));
    }
    let mut table = vec![0u8; 4 * frames];
    data.read_at(8, &mut table)?;
    let offsets: Vec<u64> = table
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    if offsets.windows(2).any(|w| w[0] >= w[1]) {
        return Err(DicomError::corrupt("basic offset table not increasing"));
    }
    let mut out = Vec::with_capacity(frames);
    for (i, &offset) in offsets.iter().enumerate() {
        let next = offsets.get(i + 1).copied().unwrap_or(u64::MAX);
        let first_fragment = fragments.partition_point(|(o, _)| *o < offset);
        if fragments.get(first_fragment).map(|(o, _)| *o) != Some(offset) {
            return Err(DicomError::corrupt(format!(
                "basic offset table entry {offset} is not an item"
            )));
        }
        let ranges: FrameBytes = fragments
            .iter()
            .skip(first_fragment)
            .take_while(|(o, _)| *o < next)
            .map(|(_, r)| r.clone())
            .collect();
        out.push(ranges);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::formats::dicom::header::Flavour;

    pub(crate) fn header(frames: u64) -> InstanceHeader {
        InstanceHeader {
            transfer_syntax_uid: crate::formats::dicom::codec::JPEG_BASELINE.into(),
            transfer_syntax_name: "JPEG Baseline".into(),
            sop_class_uid: crate::formats::dicom::header::WSI_SOP_CLASS.into(),
            sop_instance_uid: "1".into(),
            series_uid: "2".into(),
            image_type: vec!["ORIGINAL".into(), "PRIMARY".into(), "VOLUME".into()],
            flavour: Flavour::Volume,
            organization: Organization::TiledFull,
            total_columns: 1000,
            total_rows: 600,
            columns: 500,
            rows: 500,
            number_of_frames: frames,
            samples_per_pixel: 3,
            bits_allocated: 8,
            bits_stored: 8,
            planar_configuration: 0,
            photometric: "YBR_FULL_422".into(),
            focal_planes: 1,
            optical_paths: 1,
            concatenation_uid: None,
            concatenation_frame_offset: 0,
            pixel_spacing: None,
            objective_power: None,
            encapsulated: true,
            pixel_value_start: 1000,
            pixel_data_length: None,
            extended_offsets: None,
            extended_lengths: None,
            per_frame_items: 0,
            positions: vec![],
        }
    }

    fn item(out: &mut Vec<u8>, tag: (u16, u16), value: &[u8]) {
        out.extend_from_slice(&tag.0.to_le_bytes());
        out.extend_from_slice(&tag.1.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }

    fn slice<'a>(data: &'a [u8], r: &Range<u64>) -> &'a [u8] {
        &data[r.start as usize..r.end as usize]
    }

    fn pixel_data(bot: &[u32], frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let table: Vec<u8> = bot.iter().flat_map(|o| o.to_le_bytes()).collect();
        item(&mut out, ITEM, &table);
        for f in frames {
            item(&mut out, ITEM, f);
        }
        item(&mut out, SEQUENCE_DELIMITER, &[]);
        out
    }

    #[test]
    fn tiled_full_places_column_fastest() {
        let h = header(4);
        let p = placements(&h).expect("placements");
        assert_eq!(
            p,
            vec![
                Some((0, 0)),
                Some((500, 0)),
                Some((0, 500)),
                Some((500, 500))
            ]
        );
        assert!(placements(&header(5)).is_err());
        assert!(placements(&header(3)).is_err());
    }

    #[test]
    fn tiled_sparse_uses_positions() {
        let mut h = header(2);
        h.organization = Organization::TiledSparse;
        h.per_frame_items = 2;
        h.positions = vec![(501, 101), (1, 1)];
        assert_eq!(
            placements(&h).expect("p"),
            vec![Some((500, 100)), Some((0, 0))]
        );
        h.positions = vec![(1, 1)];
        assert!(placements(&h).is_err());
        h.positions = vec![(1, 1), (1001, 1)];
        assert!(placements(&h).is_err());
    }

    #[test]
    fn hostile_geometry_is_corrupt() {
        let mut h = header(4);
        h.rows = 0;
        assert!(placements(&h).is_err());
        let mut h = header(4);
        h.columns = 65535;
        assert!(placements(&h).is_err());
        let mut h = header(u64::MAX);
        h.total_columns = u64::MAX;
        assert!(placements(&h).is_err());
    }

    #[test]
    fn items_offset_tables_and_walk_agree() {
        let frames: [&[u8]; 2] = [b"abcd", b"efghij"];
        let h = header(2);
        let walk = pixel_data(&[], &frames);
        let w = locate_frames(&h, walk.as_slice()).expect("walk");
        assert_eq!(slice(&walk, &w[1][0]), b"efghij");
        let bot = pixel_data(&[0, 12], &frames);
        let b = locate_frames(&h, bot.as_slice()).expect("bot");
        assert_eq!(slice(&bot, &b[0][0]), b"abcd");
        assert_eq!(slice(&bot, &b[1][0]), b"efghij");
        let mut e = header(2);
        e.extended_offsets = Some(vec![0, 12]);
        e.extended_lengths = Some(vec![4, 6]);
        let x = locate_frames(&e, walk.as_slice()).expect("eot");
        assert_eq!(slice(&walk, &x[1][0]), b"efghij");
    }

    #[test]
    fn hostile_tables_and_items_are_corrupt() {
        let frames: [&[u8]; 2] = [b"abcd", b"efghij"];
        let walk = pixel_data(&[], &frames);
        // Item count does not match frames.
        assert!(locate_frames(&header(3), walk.as_slice()).is_err());
        // EOT beyond the data.
        let mut e = header(2);
        e.extended_offsets = Some(vec![0, 1 << 40]);
        e.extended_lengths = Some(vec![4, 6]);
        assert!(locate_frames(&e, walk.as_slice()).is_err());
        // An item longer than the data.
        let mut long = walk.clone();
        long[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(locate_frames(&header(2), long.as_slice()).is_err());
        // BOT not pointing at items / wrong size.
        assert!(locate_frames(&header(2), pixel_data(&[0, 5], &frames).as_slice()).is_err());
        assert!(locate_frames(&header(2), pixel_data(&[0], &frames).as_slice()).is_err());
        // Truncated: no delimiter.
        assert!(locate_frames(&header(2), &walk[..walk.len() - 8]).is_err());
    }

    #[test]
    fn declared_frames_must_be_backed_by_bytes() {
        let mut h = header(2);
        // Offset table item and two item headers: 24 bytes after the pixel data start.
        assert!(check_frames_backed(&h, 1000 + 24).is_ok());
        let err = check_frames_backed(&h, 1000 + 23).unwrap_err();
        assert!(err.to_string().contains("declares 2 frames"), "{err}");
        h.number_of_frames = MAX_FRAMES;
        assert!(check_frames_backed(&h, 1 << 20).is_err());
        // Native: rows x columns x samples x bits, within the declared length too.
        h.encapsulated = false;
        h.number_of_frames = 2;
        let frame = u64::from(h.rows) * u64::from(h.columns) * 3;
        h.pixel_data_length = Some(2 * frame);
        assert!(check_frames_backed(&h, 1000 + 2 * frame).is_ok());
        assert!(check_frames_backed(&h, 1000 + 2 * frame - 1).is_err());
        h.pixel_data_length = Some(frame);
        assert!(check_frames_backed(&h, 1000 + 2 * frame).is_err());
    }
}
