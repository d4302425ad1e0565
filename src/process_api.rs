//! `POST /process`: the original synchronous API, kept for callers migrating to Kafka.
//! The body is prepared exactly like a Kafka record (same validation, input policy and
//! object naming), runs through the same fetcher, decoder, resizer and uploader actors,
//! and the outcome comes back on a reply channel instead of the response topic: the
//! same ThumbnailResponse JSON, or the contract's failure record with a 4xx/5xx status.
//! Nothing is produced to Kafka and no offset is involved.
//!
//! The restart-loop guard covers it too: every call is journalled by its link (as Kafka
//! requests are by offset), and a link that was being served when the process died
//! twice is refused (`internal`, 500) instead of being served a third time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use actix::Recipient;
use tokio::sync::Semaphore;

use crate::admission::admit;
use crate::delivery::journal::Journal;
use crate::delivery::link_journal::LinkJournal;
use crate::error_kind::ErrorKind;
use crate::messages::payload::FailureRecord;
use crate::messages::pipeline::{Admitted, Failure, Fetch};
use crate::messages::ticket::{Reply, Ticket};
use crate::storage::location::InputPolicy;
use crate::telemetry::record;

/// What the route needs from the pipeline.
pub struct ProcessApi {
    /// The fetcher: the first stage after admission.
    pub fetch: Recipient<Fetch>,
    pub policy: InputPolicy,
    pub template: String,
    /// Bounds concurrent `POST /process` jobs (the Kafka path has its own budgets).
    pub permits: Arc<Semaphore>,
    /// Longest a caller waits for its thumbnail before a 504.
    pub deadline: Duration,
    sequence: AtomicI64,
    /// Links being served, kept across deaths of the process.
    journal: Option<LinkJournal>,
}

/// An HTTP answer: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl ProcessApi {
    pub fn new(
        fetch: Recipient<Fetch>,
        policy: InputPolicy,
        template: String,
        max_in_flight: usize,
        deadline: Duration,
        journal: Option<Journal>,
    ) -> Self {
        ProcessApi {
            fetch,
            policy,
            template,
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
            deadline,
            sequence: AtomicI64::new(0),
            journal: journal.map(LinkJournal::new),
        }
    }

    /// A clean shutdown: calls still open were abandoned on purpose, not killed.
    pub fn close(&self) {
        if let Some(journal) = &self.journal {
            journal.close();
        }
    }

    /// Runs one request body through the pipeline and waits for its outcome.
    pub async fn process(&self, body: &[u8]) -> Answer {
        let (reply, outcome) = Reply::channel();
        let ticket = Ticket::http(self.sequence.fetch_add(1, Ordering::Relaxed), reply);
        let span = ticket.span.clone();
        let job = match admit(ticket, body, &self.policy, &self.template) {
            Admitted::Job(job) => job,
            Admitted::Failure(f) => {
                let _in_job = span.enter();
                tracing::info!(kind = %f.kind, reason = %f.message, "POST /process refused");
                record::http_process(Err(f.kind));
                return failed(&f);
            }
        };
        // For answers the pipeline cannot give; it must not hold the reply sender, or a
        // job the pipeline dropped would look like one still running.
        let mut unanswered = Failure::of_job(&job, ErrorKind::Internal, String::new());
        unanswered.ticket = unanswered.ticket.detached();
        let Ok(_permit) = self.permits.acquire().await else {
            unanswered.message = "the /process queue is closed".into();
            return failed(&unanswered);
        };
        let link = job.request.image_bucket_link.clone();
        let begun = self.journal.as_ref().map_or(Ok(()), |j| j.begin(&link));
        if let Err(deaths) = begun {
            let _in_job = span.enter();
            unanswered.message = format!(
                "the service stopped {deaths} times while serving this link; it is not \
                 served again (check the slide, or restart the service with a fresh temp \
                 directory once it is fixed)"
            );
            tracing::error!(reason = %unanswered.message, "POST /process refused");
            record::restart_loop_broken();
            return failed(&unanswered);
        }
        self.fetch.do_send(Fetch(job));
        let answered = tokio::time::timeout(self.deadline, outcome).await;
        if let Some(journal) = &self.journal {
            journal.end(&link);
        }
        match answered {
            Ok(Ok(Ok(response))) => Answer {
                status: 200,
                body: serde_json::to_vec(&response).unwrap_or_default(),
            },
            Ok(Ok(Err(failure))) => failed(&failure),
            Ok(Err(_)) => {
                unanswered.message = "the pipeline dropped the job".into();
                failed(&unanswered)
            }
            Err(_) => {
                unanswered.kind = ErrorKind::Timeout;
                unanswered.message = "no thumbnail within the /process deadline".into();
                failed(&unanswered)
            }
        }
    }
}

fn failed(f: &Failure) -> Answer {
    let record: FailureRecord = f.record();
    Answer {
        status: status_of(f.kind),
        body: serde_json::to_vec(&record).unwrap_or_default(),
    }
}

/// The HTTP status for a failure kind: the caller's fault is a 4xx, ours or the
/// storage's a 5xx (so retrying clients and load balancers do the right thing).
pub fn status_of(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InvalidRequest => 400,
        ErrorKind::InputNotAllowed => 403,
        ErrorKind::SlideNotFound => 404,
        ErrorKind::UnsupportedFormat | ErrorKind::CorruptSlide | ErrorKind::SlideTooLarge => 422,
        ErrorKind::StorageUnavailable => 503,
        ErrorKind::Timeout => 504,
        ErrorKind::Internal => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_mistakes_are_4xx_and_ours_5xx() {
        for kind in ErrorKind::ALL {
            let status = status_of(kind);
            let callers_fault = !kind.retryable() && kind != ErrorKind::Internal;
            assert_eq!(
                (400..500).contains(&status),
                callers_fault,
                "{kind} -> {status}"
            );
        }
    }
}
