//! The few attributes a whole-slide header needs, kept while the one walk over the data
//! set (`header::pass1`) goes by.
//!
//! Why not an object model: building dicom-rs's in-memory object meant a second parser
//! over the same untrusted bytes, and wherever the two disagreed (an item of defined
//! length closed by a delimiter, say) the second allocated what the first had never
//! checked: 4 GiB `OB` values from 1 KB files (fuzzing). Now one lazy walk checks
//! every length against the bytes at hand, and reads a value only when its place in the
//! data set is one of the [`Slot`]s below and it is at most [`MAX_VALUE`] bytes.

use std::collections::BTreeMap;

use dicom_core::{PrimitiveValue, Tag};
use dicom_dictionary_std::tags;

use super::DicomError;

/// Longest value kept: UIDs, code strings, numbers (a few of them each); anything
/// longer in one of these places is not a valid header.
pub const MAX_VALUE: u32 = 4096;

/// Attributes read at the data set's root.
const ROOT: [Tag; 21] = [
    tags::IMAGE_TYPE,
    tags::DIMENSION_ORGANIZATION_TYPE,
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::SERIES_INSTANCE_UID,
    tags::TOTAL_PIXEL_MATRIX_COLUMNS,
    tags::TOTAL_PIXEL_MATRIX_ROWS,
    tags::COLUMNS,
    tags::ROWS,
    tags::NUMBER_OF_FRAMES,
    tags::SAMPLES_PER_PIXEL,
    tags::BITS_ALLOCATED,
    tags::BITS_STORED,
    tags::PLANAR_CONFIGURATION,
    tags::PHOTOMETRIC_INTERPRETATION,
    tags::TOTAL_PIXEL_MATRIX_FOCAL_PLANES,
    tags::NUMBER_OF_OPTICAL_PATHS,
    tags::CONCATENATION_UID,
    tags::CONCATENATION_FRAME_OFFSET_NUMBER,
    tags::PIXEL_SPACING,
    tags::SPECIFIC_CHARACTER_SET,
];

/// Where a kept value sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    Root(Tag),
    /// SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing, where
    /// whole-slide images put it.
    SharedPixelSpacing,
    /// OpticalPathSequence[0].ObjectiveLensPower.
    ObjectivePower,
}

/// The sequences the walk is in, outermost first, each with the number of its items
/// begun so far (1 in the first item).
pub type Path = [(Tag, u32)];

/// The slot of element `tag` at `path`, if it is one the header keeps.
pub fn slot(path: &Path, tag: Tag) -> Option<Slot> {
    match path {
        [] if ROOT.contains(&tag) => Some(Slot::Root(tag)),
        [
            (tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, 1),
            (tags::PIXEL_MEASURES_SEQUENCE, 1),
        ] if tag == tags::PIXEL_SPACING => Some(Slot::SharedPixelSpacing),
        [(tags::OPTICAL_PATH_SEQUENCE, 1)] if tag == tags::OBJECTIVE_LENS_POWER => {
            Some(Slot::ObjectivePower)
        }
        _ => None,
    }
}

/// The kept values.
#[derive(Debug, Default)]
pub struct Attributes {
    values: BTreeMap<Slot, PrimitiveValue>,
}

impl Attributes {
    /// Keeps `value` for `slot` (a repeated element keeps its first value, as a parser
    /// building an object would keep one).
    pub fn keep(&mut self, slot: Slot, value: PrimitiveValue) {
        self.values.entry(slot).or_insert(value);
    }

    /// A root string value, padding trimmed; `None` when absent or empty.
    pub fn string(&self, tag: Tag) -> Option<String> {
        self.text(Slot::Root(tag))
    }

    fn text(&self, slot: Slot) -> Option<String> {
        let value = self.values.get(&slot)?.to_str();
        let trimmed = value.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        (!trimmed.is_empty()).then(|| trimmed.to_string())
    }

    /// A root multi-valued string, each value trimmed; empty when absent.
    pub fn strings(&self, tag: Tag) -> Vec<String> {
        self.texts(Slot::Root(tag))
    }

