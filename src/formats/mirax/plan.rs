//! Planning a MIRAX slide inside its worker: the `.mrxs`, its companion folder's
//! `Slidedat.ini` and `Index.dat` (each read whole, bounded), then only the bytes of the
//! data files OpenSlide 4.0.1 reads for the thumbnail.
//!
//! Why here: which files make the slide, and where in them each image lies, is written
//! in `Slidedat.ini` and `Index.dat`, which are as hostile as the pixels. What OpenSlide
//! reads (`openslide-vendor-mirax.c`), and so what the plan fetches:
//! - at open, the camera positions and the associated images' records (nonhier), and
//!   every image of the smallest level (it hashes them for `openslide.quickhash-1`);
//! - for the thumbnail, every image of the level the engine reads: the level
//!   [`choose_level`] picks over the sizes OpenSlide derives ([`Slidedat::level_dims`]).
//!
//! A level's images are contiguous in scanners' data files, so the plan is a few ranges
//! per file. An index past [`MAX_INDEX_FILE`] is not planned: the slide is read whole
//! (within the temp-disk budget) and OpenSlide reads it as it would on disk.

use super::index::IndexDat;
use super::slidedat::Slidedat;
use crate::error_kind::ErrorKind;
use crate::planning::named_files::{
    Held, MAX_NAMED_FILES, companion_names, member, not_found, parse, whole, whole_bytes,
    whole_text,
};
use crate::planning::{
    COALESCE_GAP, MAX_ANSWER_RANGES, PlanAnswer, PlanRefusal, PlanTask, in_file,
};
use crate::slide::geometry::{choose_level, thumbnail_dims};
use crate::storage::ranged::ranges::{self, ByteRange};

/// Largest `Index.dat` the planner reads: 16 bytes per image, so 2 M images (a slide of
/// 100k x 80k pixels in 256-pixel images has about 160 k).
pub const MAX_INDEX_FILE: u64 = 32 * 1024 * 1024;

