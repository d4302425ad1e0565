//! What the planners of header-and-companions formats share ([`crate::formats::mirax`],
//! [`crate::formats::vms`]): a header file read whole and bounded, parsed as INI the
//! way OpenSlide's GKeyFile reads it, and the files it names checked: each a plain
//! name (so none escapes the slide's folder) that the folder holds.

use std::collections::HashMap;
use std::io::Read;

use ini::{Ini, ParseOption};

use super::{FileRange, PlanAnswer, PlanFile, PlanRefusal, PlanTask};
use crate::error_kind::ErrorKind;
use crate::storage::ranged::folder::is_plain_name;
use crate::storage::ranged::ranges::ByteRange;

/// Largest header file (`Slidedat.ini`, `.vms`, `.vmu`): real ones are a few KiB to a
/// few hundred KiB (one key per camera position).
pub const MAX_HEADER_FILE: u64 = 4 * 1024 * 1024;
/// Most files a header may name: real MIRAX slides have up to a few hundred data files.
pub const MAX_NAMED_FILES: usize = 1024;

/// The task's file for `name` in `folder`, checked.
pub fn member(folder: &HashMap<String, u32>, name: &str, header: &str) -> Result<u32, PlanRefusal> {
    if !is_plain_name(name) {
        return Err(PlanRefusal {
            kind: ErrorKind::CorruptSlide,
            message: format!(
                "{header} names {name:?}, which is not a file in the slide's folder; a \
                 companion file must be a plain name beside it"
            ),
        });
    }
    folder.get(name).copied().ok_or_else(|| {
        not_found(format!(
            "{header} names {name}, which the slide's folder does not hold: upload every \
             file of the slide"
        ))
    })
}

pub fn not_found(message: impl Into<String>) -> PlanRefusal {
    PlanRefusal {
        kind: ErrorKind::SlideNotFound,
        message: message.into(),
    }
}

pub fn whole(mut members: Vec<u32>, reason: String) -> PlanAnswer {
    let mut seen = std::collections::HashSet::new();
    members.retain(|m| seen.insert(*m));
    PlanAnswer::Whole { reason, members }
}

/// The companion folder's files by name (`<stem>/<name>` in the task).
pub fn companion_names(task: &PlanTask) -> HashMap<String, u32> {
    let stem = task.files[0].path.file_stem().map(|s| s.to_os_string());
    task.files
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, f)| f.path.parent().and_then(|p| p.file_name()) == stem.as_deref())
        .filter_map(|(i, f)| Some((file_name(f)?, i as u32)))
        .collect()
}

/// The other files beside the header, by name.
pub fn sibling_names(task: &PlanTask) -> HashMap<String, u32> {
    task.files
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(i, f)| Some((file_name(f)?, i as u32)))
        .collect()
}

pub fn file_name(file: &PlanFile) -> Option<String> {
    file.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// A header file held whole, or the ask for it.
pub enum Held<T> {
    Held(T),
    Need(PlanAnswer),
}

/// The file `index` of `task` as bytes, once held whole; refused past `max` bytes.
pub fn whole_bytes(task: &PlanTask, index: u32, max: u64) -> Result<Held<Vec<u8>>, PlanRefusal> {
    let file = &task.files[index as usize];
    let name = file_name(file).unwrap_or_default();
    if file.size > max {
        return Err(PlanRefusal::corrupt(format!(
            "{name} is {} bytes; a slide's {name} is at most {} MiB",
            file.size,
            max >> 20
        )));
    }
    let mut copy = super::open(file)?;
    if copy.held_prefix() < file.size {
        return Ok(Held::Need(PlanAnswer::Need {
            ranges: vec![FileRange {
                file: index,
                range: ByteRange {
                    start: copy.held_prefix(),
                    end: file.size,
                },
            }],
        }));
    }
    let mut bytes = Vec::with_capacity(file.size as usize);
    copy.read_to_end(&mut bytes).map_err(|e| PlanRefusal {
        kind: ErrorKind::Internal,
        message: format!("cannot read the local copy of {name}: {e}"),
    })?;
    Ok(Held::Held(bytes))
}

/// A header file (at most [`MAX_HEADER_FILE`]) as text, once held whole.
pub fn whole_text(task: &PlanTask, index: u32) -> Result<Held<String>, PlanRefusal> {
    Ok(match whole_bytes(task, index, MAX_HEADER_FILE)? {
        // Scanners write Slidedat.ini with a UTF-8 byte-order mark; the text is ASCII.
        Held::Held(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            Held::Held(text.strip_prefix('\u{feff}').unwrap_or(&text).to_string())
        }
        Held::Need(need) => Held::Need(need),
    })
}

/// An INI file as OpenSlide's GKeyFile reads it: no quoting, no escapes.
pub fn parse(text: &str, what: &str) -> Result<Ini, PlanRefusal> {
    let option = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..ParseOption::default()
    };
    Ini::load_from_str_opt(text, option)
        .map_err(|e| PlanRefusal::corrupt(format!("{what} is not a valid INI file: {e}")))
}

#[cfg(test)]
pub(crate) mod test_task {
    use super::*;
    use crate::planning::SlideLayout;
    use std::path::Path;

    /// A task over files written in `dir` (whole, all held), the first one linked.
    pub fn task(dir: &Path, files: &[(&str, &[u8])], layout: SlideLayout) -> PlanTask {
        PlanTask {
            files: files
                .iter()
                .map(|(name, bytes)| {
                    let path = dir.join(name);
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, bytes).unwrap();
                    PlanFile {
                        path,
                        size: bytes.len() as u64,
                        held: vec![ByteRange::at(0, bytes.len() as u64)],
                    }
                })
                .collect(),
            layout,
            max_size: 1024,
            max_slide_pixels: u64::MAX,
        }
    }
}
