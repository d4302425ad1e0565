//! What a MIRAX slide's `Slidedat.ini` says about its geometry and its index: the keys
//! OpenSlide 4.0.1's MIRAX reader (`openslide-vendor-mirax.c`, `mirax_open`) reads, read
//! the way it reads them, so that the worker's planner knows the levels' sizes (and so
//! the level the engine will read) and which index records OpenSlide follows at open,
//! before a byte of pixels is fetched.
//!
//! Why its own module: the level sizes are not written anywhere; OpenSlide derives them
//! from the image grid, the camera divisions, the overlaps and the concatenation
//! exponents. The planner must derive exactly the same figures, or it would fetch a
//! level other than the one read; the unit tests hold it to OpenSlide on generated
//! slides.

use ini::Ini;

use crate::planning::PlanRefusal;
use crate::slide::MAX_LEVELS;

/// The keys of the zoom-level hierarchy (`HIER_0`, which OpenSlide requires it to be).
pub const SLIDE_ZOOM_LEVEL: &str = "Slide zoom level";
const POSITION_BUFFER: &str = "VIMSLIDE_POSITION_BUFFER";
const STITCHING_LAYER: &str = "StitchingIntensityLayer";
const SCAN_DATA_LAYER: &str = "Scan data layer";
/// The associated images OpenSlide opens (macro, label, thumbnail) by their values.
const ASSOCIATED: [&str; 3] = [
    "ScanDataLayer_SlideThumbnail",
    "ScanDataLayer_SlideBarcode",
    "ScanDataLayer_SlidePreview",
];
/// OpenSlide refuses a total concatenation exponent past this (`sizeof(int) * 8 - 2`).
const MAX_CONCAT_EXPONENT: i64 = 30;

/// One zoom level's section.
#[derive(Debug, Clone, PartialEq)]
pub struct Zoom {
    pub concat_exponent: i64,
    pub image_w: i64,
    pub image_h: i64,
    pub overlap_x: f64,
    pub overlap_y: f64,
}

/// The parts of `Slidedat.ini` the planner needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Slidedat {
    pub slide_id: String,
    pub images_x: i64,
    pub images_y: i64,
    pub image_divisions: i64,
    pub zooms: Vec<Zoom>,
    pub index_file: String,
    pub data_files: Vec<String>,
    /// The nonhier records OpenSlide reads at open: the camera positions and the
    /// associated images, by record number.
    pub nonhier_records: Vec<u32>,
}

