//! Where slides come from and where thumbnails go: parsing request links and the
//! configured output, and naming thumbnail objects so that no request can write outside
//! the output location.

use std::path::{Component, Path, PathBuf};

use percent_encoding::percent_decode_str;

use crate::error_kind::ErrorKind;
use crate::naming::SeriesIdentity;

/// A slide to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputLink {
    Gcs { bucket: String, object: String },
    File { path: PathBuf },
}

impl InputLink {
    /// The object or file name, used for the thumbnail's `{stem}`.
    pub fn file_name(&self) -> &str {
        match self {
            InputLink::Gcs { object, .. } => object.rsplit('/').next().unwrap_or(object),
            InputLink::File { path } => path.file_name().and_then(|n| n.to_str()).unwrap_or(""),
        }
    }

    /// The name of the folder holding the object or file: the last segment of its
    /// prefix, or the bucket's name for an object at the bucket's root.
    pub fn folder_name(&self) -> &str {
        match self {
            InputLink::Gcs { bucket, object } => object
                .rsplit_once('/')
                .and_then(|(prefix, _)| prefix.rsplit('/').next())
                .filter(|folder| !folder.is_empty())
                .unwrap_or(bucket),
            InputLink::File { path } => path
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or("slide"),
        }
    }
}

/// The thumbnail's `{stem}`: the file stem of the linked object, except for a DICOM
/// series (contract §1), which is named after its folder, plus `_<SeriesInstanceUID>`
/// where the folder holds more than one series.
pub fn slide_stem(input: &InputLink, series: Option<&SeriesIdentity>) -> String {
    match series {
        Some(series) if series.folder_shared => format!("{}_{}", input.folder_name(), series.uid),
        Some(_) => input.folder_name().to_string(),
        None => {
            let file_name = input.file_name();
            Path::new(file_name)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or(file_name)
                .to_string()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LinkError {
    pub kind: ErrorKind,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> LinkError {
    LinkError {
        kind: ErrorKind::InvalidRequest,
        message: message.into(),
    }
}

/// Which inputs requests may name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputPolicy {
    /// Buckets requests may read; empty means any bucket.
    #[serde(default)]
    pub allowed_buckets: Vec<String>,
    /// Whether `file://` links are served (local runs and tests only).
    #[serde(default)]
    pub allow_file_inputs: bool,
}

/// Bucket names per GCS rules (3-222 chars of lowercase letters, digits, `-_.`).
fn valid_bucket(name: &str) -> bool {
    (3..=222).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

/// Parses `gs://BUCKET/OBJECT`, `https://storage.googleapis.com/BUCKET/OBJECT`
/// (percent-encoded names allowed) or, when the policy allows, `file:///ABS/PATH`.
pub fn parse_input(link: &str, policy: &InputPolicy) -> Result<InputLink, LinkError> {
    let link = link.trim();
    let (bucket, object) = if let Some(rest) = link.strip_prefix("gs://") {
        split_bucket(rest)?
    } else if let Some(rest) = link.strip_prefix("https://storage.googleapis.com/") {
        let rest = rest.split(['?', '#']).next().unwrap_or(rest);
        let (bucket, object) = split_bucket(rest)?;
        let object = percent_decode_str(&object)
            .decode_utf8()
            .map_err(|_| invalid("the object name is not valid percent-encoded UTF-8"))?
            .into_owned();
        (bucket, object)
    } else if let Some(path) = link.strip_prefix("file://") {
        if !policy.allow_file_inputs {
            return Err(LinkError {
                kind: ErrorKind::InputNotAllowed,
                message: "file:// inputs are not allowed here (storage.allow_file_inputs)".into(),
            });
        }
        let path = PathBuf::from(
            percent_decode_str(path)
                .decode_utf8()
                .map_err(|_| invalid("the path is not valid percent-encoded UTF-8"))?
                .into_owned(),
        );
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return Err(invalid("file:// links must be absolute paths without `..`"));
        }
        return Ok(InputLink::File { path });
    } else {
        return Err(invalid(format!(
            "unsupported link `{}`: use gs://BUCKET/OBJECT or https://storage.googleapis.com/BUCKET/OBJECT",
            link.chars().take(80).collect::<String>()
        )));
    };
    if object.is_empty() || object.ends_with('/') {
        return Err(invalid("the link names a bucket or folder, not an object"));
    }
    if object.chars().any(char::is_control) {
        return Err(invalid("the object name contains control characters"));
    }
    if object.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(invalid("the object name has `.` or `..` segments"));
    }
    if !policy.allowed_buckets.is_empty() && !policy.allowed_buckets.contains(&bucket) {
        return Err(LinkError {
            kind: ErrorKind::InputNotAllowed,
            message: format!("bucket `{bucket}` is not in storage.allowed_buckets"),
        });
    }
    Ok(InputLink::Gcs { bucket, object })
}

fn split_bucket(rest: &str) -> Result<(String, String), LinkError> {
    let (bucket, object) = rest
        .split_once('/')
        .ok_or_else(|| invalid("the link has no object name after the bucket"))?;
    if !valid_bucket(bucket) {
        return Err(invalid(format!("`{bucket}` is not a valid bucket name")));
    }
    Ok((bucket.to_string(), object.to_string()))
}

/// Where thumbnails are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputLocation {
    Gcs { bucket: String, prefix: String },
    Dir { path: PathBuf },
}

/// Parses `gs://BUCKET/PREFIX/`, a bare bucket name (meaning `gs://NAME/`), or
/// `file:///ABS/DIR/`.
pub fn parse_output(spec: &str) -> Result<OutputLocation, String> {
    let spec = spec.trim();
    if let Some(dir) = spec.strip_prefix("file://") {
        let path = PathBuf::from(dir);
        if !path.is_absolute() {
            return Err(format!(
                "`{spec}`: file:// outputs need an absolute path (file:///dir/)"
            ));
        }
        return Ok(OutputLocation::Dir { path });
    }
    let rest = spec.strip_prefix("gs://").unwrap_or(spec);
    if rest.contains("://") {
        return Err(format!("`{spec}`: use gs://BUCKET/PREFIX/ or file:///DIR/"));
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if !valid_bucket(bucket) {
        return Err(format!("`{bucket}` is not a valid bucket name"));
    }
    let mut prefix = prefix.trim_matches('/').to_string();
    if !prefix.is_empty() {
        prefix.push('/');
    }
    Ok(OutputLocation::Gcs {
        bucket: bucket.to_string(),
        prefix,
    })
}

impl OutputLocation {
    /// The link to report for an object name produced by [`object_name`].
    pub fn link(&self, name: &str) -> String {
        match self {
            OutputLocation::Gcs { bucket, prefix } => format!("gs://{bucket}/{prefix}{name}"),
            OutputLocation::Dir { path } => format!("file://{}", path.join(name).display()),
        }
    }
}

/// Renders the object-name template (`{stem}`, `{name}`, `{slide_id}`, `{id}`,
/// `{block_id}`, `{patient_id}`) and checks the result stays inside the output location.
///
/// Substituted values have `/` and `\` replaced by `_`, so a request can never add path
/// segments; the rendered name must then be a plain relative path with no empty, `.` or
/// `..` segments, whatever the template says.
pub fn object_name(
    template: &str,
    input: &InputLink,
    fields: &[(&str, &str)],
) -> Result<String, LinkError> {
    slide_object_name(template, input, fields, None)
}

/// [`object_name`] for a slide whose `{stem}` its series decides ([`slide_stem`]).
pub fn slide_object_name(
    template: &str,
    input: &InputLink,
    fields: &[(&str, &str)],
    series: Option<&SeriesIdentity>,
) -> Result<String, LinkError> {
    let file_name = input.file_name();
    let stem = slide_stem(input, series);
    let clean = |v: &str| v.replace(['/', '\\'], "_");
    let mut name = template
        .replace("{stem}", &clean(&stem))
        .replace("{name}", &clean(file_name));
    for (key, value) in fields {
        name = name.replace(&format!("{{{key}}}"), &clean(value));
    }
    check_relative_name(&name)?;
    Ok(name)
}

/// A name that stays under its root: relative, no empty, `.` or `..` segments, no
/// control characters, at most 1024 bytes (the GCS limit).
pub fn check_relative_name(name: &str) -> Result<(), LinkError> {
    let bad = name.is_empty()
        || name.len() > 1024
        || name.starts_with('/')
        || name.chars().any(char::is_control)
        || name
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        return Err(invalid(format!(
            "the thumbnail name `{}` would leave the output location",
            name.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any() -> InputPolicy {
        InputPolicy::default()
    }

    #[test]
    fn a_dicom_series_is_named_after_its_folder_and_its_uid_where_the_folder_is_shared() {
        let link = |object: &str| InputLink::Gcs {
            bucket: "slides-in".into(),
            object: object.into(),
        };
        let one = SeriesIdentity {
            uid: "1.2.3".into(),
            folder_shared: false,
        };
        let shared = SeriesIdentity {
            uid: "1.2.3".into(),
            folder_shared: true,
        };
        let input = link("a/case-17/level-0-frames-0-30.dcm");
        let name = |series| slide_object_name("{stem}_thumbnail.png", &input, &[], series);
        assert_eq!(name(None).unwrap(), "level-0-frames-0-30_thumbnail.png");
        assert_eq!(name(Some(&one)).unwrap(), "case-17_thumbnail.png");
        assert_eq!(name(Some(&shared)).unwrap(), "case-17_1.2.3_thumbnail.png");
        // An instance at the bucket's root: the bucket names the folder.
        assert_eq!(slide_stem(&link("x.dcm"), Some(&one)), "slides-in");
        let file = InputLink::File {
            path: "/data/case-9/x.dcm".into(),
        };
        assert_eq!(slide_stem(&file, Some(&one)), "case-9");
        // A UID is the requester's bytes: it cannot add path segments either.
        let hostile = SeriesIdentity {
            uid: "../../etc".into(),
            folder_shared: true,
        };
        let named = slide_object_name("{stem}.png", &input, &[], Some(&hostile)).unwrap();
        assert_eq!(named, "case-17_.._.._etc.png");
    }

    #[test]
    fn gs_and_https_links_parse_to_bucket_and_object() {
        let gs = parse_input("gs://my-wsi-bucket/slides/slide_001.svs", &any()).unwrap();
        assert_eq!(
            gs,
            InputLink::Gcs {
                bucket: "my-wsi-bucket".into(),
                object: "slides/slide_001.svs".into()
            }
        );
        let https = parse_input(
            "https://storage.googleapis.com/my-wsi-bucket/slides/slide%20001.svs",
            &any(),
        )
        .unwrap();
        assert_eq!(https.file_name(), "slide 001.svs");
    }

    #[test]
    fn bad_links_are_invalid_and_disallowed_ones_not_allowed() {
        for link in [
            "s3://b/o",
            "gs://",
            "gs://bucket",
            "gs://bucket/",
            "gs://UPPER/o",
            "ftp://x/y",
        ] {
            let e = parse_input(link, &any()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidRequest, "{link}");
        }
        let policy = InputPolicy {
            allowed_buckets: vec!["ok-bucket".into()],
            allow_file_inputs: false,
        };
        assert_eq!(
            parse_input("gs://other-bucket/x.svs", &policy)
                .unwrap_err()
                .kind,
            ErrorKind::InputNotAllowed
        );
        assert_eq!(
            parse_input("file:///tmp/x.svs", &policy).unwrap_err().kind,
            ErrorKind::InputNotAllowed
        );
        let files = InputPolicy {
            allow_file_inputs: true,
            ..InputPolicy::default()
        };
        assert!(parse_input("file:///tmp/x.svs", &files).is_ok());
        assert!(parse_input("file:///tmp/../etc/passwd", &files).is_err());
    }

    #[test]
    fn outputs_parse_with_bare_bucket_and_file_dirs() {
        assert_eq!(
            parse_output("thumbs").unwrap(),
            OutputLocation::Gcs {
                bucket: "thumbs".into(),
                prefix: "".into()
            }
        );
        let out = parse_output("gs://thumbs/a/b").unwrap();
        assert_eq!(out.link("x.png"), "gs://thumbs/a/b/x.png");
        assert_eq!(
            parse_output("file:///var/out/").unwrap(),
            OutputLocation::Dir {
                path: "/var/out/".into()
            }
        );
        assert!(parse_output("file://relative").is_err());
    }

    #[test]
    fn default_name_is_stem_plus_suffix() {
        let input = parse_input("gs://b1b/slides/slide_001.svs", &any()).unwrap();
        assert_eq!(
            object_name("{stem}_thumbnail.png", &input, &[]).unwrap(),
            "slide_001_thumbnail.png"
        );
        let name = object_name(
            "{slide_id}/{stem}.png",
            &input,
            &[("slide_id", "../../etc")],
        )
        .unwrap();
        assert_eq!(name, ".._.._etc/slide_001.png");
        assert!(object_name("{slide_id}", &input, &[("slide_id", "..")]).is_err());
        assert!(object_name("../{stem}", &input, &[]).is_err());
    }

    proptest! {
        #[test]
        fn no_request_value_escapes_the_output_location(
            object in "[a-z./\\\\]{0,12}[a-z]{1,4}(\\.[a-z]{1,3})?",
            slide in "\\PC{0,20}",
            template in prop::sample::select(vec!["{stem}_thumbnail.png", "{slide_id}/{stem}.png", "{slide_id}", "x/{name}"]),
        ) {
            let input = InputLink::Gcs { bucket: "b".into(), object };
            if let Ok(name) = object_name(template, &input, &[("slide_id", &slide)]) {
                let root = Path::new("/out");
                let joined = root.join(&name);
                prop_assert!(!name.starts_with('/'));
                prop_assert!(joined.components().all(|c| c != Component::ParentDir));
                prop_assert!(joined.starts_with(root));
            }
        }
    }
}
