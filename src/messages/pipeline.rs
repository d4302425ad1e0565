//! Messages between the pipeline's actors, in the order a request meets them:
//! Admit (reader to tracker), Fetch, Decode, Resize, Upload, Publish, then Completed
//! (publisher to tracker). Fail ends a job early from any stage.

use actix::Message;
use bytes::Bytes;
use serde_json::Value;

use super::payload::{ErrorInfo, FailureRecord, ThumbnailRequest, ThumbnailResponse};
use super::ticket::Ticket;
use crate::error_kind::ErrorKind;
use crate::slide::{Reduced, SlideMetadata, Thumbnail};
use crate::storage::fetch::LocalSlide;
use crate::storage::location::InputLink;
use crate::worker::SlideWorker;

/// A validated request on its way through the pipeline.
#[derive(Debug, Clone)]
pub struct Job {
    pub ticket: Ticket,
    pub request: ThumbnailRequest,
    pub input: InputLink,
    /// The thumbnail's object name, already checked to stay inside the output.
    pub object_name: String,
    /// The object-name template it was rendered from: a DICOM slide is renamed after
    /// its series once the worker has read it (`admission::name_after_series`).
    pub template: std::sync::Arc<str>,
}

/// A request that cannot be served, with everything its failure record needs.
#[derive(Debug, Clone)]
pub struct Failure {
    pub ticket: Ticket,
    pub id: Option<String>,
    pub slide_id: Option<String>,
    pub request: Option<Value>,
    pub raw_value: Vec<u8>,
    pub kind: ErrorKind,
    /// Whether the same request may succeed later; usually the kind's own answer, but
    /// a decode past its deadline is a `timeout` that would only loop again.
    pub retryable: bool,
    pub message: String,
    pub attempts: u32,
}

impl Failure {
    /// A failure of a valid job at some stage.
    pub fn of_job(job: &Job, kind: ErrorKind, message: String) -> Failure {
        Failure {
            ticket: job.ticket.clone(),
            id: Some(job.request.id.clone()),
            slide_id: Some(job.request.slide_id.clone()),
            request: serde_json::to_value(&job.request).ok(),
            raw_value: Vec::new(),
            kind,
            retryable: kind.retryable(),
            message,
            attempts: 1,
        }
    }

    /// The contract's failure record for this failure (the dead-letter value, and the
    /// body of a failed `POST /process`).
    pub fn record(&self) -> FailureRecord {
        FailureRecord::new(
            self.id.clone(),
            self.slide_id.clone(),
            self.request.clone(),
            &self.raw_value,
            ErrorInfo {
                kind: self.kind,
                message: self.message.clone(),
                retryable: self.retryable,
            },
            self.attempts,
            self.ticket.source(),
        )
    }
}

/// Either a job to run or a failure to record; both occupy their offset until done.
#[derive(Debug)]
pub enum Admitted {
    Job(Job),
    Failure(Failure),
}

impl Admitted {
    pub fn ticket(&self) -> &Ticket {
        match self {
            Admitted::Job(j) => &j.ticket,
            Admitted::Failure(f) => &f.ticket,
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Admit(pub Admitted);

#[derive(Message)]
#[rtype(result = "()")]
pub struct Fetch(pub Job);

#[derive(Message)]
#[rtype(result = "()")]
pub struct Decode {
    pub job: Job,
    pub slide: LocalSlide,
    /// The worker process that planned the slide's read, which decodes it too; none
    /// when no planning was needed (a local file, a whole download).
    pub worker: Option<SlideWorker>,
}

/// What the decoder pool hands the resizer: a reduced level still to resize and
/// encode (in-process decoding), or a finished thumbnail (a worker process does all
/// the CPU work of a slide, so that only a PNG crosses the pipe).
pub enum Decoded {
    Reduced(Reduced),
    Finished(Thumbnail),
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Resize {
    pub job: Job,
    pub decoded: Decoded,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Upload {
    pub job: Job,
    pub png: Bytes,
    pub metadata: SlideMetadata,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub job: Job,
    pub response: ThumbnailResponse,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Fail(pub Failure);

/// The response or failure record of `ticket` is acknowledged by the broker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Completed {
    pub ticket: Ticket,
}
