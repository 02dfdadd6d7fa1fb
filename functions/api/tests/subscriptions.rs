//! Webhook subscriptions and the webhook signing secret over real HTTP against the real
//! database; and what only TMS may do: create `notification` tasks, and take its own
//! lifecycle events.

mod support;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use support::{json, problem, TestApi, ACME_TOKEN, DEMO_TOKEN, OPERATOR_TOKEN, VIEWER_TOKEN};
use tms::ports::SubscriptionStore;
use tms::{Scope, SubscriptionId, Tenant};

fn order_hooks() -> Value {
    json!({
        "url": "https://hooks.partner.example/tms",
        "event_types": ["Task Succeeded", "Task Dead"],
        "kinds": ["webhook", "email"]
    })
}

fn pointers(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect()
}

/// The 32 bytes of a `whsec_` secret.
fn key_of(secret: &str) -> Vec<u8> {
    let b64 = secret.strip_prefix("whsec_").expect("a whsec_ secret");
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64")
}

async fn send(
    api: &TestApi,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::Response {
    api.http
        .request(method, format!("{}{path}", api.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn subscriptions_are_created_listed_read_changed_and_removed_within_the_tenant() {
    let api = TestApi::start().await;
    let created = api
        .post("/v1/subscriptions", DEMO_TOKEN, &order_hooks())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created = json(created).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(key_of(&secret).len(), 32);
    let subscription = &created["subscription"];
    assert_eq!(subscription["tenant"], "demo");
    assert_eq!(
        subscription["event_types"],
        json!(["Task Succeeded", "Task Dead"])
    );
    assert_eq!(subscription["kinds"], json!(["webhook", "email"]));
    assert_eq!(subscription["previous_secret_valid_until"], Value::Null);
    let id = subscription["id"].as_str().unwrap().to_owned();

    let one = send(
        &api,
        reqwest::Method::GET,
        &format!("/v1/subscriptions/{id}"),
        VIEWER_TOKEN,
    )
    .await;
    assert_eq!(one.status(), 200, "a viewer reads");
    let text = one.text().await.unwrap();
    assert!(!text.contains(&secret), "the secret is shown once: {text}");
    problem(
        send(
            &api,
            reqwest::Method::GET,
            &format!("/v1/subscriptions/{id}"),
            ACME_TOKEN,
        )
        .await,
        404,
    )
    .await;
    api.post("/v1/subscriptions", ACME_TOKEN, &order_hooks())
        .send()
        .await
        .unwrap();
    let list = json(send(&api, reqwest::Method::GET, "/v1/subscriptions", DEMO_TOKEN).await).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id.as_str());
    let every = json(
        send(
            &api,
            reqwest::Method::GET,
            "/v1/subscriptions",
            OPERATOR_TOKEN,
        )
        .await,
    )
    .await;
    assert_eq!(
        every["items"].as_array().unwrap().len(),
        2,
        "an operator sees every tenant's"
    );
    let acme_only = json(
        send(
            &api,
            reqwest::Method::GET,
            "/v1/subscriptions?tenant=acme",
            OPERATOR_TOKEN,
        )
        .await,
    )
    .await;
    assert_eq!(acme_only["items"][0]["tenant"], "acme");

    problem(
        api.post("/v1/subscriptions", VIEWER_TOKEN, &order_hooks())
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    let changed = api
        .http
        .patch(format!("{}/v1/subscriptions/{id}", api.url))
        .bearer_auth(DEMO_TOKEN)
        .json(&json!({"url": "https://hooks.partner.example/v2", "kinds": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let changed = json(changed).await;
    assert_eq!(changed["url"], "https://hooks.partner.example/v2");
    assert_eq!(
        changed["kinds"],
        Value::Null,
        "null removes the kind filter"
    );
    assert_eq!(
        changed["event_types"],
        json!(["Task Succeeded", "Task Dead"]),
        "kept"
    );
    let stored = api
        .store
        .get_subscription(
            &Scope::Tenant(Tenant::parse("demo").unwrap()),
            SubscriptionId::from_uuid(id.parse().unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.keys.current.expose(),
        secret,
        "a change keeps the secret"
    );
    let viewer_patch = api
        .http
        .patch(format!("{}/v1/subscriptions/{id}", api.url))
        .bearer_auth(VIEWER_TOKEN)
        .json(&json!({"url": "https://hooks.partner.example/v3"}))
        .send()
        .await
        .unwrap();
    problem(viewer_patch, 403).await;

    problem(
        send(
            &api,
            reqwest::Method::DELETE,
            &format!("/v1/subscriptions/{id}"),
            ACME_TOKEN,
        )
        .await,
        404,
    )
    .await;
    let deleted = send(
        &api,
        reqwest::Method::DELETE,
        &format!("/v1/subscriptions/{id}"),
        DEMO_TOKEN,
    )
    .await;
    assert_eq!(deleted.status(), 204);
    problem(
        send(
            &api,
            reqwest::Method::GET,
            &format!("/v1/subscriptions/{id}"),
            DEMO_TOKEN,
        )
        .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn subscriptions_page_with_cursors_of_their_scope() {
    let api = TestApi::start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let created = json(
            api.post("/v1/subscriptions", DEMO_TOKEN, &order_hooks())
                .send()
                .await
                .unwrap(),
        )
        .await;
        ids.push(created["subscription"]["id"].as_str().unwrap().to_owned());
    }
    let first = json(
        send(
            &api,
            reqwest::Method::GET,
            "/v1/subscriptions?limit=2",
            DEMO_TOKEN,
        )
        .await,
    )
    .await;
    let page: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[2].as_str(), ids[1].as_str()], "newest first");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = json(
        send(
            &api,
            reqwest::Method::GET,
            &format!("/v1/subscriptions?limit=2&cursor={cursor}"),
            DEMO_TOKEN,
        )
        .await,
    )
    .await;
    assert_eq!(second["items"][0]["id"], ids[0].as_str());
    assert_eq!(second["next_cursor"], Value::Null);
    problem(
        send(
            &api,
            reqwest::Method::GET,
            &format!("/v1/subscriptions?cursor={cursor}"),
            ACME_TOKEN,
        )
        .await,
        400,
    )
    .await;
}

#[tokio::test]
async fn an_invalid_subscription_is_a_problem_naming_each_field() {
    let api = TestApi::start().await;
    let bad = json!({
        "url": "http://hooks.partner.example/tms",
        "event_types": ["Task Started", "Task Dead", "Task Dead"],
        "kinds": ["notification", "fax"]
    });
    let p = problem(
        api.post("/v1/subscriptions", DEMO_TOKEN, &bad)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(
        pointers(&p),
        [
            "/url",
            "/event_types/0",
            "/event_types/2",
            "/kinds/0",
            "/kinds/1"
        ]
    );
    let internal = json!({"url": "https://169.254.169.254/latest", "event_types": ["Task Dead"]});
    let p = problem(
        api.post("/v1/subscriptions", DEMO_TOKEN, &internal)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(pointers(&p), ["/url"]);
    let empty = json!({"url": "https://hooks.partner.example", "event_types": [], "kinds": []});
    let p = problem(
        api.post("/v1/subscriptions", DEMO_TOKEN, &empty)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(pointers(&p), ["/event_types", "/kinds"]);
    let unknown = json!({"url": "https://hooks.partner.example", "event_types": ["Task Dead"], "secret": "whsec_x"});
    problem(
        api.post("/v1/subscriptions", DEMO_TOKEN, &unknown)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    let id = json(
        api.post("/v1/subscriptions", DEMO_TOKEN, &order_hooks())
            .send()
            .await
            .unwrap(),
    )
    .await["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = api
        .http
        .patch(format!("{}/v1/subscriptions/{id}", api.url))
        .bearer_auth(DEMO_TOKEN)
        .json(&json!({"event_types": ["Import Lost"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(pointers(&problem(patch, 422).await), ["/event_types/0"]);
    // An array is not a change, though every field of one may be left out.
    let patch = api
        .http
        .patch(format!("{}/v1/subscriptions/{id}", api.url))
        .bearer_auth(DEMO_TOKEN)
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    let refused = problem(patch, 422).await;
    assert_eq!(
        refused["errors"][0]["detail"],
        "the request body must be a JSON object"
    );
}

#[tokio::test]
async fn a_rotated_secret_is_shown_once_and_the_old_one_signs_for_a_day() {
    let api = TestApi::start().await;
    let created = json(
        api.post("/v1/subscriptions", DEMO_TOKEN, &order_hooks())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let old = created["secret"].as_str().unwrap().to_owned();
    let id = created["subscription"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/subscriptions/{id}/rotate-secret");
    problem(
        send(&api, reqwest::Method::POST, &path, VIEWER_TOKEN).await,
        403,
    )
    .await;
    problem(
        send(&api, reqwest::Method::POST, &path, ACME_TOKEN).await,
        404,
    )
    .await;
    let rotated = send(&api, reqwest::Method::POST, &path, DEMO_TOKEN).await;
    assert_eq!(rotated.status(), 200);
    let rotated = json(rotated).await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(key_of(&new).len(), 32);
    let until: DateTime<Utc> = rotated["subscription"]["previous_secret_valid_until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let overlap = until - Utc::now();
    assert!(
        overlap > chrono::Duration::hours(23) && overlap <= chrono::Duration::hours(24),
        "{overlap}"
    );
    let stored = api
        .store
        .get_subscription(&Scope::All, SubscriptionId::from_uuid(id.parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    let active: Vec<&str> = stored.keys.active(Utc::now()).map(|s| s.expose()).collect();
    assert_eq!(
        active,
        [new.as_str(), old.as_str()],
        "both sign during the overlap"
    );
    let after = until + chrono::Duration::seconds(1);
    assert_eq!(
        stored.keys.active(after).count(),
        1,
        "only the new one after it"
    );
    let read = json(
        send(
            &api,
            reqwest::Method::GET,
            &format!("/v1/subscriptions/{id}"),
            DEMO_TOKEN,
        )
        .await,
    )
    .await;
    assert_eq!(
        read["previous_secret_valid_until"],
        rotated["subscription"]["previous_secret_valid_until"]
    );
}

#[tokio::test]
async fn a_test_delivery_is_a_pending_notification_task_of_the_subscription() {
    let api = TestApi::start().await;
    let created = json(
        api.post("/v1/subscriptions", DEMO_TOKEN, &order_hooks())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = created["subscription"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/subscriptions/{id}/test");
    problem(
        send(&api, reqwest::Method::POST, &path, VIEWER_TOKEN).await,
        403,
    )
    .await;
    problem(
        send(&api, reqwest::Method::POST, &path, ACME_TOKEN).await,
        404,
    )
    .await;
    let sent = send(&api, reqwest::Method::POST, &path, DEMO_TOKEN).await;
    assert_eq!(sent.status(), 202);
    let task = json(sent).await;
    assert_eq!(task["kind"], "notification");
    assert_eq!(task["status"], "pending");
    assert_eq!(task["source"]["type"], "subscription");
    assert_eq!(task["payload"]["subscription_id"], id.as_str());
    let event = &task["payload"]["event"];
    assert_eq!(
        event["type"], "Task Succeeded",
        "the subscription's first type"
    );
    assert_eq!(event["data"]["test"], true);
    assert_eq!(event["data"]["event_id"], task["payload"]["event_id"]);
    assert_eq!(task["source"]["event_id"], task["payload"]["event_id"]);
    api.outbox.settle().await;
    let messages = api.queue.drain(&api.queue.url, 1).await;
    assert_eq!(messages.len(), 1, "its work message was sent");
    let listed = json(
        send(
            &api,
            reqwest::Method::GET,
            "/v1/tasks?kind=notification",
            DEMO_TOKEN,
        )
        .await,
    )
    .await;
    assert_eq!(listed["items"][0]["id"], task["id"]);
    let by_source = json(
        send(
            &api,
            reqwest::Method::GET,
            "/v1/tasks?source=subscription",
            DEMO_TOKEN,
        )
        .await,
    )
    .await;
    assert_eq!(by_source["items"][0]["id"], task["id"]);
}

#[tokio::test]
async fn clients_cannot_create_notification_tasks_nor_trigger_on_tms_events() {
    let api = TestApi::start().await;
    let p = problem(
        api.create(&json!({"kind": "notification", "payload": {}}))
            .await,
        422,
    )
    .await;
    assert_eq!(pointers(&p), ["/kind"]);
    assert!(
        p["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("created by TMS only"),
        "{p}"
    );
    let batch = api
        .post(
            "/v1/tasks/batch",
            DEMO_TOKEN,
            &json!({"tasks": [{"kind": "noop", "payload": {}}, {"kind": "notification", "payload": {}}]}),
        )
        .send()
        .await
        .unwrap();
    let p = problem(batch, 422).await;
    assert_eq!(pointers(&p), ["/tasks/1/kind"]);

    let trigger = json!({
        "name": "on our own events", "source": "tms", "detail_type": "Task Succeeded",
        "task": {"kind": "noop", "payload": {}}
    });
    let p = problem(
        api.post("/v1/triggers", DEMO_TOKEN, &trigger)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(pointers(&p), ["/source"]);
    let mut notification = trigger.clone();
    notification["source"] = json!("shop.orders");
    notification["task"]["kind"] = json!("notification");
    problem(
        api.post("/v1/triggers", DEMO_TOKEN, &notification)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
}

#[tokio::test]
async fn webhook_signing_is_set_read_rotated_and_removed_per_tenant() {
    let api = TestApi::start().await;
    let path = "/v1/webhook-signing";
    problem(
        send(&api, reqwest::Method::GET, path, DEMO_TOKEN).await,
        404,
    )
    .await;
    problem(
        send(
            &api,
            reqwest::Method::POST,
            "/v1/webhook-signing/rotate",
            DEMO_TOKEN,
        )
        .await,
        404,
    )
    .await;
    problem(
        send(&api, reqwest::Method::PUT, path, VIEWER_TOKEN).await,
        403,
    )
    .await;
    problem(
        send(
            &api,
            reqwest::Method::PUT,
            "/v1/webhook-signing?tenant=acme",
            DEMO_TOKEN,
        )
        .await,
        403,
    )
    .await;

    let set = send(&api, reqwest::Method::PUT, path, DEMO_TOKEN).await;
    assert_eq!(set.status(), 200);
    let set = json(set).await;
    let first = set["secret"].as_str().unwrap().to_owned();
    assert_eq!(key_of(&first).len(), 32);
    assert_eq!(set["signing"]["tenant"], "demo");
    let read = send(&api, reqwest::Method::GET, path, VIEWER_TOKEN).await;
    assert_eq!(read.status(), 200, "a viewer reads");
    let text = read.text().await.unwrap();
    assert!(!text.contains(&first), "the secret is shown once: {text}");

    let rotated = json(
        send(
            &api,
            reqwest::Method::POST,
            "/v1/webhook-signing/rotate",
            DEMO_TOKEN,
        )
        .await,
    )
    .await;
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert!(rotated["signing"]["previous_secret_valid_until"].is_string());
    let demo = Tenant::parse("demo").unwrap();
    let keys = tms::ports::WebhookSigningStore::webhook_signing(&api.store, &demo)
        .await
        .unwrap()
        .unwrap()
        .keys;
    let active: Vec<&str> = keys.active(Utc::now()).map(|s| s.expose()).collect();
    assert_eq!(active, [second.as_str(), first.as_str()]);

    let reset = json(send(&api, reqwest::Method::PUT, path, DEMO_TOKEN).await).await;
    assert_eq!(
        reset["signing"]["previous_secret_valid_until"],
        Value::Null,
        "a new secret set with PUT replaces the old ones at once"
    );

    let for_acme = send(
        &api,
        reqwest::Method::PUT,
        "/v1/webhook-signing?tenant=acme",
        OPERATOR_TOKEN,
    )
    .await;
    assert_eq!(for_acme.status(), 200, "an operator sets any tenant's");
    assert_eq!(json(for_acme).await["signing"]["tenant"], "acme");
    assert_eq!(
        send(&api, reqwest::Method::GET, path, ACME_TOKEN)
            .await
            .status(),
        200
    );

    problem(
        send(&api, reqwest::Method::DELETE, path, VIEWER_TOKEN).await,
        403,
    )
    .await;
    assert_eq!(
        send(&api, reqwest::Method::DELETE, path, DEMO_TOKEN)
            .await
            .status(),
        204
    );
    problem(
        send(&api, reqwest::Method::GET, path, DEMO_TOKEN).await,
        404,
    )
    .await;
    problem(
        send(&api, reqwest::Method::DELETE, path, DEMO_TOKEN).await,
        404,
    )
    .await;
    assert_eq!(
        send(&api, reqwest::Method::GET, path, ACME_TOKEN)
            .await
            .status(),
        200,
        "another tenant's stays"
    );
}
