//! The slide engine: a slide file in, a PNG thumbnail and the contract's metadata out.
//!
//! No actors and no I/O beyond the local file: the CLI, the service's decoder pool and
//! the benchmarks all call [`make_thumbnail`]. The steps, each in its own module:
//! guard against decompression bombs ([`crate::tiff`]) and structures the bytes do not
//! back ([`tiff_bounds`]), open with OpenSlide (or, where the direct path reads the
//! level, describe the slide as OpenSlide would open it:
//! [`crate::formats::tiled_tiff::describe`]), pick the level ([`geometry`]), stream it
//! through a bounded box reduction on all cores ([`render`]) from either OpenSlide or the
//! room of the slide's format that decodes its levels directly ([`crate::formats`]: tiled
//! TIFF tiles, NDPI restart-interval chunks), resize with Lanczos3 and encode
//! ([`encode`]). A format that reads its files alone
//! (DICOM, "DICM" at 128) takes its own branch before all that.

pub mod banded;
pub mod encode;
pub mod error;
pub mod geometry;
pub mod jp2k_guard;
pub mod jpeg2000;
pub mod jpeg_decode;
pub mod jpeg_ls;
pub mod libraries;
pub mod metadata;
pub mod native_frame;
pub mod openjpeg;
pub mod planes;
pub mod reduce;
pub mod render;
pub mod round;
pub mod source;
pub mod tiff_bounds;

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use openslide_rs::OpenSlide;
use openslide_rs::errors::OpenSlideError;
use serde::Serialize;

pub use error::SlideError;
pub use metadata::SlideMetadata;

use crate::formats::LevelRead;
use crate::formats::ndpi::file::{NdpiError, NdpiFile};
pub use crate::naming::SeriesIdentity;
use crate::tiff::{TiffError, TiffFile, tags};
use source::{OpenSlideSource, RegionSource};

/// Default bound on level-0 pixels: 10^12 (1M x 1M), far past any real scanner
/// (the largest slides are around 200k x 100k) yet far below a decompression bomb.
pub const DEFAULT_MAX_SLIDE_PIXELS: u64 = 1_000_000_000_000;

/// Most pyramid levels a slide may have. Real scanners write under 20 (a 2x step from
/// 200k pixels down to one tile); thousands of levels only serve to drive OpenSlide's
/// recursive missing-tile painting through the stack.
pub const MAX_LEVELS: usize = 64;

/// Which pixel path to use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize, Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DecoderChoice {
    /// Direct JPEG tile decoding where the level allows it, OpenSlide otherwise.
    #[default]
    Auto,
    /// Always OpenSlide's `read_region`.
    Openslide,
}

