//! The contract's Kafka payloads: `ThumbnailRequest` in, `ThumbnailResponse` out, and
//! the failure record for the dead-letter topic, with request validation.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error_kind::ErrorKind;
use crate::slide::SlideMetadata;

/// Longest accepted message value (the contract's limit): anything longer is refused
/// before it is parsed.
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// Longest accepted `image_bucket_link` (GCS object names are at most 1024 bytes, so
/// 4 KiB leaves room for percent-encoding and the bucket).
pub const MAX_LINK_LEN: usize = 4096;
/// Longest accepted value of any other request field: ids are short in practice, and
/// a bound keeps logs, keys, object names and the echoed response small enough for
/// any broker.
pub const MAX_FIELD_LEN: usize = 1024;
/// A failure record always stays under this many bytes (the contract's bound).
pub const MAX_FAILURE_RECORD_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailRequest {
    pub id: String,
    pub created_on: String,
    pub image_bucket_link: String,
    pub patient_id: String,
    pub slide_id: String,
    pub block_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThumbnailResponse {
    pub id: String,
    pub thumbnail_image_link: String,
    pub patient_id: String,
    pub slide_id: String,
    pub metadata: SlideMetadata,
    pub block_id: String,
}

impl ThumbnailResponse {
    pub fn new(request: &ThumbnailRequest, link: String, metadata: SlideMetadata) -> Self {
        ThumbnailResponse {
            id: request.id.clone(),
            thumbnail_image_link: link,
            patient_id: request.patient_id.clone(),
            slide_id: request.slide_id.clone(),
            metadata,
            block_id: request.block_id.clone(),
        }
    }
}

/// A request that could not be parsed or validated.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct InvalidRequest {
    pub message: String,
    /// The value as a JSON object, when it was one (the failure record echoes it).
    pub object: Option<Value>,
    pub id: Option<String>,
    pub slide_id: Option<String>,
}

