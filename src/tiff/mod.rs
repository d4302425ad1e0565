//! Just enough TIFF: a defensive directory reader (bomb checks and the fast JPEG tile
//! path), the Hamamatsu NDPI variant of it ([`ndpi`], with the JPEG header walk its
//! restart-marker tiles need, [`jpeg_header`]) and a tiled writer (the fixture
//! generator). Everything else about a slide is OpenSlide's job.

pub mod jpeg_header;
pub mod ndpi;
pub mod reader;
pub mod tags;
pub mod writer;

pub use reader::{Directory, TiffError, TiffFile};
