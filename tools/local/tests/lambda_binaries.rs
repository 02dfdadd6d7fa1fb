//! The real function binaries under a Lambda Runtime API emulator (`cargo lambda watch
//! --only-lambda-apis`), each invoked with an AWS-shaped event: proof that every `main.rs`
//! wires a working function.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::put;
use serde_json::{json, Value};
use tms_local::stack::Names;
use tms_local::Stack;
use tms_testkit::runtime_api::{Invoked, RuntimeApi};
use tms_testkit::{repo_root, TestDb};
use tokio::process::{Child, Command};

const FUNCTIONS: [&str; 5] = [
    "tms-api",
    "tms-worker",
    "tms-importer",
    "tms-scheduler",
    "tms-bootstrap",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_port(port: u16, what: &str) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Builds the five binaries (a no-op when `make test` built them already).
fn build_binaries() {
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo.current_dir(repo_root()).arg("build").arg("--quiet");
    for f in FUNCTIONS {
        cargo.args(["-p", f]);
    }
    let status = cargo.status().expect("run cargo build");
    assert!(status.success(), "building the function binaries failed");
}

struct Emulator {
    port: u16,
    children: Vec<Child>,
}

impl Emulator {
    async fn start() -> Self {
        let cargo_lambda = repo_root().join(".local/venv/bin/cargo-lambda");
        assert!(
            cargo_lambda.exists(),
            "cargo-lambda is not installed ({}): run `make test`, or `scripts/venv.sh test`",
            cargo_lambda.display()
        );
        let port = free_port();
        let watch = Command::new(cargo_lambda)
            .current_dir(repo_root())
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start cargo lambda watch");
        wait_port(port, "cargo lambda watch").await;
        Self {
            port,
            children: vec![watch],
        }
    }

    /// Starts a function binary polling the emulator's Runtime API for `name`.
    fn function(&mut self, name: &str, env: Vec<(String, String)>) {
        let binary = repo_root().join("target/debug").join(name);
        let child = Command::new(binary)
            .envs(env)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt/{name}", self.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.children.push(child);
    }

    /// The Invoke API, as `aws lambda invoke` would call it.
    async fn invoke(&self, name: &str, event: &Value) -> Value {
        let resp = tms_local::http_client()
            .post(format!(
                "http://127.0.0.1:{}/2015-03-31/functions/{name}/invocations",
                self.port
            ))
            .json(event)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke {name}: {e}"));
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert!(status.is_success(), "{name} answered {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("{name} answered {body}"))
    }
}

fn sqs_record(id: &str, body: &str, queue: &str) -> Value {
    json!({
        "messageId": id, "receiptHandle": format!("handle-{id}"), "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795378580589",
            "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1795378580600"},
        "messageAttributes": {}, "md5OfBody": "0", "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:us-east-1:000000000000:{queue}"), "awsRegion": "us-east-1"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_function_binary_answers_its_aws_event_under_a_runtime_api_emulator() {
    tokio::task::spawn_blocking(build_binaries).await.unwrap();
    let db = TestDb::new().await;
    let mut stack = Stack::from_env(&repo_root()).unwrap();
    stack.names = Names::with_prefix(
        &format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        &db.name,
    );
    let aws = stack.sdk_config().await;
    let res = stack.provision(&aws).await.unwrap();
    let mut emulator = Emulator::start().await;
    for f in ["tms-api", "tms-worker", "tms-importer", "tms-scheduler"] {
        emulator.function(f, stack.function_env(&res));
    }
    emulator.function("tms-bootstrap", stack.bootstrap_env());
    let token = stack.tokens[0].1.clone();

    // API Gateway HTTP API (payload 2.0) -> tms-api
    let create = json!({
        "version": "2.0", "routeKey": "POST /v1/tasks", "rawPath": "/v1/tasks", "rawQueryString": "",
        "headers": {"authorization": format!("Bearer {token}"), "content-type": "application/json"},
        "requestContext": {"accountId": "000000000000", "apiId": "local", "domainName": "local",
            "domainPrefix": "local", "requestId": "r-1", "routeKey": "POST /v1/tasks", "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000", "timeEpoch": 1795428000000u64,
            "http": {"method": "POST", "path": "/v1/tasks", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"}},
        "body": r#"{"kind":"archive","payload":{"name":"from-lambda"}}"#,
        "isBase64Encoded": false
    });
    let response = emulator.invoke("tms-api", &create).await;
    assert_eq!(response["statusCode"], 202, "{response}");
    let body = response["body"].as_str().unwrap();
    let task: Value = serde_json::from_str(body).unwrap();
    let id = task["id"].as_str().unwrap().to_owned();

    // SQS batch with a work pointer -> tms-worker
    let pointer =
        json!({"task_id": id, "tenant": "demo", "correlation_id": task["correlation_id"]})
            .to_string();
    let batch = json!({"Records": [sqs_record("m-1", &pointer, "work"), sqs_record("m-2", "not a task", "work")]});
    let response = emulator.invoke("tms-worker", &batch).await;
    assert_eq!(
        response,
        json!({"batchItemFailures": []}),
        "the work ran; the poison went to the DLQ"
    );
    let status: String = db
        .admin()
        .await
        .query_one(
            "SELECT status FROM tms.tasks WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "succeeded");

    // S3 notification through SQS -> tms-importer
    let s3 = tms::adapters::s3::client(&aws);
    s3.put_object()
        .bucket(&res.bucket)
        .key("imports/demo/lambda.csv")
        .body(b"kind\nnoop\nnoop\n".to_vec().into())
        .send()
        .await
        .unwrap();
    let notification = json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": res.bucket},
        "object": {"key": "imports/demo/lambda.csv", "eTag": "etag-1", "size": 15}}}]}).to_string();
    let response = emulator
        .invoke(
            "tms-importer",
            &json!({"Records": [sqs_record("n-1", &notification, "import")]}),
        )
        .await;
    assert_eq!(response, json!({"batchItemFailures": []}));
    let (status, accepted): (String, i64) = {
        let row = db
            .admin()
            .await
            .query_one("SELECT status, rows_accepted FROM tms.imports", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((status.as_str(), accepted), ("completed", 2));

    // EventBridge scheduled event (its constant input) -> tms-scheduler
    let response = emulator
        .invoke("tms-scheduler", &json!({"job": "stats"}))
        .await;
    assert_eq!(response["status"], "done", "{response}");

    // CloudFormation custom resource -> tms-bootstrap, answered at the ResponseURL
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/cfn",
        put(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                "ok"
            }
        }),
    );
    let addr = tms_testkit::http::serve(app).await;
    let custom = json!({
        "RequestType": "Update", "ServiceToken": "arn:aws:lambda:us-east-1:000000000000:function:tms-bootstrap",
        "ResponseURL": format!("http://{addr}/cfn"), "StackId": "arn:aws:cloudformation:us-east-1:000000000000:stack/tms/1",
        "RequestId": "cfn-1", "ResourceType": "Custom::DatabaseBootstrap", "LogicalResourceId": "DatabaseBootstrap",
        "PhysicalResourceId": "tms-bootstrap/DatabaseBootstrap",
        "ResourceProperties": {"ServiceToken": "x", "DeployId": "2"}, "OldResourceProperties": {"ServiceToken": "x", "DeployId": "1"}
    });
    let response = emulator.invoke("tms-bootstrap", &custom).await;
    assert_eq!(response["status"], "SUCCESS", "{response}");
    let answer = received.lock().unwrap()[0].clone();
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(
        answer["PhysicalResourceId"],
        "tms-bootstrap/DatabaseBootstrap"
    );
    for mut child in emulator.children.drain(..) {
        let _ = child.start_kill();
    }
}

