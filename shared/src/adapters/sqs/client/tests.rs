//! The client against a fake SQS endpoint on loopback that records what arrives and checks its
//! SigV4 signature the way SQS does, from the request as received.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use aws_credential_types::provider::{error::CredentialsError, future};
use aws_credential_types::Credentials;
use aws_types::region::Region;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::*;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const REGION: &str = "eu-west-1";
const QUEUE: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/work";

/// A request as the fake endpoint received it.
struct Received {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

/// Answers the n-th request with `answers[n]`, the last one again once they run out.
struct FakeSqs {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeSqs {
    async fn start(answers: Vec<(u16, Value)>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (log, answers) = (log.clone(), answers.clone());
                async move {
                    let n = {
                        let mut log = log.lock().unwrap();
                        log.push(Received {
                            method,
                            path: uri.path().to_owned(),
                            headers,
                            body,
                        });
                        log.len() - 1
                    };
                    let (status, answer) = answers[n.min(answers.len() - 1)].clone();
                    (
                        StatusCode::from_u16(status).unwrap(),
                        [("content-type", CONTENT_TYPE)],
                        answer.to_string(),
                    )
                }
            },
        );
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            received,
            server,
        }
    }

    fn requests(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    fn check(&self, n: usize, check: impl FnOnce(&Received)) {
        check(&self.received.lock().unwrap()[n]);
    }
}

impl Drop for FakeSqs {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Credentials that count their loads; they expire `lifetime` after each load, and every load
/// after the first fails when `fail_reloads`.
#[derive(Debug)]
struct CountingProvider {
    loads: Arc<AtomicUsize>,
    lifetime: Option<Duration>,
    fail_reloads: bool,
}

impl ProvideCredentials for CountingProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let load = self.loads.fetch_add(1, Ordering::SeqCst);
        if self.fail_reloads && load > 0 {
            return future::ProvideCredentials::ready(Err(CredentialsError::provider_error(
                "the credentials endpoint is down",
            )));
        }
        future::ProvideCredentials::ready(Ok(Credentials::new(
            "AKIDEXAMPLE",
            SECRET,
            Some("session-token".into()),
            self.lifetime.map(|l| SystemTime::now() + l),
            "test",
        )))
    }
}

fn client_with(
    endpoint: Option<&str>,
    region: Option<&str>,
    lifetime: Option<Duration>,
    fail_reloads: bool,
) -> (SqsClient, Arc<AtomicUsize>) {
    let loads = Arc::new(AtomicUsize::new(0));
    let provider = CountingProvider {
        loads: loads.clone(),
        lifetime,
        fail_reloads,
    };
    let mut config = SdkConfig::builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .region(region.map(|r| Region::new(r.to_owned())));
    if let Some(url) = endpoint {
        config = config.endpoint_url(url);
    }
    (SqsClient::new(&config.build()), loads)
}

fn client(endpoint: &str) -> SqsClient {
    client_with(
        Some(endpoint),
        Some(REGION),
        Some(Duration::from_secs(3600)),
        false,
    )
    .0
}

