//! SASL/OAUTHBEARER tokens for Google Cloud Managed Service for Apache Kafka, from
//! Application Default Credentials (google-cloud-auth): a service-account key file,
//! workload identity on GKE, the metadata server on Cloud Run and GCE.
//!
//! The cluster accepts the shape Google's own client libraries send: a JWT-like
//! `header.claims.access_token`, each part base64url, where the header says
//! `"alg": "GOOG_OAUTH2_TOKEN"`, the claims name the principal (the service account's
//! email) and the third part is the OAuth2 access token itself. librdkafka asks for a
//! token through its refresh event (at 80% of the lifetime we give it); tokens never
//! reach a log line.

use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use google_cloud_auth::credentials::{AccessTokenCredentials, Builder};
use rdkafka::ClientContext;
use rdkafka::client::OAuthToken;

/// How long librdkafka may use a token before it asks again. google-cloud-auth caches
/// the access token and refreshes it before it expires, so asking often is cheap.
const TOKEN_LIFETIME: Duration = Duration::from_secs(600);
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const METADATA_EMAIL: &str = "/computeMetadata/v1/instance/service-accounts/default/email";
/// How long a new pod waits for the metadata server: on GKE it answers a few seconds
/// after the pod starts (workload identity's server is per node and warms up), and
/// one failed call used to stop the service at start.
const METADATA_PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error(
        "no Google credentials for kafka.oauth = \"google\": {0}; set \
         GOOGLE_APPLICATION_CREDENTIALS, run on GKE/Cloud Run/GCE, or use another \
         sasl.mechanism"
    )]
    Credentials(String),
    #[error(
        "cannot tell which service account the Kafka token is for: {0}; set \
         kafka.oauth_principal to its email"
    )]
    Principal(String),
    #[error("cannot get a Google access token for Kafka: {0}")]
    Token(String),
}

/// Makes OAUTHBEARER tokens from Google credentials; shared by the consumer, producer
/// and admin clients.
pub struct GoogleTokenProvider {
    credentials: AccessTokenCredentials,
    principal: String,
    /// librdkafka calls back on its own threads (inside our reader's runtime, for the
    /// consumer); the async credential calls run here and the callback waits on them.
    /// An `Option` only so `Drop` can shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for GoogleTokenProvider {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The client context of the producer and admin clients (the consumer's wraps it):
/// answers librdkafka's token refresh when `kafka.oauth = "google"`.
#[derive(Clone, Default)]
pub struct AuthContext {
    pub oauth: Option<Arc<GoogleTokenProvider>>,
}

impl AuthContext {
    /// The context `kafka.oauth` asks for (fetching the principal now, so a wrong
    /// setup fails at start rather than at the first broker connection).
    pub fn from_config(kafka: &crate::config::KafkaConfig) -> Result<AuthContext, OAuthError> {
        let oauth = match kafka.oauth {
            crate::config::OAuthProvider::None => None,
            crate::config::OAuthProvider::Google => Some(Arc::new(GoogleTokenProvider::new(
                Some(kafka.oauth_principal.clone()),
            )?)),
        };
        Ok(AuthContext { oauth })
    }

    pub fn generate(&self) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        match &self.oauth {
            Some(provider) => provider.token().map_err(|e| {
                tracing::warn!(error = %e, "Kafka OAUTHBEARER token refresh failed");
                e.into()
            }),
            None => Err(
                "sasl.mechanism is OAUTHBEARER but kafka.oauth is not \"google\"; \
                         set it, or configure librdkafka's own sasl.oauthbearer.* OIDC settings"
                    .into(),
            ),
        }
    }
}

impl ClientContext for AuthContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::quiet_logs::log(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        super::quiet_logs::error(error, reason);
    }

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.generate()
    }
}

