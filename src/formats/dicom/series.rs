//! The slide a linked instance names: its series' VOLUME instances grouped into levels.
//!
//! As OpenSlide 4 does it: keep the instances of the linked instance's series and of the
//! WSI SOP class whose ImageType value 3 is VOLUME (LABEL and OVERVIEW are never read,
//! they can carry patient text; THUMBNAIL only serves as a level when it is at least the
//! thumbnail size), group them by total pixel matrix size (several instances of one
//! size must be one concatenation), check what the pixel path relies on, and describe
//! the slide from the largest level. The storage side and the engine both plan from
//! here, so they read the same level.

use std::collections::HashSet;
use std::ops::Range;

use super::DicomError;
use super::codec::FrameCodec;
use super::frames;
use super::header::{Flavour, InstanceHeader, WSI_SOP_CLASS};
use crate::naming::SeriesIdentity;
use crate::slide::geometry::{choose_level, thumbnail_dims};
use crate::slide::{MAX_LEVELS, SlideMetadata, ThumbnailOptions};

/// Most candidate instances a folder may hold for one slide.
pub const MAX_INSTANCES: usize = 1024;

/// One level: instances (indices into the candidates) of one matrix size, in
/// concatenation order.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub width: u64,
    pub height: u64,
    pub instances: Vec<usize>,
}

/// The levels of a slide, largest first, and its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub levels: Vec<Level>,
    pub metadata: SlideMetadata,
    pub identity: SeriesIdentity,
}

/// File-name rule for siblings of a linked instance (same for local folders and bucket
/// prefixes): when the link ends in `.dcm`, the `.dcm` siblings; otherwise every file
/// (converters also write extension-less instances). The linked file is a candidate.
pub fn is_candidate(linked_name: &str, sibling_name: &str) -> bool {
    let base = |name: &str| name.rsplit('/').next().unwrap_or(name).to_string();
    let sibling = base(sibling_name);
    if sibling.is_empty() || sibling.starts_with('.') {
        return false;
    }
    let dcm = |name: &str| name.to_ascii_lowercase().ends_with(".dcm");
    if dcm(&base(linked_name)) {
        dcm(&sibling)
    } else {
        true
    }
}

fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The levels of the slide `linked` names, from the headers of the candidates in its
/// folder. `max_size` decides whether a THUMBNAIL instance may serve as a level.
pub fn build_series(
    linked: &str,
    instances: &[(String, u64, InstanceHeader)],
    options: &ThumbnailOptions,
) -> Result<Series, DicomError> {
    if instances.len() > MAX_INSTANCES {
        return Err(DicomError::corrupt(format!(
            "{} instances beside the link (at most {MAX_INSTANCES})",
            instances.len()
        )));
    }
    let linked_base = base_name(linked);
    let (_, _, link) = instances
        .iter()
        .find(|(name, _, _)| base_name(name) == linked_base)
        .ok_or_else(|| DicomError::corrupt(format!("{linked} is not among the instances")))?;
    if link.sop_class_uid != WSI_SOP_CLASS {
        return Err(DicomError::Unsupported(format!(
            "SOP class {} is not VL Whole Slide Microscopy Image Storage",
            link.sop_class_uid
        )));
    }
    if link.series_uid.is_empty() {
        return Err(DicomError::corrupt(
            "the linked instance has no SeriesInstanceUID",
        ));
    }

    // Members, in file-name order so duplicates resolve the same way everywhere.
    let mut order: Vec<usize> = (0..instances.len()).collect();
    order.sort_by(|&a, &b| instances[a].0.cmp(&instances[b].0));
    let mut seen = HashSet::new();
    let mut volume: Vec<usize> = Vec::new();
    let mut thumbnails: Vec<usize> = Vec::new();
    for i in order {
        let h = &instances[i].2;
        if h.series_uid != link.series_uid || h.sop_class_uid != WSI_SOP_CLASS {
            continue;
        }
        if !seen.insert(h.sop_instance_uid.clone()) {
            continue; // the same instance twice (a copy): read once
        }
        match h.flavour {
            Flavour::Volume => volume.push(i),
            Flavour::Thumbnail => thumbnails.push(i),
            Flavour::Label | Flavour::Overview | Flavour::Other => {}
        }
    }
    if volume.is_empty() {
        return Err(DicomError::corrupt("the series has no VOLUME instance"));
    }

    let mut levels = group(instances, &volume)?;
    levels.sort_by(|a, b| b.width.cmp(&a.width).then(b.height.cmp(&a.height)));
    let largest = levels
        .first()
        .ok_or_else(|| DicomError::corrupt("the series has no level"))?
        .clone();
    if largest.width.saturating_mul(largest.height) > options.max_slide_pixels {
        return Err(DicomError::TooLarge {
            width: largest.width,
            height: largest.height,
            limit: options.max_slide_pixels,
        });
    }
    // A THUMBNAIL instance may serve as a level only when at least the thumbnail size
    // and smaller than every VOLUME level of that size.
    let target = thumbnail_dims(largest.width, largest.height, options.max_size);
    for group in group(instances, &thumbnails)? {
        let big_enough = group.width >= u64::from(target.0) && group.height >= u64::from(target.1);
        let new_size = !levels.iter().any(|l| l.width == group.width);
        if big_enough && new_size && group.width < largest.width {
            levels.push(group);
        }
    }
    levels.sort_by(|a, b| b.width.cmp(&a.width).then(b.height.cmp(&a.height)));
    if levels.len() > MAX_LEVELS {
        return Err(DicomError::corrupt(format!(
            "{} levels (at most {MAX_LEVELS})",
            levels.len()
        )));
    }

    let first = &instances[largest.instances[0]].2;
    let metadata = SlideMetadata {
        width: Some(largest.width),
        height: Some(largest.height),
        mpp: first.pixel_spacing.map(|(_, column)| column * 1000.0),
        objective_power: first.objective_power,
        vendor: "dicom".to_string(),
    };
    let series_in_folder: HashSet<&str> = instances
        .iter()
        .filter(|(_, _, h)| h.sop_class_uid == WSI_SOP_CLASS && !h.series_uid.is_empty())
        .map(|(_, _, h)| h.series_uid.as_str())
        .collect();
    let identity = SeriesIdentity {
        uid: link.series_uid.clone(),
        folder_shared: series_in_folder.len() > 1,
    };
    Ok(Series {
        levels,
        metadata,
        identity,
    })
}

