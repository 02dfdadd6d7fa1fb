//! [`SqsClient`]: the two SQS calls the functions make, `SendMessageBatch` and `SendMessage`, in
//! SQS's JSON protocol, signed with SigV4 and sent on the SDK's HTTPS connector.
//!
//! The SDK's client runs its whole orchestrator for every call (interceptors, a configuration
//! bag, endpoint rules, identity resolution, retry classification). In the API at eight clients
//! that was a sixth of the process's CPU, about 0.28 ms per `SendMessageBatch`: more than the
//! rest of the ten creates it carried. Here a call is one JSON body, one signature and one POST,
//! and what the SDK's client gave that matters is kept:
//! - the endpoint: `AWS_ENDPOINT_URL_SQS` (or `endpoint_url` in the profile's `services`
//!   section), else `AWS_ENDPOINT_URL`, else the queue URL's origin, which is SQS's endpoint in
//!   the queue's region. FIPS and dual-stack endpoints (`AWS_USE_FIPS_ENDPOINT`,
//!   `AWS_USE_DUALSTACK_ENDPOINT`) are not derived: with either set and no endpoint configured, a
//!   call fails and says to set `AWS_ENDPOINT_URL_SQS`, rather than using the plain endpoint;
//! - credentials from the SDK's provider chain, cached until five minutes before they expire
//!   (fifteen minutes when they carry no expiry), loaded by one caller at a time; while a reload
//!   fails, credentials that have not expired yet are still used;
//! - three attempts with jittered exponential backoff on connection errors, timeouts, 5xx
//!   answers and throttling;
//! - TLS, connection reuse and proxy settings, through the SDK's connector.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorSettings};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_types::service_config::ServiceConfigKey;
use aws_types::SdkConfig;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::domain::Backoff;

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// Attempts per call, the first included.
const ATTEMPTS: u32 = 3;
/// The wait between attempts: full jitter under 100 ms, then 200 ms.
const BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(100),
    cap: Duration::from_secs(1),
};
/// How long one attempt may take, connection and answer included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The SDK's default connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// Credentials are reloaded this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// How long credentials without an expiry are kept (as the SDK's identity cache does).
const UNEXPIRING_TTL: Duration = Duration::from_secs(900);
/// Error codes that mean "slow down" (the SDK's list, for the codes SQS can answer).
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "KmsThrottled",
];

/// Why an SQS call failed.
#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    #[error("SQS answered HTTP {status} {code}: {message}")]
    Service {
        status: u16,
        code: String,
        message: String,
    },
    #[error("SQS could not be reached: {0}")]
    Transport(String),
    #[error("AWS credentials could not be loaded: {0}")]
    Credentials(String),
    #[error("the SQS call cannot be made: {0}")]
    Config(String),
}

impl SqsError {
    fn retryable(&self) -> bool {
        match self {
            Self::Transport(_) | Self::Credentials(_) => true,
            Self::Service { status, code, .. } => {
                *status >= 500 || *status == 429 || THROTTLING.contains(&code.as_str())
            }
            Self::Config(_) => false,
        }
    }
}

/// Makes SQS calls; see the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct SqsClient {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Option<String>,
    /// `AWS_USE_FIPS_ENDPOINT` or `AWS_USE_DUALSTACK_ENDPOINT` is set.
    variant_endpoint: bool,
    region: Option<String>,
    provider: Option<SharedCredentialsProvider>,
    credentials: tokio::sync::Mutex<Option<Cached>>,
    /// Built on the first call: building one loads the system's root certificates.
    connector: OnceLock<Connector>,
}

struct Cached {
    identity: Identity,
    expiry: Option<SystemTime>,
    refresh_at: Instant,
}

impl SqsClient {
    /// A client with the region, credentials and endpoint of `config`.
    pub fn new(config: &SdkConfig) -> Self {
        let key = ServiceConfigKey::builder()
            .service_id("SQS")
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .expect("every field of the key is set");
        let endpoint = config
            .service_config()
            .and_then(|services| services.load_config(key))
            .or_else(|| config.endpoint_url().map(str::to_owned));
        Self {
            inner: Arc::new(Inner {
                endpoint,
                variant_endpoint: config.use_fips() == Some(true)
                    || config.use_dual_stack() == Some(true),
                region: config.region().map(|r| r.as_ref().to_owned()),
                provider: config.credentials_provider(),
                credentials: tokio::sync::Mutex::new(None),
                connector: OnceLock::new(),
            }),
        }
    }

