//! The file meta group (PS3.10 7.1) of an untrusted instance, read without allocating
//! anything its bytes declare.
//!
//! Why not dicom-rs's meta reader: it allocates every value from its declared length
//! before reading it (a 4 GiB `UI` from a 200-byte file), takes the group length from
//! any 4-byte first element whatever its VR, and then reads elements of any group until
//! that length is used up. Three attempts at checking the bytes before handing them to
//! it each left a way through (found by fuzzing in CI), so that reader never sees a
//! slide's bytes: this walk is the only parser of the meta group, and it yields what the
//! header needs (the transfer syntax, where the data set starts).

use super::DicomError;
use super::header::MAX_HEADER;

/// Where the meta group starts: after the 128-byte preamble and `DICM`.
const META_START: usize = 132;

/// Most elements a file meta group may hold (the standard defines about a dozen).
const MAX_META_ELEMENTS: usize = 256;

/// Longest transfer syntax UID value (a UI is at most 64 bytes, padding included).
const MAX_UID: u64 = 64;

/// PS3.5 7.1.2: these explicit VRs have a 16-bit length; every other one has a 32-bit
/// length after two reserved bytes.
const SHORT_VRS: [&[u8; 2]; 21] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
];

const TRANSFER_SYNTAX: (u16, u16) = (0x0002, 0x0010);
const GROUP_LENGTH: (u16, u16) = (0x0002, 0x0000);

/// What the header needs from the meta group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// TransferSyntaxUID, padding trimmed.
    pub transfer_syntax: String,
    /// Offset of the data set's first byte in the object.
    pub dataset_start: u64,
}

/// What [`read_meta`] made of a prefix.
#[derive(Debug, PartialEq, Eq)]
pub enum MetaRead {
    Complete(Meta),
    /// An element goes on past the prefix (but not past the object): read more.
    PastPrefix,
}

/// Walks the meta group's elements (always explicit VR little endian), checking every
/// declared length against the prefix, the object and [`MAX_HEADER`] before looking at
/// its value. The group ends where (0002,0000) says, or, without a group length, at the
/// first element of another group.
pub fn read_meta(prefix: &[u8], object_size: u64) -> Result<MetaRead, DicomError> {
    if prefix.get(128..132) != Some(b"DICM".as_slice()) {
        return Err(DicomError::corrupt("no DICM magic at offset 128"));
    }
    let mut at = META_START as u64;
    let mut group_end: Option<u64> = None;
    let mut transfer_syntax: Option<String> = None;
    for _ in 0..MAX_META_ELEMENTS {
        if let Some(end) = group_end {
            if at == end {
                return finish(transfer_syntax, at);
            }
            if at > end {
                return Err(DicomError::corrupt(
                    "a file meta element runs past the group length (0002,0000)",
                ));
            }
        }
        let Some(head) = slice(prefix, at, 8) else {
            return Ok(MetaRead::PastPrefix);
        };
        let tag = (
            u16::from_le_bytes([head[0], head[1]]),
            u16::from_le_bytes([head[2], head[3]]),
        );
        if tag.0 != 0x0002 {
            if group_end.is_some() {
                return Err(DicomError::corrupt(format!(
                    "element ({:04X},{:04X}) inside the file meta group",
                    tag.0, tag.1
                )));
            }
            return finish(transfer_syntax, at);
        }
        let vr = [head[4], head[5]];
        let (header_len, len) = if SHORT_VRS.iter().any(|v| **v == vr) {
            (8u64, u64::from(u16::from_le_bytes([head[6], head[7]])))
        } else {
            let Some(long) = slice(prefix, at + 8, 4) else {
                return Ok(MetaRead::PastPrefix);
            };
            let len = u32::from_le_bytes([long[0], long[1], long[2], long[3]]);
            if len == u32::MAX {
                return Err(DicomError::corrupt(
                    "a file meta element of undefined length",
                ));
            }
            (12u64, u64::from(len))
        };
        let value_at = at + header_len;
        let end = value_at + len;
        if end > object_size || end > MAX_HEADER {
            return Err(DicomError::corrupt(format!(
                "a file meta element declares {len} bytes, past the {} the header may hold",
                object_size.min(MAX_HEADER)
            )));
        }
        let Some(value) = slice(prefix, value_at, len) else {
            return Ok(MetaRead::PastPrefix);
        };
        if tag == GROUP_LENGTH && at == META_START as u64 {
            let bytes: [u8; 4] = value.try_into().map_err(|_| {
                DicomError::corrupt("the file meta group length (0002,0000) is not 4 bytes")
            })?;
            group_end = Some(end + u64::from(u32::from_le_bytes(bytes)));
        } else if tag == TRANSFER_SYNTAX {
            if len > MAX_UID {
                return Err(DicomError::corrupt(format!(
                    "a transfer syntax UID of {len} bytes (at most {MAX_UID})"
                )));
            }
            let uid = std::str::from_utf8(value)
                .map_err(|_| DicomError::corrupt("the transfer syntax UID is not text"))?;
            transfer_syntax = Some(uid.trim_end_matches(['\0', ' ']).to_string());
        }
        at = end;
    }
    Err(DicomError::corrupt(format!(
        "the file meta group holds more than {MAX_META_ELEMENTS} elements"
    )))
}

