//! PNG encoding of the thumbnail: 8-bit RGB, deterministic bytes for the same pixels
//! (a redelivered request must write the same object).

use super::error::SlideError;
use super::render::Rgb;

/// Encodes with the png crate's fast (fdeflate) setting: a thumbnail is written once
/// and read a few times, so encode time matters more than the last few percent of size.
pub fn encode_png(image: &Rgb) -> Result<Vec<u8>, SlideError> {
    let mut out = Vec::with_capacity(image.pixels.len() / 2);
    let internal = |e: png::EncodingError| SlideError::Internal(format!("PNG encoding: {e}"));
    let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(internal)?;
    writer.write_image_data(&image.pixels).map_err(internal)?;
    writer.finish().map_err(internal)?;
    Ok(out)
}
