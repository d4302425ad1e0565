//! One DICOM instance's header, read from a byte prefix of the object in one walk.
//!
//! Why one walk, and not dicom-rs's object reader: that reader allocates every value
//! from its declared length before reading it (up to 4 GiB per element) and returns
//! `Ok` with a truncated object when the prefix ends on an element boundary, so
//! "parsed" never means "complete"; and any second parser over the same bytes disagrees
//! with the first somewhere (fuzzing found 4 GiB allocations that way, twice). So the
//! meta group is read by [`super::meta`], and the data set by the parser's lazy layer,
//! which reads no value it is told to skip: the walk checks every value's end against
//! the prefix and the object size, bounds the nesting depth and the number of elements
//! ([`MAX_HEADER_ELEMENTS`]), and reads a value only where the header needs it
//! ([`super::attributes`]: a few small root attributes, each at most 4 KiB) or in bulk
//! where the frames need it (the Extended Offset Table, the per-frame positions of
//! TILED_SPARSE), each bounded by the bytes at hand. The header's declared frames must
//! then be backed by the bytes after it ([`super::frames::check_frames_backed`]), so a
//! small object cannot make anyone allocate for millions of frames it does not hold.
//!
//! The caller reads a prefix (say [`FIRST_READ`] bytes), calls [`scan_prefix`], and
//! re-reads as long as it answers [`Scan::NeedMore`].

use std::io::Cursor;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_parser::dataset::LazyDataToken;
use dicom_parser::dataset::lazy_read::LazyDataSetReader;
use dicom_parser::stateful::decode::{StatefulDecode, StatefulDecoder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::DicomError;
use super::attributes::{self, Attributes};
use super::meta::MetaRead;

/// A good first read: every instance of the shared set finishes in 4 KiB; 16 KiB leaves
/// room for long private headers.
pub const FIRST_READ: u64 = 16 * 1024;

/// Longest header (everything before the pixel data) accepted. A TILED_SPARSE level with
/// a million frames needs about 100 bytes per frame of positions.
pub const MAX_HEADER: u64 = 64 * 1024 * 1024;

/// Deepest sequence nesting accepted (no real header nests more than a few levels).
pub const MAX_DEPTH: usize = 16;

/// Most data elements and sequence items (outside the per-frame functional groups) a
/// header may hold: real WSI headers hold a few hundred, and a walk over millions of
/// tiny items is time spent on nothing. The per-frame groups hold one item per frame
/// of a TILED_SPARSE level (a million, say) and are bounded by the frames instead.
pub const MAX_HEADER_ELEMENTS: u64 = 100_000;

/// Bytes asked for beyond a value that does not fit the prefix, so that a few more
/// elements come along in the same read.
const SLACK: u64 = 64 * 1024;

/// The SOP class of VL Whole Slide Microscopy images.
pub const WSI_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.77.1.6";

/// What [`scan_prefix`] made of a prefix.
#[derive(Debug)]
pub enum Scan {
    /// The header goes on past the prefix: read at least this many bytes from the start.
    NeedMore(u64),
    Header(Box<InstanceHeader>),
}

/// ImageType value 3: what an instance shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Volume,
    Thumbnail,
    Label,
    Overview,
    Other,
}

/// DimensionOrganizationType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Organization {
    TiledFull,
    TiledSparse,
    /// Absent or another value: per-frame positions if present, else TILED_FULL.
    Unspecified,
}