/// Parses and validates a message value. Unknown fields are ignored.
pub fn parse_request(value: &[u8]) -> Result<ThumbnailRequest, InvalidRequest> {
    if value.len() > MAX_VALUE_LEN {
        return Err(InvalidRequest {
            message: format!(
                "the message value is {} bytes long, more than the limit of {MAX_VALUE_LEN}",
                value.len()
            ),
            object: None,
            id: None,
            slide_id: None,
        });
    }
    let parsed: Value = serde_json::from_slice(value).map_err(|e| InvalidRequest {
        message: format!("the value is not JSON: {e}"),
        object: None,
        id: None,
        slide_id: None,
    })?;
    let Value::Object(map) = &parsed else {
        return Err(InvalidRequest {
            message: "the value is not a JSON object".into(),
            object: None,
            id: None,
            slide_id: None,
        });
    };
    let text = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_string);
    let fail = |message: String| InvalidRequest {
        message,
        object: Some(parsed.clone()),
        id: text("id"),
        slide_id: text("slide_id"),
    };
    let request: ThumbnailRequest =
        serde_json::from_value(parsed.clone()).map_err(|e| fail(e.to_string()))?;
    for (name, value) in [
        ("id", &request.id),
        ("created_on", &request.created_on),
        ("image_bucket_link", &request.image_bucket_link),
        ("patient_id", &request.patient_id),
        ("slide_id", &request.slide_id),
        ("block_id", &request.block_id),
    ] {
        if value.trim().is_empty() {
            return Err(fail(format!("field `{name}` is empty")));
        }
        let limit = if name == "image_bucket_link" {
            MAX_LINK_LEN
        } else {
            MAX_FIELD_LEN
        };
        if value.len() > limit {
            return Err(fail(format!(
                "field `{name}` is {} bytes long, more than the limit of {limit}",
                value.len()
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(fail(format!("field `{name}` contains control characters")));
        }
    }
    OffsetDateTime::parse(&request.created_on, &Rfc3339).map_err(|e| {
        fail(format!(
            "field `created_on` is not an RFC 3339 timestamp: {e}"
        ))
    })?;
    Ok(request)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub kind: ErrorKind,
    pub message: String,
    pub retryable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCoordinates {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One failure record per request that cannot be served (dead-letter topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub id: Option<String>,
    pub slide_id: Option<String>,
    pub request: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw_value: Option<String>,
    pub error: ErrorInfo,
    pub attempts: u32,
    pub source: SourceCoordinates,
    pub failed_at: String,
    /// Set when `request`, `raw_value` or the ids were cut to keep the record small.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub truncated: bool,
}

impl FailureRecord {
    /// `request` is the value as a JSON object when it was one; otherwise the raw value
    /// is carried as (lossy) text instead.
    pub fn new(
        id: Option<String>,
        slide_id: Option<String>,
        request: Option<Value>,
        raw_value: &[u8],
        error: ErrorInfo,
        attempts: u32,
        source: SourceCoordinates,
    ) -> FailureRecord {
        let raw_value = match request {
            Some(_) => None,
            None => Some(String::from_utf8_lossy(raw_value).into_owned()),
        };
        FailureRecord {
            id,
            slide_id,
            request,
            raw_value,
            error,
            attempts,
            source,
            failed_at: now_rfc3339(),
            truncated: false,
        }
    }

    /// The record as bytes of at most `limit`, cutting what the request echoed (ids,
    /// `request`, `raw_value`, then the message) and marking it `truncated`. A request
    /// big enough to be refused must not make its own failure record refused too.
    pub fn to_bytes_within(&self, limit: usize) -> Vec<u8> {
        let encode = |r: &FailureRecord| serde_json::to_vec(r).unwrap_or_default();
        let whole = encode(self);
        if whole.len() <= limit {
            return whole;
        }
        let mut cut = self.clone();
        cut.truncated = true;
        // Every echoed string at most 256 bytes: what a reader needs to find the request.
        for keep in [256, 64, 0] {
            cut.id = self.id.as_deref().map(|v| prefix(v, keep.max(64)));
            cut.slide_id = self.slide_id.as_deref().map(|v| prefix(v, keep.max(64)));
            cut.request = self.request.as_ref().map(|v| shorten(v, keep));
            cut.raw_value = self.raw_value.as_deref().map(|v| prefix(v, keep * 8));
            let bytes = encode(&cut);
            if bytes.len() <= limit {
                return bytes;
            }
        }
        cut.request = None;
        cut.raw_value = None;
        cut.error.message = prefix(&self.error.message, 1024);
        encode(&cut)
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn prefix(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A copy of a JSON value with every string cut to `max` bytes and at most 64 keys or
/// items per level (a hostile request can have thousands).
fn shorten(value: &Value, max: usize) -> Value {
    match value {
        Value::String(s) => Value::String(prefix(s, max)),
        Value::Object(map) => Value::Object(
            map.iter()
                .take(64)
                .map(|(k, v)| (prefix(k, max.max(32)), shorten(v, max)))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().take(64).map(|v| shorten(v, max)).collect())
        }
        other => other.clone(),
    }
}

pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"abc123","created_on":"2026-02-25T10:00:00Z",
        "image_bucket_link":"gs://my-wsi-bucket/slides/slide_001.svs","patient_id":"patient-456",
        "slide_id":"slide-001","block_id":"block-A","extra":"ignored"}"#;

    #[test]
    fn contract_example_parses_and_ignores_unknown_fields() {
        let r = parse_request(GOOD.as_bytes()).unwrap();
        assert_eq!(r.slide_id, "slide-001");
        assert_eq!(
            r.image_bucket_link,
            "gs://my-wsi-bucket/slides/slide_001.svs"
        );
    }

    #[test]
    fn invalid_values_say_why_and_keep_what_is_known() {
        let e = parse_request(b"not json").unwrap_err();
        assert!(e.message.contains("not JSON") && e.object.is_none());
        let e = parse_request(b"[1,2]").unwrap_err();
        assert!(e.message.contains("not a JSON object"));
        let e = parse_request(br#"{"id":"x","slide_id":"s"}"#).unwrap_err();
        assert!(e.message.contains("missing field"), "{}", e.message);
        assert_eq!(
            (e.id.as_deref(), e.slide_id.as_deref()),
            (Some("x"), Some("s"))
        );
        let bad_time = GOOD.replace("2026-02-25T10:00:00Z", "yesterday");
        assert!(
            parse_request(bad_time.as_bytes())
                .unwrap_err()
                .message
                .contains("created_on")
        );
        let empty = GOOD.replace("\"block-A\"", "\"  \"");
        assert!(
            parse_request(empty.as_bytes())
                .unwrap_err()
                .message
                .contains("block_id")
        );
        let wrong_type = GOOD.replace("\"patient-456\"", "456");
        assert!(parse_request(wrong_type.as_bytes()).is_err());
        let at_limit = GOOD.replace("abc123", &"x".repeat(MAX_FIELD_LEN));
        assert!(parse_request(at_limit.as_bytes()).is_ok());
        let huge = GOOD.replace("abc123", &"x".repeat(MAX_FIELD_LEN + 1));
        assert!(
            parse_request(huge.as_bytes())
                .unwrap_err()
                .message
                .contains("long")
        );
    }

    #[test]
    fn failure_record_carries_raw_value_only_without_request_object() {
        let error = ErrorInfo {
            kind: ErrorKind::InvalidRequest,
            message: "m".into(),
            retryable: false,
        };
        let source = SourceCoordinates {
            topic: "t".into(),
            partition: 3,
            offset: 1234,
        };
        let r = FailureRecord::new(
            None,
            None,
            None,
            b"\xffoops",
            error.clone(),
            1,
            source.clone(),
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["raw_value"], "\u{fffd}oops");
        assert!(json["request"].is_null() && json["id"].is_null());
        assert_eq!(json["error"]["kind"], "invalid_request");
        let r = FailureRecord::new(
            None,
            None,
            Some(serde_json::json!({"a":1})),
            b"{}",
            error,
            1,
            source,
        );
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("raw_value").is_none());
        assert_eq!(json["source"]["offset"], 1234);
    }

    #[test]
    fn each_limit_admits_its_length_and_refuses_one_byte_more() {
        let link = |n: usize| {
            let prefix = "gs://my-wsi-bucket/";
            let name = "a".repeat(n - prefix.len() - 4);
            GOOD.replace(
                "gs://my-wsi-bucket/slides/slide_001.svs",
                &format!("{prefix}{name}.svs"),
            )
        };
        assert!(parse_request(link(MAX_LINK_LEN).as_bytes()).is_ok());
        let e = parse_request(link(MAX_LINK_LEN + 1).as_bytes()).unwrap_err();
        assert!(e.message.contains("image_bucket_link"), "{}", e.message);
        for field in ["patient-456", "slide-001", "block-A"] {
            let at = GOOD.replace(field, &"p".repeat(MAX_FIELD_LEN));
            assert!(parse_request(at.as_bytes()).is_ok(), "{field}");
            let over = GOOD.replace(field, &"p".repeat(MAX_FIELD_LEN + 1));
            assert!(parse_request(over.as_bytes()).is_err(), "{field}");
        }
        let padded = |n: usize| GOOD.replacen('{', &format!("{{\"pad\":\"{}\",", "z".repeat(n)), 1);
        let base = padded(0).len();
        let exact = padded(MAX_VALUE_LEN - base);
        assert_eq!(exact.len(), MAX_VALUE_LEN);
        assert!(parse_request(exact.as_bytes()).is_ok());
        let over = padded(MAX_VALUE_LEN - base + 1);
        let e = parse_request(over.as_bytes()).unwrap_err();
        assert!(e.message.contains("message value"), "{}", e.message);
    }

    #[test]
    fn a_failure_record_of_a_huge_request_is_cut_to_fit() {
        let huge_id = "i".repeat(500_000);
        let request =
            serde_json::json!({"id": huge_id, "slide_id": "s", "blob": "b".repeat(100_000)});
        let r = FailureRecord::new(
            Some(huge_id.clone()),
            Some("s".into()),
            Some(request),
            b"",
            ErrorInfo {
                kind: ErrorKind::InvalidRequest,
                message: "field `id` is too long".into(),
                retryable: false,
            },
            1,
            SourceCoordinates {
                topic: "t".into(),
                partition: 0,
                offset: 7,
            },
        );
        let bytes = r.to_bytes_within(MAX_FAILURE_RECORD_LEN);
        assert!(
            bytes.len() <= MAX_FAILURE_RECORD_LEN,
            "{} bytes",
            bytes.len()
        );
        let json: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["truncated"], true);
        assert_eq!(json["slide_id"], "s");
        assert_eq!(json["error"]["kind"], "invalid_request");
        assert_eq!(json["source"]["offset"], 7);
        assert!(json["id"].as_str().unwrap().starts_with("iii"));

        let mut small = r.clone();
        small.id = Some("x".into());
        small.request = None;
        let json: Value =
            serde_json::from_slice(&small.to_bytes_within(MAX_FAILURE_RECORD_LEN)).unwrap();
        assert!(
            json.get("truncated").is_none(),
            "a small record is not marked"
        );
    }
}