impl PixelPath {
    /// The metric label and log field (`wsi_thumbnail_pixel_path_total{path}`).
    pub fn label(self) -> &'static str {
        match self {
            PixelPath::JpegTiles { .. } => "jpeg_tiles",
            PixelPath::Openslide => "openslide",
            PixelPath::Dicom { .. } => "dicom",
            PixelPath::Ndpi { .. } => "ndpi",
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ThumbnailOptions {
    /// Longest side of the thumbnail in pixels.
    pub max_size: u32,
    /// Slides declaring more level-0 pixels than this are refused as `slide_too_large`.
    pub max_slide_pixels: u64,
    pub decoder: DecoderChoice,
    /// How hard the PNG is compressed.
    #[serde(default)]
    pub png_compression: encode::PngCompression,
}

impl Default for ThumbnailOptions {
    fn default() -> Self {
        ThumbnailOptions {
            max_size: 1024,
            max_slide_pixels: DEFAULT_MAX_SLIDE_PIXELS,
            decoder: DecoderChoice::Auto,
            png_compression: encode::PngCompression::Fast,
        }
    }
}

/// Which path produced the pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelPath {
    /// Direct JPEG tile decoding at 1/`denominator` scale.
    JpegTiles {
        denominator: u32,
    },
    Openslide,
    /// DICOM frames decoded directly at 1/`denominator` scale
    /// ([`crate::formats::dicom::slide`]).
    Dicom {
        denominator: u32,
    },
    /// Direct decoding of a Hamamatsu NDPI level's restart-interval chunks
    /// ([`ndpi`]) at 1/`denominator` (the derived level's scale times the pre-shrink).
    Ndpi {
        denominator: u32,
    },
}

/// Time spent in each CPU stage (the service reports these as stage metrics).
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct StageTimings {
    pub open: Duration,
    pub decode: Duration,
    pub resize: Duration,
    pub encode: Duration,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Thumbnail {
    /// Not serialised: a worker process sends it as a raw frame of its own.
    #[serde(skip)]
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub metadata: SlideMetadata,
    /// For a DICOM slide, which series of its folder it is (names the thumbnail).
    #[serde(default)]
    pub series: Option<SeriesIdentity>,
    /// The pyramid level that was read.
    pub level: u32,
    pub path: PixelPath,
    pub timings: StageTimings,
    /// The threads a worker process decoded it with (0: decoded in this process).
    #[serde(default)]
    pub decode_threads: usize,
}

/// A slide read and box-reduced, waiting for the final resize and encoding. The service
/// runs the two halves on different thread pools (decoder and resizer actors).
pub struct Reduced {
    pub intermediate: render::Rgb,
    pub target: (u32, u32),
    pub metadata: SlideMetadata,
    pub series: Option<SeriesIdentity>,
    pub level: u32,
    pub path: PixelPath,
    pub timings: StageTimings,
    /// How its PNG will be compressed (the options it was read with).
    pub png_compression: encode::PngCompression,
}

/// Makes the thumbnail of the slide at `path`.
pub fn make_thumbnail(path: &Path, options: &ThumbnailOptions) -> Result<Thumbnail, SlideError> {
    finish(reduce_slide(path, options)?)
}

/// Resizes a reduced slide to its thumbnail size and encodes the PNG.
pub fn finish(reduced: Reduced) -> Result<Thumbnail, SlideError> {
    let mut timings = reduced.timings;
    let resize_started = Instant::now();
    let image = render::resize(reduced.intermediate, reduced.target)?;
    timings.resize = resize_started.elapsed();

    let encode_started = Instant::now();
    let png = encode::encode_png(&image, reduced.png_compression)?;
    timings.encode = encode_started.elapsed();

    Ok(Thumbnail {
        png,
        width: image.width,
        height: image.height,
        metadata: reduced.metadata,
        series: reduced.series,
        level: reduced.level,
        path: reduced.path,
        timings,
        decode_threads: 0,
    })
}

/// Opens the slide, checks it, and reads the chosen level through a bounded reduction.
pub fn reduce_slide(path: &Path, options: &ThumbnailOptions) -> Result<Reduced, SlideError> {
    // A format that reads the file alone (DICOM) first: it is not a TIFF, and the
    // engine reads it without OpenSlide.
    if let Some(format) = crate::formats::reading_alone(path) {
        return format.reduce_alone(path, options);
    }
    let started = Instant::now();
    let tiff = inspect_file(path, options.max_slide_pixels)?;
    if let Ok(Some(parsed)) = &tiff {
        tiff_bounds::check_level_count(path, &mut open_file(path)?, parsed)?;
    }
    guard_jp2k(path, &tiff, jp2k_guard::Tiles::First)?;

    // A slide whose levels the engine decodes itself, described from its directories
    // exactly as OpenSlide would open it, is read without opening OpenSlide at all.
    if options.decoder == DecoderChoice::Auto
        && let Ok(Some(parsed)) = &tiff
        && let Some(described) = crate::formats::tiled_tiff::describe::describe(path, parsed)
    {
        let opened = Opened {
            levels: &described.levels,
            property: &|name| described.property(name),
            slide: None,
        };
        if let Some(reduced) = read_level(path, options, &tiff, started, &opened)? {
            return Ok(reduced);
        }
        tracing::debug!(path = %path.display(), "the direct path declined; opening the slide with OpenSlide");
    }

    let slide = open_slide(path, &tiff)?;
    let levels: Vec<(u64, u64)> = slide
        .all_level_dimensions()
        .iter()
        .map(|s| (u64::from(s.w), u64::from(s.h)))
        .collect();
    let opened = Opened {
        levels: &levels,
        property: &|name| slide.property_value(name).ok(),
        slide: Some(&slide),
    };
    read_level(path, options, &tiff, started, &opened)?
        .ok_or_else(|| SlideError::Internal("OpenSlide did not read a level it opened".into()))
}

/// A slide opened for reading: by OpenSlide, or described as OpenSlide would open it
/// ([`crate::formats::tiled_tiff::describe`]).
struct Opened<'a> {
    /// Every level's dimensions, in OpenSlide's order.
    levels: &'a [(u64, u64)],
    /// OpenSlide's property by name.
    property: &'a dyn Fn(&str) -> Option<String>,
    /// The open slide, which reads any level the direct path declines.
    slide: Option<&'a OpenSlide>,
}

/// Checks the opened slide, chooses its level and reads it: directly where its format
/// decodes it, else through OpenSlide. `Ok(None)` when the direct path declines and no
/// OpenSlide slide is open to read it instead.
fn read_level(
    path: &Path,
    options: &ThumbnailOptions,
    tiff: &Result<Option<TiffFile>, TiffError>,
    started: Instant,
    opened: &Opened<'_>,
) -> Result<Option<Reduced>, SlideError> {
    let levels = opened.levels;
    if levels.len() > MAX_LEVELS {
        return Err(SlideError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "it declares {} pyramid levels; slides have fewer than {MAX_LEVELS}",
                levels.len()
            ),
        });
    }
    let Some(&(width, height)) = levels.first() else {
        return Err(SlideError::Corrupt {
            path: path.to_path_buf(),
            reason: "the slide has no levels".into(),
        });
    };
    if width == 0 || height == 0 {
        // OpenSlide opens some malformed files (NaN tile steps, say) as 0-pixel slides:
        // there is nothing to show, and a 1 x 1 thumbnail would hide the damage.
        return Err(SlideError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("level 0 is {width} x {height} pixels"),
        });
    }
    check_size(path, width, height, options.max_slide_pixels)?;
    let property = opened.property;
    let metadata = SlideMetadata::from_properties(Some((width, height)), property);
    let background = metadata::parse_background(property(metadata::PROP_BACKGROUND).as_deref());

    let target = geometry::thumbnail_dims(width, height, options.max_size);
    let level = geometry::choose_level(levels, target);
    let level_dims = levels[level];
    if let Ok(Some(parsed)) = tiff {
        tiff_bounds::check_level_bytes(path, &mut open_file(path)?, parsed, level_dims)?;
    }
    let open = started.elapsed();

    let decode_started = Instant::now();
    // JPEG 2000 tile headers are checked whichever path reads them: OpenSlide's copy
    // loop needs it, the direct path falls back to OpenSlide on an error, and a slide
    // whose headers disagree with its tiles is corrupt for both.
    guard_jp2k(
        path,
        tiff,
        jp2k_guard::Tiles::All {
            width: level_dims.0,
            height: level_dims.1,
            level,
        },
    )?;
    // The format whose room decodes this vendor's levels reads the level directly;
    // OpenSlide reads it otherwise, and whenever the direct path declines or fails.
    let fast = match (options.decoder, crate::formats::decoding(&metadata.vendor)) {
        (DecoderChoice::Auto, Some(format)) => format.decode_level(&LevelRead {
            path,
            tiff: tiff.as_ref().ok().and_then(Option::as_ref),
            levels,
            level_dims,
            target,
            background,
        }),
        _ => None,
    };
    let (intermediate, pixel_path) = match (fast, opened.slide) {
        (Some(done), _) => done,
        (None, Some(slide)) => {
            let source = OpenSlideSource {
                slide,
                path,
                level: level as u32,
                dims: level_dims,
                downsample: slide.all_level_downsamples()[level],
                background,
            };
            (
                render::reduce_source(&source as &dyn RegionSource, target)?,
                PixelPath::Openslide,
            )
        }
        (None, None) => return Ok(None),
    };
    let decode = decode_started.elapsed();

    Ok(Some(Reduced {
        intermediate,
        target,
        metadata,
        series: None,
        level: level as u32,
        path: pixel_path,
        timings: StageTimings {
            open,
            decode,
            ..StageTimings::default()
        },
        png_compression: options.png_compression,
    }))
}