impl Slidedat {
    /// Reads the keys OpenSlide requires; a missing or malformed one is the refusal
    /// OpenSlide would give (`corrupt_slide`), naming the key.
    pub fn read(ini: &Ini, max_files: usize) -> Result<Slidedat, PlanRefusal> {
        let general = Some("GENERAL");
        let hier = Some("HIERARCHICAL");
        let image_divisions = match value(ini, general, "CameraImageDivisionsPerSide") {
            Some(_) => integer(ini, general, "CameraImageDivisionsPerSide")?,
            None => 1,
        };
        let slidedat = Slidedat {
            slide_id: required(ini, general, "SLIDE_ID")?.to_string(),
            images_x: positive(ini, general, "IMAGENUMBER_X")?,
            images_y: positive(ini, general, "IMAGENUMBER_Y")?,
            image_divisions,
            zooms: Vec::new(),
            index_file: required(ini, hier, "INDEXFILE")?.to_string(),
            data_files: Vec::new(),
            nonhier_records: Vec::new(),
        };
        if image_divisions <= 0 {
            return Err(corrupt("CameraImageDivisionsPerSide is not positive"));
        }
        let hier_count = positive(ini, hier, "HIER_COUNT")?;
        let nonhier_count = integer(ini, hier, "NONHIER_COUNT")?;
        if nonhier_count < 0 {
            return Err(corrupt("NONHIER_COUNT is negative"));
        }
        // OpenSlide takes the first hierarchy named "Slide zoom level" and requires it
        // to be HIER_0.
        let zoom_hier = (0..hier_count)
            .find(|i| value(ini, hier, &format!("HIER_{i}_NAME")) == Some(SLIDE_ZOOM_LEVEL))
            .ok_or_else(|| corrupt("Slidedat.ini has no \"Slide zoom level\" hierarchy"))?;
        if zoom_hier != 0 {
            return Err(corrupt("the slide zoom level hierarchy is not HIER_0"));
        }
        let levels = positive(ini, hier, "HIER_0_COUNT")?;
        if levels as usize > MAX_LEVELS {
            return Err(corrupt(format!(
                "Slidedat.ini declares {levels} zoom levels; slides have fewer than {MAX_LEVELS}"
            )));
        }
        let mut zooms = Vec::with_capacity(levels as usize);
        for i in 0..levels {
            let section = required(ini, hier, &format!("HIER_0_VAL_{i}_SECTION"))?;
            let s = Some(section);
            let zoom = Zoom {
                concat_exponent: integer(ini, s, "IMAGE_CONCAT_FACTOR")?,
                image_w: positive(ini, s, "DIGITIZER_WIDTH")?,
                image_h: positive(ini, s, "DIGITIZER_HEIGHT")?,
                overlap_x: double(ini, s, "OVERLAP_X")?,
                overlap_y: double(ini, s, "OVERLAP_Y")?,
            };
            if zoom.concat_exponent < 0 || (i > 0 && zoom.concat_exponent == 0) {
                return Err(corrupt(format!(
                    "zoom level {i}'s IMAGE_CONCAT_FACTOR is {}",
                    zoom.concat_exponent
                )));
            }
            zooms.push(zoom);
        }
        let count = positive(ini, Some("DATAFILE"), "FILE_COUNT")?;
        if count as usize > max_files {
            return Err(corrupt(format!(
                "Slidedat.ini names {count} data files; a slide has at most {max_files}"
            )));
        }
        let data_files = (0..count)
            .map(|i| required(ini, Some("DATAFILE"), &format!("FILE_{i}")).map(str::to_string))
            .collect::<Result<_, _>>()?;
        let nonhier_records = nonhier_records(ini, nonhier_count)?;
        Ok(Slidedat {
            zooms,
            data_files,
            nonhier_records,
            ..slidedat
        })
    }

    /// Every level's size in pixels, as OpenSlide computes it: level 0's images side by
    /// side, less the overlap where one camera photo meets the next (the last column and
    /// row keep their whole width), divided by each level's total concatenation.
    pub fn level_dims(&self) -> Result<Vec<(u64, u64)>, PlanRefusal> {
        let zoom0 = &self.zooms[0];
        let base = |images: i64, image: i64, overlap: f64| -> i64 {
            let mut base: i64 = 0;
            for i in 0..images {
                if i % self.image_divisions != self.image_divisions - 1 || i == images - 1 {
                    base = base.saturating_add(image);
                } else {
                    // C adds a double to an int64 and truncates, one step at a time.
                    base = (base as f64 + (image as f64 - overlap)) as i64;
                }
            }
            base
        };
        // The image grid is at most i32 x i32 in OpenSlide; a loop over a hostile count
        // is bounded here.
        if self.images_x > i64::from(i32::MAX) || self.images_y > i64::from(i32::MAX) {
            return Err(corrupt(
                "IMAGENUMBER_X or IMAGENUMBER_Y is past OpenSlide's range",
            ));
        }
        if self.images_x.saturating_mul(self.images_y) > 1 << 32 {
            return Err(corrupt(format!(
                "the image grid is {} x {} images",
                self.images_x, self.images_y
            )));
        }
        let base_w = base(self.images_x, zoom0.image_w, zoom0.overlap_x);
        let base_h = base(self.images_y, zoom0.image_h, zoom0.overlap_y);
        let mut exponent = 0;
        let mut dims = Vec::with_capacity(self.zooms.len());
        for zoom in &self.zooms {
            exponent += zoom.concat_exponent;
            if exponent > MAX_CONCAT_EXPONENT {
                return Err(corrupt(format!(
                    "image_concat exponent too large: {exponent}"
                )));
            }
            let concat = 1i64 << exponent;
            let (w, h) = (base_w / concat, base_h / concat);
            dims.push((w.max(0) as u64, h.max(0) as u64));
        }
        Ok(dims)
    }
}

