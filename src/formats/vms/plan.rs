//! Planning a Hamamatsu VMS or VMU slide inside its worker: the header (read whole,
//! bounded) and the files its keys name, beside it, as OpenSlide 4.0.1's reader
//! (`openslide-vendor-hamamatsu.c`, `hamamatsu_vms_vmu_open`) opens them: the image
//! files of focal layer 0, the map, the macro image, and the optimisation file if the
//! folder holds it (OpenSlide reads a VMS without one).

use crate::planning::named_files::{
    Held, MAX_NAMED_FILES, member, parse, sibling_names, whole, whole_text,
};
use crate::planning::{PlanAnswer, PlanRefusal, PlanTask};
use crate::storage::ranged::folder::is_plain_name;

/// A VMS header's section (JPEG image files).
const VMS: &str = "Virtual Microscope Specimen";
/// A VMU header's section (uncompressed NGR image files).
const VMU: &str = "Uncompressed Virtual Microscope Specimen";

/// A Hamamatsu VMS or VMU slide: `task.files[0]` is the header, the others are the
/// objects beside it.
pub fn plan_vms(task: &PlanTask) -> Result<PlanAnswer, PlanRefusal> {
    let text = match whole_text(task, 0)? {
        Held::Held(text) => text,
        Held::Need(need) => return Ok(need),
    };
    let ini = parse(&text, "the header")?;
    // OpenSlide takes the VMS section if there is one, else the VMU one; a section
    // written twice is one section to it (GKeyFile merges them).
    let Some(section) = [VMS, VMU]
        .into_iter()
        .find(|name| ini.section(Some(*name)).is_some())
    else {
        return Err(PlanRefusal::corrupt(format!(
            "the header has no [{VMS}] (VMS) or [{VMU}] (VMU) section"
        )));
    };
    let keys: Vec<(&str, &str)> = ini
        .section_all(Some(section))
        .flat_map(|properties| properties.iter())
        .map(|(key, value)| (key, value.trim()))
        .filter(|(_, value)| !value.is_empty())
        .collect();
    // The image files of focal layer 0: OpenSlide skips the other layers' keys.
    let images: Vec<&str> = keys
        .iter()
        .filter(|(key, _)| {
            key.strip_prefix("ImageFile")
                .is_some_and(|suffix| image_layer(suffix).is_none_or(|layer| layer == 0))
        })
        .map(|(_, value)| *value)
        .collect();
    if images.is_empty() {
        return Err(PlanRefusal::corrupt("the header names no ImageFile"));
    }
    let required: Vec<&str> = images
        .into_iter()
        .chain(named(&keys, "MapFile"))
        .chain(named(&keys, "MacroImage"))
        .collect();
    // Only a VMS reads its optimisation file, and reads the slide without it.
    let optional: Vec<&str> = match section {
        VMS => named(&keys, "OptimisationFile"),
        _ => Vec::new(),
    };
    if required.len() + optional.len() > MAX_NAMED_FILES {
        return Err(PlanRefusal::corrupt(format!(
            "the header names {} files; a slide has at most {MAX_NAMED_FILES}",
            required.len() + optional.len()
        )));
    }
    let folder = sibling_names(task);
    let mut members = vec![0];
    for name in required {
        members.push(member(&folder, name, "the header")?);
    }
    for name in optional {
        // A name leaving the folder is refused all the same; an absent file is skipped.
        if !is_plain_name(name) || folder.contains_key(name) {
            members.push(member(&folder, name, "the header")?);
        }
    }
    if named(&keys, "MapFile").is_empty() {
        return Err(PlanRefusal::corrupt(
            "the header names no MapFile, which OpenSlide requires",
        ));
    }
    Ok(whole(
        members,
        "Hamamatsu VMS: the files its header names".into(),
    ))
}

/// The values of `key` (exactly: OpenSlide looks keys up by name).
fn named<'a>(keys: &[(&str, &'a str)], key: &str) -> Vec<&'a str> {
    keys.iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, value)| *value)
        .collect()
}

