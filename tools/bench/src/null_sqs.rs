//! A null SQS endpoint: answers `SendMessage` and `SendMessageBatch` (the JSON protocol the SDKs
//! speak, boto3's included) as SQS does, and drops the messages. It answers EventBridge's
//! `PutEvents` too (the lifecycle events the worker publishes for every task it ends), so the
//! emulator's slow event delivery (it routes each event to its rule's targets while answering,
//! and kept a core busy for minutes after a worker run) is not what the figures measure. The emulator cannot stand in for SQS under load: its
//! `SendMessageBatch` slows as the queue grows (86 messages/s on an empty queue, 18 once it
//! holds 3,000, measured with moto), so the API and enqueue figures would measure the emulator,
//! not TMS. Functions reach it through `AWS_ENDPOINT_URL_SQS`; S3 and SSM stay on the emulator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub struct NullSqs {
    pub url: String,
    counts: Arc<Counts>,
    server: tokio::task::JoinHandle<()>,
}

/// What the endpoint took: `SendMessageBatch` requests and the messages in them.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    messages: AtomicU64,
    /// Lifecycle events taken by `PutEvents`.
    events: AtomicU64,
}

impl NullSqs {
    /// # Errors
    /// When no local port can be bound.
    pub async fn start() -> anyhow::Result<Self> {
        let counts = Arc::new(Counts::default());
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(counts.clone());
        let (address, server) = tms_testkit::http::spawn(app).await?;
        Ok(Self {
            url: format!("http://{address}"),
            counts,
            server,
        })
    }

    /// Messages accepted so far.
    pub fn accepted(&self) -> u64 {
        self.counts.messages.load(Ordering::Relaxed)
    }

    /// Lifecycle events accepted so far.
    pub fn events(&self) -> u64 {
        self.counts.events.load(Ordering::Relaxed)
    }

    /// The environment that points a function's SQS and EventBridge clients here.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("AWS_ENDPOINT_URL_SQS", self.url.clone()),
            ("AWS_ENDPOINT_URL_EVENTBRIDGE", self.url.clone()),
        ]
    }

    /// `SendMessage` and `SendMessageBatch` requests answered so far.
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }
}

impl Drop for NullSqs {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.0")],
        body.to_string(),
    )
        .into_response()
}

async fn answer(State(counts): State<Arc<Counts>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if target == "AWSEvents.PutEvents" {
        let entries: Vec<Value> = request["Entries"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|_| json!({"EventId": uuid::Uuid::new_v4().to_string()}))
            .collect();
        counts
            .events
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        return (
            StatusCode::OK,
            [("content-type", "application/x-amz-json-1.1")],
            json!({"FailedEntryCount": 0, "Entries": entries}).to_string(),
        )
            .into_response();
    }
    if target == "AmazonSQS.SendMessage" {
        counts.requests.fetch_add(1, Ordering::Relaxed);
        counts.messages.fetch_add(1, Ordering::Relaxed);
        return json_response(
            StatusCode::OK,
            &json!({"MessageId": uuid::Uuid::new_v4().to_string(),
                "MD5OfMessageBody": "00000000000000000000000000000000"}),
        );
    }
    if target != "AmazonSQS.SendMessageBatch" {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"__type": "com.amazonaws.sqs#InvalidAction",
                "message": format!("the null SQS endpoint takes SendMessage and SendMessageBatch, not {target:?}")}),
        );
    }
    let successful: Vec<Value> = request["Entries"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            json!({"Id": entry["Id"], "MessageId": uuid::Uuid::new_v4().to_string(),
                "MD5OfMessageBody": "00000000000000000000000000000000"})
        })
        .collect();
    counts.requests.fetch_add(1, Ordering::Relaxed);
    counts
        .messages
        .fetch_add(successful.len() as u64, Ordering::Relaxed);
    json_response(
        StatusCode::OK,
        &json!({"Successful": successful, "Failed": []}),
    )
}