/// Groups instances by matrix size; checks each instance and each group.
fn group(
    instances: &[(String, u64, InstanceHeader)],
    members: &[usize],
) -> Result<Vec<Level>, DicomError> {
    let mut levels: Vec<Level> = Vec::new();
    for &i in members {
        let h = &instances[i].2;
        check_instance(h)?;
        match levels
            .iter_mut()
            .find(|l| (l.width, l.height) == (h.total_columns, h.total_rows))
        {
            Some(level) => {
                let other = &instances[level.instances[0]].2;
                let same_concatenation =
                    h.concatenation_uid.is_some() && h.concatenation_uid == other.concatenation_uid;
                if !same_concatenation || (h.columns, h.rows) != (other.columns, other.rows) {
                    return Err(DicomError::corrupt(format!(
                        "two instances of {} x {} pixels that are not one concatenation",
                        h.total_columns, h.total_rows
                    )));
                }
                level.instances.push(i);
            }
            None => levels.push(Level {
                width: h.total_columns,
                height: h.total_rows,
                instances: vec![i],
            }),
        }
    }
    for level in &mut levels {
        level
            .instances
            .sort_by_key(|&i| instances[i].2.concatenation_frame_offset);
    }
    Ok(levels)
}

/// What the pixel path relies on, as OpenSlide checks it.
fn check_instance(h: &InstanceHeader) -> Result<(), DicomError> {
    frames::check_frame_geometry(h)?;
    // The transfer syntax and the pixel description (samples, bits, photometric).
    FrameCodec::of(h)?;
    if h.focal_planes != 1 {
        return Err(DicomError::Unsupported(format!(
            "{} focal planes; only single-plane slides are read",
            h.focal_planes
        )));
    }
    // Placement checks (frame counts against the grid, sparse positions).
    frames::placements(h)?;
    Ok(())
}

/// The level a thumbnail of `options.max_size` reads, and the thumbnail's size.
pub fn chosen_level(series: &Series, options: &ThumbnailOptions) -> (usize, (u32, u32)) {
    let (w, h) = (
        series.metadata.width.unwrap_or(1),
        series.metadata.height.unwrap_or(1),
    );
    let target = thumbnail_dims(w, h, options.max_size);
    let dims: Vec<(u64, u64)> = series.levels.iter().map(|l| (l.width, l.height)).collect();
    (choose_level(&dims, target), target)
}

