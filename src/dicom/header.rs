//! One DICOM instance's header, read from a byte prefix of the object in two passes.
//!
//! Why two passes: dicom-rs's object reader allocates every value from its declared
//! length before reading it (up to 4 GiB per element) and returns `Ok` with a truncated
//! object when the prefix happens to end on an element boundary, so "parsed" never
//! means "complete". Pass 1 walks the data set with the parser's lazy layer, which reads
//! no value it is told to skip, checks every value's end against the prefix and the
//! object size, bounds the nesting depth, and collects what pass 2 would have to
//! materialise in bulk (the Extended Offset Table, the per-frame positions of
//! TILED_SPARSE). Only when pass 1 reached the pixel data does pass 2 build the object
//! (up to the per-frame sequence) for the small attributes; every length in it has been
//! bounded by then. Pass 1 also counts what pass 2 would materialise (elements and
//! items outside the per-frame groups, [`MAX_HEADER_ELEMENTS`]), and the header's
//! declared frames must be backed by the bytes after it
//! ([`super::frames::check_frames_backed`]), so a small object cannot make anyone
//! allocate for millions of items or frames it does not hold.
//!
//! The caller reads a prefix (say [`FIRST_READ`] bytes), calls [`scan_prefix`], and
//! re-reads as long as it answers [`Scan::NeedMore`].

