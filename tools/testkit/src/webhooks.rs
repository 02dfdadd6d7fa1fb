//! Webhook receivers for tests: a loopback HTTP server that records every request it gets
//! (headers and body bytes) and answers with a status the test sets; and the check of
//! Standard Webhooks signatures by an independent implementation, the reference Python library
//! `standardwebhooks` in the project's venv (`scripts/venv.sh test`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::{json, Value};

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names in lower case; a repeated header's values joined with `, `.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A receiver on `127.0.0.1`, answering every POST with [`Receiver::answer`]'s status (200 at
/// first).
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    pub async fn start() -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let (r, s) = (received.clone(), status.clone());
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (r, s) = (r.clone(), s.clone());
            async move {
                let mut map = BTreeMap::<String, String>::new();
                for (name, value) in &headers {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    map.entry(name.as_str().to_owned())
                        .and_modify(|v| {
                            v.push_str(", ");
                            v.push_str(&value);
                        })
                        .or_insert(value);
                }
                r.lock().unwrap().push(Received {
                    path: uri.path().to_owned(),
                    headers: map,
                    body: body.to_vec(),
                });
                StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
            }
        });
        let addr = crate::http::serve(app).await;
        Self {
            addr,
            received,
            status,
        }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers every later request with `status`.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `count` requests arrived (at most `timeout`) and returns them all.
    ///
    /// # Panics
    /// When they do not arrive in time.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= count {
                return got;
            }
            assert!(
                started.elapsed() < timeout,
                "the receiver got {} of {count} requests within {timeout:?}: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Verifies each request's signature with `secret` by the reference implementation
/// (`standardwebhooks.Webhook(secret).verify(body, headers)`), which also checks that the
/// timestamp is within five minutes of now. `Ok` or the library's error, per request.
///
/// # Panics
/// When the venv lacks the library (run `scripts/venv.sh test`) or Python fails to run.
pub fn verify_standard_webhooks(secret: &str, requests: &[Received]) -> Vec<Result<(), String>> {
    const VERIFIER: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
results = []
for item in json.load(sys.stdin):
    try:
        Webhook(item["secret"]).verify(item["body"], item["headers"])
        results.append(None)
    except Exception as e:
        results.append(f"{type(e).__name__}: {e}")
print(json.dumps(results))
"#;
    let python = crate::repo_root().join(".local/venv/bin/python");
    assert!(
        python.exists(),
        "the project's Python environment is missing ({}): run `make test`, or \
         `scripts/venv.sh test`",
        python.display()
    );
    let input: Vec<Value> = requests
        .iter()
        .map(|r| {
            json!({
                "secret": secret,
                "body": String::from_utf8(r.body.clone()).expect("a UTF-8 body"),
                "headers": r.headers,
            })
        })
        .collect();
    let mut child = std::process::Command::new(python)
        .args(["-c", VERIFIER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the Python verifier");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(serde_json::to_string(&input).unwrap().as_bytes())
            .expect("write the requests");
    }
    let output = child.wait_with_output().expect("the Python verifier");
    assert!(
        output.status.success(),
        "the Python verifier failed (is standardwebhooks installed? `scripts/venv.sh test`): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Option<String>> =
        serde_json::from_slice(&output.stdout).expect("the verifier's JSON answer");
    results
        .into_iter()
        .map(|r| match r {
            None => Ok(()),
            Some(e) => Err(e),
        })
        .collect()
}
