//! The house rules of the actor side, checked on the source so they stay true: actors
//! know each other only through the messages they send (no actor module imports
//! another; the supervisor wires them with `Recipient`s), and no function in
//! `src/actors/` is longer than 80 lines (an actor moves messages; the work lives in
//! plain modules and the stage runner).

use std::path::PathBuf;

fn actor_sources() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/actors");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 9, "the actor files were not found");
    files
}

#[test]
fn no_actor_imports_another() {
    let files = actor_sources();
    // `stage` is the runner the stages share and `mod` declares them: neither is an actor.
    let actors: Vec<&str> = files
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !["mod", "stage"].contains(name))
        .collect();
    for (name, text) in &files {
        for other in &actors {
            for path in [format!("super::{other}"), format!("actors::{other}")] {
                assert!(
                    !text.contains(&path),
                    "src/actors/{name}.rs uses {path}: hand it a Recipient of the message instead"
                );
            }
        }
    }
}

/// Lengths of the functions in `text` (a function runs from its `fn` line to the
/// closing brace at the same indentation).
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let is_fn = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) fn ",
        ]
        .iter()
        .any(|p| trimmed.starts_with(p));
        if !is_fn || trimmed.ends_with(';') {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = lines[i..].iter().position(|l| l.starts_with(&close)) {
            let name = trimmed.split('(').next().unwrap_or(trimmed).to_string();
            out.push((name, end + 1));
        }
    }
    out
}

#[test]
fn no_function_in_the_actors_is_longer_than_80_lines() {
    let mut measured = 0;
    for (name, text) in actor_sources() {
        for (function, lines) in function_lengths(&text) {
            measured += 1;
            assert!(
                lines <= 80,
                "src/actors/{name}.rs: `{function}` is {lines} lines; move its work into a plain module"
            );
        }
    }
    assert!(
        measured > 20,
        "the function scan found too little ({measured})"
    );
}

#[test]
fn the_length_scan_measures_what_it_should() {
    let text = "fn short() {\n    a();\n}\n\n    pub async fn nested(\n        x: u8,\n    ) {\n        b();\n    }\n";
    assert_eq!(
        function_lengths(text),
        vec![
            ("fn short".to_string(), 3),
            ("pub async fn nested".to_string(), 5)
        ]
    );
}

/// The service process never parses slide bytes (contract §6): the code that only moves
/// bytes (fetching, the actors, the supervisor) names no parser of slide formats. The
/// parsers run in the slide's worker, reached through `crate::planning` (the worker
/// side) and `crate::worker`. The exceptions are `isolation = "none"`, which by
/// definition decodes in the calling process (the decoder actor's in-process engine and
/// `worker/planner.rs`), and the resizer, which resizes pixels already decoded.
#[test]
fn the_service_side_names_no_parser_of_slide_bytes() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    // All of `storage/` (the planners moved out to `planning/`, the worker side).
    let service_side = ["storage", "actors", "supervisor", "process_api.rs"];
    let parsers = [
        "read_plan",
        "scan_prefix",
        "pixel_ranges",
        "build_series",
        "plan_slide",
        "TiffFile",
        "NdpiFile",
        "OpenSlide",
        "make_thumbnail",
        "crate::tiff",
        "crate::slide::",
        "jpeg_header",
    ];
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = service_side.iter().map(|e| root.join(e)).collect();
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for f in std::fs::read_dir(&path).unwrap() {
                pending.push(f.unwrap().path());
            }
        } else {
            files.push(path);
        }
    }
    assert!(files.len() > 15, "the service-side sources were not found");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Doc comments may name what they stay away from; code may not.
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let name = file.to_string_lossy().into_owned();
        let allowed: &[&str] = if name.ends_with("actors/decoder.rs") {
            &["crate::slide::", "reduce_slide"]
        } else if name.ends_with("actors/resizer.rs") {
            &["crate::slide::"]
        } else {
            &[]
        };
        for parser in parsers.iter().filter(|p| !allowed.contains(p)) {
            assert!(
                !code.contains(parser),
                "{} uses {parser}: parsing slide bytes belongs in the worker (src/planning)",
                file.display()
            );
        }
    }
}
