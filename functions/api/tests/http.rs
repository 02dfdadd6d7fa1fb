//! The API over real HTTP against the real database and the emulator.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};
use support::{
    is_problem, json, noop, problem, Options, TestApi, ACME_TOKEN, DEMO_TOKEN, OPERATOR_TOKEN,
};
use tms::{TaskId, WorkMessage, CORRELATION_ATTRIBUTE};

fn email() -> Value {
    json!({"kind": "email", "payload": {"sender": "a@example.com", "recipient": "b@example.com",
        "subject": "Hello", "body": "Hi"}})
}

#[tokio::test]
async fn create_answers_202_stores_the_task_and_sends_its_work_message() {
    let api = TestApi::start().await;
    let resp = api.create(&email()).await;
    assert_eq!(resp.status(), 202);
    let id = resp.headers()["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/v1/tasks/")
        .to_owned();
    let correlation = resp.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let task = json(resp).await;
    assert_eq!(task["id"], id.as_str());
    assert_eq!(task["status"], "pending");
    assert_eq!(task["kind"], "email");
    assert_eq!(task["source"], json!({"type": "api"}));
    assert_eq!(task["correlation_id"], correlation.as_str());
    assert!(
        task["enqueued_at"].is_null(),
        "answered once committed: the message is sent after the response"
    );
    let messages = api.queue.drain(&api.queue.url, 1).await;
    assert_eq!(messages.len(), 1);
    let msg: WorkMessage = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(msg.task_id.to_string(), id);
    assert_eq!(msg.tenant.as_str(), "demo");
    assert_eq!(msg.correlation_id.as_str(), correlation);
    let attr = &messages[0].message_attributes().unwrap()[CORRELATION_ATTRIBUTE];
    assert_eq!(attr.string_value(), Some(correlation.as_str()));
    // The marker is written after the response (the request does not wait for it).
    let marked = async {
        loop {
            let stored = api
                .get(&format!("/v1/tasks/{id}"), DEMO_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(stored.status(), 200);
            if json(stored).await["enqueued_at"].is_string() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), marked)
        .await
        .expect("the outbox marker is set within 5 s of the response");
    let metric = api
        .metrics
        .lines()
        .into_iter()
        .find(|l| l.contains("TasksCreated"))
        .expect("a TasksCreated line");
    assert_eq!(
        tms::telemetry::metrics::parse_emf(&metric).unwrap()["TasksCreated"],
        json!(1.0)
    );
}

#[tokio::test]
async fn when_the_queue_is_unreachable_the_task_is_still_accepted_for_the_relay() {
    let api = TestApi::start_with(Options {
        queue_url: Some("http://127.0.0.1:4566/000000000000/no-such-queue".into()),
        ..Options::default()
    })
    .await;
    let resp = api.create(&noop()).await;
    assert_eq!(
        resp.status(),
        202,
        "the task is durable, so the create succeeds"
    );
    let task = json(resp).await;
    assert!(task["enqueued_at"].is_null());
    let id = task["id"].as_str().unwrap();
    api.outbox.settle().await;
    let row = api
        .db
        .admin()
        .await
        .query_one(
            "SELECT enqueued_at IS NULL, status FROM tms.tasks WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    assert!(
        row.get::<_, bool>(0),
        "enqueued_at IS NULL: the relay will send it"
    );
    assert_eq!(row.get::<_, String>(1), "pending");
}

#[tokio::test]
async fn idempotency_key_replays_and_conflicts() {
    let api = TestApi::start().await;
    let send = |body: Value| {
        api.post("/v1/tasks", DEMO_TOKEN, &body)
            .header("Idempotency-Key", "order-42")
            .send()
    };
    let first = send(noop()).await.unwrap();
    assert_eq!(first.status(), 202);
    let first = json(first).await;
    let replay = send(noop()).await.unwrap();
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(json(replay).await["id"], first["id"]);
    let conflict = send(json!({"kind": "noop", "payload": {"other": true}}))
        .await
        .unwrap();
    let body = problem(conflict, 409).await;
    assert!(body["detail"].as_str().unwrap().contains("Idempotency-Key"));
    let other_tenant = api
        .post("/v1/tasks", ACME_TOKEN, &noop())
        .header("Idempotency-Key", "order-42")
        .send()
        .await
        .unwrap();
    assert_eq!(other_tenant.status(), 202, "keys are per tenant");
    let bad = api
        .post("/v1/tasks", DEMO_TOKEN, &noop())
        .header("Idempotency-Key", "has space")
        .send()
        .await
        .unwrap();
    problem(bad, 400).await;
}

#[tokio::test]
async fn the_header_and_the_body_follow_the_domains_one_idempotency_key_rule() {
    let api = TestApi::start().await;
    let longest = "k".repeat(tms::IDEMPOTENCY_KEY_MAX);
    let too_long = "k".repeat(tms::IDEMPOTENCY_KEY_MAX + 1);
    for (key, ok) in [
        (longest.as_str(), true),
        ("order:42/v1~!", true),
        (too_long.as_str(), false),
        ("has space", false),
    ] {
        assert_eq!(tms::validate_idempotency_key(key).is_ok(), ok, "{key}");
        let header = api
            .post("/v1/tasks", DEMO_TOKEN, &noop())
            .header("Idempotency-Key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(header.status().is_success(), ok, "header {key:?}");
        let body = json!({"tasks": [{"kind": "noop", "payload": {}, "idempotency_key": key}]});
        let batch = api
            .post("/v1/tasks/batch", ACME_TOKEN, &body)
            .send()
            .await
            .unwrap();
        if ok {
            assert_eq!(batch.status(), 200, "body {key:?}");
        } else {
            let p = problem(batch, 422).await;
            assert!(p.to_string().contains("idempotency_key"), "{p}");
        }
    }
    // Non-ASCII never passes, whichever way it comes.
    let p = problem(
        api.post(
            "/v1/tasks/batch",
            ACME_TOKEN,
            &json!({"tasks": [{"kind": "noop", "payload": {}, "idempotency_key": "bestellung-ü"}]}),
        )
        .send()
        .await
        .unwrap(),
        422,
    )
    .await;
    assert!(p.to_string().contains("idempotency_key"), "{p}");
}

#[tokio::test]
async fn run_after_is_bounded_by_the_one_window() {
    let api = TestApi::start().await;
    for (run_after, status) in [
        (tms::RUN_AFTER_EARLIEST, 202),
        ("9999-12-31T23:59:59Z", 202),
        ("1969-12-31T23:59:59Z", 422),
        ("-5000-01-01T00:00:00Z", 422),
        ("+10000-01-01T00:00:00Z", 422),
    ] {
        let resp = api
            .post(
                "/v1/tasks",
                DEMO_TOKEN,
                &json!({"kind": "noop", "payload": {}, "run_after": run_after}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{run_after}");
        if status == 422 {
            let p = problem(resp, 422).await;
            assert!(p.to_string().contains("/run_after"), "{run_after}: {p}");
        }
    }
}

#[tokio::test]
async fn twenty_concurrent_creates_with_one_key_make_exactly_one_task() {
    let api = TestApi::start().await;
    let requests = (0..20).map(|_| {
        api.post("/v1/tasks", DEMO_TOKEN, &noop())
            .header("Idempotency-Key", "same-key")
            .send()
    });
    let responses = futures::future::join_all(requests).await;
    let mut ids = HashSet::new();
    let mut created = 0;
    for r in responses {
        let r = r.unwrap();
        match r.status().as_u16() {
            202 => created += 1,
            200 => assert_eq!(r.headers()["idempotent-replayed"], "true"),
            other => panic!("unexpected status {other}"),
        }
        ids.insert(json(r).await["id"].as_str().unwrap().to_owned());
    }
    assert_eq!((created, ids.len()), (1, 1));
    let count: i64 = api
        .db
        .admin()
        .await
        .query_one("SELECT count(*) FROM tms.tasks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn batch_creates_in_one_transaction_with_per_item_results() {
    let api = TestApi::start().await;
    api.post("/v1/tasks", DEMO_TOKEN, &noop())
        .header("Idempotency-Key", "k0")
        .send()
        .await
        .unwrap();
    assert_eq!(api.queue.drain(&api.queue.url, 1).await.len(), 1);
    let body = json!({"tasks": [
        {"kind": "noop", "payload": {}},
        {"kind": "noop", "payload": {}, "idempotency_key": "k0"},
        {"kind": "noop", "payload": {"x": 1}, "idempotency_key": "k0"},
        {"kind": "archive", "payload": {"name": "q3"}, "idempotency_key": "k1"}
    ]});
    let resp = api
        .post("/v1/tasks/batch", DEMO_TOKEN, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let results = json(resp).await["results"].as_array().unwrap().clone();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 200, 409, 202]);
    assert_eq!(results[2]["error"]["status"], 409);
    assert_eq!(
        api.queue.drain(&api.queue.url, 3).await.len(),
        2,
        "only the new tasks are queued"
    );

    let invalid = json!({"tasks": [{"kind": "noop", "payload": {}}, {"kind": "email", "payload": {"sender": "x"}}]});
    let p = problem(
        api.post("/v1/tasks/batch", DEMO_TOKEN, &invalid)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    let pointers: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        [
            "/tasks/1/payload/sender",
            "/tasks/1/payload/recipient",
            "/tasks/1/payload/subject",
            "/tasks/1/payload/body"
        ]
    );
    let tasks: i64 = api
        .db
        .admin()
        .await
        .query_one("SELECT count(*) FROM tms.tasks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tasks, 3, "nothing of an invalid batch is stored");
    let too_many = json!({"tasks": vec![noop(); 101]});
    problem(
        api.post("/v1/tasks/batch", DEMO_TOKEN, &too_many)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    problem(
        api.post("/v1/tasks/batch", DEMO_TOKEN, &json!({"tasks": []}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
}

#[tokio::test]
async fn list_pages_newest_first_with_filters_and_a_tamper_evident_cursor() {
    let api = TestApi::start().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let body = if i % 2 == 0 {
            noop()
        } else {
            json!({"kind": "archive", "payload": {"i": i}})
        };
        ids.push(
            json(api.create(&body).await).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tasks?limit=3&cursor={c}"),
            None => "/v1/tasks?limit=3".to_owned(),
        };
        let page = json(api.get(&path, DEMO_TOKEN).send().await.unwrap()).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every task once, newest first");
    let archives = json(
        api.get("/v1/tasks?kind=archive", DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(archives["items"].as_array().unwrap().len(), 3);
    let pending = json(
        api.get("/v1/tasks?status=pending&limit=100", DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 7);
    let first_page = json(
        api.get("/v1/tasks?limit=2", DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let c = first_page["next_cursor"].as_str().unwrap().to_owned();
    for bad in [
        "/v1/tasks?limit=0".to_owned(),
        "/v1/tasks?limit=101".to_owned(),
        "/v1/tasks?limit=x".to_owned(),
        "/v1/tasks?status=paused".to_owned(),
        "/v1/tasks?kind=fax".to_owned(),
        "/v1/tasks?cursor=nonsense".to_owned(),
        format!("/v1/tasks?cursor={}A", &c[..43]),
        format!("/v1/tasks?status=dead&cursor={c}"),
    ] {
        problem(api.get(&bad, DEMO_TOKEN).send().await.unwrap(), 400).await;
    }
    let foreign = api
        .get(&format!("/v1/tasks?cursor={c}"), ACME_TOKEN)
        .send()
        .await
        .unwrap();
    problem(foreign, 400).await;
}

#[tokio::test]
async fn another_tenants_task_is_404_on_every_route() {
    let api = TestApi::start().await;
    let id = json(api.create(&noop()).await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [format!("/v1/tasks/{id}"), format!("/v1/tasks/{id}/events")] {
        problem(api.get(&path, ACME_TOKEN).send().await.unwrap(), 404).await;
        assert_eq!(
            api.get(&path, DEMO_TOKEN).send().await.unwrap().status(),
            200
        );
    }
    for action in ["cancel", "redrive"] {
        let r = api
            .post(&format!("/v1/tasks/{id}/{action}"), ACME_TOKEN, &json!({}))
            .send()
            .await
            .unwrap();
        problem(r, 404).await;
    }
    let acme_list = json(api.get("/v1/tasks", ACME_TOKEN).send().await.unwrap()).await;
    assert!(acme_list["items"].as_array().unwrap().is_empty());
    let task = json(
        api.get(&format!("/v1/tasks/{id}"), DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        task["status"], "pending",
        "the other tenant's cancel changed nothing"
    );
}

#[tokio::test]
async fn cancel_and_redrive_follow_the_lifecycle() {
    let api = TestApi::start().await;
    let id = json(api.create(&noop()).await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    problem(
        api.post(&format!("/v1/tasks/{id}/redrive"), DEMO_TOKEN, &json!({}))
            .send()
            .await
            .unwrap(),
        409,
    )
    .await;
    let cancelled = api
        .post(&format!("/v1/tasks/{id}/cancel"), DEMO_TOKEN, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    assert_eq!(json(cancelled).await["status"], "cancelled");
    let again = problem(
        api.post(&format!("/v1/tasks/{id}/cancel"), DEMO_TOKEN, &json!({}))
            .send()
            .await
            .unwrap(),
        409,
    )
    .await;
    assert_eq!(again["detail"], "cannot cancel a cancelled task");

    let dead = json(api.create(&noop()).await).await["id"]
        .as_str()
        .unwrap()
        .parse::<TaskId>()
        .unwrap();
    api.queue.drain(&api.queue.url, 2).await;
    api.kill("demo", dead).await;
    let redriven = api
        .post(&format!("/v1/tasks/{dead}/redrive"), DEMO_TOKEN, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(redriven.status(), 200);
    let task = json(redriven).await;
    assert_eq!(
        (task["status"].as_str(), task["attempts"].as_u64()),
        (Some("pending"), Some(0))
    );
    let sent = api.queue.drain(&api.queue.url, 1).await;
    assert_eq!(sent.len(), 1, "a redriven task is queued again");
    let events = json(
        api.get(&format!("/v1/tasks/{dead}/events"), DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let path: Vec<(Value, Value)> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["from"].clone(), e["to"].clone()))
        .collect();
    assert_eq!(
        path,
        [
            (Value::Null, json!("pending")),
            (json!("pending"), json!("running")),
            (json!("running"), json!("dead")),
            (json!("dead"), json!("pending")),
        ]
    );
}

#[tokio::test]
async fn authentication_is_required_on_every_task_route() {
    let api = TestApi::start().await;
    let routes = [
        ("GET", "/v1/tasks"),
        ("POST", "/v1/tasks"),
        ("POST", "/v1/tasks/batch"),
        ("GET", "/v1/tasks/0190a8e2-6b5c-7cc1-8f00-000000000001"),
        (
            "GET",
            "/v1/tasks/0190a8e2-6b5c-7cc1-8f00-000000000001/events",
        ),
        (
            "POST",
            "/v1/tasks/0190a8e2-6b5c-7cc1-8f00-000000000001/cancel",
        ),
        (
            "POST",
            "/v1/tasks/0190a8e2-6b5c-7cc1-8f00-000000000001/redrive",
        ),
    ];
    for (method, path) in routes {
        for auth in [
            None,
            Some("Bearer"),
            Some("Basic abc"),
            Some("Bearer not-a-token"),
            Some("bearer"),
        ] {
            let mut req = api
                .http
                .request(method.parse().unwrap(), format!("{}{path}", api.url))
                .json(&noop());
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(
                resp.headers()["www-authenticate"],
                "Bearer",
                "{method} {path} {auth:?}"
            );
            problem(resp, 401).await;
        }
    }
    let health = api
        .http
        .get(format!("{}/health", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "health needs no token");
    assert_eq!(json(health).await["status"], "ok");
}

#[tokio::test]
async fn bad_input_gets_the_right_problem() {
    let api = TestApi::start().await;
    let post_raw = |body: &'static str, ct: &'static str| {
        api.http
            .post(format!("{}/v1/tasks", api.url))
            .bearer_auth(DEMO_TOKEN)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    problem(
        post_raw("{not json", "application/json").await.unwrap(),
        400,
    )
    .await;
    problem(
        post_raw("{\"kind\":\"noop\"} trailing", "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    problem(
        post_raw("{\"kind\":\"noop\",\"payload\":{}}", "text/plain")
            .await
            .unwrap(),
        415,
    )
    .await;
    let unknown = problem(
        api.create(&json!({"kind": "noop", "payload": {}, "priority": 1}))
            .await,
        422,
    )
    .await;
    assert_eq!(unknown["errors"][0]["pointer"], "/priority");
    let wrong_type = problem(
        api.create(&json!({"kind": "noop", "payload": {}, "max_attempts": "5"}))
            .await,
        422,
    )
    .await;
    assert_eq!(wrong_type["errors"][0]["pointer"], "/max_attempts");
    let per_kind = problem(
        api.create(
            &json!({"kind": "webhook", "payload": {"url": "http://10.0.0.1/x", "method": "TRACE"}}),
        )
        .await,
        422,
    )
    .await;
    let pointers: Vec<&str> = per_kind["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/payload/url", "/payload/method"]);
    let many = problem(
        api.create(&json!({"kind": "fax", "payload": {}, "max_attempts": 50}))
            .await,
        422,
    )
    .await;
    let pointers: Vec<&str> = many["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/kind", "/max_attempts"]);
    problem(
        api.create(&json!({"kind": "noop", "payload": {}, "run_after": "tomorrow"}))
            .await,
        422,
    )
    .await;
    problem(
        api.create(&json!({"kind": "noop", "payload": [1]})).await,
        422,
    )
    .await;
    problem(
        api.create(&json!({"kind": "noop", "payload": {"s": "nul\u{0}inside"}}))
            .await,
        422,
    )
    .await;
    let big = "x".repeat(1024 * 1024);
    let too_large = api
        .create(&json!({"kind": "noop", "payload": {"b": big}}))
        .await;
    problem(too_large, 413).await;
    problem(
        api.get("/v1/tasks/not-a-uuid", DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    problem(
        api.get("/v1/tasks/0190a8e2-6b5c-7cc1-8f00-000000000001", DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    problem(
        api.get("/v1/nothing-here", DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}

#[tokio::test]
async fn strings_round_trip_byte_for_byte() {
    let api = TestApi::start().await;
    let tricky = [
        "it's \"quoted\" \\ back\\slash",
        "'; DROP TABLE tms.tasks; --",
        "😀 emoji, ünïcödé, 中文, עברית, \u{200B}zero-width",
        "tab\tnew\nline\r",
        "%s %d {} $1 ?",
    ];
    let numbers = json!({"kind": "noop", "payload": {"max": -1.7976931348623155e308, "tiny": 5e-324, "int": 9007199254740993u64}});
    let id = json(api.create(&numbers).await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = json(
        api.get(&format!("/v1/tasks/{id}"), DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        got["payload"], numbers["payload"],
        "numbers read back as written"
    );
    for s in tricky {
        let body = json!({"kind": "archive", "payload": {"name": "n", "text": s, s: [s]}});
        let resp = api.create(&body).await;
        assert_eq!(resp.status(), 202, "{s}");
        let id = json(resp).await["id"].as_str().unwrap().to_owned();
        let got = json(
            api.get(&format!("/v1/tasks/{id}"), DEMO_TOKEN)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(got["payload"]["text"], s);
        assert_eq!(got["payload"][s], json!([s]));
    }
}

#[tokio::test]
async fn the_correlation_id_is_echoed_or_generated_and_travels_with_the_task() {
    let api = TestApi::start().await;
    let resp = api
        .post("/v1/tasks", DEMO_TOKEN, &noop())
        .header("X-Correlation-Id", "req-123:abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-correlation-id"], "req-123:abc");
    assert_eq!(json(resp).await["correlation_id"], "req-123:abc");
    let msg = &api.queue.drain(&api.queue.url, 1).await[0];
    assert_eq!(
        msg.message_attributes().unwrap()[CORRELATION_ATTRIBUTE].string_value(),
        Some("req-123:abc")
    );
    let generated = api.get("/v1/tasks", DEMO_TOKEN).send().await.unwrap();
    assert!(!generated.headers()["x-correlation-id"].is_empty());
    let invalid = api
        .get("/v1/tasks", DEMO_TOKEN)
        .header("X-Correlation-Id", "has spaces")
        .send()
        .await
        .unwrap();
    assert!(is_problem(&invalid));
    problem(invalid, 400).await;
    let unauthenticated = api
        .http
        .get(format!("{}/v1/tasks", api.url))
        .send()
        .await
        .unwrap();
    assert!(
        unauthenticated.headers().contains_key("x-correlation-id"),
        "on errors too"
    );
}

#[tokio::test]
async fn health_is_503_when_the_database_is_down() {
    let unreachable = tms::config::DatabaseConfig {
        url: "postgres://tms_app@127.0.0.1:9/tms".into(),
        ssl_mode: tms::config::SslMode::Disable,
        ca_file: None,
        password_param: None,
        pool_size: 1,
        connect_timeout: std::time::Duration::from_secs(1),
    };
    let pool = tms::adapters::postgres::PgSettings::new(&unreachable, None)
        .unwrap()
        .pool()
        .unwrap();
    let api = TestApi::start_with(Options {
        repo: Some(Arc::new(tms::adapters::postgres::PostgresStore::new(pool))),
        ..Options::default()
    })
    .await;
    let health = api
        .http
        .get(format!("{}/health", api.url))
        .send()
        .await
        .unwrap();
    problem(health, 503).await;
    let create = api.create(&noop()).await;
    problem(create, 503).await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let api = TestApi::start().await;
    let doc = json(
        api.http
            .get(format!("{}/openapi.json", api.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut routes: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            routes.push(format!("{} {path}", method.to_uppercase()));
            let responses = op["responses"].as_object().unwrap();
            for code in ["400", "500"] {
                assert!(
                    responses.contains_key(code),
                    "{method} {path} documents {code}"
                );
            }
            if path.starts_with("/v1/") {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} documents 401"
                );
                assert_eq!(op["security"], json!([{"bearer": []}]));
            }
        }
    }
    routes.sort();
    assert_eq!(
        routes,
        [
            "DELETE /v1/schedules/{id}",
            "DELETE /v1/subscriptions/{id}",
            "DELETE /v1/triggers/{id}",
            "DELETE /v1/webhook-signing",
            "GET /docs",
            "GET /health",
            "GET /openapi.json",
            "GET /v1/imports",
            "GET /v1/imports/{id}",
            "GET /v1/limits",
            "GET /v1/schedules",
            "GET /v1/schedules/{id}",
            "GET /v1/stats",
            "GET /v1/subscriptions",
            "GET /v1/subscriptions/{id}",
            "GET /v1/tasks",
            "GET /v1/tasks/{id}",
            "GET /v1/tasks/{id}/events",
            "GET /v1/triggers",
            "GET /v1/triggers/{id}",
            "GET /v1/webhook-signing",
            "PATCH /v1/schedules/{id}",
            "PATCH /v1/subscriptions/{id}",
            "POST /v1/imports",
            "POST /v1/schedules",
            "POST /v1/subscriptions",
            "POST /v1/subscriptions/{id}/rotate-secret",
            "POST /v1/subscriptions/{id}/test",
            "POST /v1/tasks",
            "POST /v1/tasks/batch",
            "POST /v1/tasks/cancel",
            "POST /v1/tasks/redrive",
            "POST /v1/tasks/{id}/cancel",
            "POST /v1/tasks/{id}/redrive",
            "POST /v1/triggers",
            "POST /v1/webhook-signing/rotate",
            "PUT /v1/limits",
            "PUT /v1/webhook-signing",
        ]
    );
    for schema in [
        "CreateTask",
        "BatchTask",
        "Task",
        "Problem",
        "TaskPage",
        "TaskEvent",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    let docs = api
        .http
        .get(format!("{}/docs", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    let page = docs.text().await.unwrap();
    assert!(page.contains(r#"url: "/openapi.json""#), "{page}");
    for (asset, content_type, marker) in [
        ("swagger-ui-bundle.js", "text/javascript", "SwaggerUIBundle"),
        ("swagger-ui.css", "text/css", ".swagger-ui"),
    ] {
        assert!(page.contains(&format!("/docs/assets/{asset}")), "{page}");
        let served = api
            .http
            .get(format!("{}/docs/assets/{asset}", api.url))
            .send()
            .await
            .unwrap();
        assert_eq!(served.status(), 200, "{asset} ships with the binary");
        assert_eq!(served.headers()["content-type"], content_type);
        assert!(served.text().await.unwrap().contains(marker), "{asset}");
    }
}

#[tokio::test]
async fn cancelled_tasks_are_published_once_each_and_the_bus_being_down_keeps_them_for_the_relay() {
    let bus = Arc::new(tms_testkit::fakes::MemoryBus::default());
    let api = TestApi::start_with(Options {
        events: Some(bus.clone()),
        collecting: true,
        ..Options::default()
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let body = json!({"kind": "noop", "payload": {"order": format!("event-{n}")}});
        let created = json(api.create(&body).await).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let one = api
        .post(
            &format!("/v1/tasks/{}/cancel", ids[0]),
            DEMO_TOKEN,
            &json!({}),
        )
        .header("X-Correlation-Id", "cancel-by-hand")
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    api.outbox.settle().await;
    let events = bus.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let detail = &events[0].detail;
    assert_eq!(events[0].detail_type, "Task Cancelled");
    assert_eq!(
        (
            &detail["task_id"],
            &detail["tenant"],
            &detail["kind"],
            &detail["status"]
        ),
        (
            &json!(ids[0]),
            &json!("demo"),
            &json!("noop"),
            &json!("cancelled")
        )
    );
    assert!(
        detail.get("payload").is_none(),
        "never the payload: {detail}"
    );

    bus.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let bulk = json(
        api.post("/v1/tasks/cancel", DEMO_TOKEN, &json!({"kind": "noop"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bulk["changed"], 2);
    api.outbox.settle().await;
    assert_eq!(bus.events().len(), 1, "the bus is down");
    let kept: Vec<uuid::Uuid> = api
        .db
        .admin()
        .await
        .query(
            "SELECT subject FROM tms.notifications ORDER BY subject",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut rest: Vec<uuid::Uuid> = ids[1..].iter().map(|id| id.parse().unwrap()).collect();
    rest.sort();
    assert_eq!(kept, rest, "the unpublished events stay for the relay");
}

/// An operator's console list narrowed to one tenant keeps the tenant on its next page: the
/// cursor holds for that scope only.
#[tokio::test]
async fn a_console_list_narrowed_to_a_tenant_pages_within_it() {
    let api = TestApi::start().await;
    for n in 0..51 {
        let created = api
            .post(
                "/v1/triggers",
                DEMO_TOKEN,
                &json!({"name": format!("trigger {n}"), "source": "shop.orders",
                    "detail_type": "Order Placed", "task": {"kind": "noop", "payload": {}}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }
    let first = api
        .console_page(OPERATOR_TOKEN, "/console/triggers?tenant=demo")
        .await;
    let next = first
        .split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|href| href.contains("cursor="))
        .expect("a link to the next page")
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    assert!(
        next.starts_with("/console/triggers?tenant=demo&cursor="),
        "{next}"
    );
    let second = api.console_page(OPERATOR_TOKEN, &next).await;
    assert!(
        second.contains("trigger 0"),
        "the oldest trigger is on the next page"
    );
    assert!(!second.contains("trigger 50"));
}