fn finish(transfer_syntax: Option<String>, at: u64) -> Result<MetaRead, DicomError> {
    let transfer_syntax = transfer_syntax
        .ok_or_else(|| DicomError::corrupt("the file meta group names no transfer syntax"))?;
    Ok(MetaRead::Complete(Meta {
        transfer_syntax,
        dataset_start: at,
    }))
}

fn slice(bytes: &[u8], at: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(at).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prefix of a preamble, DICM and the given explicit VR LE elements.
    fn file(elements: &[(u16, u16, &[u8; 2], &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; 128];
        out.extend_from_slice(b"DICM");
        for (group, element, vr, value) in elements {
            out.extend_from_slice(&group.to_le_bytes());
            out.extend_from_slice(&element.to_le_bytes());
            out.extend_from_slice(*vr);
            if SHORT_VRS.contains(vr) {
                out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            } else {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            }
            out.extend_from_slice(value);
        }
        out
    }

    const TS: &[u8] = b"1.2.840.10008.1.2.4.50\0";

    #[test]
    fn a_meta_group_yields_its_transfer_syntax_and_the_data_set_start() {
        let ts = TS;
        let group = (12 + 2 + 8 + ts.len()) as u32;
        let bytes = file(&[
            (2, 0, b"UL", &group.to_le_bytes()),
            (2, 1, b"OB", &[0, 1]),
            (2, 0x10, b"UI", ts),
            (8, 0x16, b"UI", b"1.2\0"),
        ]);
        let start = 132 + 12 + group as u64;
        match read_meta(&bytes, 10_000).unwrap() {
            MetaRead::Complete(meta) => {
                assert_eq!(meta.transfer_syntax, "1.2.840.10008.1.2.4.50");
                assert_eq!(meta.dataset_start, start);
            }
            other => panic!("{other:?}"),
        }
        // Every shorter prefix asks for more, or (before the group's end is known) stops
        // at the group's last whole element; none is an error.
        for len in 132..start as usize {
            assert!(read_meta(&bytes[..len], 10_000).is_ok(), "{len}");
        }
    }

    #[test]
    fn a_value_declaring_more_than_the_object_is_refused_before_it_is_read() {
        // (0002,0003) with VR "\0\0" and a 4 GiB - 2 length, in a 210-byte object: the
        // meta reader allocated all of it (2.5 GB; fuzzing, in CI).
        let mut bytes = file(&[(2, 0, b"FL", &212u32.to_le_bytes())]);
        bytes.extend_from_slice(&[2, 0, 3, 0, 0, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF]);
        let err = read_meta(&bytes, bytes.len() as u64).unwrap_err();
        assert!(err.to_string().contains("declares"), "{err}");
        // The same length marked undefined.
        let mut bytes = file(&[(2, 0, b"UL", &40u32.to_le_bytes())]);
        bytes.extend_from_slice(&[2, 0, 3, 0, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        let err = read_meta(&bytes, 1 << 30).unwrap_err();
        assert!(err.to_string().contains("undefined"), "{err}");
    }

    #[test]
    fn a_group_length_covering_other_groups_is_corrupt() {
        let bytes = file(&[
            (2, 0, b"UL", &100u32.to_le_bytes()),
            (2, 0x10, b"UI", TS),
            (0x102, 0, b"OB", &[0, 0]),
        ]);
        let err = read_meta(&bytes, 10_000).unwrap_err();
        assert!(
            err.to_string().contains("inside the file meta group"),
            "{err}"
        );
    }

    #[test]
    fn a_group_without_a_transfer_syntax_or_with_a_long_one_is_corrupt() {
        let bytes = file(&[(2, 1, b"OB", &[0, 1]), (8, 0x16, b"UI", b"1.2\0")]);
        let err = read_meta(&bytes, 10_000).unwrap_err();
        assert!(err.to_string().contains("no transfer syntax"), "{err}");
        let long = [b'1'; 80];
        let bytes = file(&[(2, 0x10, b"UI", &long), (8, 0x16, b"UI", b"1.2\0")]);
        let err = read_meta(&bytes, 10_000).unwrap_err();
        assert!(err.to_string().contains("at most 64"), "{err}");
    }
}
