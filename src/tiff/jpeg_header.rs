//! The few facts of a baseline JPEG header the NDPI path needs, read from the marker
//! segments up to the start of scan: frame size, components and sampling factors,
//! restart interval, and where the SOF segment and the entropy-coded data begin.
//!
//! Why our own walk instead of a decoder's `read_header`: a Hamamatsu level is one
//! JPEG of up to gigapixels, and we need the byte positions (SOF, end of SOS) to cut it
//! into restart-interval tiles as OpenSlide does. Only segment lengths are trusted, and
//! every one is checked against the bytes at hand.

/// What a JPEG header says, with positions relative to the start of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JpegHeader {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    /// Largest horizontal and vertical sampling factors.
    pub max_sampling: (u8, u8),
    /// MCUs between restart markers (0 = no restart markers).
    pub restart_interval: u16,
    /// Offset of the SOF marker (`FF C0`).
    pub sof_at: usize,
    /// Offset just past the SOS segment: where the entropy-coded data starts.
    pub data_at: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JpegHeaderError {
    /// The header goes on past the bytes given (the caller may read more).
    #[error("the JPEG header runs past the {0} bytes read")]
    Truncated(usize),
    #[error("malformed JPEG header: {0}")]
    Malformed(String),
    #[error("not a baseline JPEG: {0}")]
    Unsupported(String),
}

impl JpegHeader {
    /// MCU size in pixels (8 x the largest sampling factors, as libjpeg computes it for
    /// an interleaved scan).
    pub fn mcu(&self) -> (u32, u32) {
        (
            8 * u32::from(self.max_sampling.0),
            8 * u32::from(self.max_sampling.1),
        )
    }
}

/// Parses the marker segments of `bytes` (a stream starting at SOI) up to SOS.
pub fn parse(bytes: &[u8]) -> Result<JpegHeader, JpegHeaderError> {
    let malformed = |m: &str| Err(JpegHeaderError::Malformed(m.to_string()));
    if bytes.len() < 2 {
        return Err(JpegHeaderError::Truncated(bytes.len()));
    }
    if bytes[..2] != [0xFF, 0xD8] {
        return malformed("no start-of-image marker");
    }
    let mut frame: Option<Frame> = None;
    let mut restart_interval = 0u16;
    let mut p = 2usize;
    loop {
        let Some(&[ff, marker, l0, l1]) = bytes.get(p..p + 4) else {
            return Err(JpegHeaderError::Truncated(bytes.len()));
        };
        if ff != 0xFF {
            return malformed("a marker segment does not start with FF");
        }
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len < 2 {
            return malformed("a marker segment shorter than its length field");
        }
        let Some(body) = bytes.get(p + 4..p + 2 + len) else {
            return Err(JpegHeaderError::Truncated(bytes.len()));
        };
        match marker {
            0xC0 => frame = Some(parse_sof(body, p)?),
            0xC1..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(JpegHeaderError::Unsupported(format!(
                    "start-of-frame marker FF {marker:02X}"
                )));
            }
            0xDD => {
                let Some(&[r0, r1]) = body.get(..2) else {
                    return malformed("a short restart-interval segment");
                };
                restart_interval = u16::from_be_bytes([r0, r1]);
            }
            0xDA => {
                let Some((width, height, components, max_sampling, sof_at)) = frame else {
                    return malformed("start of scan before the frame header");
                };
                if body.first() != Some(&components) {
                    return Err(JpegHeaderError::Unsupported(
                        "the scan does not interleave every component".into(),
                    ));
                }
                return Ok(JpegHeader {
                    width,
                    height,
                    components,
                    max_sampling,
                    restart_interval,
                    sof_at,
                    data_at: p + 2 + len,
                });
            }
            0xD8 | 0xD9 | 0xD0..=0xD7 | 0x01 => {
                return malformed("a stand-alone marker inside the header");
            }
            _ => {}
        }
        p += 2 + len;
    }
}

/// Width, height, components, largest sampling factors, SOF offset.
type Frame = (u32, u32, u8, (u8, u8), usize);

fn parse_sof(body: &[u8], at: usize) -> Result<Frame, JpegHeaderError> {
    let malformed = |m: &str| Err(JpegHeaderError::Malformed(m.to_string()));
    let Some(&[precision, h0, h1, w0, w1, components]) = body.get(..6) else {
        return malformed("a short frame header");
    };
    if precision != 8 {
        return Err(JpegHeaderError::Unsupported(format!(
            "{precision}-bit samples"
        )));
    }
    let n = usize::from(components);
    let Some(specs) = body.get(6..6 + 3 * n) else {
        return malformed("the frame header lists fewer components than it declares");
    };
    let mut max = (1u8, 1u8);
    for spec in specs.chunks_exact(3) {
        let (h, v) = (spec[1] >> 4, spec[1] & 0x0F);
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
            return malformed("a sampling factor outside 1..=4");
        }
        max = (max.0.max(h), max.1.max(v));
    }
    Ok((
        u32::from(u16::from_be_bytes([w0, w1])),
        u32::from(u16::from_be_bytes([h0, h1])),
        components,
        max,
        at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(dri: Option<u16>) -> Vec<u8> {
        let mut h = vec![0xFF, 0xD8];
        h.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00]);
        h.extend_from_slice(&[
            0xFF, 0xC0, 0x00, 0x11, 8, 0x01, 0x00, 0x02, 0x00, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11,
            1,
        ]);
        if let Some(ri) = dri {
            h.extend_from_slice(&[0xFF, 0xDD, 0x00, 0x04]);
            h.extend_from_slice(&ri.to_be_bytes());
        }
        h.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x0C, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0]);
        h
    }

    #[test]
    fn reads_frame_restart_interval_and_positions() {
        let h = header(Some(4));
        let mut stream = h.clone();
        stream.extend_from_slice(&[0x12, 0x34]);
        let parsed = parse(&stream).unwrap();
        assert_eq!((parsed.width, parsed.height), (512, 256));
        assert_eq!(parsed.mcu(), (16, 16));
        assert_eq!(parsed.restart_interval, 4);
        assert_eq!(parsed.sof_at, 8);
        assert_eq!(parsed.data_at, h.len());
        assert_eq!(parse(&header(None)).unwrap().restart_interval, 0);
    }

    #[test]
    fn a_cut_header_is_truncated_not_malformed() {
        let h = header(Some(4));
        assert!(matches!(
            parse(&h[..h.len() - 3]),
            Err(JpegHeaderError::Truncated(_))
        ));
        assert!(matches!(
            parse(&[0x00, 0x01, 0x02]),
            Err(JpegHeaderError::Malformed(_))
        ));
    }

    #[test]
    fn progressive_is_unsupported() {
        let mut h = header(Some(4));
        h[9] = 0xC2;
        assert!(matches!(parse(&h), Err(JpegHeaderError::Unsupported(_))));
    }
}