/// The focal layer of an `ImageFile` key (`suffix` is what follows `ImageFile`), read
/// as OpenSlide reads it: none is layer 0, `(z)` and `(z,x,y)` name it, `(x,y)` is layer
/// 0. `None` where OpenSlide cannot parse the key (it then refuses the slide, so the
/// file is kept, for OpenSlide to say so).
fn image_layer(suffix: &str) -> Option<i32> {
    if suffix.is_empty() {
        return Some(0);
    }
    let mut parts: Vec<&str> = suffix.split(',').collect();
    if let Some(last) = parts.last_mut() {
        *last = last.strip_suffix(')').unwrap_or(last);
    }
    match parts.len() {
        // The first part's first character (its '(') is skipped, whatever it is.
        1 | 3 => parts[0]
            .as_bytes()
            .get(1..)
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .and_then(c_int64)
            // OpenSlide keeps the layer in a C int.
            .map(|layer| layer as i32),
        2 => Some(0),
        _ => None,
    }
}

/// A whole string as `g_ascii_strtoll` in base 10 reads it (leading blanks, a sign,
/// digits, nothing after), `None` where OpenSlide's parser fails.
fn c_int64(text: &str) -> Option<i64> {
    let digits = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_kind::ErrorKind;
    use crate::planning::SlideLayout;
    use crate::planning::named_files::test_task::task;

    #[test]
    fn a_vms_slide_is_its_header_and_the_files_its_keys_name() {
        let dir = tempfile::tempdir().unwrap();
        let header = b"[Virtual Microscope Specimen]\nNoLayers=1\nImageFile=a.jpg\n\
            ImageFile(1,0)=b.jpg\nMapFile=a_map.jpg\nOptimisationFile=a.opt\nPhysicalWidth=1\n";
        let t = task(
            dir.path(),
            &[
                ("a.vms", header),
                ("b.jpg", b"b"),
                ("a.jpg", b"a"),
                ("a.opt", b"o"),
                ("a_map.jpg", b"m"),
                ("other.svs", b"s"),
            ],
            SlideLayout::Vms,
        );
        let PlanAnswer::Whole { members, .. } = plan_vms(&t).unwrap() else {
            panic!("read whole")
        };
        assert_eq!(members, vec![0, 2, 1, 4, 3]);
        let t = task(
            dir.path(),
            &[(
                "a.vms",
                b"[Virtual Microscope Specimen]\nImageFile=../x.jpg\n",
            )],
            SlideLayout::Vms,
        );
        assert!(plan_vms(&t).unwrap_err().message.contains("plain name"));
    }

    /// The members planned for a header among `files` (the header is `slide.vms`), or
    /// the refusal.
    fn plan(header: &str, files: &[(&str, &[u8])]) -> Result<Vec<String>, PlanRefusal> {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec![("slide.vms", header.as_bytes())];
        all.extend_from_slice(files);
        let t = task(dir.path(), &all, SlideLayout::Vms);
        let PlanAnswer::Whole { members, .. } = plan_vms(&t)? else {
            panic!("read whole")
        };
        Ok(members
            .iter()
            .map(|&m| all[m as usize].0.to_string())
            .collect())
    }

    #[test]
    fn a_vmu_header_names_its_files_as_a_vms_does() {
        // OpenSlide reads VMU slides from this section (a VMS one would come first).
        let header = "[Uncompressed Virtual Microscope Specimen]\r\nImageFile=a.ngr\r\n\
            MapFile=a_map.ngr\r\nOptimisationFile=a.opt\r\nBitsPerPixel=36\r\n";
        let files: &[(&str, &[u8])] = &[("a.ngr", b"a"), ("a_map.ngr", b"m"), ("a.opt", b"o")];
        assert_eq!(
            plan(header, files).unwrap(),
            ["slide.vms", "a.ngr", "a_map.ngr"],
            "a VMU has no optimisation file"
        );
        let err = plan("[Other]\nImageFile=a.ngr\n", files).unwrap_err();
        assert_eq!(err.kind, ErrorKind::CorruptSlide);
        assert!(
            err.message.contains("no [Virtual Microscope Specimen]"),
            "{}",
            err.message
        );
    }

    #[test]
    fn only_focal_layer_0_is_fetched_as_openslide_reads_only_it() {
        let header = "[Virtual Microscope Specimen]\nNoLayers=3\nImageFile=a.jpg\n\
            ImageFile(1)=z1.jpg\nImageFile(2,0,0)=z2.jpg\nImageFile(0,1,0)=b.jpg\n\
            ImageFile(0, 1)=c.jpg\nImageFile(1,1, 1)=z3.jpg\nImageFile(x)=odd.jpg\n\
            MapFile=m.jpg\n";
        // The other layers' files are not in the folder: no matter, OpenSlide skips them.
        let files: &[(&str, &[u8])] = &[
            ("a.jpg", b"a"),
            ("b.jpg", b"b"),
            ("c.jpg", b"c"),
            ("m.jpg", b"m"),
            ("odd.jpg", b"o"),
        ];
        assert_eq!(
            plan(header, files).unwrap(),
            ["slide.vms", "a.jpg", "b.jpg", "c.jpg", "odd.jpg", "m.jpg"]
        );
        assert_eq!(image_layer(""), Some(0));
        assert_eq!(image_layer("(3)"), Some(3));
        assert_eq!(image_layer("(2, 5)"), Some(0));
        assert_eq!(image_layer("( 1,0,0)"), Some(1));
        assert_eq!(image_layer("(1 ,0,0)"), None);
        assert_eq!(image_layer("(4294967296,0,0)"), Some(0), "a C int");
        assert_eq!(image_layer("(1,2,3,4)"), None);
        assert_eq!(image_layer("(é)"), None);
    }

    #[test]
    fn the_optimisation_file_is_fetched_when_there_and_its_absence_is_no_refusal() {
        let header = "[Virtual Microscope Specimen]\nImageFile=a.jpg\nMapFile=m.jpg\n\
            OptimisationFile=a.opt\nMacroImage=macro.jpg\n";
        let files: &[(&str, &[u8])] = &[("a.jpg", b"a"), ("m.jpg", b"m"), ("macro.jpg", b"x")];
        assert_eq!(
            plan(header, files).unwrap(),
            ["slide.vms", "a.jpg", "m.jpg", "macro.jpg"]
        );
        // The macro image, which OpenSlide opens when named, is required.
        let err = plan(header, &files[..2]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::SlideNotFound);
        assert!(err.message.contains("macro.jpg"), "{}", err.message);
        // An optimisation file outside the folder is refused like any other.
        let hostile = header.replace("a.opt", "../a.opt");
        let err = plan(&hostile, files).unwrap_err();
        assert_eq!(err.kind, ErrorKind::CorruptSlide);
        assert!(err.message.contains("../a.opt"), "{}", err.message);
    }

    #[test]
    fn a_header_without_a_map_is_refused() {
        let err = plan(
            "[Virtual Microscope Specimen]\nImageFile=a.jpg\nMapFileOld=m.jpg\n",
            &[("a.jpg", b"a"), ("m.jpg", b"m")],
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::CorruptSlide);
        assert!(err.message.contains("MapFile"), "{}", err.message);
    }

    #[test]
    fn a_section_written_twice_is_one_section() {
        let header = "[Virtual Microscope Specimen]\nImageFile=a.jpg\nMapFile=m.jpg\n\
            [Other]\nImageFile=x.jpg\n[Virtual Microscope Specimen]\nImageFile(1,0)=b.jpg\n";
        let files: &[(&str, &[u8])] = &[("a.jpg", b"a"), ("b.jpg", b"b"), ("m.jpg", b"m")];
        assert_eq!(
            plan(header, files).unwrap(),
            ["slide.vms", "a.jpg", "b.jpg", "m.jpg"]
        );
    }
}
