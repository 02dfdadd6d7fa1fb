//! The response contract of every event shape, with fake work and a local HTTP server standing
//! in for CloudFormation's presigned ResponseURL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::put;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use tms::adapters::postgres::bootstrap::BootstrapReport;
use tms_bootstrap::cfn::MAX_BODY_BYTES;
use tms_bootstrap::{function_handler, BootError, Bootstrap, Deps};
use tms_testkit::http::serve;

#[derive(Clone, Copy)]
enum Behaviour {
    Succeed,
    Fail(&'static str),
    Panic,
    Hang,
}

struct FakeWork {
    behaviour: Behaviour,
    runs: AtomicUsize,
}

#[async_trait]
impl Bootstrap for FakeWork {
    async fn run(&self) -> Result<BootstrapReport, BootError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        match self.behaviour {
            Behaviour::Succeed => Ok(BootstrapReport {
                database: "tms".into(),
                roles_created: vec![],
                migrations_applied: vec!["V1__init".into()],
                migrations_ahead: vec![],
            }),
            Behaviour::Fail(msg) => Err(BootError::AdminSecret(msg.into())),
            Behaviour::Panic => panic!("boom inside the work"),
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(600)).await;
                unreachable!()
            }
        }
    }
}

/// What the stand-in for S3 received: (content type, body).
type Received = Arc<Mutex<Vec<(Option<String>, Value, Instant)>>>;

async fn response_server() -> (String, Received) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/response",
        put(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                assert!(body.len() <= MAX_BODY_BYTES, "body of {} bytes", body.len());
                let ct = headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned());
                sink.lock().unwrap().push((
                    ct,
                    serde_json::from_slice(&body).unwrap(),
                    Instant::now(),
                ));
                StatusCode::OK
            }
        }),
    );
    let addr = serve(app).await;
    (
        format!("http://{addr}/response?X-Amz-Signature=abc"),
        received,
    )
}

fn cfn_event(request_type: &str, url: &str, physical: Option<&str>) -> Value {
    let mut event = json!({
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:tms-bootstrap",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/tms/guid",
        "RequestId": format!("req-{request_type}"),
        "ResourceType": "Custom::DatabaseBootstrap",
        "LogicalResourceId": "DatabaseBootstrap",
        "ResourceProperties": {"ServiceToken": "arn", "DeployId": "2"}
    });
    if let Some(p) = physical {
        event["PhysicalResourceId"] = json!(p);
    }
    if request_type == "Update" {
        event["OldResourceProperties"] = json!({"ServiceToken": "arn", "DeployId": "1"});
    }
    event
}

fn context(deadline_in: Duration) -> Context {
    let mut ctx = Context::default();
    ctx.request_id = "lambda-req".into();
    let deadline = SystemTime::now() + deadline_in;
    ctx.deadline = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    ctx
}

fn deps(behaviour: Behaviour) -> (Deps, Arc<FakeWork>) {
    let work = Arc::new(FakeWork {
        behaviour,
        runs: AtomicUsize::new(0),
    });
    (
        Deps {
            bootstrap: work.clone(),
            rotation: None,
            http: Default::default(),
        },
        work,
    )
}

async fn invoke(deps: &Deps, event: Value, deadline_in: Duration) -> Result<Value, String> {
    function_handler(deps, LambdaEvent::new(event, context(deadline_in)))
        .await
        .map_err(|e| e.to_string())
}

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn create_then_update_answer_success_with_a_stable_physical_id() {
    let (url, received) = response_server().await;
    let (deps, work) = deps(Behaviour::Succeed);
    invoke(&deps, cfn_event("Create", &url, None), MINUTE)
        .await
        .unwrap();
    let created = received.lock().unwrap()[0].1.clone();
    assert_eq!(created["Status"], "SUCCESS");
    assert_eq!(
        created["StackId"],
        "arn:aws:cloudformation:eu-west-1:123456789012:stack/tms/guid"
    );
    assert_eq!(created["RequestId"], "req-Create");
    assert_eq!(created["LogicalResourceId"], "DatabaseBootstrap");
    assert_eq!(created["Data"]["MigrationsApplied"], "1");
    let physical = created["PhysicalResourceId"].as_str().unwrap().to_owned();
    assert!(!physical.is_empty());

    invoke(&deps, cfn_event("Update", &url, Some(&physical)), MINUTE)
        .await
        .unwrap();
    let updated = received.lock().unwrap()[1].1.clone();
    assert_eq!(updated["Status"], "SUCCESS");
    assert_eq!(updated["RequestId"], "req-Update");
    assert_eq!(
        updated["PhysicalResourceId"],
        physical.as_str(),
        "an update is not a replacement"
    );
    assert_eq!(
        work.runs.load(Ordering::SeqCst),
        2,
        "create and update both run the bootstrap"
    );
    let content_type = received.lock().unwrap()[0].0.clone();
    assert!(
        content_type.is_none_or(|ct| ct.is_empty()),
        "no content type: the URL is signed without one"
    );
}

