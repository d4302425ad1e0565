//! Every slide format the service reads, one folder each: its detection, its metadata,
//! the reading of its levels and the plan of its ranged read, behind one trait that the
//! storage side (which objects a link brings), the planner (in the slide's worker) and
//! the engine all use. Adding a format is one folder and one line in [`FORMATS`].
//!
//! What stays outside the rooms is what formats share: the TIFF container reader
//! ([`crate::tiff`]), the codecs and the bounded reduction ([`crate::slide`]), the
//! planning protocol ([`crate::planning`]) and OpenSlide, which gives the metadata of
//! every format but DICOM (Aperio and generic tiled TIFF are described as it would open
//! them, [`tiled_tiff::describe`], when their room decodes the level) and reads every
//! level no room decodes itself.
//!
//! | room | links | planned | engine |
//! |---|---|---|---|
//! | [`dicom`] | `.dcm`: the series in its folder | headers, then the level's frames | reads the series alone |
//! | [`mirax`] | `.mrxs`: its folder of the same stem | `Slidedat.ini` and `Index.dat`, then the level's images | OpenSlide |
//! | [`vms`] | `.vms`, `.vmu`: the files its header names | the header, then its files whole | OpenSlide |
//! | [`ndpi`] | the file | directories, then the level's restart chunks | NDPI levels |
//! | [`tiled_tiff`] | any other file | directories, then the level's tiles | Aperio and generic TIFF levels |

pub mod dicom;
pub mod mirax;
pub mod ndpi;
pub mod tiled_tiff;
pub mod vms;

use std::path::Path;

use crate::planning::{PlanAnswer, PlanRefusal, PlanTask, SlideLayout};
use crate::slide::render::Rgb;
use crate::slide::{PixelPath, Reduced, SlideError, ThumbnailOptions};
use crate::tiff::TiffFile;

/// The formats, in the order they are asked: the ones a link's name or a file's bytes
/// claim first, the tiled TIFF planner (which takes every single file) last.
pub static FORMATS: &[&dyn SlideFormat] = &[
    &dicom::Dicom,
    &mirax::Mirax,
    &vms::Vms,
    &ndpi::Ndpi,
    &tiled_tiff::TiledTiff,
];

/// One level the engine is about to read, once OpenSlide has opened the slide and the
/// level is chosen.
pub struct LevelRead<'a> {
    pub path: &'a Path,
    /// The file as a classic TIFF, when it is one.
    pub tiff: Option<&'a TiffFile>,
    /// Every level's dimensions, in OpenSlide's order.
    pub levels: &'a [(u64, u64)],
    pub level_dims: (u64, u64),
    pub target: (u32, u32),
    pub background: [u8; 3],
}

/// One slide format. Every method has a default meaning "not this format's business", so
/// a room implements only the parts it has.
pub trait SlideFormat: Sync {
    /// The format's name, in logs.
    fn name(&self) -> &'static str;

    /// The objects a link to `object` brings, when its name calls for this format.
    fn link_layout(&self, _object: &str) -> Option<SlideLayout> {
        None
    }

    /// The layout whose planning tasks this format answers.
    fn planned_layout(&self) -> Option<SlideLayout> {
        None
    }

    /// One planning pass over the bytes held so far (in the slide's worker).
    fn plan(&self, _task: &PlanTask) -> Result<PlanAnswer, PlanRefusal> {
        Err(PlanRefusal::corrupt(format!(
            "{} has no planner",
            self.name()
        )))
    }

    /// Whether the engine reads the file at `path` through this format alone, without
    /// OpenSlide.
    fn reads_alone(&self, _path: &Path) -> bool {
        false
    }

    /// The whole engine for a file [`SlideFormat::reads_alone`] claims.
    fn reduce_alone(
        &self,
        path: &Path,
        _options: &ThumbnailOptions,
    ) -> Result<Reduced, SlideError> {
        Err(SlideError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("{} does not read slides alone", self.name()),
        })
    }

    /// The OpenSlide vendors whose levels this format decodes itself.
    fn vendors(&self) -> &'static [&'static str] {
        &[]
    }

    /// The level decoded and reduced directly, or `None` to let OpenSlide read it.
    fn decode_level(&self, _level: &LevelRead<'_>) -> Option<(Rgb, PixelPath)> {
        None
    }
}

/// The objects a link to `object` brings: what the first format claiming its name says,
/// else the one object.
pub fn link_layout(object: &str) -> SlideLayout {
    FORMATS
        .iter()
        .find_map(|f| f.link_layout(object))
        .unwrap_or(SlideLayout::Single)
}

/// The format planning tasks of `layout`.
pub fn planner(layout: SlideLayout) -> Option<&'static dyn SlideFormat> {
    FORMATS
        .iter()
        .copied()
        .find(|f| f.planned_layout() == Some(layout))
}

/// The format that reads the file at `path` alone, if one claims it.
pub fn reading_alone(path: &Path) -> Option<&'static dyn SlideFormat> {
    FORMATS.iter().copied().find(|f| f.reads_alone(path))
}

/// The format that decodes the levels of OpenSlide's `vendor` itself, if one does.
pub fn decoding(vendor: &str) -> Option<&'static dyn SlideFormat> {
    FORMATS
        .iter()
        .copied()
        .find(|f| f.vendors().contains(&vendor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_laid_out_by_the_format_their_name_calls_for() {
        assert_eq!(link_layout("a/level-0.dcm"), SlideLayout::DicomSeries);
        assert_eq!(link_layout("a/x.DCM"), SlideLayout::DicomSeries);
        assert_eq!(link_layout("a/b.mrxs"), SlideLayout::Mirax);
        assert_eq!(link_layout("a/b.MRXS"), SlideLayout::Mirax);
        assert_eq!(link_layout("b.vms"), SlideLayout::Vms);
        assert_eq!(link_layout("b.vmu"), SlideLayout::Vms);
        assert_eq!(link_layout("a/B.VMS"), SlideLayout::Vms);
        assert_eq!(link_layout("b.Vmu"), SlideLayout::Vms);
        assert_eq!(link_layout("b.svs"), SlideLayout::Single);
        assert_eq!(link_layout("mrxs"), SlideLayout::Single);
    }

    #[test]
    fn every_layout_has_exactly_one_planner() {
        for layout in [
            SlideLayout::Single,
            SlideLayout::DicomSeries,
            SlideLayout::Mirax,
            SlideLayout::Vms,
        ] {
            let planners = FORMATS
                .iter()
                .filter(|f| f.planned_layout() == Some(layout))
                .count();
            assert_eq!(planners, 1, "{layout:?}");
        }
    }

    #[test]
    fn vendors_decoded_directly_belong_to_one_format_each() {
        assert_eq!(decoding("aperio").map(|f| f.name()), Some("tiled-tiff"));
        assert_eq!(
            decoding("generic-tiff").map(|f| f.name()),
            Some("tiled-tiff")
        );
        assert_eq!(decoding("hamamatsu").map(|f| f.name()), Some("ndpi"));
        assert!(decoding("mirax").is_none());
        let mut all: Vec<&str> = FORMATS.iter().flat_map(|f| f.vendors()).copied().collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
