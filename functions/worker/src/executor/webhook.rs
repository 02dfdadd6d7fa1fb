//! `webhook`: an HTTP call to a partner, guarded against server-side request forgery, and
//! signed per the Standard Webhooks specification when its tenant has a webhook signing secret
//! (the `notification` kind's deliveries make their calls here too, signed with their
//! subscription's secret).
//!
//! The URL's literal address is checked before the call ([`validate_url`]); every address a
//! host name resolves to is checked by the client's resolver, so a name pointing at a private,
//! loopback, link-local or metadata address is refused too. Where the deployment reserves ports
//! (the local stack's own services), a non-public target is reachable only by its literal
//! address or `localhost`, whose port [`validate_url`] checks: a name resolving to one is
//! refused, as the resolver cannot see the port. Redirects are not followed and no proxy is
//! used, so the address checked is the address called. Errors name the host and the class of
//! address refused, never the address a name resolved to.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{header, Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tms::domain::subscription;
use tms::domain::webhook::{classify_ip, validate_url, AddressClass, WebhookPolicy};
use tms::ports::Signing;
use tms::{SigningKeys, Task, TaskError, Tenant};
use tokio::sync::OnceCell;

use super::breaker::{BreakerSettings, CircuitBreaker};
use super::{invalid_payload, Executor};
use crate::config::WebhookSettings;

/// Resolves host names; the system resolver in production, a fixed table in tests.
#[async_trait]
pub trait Lookup: Send + Sync {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

pub struct SystemLookup;

#[async_trait]
impl Lookup for SystemLookup {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, 0))
            .await?
            .map(|a| a.ip())
            .collect())
    }
}

/// A host name resolved to an address the policy refuses. Its message names the host and the
/// class of address, not the address: the task's error is shown to its tenant.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to a {class} address, which this deployment refuses")]
pub struct AddressRefused {
    pub host: String,
    pub class: AddressClass,
}

struct GuardedResolver {
    lookup: Arc<dyn Lookup>,
    policy: WebhookPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = self.lookup.clone();
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = lookup.lookup(&host).await?;
            let by_name_only = !policy.reserves_ports() || host == "localhost";
            let refused = ips.iter().map(|ip| classify_ip(*ip)).find(|class| {
                !policy.permits(*class) || (*class != AddressClass::Public && !by_name_only)
            });
            if let Some(class) = refused {
                return Err(Box::new(AddressRefused { host, class }) as _);
            }
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Webhook {
    url: String,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<Value>,
}

pub struct WebhookExecutor {
    /// Built by the first call: building it loads the system's CA store (tens of milliseconds),
    /// which a cold start that runs no webhook should not pay.
    client: OnceCell<reqwest::Client>,
    lookup: Arc<dyn Lookup>,
    timeout: std::time::Duration,
    policy: WebhookPolicy,
    breaker: CircuitBreaker,
}

impl WebhookExecutor {
    pub fn new(settings: &WebhookSettings) -> Self {
        Self::with_lookup(settings, Arc::new(SystemLookup))
    }

    pub fn with_lookup(settings: &WebhookSettings, lookup: Arc<dyn Lookup>) -> Self {
        Self {
            client: OnceCell::new(),
            lookup,
            timeout: settings.timeout,
            policy: settings.policy,
            breaker: CircuitBreaker::new(BreakerSettings::default()),
        }
    }

    /// The client, built now if this is the first call.
    async fn client(&self) -> Result<&reqwest::Client, TaskError> {
        self.client
            .get_or_try_init(|| async {
                tms::tls::install_crypto_provider();
                reqwest::Client::builder()
                    .dns_resolver(Arc::new(GuardedResolver {
                        lookup: self.lookup.clone(),
                        policy: self.policy,
                    }))
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .timeout(self.timeout)
                    .user_agent(concat!("tms-worker/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| {
                        TaskError::retryable(
                            "client_setup",
                            format!("the HTTP client cannot be built: {e}"),
                        )
                    })
            })
            .await
    }
}

/// 2xx succeeds; 408, 429 and 5xx may succeed later; anything else will not.
fn classify_status(status: StatusCode) -> Result<Value, TaskError> {
    let code = status.as_u16();
    let message = format!("the webhook answered {status}");
    match code {
        200..=299 => Ok(json!({"status": code})),
        408 | 429 | 500..=599 => Err(TaskError::retryable(format!("http_{code}"), message)),
        300..=399 => Err(TaskError::permanent(
            format!("http_{code}"),
            format!("{message}; redirects are not followed"),
        )),
        _ => Err(TaskError::permanent(format!("http_{code}"), message)),
    }
}

/// The error and its causes on one line, without the URL (it may carry credentials).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn refused_address(error: &reqwest::Error) -> Option<&AddressRefused> {
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<AddressRefused>() {
            return Some(refused);
        }
        source = s.source();
    }
    None
}

fn classify_error(error: reqwest::Error) -> TaskError {
    if let Some(refused) = refused_address(&error) {
        TaskError::permanent("address_refused", refused.to_string())
    } else if error.is_timeout() {
        TaskError::retryable("timeout", "the webhook did not answer in time")
    } else if error.is_builder() {
        TaskError::permanent("invalid_request", describe(error))
    } else {
        TaskError::retryable("connection", describe(error))
    }
}

