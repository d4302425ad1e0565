//! The output's preflight and periodic check (issue 21): the service writes a probe
//! object at start and every minute, so that a missing output bucket or IAM role turns
//! readiness off and is named in the log before any request meets it, and readiness
//! comes back once the output can be written. Requests that meet the fault meanwhile
//! wait in the uploader; none becomes a failure record.

use std::sync::Arc;
use std::time::Duration;

use crate::actors::uploader::report_output_fault;
use crate::health::Health;
use crate::shutdown::Shutdown;
use crate::storage::output::OutputSink;
use crate::storage::output_fault::output_fault;

/// Between checks while the output can be written.
const HEALTHY_INTERVAL: Duration = Duration::from_secs(60);
/// Between checks while it cannot (and after a check that could not reach storage).
const BLOCKED_INTERVAL: Duration = Duration::from_secs(5);
/// Longest one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks the output until the service drains.
pub async fn watch_output(sink: Arc<OutputSink>, health: Arc<Health>, shutdown: Shutdown) {
    while !shutdown.is_draining() {
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, sink.probe()).await;
        let wait = match outcome {
            Ok(Ok(())) => {
                if health.is_output_blocked() {
                    tracing::info!(output = %sink.describe(), "the output can be written again");
                }
                health.set_output_blocked(false);
                HEALTHY_INTERVAL
            }
            Ok(Err(error)) => match output_fault(&error) {
                Some(fault) => {
                    health.set_output_blocked(true);
                    report_output_fault(&sink.describe(), &fault, &error);
                    BLOCKED_INTERVAL
                }
                // An outage is not the operator's set-up: uploads keep their retries.
                None => {
                    tracing::warn!(output = %sink.describe(), %error, "the output check could not reach storage");
                    BLOCKED_INTERVAL
                }
            },
            Err(_) => {
                tracing::warn!(output = %sink.describe(), "the output check timed out");
                BLOCKED_INTERVAL
            }
        };
        tokio::time::sleep(wait).await;
    }
}