/// A MIRAX slide: `task.files[0]` is the `.mrxs`, the others are the companion folder's
/// objects (`<stem>/<name>`).
pub fn plan_mirax(task: &PlanTask) -> Result<PlanAnswer, PlanRefusal> {
    let folder = companion_names(task);
    let Some(&slidedat_file) = folder.get("Slidedat.ini") else {
        return Err(not_found(
            "the MIRAX companion folder (the .mrxs's stem, beside it) holds no \
             Slidedat.ini: upload the folder with the .mrxs",
        ));
    };
    let text = match whole_text(task, slidedat_file)? {
        Held::Held(text) => text,
        Held::Need(need) => return Ok(need),
    };
    let slidedat = Slidedat::read(&parse(&text, "Slidedat.ini")?, MAX_NAMED_FILES)?;
    let index_file = member(&folder, &slidedat.index_file, "Slidedat.ini")?;
    let data = slidedat
        .data_files
        .iter()
        .map(|name| member(&folder, name, "Slidedat.ini"))
        .collect::<Result<Vec<u32>, _>>()?;
    let mut members = vec![0, slidedat_file, index_file];
    members.extend(&data);
    let reason = format!("MIRAX: {} data files", data.len());
    if task.files[index_file as usize].size > MAX_INDEX_FILE {
        return Ok(whole(
            members,
            format!("{reason}, an index past the planner's bound"),
        ));
    }
    let bytes = match whole_bytes(task, index_file, MAX_INDEX_FILE)? {
        Held::Held(bytes) => bytes,
        Held::Need(need) => return Ok(need),
    };
    let corrupt = |e: super::index::IndexError| PlanRefusal::corrupt(e.to_string());
    let index = IndexDat::open(&bytes, &slidedat.slide_id, data.len()).map_err(corrupt)?;

    let dims = slidedat.level_dims()?;
    let (w0, h0) = dims[0];
    if w0 == 0 || h0 == 0 {
        return Err(PlanRefusal::corrupt(format!(
            "level 0 is {w0} x {h0} pixels"
        )));
    }
    if w0.saturating_mul(h0) > task.max_slide_pixels {
        return Err(PlanRefusal {
            kind: ErrorKind::SlideTooLarge,
            message: format!(
                "the slide is {w0} x {h0} pixels, more than the limit of {} \
                 (thumbnail.max_slide_pixels)",
                task.max_slide_pixels
            ),
        });
    }
    let level = choose_level(&dims, thumbnail_dims(w0, h0, task.max_size));
    let smallest = dims.len() - 1;
    let mut stored = index.level_images(level).map_err(corrupt)?;
    if smallest != level {
        stored.extend(index.level_images(smallest).map_err(corrupt)?);
    }
    for &record in &slidedat.nonhier_records {
        stored.push(index.nonhier(record).map_err(corrupt)?);
    }

    let mut planned = Vec::new();
    for &file in [slidedat_file, index_file].iter() {
        let size = task.files[file as usize].size;
        planned.extend(in_file(file, vec![ByteRange::at(0, size)]));
    }
    let mut by_member: Vec<(u32, Vec<ByteRange>)> = Vec::new();
    for s in stored.iter().filter(|s| s.length > 0) {
        let file = data[s.file as usize];
        let range = ByteRange::at(s.offset, s.length);
        match by_member.iter_mut().find(|(f, _)| *f == file) {
            Some((_, list)) => list.push(range),
            None => by_member.push((file, vec![range])),
        }
    }
    for (file, list) in by_member {
        let size = task.files[file as usize].size;
        planned.extend(in_file(file, ranges::coalesce(list, size, COALESCE_GAP)));
    }
    if planned.len() > MAX_ANSWER_RANGES {
        return Ok(whole(
            members,
            format!("{reason}, {} ranges", planned.len()),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    members.retain(|m| seen.insert(*m));
    Ok(PlanAnswer::Ranged {
        level,
        ranges: planned,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_kind::ErrorKind;
    use crate::fixtures::mirax::MiraxSpec;
    use crate::planning::PlanFile;
    use crate::planning::SlideLayout;
    use crate::planning::named_files::MAX_HEADER_FILE;
    use crate::planning::named_files::test_task::task;

    const SLIDEDAT: &[u8] = b"\xef\xbb\xbf[GENERAL]\nSLIDE_ID=abc\nIMAGENUMBER_X=4\n\
        IMAGENUMBER_Y=4\n[HIERARCHICAL]\nINDEXFILE = Index.dat\nHIER_COUNT=1\n\
        HIER_0_NAME=Slide zoom level\nHIER_0_COUNT=1\nHIER_0_VAL_0_SECTION=L0\n\
        NONHIER_COUNT=0\n[L0]\nIMAGE_CONCAT_FACTOR=0\nDIGITIZER_WIDTH=256\n\
        DIGITIZER_HEIGHT=256\nOVERLAP_X=0\nOVERLAP_Y=0\n\
        [DATAFILE]\nFILE_COUNT = 2\nFILE_0 = Data0000.dat\nFILE_1 = Data0001.dat\n";

    /// A task over a generated slide's files, all held: the `.mrxs`, then its folder's
    /// in name order (data files, `Index.dat`, `Slidedat.ini`).
    fn fixture_task(dir: &std::path::Path, spec: &MiraxSpec) -> PlanTask {
        let (mrxs, _) = crate::fixtures::mirax::write_slide(dir, spec).expect("fixture");
        let mut paths: Vec<_> = std::fs::read_dir(mrxs.with_extension(""))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        paths.insert(0, mrxs);
        PlanTask {
            files: paths
                .into_iter()
                .map(|path| {
                    let size = std::fs::metadata(&path).unwrap().len();
                    PlanFile {
                        path,
                        size,
                        held: vec![ByteRange::at(0, size)],
                    }
                })
                .collect(),
            layout: SlideLayout::Mirax,
            max_size: 1024,
            max_slide_pixels: u64::MAX,
        }
    }

    #[test]
    fn levels_are_the_sizes_openslide_derives_and_the_level_it_reads_is_planned() {
        let dir = tempfile::tempdir().unwrap();
        let mut flat = MiraxSpec::new(4096, 2816);
        flat.position_buffer = false;
        flat.data_file_bytes = 256 * 1024;
        for spec in [MiraxSpec::new(4096, 3072), flat] {
            let task = fixture_task(dir.path(), &spec);
            let n = task.files.len();
            let text = std::fs::read_to_string(&task.files[n - 1].path).unwrap();
            let text = text.trim_start_matches('\u{feff}');
            let slidedat = Slidedat::read(&parse(text, "s").unwrap(), 1024).unwrap();
            let slide = openslide_rs::OpenSlide::new(&task.files[0].path).unwrap();
            let theirs: Vec<(u64, u64)> = slide
                .all_level_dimensions()
                .iter()
                .map(|d| (u64::from(d.w), u64::from(d.h)))
                .collect();
            assert_eq!(slidedat.level_dims().unwrap(), theirs, "{}", spec.stem());

            let PlanAnswer::Ranged {
                level,
                ranges,
                members,
            } = plan_mirax(&task).unwrap()
            else {
                panic!("a generated slide is planned")
            };
            let (w0, h0) = theirs[0];
            assert_eq!(level, choose_level(&theirs, thumbnail_dims(w0, h0, 1024)));
            assert_eq!(level, 2, "4096 wide: level 2 is 1024");
            // Every file is a member; the data files are read in part: the level (1/16
            // of level 0's images), the smallest level and the positions.
            assert_eq!(members.len(), n);
            let is_data = |f: u32| f >= 1 && (f as usize) < n - 2;
            let data: u64 = (1..n - 2).map(|f| task.files[f].size).sum();
            let planned: u64 = ranges
                .iter()
                .filter(|r| is_data(r.file))
                .map(|r| r.range.len())
                .sum();
            assert!(
                planned * 8 < data,
                "{}: planned {planned} of {data} data bytes",
                spec.stem()
            );
        }
    }

    #[test]
    fn an_index_past_the_bound_is_read_whole_and_a_hostile_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut task = fixture_task(dir.path(), &MiraxSpec::new(2048, 2048));
        let index = task.files.len() - 2;
        assert!(task.files[index].path.ends_with("Index.dat"));
        let size = task.files[index].size;
        task.files[index].size = MAX_INDEX_FILE + 1;
        assert!(matches!(
            plan_mirax(&task).unwrap(),
            PlanAnswer::Whole { .. }
        ));
        task.files[index].size = size;
        let mut bytes = std::fs::read(&task.files[index].path).unwrap();
        bytes[0] = b'9';
        std::fs::write(&task.files[index].path, &bytes).unwrap();
        let refusal = plan_mirax(&task).unwrap_err();
        assert_eq!(refusal.kind, ErrorKind::CorruptSlide);
        assert!(refusal.message.contains("version"), "{}", refusal.message);
    }

    #[test]
    fn a_slide_past_the_pixel_limit_is_refused_before_its_pixels_are_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let mut task = fixture_task(dir.path(), &MiraxSpec::new(2048, 2048));
        task.max_slide_pixels = 2048 * 2048 - 1;
        let refusal = plan_mirax(&task).unwrap_err();
        assert_eq!(refusal.kind, ErrorKind::SlideTooLarge);
        assert!(
            refusal.message.contains("2048 x 2048"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn slidedat_is_asked_for_whole_before_anything_is_decided() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = task(
            dir.path(),
            &[("s.mrxs", b""), ("s/Slidedat.ini", SLIDEDAT)],
            SlideLayout::Mirax,
        );
        t.files[1].held = vec![ByteRange::at(0, 10)];
        let PlanAnswer::Need { ranges } = plan_mirax(&t).unwrap() else {
            panic!("asks for the rest")
        };
        assert_eq!(ranges.len(), 1);
        assert_eq!(ranges[0].file, 1);
        assert_eq!(
            ranges[0].range,
            ByteRange::at(10, SLIDEDAT.len() as u64 - 10)
        );
    }

    #[test]
    fn a_companion_named_outside_the_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for hostile in ["../other/Data0000.dat", "/etc/passwd", ".."] {
            let slidedat = String::from_utf8_lossy(SLIDEDAT)
                .replace("FILE_COUNT = 2", "FILE_COUNT = 1")
                .replace("FILE_0 = Data0000.dat", &format!("FILE_0 = {hostile}"));
            let t = task(
                dir.path(),
                &[
                    ("s.mrxs", b""),
                    ("s/Slidedat.ini", slidedat.as_bytes()),
                    ("s/Index.dat", b"i"),
                ],
                SlideLayout::Mirax,
            );
            let refusal = plan_mirax(&t).unwrap_err();
            assert_eq!(refusal.kind, ErrorKind::CorruptSlide, "{hostile}");
            assert!(
                refusal.message.contains("plain name"),
                "{}",
                refusal.message
            );
        }
    }

    #[test]
    fn a_missing_companion_is_not_found_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let t = task(
            dir.path(),
            &[
                ("s.mrxs", b""),
                ("s/Slidedat.ini", SLIDEDAT),
                ("s/Index.dat", b"i"),
                ("s/Data0000.dat", b"d0"),
            ],
            SlideLayout::Mirax,
        );
        let refusal = plan_mirax(&t).unwrap_err();
        assert_eq!(refusal.kind, ErrorKind::SlideNotFound);
        assert!(
            refusal.message.contains("Data0001.dat"),
            "{}",
            refusal.message
        );
        let t = task(dir.path(), &[("t.mrxs", b"")], SlideLayout::Mirax);
        assert_eq!(plan_mirax(&t).unwrap_err().kind, ErrorKind::SlideNotFound);
    }

    #[test]
    fn headers_and_name_counts_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let many = String::from_utf8_lossy(SLIDEDAT).replace(
            "FILE_COUNT = 2",
            &format!("FILE_COUNT = {}", MAX_NAMED_FILES + 1),
        );
        let t = task(
            dir.path(),
            &[("s.mrxs", b""), ("s/Slidedat.ini", many.as_bytes())],
            SlideLayout::Mirax,
        );
        assert!(plan_mirax(&t).unwrap_err().message.contains("at most"));
        let mut t = task(
            dir.path(),
            &[("s.mrxs", b""), ("s/Slidedat.ini", SLIDEDAT)],
            SlideLayout::Mirax,
        );
        t.files[1].size = MAX_HEADER_FILE + 1;
        assert!(
            plan_mirax(&t)
                .unwrap_err()
                .message
                .contains("at most 4 MiB")
        );
    }
}