use std::io::Cursor;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{FileMetaTable, InMemDicomObject, OpenFileOptions, file::ReadPreamble};
use dicom_parser::dataset::LazyDataToken;
use dicom_parser::dataset::lazy_read::LazyDataSetReader;
use dicom_parser::stateful::decode::{StatefulDecode, StatefulDecoder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::DicomError;

/// A good first read: every instance of the shared set finishes in 4 KiB; 16 KiB leaves
/// room for long private headers.
pub const FIRST_READ: u64 = 16 * 1024;

/// Longest header (everything before the pixel data) accepted. A TILED_SPARSE level with
/// a million frames needs about 100 bytes per frame of positions.
pub const MAX_HEADER: u64 = 64 * 1024 * 1024;

/// Deepest sequence nesting accepted (pass 2 builds nested objects recursively).
pub const MAX_DEPTH: usize = 16;

/// Most data elements and sequence items (outside the per-frame functional groups) a
/// header may hold. Pass 2 materialises each of them as an object of its own (about a
/// kilobyte apiece), so this bounds its memory near 100 MB; real WSI headers hold a few
/// hundred. The per-frame groups are not materialised (pass 1 reads them lazily), so a
/// TILED_SPARSE level's million frames are not counted here.
pub const MAX_HEADER_ELEMENTS: u64 = 100_000;

/// Bytes asked for beyond a value that does not fit the prefix, so that a few more
/// elements come along in the same read.
const SLACK: u64 = 64 * 1024;

/// The SOP class of VL Whole Slide Microscopy images.
pub const WSI_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.77.1.6";

/// The transfer syntax decoded directly (JPEG baseline, 8 bit).
pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

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
    let end = usize::try_from(header.pixel_value_start)
        .ok()
        .filter(|&e| e <= prefix.len())
        .ok_or_else(|| DicomError::corrupt("pixel data starts past the header"))?;
    let object = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .read_until(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .from_reader(prefix.get(..end).unwrap_or_default())
        .map_err(|e| DicomError::corrupt(format!("header: {e}")))?;
    let instance = describe(&object, header)?;
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

/// Where the file meta group (0002,xxxx) ends, by its elements' declared lengths.
enum MetaGroup {
    /// Every meta element lies inside the prefix.
    Within,
    /// An element goes on past the prefix (but not past the object): read more.
    PastPrefix,
}

/// Most elements a file meta group may hold (the standard defines about a dozen).
const MAX_META_ELEMENTS: usize = 256;

/// Walks the meta group's element headers (always explicit VR little endian) and checks
/// every declared length against the prefix and the object, without allocating.
fn meta_group_end(prefix: &[u8], object_size: u64) -> Result<MetaGroup, DicomError> {
    // PS3.5 7.1.2: these VRs have a 16-bit length; every other one, and any VR the
    // parser does not know (it reads an unknown VR as UN), a 32-bit length after two
    // reserved bytes. The same rule as the meta reader's, or a hostile VR makes the two
    // disagree on a length the reader then allocates.
    const SHORT_VRS: [&[u8; 2]; 21] = [
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
        b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    ];
    let mut at = 132usize;
    // The meta reader reads elements, of any group, until it has consumed the group
    // length (0002,0000) declares; the walk checks the same elements.
    let mut group_end: Option<u64> = None;
    for _ in 0..MAX_META_ELEMENTS {
        if group_end.is_some_and(|end| at as u64 >= end) {
            return Ok(MetaGroup::Within);
        }
        let Some(head) = prefix.get(at..at + 8) else {
            return Ok(MetaGroup::PastPrefix);
        };
        let group = u16::from_le_bytes([head[0], head[1]]);
        if group != 0x0002 && group_end.is_none() {
            return Ok(MetaGroup::Within);
        }
        if at == 132 && head[2..4] == [0, 0] && head[4..6] == *b"UL" && head[6..8] == [4, 0] {
            let Some(value) = prefix.get(at + 8..at + 12) else {
                return Ok(MetaGroup::PastPrefix);
            };
            let length = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
            group_end = Some(at as u64 + 12 + u64::from(length));
        }
        let vr = [head[4], head[5]];
        let (header, len) = if !SHORT_VRS.iter().any(|v| **v == vr) {
            let Some(long) = prefix.get(at + 8..at + 12) else {
                return Ok(MetaGroup::PastPrefix);
            };
            (
                12u64,
                u64::from(u32::from_le_bytes([long[0], long[1], long[2], long[3]])),
            )
        } else {
            (8u64, u64::from(u16::from_le_bytes([head[6], head[7]])))
        };
        if len == u64::from(u32::MAX) {
            return Err(DicomError::corrupt(
                "a file meta element of undefined length",
            ));
        }
        let end = at as u64 + header + len;
        if end > object_size || end > MAX_HEADER {
            return Err(DicomError::corrupt(format!(
                "a file meta element declares {len} bytes, past the {} the header may hold",
                object_size.min(MAX_HEADER)
            )));
        }
        if end > prefix.len() as u64 {
            return Ok(MetaGroup::PastPrefix);
        }
        at = end as usize;
    }
    Err(DicomError::corrupt(format!(
        "the file meta group holds more than {MAX_META_ELEMENTS} elements"
    )))
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
    if !is_dicom(prefix) {
        return Err(DicomError::corrupt("no DICM magic at offset 128"));
    }
    // The meta group's declared lengths are checked against the bytes at hand first:
    // the meta reader allocates what an element declares before reading it.
    match meta_group_end(prefix, object_size)? {
        MetaGroup::Within => {}
        MetaGroup::PastPrefix => return Ok(None),
    }
    let mut cursor = Cursor::new(prefix.get(128..).unwrap_or_default());
    let meta = match FileMetaTable::from_reader(&mut cursor) {
        Ok(meta) => meta,
        Err(e) if avail < object_size => {
            let _ = e;
            return Ok(None);
        }
        Err(e) => return Err(DicomError::corrupt(format!("file meta group: {e}"))),
    };
    let dataset_start = 128 + cursor.position();
    let ts_uid = meta
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string();
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
    let mut stack: Vec<Tag> = Vec::new();
    let mut position: (Option<i64>, Option<i64>) = (None, None);
    // Elements and items pass 2 will materialise, counted before it runs.
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
            if !stack.contains(&tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE) {
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
                    stack.push(tag);
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
                    stack.push(tags::PIXEL_DATA);
                    if stack.len() > MAX_DEPTH {
                        return Err(DicomError::corrupt(format!(
                            "sequences nested deeper than {MAX_DEPTH}"
                        )));
                    }
                }
                LazyDataToken::SequenceEnd => {
                    stack.pop();
                }
                LazyDataToken::ItemEnd
                    if stack.last() == Some(&tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE) =>
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
                    let token = LazyDataToken::LazyValue { header, decoder };
                    let root_table = stack.is_empty()
                        && (tag == tags::EXTENDED_OFFSET_TABLE
                            || tag == tags::EXTENDED_OFFSET_TABLE_LENGTHS);
                    let in_per_frame = stack.contains(&tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
                    let is_position = in_per_frame
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

/// Pass 2: the small attributes, from the object read up to the per-frame sequence.
fn describe(
    object: &dicom_object::FileDicomObject<InMemDicomObject>,
    pass1: Pass1,
) -> Result<InstanceHeader, DicomError> {
    let image_type: Vec<String> = multi_str(object, tags::IMAGE_TYPE);
    let flavour = match image_type.get(2).map(String::as_str) {
        Some("VOLUME") => Flavour::Volume,
        Some("THUMBNAIL") => Flavour::Thumbnail,
        Some("LABEL") => Flavour::Label,
        Some("OVERVIEW") => Flavour::Overview,
        _ => Flavour::Other,
    };
    let organization = match string(object, tags::DIMENSION_ORGANIZATION_TYPE).as_deref() {
        Some("TILED_FULL") => Organization::TiledFull,
        Some("TILED_SPARSE") => Organization::TiledSparse,
        _ => Organization::Unspecified,
    };
    let spacing = pixel_spacing(object);
    let objective_power = object
        .get(tags::OPTICAL_PATH_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|items| items.first())
        .and_then(|item| string(item, tags::OBJECTIVE_LENS_POWER))
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|p| p.is_finite() && *p > 0.0);
    let u16_of = |tag: Tag, default: u16| -> Result<u16, DicomError> {
        match object.get(tag) {
            None => Ok(default),
            Some(e) => e
                .to_int::<u16>()
                .map_err(|_| DicomError::corrupt(format!("{tag} is not a 16-bit number"))),
        }
    };
    let u64_of = |tag: Tag, default: u64| -> Result<u64, DicomError> {
        match object.get(tag) {
            None => Ok(default),
            Some(e) => e
                .to_int::<u64>()
                .map_err(|_| DicomError::corrupt(format!("{tag} is not a number"))),
        }
    };
    Ok(InstanceHeader {
        transfer_syntax_uid: pass1.ts_uid,
        transfer_syntax_name: pass1.ts_name,
        sop_class_uid: string(object, tags::SOP_CLASS_UID).unwrap_or_default(),
        sop_instance_uid: string(object, tags::SOP_INSTANCE_UID).unwrap_or_default(),
        series_uid: string(object, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        image_type,
        flavour,
        organization,
        total_columns: u64_of(tags::TOTAL_PIXEL_MATRIX_COLUMNS, 0)?,
        total_rows: u64_of(tags::TOTAL_PIXEL_MATRIX_ROWS, 0)?,
        columns: u32::from(u16_of(tags::COLUMNS, 0)?),
        rows: u32::from(u16_of(tags::ROWS, 0)?),
        number_of_frames: u64_of(tags::NUMBER_OF_FRAMES, 1)?,
        samples_per_pixel: u16_of(tags::SAMPLES_PER_PIXEL, 0)?,
        bits_allocated: u16_of(tags::BITS_ALLOCATED, 0)?,
        bits_stored: u16_of(tags::BITS_STORED, 0)?,
        planar_configuration: u16_of(tags::PLANAR_CONFIGURATION, 0)?,
        photometric: string(object, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default(),
        focal_planes: u64_of(tags::TOTAL_PIXEL_MATRIX_FOCAL_PLANES, 1)?,
        optical_paths: u64_of(tags::NUMBER_OF_OPTICAL_PATHS, 1)?,
        concatenation_uid: string(object, tags::CONCATENATION_UID),
        concatenation_frame_offset: u64_of(tags::CONCATENATION_FRAME_OFFSET_NUMBER, 0)?,
        pixel_spacing: spacing,
        objective_power,
        encapsulated: pass1.encapsulated,
        pixel_value_start: pass1.pixel_value_start,
        pixel_data_length: pass1.pixel_data_length,
        extended_offsets: pass1.eot,
        extended_lengths: pass1.eot_lengths,
        per_frame_items: pass1.per_frame_items,
        positions: pass1.positions,
    })
}

/// PixelSpacing from the shared functional groups (where WSI puts it), else the root.
fn pixel_spacing(object: &InMemDicomObject) -> Option<(f64, f64)> {
    let shared = object
        .get(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|items| items.first())
        .and_then(|i| i.get(tags::PIXEL_MEASURES_SEQUENCE))
        .and_then(|e| e.items())
        .and_then(|items| items.first())
        .map(|i| multi_str(i, tags::PIXEL_SPACING));
    let values = shared
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| multi_str(object, tags::PIXEL_SPACING));
    let mut parsed = values.iter().map(|s| s.parse::<f64>().ok());
    match (parsed.next().flatten(), parsed.next().flatten()) {
        (Some(row), Some(column))
            if row.is_finite() && column.is_finite() && row > 0.0 && column > 0.0 =>
        {
            Some((row, column))
        }
        _ => None,
    }
}

fn string(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = object.get(tag)?.to_str().ok()?;
    let trimmed = value.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

fn multi_str(object: &InMemDicomObject, tag: Tag) -> Vec<String> {
    object
        .get(tag)
        .and_then(|e| e.to_multi_str().ok())
        .map(|values| {
            values
                .iter()
                .map(|s| {
                    s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
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
        assert_eq!(h.transfer_syntax_uid, JPEG_BASELINE);
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
    fn a_meta_element_of_unknown_vr_has_the_long_length_the_reader_allocates() {
        // (0002,0012) with VR "\0\0": the meta reader reads an unknown VR as UN, with a
        // 32-bit length, and allocates it; the check once read a 16-bit 0 and let a
        // 2 GB allocation through (found by fuzzing in CI).
        let (held, size) = regression("regression-oom-unknown-vr-meta-length");
        match scan_prefix(&held, size) {
            Err(DicomError::Corrupt(why)) => assert!(why.contains("meta element"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_meta_check_follows_the_group_length_as_the_reader_does() {
        // A group length that runs past the 0002 elements: the meta reader goes on
        // reading (and allocating) whatever elements follow, so the check walks them too
        // (found by fuzzing: 2.5 GB).
        let (held, size) = regression("regression-oom-meta-group-length");
        match scan_prefix(&held, size) {
            Err(DicomError::Corrupt(why)) => assert!(why.contains("meta"), "{why}"),
            other => panic!("{other:?}"),
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
