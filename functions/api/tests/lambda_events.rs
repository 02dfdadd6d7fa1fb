//! The router as Lambda runs it: API Gateway HTTP API (payload 2.0) events parsed by
//! `lambda_http`, answered by the same router, with in-memory fakes of the ports.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::to_bytes;
use serde_json::{json, Value};
use tms::ports::TaskRepository;
use tms::telemetry::metrics::MemorySink;
use tms::SubmissionRules;
use tms_api::auth::{token_hash, TokenVerifier};
use tms_api::{router, AppState, Ports};
use tms_testkit::fakes::{MemoryQueue, MemoryRepository, StaticSecrets};
use tower::ServiceExt;

struct Fakes {
    repo: Arc<MemoryRepository>,
    console: Arc<tms_testkit::fakes::MemoryConsole>,
    queue: Arc<MemoryQueue>,
    outbox: tms_api::outbox::Outbox,
    app: axum::Router,
}

fn fakes() -> Fakes {
    let repo = Arc::new(MemoryRepository::default());
    let queue = Arc::new(MemoryQueue::default());
    let console = Arc::new(tms_testkit::fakes::MemoryConsole::default());
    let tokens = json!({ token_hash("token-for-demo"): "demo" }).to_string();
    let secrets = Arc::new(StaticSecrets(HashMap::from([(
        "/tms/api-tokens".to_owned(),
        tokens,
    )])));
    let ports = Ports {
        repo: repo.clone(),
        imports: Arc::new(tms_testkit::fakes::NoImports),
        objects: Arc::new(tms_testkit::fakes::NoObjects),
        queue: queue.clone(),
        metrics: Arc::new(MemorySink::default()),
        console: console.clone(),
        triggers: Arc::new(tms_testkit::fakes::NoTriggers),
        schedules: Arc::new(tms_testkit::fakes::NoSchedules),
        subscriptions: Arc::new(tms_testkit::fakes::NoSubscriptions),
        webhook_signing: Arc::new(tms_testkit::fakes::NoSubscriptions),
    };
    let mut state = AppState::new(
        ports,
        TokenVerifier::new(secrets, Some("/tms/api-tokens".into())),
        "k",
        SubmissionRules::default(),
    );
    // As `main` wires it under Lambda: the messages wait for the settle after the response.
    state.outbox = state.outbox.collecting();
    Fakes {
        repo,
        console,
        queue,
        outbox: state.outbox.clone(),
        app: router(state),
    }
}

fn event(name: &str) -> lambda_http::Request {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read_to_string(path).expect("fixture");
    lambda_http::request::from_str(&raw).expect("an API Gateway v2 event")
}

async fn call(
    app: axum::Router,
    req: lambda_http::Request,
) -> (u16, HashMap<String, String>, Value) {
    let resp = app.oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_base64_api_gateway_create_event_creates_and_queues_the_task() {
    let f = fakes();
    let (status, headers, body) = call(f.app.clone(), event("apigw-v2-create.json")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(headers["x-correlation-id"], "apigw-fixture-1");
    assert_eq!(body["payload"], json!({"note": "from API Gateway"}));
    assert_eq!(body["idempotency_key"], "fixture-1");
    let stored = f.repo.tasks();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].tenant.as_str(), "demo");
    f.outbox.settle().await;
    assert_eq!(f.queue.sent.lock().unwrap().len(), 1);
    let (replay_status, replay_headers, _) = call(f.app, event("apigw-v2-create.json")).await;
    assert_eq!(replay_status, 200);
    assert_eq!(replay_headers["idempotent-replayed"], "true");
}

#[tokio::test]
async fn jwt_claims_from_the_authorizer_name_the_tenant() {
    let f = fakes();
    let acme = tms_testkit::tasks::new_task("acme", "noop", json!({}), None);
    let demo = tms_testkit::tasks::new_task("demo", "noop", json!({}), None);
    f.repo.create(&acme).await.unwrap();
    f.repo.create(&demo).await.unwrap();
    let (status, _, body) = call(f.app, event("apigw-v2-jwt-list.json")).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [acme.id.to_string()],
        "custom:tenant wins and scopes the list"
    );
}

