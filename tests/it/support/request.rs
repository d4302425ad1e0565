//! ThumbnailRequest JSON as the tests send it: one builder instead of a `json!` literal
//! in every file, so the contract's field names and a valid default are spelled once on
//! the test side. Tests about malformed input start from a valid request and break it
//! on purpose (`set` a wrong type, `without` a required field), or send raw bytes.

use std::ops::Range;

use serde_json::{Value, json};

/// The slide most requests name: the shared CMU-1-Small-Region, in the input bucket
/// `infra::stage_buckets` creates.
pub const CMU_LINK: &str = "gs://slides-in/CMU-1-Small-Region.svs";

/// Every test request's `created_on` (any valid RFC 3339 time would do).
pub const CREATED_ON: &str = "2026-02-25T10:00:00Z";

/// A valid ThumbnailRequest, changed field by field.
#[derive(Debug, Clone)]
pub struct Request(Value);

impl Request {
    /// Request `id` for CMU-1-Small-Region: slide `slide-{id}`, patient `p`, block `b`.
    pub fn new(id: impl Into<String>) -> Request {
        let id = id.into();
        let slide_id = format!("slide-{id}");
        Request(json!({
            "id": id, "created_on": CREATED_ON, "image_bucket_link": CMU_LINK,
            "patient_id": "p", "slide_id": slide_id, "block_id": "b",
        }))
    }

    pub fn slide(self, slide_id: impl Into<String>) -> Request {
        self.set("slide_id", slide_id.into())
    }

    pub fn link(self, link: impl Into<String>) -> Request {
        self.set("image_bucket_link", link.into())
    }

    pub fn patient(self, patient_id: impl Into<String>) -> Request {
        self.set("patient_id", patient_id.into())
    }

    pub fn block(self, block_id: impl Into<String>) -> Request {
        self.set("block_id", block_id.into())
    }

    /// Any field, known or not, to any JSON value (wrong types, values at and past the
    /// limits, padding).
    pub fn set(mut self, field: &str, value: impl Into<Value>) -> Request {
        self.0[field] = value.into();
        self
    }

    /// The request without `field` (a required field missing).
    pub fn without(mut self, field: &str) -> Request {
        if let Some(fields) = self.0.as_object_mut() {
            fields.remove(field);
        }
        self
    }

    /// The record value: the request as JSON bytes.
    pub fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).expect("a JSON value serialises")
    }
}

/// Requests `req-{n}` for slides `s{n}` (CMU-1-Small-Region each), keyed by slide and
/// spread round-robin over `partitions`, as `(partition, key, value)` for
/// `kafka::produce`: the steady load of the crash and outage tests.
pub fn numbered(ns: Range<usize>, partitions: i32) -> Vec<(i32, String, Vec<u8>)> {
    ns.map(|n| {
        let slide = format!("s{n}");
        let value = Request::new(format!("req-{n}")).slide(&slide).bytes();
        ((n % partitions as usize) as i32, slide, value)
    })
    .collect()
}
