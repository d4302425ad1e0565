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