#[tokio::test]
async fn the_sub_claim_is_the_tenant_without_custom_tenant_and_an_invalid_one_is_401() {
    let mut req = event("apigw-v2-jwt-list.json");
    let ctx = req
        .extensions_mut()
        .get_mut::<lambda_http::request::RequestContext>()
        .unwrap();
    let lambda_http::request::RequestContext::ApiGatewayV2(ctx) = ctx else {
        panic!("v2")
    };
    let claims = &mut ctx
        .authorizer
        .as_mut()
        .unwrap()
        .jwt
        .as_mut()
        .unwrap()
        .claims;
    claims.remove("custom:tenant");
    let sub_tenant = claims["sub"].clone();
    let f = fakes();
    let mine = tms_testkit::tasks::new_task(&sub_tenant, "noop", json!({}), None);
    f.repo.create(&mine).await.unwrap();
    let (status, _, body) = call(f.app.clone(), req).await;
    assert_eq!(status, 200);
    assert_eq!(body["items"][0]["id"], mine.id.to_string());

    let mut bad = event("apigw-v2-jwt-list.json");
    if let Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) =
        bad.extensions_mut().get_mut()
    {
        ctx.authorizer
            .as_mut()
            .unwrap()
            .jwt
            .as_mut()
            .unwrap()
            .claims
            .insert("custom:tenant".into(), "not/valid".into());
    }
    let (status, headers, body) = call(f.app, bad).await;
    assert_eq!(status, 401);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["status"], 401);
}

#[tokio::test]
async fn without_claims_an_unknown_token_is_401_even_under_lambda() {
    let f = fakes();
    let mut req = event("apigw-v2-create.json");
    req.headers_mut()
        .insert("authorization", "Bearer wrong".parse().unwrap());
    let (status, headers, body) = call(f.app, req).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(body["detail"], "unknown token");
    assert!(f.repo.tasks().is_empty());
}

#[tokio::test]
async fn a_failing_queue_still_answers_202() {
    let f = fakes();
    f.queue
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, _, body) = call(f.app, event("apigw-v2-create.json")).await;
    assert_eq!(status, 202);
    assert!(body["enqueued_at"].is_null());
    f.outbox.settle().await;
    assert_eq!(f.repo.tasks()[0].enqueued_at, None, "left for the relay");
}

/// What API Gateway's HTTP API sends for a browser's request to the console: payload 2.0, the
/// cookies in their own field, a form body base64-encoded.
fn console_event(
    method: &str,
    path: &str,
    cookies: &[&str],
    form: Option<&str>,
) -> lambda_http::Request {
    use base64::Engine as _;
    let mut headers = json!({"host": "abc123.execute-api.eu-west-1.amazonaws.com"});
    if form.is_some() {
        headers["content-type"] = json!("application/x-www-form-urlencoded");
    }
    let event = json!({
        "version": "2.0", "routeKey": "ANY /console/{proxy+}", "rawPath": path, "rawQueryString": "",
        "cookies": cookies, "headers": headers,
        "requestContext": {"accountId": "123456789012", "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com", "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "Mozilla/5.0"},
            "requestId": "console-1", "routeKey": "ANY /console/{proxy+}", "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000", "timeEpoch": 1795428000000u64},
        "body": form.map(|f| base64::engine::general_purpose::STANDARD.encode(f)),
        "isBase64Encoded": form.is_some()
    });
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event")
}

#[tokio::test]
async fn the_console_works_through_api_gateway_with_its_cookies_field() {
    use tms::ports::ConsoleStore;
    let f = fakes();
    let task = tms_testkit::tasks::new_task("demo", "noop", json!({}), None);
    f.repo.create(&task).await.unwrap();

    // Sign-in page: the form's cookie is Secure off loopback.
    let resp = f
        .app
        .clone()
        .oneshot(console_event("GET", "/console/login", &[], None))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.starts_with("tms_login=") && set.contains("Secure"),
        "{set}"
    );
    let form_token = set
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("tms_login=")
        .to_owned();

    // The sign-in form posted base64-encoded, with the cookie from the cookies field.
    let login_cookie = format!("tms_login={form_token}");
    let body = format!("token=token-for-demo&csrf={form_token}&next=%2Fconsole%2Ftasks");
    let resp = f
        .app
        .clone()
        .oneshot(console_event(
            "POST",
            "/console/login",
            &[&login_cookie],
            Some(&body),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/console/tasks");
    let session = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(session.starts_with("tms_session="), "{session}");

    // A page with the session cookie lists the tenant's task.
    let resp = f
        .app
        .clone()
        .oneshot(console_event(
            "GET",
            "/console/tasks",
            &["other=1", &session],
            None,
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let html = String::from_utf8(
        to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(html.contains(&task.id.to_string()), "the task is listed");
    let id = session.trim_start_matches("tms_session=");
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(id.as_bytes()).into();
    assert!(
        f.console.session(&digest).await.unwrap().is_some(),
        "stored by its hash"
    );
}