impl GoogleTokenProvider {
    pub fn new(principal: Option<String>) -> Result<Self, OAuthError> {
        let credentials = Builder::default()
            .with_scopes([SCOPE])
            .build_access_token_credentials()
            .map_err(|e| OAuthError::Credentials(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wsi-oauth")
            .enable_all()
            .build()
            .map_err(|e| OAuthError::Credentials(e.to_string()))?;
        let principal = match principal.filter(|p| !p.is_empty()) {
            Some(p) => p,
            None => match discover_principal(&runtime) {
                Ok(p) => p,
                Err(e) => {
                    // Dropping a runtime inside the service's own async context panics
                    // ("Cannot drop a runtime..."): shut it down without blocking.
                    runtime.shutdown_background();
                    return Err(e);
                }
            },
        };
        tracing::info!(%principal, "Kafka OAUTHBEARER tokens from Google credentials");
        Ok(GoogleTokenProvider {
            credentials,
            principal,
            runtime: Some(runtime),
        })
    }

    /// A fresh token for librdkafka (blocks until google-cloud-auth answers).
    pub fn token(&self) -> Result<OAuthToken, OAuthError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| OAuthError::Token("shutting down".into()))?;
        let credentials = self.credentials.clone();
        let access = wait(runtime, async move { credentials.access_token().await })
            .map_err(OAuthError::Token)?
            .map_err(|e| OAuthError::Token(e.to_string()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let expires = now + TOKEN_LIFETIME;
        crate::telemetry::record::token_refreshed();
        tracing::debug!(principal = %self.principal, "Kafka OAUTHBEARER token refreshed");
        Ok(OAuthToken {
            token: managed_kafka_token(&access.token, &self.principal, now, expires),
            principal_name: self.principal.clone(),
            lifetime_ms: expires.as_millis() as i64,
        })
    }
}

/// Runs `fut` on `runtime` and waits for it from a plain (possibly async) thread.
fn wait<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv_timeout(Duration::from_secs(60))
        .map_err(|_| "no answer from the credential source within 60 s".to_string())
}

/// The token GCP Managed Kafka accepts (see the module doc).
pub fn managed_kafka_token(
    access_token: &str,
    principal: &str,
    issued: Duration,
    expires: Duration,
) -> String {
    let header = serde_json::json!({"typ": "JWT", "alg": "GOOG_OAUTH2_TOKEN"});
    let claims = serde_json::json!({
        "exp": expires.as_secs(),
        "iat": issued.as_secs(),
        "iss": "Google",
        "scope": "kafka",
        "sub": principal,
    });
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(access_token)
    )
}

/// The service account's email: from the key file ADC points at, else from the
/// metadata server (GKE workload identity, Cloud Run, GCE; `GCE_METADATA_HOST` moves it).
fn discover_principal(runtime: &tokio::runtime::Runtime) -> Result<String, OAuthError> {
    if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| OAuthError::Principal(format!("{}: {e}", path.to_string_lossy())))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| OAuthError::Principal(e.to_string()))?;
        return json["client_email"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| OAuthError::Principal("the key file has no client_email".into()));
    }
    let host =
        std::env::var("GCE_METADATA_HOST").unwrap_or_else(|_| "metadata.google.internal".into());
    let url = format!("http://{host}{METADATA_EMAIL}");
    let once = move || {
        let url = url.clone();
        async move {
            let response = reqwest::Client::new()
                .get(&url)
                .header("Metadata-Flavor", "Google")
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| e.to_string())?;
            response.text().await.map_err(|e| e.to_string())
        }
    };
    let started = std::time::Instant::now();
    let backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times();
    let fetch = async move {
        use backon::Retryable;
        once.retry(backoff)
            .when(move |_| started.elapsed() < METADATA_PATIENCE)
            .notify(|error, wait| {
                tracing::info!(%error, ?wait, "the metadata server is not answering yet; retrying");
            })
            .await
            .map_err(|e| format!("{e}; retried for {} s", METADATA_PATIENCE.as_secs()))
    };
    let email = wait(runtime, fetch).and_then(|r| r).map_err(|e| {
        OAuthError::Principal(format!(
            "GOOGLE_APPLICATION_CREDENTIALS is not set and the metadata server at {host} \
             did not answer ({e})"
        ))
    })?;
    Ok(email.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_has_googles_shape() {
        let token = managed_kafka_token(
            "ya29.secret",
            "sa@p.iam.gserviceaccount.com",
            Duration::from_secs(1000),
            Duration::from_secs(1600),
        );
        let parts: Vec<Vec<u8>> = token
            .split('.')
            .map(|p| URL_SAFE_NO_PAD.decode(p).unwrap())
            .collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&parts[0]).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&parts[1]).unwrap();
        assert_eq!(header["alg"], "GOOG_OAUTH2_TOKEN");
        assert_eq!(claims["sub"], "sa@p.iam.gserviceaccount.com");
        assert_eq!(claims["exp"], 1600);
        assert_eq!(claims["iat"], 1000);
        assert_eq!(claims["scope"], "kafka");
        assert_eq!(parts[2], b"ya29.secret");
    }
}