    /// Calls `operation` (such as `SendMessageBatch`) for the queue at `queue_url` with `input`
    /// as its JSON body, retrying what may succeed on a later attempt.
    ///
    /// # Errors
    /// [`SqsError`] of the last attempt.
    pub async fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        queue_url: &str,
        operation: &str,
        input: &I,
    ) -> Result<O, SqsError> {
        if self.inner.variant_endpoint && self.inner.endpoint.is_none() {
            return Err(SqsError::Config(
                "FIPS or dual-stack endpoints are asked for: set AWS_ENDPOINT_URL_SQS to the SQS \
                 endpoint to use"
                    .into(),
            ));
        }
        let uri = endpoint(self.inner.endpoint.as_deref(), queue_url)?;
        let body = Bytes::from(serde_json::to_vec(input).expect("an SQS request serialises"));
        let mut attempt = 1;
        loop {
            let answer =
                tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(&uri, operation, &body))
                    .await
                    .unwrap_or_else(|_| {
                        Err(SqsError::Transport(format!(
                            "no answer within {} s",
                            ATTEMPT_TIMEOUT.as_secs()
                        )))
                    });
            match answer {
                Ok(bytes) => {
                    return serde_json::from_slice(&bytes).map_err(|e| SqsError::Service {
                        status: 200,
                        code: "UnreadableAnswer".into(),
                        message: format!("the answer to {operation} is not its JSON: {e}"),
                    })
                }
                Err(e) if e.retryable() && attempt < ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, operation, "SQS call failed; retrying");
                    let wait = BACKOFF.delay(attempt, &mut rand::rng());
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn attempt(
        &self,
        uri: &http::Uri,
        operation: &str,
        body: &Bytes,
    ) -> Result<Bytes, SqsError> {
        let identity = self.identity().await?;
        let region = self.inner.region.as_deref().ok_or_else(|| {
            SqsError::Config("no AWS region is configured (set AWS_REGION)".into())
        })?;
        let host = uri.authority().map_or("", |a| a.as_str());
        let target = format!("AmazonSQS.{operation}");
        let headers = [
            ("content-type", CONTENT_TYPE),
            ("host", host),
            ("x-amz-target", target.as_str()),
        ];
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("sqs")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SqsError::Config(format!("signing: {e}")))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            uri.to_string(),
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .and_then(|request| sign(request, &params))
        .map_err(|e| SqsError::Config(format!("signing: {e}")))?;
        let (instructions, _) = signable.into_parts();

        let mut request = http::Request::builder().method("POST").uri(uri.clone());
        for (name, value) in headers.into_iter().chain(instructions.headers()) {
            request = request.header(name, value);
        }
        let request = request
            .body(SdkBody::from(body.clone()))
            .map_err(|e| SqsError::Config(e.to_string()))
            .and_then(|r| r.try_into().map_err(|e| SqsError::Config(format!("{e}"))))?;
        let response = self
            .connector()
            .call(request)
            .await
            .map_err(|e| SqsError::Transport(DisplayErrorContext(&e).to_string()))?;
        let status = response.status().as_u16();
        let answer = ByteStream::new(response.into_body())
            .collect()
            .await
            .map_err(|e| SqsError::Transport(DisplayErrorContext(&e).to_string()))?
            .into_bytes();
        if (200..300).contains(&status) {
            Ok(answer)
        } else {
            Err(service_error(status, &answer))
        }
    }

    fn connector(&self) -> &Connector {
        self.inner.connector.get_or_init(|| {
            let settings = HttpConnectorSettings::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build();
            crate::adapters::aws::https_connector(Some(&settings), None)
        })
    }

    /// The cached credentials, reloaded when they are due.
    async fn identity(&self) -> Result<Identity, SqsError> {
        let mut cached = self.inner.credentials.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.identity.clone());
        }
        let provider =
            self.inner.provider.as_ref().ok_or_else(|| {
                SqsError::Credentials("no credentials provider is configured".into())
            })?;
        match provider.provide_credentials().await {
            Ok(credentials) => {
                let expiry = credentials.expiry();
                let fresh = Cached {
                    identity: Identity::from(credentials),
                    expiry,
                    refresh_at: refresh_at(expiry, SystemTime::now(), Instant::now()),
                };
                let identity = fresh.identity.clone();
                *cached = Some(fresh);
                Ok(identity)
            }
            Err(e) => {
                let error = DisplayErrorContext(&e).to_string();
                match cached.as_ref() {
                    Some(c) if c.expiry.is_none_or(|at| SystemTime::now() < at) => {
                        tracing::warn!(error, "AWS credentials not reloaded; using the current ones until they expire");
                        Ok(c.identity.clone())
                    }
                    _ => Err(SqsError::Credentials(error)),
                }
            }
        }
    }
}

/// Where a call for the queue at `queue_url` goes: the configured endpoint, else the queue URL's
/// scheme and authority.
fn endpoint(configured: Option<&str>, queue_url: &str) -> Result<http::Uri, SqsError> {
    let invalid = |what: &str, url: &str| {
        SqsError::Config(format!("the {what} {url:?} is not an absolute http(s) URL"))
    };
    if let Some(url) = configured {
        let uri: http::Uri = url.parse().map_err(|_| invalid("SQS endpoint", url))?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(invalid("SQS endpoint", url));
        }
        return Ok(uri);
    }
    let queue: http::Uri = queue_url
        .parse()
        .map_err(|_| invalid("queue URL", queue_url))?;
    match (queue.scheme_str(), queue.authority()) {
        (Some(scheme @ ("http" | "https")), Some(authority)) => http::Uri::builder()
            .scheme(scheme)
            .authority(authority.as_str())
            .path_and_query("/")
            .build()
            .map_err(|_| invalid("queue URL", queue_url)),
        _ => Err(invalid("queue URL", queue_url)),
    }
}

/// When credentials expiring at `expiry` are to be reloaded, as an instant (`now` and `clock`
/// are the same moment on the two clocks).
fn refresh_at(expiry: Option<SystemTime>, now: SystemTime, clock: Instant) -> Instant {
    let keep = match expiry {
        Some(at) => at
            .duration_since(now)
            .unwrap_or_default()
            .saturating_sub(REFRESH_BEFORE_EXPIRY),
        None => UNEXPIRING_TTL,
    };
    clock + keep
}

/// The error an SQS answer describes: `{"__type":"com.amazonaws.sqs#Code","message":"..."}`.
fn service_error(status: u16, body: &[u8]) -> SqsError {
    #[derive(Deserialize, Default)]
    struct ErrorBody {
        #[serde(rename = "__type", default)]
        kind: String,
        #[serde(default, alias = "Message")]
        message: String,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = parsed
        .kind
        .rsplit('#')
        .next()
        .and_then(|code| code.split(':').next())
        .filter(|code| !code.is_empty())
        .unwrap_or("Unknown")
        .to_owned();
    let message = if parsed.message.is_empty() {
        String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
    } else {
        parsed.message
    };
    SqsError::Service {
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests;
