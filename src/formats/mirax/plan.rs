//! Planning a MIRAX slide inside its worker: the `.mrxs`, its companion folder's
//! `Slidedat.ini` (read whole, bounded), the index file and the data files it names.
//!
//! Why here: which files make the slide is written in `Slidedat.ini`, which is as
//! hostile as the pixels. The members are read whole: OpenSlide reads a level's tiles
//! from the data files through `Index.dat`, so a planner of that index could ask for
//! only the chosen level's ranges; that is not built yet.

use crate::planning::named_files::{
    Held, MAX_NAMED_FILES, companion_names, member, not_found, parse, whole, whole_text,
};
use crate::planning::{PlanAnswer, PlanRefusal, PlanTask};

/// A MIRAX slide: `task.files[0]` is the `.mrxs`, the others are the companion folder's
/// objects (`<stem>/<name>`).
pub fn plan_mirax(task: &PlanTask) -> Result<PlanAnswer, PlanRefusal> {
    let folder = companion_names(task);
    let Some(&slidedat) = folder.get("Slidedat.ini") else {
        return Err(not_found(
            "the MIRAX companion folder (the .mrxs's stem, beside it) holds no \
             Slidedat.ini: upload the folder with the .mrxs",
        ));
    };
    let text = match whole_text(task, slidedat)? {
        Held::Text(text) => text,
        Held::Need(need) => return Ok(need),
    };
    let ini = parse(&text, "Slidedat.ini")?;
    let mut named = Vec::new();
    let index = ini
        .get_from(Some("HIERARCHICAL"), "INDEXFILE")
        .ok_or_else(|| PlanRefusal::corrupt("Slidedat.ini has no [HIERARCHICAL] INDEXFILE"))?;
    named.push(index.to_string());
    let count: usize = ini
        .get_from(Some("DATAFILE"), "FILE_COUNT")
        .and_then(|c| c.trim().parse().ok())
        .ok_or_else(|| PlanRefusal::corrupt("Slidedat.ini has no [DATAFILE] FILE_COUNT"))?;
    if count > MAX_NAMED_FILES {
        return Err(PlanRefusal::corrupt(format!(
            "Slidedat.ini names {count} data files; a slide has at most {MAX_NAMED_FILES}"
        )));
    }
    for i in 0..count {
        let name = ini
            .get_from(Some("DATAFILE"), &format!("FILE_{i}"))
            .ok_or_else(|| PlanRefusal::corrupt(format!("Slidedat.ini has no FILE_{i}")))?;
        named.push(name.to_string());
    }
    let mut members = vec![0, slidedat];
    for name in &named {
        members.push(member(&folder, name, "Slidedat.ini")?);
    }
    Ok(whole(members, format!("MIRAX: {count} data files")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_kind::ErrorKind;
    use crate::planning::SlideLayout;
    use crate::planning::named_files::MAX_HEADER_FILE;
    use crate::planning::named_files::test_task::task;
    use crate::storage::ranged::ranges::ByteRange;

    const SLIDEDAT: &[u8] = b"\xef\xbb\xbf[GENERAL]\nSLIDE_VERSION = 01.03\n\
        [HIERARCHICAL]\nINDEXFILE = Index.dat\n\
        [DATAFILE]\nFILE_COUNT = 2\nFILE_0 = Data0000.dat\nFILE_1 = Data0001.dat\n";

    #[test]
    fn a_mirax_slide_is_its_mrxs_slidedat_index_and_named_data_files() {
        let dir = tempfile::tempdir().unwrap();
        let t = task(
            dir.path(),
            &[
                ("s.mrxs", b""),
                ("s/Data0001.dat", b"d1"),
                ("s/Slidedat.ini", SLIDEDAT),
                ("s/unrelated.txt", b"x"),
                ("s/Index.dat", b"i"),
                ("s/Data0000.dat", b"d0"),
            ],
            SlideLayout::Mirax,
        );
        let PlanAnswer::Whole { members, .. } = plan_mirax(&t).unwrap() else {
            panic!("read whole")
        };
        assert_eq!(members, vec![0, 2, 4, 5, 1]);
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
            let slidedat = format!(
                "[HIERARCHICAL]\nINDEXFILE = Index.dat\n[DATAFILE]\nFILE_COUNT = 1\nFILE_0 = {hostile}\n"
            );
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
        let many = format!(
            "[HIERARCHICAL]\nINDEXFILE = Index.dat\n[DATAFILE]\nFILE_COUNT = {}\n",
            MAX_NAMED_FILES + 1
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
