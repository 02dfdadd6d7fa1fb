//! The webhook executor against local HTTP servers that answer 200, 404 and 500, hang, and
//! reset the connection; the SSRF guard on literal and resolved addresses; the circuit breaker.

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::HeaderMap;
use axum::routing::any;
use axum::Router;
use serde_json::{json, Value};
use support::MemoryStore;
use tms::domain::webhook::WebhookPolicy;
use tms::{CorrelationId, NewTask, Source, Task, TaskError, TaskId, TaskKind};
use tms_testkit::tasks::tenant;
use tms_worker::executor::Lookup;
use tms_worker::{Executor, WebhookExecutor, WebhookSettings};

/// What the local receiver saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, HeaderMap, String)>>>);

impl Seen {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

async fn receiver() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let log = |status: u16| {
        let seen = seen.clone();
        any(
            move |uri: axum::http::Uri, headers: HeaderMap, body: String| async move {
                seen.0
                    .lock()
                    .unwrap()
                    .push((uri.path().to_owned(), headers, body));
                axum::http::StatusCode::from_u16(status).unwrap()
            },
        )
    };
    let router = Router::new()
        .route("/ok", log(200))
        .route("/missing", log(404))
        .route("/broken", log(500))
        .route("/busy", log(429))
        .route(
            "/hang",
            any(|| async {
                std::future::pending::<()>().await;
            }),
        );
    (tms_testkit::http::serve(router).await, seen)
}

/// Accepts connections and resets them as soon as the request arrives.
async fn resetter() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.readable().await;
            let _ = stream.try_read(&mut buf);
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    });
    addr
}

/// Names resolved from a fixed table, standing in for DNS.
struct Table(HashMap<String, IpAddr>);

#[async_trait]
impl Lookup for Table {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        self.0.get(host).map(|ip| vec![*ip]).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} not found"))
        })
    }
}

fn executor(allow: &str, names: &[(&str, &str)]) -> WebhookExecutor {
    let settings = WebhookSettings {
        policy: allow.parse::<WebhookPolicy>().unwrap(),
        timeout: Duration::from_secs(1),
    };
    let table = names
        .iter()
        .map(|(n, ip)| ((*n).to_owned(), ip.parse().unwrap()))
        .collect();
    WebhookExecutor::with_lookup(&settings, Arc::new(Table(table)))
}

/// A webhook task, stored as the store would hold it (payload not re-validated here: the
/// executor must refuse on its own what creation would have refused).
fn task(payload: Value) -> Task {
    task_of("demo", payload)
}

fn task_of(tenant_name: &str, payload: Value) -> Task {
    MemoryStore::default().insert(&NewTask {
        id: TaskId::new(),
        tenant: tenant(tenant_name),
        kind: TaskKind::Webhook,
        payload,
        max_attempts: 5,
        run_after: None,
        idempotency_key: None,
        request_hash: [0; 32],
        correlation_id: CorrelationId::parse("corr-hook-1").unwrap(),
        source: Source::Api,
        priority: tms::Priority::Normal,
    })
}

async fn call(ex: &WebhookExecutor, url: &str) -> Result<Value, TaskError> {
    ex.execute(&task(json!({ "url": url }))).await
}

fn code(result: Result<Value, TaskError>) -> (String, bool) {
    let e = result.expect_err("a failure");
    let retryable = e.is_retryable();
    (e.code, retryable)
}

#[tokio::test]
async fn a_2xx_answer_succeeds_with_the_idempotency_key_and_correlation_id() {
    let (addr, seen) = receiver().await;
    let ex = executor("http,loopback", &[]);
    let t = task(json!({
        "url": format!("http://{addr}/ok?x=1"),
        "method": "PUT",
        "headers": {"X-Partner": "acme"},
        "body": {"order": 42}
    }));
    assert_eq!(ex.execute(&t).await.unwrap(), json!({"status": 200}));
    let (path, headers, body) = seen.0.lock().unwrap()[0].clone();
    assert_eq!(path, "/ok");
    assert_eq!(headers["idempotency-key"], t.id.to_string().as_str());
    assert_eq!(headers["x-correlation-id"], "corr-hook-1");
    assert_eq!(headers["x-partner"], "acme");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"order": 42})
    );
}