    fn texts(&self, slot: Slot) -> Vec<String> {
        self.values
            .get(&slot)
            .map(|v| {
                v.to_multi_str()
                    .iter()
                    .map(|s| {
                        s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A root 16-bit number, `default` when absent; corrupt when present and not one.
    pub fn u16(&self, tag: Tag, default: u16) -> Result<u16, DicomError> {
        self.number(tag, default, "a 16-bit number", |v| v.to_int::<u16>().ok())
    }

    /// A root number, `default` when absent; corrupt when present and not a number.
    pub fn u64(&self, tag: Tag, default: u64) -> Result<u64, DicomError> {
        self.number(tag, default, "a number", |v| v.to_int::<u64>().ok())
    }

    fn number<T>(
        &self,
        tag: Tag,
        default: T,
        what: &str,
        read: impl FnOnce(&PrimitiveValue) -> Option<T>,
    ) -> Result<T, DicomError> {
        match self.values.get(&Slot::Root(tag)) {
            None => Ok(default),
            Some(v) => read(v).ok_or_else(|| DicomError::corrupt(format!("{tag} is not {what}"))),
        }
    }

    /// PixelSpacing (row, column) in mm: from the shared functional groups, else the
    /// root; only when both are finite and positive.
    pub fn pixel_spacing(&self) -> Option<(f64, f64)> {
        let shared = self.texts(Slot::SharedPixelSpacing);
        let values = if shared.is_empty() {
            self.strings(tags::PIXEL_SPACING)
        } else {
            shared
        };
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

    /// The first optical path's objective lens power, when finite and positive.
    pub fn objective_power(&self) -> Option<f64> {
        self.text(Slot::ObjectivePower)
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|p| p.is_finite() && *p > 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::dicom_value;

    #[test]
    fn only_the_places_a_header_reads_are_slots() {
        assert_eq!(slot(&[], tags::ROWS), Some(Slot::Root(tags::ROWS)));
        assert_eq!(slot(&[], tags::PATIENT_NAME), None);
        let shared = [
            (tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, 1),
            (tags::PIXEL_MEASURES_SEQUENCE, 1),
        ];
        assert_eq!(
            slot(&shared, tags::PIXEL_SPACING),
            Some(Slot::SharedPixelSpacing)
        );
        // The second item of either sequence, or rows inside a sequence, is not.
        let second = [
            (tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, 2),
            (tags::PIXEL_MEASURES_SEQUENCE, 1),
        ];
        assert_eq!(slot(&second, tags::PIXEL_SPACING), None);
        assert_eq!(slot(&shared, tags::ROWS), None);
        assert_eq!(
            slot(
                &[(tags::OPTICAL_PATH_SEQUENCE, 1)],
                tags::OBJECTIVE_LENS_POWER
            ),
            Some(Slot::ObjectivePower)
        );
        assert_eq!(
            slot(
                &[(tags::OPTICAL_PATH_SEQUENCE, 2)],
                tags::OBJECTIVE_LENS_POWER
            ),
            None
        );
    }

    #[test]
    fn values_read_back_trimmed_typed_and_checked() {
        let mut a = Attributes::default();
        a.keep(
            Slot::Root(tags::IMAGE_TYPE),
            dicom_value!(Strs, ["ORIGINAL", "PRIMARY", "VOLUME ", "NONE"]),
        );
        a.keep(Slot::Root(tags::ROWS), dicom_value!(U16, [256]));
        a.keep(Slot::Root(tags::ROWS), dicom_value!(U16, [1]));
        a.keep(Slot::Root(tags::NUMBER_OF_FRAMES), dicom_value!(Str, "12 "));
        a.keep(Slot::Root(tags::COLUMNS), dicom_value!(Str, "many"));
        a.keep(
            Slot::SharedPixelSpacing,
            dicom_value!(Strs, ["0.00025", "0.0005"]),
        );
        a.keep(Slot::ObjectivePower, dicom_value!(Str, "20"));
        assert_eq!(a.strings(tags::IMAGE_TYPE)[2], "VOLUME");
        assert_eq!(a.u16(tags::ROWS, 0).unwrap(), 256, "first value kept");
        assert_eq!(a.u64(tags::NUMBER_OF_FRAMES, 1).unwrap(), 12);
        assert!(a.u16(tags::COLUMNS, 0).is_err());
        assert_eq!(a.u64(tags::TOTAL_PIXEL_MATRIX_ROWS, 7).unwrap(), 7);
        assert_eq!(a.pixel_spacing(), Some((0.00025, 0.0005)));
        assert_eq!(a.objective_power(), Some(20.0));
        assert_eq!(a.string(tags::SERIES_INSTANCE_UID), None);
    }
}
