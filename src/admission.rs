//! Admission: turning a request (a Kafka record's value or a `POST /process` body)
//! into a job or a failure: parse and validate the request, check the input link
//! against the policy, and name the thumbnail.

use crate::error_kind::ErrorKind;
use crate::messages::payload::{ThumbnailRequest, parse_request};
use crate::messages::pipeline::{Admitted, Failure, Job};
use crate::messages::ticket::Ticket;
use crate::naming::SeriesIdentity;
use crate::storage::location::{
    InputPolicy, LinkError, object_name, parse_input, slide_object_name,
};

pub fn admit(ticket: Ticket, value: &[u8], policy: &InputPolicy, template: &str) -> Admitted {
    let request = match parse_request(value) {
        Ok(r) => r,
        Err(e) => {
            ticket.identify(e.id.as_deref(), e.slide_id.as_deref());
            return Admitted::Failure(Failure {
                ticket,
                id: e.id,
                slide_id: e.slide_id,
                request: e.object,
                raw_value: value.to_vec(),
                kind: ErrorKind::InvalidRequest,
                retryable: false,
                message: e.message,
                attempts: 1,
            });
        }
    };
    ticket.identify(Some(&request.id), Some(&request.slide_id));
    let fail = |ticket: Ticket, kind: ErrorKind, message: String| {
        Admitted::Failure(Failure {
            ticket,
            id: Some(request.id.clone()),
            slide_id: Some(request.slide_id.clone()),
            request: serde_json::to_value(&request).ok(),
            raw_value: value.to_vec(),
            kind,
            retryable: kind.retryable(),
            message,
            attempts: 1,
        })
    };
    let input = match parse_input(&request.image_bucket_link, policy) {
        Ok(i) => i,
        Err(e) => return fail(ticket, e.kind, e.message),
    };
    let name = match object_name(template, &input, &fields(&request)) {
        Ok(n) => n,
        Err(e) => return fail(ticket, e.kind, e.message),
    };
    Admitted::Job(Job {
        ticket,
        request,
        input,
        object_name: name,
        template: template.into(),
    })
}

/// The template's fields from the request.
fn fields(request: &ThumbnailRequest) -> [(&'static str, &str); 4] {
    [
        ("slide_id", request.slide_id.as_str()),
        ("id", request.id.as_str()),
        ("block_id", request.block_id.as_str()),
        ("patient_id", request.patient_id.as_str()),
    ]
}

/// Renames a DICOM slide's thumbnail after its series (contract §1: `{stem}` is the
/// series' folder, plus its SeriesInstanceUID where the folder holds several), once the
/// worker has read which series the link belongs to. A name that would leave the
/// output is the requester's fault, as at admission.
pub fn name_after_series(job: &mut Job, series: &SeriesIdentity) -> Result<(), LinkError> {
    job.object_name = slide_object_name(
        &job.template,
        &job.input,
        &fields(&job.request),
        Some(series),
    )?;
    Ok(())
}
