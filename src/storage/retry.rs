//! Retries for storage calls: transient failures (5xx, 429, timeouts, refused
//! connections) are retried with exponential backoff and jitter (backon), bounded by
//! attempts and by total delay; each attempt is bounded by the stage timeout. What is
//! still failing when the budget runs out becomes a retryable failure record.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::{Deserialize, Serialize};

use super::error::StorageError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per operation, the first included.
    pub max_attempts: u32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Total time spent waiting between attempts.
    pub max_total_delay_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 8,
            initial_delay_ms: 250,
            max_delay_ms: 5_000,
            max_total_delay_ms: 60_000,
        }
    }
}

/// Runs `op` until it succeeds, fails permanently, or the budget runs out; each attempt
/// is cut off after `timeout`. Returns the result and the number of attempts made.
pub async fn with_retries<T, F, Fut>(
    policy: &RetryConfig,
    timeout: Duration,
    what: &str,
    op: F,
) -> (Result<T, StorageError>, u32)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, StorageError>>,
{
    let attempts = AtomicU32::new(0);
    let attempt = || {
        attempts.fetch_add(1, Ordering::Relaxed);
        let fut = op();
        async move {
            tokio::time::timeout(timeout, fut)
                .await
                .unwrap_or_else(|_| Err(StorageError::Timeout(timeout)))
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(policy.initial_delay_ms))
        .with_max_delay(Duration::from_millis(policy.max_delay_ms))
        .with_max_times(policy.max_attempts.saturating_sub(1) as usize)
        .with_total_delay(Some(Duration::from_millis(policy.max_total_delay_ms)))
        .with_jitter();
    let result = attempt
        .retry(backoff)
        .when(|e: &StorageError| e.retryable())
        .notify(|e, wait| {
            crate::telemetry::record::retried();
            tracing::warn!(error = %e, ?wait, what, "transient storage failure; retrying");
        })
        .await;
    (result, attempts.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(max_attempts: u32) -> RetryConfig {
        RetryConfig {
            max_attempts,
            initial_delay_ms: 1,
            max_delay_ms: 2,
            max_total_delay_ms: 1_000,
        }
    }

    fn unavailable() -> StorageError {
        StorageError::Unavailable {
            link: "gs://b/o".into(),
            message: "503".into(),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let (r, attempts) = with_retries(&fast(5), Duration::from_secs(1), "t", || {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move { if n < 2 { Err(unavailable()) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
        assert_eq!(attempts, 3);
    }

    #[tokio::test]
    async fn the_budget_bounds_attempts_and_permanent_errors_are_not_retried() {
        let (r, attempts) = with_retries(&fast(3), Duration::from_secs(1), "t", || async {
            Err::<(), _>(unavailable())
        })
        .await;
        assert!(matches!(r, Err(StorageError::Unavailable { .. })));
        assert_eq!(attempts, 3);
        let (r, attempts) = with_retries(&fast(5), Duration::from_secs(1), "t", || async {
            Err::<(), _>(StorageError::NotFound("gs://b/o".into()))
        })
        .await;
        assert!(matches!(r, Err(StorageError::NotFound(_))));
        assert_eq!(attempts, 1);
    }

    #[tokio::test]
    async fn a_slow_attempt_times_out_as_a_retryable_timeout() {
        let (r, attempts) = with_retries(&fast(2), Duration::from_millis(10), "t", || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
        .await;
        assert!(matches!(r, Err(StorageError::Timeout(_))));
        assert_eq!(attempts, 2);
    }
}