#[tokio::test]
async fn answers_and_transport_failures_are_classified() {
    let (addr, _) = receiver().await;
    let reset = resetter().await;
    let ex = executor("http,loopback", &[]);
    assert_eq!(
        code(call(&ex, &format!("http://{addr}/missing")).await),
        ("http_404".to_owned(), false),
        "other 4xx: permanent"
    );
    assert_eq!(
        code(call(&ex, &format!("http://{addr}/broken")).await),
        ("http_500".to_owned(), true),
        "5xx: retryable"
    );
    assert_eq!(
        code(call(&ex, &format!("http://{addr}/busy")).await),
        ("http_429".to_owned(), true)
    );
    assert_eq!(
        code(call(&ex, &format!("http://{addr}/hang")).await),
        ("timeout".to_owned(), true),
        "no answer within the timeout: retryable"
    );
    assert_eq!(
        code(call(&ex, &format!("http://{reset}/ok")).await),
        ("connection".to_owned(), true),
        "reset: retryable"
    );
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nobody = closed.local_addr().unwrap();
    drop(closed);
    assert_eq!(
        code(call(&ex, &format!("http://{nobody}/ok")).await),
        ("connection".to_owned(), true),
        "refused: retryable"
    );
}

#[tokio::test]
async fn literal_private_loopback_link_local_and_metadata_addresses_are_refused() {
    let (addr, seen) = receiver().await;
    let ex = executor("http", &[]);
    for url in [
        format!("http://{addr}/ok"),
        format!("http://localhost:{}/ok", addr.port()),
        "http://10.0.0.7/hook".to_owned(),
        "http://169.254.10.10/hook".to_owned(),
        "http://[::1]/hook".to_owned(),
    ] {
        let (code, retryable) = code(call(&ex, &url).await);
        assert_eq!((code.as_str(), retryable), ("url_refused", false), "{url}");
    }
    let everything = executor("http,loopback,private,link-local", &[]);
    assert_eq!(
        code(call(&everything, "http://169.254.169.254/latest/meta-data").await),
        ("url_refused".to_owned(), false),
        "metadata is refused whatever the configuration"
    );
    let https_only = executor("loopback", &[]);
    assert_eq!(
        code(call(&https_only, &format!("http://{addr}/ok")).await).0,
        "url_refused",
        "http needs the deployment's consent"
    );
    assert_eq!(seen.count(), 0, "no request left");
}

#[tokio::test]
async fn names_resolving_to_refused_addresses_are_refused_before_connecting() {
    let (addr, seen) = receiver().await;
    let names = [
        ("hooks.partner.test", "127.0.0.1"),
        ("intranet.partner.test", "10.1.2.3"),
        ("meta.partner.test", "169.254.169.254"),
        ("link.partner.test", "169.254.7.7"),
        ("v6.partner.test", "::1"),
    ];
    let ex = executor("http", &names);
    for (name, ip) in names {
        let e = call(&ex, &format!("http://{name}:{}/ok", addr.port()))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.is_retryable()),
            ("address_refused", false),
            "{name}"
        );
        assert!(
            !e.message.contains(ip),
            "the resolved address stays private: {}",
            e.message
        );
        assert!(e.message.contains(name), "{}", e.message);
    }
    assert_eq!(seen.count(), 0, "no request left");

    let allowed = executor("http,loopback", &names);
    let ok = call(
        &allowed,
        &format!("http://hooks.partner.test:{}/ok", addr.port()),
    )
    .await;
    assert_eq!(
        ok.unwrap(),
        json!({"status": 200}),
        "the checked address is the one called"
    );
    assert_eq!(seen.count(), 1);
    let still_refused = call(
        &allowed,
        &format!("http://intranet.partner.test:{}/ok", addr.port()),
    )
    .await;
    assert_eq!(code(still_refused).0, "address_refused");
}

#[tokio::test]
async fn a_failing_host_opens_its_circuit_and_is_not_called_while_open() {
    let (addr, seen) = receiver().await;
    let ex = executor("http,loopback", &[]);
    for _ in 0..10 {
        assert_eq!(
            code(call(&ex, &format!("http://{addr}/broken")).await).0,
            "http_500"
        );
    }
    assert_eq!(seen.count(), 10);
    let (code_open, retryable) = code(call(&ex, &format!("http://{addr}/ok")).await);
    assert_eq!((code_open.as_str(), retryable), ("circuit_open", true));
    assert_eq!(seen.count(), 10, "an open host is not called");
    let other = receiver().await.0;
    assert!(
        call(&ex, &format!("http://{other}/ok")).await.is_ok(),
        "other hosts still are"
    );
}

