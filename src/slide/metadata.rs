//! The response's `metadata` object, read from OpenSlide's standard properties.

use serde::{Deserialize, Serialize};

pub const PROP_VENDOR: &str = "openslide.vendor";
pub const PROP_MPP_X: &str = "openslide.mpp-x";
pub const PROP_OBJECTIVE_POWER: &str = "openslide.objective-power";
pub const PROP_BACKGROUND: &str = "openslide.background-color";

/// Level-0 size, resolution, magnification and vendor. Every key is always serialised;
/// what the slide does not say (or says unparsably) is `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlideMetadata {
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub mpp: Option<f64>,
    pub objective_power: Option<f64>,
    pub vendor: String,
}

impl SlideMetadata {
    /// Builds the metadata from level-0 dimensions and a property lookup.
    pub fn from_properties(
        dimensions: Option<(u64, u64)>,
        property: impl Fn(&str) -> Option<String>,
    ) -> SlideMetadata {
        SlideMetadata {
            width: dimensions.map(|d| d.0),
            height: dimensions.map(|d| d.1),
            mpp: property(PROP_MPP_X).and_then(|v| parse_number(&v)),
            objective_power: property(PROP_OBJECTIVE_POWER).and_then(|v| parse_number(&v)),
            vendor: property(PROP_VENDOR)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "unknown".to_string()),
        }
    }
}

/// A finite decimal number, or nothing: JSON has no NaN or infinity.
fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `openslide.background-color` (`RRGGBB`), white when absent or malformed.
pub fn parse_background(value: Option<&str>) -> [u8; 3] {
    let parse = |hex: &str| -> Option<[u8; 3]> {
        if hex.len() != 6 {
            return None;
        }
        let channel = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
        Some([channel(0)?, channel(2)?, channel(4)?])
    };
    value
        .and_then(|v| parse(v.trim()))
        .unwrap_or([255, 255, 255])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn full_metadata_serialises_in_contract_shape() {
        let m = SlideMetadata::from_properties(
            Some((2220, 2967)),
            lookup(&[
                (PROP_MPP_X, "0.499"),
                (PROP_OBJECTIVE_POWER, "20"),
                (PROP_VENDOR, "aperio"),
            ]),
        );
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"width":2220,"height":2967,"mpp":0.499,"objective_power":20.0,"vendor":"aperio"}"#
        );
    }

    #[test]
    fn absent_or_unparsable_values_are_null_and_vendor_unknown() {
        let m = SlideMetadata::from_properties(
            None,
            lookup(&[(PROP_MPP_X, "abc"), (PROP_OBJECTIVE_POWER, "inf")]),
        );
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"width":null,"height":null,"mpp":null,"objective_power":null,"vendor":"unknown"}"#
        );
    }

    #[test]
    fn background_colour_parses_or_defaults_to_white() {
        assert_eq!(parse_background(Some("E0F0A0")), [0xE0, 0xF0, 0xA0]);
        assert_eq!(parse_background(Some("nothex")), [255, 255, 255]);
        assert_eq!(parse_background(None), [255, 255, 255]);
    }
}
