//! A Lambda Runtime API for one execution environment: the function polls
//! `GET /2018-06-01/runtime/invocation/next`, gets one event at a time (with a request id and an
//! X-Ray trace header, as Lambda hands them out), and posts its `/response` or `/error`; nothing
//! is handed out until the caller invokes. What it times is what Lambda does: *latency* is the
//! event handed out → `/response` (what the caller waits for), *billed* is the event handed out →
//! the next `/next` (the environment is billed until it asks for more work, so work after the
//! response counts). `make bench` measures the functions with it; tests run the function
//! binaries under it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, Mutex};

/// One event handed to the function.
struct Event {
    id: String,
    trace: String,
    body: Vec<u8>,
}

/// What the function posted for an invocation (or for its init, `id` "init").
#[derive(Debug)]
pub struct Outcome {
    pub id: String,
    pub error: bool,
    pub body: Bytes,
    pub at: Instant,
}

/// One invocation, timed.
#[derive(Debug)]
pub struct Invoked {
    pub outcome: Outcome,
    /// The X-Ray trace header handed out with the event (`Lambda-Runtime-Trace-Id`).
    pub trace: String,
    /// Event handed out → `/response` (or `/error`).
    pub latency: Duration,
    /// Event handed out → the next `/next`.
    pub billed: Duration,
}

struct Shared {
    polls: mpsc::UnboundedSender<Instant>,
    events: Mutex<mpsc::Receiver<Event>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    function_arn: String,
}

pub struct RuntimeApi {
    /// `host:port`, for `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    polls: mpsc::UnboundedReceiver<Instant>,
    events: mpsc::Sender<Event>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    server: tokio::task::JoinHandle<()>,
    /// The poll the function is waiting on, when it was seen and not yet answered.
    waiting: Option<Instant>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let _ = shared.polls.send(Instant::now());
    let Some(event) = shared.events.lock().await.recv().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let deadline = SystemTime::now() + Duration::from_secs(60);
    let deadline_ms = deadline
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        .to_string();
    (
        [
            ("content-type", "application/json".to_owned()),
            ("lambda-runtime-aws-request-id", event.id),
            ("lambda-runtime-deadline-ms", deadline_ms),
            (
                "lambda-runtime-invoked-function-arn",
                shared.function_arn.clone(),
            ),
            ("lambda-runtime-trace-id", event.trace),
        ],
        event.body,
    )
        .into_response()
}

fn posted(shared: &Shared, id: String, error: bool, body: Bytes) -> StatusCode {
    let _ = shared.outcomes.send(Outcome {
        id,
        error,
        body,
        at: Instant::now(),
    });
    StatusCode::ACCEPTED
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    posted(&shared, id, false, body)
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    posted(&shared, id, true, body)
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    posted(&shared, "init".into(), true, body)
}

impl RuntimeApi {
    /// Serves a Runtime API on a free loopback port for the function `name`.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        let (polls_tx, polls) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::channel(1);
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            polls: polls_tx,
            events: Mutex::new(events_rx),
            outcomes: outcomes_tx,
            function_arn: format!("arn:aws:lambda:us-east-1:000000000000:function:{name}"),
        });
        let base = "/2018-06-01/runtime";
        let app = axum::Router::new()
            .route(&format!("{base}/invocation/next"), get(next))
            .route(
                &format!("{base}/invocation/{{id}}/response"),
                post(response),
            )
            .route(&format!("{base}/invocation/{{id}}/error"), post(error))
            .route(&format!("{base}/init/error"), post(init_error))
            .with_state(shared);
        let (address, server) = crate::http::spawn(app).await?;
        Ok(Self {
            address: address.to_string(),
            polls,
            events,
            outcomes,
            server,
            waiting: None,
        })
    }

    /// Waits for the function to poll for work; when it polled.
    ///
    /// # Errors
    /// When it does not within `within`, or it reported an init error.
    pub async fn polled(&mut self, within: Duration) -> anyhow::Result<Instant> {
        if let Some(at) = self.waiting {
            return Ok(at);
        }
        tokio::select! {
            at = self.polls.recv() => {
                let at = at.context("the Runtime API stopped")?;
                self.waiting = Some(at);
                Ok(at)
            }
            outcome = self.outcomes.recv() => match outcome {
                Some(o) => bail!("the function posted {} before it polled: {}", o.id, String::from_utf8_lossy(&o.body)),
                None => bail!("the Runtime API stopped"),
            },
            () = tokio::time::sleep(within) => bail!("the function did not poll within {within:?}"),
        }
    }

    /// Hands `event` to the polling function and waits for its outcome and its next poll.
    ///
    /// # Errors
    /// When the function does not poll, answer or poll again within `within` each.
    pub async fn invoke(&mut self, event: Vec<u8>, within: Duration) -> anyhow::Result<Invoked> {
        self.polled(within).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let trace = trace_header();
        let handed = Instant::now();
        self.waiting = None;
        self.events
            .send(Event {
                id: id.clone(),
                trace: trace.clone(),
                body: event,
            })
            .await
            .map_err(|_| anyhow::anyhow!("the Runtime API stopped"))?;
        let outcome = tokio::time::timeout(within, self.outcomes.recv())
            .await
            .with_context(|| format!("no response within {within:?}"))?
            .context("the Runtime API stopped")?;
        if outcome.id != id {
            bail!("an outcome for {} while {id} ran", outcome.id);
        }
        let next = self.polled(within).await?;
        Ok(Invoked {
            trace,
            latency: outcome.at - handed,
            billed: next - handed,
            outcome,
        })
    }
}

/// A fresh X-Ray trace header, `Root=1-<epoch seconds>-<24 hex>;Parent=<16 hex>;Sampled=0`.
fn trace_header() -> String {
    let hex = |n: usize| uuid::Uuid::new_v4().simple().to_string()[..n].to_owned();
    format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        hex(24),
        hex(16),
    )
}