fn check_size(path: &Path, width: u64, height: u64, limit: u64) -> Result<(), SlideError> {
    if width.saturating_mul(height) > limit {
        return Err(SlideError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            limit,
        });
    }
    Ok(())
}

/// Checks the file before any library touches it: existence, emptiness, and for TIFF
/// files every directory's declared size. Returns the parsed TIFF when it is one
/// (`Ok(None)` for other formats, `Err` for a TIFF that does not parse).
fn inspect_file(
    path: &Path,
    limit: u64,
) -> Result<Result<Option<TiffFile>, TiffError>, SlideError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SlideError::NotFound {
                path: path.to_path_buf(),
            });
        }
        Err(e) => {
            return Err(SlideError::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    let len = file
        .metadata()
        .map_err(|e| SlideError::Io {
            path: path.to_path_buf(),
            source: e,
        })?
        .len();
    // A MIRAX `.mrxs` may be empty: its slide is the folder beside it.
    let header_only =
        crate::formats::link_layout(&path.to_string_lossy()) == crate::planning::SlideLayout::Mirax;
    if len == 0 && !header_only {
        return Err(SlideError::Corrupt {
            path: path.to_path_buf(),
            reason: "the file is empty (0 bytes), so the upload probably failed".into(),
        });
    }
    // NDPI links its directories with 8-byte offsets, which the classic reader would
    // follow wrongly past 4 GiB: its own reader does the bomb check.
    match NdpiFile::read(&mut file) {
        Ok(ndpi) => {
            for dir in &ndpi.directories {
                let dim = |tag| dir.uint(tag).unwrap_or(0);
                check_size(path, dim(tags::IMAGE_WIDTH), dim(tags::IMAGE_LENGTH), limit)?;
            }
            return Ok(Ok(None));
        }
        Err(NdpiError::Malformed(reason)) => return Ok(Err(TiffError::Malformed(reason))),
        Err(_) => {}
    }
    match TiffFile::read(&mut file) {
        Ok(tiff) => {
            for dir in &tiff.directories {
                check_size(path, dir.width, dir.height, limit)?;
            }
            Ok(Ok(Some(tiff)))
        }
        Err(TiffError::NotTiff) => Ok(Ok(None)),
        Err(e) => Ok(Err(e)),
    }
}

/// Checks the JPEG 2000 tiles OpenSlide is about to decode (see [`jp2k_guard`]).
fn guard_jp2k(
    path: &Path,
    tiff: &Result<Option<TiffFile>, TiffError>,
    which: jp2k_guard::Tiles,
) -> Result<(), SlideError> {
    let Ok(Some(tiff)) = tiff else {
        return Ok(());
    };
    let corrupt = |reason: String| SlideError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = open_file(path)?;
    jp2k_guard::check_tiles(&mut file, tiff, which).map_err(corrupt)
}

fn open_file(path: &Path) -> Result<File, SlideError> {
    File::open(path).map_err(|e| SlideError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn open_slide(
    path: &Path,
    tiff: &Result<Option<TiffFile>, TiffError>,
) -> Result<OpenSlide, SlideError> {
    OpenSlide::new(path).map_err(|e| match (e, tiff) {
        (OpenSlideError::MissingFile(_), _) => SlideError::NotFound {
            path: path.to_path_buf(),
        },
        // A TIFF whose structure is broken: truncated or damaged, not an unknown format.
        (_, Err(tiff_error)) => SlideError::Corrupt {
            path: path.to_path_buf(),
            reason: tiff_error.to_string(),
        },
        (OpenSlideError::UnsupportedFile(_), _) => SlideError::Unsupported {
            path: path.to_path_buf(),
            reason: unsupported_reason(path),
        },
        (other, _) => SlideError::Corrupt {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
}

fn unsupported_reason(path: &Path) -> String {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("mrxs" | "vms" | "vmu") => {
            "a multi-file slide whose companion files OpenSlide could not read (a MIRAX \
             slide's folder of the same stem, or the files a VMS header names, beside it)"
                .into()
        }
        _ => "OpenSlide does not recognise it".into(),
    }
}