#[tokio::test]
async fn an_error_in_the_work_answers_failed_with_the_reason() {
    let (url, received) = response_server().await;
    let (deps, _) = deps(Behaviour::Fail("/tms/admin"));
    let result = invoke(&deps, cfn_event("Create", &url, None), MINUTE).await;
    assert!(
        result.is_ok(),
        "the invocation itself succeeds, or Lambda would retry it"
    );
    let body = received.lock().unwrap()[0].1.clone();
    assert_eq!(body["Status"], "FAILED");
    assert!(
        body["Reason"].as_str().unwrap().contains("/tms/admin"),
        "{body}"
    );
    assert!(!body["PhysicalResourceId"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn delete_changes_nothing_and_succeeds_even_after_a_failed_create() {
    let (url, received) = response_server().await;
    let (failing, _) = deps(Behaviour::Fail("x"));
    invoke(&failing, cfn_event("Create", &url, None), MINUTE)
        .await
        .unwrap();
    let physical = received.lock().unwrap()[0].1["PhysicalResourceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (deps, work) = deps(Behaviour::Panic);
    invoke(&deps, cfn_event("Delete", &url, Some(&physical)), MINUTE)
        .await
        .unwrap();
    let body = received.lock().unwrap()[1].1.clone();
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["PhysicalResourceId"], physical.as_str());
    assert_eq!(
        work.runs.load(Ordering::SeqCst),
        0,
        "delete never touches the database"
    );
}

#[tokio::test]
async fn a_panic_in_the_work_answers_failed() {
    let (url, received) = response_server().await;
    let (deps, _) = deps(Behaviour::Panic);
    invoke(
        &deps,
        cfn_event("Update", &url, Some("tms-bootstrap/DatabaseBootstrap")),
        MINUTE,
    )
    .await
    .unwrap();
    let body = received.lock().unwrap()[0].1.clone();
    assert_eq!(body["Status"], "FAILED");
    assert!(
        body["Reason"].as_str().unwrap().contains("panicked"),
        "{body}"
    );
}

#[tokio::test]
async fn slow_work_answers_failed_before_the_function_deadline() {
    let (url, received) = response_server().await;
    let (deps, _) = deps(Behaviour::Hang);
    let started = Instant::now();
    let deadline_in = Duration::from_secs(8);
    invoke(&deps, cfn_event("Create", &url, None), deadline_in)
        .await
        .unwrap();
    let (_, body, at) = received.lock().unwrap()[0].clone();
    assert_eq!(body["Status"], "FAILED");
    assert!(
        body["Reason"].as_str().unwrap().contains("did not finish"),
        "{body}"
    );
    assert!(
        at.duration_since(started) < deadline_in,
        "answered before the deadline"
    );
}

#[tokio::test]
async fn a_huge_failure_reason_still_fits_the_size_limit() {
    let (url, received) = response_server().await;
    let long: &'static str = Box::leak("x".repeat(20_000).into_boxed_str());
    let (deps, _) = deps(Behaviour::Fail(long));
    invoke(&deps, cfn_event("Create", &url, None), MINUTE)
        .await
        .unwrap();
    assert_eq!(received.lock().unwrap()[0].1["Status"], "FAILED");
}

#[tokio::test]
async fn an_undeliverable_response_fails_the_invocation() {
    let (deps, _) = deps(Behaviour::Succeed);
    let err = invoke(
        &deps,
        cfn_event("Create", "http://127.0.0.1:9/nowhere", None),
        MINUTE,
    )
    .await
    .unwrap_err();
    assert!(err.contains("could not deliver"), "{err}");
}

#[tokio::test]
async fn terraform_lifecycle_and_direct_invocations() {
    let (deps, work) = deps(Behaviour::Succeed);
    for action in ["create", "update"] {
        let out = invoke(
            &deps,
            json!({"action": "bootstrap", "tf": {"action": action}}),
            MINUTE,
        )
        .await
        .unwrap();
        assert_eq!(out["status"], "ok");
        assert_eq!(out["report"]["migrations_applied"], json!(["V1__init"]));
    }
    let out = invoke(
        &deps,
        json!({"action": "bootstrap", "tf": {"action": "delete"}}),
        MINUTE,
    )
    .await
    .unwrap();
    assert_eq!(out["status"], "skipped");
    assert_eq!(work.runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        invoke(&deps, json!({"action": "bootstrap"}), MINUTE)
            .await
            .unwrap()["status"],
        "ok"
    );
    let err = invoke(&deps, json!({"hello": 1}), MINUTE)
        .await
        .unwrap_err();
    assert!(err.contains("unrecognised event"), "{err}");
    let (failing, _) = deps_failing();
    let err = invoke(&failing, json!({"action": "bootstrap"}), MINUTE)
        .await
        .unwrap_err();
    assert!(
        err.contains("/tms/x"),
        "a failed direct bootstrap is a function error: {err}"
    );
}

fn deps_failing() -> (Deps, Arc<FakeWork>) {
    deps(Behaviour::Fail("/tms/x"))
}