/// The record numbers of the nonhier values OpenSlide reads: the camera positions
/// (`VIMSLIDE_POSITION_BUFFER`, else `StitchingIntensityLayer`) and the associated
/// images. Records are numbered across all nonhier names, each name taking its count.
fn nonhier_records(ini: &Ini, nonhier_count: i64) -> Result<Vec<u32>, PlanRefusal> {
    let hier = Some("HIERARCHICAL");
    let mut offset: i64 = 0;
    let mut position = None;
    let mut stitching = None;
    let mut records = Vec::new();
    for i in 0..nonhier_count {
        let name = required(ini, hier, &format!("NONHIER_{i}_NAME"))?;
        let count = integer(ini, hier, &format!("NONHIER_{i}_COUNT"))?;
        if count <= 0 {
            return Err(corrupt(format!("NONHIER_{i}_COUNT is {count}")));
        }
        match name {
            POSITION_BUFFER if position.is_none() => position = Some(offset),
            STITCHING_LAYER if stitching.is_none() => stitching = Some(offset),
            SCAN_DATA_LAYER => {
                for j in 0..count.min(1 << 16) {
                    let val = value(ini, hier, &format!("NONHIER_{i}_VAL_{j}"));
                    if val.is_some_and(|v| ASSOCIATED.contains(&v)) {
                        records.push(offset + j);
                    }
                }
            }
            _ => {}
        }
        offset = offset.saturating_add(count);
    }
    records.extend(position.or(stitching));
    records
        .into_iter()
        .map(|r| u32::try_from(r).map_err(|_| corrupt(format!("nonhier record {r}"))))
        .collect()
}

fn corrupt(message: impl Into<String>) -> PlanRefusal {
    let message: String = message.into();
    PlanRefusal::corrupt(format!("MIRAX Slidedat.ini: {message}"))
}

fn value<'a>(ini: &'a Ini, section: Option<&str>, key: &str) -> Option<&'a str> {
    ini.get_from(section, key).map(str::trim)
}

fn required<'a>(ini: &'a Ini, section: Option<&str>, key: &str) -> Result<&'a str, PlanRefusal> {
    value(ini, section, key)
        .ok_or_else(|| corrupt(format!("no {key} in [{}]", section.unwrap_or_default())))
}

/// An integer as GKeyFile parses one (decimal, surrounding blanks allowed).
fn integer(ini: &Ini, section: Option<&str>, key: &str) -> Result<i64, PlanRefusal> {
    let text = required(ini, section, key)?;
    text.parse::<i32>()
        .map(i64::from)
        .map_err(|_| corrupt(format!("{key} = {text:?} is not an integer")))
}

fn positive(ini: &Ini, section: Option<&str>, key: &str) -> Result<i64, PlanRefusal> {
    let v = integer(ini, section, key)?;
    if v <= 0 {
        return Err(corrupt(format!("{key} is {v}; it must be positive")));
    }
    Ok(v)
}