/// The header of one instance: what the series, level and frame code need.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceHeader {
    pub transfer_syntax_uid: String,
    /// The transfer syntax's name (for `unsupported_format` messages).
    pub transfer_syntax_name: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub series_uid: String,
    /// ImageType values, trimmed.
    pub image_type: Vec<String>,
    pub flavour: Flavour,
    pub organization: Organization,
    /// TotalPixelMatrixColumns x TotalPixelMatrixRows (the level's size).
    pub total_columns: u64,
    pub total_rows: u64,
    /// Columns x Rows (one frame's size).
    pub columns: u32,
    pub rows: u32,
    pub number_of_frames: u64,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub planar_configuration: u16,
    pub photometric: String,
    /// TotalPixelMatrixFocalPlanes and NumberOfOpticalPaths (default 1).
    pub focal_planes: u64,
    pub optical_paths: u64,
    pub concatenation_uid: Option<String>,
    /// ConcatenationFrameOffsetNumber (0 when not concatenated).
    pub concatenation_frame_offset: u64,
    /// PixelSpacing (row spacing, column spacing) in millimetres.
    pub pixel_spacing: Option<(f64, f64)>,
    pub objective_power: Option<f64>,
    /// Whether the pixel data is encapsulated (items of compressed frames).
    pub encapsulated: bool,
    /// Absolute offset of the first byte after the PixelData element header: the Basic
    /// Offset Table item when encapsulated, the first pixel otherwise.
    pub pixel_value_start: u64,
    /// The PixelData element's declared length when defined (native pixel data).
    pub pixel_data_length: Option<u64>,
    /// Extended Offset Table and its lengths (relative to the first byte after the BOT item).
    pub extended_offsets: Option<Vec<u64>>,
    pub extended_lengths: Option<Vec<u64>>,
    /// Number of items in PerFrameFunctionalGroupsSequence.
    pub per_frame_items: u64,
    /// 1-based (column, row) of each frame's top-left pixel, from the per-frame
    /// PlanePositionSlideSequence; one entry per per-frame item that has both.
    pub positions: Vec<(i64, i64)>,
}

/// Whether a file starts like a DICOM Part 10 file ("DICM" at 128).
pub fn is_dicom(first_132_bytes: &[u8]) -> bool {
    first_132_bytes.get(128..132) == Some(b"DICM".as_slice())
}

/// Reads the header of an object of `object_size` bytes from its first `prefix.len()`
/// bytes. Answers [`Scan::NeedMore`] with the prefix length wanted when the header goes
/// on past the prefix; [`DicomError::Corrupt`] when it cannot be complete.
pub fn scan_prefix(prefix: &[u8], object_size: u64) -> Result<Scan, DicomError> {
    let avail = prefix.len() as u64;
    if avail > object_size {
        return Err(DicomError::corrupt(format!(
            "prefix of {avail} bytes is longer than the object ({object_size} bytes)"
        )));
    }
    // The parser under pass 1 panics on some malformed structures (an item outside any
    // sequence, found by fuzzing); that is a corrupt header, not a crash of the worker.
    let walked =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pass1(prefix, object_size)))
            .map_err(|_| {
                DicomError::corrupt("the data set's structure is malformed (the parser gave up)")
            })?;
    let Some(pass1) = walked? else {
        return grow(avail, avail.saturating_mul(2), object_size);
    };
    let header = match pass1 {
        Pass1Outcome::NeedMore(wanted) => return grow(avail, wanted, object_size),
        Pass1Outcome::Done(p) => p,
    };
    let instance = describe(header)?;
    super::frames::check_frames_backed(&instance, object_size)?;
    Ok(Scan::Header(Box::new(instance)))
}

/// `NeedMore` or, when the whole object is at hand already (or the header would be too
/// long), corrupt.
fn grow(avail: u64, wanted: u64, object_size: u64) -> Result<Scan, DicomError> {
    if avail >= object_size {
        return Err(DicomError::corrupt(
            "the header ends before the pixel data (truncated or not an image)",
        ));
    }
    if avail >= MAX_HEADER {
        return Err(DicomError::corrupt(format!(
            "header longer than {} MiB",
            MAX_HEADER >> 20
        )));
    }
    let wanted = wanted
        .max(avail.saturating_mul(2))
        .max(FIRST_READ)
        .min(object_size)
        .min(MAX_HEADER);
    Ok(Scan::NeedMore(wanted))
}

enum Pass1Outcome {
    NeedMore(u64),
    Done(Pass1),
}