async fn send(client: &SqsClient) -> Result<Value, SqsError> {
    client
        .call(
            QUEUE,
            "SendMessage",
            &json!({"QueueUrl": QUEUE, "MessageBody": "hello"}),
        )
        .await
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut padded = [0u8; 64];
    padded[..key.len()].copy_from_slice(key);
    let inner = Sha256::new()
        .chain_update(padded.map(|b| b ^ 0x36))
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(padded.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Recomputes the request's SigV4 signature from what arrived (AWS's published algorithm) and
/// compares; checks the scope names the region and SQS and that what SQS requires is signed.
fn verify_signature(r: &Received) {
    let authorization = r.header("authorization");
    let fields: HashMap<&str, &str> = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .unwrap_or_else(|| panic!("not a SigV4 authorization: {authorization}"))
        .split(", ")
        .map(|part| part.split_once('=').unwrap())
        .collect();
    let (access_key, scope) = fields["Credential"].split_once('/').unwrap();
    assert_eq!(access_key, "AKIDEXAMPLE");
    let scope_parts: Vec<&str> = scope.split('/').collect();
    assert_eq!(scope_parts[1..], [REGION, "sqs", "aws4_request"]);
    let signed = fields["SignedHeaders"];
    for required in [
        "content-type",
        "host",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-target",
    ] {
        assert!(
            signed.split(';').any(|h| h == required),
            "{required} is not signed: {signed}"
        );
    }
    let canonical_headers: String = signed
        .split(';')
        .map(|h| format!("{h}:{}\n", r.header(h).trim()))
        .collect();
    let canonical = format!(
        "{}\n{}\n\n{canonical_headers}\n{signed}\n{}",
        r.method,
        r.path,
        hex::encode(Sha256::digest(&r.body))
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        r.header("x-amz-date"),
        hex::encode(Sha256::digest(canonical))
    );
    let mut key = hmac(
        format!("AWS4{SECRET}").as_bytes(),
        scope_parts[0].as_bytes(),
    );
    for part in [REGION, "sqs", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    assert_eq!(
        fields["Signature"],
        hex::encode(hmac(&key, to_sign.as_bytes())),
        "the signature does not match the request as received"
    );
}

#[tokio::test]
async fn a_call_is_one_post_of_its_operation_signed_for_sqs() {
    let sqs = FakeSqs::start(vec![(200, json!({"MessageId": "m-1"}))]).await;
    let answer = send(&client(&sqs.url)).await.unwrap();
    assert_eq!(answer, json!({"MessageId": "m-1"}));
    assert_eq!(sqs.requests(), 1);
    sqs.check(0, |r| {
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.path, "/");
        assert_eq!(r.header("x-amz-target"), "AmazonSQS.SendMessage");
        assert_eq!(r.header("content-type"), "application/x-amz-json-1.0");
        assert_eq!(r.header("x-amz-security-token"), "session-token");
        assert_eq!(
            serde_json::from_slice::<Value>(&r.body).unwrap(),
            json!({"QueueUrl": QUEUE, "MessageBody": "hello"})
        );
        verify_signature(r);
    });
}

#[tokio::test]
async fn without_a_configured_endpoint_a_call_goes_to_the_queue_urls_origin() {
    let sqs = FakeSqs::start(vec![(200, json!({}))]).await;
    let (client, _) = client_with(None, Some(REGION), None, false);
    let queue = format!("{}/123456789012/work", sqs.url);
    let _: Value = client
        .call(&queue, "SendMessage", &json!({}))
        .await
        .unwrap();
    sqs.check(0, |r| {
        assert_eq!(r.path, "/");
        verify_signature(r);
    });
}

#[test]
fn the_endpoint_is_the_configured_one_else_the_queue_urls_origin() {
    let at = |configured, queue| endpoint(configured, queue).map(|u| u.to_string());
    assert_eq!(
        at(Some("http://127.0.0.1:4566"), QUEUE).unwrap(),
        "http://127.0.0.1:4566/"
    );
    assert_eq!(
        at(None, QUEUE).unwrap(),
        "https://sqs.eu-west-1.amazonaws.com/"
    );
    for bad in ["work", "ftp://example.com/1/work", ""] {
        let error = at(None, bad).unwrap_err();
        assert!(matches!(error, SqsError::Config(_)), "{bad}: {error}");
    }
    assert!(at(Some("localhost"), QUEUE).is_err());
}

#[tokio::test]
async fn server_errors_and_throttling_are_retried_each_attempt_signed_anew() {
    let sqs = FakeSqs::start(vec![
        (
            500,
            json!({"__type": "com.amazonaws.sqs#InternalError", "message": "oops"}),
        ),
        (
            400,
            json!({"__type": "com.amazonaws.sqs#ThrottlingException", "message": "slow down"}),
        ),
        (200, json!({"MessageId": "m-2"})),
    ])
    .await;
    let answer = send(&client(&sqs.url)).await.unwrap();
    assert_eq!(answer["MessageId"], "m-2");
    assert_eq!(sqs.requests(), 3);
    for n in 0..3 {
        sqs.check(n, verify_signature);
    }
}

#[tokio::test]
async fn a_client_error_is_not_retried_and_names_its_code() {
    let sqs = FakeSqs::start(vec![(
        400,
        json!({"__type": "com.amazonaws.sqs#QueueDoesNotExist",
            "message": "The specified queue does not exist."}),
    )])
    .await;
    let error = send(&client(&sqs.url)).await.unwrap_err();
    assert_eq!(sqs.requests(), 1);
    assert!(
        matches!(&error, SqsError::Service { status: 400, code, .. } if code == "QueueDoesNotExist"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "SQS answered HTTP 400 QueueDoesNotExist: The specified queue does not exist."
    );
}

#[tokio::test]
async fn a_call_gives_up_after_three_attempts() {
    let sqs = FakeSqs::start(vec![(503, json!({}))]).await;
    let error = send(&client(&sqs.url)).await.unwrap_err();
    assert_eq!(sqs.requests(), 3);
    assert!(
        matches!(error, SqsError::Service { status: 503, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transport_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let error = send(&client(&url)).await.unwrap_err();
    assert!(matches!(error, SqsError::Transport(_)), "{error:?}");
}

#[tokio::test]
async fn credentials_are_loaded_once_while_fresh_and_again_when_close_to_expiry() {
    let sqs = FakeSqs::start(vec![(200, json!({}))]).await;
    let hour = Some(Duration::from_secs(3600));
    let (fresh, loads) = client_with(Some(&sqs.url), Some(REGION), hour, false);
    for _ in 0..3 {
        send(&fresh).await.unwrap();
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    let two_minutes = Some(Duration::from_secs(120));
    let (expiring, loads) = client_with(Some(&sqs.url), Some(REGION), two_minutes, false);
    for _ in 0..3 {
        send(&expiring).await.unwrap();
    }
    assert_eq!(loads.load(Ordering::SeqCst), 3);
    assert_eq!(sqs.requests(), 6);
}

#[tokio::test]
async fn a_failed_reload_keeps_credentials_until_they_expire() {
    let sqs = FakeSqs::start(vec![(200, json!({}))]).await;
    let two_minutes = Some(Duration::from_secs(120));
    let (client, loads) = client_with(Some(&sqs.url), Some(REGION), two_minutes, true);
    send(&client).await.unwrap();
    send(&client).await.unwrap();
    assert_eq!(
        loads.load(Ordering::SeqCst),
        2,
        "the second call tried a reload"
    );
    assert_eq!(sqs.requests(), 2);
    sqs.check(1, verify_signature);
}

#[tokio::test]
async fn without_credentials_or_a_region_nothing_is_sent() {
    let sqs = FakeSqs::start(vec![(200, json!({}))]).await;
    let (no_region, _) = client_with(Some(&sqs.url), None, None, false);
    let error = send(&no_region).await.unwrap_err();
    assert!(error.to_string().contains("AWS_REGION"), "{error}");

    let no_credentials = SqsClient::new(
        &SdkConfig::builder()
            .region(Region::new(REGION))
            .endpoint_url(&sqs.url)
            .build(),
    );
    let error = send(&no_credentials).await.unwrap_err();
    assert!(matches!(error, SqsError::Credentials(_)), "{error:?}");
    assert_eq!(sqs.requests(), 0);
}

#[tokio::test]
async fn fips_or_dual_stack_without_an_endpoint_is_refused_not_ignored() {
    let sqs = FakeSqs::start(vec![(200, json!({}))]).await;
    let queue = format!("{}/123456789012/work", sqs.url);
    for (sent, (fips, dual_stack)) in [(true, false), (false, true)].into_iter().enumerate() {
        let config = |endpoint: Option<&str>| {
            let mut config = SdkConfig::builder()
                .region(Region::new(REGION))
                .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                    "AKIDEXAMPLE",
                    SECRET,
                    None,
                    None,
                    "test",
                )))
                .use_fips(fips)
                .use_dual_stack(dual_stack);
            if let Some(url) = endpoint {
                config = config.endpoint_url(url);
            }
            SqsClient::new(&config.build())
        };
        let error = config(None)
            .call::<_, Value>(&queue, "SendMessage", &json!({}))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("AWS_ENDPOINT_URL_SQS"),
            "{error}"
        );
        assert_eq!(sqs.requests(), sent, "the refused call sent nothing");
        let _: Value = config(Some(&sqs.url))
            .call(&queue, "SendMessage", &json!({}))
            .await
            .unwrap();
    }
    assert_eq!(sqs.requests(), 2);
}

#[test]
fn credentials_are_refreshed_five_minutes_before_they_expire() {
    let (now, clock) = (SystemTime::now(), Instant::now());
    let hour = refresh_at(Some(now + Duration::from_secs(3600)), now, clock);
    assert_eq!(hour - clock, Duration::from_secs(3300));
    assert_eq!(
        refresh_at(Some(now + Duration::from_secs(60)), now, clock),
        clock
    );
    assert_eq!(
        refresh_at(Some(now - Duration::from_secs(60)), now, clock),
        clock
    );
    assert_eq!(refresh_at(None, now, clock) - clock, UNEXPIRING_TTL);
}

#[test]
fn an_answer_that_is_not_sqs_json_is_still_a_readable_error() {
    let error = service_error(502, b"<html>Bad Gateway</html>");
    assert_eq!(
        error.to_string(),
        "SQS answered HTTP 502 Unknown: <html>Bad Gateway</html>"
    );
    assert!(error.retryable());
    let throttled = service_error(400, br#"{"__type":"ThrottlingException","Message":"slow"}"#);
    assert!(throttled.retryable(), "{throttled}");
}
