//! A thumbnail's output file, prepared before its slide is decoded and put in place
//! whole.
//!
//! Why: preparing it checks the path before any decoding is spent on it (a missing or
//! read-only directory fails at once, not after the slide), and removing an older file
//! there, which the kernel does by freeing its blocks (0.7 ms for a 1.3 MB PNG on this
//! machine's ext4), happens while the worker starts rather than after the slide is done.
//!
//! How: the PNG is written to a temporary file beside the output, created at once, and
//! renamed over the output when it is complete, so the output path never holds an empty
//! or partial PNG, even if the run is killed (a kill can leave the hidden temporary file,
//! `.NAME.XXXXXX.tmp`). An older regular file at the path is removed when the temporary
//! file is created: a slide that fails leaves no file there, never the older thumbnail,
//! which a reader could take for this run's. An output that exists and is not a regular
//! file (`/dev/null`, a symlink, a FIFO) is never removed or replaced: it is written
//! through, as a plain write would, once the PNG is made.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// The first of `outputs` that is one of `slides` (the same file, by any name): writing
/// it would destroy a slide before it is read.
pub fn output_that_is_a_slide<'a>(outputs: &'a [PathBuf], slides: &[PathBuf]) -> Option<&'a Path> {
    let identity = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let slides: HashSet<(u64, u64)> = slides.iter().filter_map(|s| identity(s)).collect();
    outputs
        .iter()
        .find(|o| identity(o).is_some_and(|id| slides.contains(&id)))
        .map(PathBuf::as_path)
}

/// An output waiting for its PNG.
pub enum OutputFile {
    /// A temporary file beside `path`, renamed over it once written; dropped unwritten,
    /// it removes itself.
    Replace { path: PathBuf, file: NamedTempFile },
    /// An existing output that is not a regular file, written through at the end.
    Through { path: PathBuf },
}

impl OutputFile {
    /// Prepares `path`: a temporary file beside it, and any older regular file there
    /// removed; or, for an existing output that is not a regular file, nothing yet.
    pub fn create(path: &Path) -> std::io::Result<OutputFile> {
        let existing = match std::fs::symlink_metadata(path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if existing.as_ref().is_some_and(|m| !m.file_type().is_file()) {
            return Ok(OutputFile::Through {
                path: path.to_path_buf(),
            });
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut prefix = OsString::from(".");
        prefix.push(path.file_name().unwrap_or_default());
        prefix.push(".");
        // Created as a plain `File::create` would be (0666 less the umask), not 0600.
        let file = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)?;
        if existing.is_some() {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(OutputFile::Replace {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes the PNG and puts it at the output path.
    pub fn write(self, png: &[u8]) -> std::io::Result<()> {
        match self {
            OutputFile::Through { path } => std::fs::write(path, png),
            OutputFile::Replace { path, mut file } => {
                file.write_all(png)?;
                file.persist(&path).map(drop).map_err(|e| e.error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    /// `name` in `dir` holding `bytes`, and a symlink `link` beside it pointing to it.
    fn file_and_link(dir: &Path, name: &str, bytes: &[u8], link: &str) -> (PathBuf, PathBuf) {
        let file = dir.join(name);
        std::fs::write(&file, bytes).expect("file");
        let link = dir.join(link);
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        (file, link)
    }

    /// The files in `dir`, hidden ones included.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("listing")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_output_holds_a_whole_png_or_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.png");
        std::fs::write(&path, b"an older thumbnail").expect("older file");

        let output = OutputFile::create(&path).expect("created");
        assert!(!path.exists(), "the older file is removed at once");
        output.write(b"new png").expect("written");
        assert_eq!(std::fs::read(&path).expect("read"), b"new png");
        assert_eq!(
            listing(dir.path()),
            ["out.png"],
            "no temporary file is left"
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_ne!(
            mode & 0o044,
            0,
            "readable by others as a plain write makes it: {mode:o}"
        );

        let abandoned = OutputFile::create(&path).expect("created");
        drop(abandoned);
        assert!(
            listing(dir.path()).is_empty(),
            "a slide that failed leaves nothing"
        );

        assert!(OutputFile::create(&dir.path().join("missing/out.png")).is_err());
    }

    #[test]
    fn an_output_that_is_not_a_regular_file_is_written_through_and_never_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (target, link) = file_and_link(dir.path(), "target.png", b"kept", "link.png");

        drop(OutputFile::create(&link).expect("prepared"));
        assert_eq!(
            std::fs::read(&link).expect("read"),
            b"kept",
            "untouched on failure"
        );

        OutputFile::create(&link)
            .expect("prepared")
            .write(b"png")
            .expect("written");
        assert!(std::fs::symlink_metadata(&link).expect("link").is_symlink());
        assert_eq!(std::fs::read(&target).expect("read"), b"png");

        // A FIFO stands for `/dev/null` (a regression must not remove the real one).
        let fifo = dir.path().join("fifo.png");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("fifo");
        drop(OutputFile::create(&fifo).expect("prepared"));
        assert!(
            std::fs::symlink_metadata(&fifo)
                .expect("fifo")
                .file_type()
                .is_fifo()
        );
    }

    #[test]
    fn a_slide_is_recognised_by_any_of_its_names() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (slide, symlink) = file_and_link(dir.path(), "a.svs", b"slide", "c.svs");
        let other = dir.path().join("b.svs");
        std::fs::write(&other, b"slide").expect("slide");
        let hard = dir.path().join("d.svs");
        std::fs::hard_link(&slide, &hard).expect("hard link");
        let slides = [slide.clone()];
        let found = |output: PathBuf| output_that_is_a_slide(&[output], &slides).is_some();
        assert!(found(slide.clone()));
        assert!(found(dir.path().join(".").join("a.svs")));
        assert!(found(symlink));
        assert!(found(hard));
        assert!(!found(other));
        assert!(!found(dir.path().join("new.png")));
    }
}