/// What pass 1 collects besides the bounds.
#[derive(Default)]
struct Pass1 {
    ts_uid: String,
    ts_name: String,
    /// The values `describe` reads.
    attributes: Attributes,
    encapsulated: bool,
    pixel_value_start: u64,
    pixel_data_length: Option<u64>,
    eot: Option<Vec<u64>>,
    eot_lengths: Option<Vec<u64>>,
    per_frame_items: u64,
    positions: Vec<(i64, i64)>,
}

/// Pass 1. `Ok(None)`: the prefix ends before the meta group or the data set could be
/// told apart (grow). Errors that only a short prefix explains become `NeedMore`.
fn pass1(prefix: &[u8], object_size: u64) -> Result<Option<Pass1Outcome>, DicomError> {
    let avail = prefix.len() as u64;
    if prefix.len() < 132 {
        return Ok(None);
    }
    // The meta group is read by `meta` alone (dicom-rs's meta reader allocates what an
    // element declares before reading it).
    let meta = match super::meta::read_meta(prefix, object_size)? {
        MetaRead::Complete(meta) => meta,
        MetaRead::PastPrefix => return Ok(None),
    };
    let dataset_start = meta.dataset_start;
    let ts_uid = meta.transfer_syntax;
    let cursor = Cursor::new(prefix.get(dataset_start as usize..).unwrap_or_default());
    let Some(ts) = TransferSyntaxRegistry.get(&ts_uid) else {
        return Err(DicomError::Unsupported(format!(
            "unknown transfer syntax {ts_uid}"
        )));
    };
    let mut decoder = StatefulDecoder::new_with_ts(cursor, ts, dataset_start).map_err(|e| {
        DicomError::Unsupported(format!("transfer syntax {ts_uid} ({}): {e}", ts.name()))
    })?;
    let mut out = Pass1 {
        ts_uid: ts_uid.clone(),
        ts_name: ts.name().to_string(),
        ..Default::default()
    };
    // The sequences we are in (PixelData stands for a nested pixel sequence).
    // The sequences we are in, each with the number of its items begun so far.
    let mut stack: Vec<(Tag, u32)> = Vec::new();
    let in_per_frame = |stack: &[(Tag, u32)]| {
        stack
            .iter()
            .any(|(t, _)| *t == tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
    };
    let mut position: (Option<i64>, Option<i64>) = (None, None);
    // Elements and items outside the per-frame groups (time is bounded with memory).
    let mut materialised = 0u64;
    let incomplete = |why: String| -> Result<Option<Pass1Outcome>, DicomError> {
        if avail < object_size {
            Ok(None)
        } else {
            Err(DicomError::corrupt(why))
        }
    };
    {
        let mut reader = LazyDataSetReader::new(&mut decoder);
        loop {
            let token = match reader.advance() {
                None => return incomplete("the data set ends before the pixel data".into()),
                Some(Err(e)) => return incomplete(format!("data set: {e}")),
                Some(Ok(token)) => token,
            };
            if !in_per_frame(&stack) {
                materialised += 1;
                if materialised > MAX_HEADER_ELEMENTS {
                    return Err(DicomError::corrupt(format!(
                        "the header holds more than {MAX_HEADER_ELEMENTS} data elements and \
                         sequence items before the pixel data (real slides hold a few hundred)"
                    )));
                }
            }
            match token {
                LazyDataToken::SequenceStart { tag, .. } => {
                    stack.push((tag, 0));
                    if stack.len() > MAX_DEPTH {
                        return Err(DicomError::corrupt(format!(
                            "sequences nested deeper than {MAX_DEPTH}"
                        )));
                    }
                }
                LazyDataToken::PixelSequenceStart if stack.is_empty() => {
                    out.encapsulated = true;
                    break;
                }
                LazyDataToken::PixelSequenceStart => {
                    // An icon image inside a sequence: walk over its items.
                    stack.push((tags::PIXEL_DATA, 0));
                    if stack.len() > MAX_DEPTH {
                        return Err(DicomError::corrupt(format!(
                            "sequences nested deeper than {MAX_DEPTH}"
                        )));
                    }
                }
                LazyDataToken::SequenceEnd => {
                    stack.pop();
                }
                LazyDataToken::ItemStart { .. } => {
                    if let Some(top) = stack.last_mut() {
                        top.1 = top.1.saturating_add(1);
                    }
                }
                LazyDataToken::ItemEnd
                    if stack.last().map(|top| top.0)
                        == Some(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE) =>
                {
                    out.per_frame_items += 1;
                    if let (Some(c), Some(r)) = position {
                        out.positions.push((c, r));
                    }
                    position = (None, None);
                }
                LazyDataToken::LazyItemValue { len, decoder } => {
                    let end = decoder.position().saturating_add(u64::from(len));
                    if end > object_size {
                        return Err(DicomError::corrupt(format!(
                            "an item of {len} bytes ends at {end}, past the object ({object_size} bytes)"
                        )));
                    }
                    if end > avail {
                        return Ok(Some(Pass1Outcome::NeedMore(end.saturating_add(SLACK))));
                    }
                    LazyDataToken::LazyItemValue { len, decoder }
                        .skip()
                        .map_err(|e| DicomError::corrupt(format!("item: {e}")))?;
                }
                LazyDataToken::LazyValue { header, decoder } => {
                    let start = decoder.position();
                    if stack.is_empty() && header.tag == tags::PIXEL_DATA {
                        out.pixel_value_start = start;
                        if !header.len.is_undefined() {
                            out.pixel_data_length = Some(u64::from(header.len.0));
                        }
                        break;
                    }
                    if header.len.is_undefined() {
                        return Err(DicomError::corrupt(format!(
                            "element {} has an undefined length",
                            header.tag
                        )));
                    }
                    let end = start.saturating_add(u64::from(header.len.0));
                    if end > object_size {
                        return Err(DicomError::corrupt(format!(
                            "element {} of {} bytes ends at {end}, past the object ({object_size} bytes)",
                            header.tag, header.len.0
                        )));
                    }
                    if end > avail {
                        return Ok(Some(Pass1Outcome::NeedMore(end.saturating_add(SLACK))));
                    }
                    let tag = header.tag;
                    let header_len = header.len.0;
                    let token = LazyDataToken::LazyValue { header, decoder };
                    let root_table = stack.is_empty()
                        && (tag == tags::EXTENDED_OFFSET_TABLE
                            || tag == tags::EXTENDED_OFFSET_TABLE_LENGTHS);
                    let is_position = in_per_frame(&stack)
                        && (tag == tags::COLUMN_POSITION_IN_TOTAL_IMAGE_PIXEL_MATRIX
                            || tag == tags::ROW_POSITION_IN_TOTAL_IMAGE_PIXEL_MATRIX);
                    if root_table || is_position {
                        let value = token
                            .into_value()
                            .map_err(|e| DicomError::corrupt(format!("element {tag}: {e}")))?;
                        let bad =
                            |what: &str| DicomError::corrupt(format!("{what} is not numeric"));
                        if tag == tags::EXTENDED_OFFSET_TABLE {
                            out.eot = Some(
                                value
                                    .to_multi_int::<u64>()
                                    .map_err(|_| bad("ExtendedOffsetTable"))?,
                            );
                        } else if tag == tags::EXTENDED_OFFSET_TABLE_LENGTHS {
                            out.eot_lengths = Some(
                                value
                                    .to_multi_int::<u64>()
                                    .map_err(|_| bad("ExtendedOffsetTableLengths"))?,
                            );
                        } else if tag == tags::COLUMN_POSITION_IN_TOTAL_IMAGE_PIXEL_MATRIX {
                            position.0 =
                                Some(value.to_int::<i64>().map_err(|_| bad("column position"))?);
                        } else {
                            position.1 =
                                Some(value.to_int::<i64>().map_err(|_| bad("row position"))?);
                        }
                    } else if let Some(slot) = attributes::slot(&stack, tag) {
                        if u64::from(header_len) > u64::from(attributes::MAX_VALUE) {
                            return Err(DicomError::corrupt(format!(
                                "element {tag} holds {header_len} bytes, more than any valid one"
                            )));
                        }
                        let value = token
                            .into_value()
                            .map_err(|e| DicomError::corrupt(format!("element {tag}: {e}")))?;
                        out.attributes.keep(slot, value);
                    } else {
                        // skip_bytes does not fail at the end of the data: the check
                        // against `avail` above is what makes this safe.
                        token
                            .skip()
                            .map_err(|e| DicomError::corrupt(format!("element {tag}: {e}")))?;
                    }
                }
                _ => {}
            }
        }
    }
    if out.encapsulated {
        out.pixel_value_start = decoder.position();
    }
    Ok(Some(Pass1Outcome::Done(out)))
}

/// The instance header from what the walk kept.
fn describe(pass1: Pass1) -> Result<InstanceHeader, DicomError> {
    let a = &pass1.attributes;
    let image_type: Vec<String> = a.strings(tags::IMAGE_TYPE);
    let flavour = match image_type.get(2).map(String::as_str) {
        Some("VOLUME") => Flavour::Volume,
        Some("THUMBNAIL") => Flavour::Thumbnail,
        Some("LABEL") => Flavour::Label,
        Some("OVERVIEW") => Flavour::Overview,
        _ => Flavour::Other,
    };
    let organization = match a.string(tags::DIMENSION_ORGANIZATION_TYPE).as_deref() {
        Some("TILED_FULL") => Organization::TiledFull,
        Some("TILED_SPARSE") => Organization::TiledSparse,
        _ => Organization::Unspecified,
    };
    Ok(InstanceHeader {
        sop_class_uid: a.string(tags::SOP_CLASS_UID).unwrap_or_default(),
        sop_instance_uid: a.string(tags::SOP_INSTANCE_UID).unwrap_or_default(),
        series_uid: a.string(tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        image_type,
        flavour,
        organization,
        total_columns: a.u64(tags::TOTAL_PIXEL_MATRIX_COLUMNS, 0)?,
        total_rows: a.u64(tags::TOTAL_PIXEL_MATRIX_ROWS, 0)?,
        columns: u32::from(a.u16(tags::COLUMNS, 0)?),
        rows: u32::from(a.u16(tags::ROWS, 0)?),
        number_of_frames: a.u64(tags::NUMBER_OF_FRAMES, 1)?,
        samples_per_pixel: a.u16(tags::SAMPLES_PER_PIXEL, 0)?,
        bits_allocated: a.u16(tags::BITS_ALLOCATED, 0)?,
        bits_stored: a.u16(tags::BITS_STORED, 0)?,
        planar_configuration: a.u16(tags::PLANAR_CONFIGURATION, 0)?,
        photometric: a
            .string(tags::PHOTOMETRIC_INTERPRETATION)
            .unwrap_or_default(),
        focal_planes: a.u64(tags::TOTAL_PIXEL_MATRIX_FOCAL_PLANES, 1)?,
        optical_paths: a.u64(tags::NUMBER_OF_OPTICAL_PATHS, 1)?,
        concatenation_uid: a.string(tags::CONCATENATION_UID),
        concatenation_frame_offset: a.u64(tags::CONCATENATION_FRAME_OFFSET_NUMBER, 0)?,
        pixel_spacing: a.pixel_spacing(),
        objective_power: a.objective_power(),
        transfer_syntax_uid: pass1.ts_uid,
        transfer_syntax_name: pass1.ts_name,
        encapsulated: pass1.encapsulated,
        pixel_value_start: pass1.pixel_value_start,
        pixel_data_length: pass1.pixel_data_length,
        extended_offsets: pass1.eot,
        extended_lengths: pass1.eot_lengths,
        per_frame_items: pass1.per_frame_items,
        positions: pass1.positions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(name: &str) -> Vec<u8> {
        shared_opt(name).expect("the shared DICOM set (../shared/testdata/dicom)")
    }

    fn shared_opt(name: &str) -> Option<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/testdata/dicom/CMU-1-Small-Region");
        let entry = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().contains(name))?;
        std::fs::read(entry.path()).ok()
    }

    fn scan_growing(bytes: &[u8], first: u64) -> Result<InstanceHeader, DicomError> {
        let size = bytes.len() as u64;
        let mut n = first.min(size);
        for _ in 0..64 {
            match scan_prefix(&bytes[..n as usize], size)? {
                Scan::NeedMore(m) => {
                    assert!(m > n, "NeedMore must grow: {m} after {n}");
                    n = m;
                }
                Scan::Header(h) => return Ok(*h),
            }
        }
        panic!("no header after 64 rounds");
    }

    #[test]
    fn is_dicom_needs_dicm_at_128() {
        let mut b = vec![0u8; 132];
        assert!(!is_dicom(&b));
        b[128..132].copy_from_slice(b"DICM");
        assert!(is_dicom(&b));
        assert!(!is_dicom(&b[..131]));
    }

    #[test]
    fn shared_level_0_header_from_any_prefix() {
        let bytes = shared("level-0");
        let h = scan_growing(&bytes, 16).expect("header");
        assert_eq!(h.pixel_value_start, 1348);
        assert_eq!((h.total_columns, h.total_rows), (2220, 2967));
        assert_eq!((h.columns, h.rows, h.number_of_frames), (500, 500, 30));
        assert_eq!(h.flavour, Flavour::Volume);
        assert_eq!(h.organization, Organization::TiledFull);
        assert_eq!(
            h.transfer_syntax_uid,
            crate::formats::dicom::codec::JPEG_BASELINE
        );
        assert_eq!(h.pixel_spacing.map(|s| s.1 * 1000.0), Some(0.499));
        assert!(h.encapsulated);
        assert_eq!(h.objective_power, None);
        // Every prefix shorter than the header asks for more, never answers early.
        for n in [0usize, 131, 132, 300, 344, 1000, 1347] {
            match scan_prefix(&bytes[..n], bytes.len() as u64) {
                Ok(Scan::NeedMore(m)) => assert!(m as usize > n),
                other => panic!("prefix {n}: {other:?}"),
            }
        }
        assert!(matches!(
            scan_prefix(&bytes[..1348], bytes.len() as u64),
            Ok(Scan::Header(_))
        ));
    }

    #[test]
    fn truncated_whole_object_is_corrupt() {
        let bytes = shared("level-0");
        let cut = &bytes[..1000];
        assert!(matches!(
            scan_prefix(cut, cut.len() as u64),
            Err(DicomError::Corrupt(_))
        ));
    }

    #[test]
    fn four_gib_element_is_corrupt_without_allocating() {
        let bytes = shared("level-0");
        let mut evil = bytes[..344].to_vec();
        evil.extend_from_slice(&[
            0x08, 0x00, 0x01, 0x00, b'O', b'B', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4,
        ]);
        let err = scan_prefix(&evil, evil.len() as u64).expect_err("corrupt");
        assert!(err.to_string().contains("past the object"), "{err}");
    }

    /// The fuzzing regression inputs (`fuzz/seeds/dicom_scan/regression-*`): a selector
    /// byte, the object's bytes past the blob (u32 LE), then the blob.
    fn regression(name: &str) -> (Vec<u8>, u64) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds/dicom_scan")
            .join(name);
        let data = std::fs::read(path).expect("the regression input");
        let past = u32::from_le_bytes(data[1..5].try_into().unwrap());
        let held = data[5..].to_vec();
        let size = held.len() as u64 + u64::from(past);
        (held, size)
    }

    #[test]
    fn a_meta_element_declaring_gigabytes_is_refused_without_allocating_it() {
        let (held, size) = regression("regression-oom-meta-element-length");
        for len in [132, 4096, held.len()] {
            let prefix = &held[..len.min(held.len())];
            match scan_prefix(prefix, size) {
                Err(DicomError::Corrupt(why)) => assert!(why.contains("meta"), "{why}"),
                Ok(Scan::NeedMore(n)) => assert!(n <= MAX_HEADER),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn meta_groups_that_declared_gigabytes_to_dicom_rs_are_corrupt() {
        // Found by fuzzing, each a multi-GB allocation in dicom-rs's meta reader, which
        // `meta::read_meta` now replaces: (0002,0012) with VR "\0\0", whose 32-bit
        // length that reader allocated; a group length running past the 0002 elements,
        // whose followers it read and allocated.
        for (name, says) in [
            ("regression-oom-unknown-vr-meta-length", "meta element"),
            ("regression-oom-meta-group-length", "meta"),
        ] {
            let (held, size) = regression(name);
            match scan_prefix(&held, size) {
                Err(DicomError::Corrupt(why)) => assert!(why.contains(says), "{name}: {why}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_group_length_of_another_vr_does_not_reach_the_meta_reader() {
        // (0002,0000) as FL: dicom-rs's meta reader took its 4 bytes as the group length,
        // read on into group 0102 and allocated a 4 GiB UID (fuzzing, in CI). No slide's
        // meta group reaches that reader now; whatever the prefix, no allocation, no header.
        let (held, size) = regression("regression-oom-group-length-of-any-vr");
        for len in [128, 132, 180, held.len()] {
            let prefix = &held[..len.min(held.len())];
            match scan_prefix(prefix, size) {
                Err(DicomError::Corrupt(_)) => {}
                Ok(Scan::NeedMore(n)) => assert!(n <= size && n > prefix.len() as u64),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_header_is_read_by_one_walk_that_reads_no_value_it_has_not_bounded() {
        // An item of defined length 0xFFFFFFFE closed by delimiters: the object reader
        // that used to read the small attributes parsed it differently from the walk and
        // allocated a 4 GiB OB (fuzzing). Answer it within the bytes at hand.
        let (held, size) = regression("regression-oom-defined-item-closed-by-delimiter");
        for len in [1000, held.len()] {
            match scan_prefix(&held[..len.min(held.len())], size) {
                Ok(Scan::NeedMore(n)) => assert!(n <= size && n > len as u64),
                Err(DicomError::Corrupt(_)) => {}
                Ok(Scan::Header(h)) => assert!(h.pixel_value_start <= len as u64),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_item_outside_any_sequence_is_corrupt_not_a_panic() {
        let (held, size) = regression("regression-panic-item-outside-sequence");
        // Whatever prefix the fetch holds, the scan answers; it never unwinds.
        for len in [held.len(), held.len() / 2, 200] {
            let result = scan_prefix(&held[..len.min(held.len())], size);
            assert!(
                !matches!(result, Ok(Scan::Header(_))),
                "no header from a malformed data set"
            );
        }
        assert!(matches!(
            scan_prefix(&held, held.len() as u64),
            Err(DicomError::Corrupt(_))
        ));
    }

    #[test]
    fn a_header_of_more_items_than_the_bound_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.dcm");
        let items = MAX_HEADER_ELEMENTS as u32 + 50_000;
        crate::fixtures::poison_dicom::write_items(&path, items).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let err = scan_growing(&bytes, FIRST_READ).expect_err("corrupt");
        assert!(
            matches!(&err, DicomError::Corrupt(m) if m.contains("more than 100000 data elements")),
            "{err}"
        );
        // The same shape with few items is a header.
        crate::fixtures::poison_dicom::write_items(&path, 1000).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let h = scan_growing(&bytes, FIRST_READ).expect("header");
        assert_eq!(h.number_of_frames, 1);
    }

    #[test]
    fn frames_the_object_has_no_bytes_for_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance-0000.dcm");
        crate::fixtures::poison_dicom::write_concatenation_bomb(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() < 2048, "{} bytes", bytes.len());
        let err = scan_growing(&bytes, FIRST_READ).expect_err("corrupt");
        assert!(err.to_string().contains("declares 4194304 frames"), "{err}");
    }
}
