//! Planning a Hamamatsu VMS or VMU slide inside its worker: the header (read whole,
//! bounded) and the image, map, optimisation and macro files its keys name, beside it.

use crate::planning::named_files::{
    Held, MAX_NAMED_FILES, member, parse, sibling_names, whole, whole_text,
};
use crate::planning::{PlanAnswer, PlanRefusal, PlanTask};

/// A Hamamatsu VMS or VMU slide: `task.files[0]` is the header, the others are the
/// objects beside it.
pub fn plan_vms(task: &PlanTask) -> Result<PlanAnswer, PlanRefusal> {
    let text = match whole_text(task, 0)? {
        Held::Held(text) => text,
        Held::Need(need) => return Ok(need),
    };
    let ini = parse(&text, "the VMS header")?;
    let section = ini
        .section(Some("Virtual Microscope Specimen"))
        .ok_or_else(|| {
            PlanRefusal::corrupt("the header has no [Virtual Microscope Specimen] section")
        })?;
    // The keys OpenSlide's Hamamatsu reader opens files by: the image files (one per
    // layer and position, `ImageFile(x,y)`), the map, the optimisation file, the macro.
    let named: Vec<&str> = section
        .iter()
        .filter(|(key, _)| {
            ["ImageFile", "MapFile", "OptimisationFile", "MacroImage"]
                .iter()
                .any(|k| key.starts_with(k))
        })
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
        .collect();
    if named.is_empty() {
        return Err(PlanRefusal::corrupt("the header names no ImageFile"));
    }
    if named.len() > MAX_NAMED_FILES {
        return Err(PlanRefusal::corrupt(format!(
            "the header names {} files; a slide has at most {MAX_NAMED_FILES}",
            named.len()
        )));
    }
    let folder = sibling_names(task);
    let mut members = vec![0];
    for name in named {
        members.push(member(&folder, name, "the header")?);
    }
    Ok(whole(
        members,
        "Hamamatsu VMS: the files its header names".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
