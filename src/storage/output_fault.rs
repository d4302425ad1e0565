//! Operator faults on the output: what an upload error says about the service's own
//! set-up rather than about the request.
//!
//! Why: a missing output bucket or a missing IAM role made every valid request a
//! failure record blaming the slide (`slide_not_found`, `input_not_allowed`), and sent
//! the whole stream to the dead-letter topic. These errors are the operator's: the
//! request waits (the uploader retries with backoff), `/readyz` answers 503 and the log
//! names the output, the status and the fix, until the output can be written again.

use super::error::StorageError;

/// An upload error that no request caused, with what the operator should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFault {
    /// The HTTP status when the store answered one.
    pub status: Option<u16>,
    pub fix: &'static str,
}

/// `Some` when `error`, from writing a thumbnail, is the operator's to fix. A 404 on a
/// write means the bucket is missing (an object write creates the object); 401/403 a
/// missing role; a local write failure an unwritable or full output directory; a
/// missing client a configuration without credentials. Outages (5xx, timeouts) are
/// not faults of set-up: they keep their retry budget and end as `storage_unavailable`.
pub fn output_fault(error: &StorageError) -> Option<OutputFault> {
    match error {
        StorageError::NotFound(_) => Some(OutputFault {
            status: Some(404),
            fix: "the output bucket does not exist: create it, or fix storage.output",
        }),
        StorageError::Forbidden { status, .. } => Some(OutputFault {
            status: Some(*status),
            fix: "grant the service account roles/storage.objectUser on the output bucket \
                  (roles/storage.objectCreator cannot replace an object, which a \
                  redelivered request does)",
        }),
        StorageError::Local { .. } => Some(OutputFault {
            status: None,
            fix: "make the output directory exist, writable by the service, with free space",
        }),
        StorageError::Client(_) => Some(OutputFault {
            status: None,
            fix: "configure Google Cloud credentials for the output bucket",
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_up_errors_are_operator_faults_and_outages_are_not() {
        let missing = output_fault(&StorageError::NotFound("gs://b/x.png".into())).unwrap();
        assert_eq!(missing.status, Some(404));
        assert!(missing.fix.contains("create it"));
        let denied = output_fault(&StorageError::Forbidden {
            link: "gs://b/x.png".into(),
            status: 403,
        })
        .unwrap();
        assert!(denied.fix.contains("roles/storage.objectUser"));
        assert!(output_fault(&StorageError::Timeout(std::time::Duration::from_secs(1))).is_none());
        assert!(
            output_fault(&StorageError::Unavailable {
                link: "gs://b/x.png".into(),
                message: "503".into()
            })
            .is_none()
        );
    }
}
