//! Any template, input link and field values: the thumbnail name is either refused or
//! resolves to a path strictly inside the output directory.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use wsi_thumbnail::storage::location::{InputPolicy, object_name, parse_input};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\u{0}');
    let (Some(template), Some(link)) = (parts.next(), parts.next()) else {
        return;
    };
    let slide_id = parts.next().unwrap_or("");
    let id = parts.next().unwrap_or("");
    let policy = InputPolicy {
        allowed_buckets: Vec::new(),
        allow_file_inputs: true,
    };
    let Ok(input) = parse_input(link, &policy) else {
        return;
    };
    let fields = [("slide_id", slide_id), ("id", id), ("block_id", "b"), ("patient_id", "p")];
    if let Ok(name) = object_name(template, &input, &fields) {
        let root = Path::new("/srv/thumbs");
        let joined = root.join(&name);
        assert!(joined.starts_with(root), "{name:?} left the root");
        assert!(
            joined
                .components()
                .skip(root.components().count())
                .all(|c| matches!(c, Component::Normal(_))),
            "{name:?} has a non-normal component"
        );
        assert!(joined != root, "{name:?} names the root itself");
    }
});
