//! A DICOM level as a [`RegionSource`]: its frames decoded at 1/`denominator` scale,
//! placed by TILED_FULL order or TILED_SPARSE positions, white where no frame lies. Each
//! instance keeps its own codec (a series may mix them): JPEG through libjpeg-turbo (the
//! IDCT does the first reduction, as for tiled TIFF), JPEG 2000 and HTJ2K from the
//! wavelet levels the scale needs ([`crate::slide::jpeg2000`]), uncompressed frames
//! box-averaged ([`crate::slide::native_frame`]).
//!
//! Frames are read from the instance files piecewise (item headers, then each frame's
//! bytes when a chunk needs it), never the whole level: the folder may be a temporary
//! directory of sparse copies holding only the headers and this level's pixel data.
//! Colour: the frame's own JFIF/Adobe marker wins over PhotometricInterpretation (see
//! [`crate::slide::jpeg_decode`]).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::formats::dicom::DicomError;
use crate::formats::dicom::codec::FrameCodec;
use crate::formats::dicom::frames::{self, FrameBytes, MAX_FRAME_BYTES, PixelBytes};
use crate::formats::dicom::header::InstanceHeader;
use crate::slide::error::SlideError;
use crate::slide::geometry::{self, Rect};
use crate::slide::jpeg_decode::{ColourPolicy, TileDecoder, decode_scaled, prepare_stream};
use crate::slide::reduce::box_shrink;
use crate::slide::source::{RegionReader, RegionSource};
use crate::slide::{jpeg_ls, jpeg2000, native_frame};

const WHITE: u8 = 255;

/// One instance's pixel data in its file, from `pixel_value_start` to the end.
struct FilePixels<'a> {
    file: &'a File,
    start: u64,
    size: u64,
}

impl PixelBytes for FilePixels<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DicomError> {
        let at = self
            .start
            .checked_add(offset)
            .ok_or_else(|| DicomError::corrupt("offset overflow"))?;
        self.file
            .read_exact_at(buf, at)
            .map_err(|e| DicomError::corrupt(format!("reading pixel data at {at}: {e}")))
    }
}

/// One instance of the level: its file, where its frame ranges count from, its codec.
struct Member {
    file: File,
    base: u64,
    codec: FrameCodec,
    /// JPEG frames without a JFIF/Adobe marker are RGB (PhotometricInterpretation RGB).
    fallback_rgb: bool,
}

struct Frame {
    instance: usize,
    /// Top-left pixel at full scale.
    x: u64,
    y: u64,
    bytes: FrameBytes,
}

/// The chosen level of a DICOM series.
pub struct DicomLevelSource {
    path: PathBuf,
    members: Vec<Member>,
    level_dims: (u64, u64),
    frame_size: (u32, u32),
    denominator: u32,
    frames: Vec<Frame>,
    /// Frames touching each grid cell (by frame size), in frame order.
    cells: HashMap<(u64, u64), Vec<u32>>,
}