fn double(ini: &Ini, section: Option<&str>, key: &str) -> Result<f64, PlanRefusal> {
    let text = required(ini, section, key)?;
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| corrupt(format!("{key} = {text:?} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planning::named_files::parse;

    fn slidedat(text: &str) -> Result<Slidedat, PlanRefusal> {
        Slidedat::read(&parse(text, "Slidedat.ini").unwrap(), 1024)
    }

    const BASE: &str = "[GENERAL]\nSLIDE_ID=abc\nIMAGENUMBER_X=10\nIMAGENUMBER_Y=4\n\
        CameraImageDivisionsPerSide=2\n\
        [HIERARCHICAL]\nINDEXFILE=Index.dat\nHIER_COUNT=1\nHIER_0_NAME=Slide zoom level\n\
        HIER_0_COUNT=2\nHIER_0_VAL_0_SECTION=L0\nHIER_0_VAL_1_SECTION=L1\n\
        NONHIER_COUNT=2\nNONHIER_0_NAME=Scan data layer\nNONHIER_0_COUNT=3\n\
        NONHIER_0_VAL_0=ScanDataLayer_SlidePreview\nNONHIER_0_VAL_1=Other\n\
        NONHIER_0_VAL_2=ScanDataLayer_SlideBarcode\n\
        NONHIER_1_NAME=VIMSLIDE_POSITION_BUFFER\nNONHIER_1_COUNT=1\n\
        [DATAFILE]\nFILE_COUNT=1\nFILE_0=Data0000.dat\n\
        [L0]\nIMAGE_CONCAT_FACTOR=0\nDIGITIZER_WIDTH=100\nDIGITIZER_HEIGHT=50\n\
        OVERLAP_X=10.5\nOVERLAP_Y=4\n\
        [L1]\nIMAGE_CONCAT_FACTOR=1\nDIGITIZER_WIDTH=100\nDIGITIZER_HEIGHT=50\n\
        OVERLAP_X=0\nOVERLAP_Y=0\n";

    #[test]
    fn level_sizes_follow_openslides_arithmetic_with_overlaps() {
        let s = slidedat(BASE).unwrap();
        // 10 columns in photos of 2: columns 1, 3, 5, 7 lose 10.5 each (truncated at
        // every step), column 9 is the last and keeps its width. 4 rows: row 1 loses 4.
        // x: 100, 189 (189.5), 289, 378 (378.5), 478, 567, 667, 756, 856, 956.
        assert_eq!(s.level_dims().unwrap(), vec![(956, 196), (478, 98)]);
    }

    #[test]
    fn the_nonhier_records_are_the_ones_openslide_reads() {
        let s = slidedat(BASE).unwrap();
        // Preview (0) and barcode (2) of the scan data layer; the position buffer is the
        // first value of the second name (3 + 0).
        assert_eq!(s.nonhier_records, vec![0, 2, 3]);
    }

    #[test]
    fn missing_and_malformed_keys_are_refused_naming_them() {
        for (from, to, named) in [
            ("SLIDE_ID=abc\n", "", "SLIDE_ID"),
            ("IMAGENUMBER_X=10", "IMAGENUMBER_X=ten", "IMAGENUMBER_X"),
            ("IMAGENUMBER_Y=4", "IMAGENUMBER_Y=-4", "IMAGENUMBER_Y"),
            ("HIER_0_COUNT=2", "HIER_0_COUNT=65", "zoom levels"),
            ("FILE_0=Data0000.dat\n", "", "FILE_0"),
            ("OVERLAP_X=10.5", "OVERLAP_X=nan", "OVERLAP_X"),
            (
                "IMAGE_CONCAT_FACTOR=1",
                "IMAGE_CONCAT_FACTOR=0",
                "IMAGE_CONCAT_FACTOR",
            ),
            ("NONHIER_1_COUNT=1", "NONHIER_1_COUNT=0", "NONHIER_1_COUNT"),
            (
                "HIER_0_NAME=Slide zoom level",
                "HIER_0_NAME=other",
                "Slide zoom level",
            ),
        ] {
            let text = BASE.replacen(from, to, 1);
            let refusal = slidedat(&text).unwrap_err();
            assert!(
                refusal.message.contains(named),
                "{named}: {}",
                refusal.message
            );
        }
        let text = BASE.replacen("IMAGE_CONCAT_FACTOR=1", "IMAGE_CONCAT_FACTOR=31", 1);
        let refusal = slidedat(&text).unwrap().level_dims().unwrap_err();
        assert!(refusal.message.contains("too large"), "{}", refusal.message);
    }
}
