//! Just enough TIFF: a defensive directory reader (bomb checks and the fast JPEG tile
//! path), the Hamamatsu NDPI variant of it ([`ndpi`], with the JPEG header walk its
//! restart-marker tiles need, [`jpeg_header`]) and a tiled writer (the fixture
//! generator). [`missing_tiles`] models which tiles of larger levels OpenSlide's Aperio
//! driver decodes to paint a level's missing tiles; [`reuse`] bounds the compressed bytes a
//! level may reference by the bytes the file holds. Everything else about a slide is OpenSlide's job.

pub mod jpeg_header;
pub mod missing_tiles;
pub mod reader;
pub mod reuse;
pub mod tags;
pub mod writer;

pub use reader::{Directory, TiffError, TiffFile};
