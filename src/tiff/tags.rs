//! The TIFF tag numbers this crate reads and writes.

pub const NEW_SUBFILE_TYPE: u16 = 254;
pub const IMAGE_WIDTH: u16 = 256;
pub const IMAGE_LENGTH: u16 = 257;
pub const BITS_PER_SAMPLE: u16 = 258;
pub const COMPRESSION: u16 = 259;
pub const PHOTOMETRIC: u16 = 262;
pub const IMAGE_DESCRIPTION: u16 = 270;
pub const SAMPLES_PER_PIXEL: u16 = 277;
pub const PLANAR_CONFIG: u16 = 284;
pub const TILE_WIDTH: u16 = 322;
pub const TILE_LENGTH: u16 = 323;
pub const TILE_OFFSETS: u16 = 324;
pub const TILE_BYTE_COUNTS: u16 = 325;
pub const JPEG_TABLES: u16 = 347;
pub const YCBCR_SUBSAMPLING: u16 = 530;

pub const COMPRESSION_JPEG: u16 = 7;
pub const PHOTOMETRIC_RGB: u16 = 2;
pub const PHOTOMETRIC_YCBCR: u16 = 6;
pub const STRIP_OFFSETS: u16 = 273;
pub const STRIP_BYTE_COUNTS: u16 = 279;
pub const SOFTWARE: u16 = 305;
pub const ROWS_PER_STRIP: u16 = 278;
pub const X_RESOLUTION: u16 = 282;
pub const Y_RESOLUTION: u16 = 283;
pub const RESOLUTION_UNIT: u16 = 296;
/// ImageDepth (SGI): Aperio writes 1 in every directory.
pub const IMAGE_DEPTH: u16 = 32997;
/// The RATIONAL field type: two LONGs, numerator and denominator.
pub const FIELD_RATIONAL: u16 = 5;
/// XMP packet: Ventana (Roche) slides carry their metadata here.
pub const XMP: u16 = 700;
/// Hamamatsu NDPI's private format tag.
pub const NDPI_FORMAT_FLAG: u16 = 65420;
