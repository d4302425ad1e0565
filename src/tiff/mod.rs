//! Just enough TIFF: a defensive directory reader (bomb checks and the fast JPEG tile
//! path) and a tiled writer (the fixture generator). Everything else about a slide is
//! OpenSlide's job.

pub mod reader;
pub mod tags;
pub mod writer;

pub use reader::{Directory, TiffError, TiffFile};