#[tokio::test]
async fn one_tenants_failing_partner_opens_nobody_elses_circuit() {
    let (addr, seen) = receiver().await;
    let ex = executor("http,loopback", &[]);
    let broken = json!({ "url": format!("http://{addr}/broken") });
    for _ in 0..10 {
        let e = ex
            .execute(&task_of("demo", broken.clone()))
            .await
            .unwrap_err();
        assert_eq!(e.code, "http_500");
    }
    let ok = json!({ "url": format!("http://{addr}/ok") });
    let open = ex.execute(&task_of("demo", ok.clone())).await.unwrap_err();
    assert_eq!(open.code, "circuit_open");
    assert_eq!(
        ex.execute(&task_of("acme", ok)).await.unwrap(),
        json!({"status": 200}),
        "another tenant of the same host is still served"
    );
    assert_eq!(seen.count(), 11);
}

#[tokio::test]
async fn a_callers_content_type_is_sent_once() {
    let (addr, seen) = receiver().await;
    let ex = executor("http,loopback", &[]);
    let payload = json!({
        "url": format!("http://{addr}/ok"),
        "headers": {"content-type": "application/vnd.partner+json"},
        "body": {"a": 1}
    });
    ex.execute(&task(payload)).await.unwrap();
    let (_, headers, _) = seen.0.lock().unwrap()[0].clone();
    let types: Vec<_> = headers.get_all("content-type").iter().collect();
    assert_eq!(types, ["application/vnd.partner+json"]);
    let plain = json!({ "url": format!("http://{addr}/ok"), "body": {"a": 1} });
    ex.execute(&task(plain)).await.unwrap();
    let (_, headers, _) = seen.0.lock().unwrap()[1].clone();
    let types: Vec<_> = headers.get_all("content-type").iter().collect();
    assert_eq!(types, ["application/json"]);
}

#[tokio::test]
async fn the_ports_of_the_stack_are_refused_even_where_loopback_is_allowed() {
    // As in `make dev`: loopback allowed for a tenant's own receiver, never for the emulator,
    // PostgreSQL or the API, whose ports are listed in TMS_WEBHOOK_DENY_PORTS.
    let (stack, seen) = receiver().await;
    let (own, own_seen) = receiver().await;
    let policy = "http,loopback"
        .parse::<WebhookPolicy>()
        .unwrap()
        .with_denied_ports(stack.port().to_string().parse().unwrap());
    let settings = WebhookSettings {
        policy,
        timeout: Duration::from_secs(1),
    };
    let names = [("aws.partner.test", "127.0.0.1")];
    let table = names
        .iter()
        .map(|(n, ip)| ((*n).to_owned(), ip.parse().unwrap()))
        .collect();
    let ex = WebhookExecutor::with_lookup(&settings, Arc::new(Table(table)));
    for url in [
        format!("http://127.0.0.1:{}/ok", stack.port()),
        format!("http://localhost:{}/ok", stack.port()),
        format!("http://[::1]:{}/ok", stack.port()),
        // A name is not a way round: it may resolve to the stack on any port.
        format!("http://aws.partner.test:{}/ok", own.port()),
    ] {
        // Literal addresses are refused with the URL, names once resolved.
        let e = call(&ex, &url).await.unwrap_err();
        assert!(
            ["url_refused", "address_refused"].contains(&e.code.as_str()) && !e.is_retryable(),
            "{url}: {e:?}"
        );
    }
    assert_eq!(seen.count() + own_seen.count(), 0, "nothing reached");
    assert!(call(&ex, &format!("http://127.0.0.1:{}/ok", own.port()))
        .await
        .is_ok());
    assert_eq!(own_seen.count(), 1);
}

#[tokio::test]
async fn a_malformed_payload_is_a_permanent_failure() {
    let ex = executor("http,loopback", &[]);
    for payload in [
        json!({}),
        json!({"url": "http://127.0.0.1:9/ok", "headers": {"X-A": 1}}),
        json!({"url": "http://127.0.0.1:9/ok", "method": "NOT A METHOD"}),
        json!({"url": "http://127.0.0.1:9/ok", "headers": {"X-A": "line\nbreak"}}),
    ] {
        let e = ex.execute(&task(payload.clone())).await.unwrap_err();
        assert!(!e.is_retryable(), "{payload}: {e:?}");
    }
}