/// The JSON lines of a function's standard output.
fn json_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// A field of the line's event or of any span it is in.
fn field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["fields"]
        .get(name)
        .or_else(|| line["spans"].as_array()?.iter().find_map(|s| s.get(name)))
}

/// The lines inside a span named `span`: each carries the invocation's request id and trace.
fn assert_invocation_on_every_line(lines: &[Value], span: &str, invoked: &Invoked) -> usize {
    let inside: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|s| s["name"] == span))
        })
        .collect();
    for line in &inside {
        assert_eq!(
            field(line, "requestId"),
            Some(&json!(invoked.outcome.id)),
            "{line}"
        );
        assert_eq!(
            field(line, "xrayTraceId"),
            Some(&json!(invoked.trace)),
            "{line}"
        );
    }
    inside.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_lambda_every_log_line_of_a_request_or_task_names_the_invocation_and_its_trace() {
    tokio::task::spawn_blocking(build_binaries).await.unwrap();
    let db = TestDb::new().await;
    let mut stack = Stack::from_env(&repo_root()).unwrap();
    stack.names = Names::with_prefix(
        &format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        &db.name,
    );
    let aws = stack.sdk_config().await;
    let res = stack.provision(&aws).await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let within = Duration::from_secs(60);

    // The API: one create through API Gateway's event.
    let mut api = RuntimeApi::start("tms-api").await.unwrap();
    let api_log = logs.path().join("api.log");
    let _api = lambda_binary("tms-api", &api, stack.function_env(&res), &api_log);
    let token = stack.tokens[0].1.clone();
    let create = json!({
        "version": "2.0", "routeKey": "POST /v1/tasks", "rawPath": "/v1/tasks", "rawQueryString": "",
        "headers": {"authorization": format!("Bearer {token}"), "content-type": "application/json"},
        "requestContext": {"accountId": "000000000000", "apiId": "local", "domainName": "local",
            "domainPrefix": "local", "requestId": "r-1", "routeKey": "POST /v1/tasks", "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000", "timeEpoch": 1795428000000u64,
            "http": {"method": "POST", "path": "/v1/tasks", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"}},
        "body": r#"{"kind":"noop","payload":{}}"#,
        "isBase64Encoded": false
    });
    let created = api
        .invoke(serde_json::to_vec(&create).unwrap(), within)
        .await
        .unwrap();
    let response: Value = serde_json::from_slice(&created.outcome.body).unwrap();
    assert_eq!(response["statusCode"], 202, "{response}");
    let task: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    let lines = json_lines(&api_log);
    let served = lines
        .iter()
        .find(|l| l["fields"]["message"] == "request served")
        .unwrap_or_else(|| panic!("no 'request served' line in {lines:?}"));
    assert_eq!(
        field(served, "correlation_id"),
        Some(&task["correlation_id"])
    );
    assert!(assert_invocation_on_every_line(&lines, "request", &created) >= 1);

    // The worker: a batch with the task's work message.
    let mut worker = RuntimeApi::start("tms-worker").await.unwrap();
    let worker_log = logs.path().join("worker.log");
    let _worker = lambda_binary("tms-worker", &worker, stack.function_env(&res), &worker_log);
    let pointer =
        json!({"task_id": task["id"], "tenant": "demo", "correlation_id": task["correlation_id"]})
            .to_string();
    let batch = json!({"Records": [sqs_record("m-1", &pointer, "work")]});
    let ran = worker
        .invoke(serde_json::to_vec(&batch).unwrap(), within)
        .await
        .unwrap();
    let response: Value = serde_json::from_slice(&ran.outcome.body).unwrap();
    assert_eq!(response, json!({"batchItemFailures": []}));
    let lines = json_lines(&worker_log);
    let recorded = lines
        .iter()
        .find(|l| l["fields"]["message"] == "task attempt recorded")
        .unwrap_or_else(|| panic!("no 'task attempt recorded' line in {lines:?}"));
    assert_eq!(field(recorded, "task_id"), Some(&task["id"]));
    assert!(assert_invocation_on_every_line(&lines, "task", &ran) >= 1);
}

/// Starts the debug build of `name` against `runtime`, as Lambda would with JSON logs, its
/// standard output into `log`; killed when dropped.
fn lambda_binary(
    name: &str,
    runtime: &RuntimeApi,
    env: Vec<(String, String)>,
    log: &std::path::Path,
) -> Child {
    Command::new(repo_root().join("target/debug").join(name))
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", &runtime.address)
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}