/// Byte ranges (per file name) beyond the headers that making the thumbnail will read:
/// the pixel data of the chosen level's instance(s), `[pixel_value_start, object end)`.
pub fn pixel_ranges(
    linked: &str,
    instances: &[(String, u64, InstanceHeader)],
    options: &ThumbnailOptions,
) -> Result<Vec<(String, Range<u64>)>, DicomError> {
    let series = build_series(linked, instances, options)?;
    let (index, _) = chosen_level(&series, options);
    let level = series
        .levels
        .get(index)
        .ok_or_else(|| DicomError::corrupt("no level to read"))?;
    level
        .instances
        .iter()
        .map(|&i| {
            let (name, size, h) = &instances[i];
            FrameCodec::of(h)?;
            if h.pixel_value_start >= *size {
                return Err(DicomError::corrupt(
                    "pixel data starts past the object's end",
                ));
            }
            Ok((name.clone(), h.pixel_value_start..*size))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::dicom::header::{Scan, scan_prefix};

    #[test]
    fn candidates_follow_the_link_extension() {
        assert!(is_candidate("a/level-0.dcm", "a/level-1.dcm"));
        assert!(is_candidate("level-0.dcm", "LEVEL-1.DCM"));
        assert!(!is_candidate("a/level-0.dcm", "a/README.md"));
        assert!(!is_candidate("a/level-0.dcm", "a/.hidden.dcm"));
        assert!(is_candidate("a/instance", "a/other"));
        assert!(is_candidate("x.dcm", "x.dcm"));
    }

    #[test]
    fn a_level_in_an_undecoded_syntax_plans_no_ranges_and_names_it() {
        let instances = shared_instances().expect("the shared DICOM set");
        let options = ThumbnailOptions::default();
        let linked = instances[0].0.clone();
        assert!(pixel_ranges(&linked, &instances, &options).is_ok());
        let mut jpeg_ls = instances.clone();
        for (_, _, h) in &mut jpeg_ls {
            h.transfer_syntax_uid = "1.2.840.10008.1.2.4.57".into();
            h.transfer_syntax_name = "JPEG Lossless, Non-Hierarchical (Process 14)".into();
        }
        let err = pixel_ranges(&linked, &jpeg_ls, &options).expect_err("unsupported");
        assert!(matches!(err, DicomError::Unsupported(_)));
        let text = err.to_string();
        assert!(
            text.contains("1.2.840.10008.1.2.4.57 (JPEG Lossless"),
            "{text}"
        );
    }

    fn shared_instances() -> Option<Vec<(String, u64, InstanceHeader)>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/testdata/dicom/CMU-1-Small-Region");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).ok()? {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_string_lossy().to_string();
            if !name.ends_with(".dcm") {
                continue;
            }
            let bytes = std::fs::read(&path).ok()?;
            match scan_prefix(&bytes, bytes.len() as u64).ok()? {
                Scan::Header(h) => out.push((name, bytes.len() as u64, *h)),
                Scan::NeedMore(_) => return None,
            }
        }
        Some(out)
    }

    #[test]
    fn shared_set_levels_metadata_and_ranges() {
        let instances = shared_instances().expect("the shared DICOM set");
        assert_eq!(instances.len(), 12);
        let options = ThumbnailOptions::default();
        for (linked, _, _) in &instances {
            let series = build_series(linked, &instances, &options).expect("series");
            assert_eq!(series.levels.len(), 12);
            assert_eq!(
                series.metadata,
                SlideMetadata {
                    width: Some(2220),
                    height: Some(2967),
                    mpp: Some(0.499),
                    objective_power: None,
                    vendor: "dicom".into()
                }
            );
            assert!(!series.identity.folder_shared, "one series in the folder");
            assert_eq!(series.identity.uid, instances[0].2.series_uid);
            let ranges = pixel_ranges(linked, &instances, &options).expect("ranges");
            assert_eq!(ranges.len(), 1);
            assert!(ranges[0].0.contains("level-1"), "{ranges:?}");
        }
    }

    #[test]
    fn foreign_series_label_and_thumbnail_rules() {
        let mut instances = shared_instances().expect("the shared DICOM set");
        let options = ThumbnailOptions::default();
        // A LABEL bigger than everything is ignored; a foreign VOLUME too.
        let mut label = instances[0].clone();
        label.0 = "label.dcm".into();
        label.2.flavour = Flavour::Label;
        label.2.sop_instance_uid = "label".into();
        label.2.total_columns = 4000;
        label.2.total_rows = 4000;
        label.2.number_of_frames = 64;
        let mut foreign = instances[0].clone();
        foreign.0 = "foreign.dcm".into();
        foreign.2.series_uid = "9.9".into();
        foreign.2.sop_instance_uid = "foreign".into();
        instances.push(label);
        instances.push(foreign);
        let series = build_series("level-0-frames-0-30.dcm", &instances, &options).expect("series");
        assert_eq!(series.levels.len(), 12);
        assert_eq!(series.metadata.width, Some(2220));
        // Linking the foreign instance names the other series; both know the folder
        // holds two (their thumbnails are named apart).
        let foreign = build_series("foreign.dcm", &instances, &options).expect("foreign");
        assert_eq!(foreign.identity.uid, "9.9");
        assert!(foreign.identity.folder_shared && series.identity.folder_shared);
        assert_ne!(foreign.identity.uid, series.identity.uid);
    }
}