/// One outgoing call: the webhook task's, or a subscription's delivery.
pub(super) struct Call<'a> {
    pub tenant: &'a Tenant,
    pub url: &'a str,
    pub method: Option<&'a str>,
    pub headers: &'a BTreeMap<String, String>,
    /// Sent as JSON unless the headers name another content type.
    pub body: Option<Vec<u8>>,
    pub idempotency_key: String,
    pub correlation_id: &'a str,
    /// Signs the call (Standard Webhooks) as message `.1` with these keys.
    pub signed: Option<(&'a SigningKeys, &'a str)>,
}

impl WebhookExecutor {
    /// Makes the call under the SSRF rules, the timeout and the per-tenant-and-host breaker,
    /// and classifies its outcome.
    pub(super) async fn call(&self, call: Call<'_>) -> Result<Value, TaskError> {
        let url = validate_url(call.url, &self.policy)
            .map_err(|e| TaskError::permanent("url_refused", format!("the webhook URL {e}")))?;
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        );
        // NOTE: one breaker per tenant and host: a tenant's failing partner pauses only that
        // tenant's calls to it.
        let breaker_key = format!("{} {host}", call.tenant);
        if !self.breaker.admit(&breaker_key, Instant::now()) {
            return Err(TaskError::retryable(
                "circuit_open",
                format!("calls to {host} are paused after repeated failures"),
            ));
        }
        let method = Method::from_bytes(call.method.unwrap_or("POST").as_bytes())
            .map_err(invalid_payload)?;
        let mut request = self
            .client()
            .await?
            .request(method, url)
            .header("Idempotency-Key", call.idempotency_key)
            .header("X-Correlation-Id", call.correlation_id);
        let mut content_type_given = false;
        for (name, value) in call.headers {
            // NOTE: a signed call's signature headers are TMS's own: the tenant's are dropped.
            if call.signed.is_some()
                && SIGNATURE_HEADERS.contains(&name.to_ascii_lowercase().as_str())
            {
                continue;
            }
            content_type_given |= name.eq_ignore_ascii_case(header::CONTENT_TYPE.as_str());
            request = request.header(name, value);
        }
        if let Some((keys, id)) = call.signed {
            let body = call.body.as_deref().unwrap_or_default();
            for (name, value) in keys.headers(id, Utc::now(), body) {
                request = request.header(name, value);
            }
        }
        if let Some(bytes) = call.body {
            if !content_type_given {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            request = request.body(bytes);
        }
        let outcome = match request.send().await {
            Ok(response) => classify_status(response.status()),
            Err(e) => Err(classify_error(e)),
        };
        match &outcome {
            Err(e) if e.code == "address_refused" || e.code == "invalid_request" => {}
            Err(e) => self
                .breaker
                .record(&breaker_key, e.is_retryable(), Instant::now()),
            Ok(_) => self.breaker.record(&breaker_key, false, Instant::now()),
        }
        if let Err(e) = &outcome {
            tracing::info!(host = %host, code = %e.code, "webhook call failed");
        }
        outcome
    }
}

/// The Standard Webhooks headers, in lower case.
const SIGNATURE_HEADERS: [&str; 3] = [
    subscription::HEADER_ID,
    subscription::HEADER_TIMESTAMP,
    subscription::HEADER_SIGNATURE,
];

#[async_trait]
impl Executor for WebhookExecutor {
    /// The call unsigned: the batch runs webhook tasks with [`Executor::execute_signed`].
    async fn execute(&self, task: &Task) -> Result<Value, TaskError> {
        self.execute_signed(task, &Signing::default()).await
    }

    /// The call, signed with the tenant's webhook signing keys when it has some: the message id
    /// is the task id, the body the bytes sent.
    async fn execute_signed(&self, task: &Task, signing: &Signing) -> Result<Value, TaskError> {
        let hook: Webhook =
            serde_json::from_value(task.payload.clone()).map_err(invalid_payload)?;
        let body = hook
            .body
            .as_ref()
            .map(serde_json::to_vec)
            .transpose()
            .map_err(invalid_payload)?;
        let id = task.id.to_string();
        self.call(Call {
            tenant: &task.tenant,
            url: &hook.url,
            method: hook.method.as_deref(),
            headers: &hook.headers,
            body,
            idempotency_key: id.clone(),
            correlation_id: task.correlation_id.as_str(),
            signed: signing
                .webhooks
                .get(&task.tenant)
                .map(|keys| (keys, id.as_str())),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_spec_says() {
        assert_eq!(
            classify_status(StatusCode::OK).unwrap(),
            json!({"status": 200})
        );
        assert!(classify_status(StatusCode::NO_CONTENT).is_ok());
        for retryable in [408, 429, 500, 502, 503, 504] {
            let e = classify_status(StatusCode::from_u16(retryable).unwrap()).unwrap_err();
            assert!(e.is_retryable(), "{retryable}");
            assert_eq!(e.code, format!("http_{retryable}"));
        }
        for permanent in [301, 400, 401, 403, 404, 410, 422] {
            let e = classify_status(StatusCode::from_u16(permanent).unwrap()).unwrap_err();
            assert!(!e.is_retryable(), "{permanent}");
        }
    }
}