impl DicomLevelSource {
    /// Opens the level made of `instances` (file path, object size, header), all of one
    /// matrix size, decoding at 1/`denominator` (a divisor of the frame size).
    pub fn open(
        path: &Path,
        instances: &[(PathBuf, u64, &InstanceHeader)],
        level_dims: (u64, u64),
        denominator: u32,
    ) -> Result<DicomLevelSource, SlideError> {
        let corrupt = |e: DicomError| e.into_slide_error(path);
        let first = instances
            .first()
            .ok_or_else(|| corrupt(DicomError::corrupt("a level without instances")))?
            .2;
        let frame_size = (first.columns, first.rows);
        let mut members = Vec::with_capacity(instances.len());
        let mut all_frames = Vec::new();
        for (index, (file_path, size, header)) in instances.iter().enumerate() {
            let codec = FrameCodec::of(header).map_err(corrupt)?;
            if (header.columns, header.rows) != frame_size {
                return Err(corrupt(DicomError::corrupt(format!(
                    "instances of one level with frames of {} x {} and {} x {}",
                    frame_size.0, frame_size.1, header.columns, header.rows
                ))));
            }
            let file = File::open(file_path).map_err(|e| SlideError::Io {
                path: file_path.clone(),
                source: e,
            })?;
            let placements = frames::placements(header).map_err(corrupt)?;
            let pixels = FilePixels {
                file: &file,
                start: header.pixel_value_start,
                size: size.checked_sub(header.pixel_value_start).ok_or_else(|| {
                    corrupt(DicomError::corrupt("pixel data starts past the object"))
                })?,
            };
            let located = frames::locate_frames(header, &pixels).map_err(corrupt)?;
            for (placement, bytes) in placements.into_iter().zip(located) {
                if let Some((x, y)) = placement {
                    all_frames.push(Frame {
                        instance: index,
                        x,
                        y,
                        bytes,
                    });
                }
            }
            members.push(Member {
                file,
                base: header.pixel_value_start,
                codec,
                fallback_rgb: header.photometric == "RGB",
            });
        }
        let (fw, fh) = (u64::from(frame_size.0), u64::from(frame_size.1));
        let mut cells: HashMap<(u64, u64), Vec<u32>> = HashMap::new();
        for (i, f) in all_frames.iter().enumerate() {
            let x_end = (f.x + fw).min(level_dims.0);
            let y_end = (f.y + fh).min(level_dims.1);
            for cy in f.y / fh..y_end.div_ceil(fh) {
                for cx in f.x / fw..x_end.div_ceil(fw) {
                    cells.entry((cx, cy)).or_default().push(i as u32);
                }
            }
        }
        Ok(DicomLevelSource {
            path: path.to_path_buf(),
            members,
            level_dims,
            frame_size,
            denominator,
            frames: all_frames,
            cells,
        })
    }

    fn scaled_frame(&self) -> (u64, u64) {
        let d = u64::from(self.denominator);
        (
            u64::from(self.frame_size.0) / d,
            u64::from(self.frame_size.1) / d,
        )
    }

    fn corrupt(&self, reason: String) -> SlideError {
        SlideError::Corrupt {
            path: self.path.clone(),
            reason: format!("DICOM: {reason}"),
        }
    }
}

impl RegionSource for DicomLevelSource {
    fn dims(&self) -> (u64, u64) {
        geometry::scaled_dims(self.level_dims, self.denominator)
    }

    fn alignment(&self) -> (u32, u32) {
        let (w, h) = self.scaled_frame();
        (w as u32, h as u32)
    }

    fn reader(&self) -> Result<Box<dyn RegionReader + '_>, SlideError> {
        Ok(Box::new(DicomLevelReader {
            source: self,
            decompressor: None,
            compressed: Vec::new(),
            stream: Vec::new(),
            frame_rgb: Vec::new(),
            decoded: None,
        }))
    }
}

struct DicomLevelReader<'a> {
    source: &'a DicomLevelSource,
    /// Made on the first JPEG frame (a level may hold none).
    decompressor: Option<TileDecoder>,
    compressed: Vec<u8>,
    stream: Vec<u8>,
    frame_rgb: Vec<u8>,
    /// The frame now in `frame_rgb`.
    decoded: Option<u32>,
}

impl DicomLevelReader<'_> {
    fn decode(&mut self, index: u32) -> Result<(), SlideError> {
        if self.decoded == Some(index) {
            return Ok(());
        }
        self.decoded = None;
        let s = self.source;
        let frame = s
            .frames
            .get(index as usize)
            .ok_or_else(|| s.corrupt(format!("frame {index} missing")))?;
        let member = s
            .members
            .get(frame.instance)
            .ok_or_else(|| s.corrupt("instance missing".into()))?;
        let total: u64 = frame.bytes.iter().map(|r| r.end - r.start).sum();
        if total > MAX_FRAME_BYTES {
            return Err(s.corrupt(format!("frame {index} has {total} bytes")));
        }
        self.compressed.clear();
        self.compressed.resize(total as usize, 0);
        let mut at = 0usize;
        for range in &frame.bytes {
            let len = (range.end - range.start) as usize;
            let dst = self
                .compressed
                .get_mut(at..at + len)
                .ok_or_else(|| s.corrupt("fragment sizes".into()))?;
            member
                .file
                .read_exact_at(dst, member.base + range.start)
                .map_err(|e| s.corrupt(format!("frame {index}: {e}")))?;
            at += len;
        }
        let scaled = s.scaled_frame();
        let fail = |e: String| s.corrupt(format!("frame {index}: {e}"));
        match member.codec {
            FrameCodec::Jpeg => {
                prepare_stream(
                    ColourPolicy::StreamFirst {
                        fallback_rgb: member.fallback_rgb,
                    },
                    &self.compressed,
                    None,
                    &mut self.stream,
                );
                let decompressor = match &mut self.decompressor {
                    Some(d) => d,
                    None => self.decompressor.insert(TileDecoder::new(s.denominator)?),
                };
                decode_scaled(
                    decompressor,
                    &self.stream,
                    s.denominator,
                    scaled,
                    &mut self.frame_rgb,
                )
                .map_err(fail)?;
            }
            FrameCodec::Jpeg2000 => {
                jpeg2000::decode_scaled(
                    &self.compressed,
                    s.frame_size,
                    s.denominator,
                    &mut self.frame_rgb,
                )
                .map_err(fail)?;
            }
            FrameCodec::JpegLs => {
                jpeg_ls::decode(&self.compressed, s.frame_size, &mut self.stream).map_err(fail)?;
                self.shrink_whole_frame();
            }
            FrameCodec::Native(layout) => {
                native_frame::to_rgb(layout, &self.compressed, s.frame_size, &mut self.stream)
                    .map_err(fail)?;
                self.shrink_whole_frame();
            }
        }
        if self.frame_rgb.len() as u64 != scaled.0 * scaled.1 * 3 {
            return Err(fail(format!(
                "decoded {} bytes for {} x {}",
                self.frame_rgb.len(),
                scaled.0,
                scaled.1
            )));
        }
        self.decoded = Some(index);
        Ok(())
    }
}

impl DicomLevelReader<'_> {
    /// For codecs without a reduced decode (JPEG-LS, uncompressed): the whole frame,
    /// decoded into `stream` as RGB, box-averaged by the denominator into `frame_rgb`.
    fn shrink_whole_frame(&mut self) {
        let s = self.source;
        box_shrink(
            &self.stream,
            s.frame_size.0 as usize,
            s.frame_size.1 as usize,
            s.denominator,
            &mut self.frame_rgb,
        );
    }
}

impl RegionReader for DicomLevelReader<'_> {
    fn read_rgb(&mut self, rect: Rect, out: &mut Vec<u8>) -> Result<(), SlideError> {
        let s = self.source;
        out.clear();
        out.resize((rect.w * rect.h * 3) as usize, WHITE);
        if rect.w == 0 || rect.h == 0 {
            return Ok(());
        }
        let (sfw, sfh) = s.scaled_frame();
        let d = u64::from(s.denominator);
        let mut ids: Vec<u32> = Vec::new();
        for cy in rect.y / sfh..=(rect.y + rect.h - 1) / sfh {
            for cx in rect.x / sfw..=(rect.x + rect.w - 1) / sfw {
                if let Some(list) = s.cells.get(&(cx, cy)) {
                    ids.extend_from_slice(list);
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            self.decode(id)?;
            let frame = &s.frames[id as usize];
            let (fx, fy) = (frame.x / d, frame.y / d);
            let x0 = fx.max(rect.x);
            let y0 = fy.max(rect.y);
            let x1 = (fx + sfw).min(rect.x + rect.w);
            let y1 = (fy + sfh).min(rect.y + rect.h);
            if x0 >= x1 || y0 >= y1 {
                continue;
            }
            let run = ((x1 - x0) * 3) as usize;
            for y in y0..y1 {
                let dst = (((y - rect.y) * rect.w + (x0 - rect.x)) * 3) as usize;
                let src = (((y - fy) * sfw + (x0 - fx)) * 3) as usize;
                out[dst..dst + run].copy_from_slice(&self.frame_rgb[src..src + run]);
            }
        }
        Ok(())
    }
}
