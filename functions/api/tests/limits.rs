//! Flow control over real HTTP with the real database and the emulator: `PUT` and `GET
//! /v1/limits` (roles, tenants, validation problems naming the field), `high` tasks on their own
//! queue, and tasks deferred by a limit in `GET /v1/stats` and the console's overview.

mod support;

use reqwest::Response;
use serde_json::{json, Value};
use support::{
    json, noop, problem, Options, TestApi, ACME_TOKEN, DEMO_TOKEN, OPERATOR_TOKEN, VIEWER_TOKEN,
};
use tms::{WorkMessage, PRIORITY_ATTRIBUTE};

fn document() -> Value {
    json!({
        "max_running": 10,
        "rate": {"per_second": 2.5},
        "kinds": {
            "webhook": {"max_running": 2, "rate": {"per_second": 1, "burst": 4}},
            "email": {"rate": {"per_second": 50, "burst": 100}}
        },
        "hosts": {"api.partner.example": {"per_second": 0.5, "burst": 1}}
    })
}

async fn put(api: &TestApi, path: &str, token: &str, body: &Value) -> Response {
    api.put(path, token, body).send().await.expect("request")
}

async fn get(api: &TestApi, path: &str, token: &str) -> Response {
    api.get(path, token).send().await.expect("request")
}

/// The pointers of a 422 problem's errors.
async fn pointers(resp: Response) -> Vec<String> {
    problem(resp, 422).await["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_member_replaces_its_limits_and_reads_them_back_with_their_usage() {
    let api = TestApi::start().await;
    let empty = json(get(&api, "/v1/limits", DEMO_TOKEN).await).await;
    assert_eq!(
        empty,
        json!({"tenant": "demo", "limits": {"kinds": {}, "hosts": {}},
               "usage": {"kinds": {}, "hosts": {}}, "updated_at": null})
    );

    let resp = put(&api, "/v1/limits", DEMO_TOKEN, &document()).await;
    assert_eq!(resp.status(), 200);
    let stored = json(resp).await;
    assert_eq!(stored["tenant"], "demo");
    assert_eq!(
        stored["limits"],
        json!({
            "max_running": 10,
            "rate": {"per_second": 2.5, "burst": 3},
            "kinds": {
                "email": {"rate": {"per_second": 50.0, "burst": 100}},
                "webhook": {"max_running": 2, "rate": {"per_second": 1.0, "burst": 4}}
            },
            "hosts": {"api.partner.example": {"per_second": 0.5, "burst": 1}}
        }),
        "a rate without a burst gets a second's worth"
    );
    let usage = &stored["usage"];
    assert_eq!(usage["tenant"]["running"], 0, "{usage}");
    assert!(
        (usage["tenant"]["tokens"].as_f64().unwrap() - 3.0).abs() < 1e-6,
        "a new rate starts full: {usage}"
    );
    assert_eq!(usage["kinds"]["webhook"]["running"], 0);
    assert!(usage["kinds"]["email"].get("running").is_none(), "{usage}");
    assert!(usage["hosts"]["api.partner.example"]["tokens"].is_number());
    assert!(stored["updated_at"].is_string());

    let read = json(get(&api, "/v1/limits", DEMO_TOKEN).await).await;
    assert_eq!(read["limits"], stored["limits"]);
    // The viewer of the same tenant reads them too.
    let viewed = json(get(&api, "/v1/limits", VIEWER_TOKEN).await).await;
    assert_eq!(viewed["limits"], stored["limits"]);

    // The document replaces the whole set: what is left out has no limit any more.
    let resp = put(
        &api,
        "/v1/limits",
        DEMO_TOKEN,
        &json!({"kinds": {"noop": {"max_running": 1}}}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let replaced = json(resp).await;
    assert_eq!(
        replaced["limits"],
        json!({"kinds": {"noop": {"max_running": 1}}, "hosts": {}})
    );
    assert_eq!(
        replaced["usage"],
        json!({"kinds": {"noop": {"running": 0}}, "hosts": {}})
    );
    let cleared = json(put(&api, "/v1/limits", DEMO_TOKEN, &json!({})).await).await;
    assert_eq!(cleared["limits"], json!({"kinds": {}, "hosts": {}}));
}

#[tokio::test]
async fn viewers_only_read_other_tenants_are_refused_and_operators_set_any_tenants() {
    let api = TestApi::start().await;
    let body = json!({"max_running": 5});

    let refused = problem(put(&api, "/v1/limits", VIEWER_TOKEN, &body).await, 403).await;
    assert!(
        refused["detail"].as_str().unwrap().contains("viewer"),
        "{refused}"
    );
    problem(
        put(&api, "/v1/limits?tenant=acme", DEMO_TOKEN, &body).await,
        403,
    )
    .await;
    problem(get(&api, "/v1/limits?tenant=acme", DEMO_TOKEN).await, 403).await;
    problem(get(&api, "/v1/limits?tenant=acme", VIEWER_TOKEN).await, 403).await;
    problem(
        get(&api, "/v1/limits?tenant=no%20such", DEMO_TOKEN).await,
        400,
    )
    .await;
    // Naming its own tenant is allowed.
    assert_eq!(
        put(&api, "/v1/limits?tenant=demo", DEMO_TOKEN, &body)
            .await
            .status(),
        200
    );

    let resp = put(&api, "/v1/limits?tenant=acme", OPERATOR_TOKEN, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["tenant"], "acme");
    let acme = json(get(&api, "/v1/limits", ACME_TOKEN).await).await;
    assert_eq!(acme["limits"]["max_running"], 5, "{acme}");
    let read = json(get(&api, "/v1/limits?tenant=acme", OPERATOR_TOKEN).await).await;
    assert_eq!(read["limits"], acme["limits"]);
    // Without ?tenant= an operator's limits are its own tenant's.
    let own = json(get(&api, "/v1/limits", OPERATOR_TOKEN).await).await;
    assert_eq!(own["tenant"], "ops");
    assert_eq!(own["limits"], json!({"kinds": {}, "hosts": {}}));
    // acme's limits are acme's alone.
    let demo = json(get(&api, "/v1/limits", DEMO_TOKEN).await).await;
    assert_eq!(demo["limits"]["max_running"], 5);
    let resp = put(&api, "/v1/limits", ACME_TOKEN, &json!({})).await;
    assert_eq!(resp.status(), 200);
    let demo = json(get(&api, "/v1/limits", DEMO_TOKEN).await).await;
    assert_eq!(demo["limits"]["max_running"], 5, "{demo}");

    let anonymous = api
        .http
        .get(format!("{}/v1/limits", api.url))
        .send()
        .await
        .unwrap();
    problem(anonymous, 401).await;
}

#[tokio::test]
async fn invalid_documents_are_refused_naming_each_field() {
    let api = TestApi::start().await;
    let cases = [
        (json!({"rate": {"per_second": 0}}), vec!["/rate/per_second"]),
        (
            json!({"rate": {"per_second": -1, "burst": 0}}),
            vec!["/rate/per_second", "/rate/burst"],
        ),
        (
            json!({"kinds": {"webhook": {"rate": {"per_second": 1, "burst": 0}}}}),
            vec!["/kinds/webhook/rate/burst"],
        ),
        (
            json!({"kinds": {"fax": {"max_running": 1}}}),
            vec!["/kinds/fax"],
        ),
        (json!({"max_running": 0}), vec!["/max_running"]),
        (
            json!({"hosts": {"api.partner.example": {"per_second": 1, "max_running": 3}}}),
            vec!["/hosts/api.partner.example/max_running"],
        ),
        (
            json!({"hosts": {"API.Partner.example": {"per_second": 1}}}),
            vec!["/hosts/API.Partner.example"],
        ),
        (json!({"priority": "high"}), vec!["/priority"]),
        (
            json!({"kinds": {"noop": {"max_running": 1, "burst": 2}}}),
            vec!["/kinds/noop/burst"],
        ),
        (json!({"rate": {"burst": 2}}), vec!["/rate/per_second"]),
        (json!({"max_running": 1.5}), vec!["/max_running"]),
    ];
    for (body, expected) in cases {
        let resp = put(&api, "/v1/limits", DEMO_TOKEN, &body).await;
        assert_eq!(pointers(resp).await, expected, "{body}");
    }
    // Nothing was stored.
    let read = json(get(&api, "/v1/limits", DEMO_TOKEN).await).await;
    assert_eq!(read["updated_at"], Value::Null, "{read}");
    let text = api
        .http
        .put(format!("{}/v1/limits", api.url))
        .bearer_auth(DEMO_TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(text, 415).await;
}

#[tokio::test]
async fn a_high_task_says_so_and_its_message_lands_on_the_high_queue() {
    let api = TestApi::start_with(Options {
        high_queue: true,
        ..Options::default()
    })
    .await;
    let high_queue = api.high_queue.as_ref().expect("a high queue");

    let resp = api
        .create(&json!({"kind": "noop", "payload": {}, "priority": "high"}))
        .await;
    assert_eq!(resp.status(), 202);
    let created = json(resp).await;
    assert_eq!(created["priority"], "high");
    assert_eq!(created["deferred_reason"], Value::Null);
    let id = created["id"].as_str().unwrap().to_owned();
    let read = json(get(&api, &format!("/v1/tasks/{id}"), DEMO_TOKEN).await).await;
    assert_eq!(read["priority"], "high");

    let normal = json(api.create(&noop()).await).await;
    assert_eq!(normal["priority"], "normal");

    let high = high_queue.drain(&high_queue.url, 1).await;
    assert_eq!(high.len(), 1);
    let msg: WorkMessage = serde_json::from_str(high[0].body().unwrap()).unwrap();
    assert_eq!(msg.task_id.to_string(), id);
    let attr = &high[0].message_attributes().unwrap()[PRIORITY_ATTRIBUTE];
    assert_eq!(attr.string_value(), Some("high"));
    let rest = api.queue.drain(&api.queue.url, 1).await;
    assert_eq!(rest.len(), 1);
    let msg: WorkMessage = serde_json::from_str(rest[0].body().unwrap()).unwrap();
    assert_eq!(msg.task_id.to_string(), normal["id"].as_str().unwrap());

    // In a batch too, and an unknown priority is refused naming the field.
    let batch = json!({"tasks": [
        {"kind": "noop", "payload": {}, "priority": "high"},
        {"kind": "noop", "payload": {}}
    ]});
    let resp = api
        .post("/v1/tasks/batch", DEMO_TOKEN, &batch)
        .send()
        .await
        .unwrap();
    let results = json(resp).await;
    assert_eq!(
        results["results"][0]["task"]["priority"], "high",
        "{results}"
    );
    assert_eq!(results["results"][1]["task"]["priority"], "normal");
    assert_eq!(high_queue.drain(&high_queue.url, 1).await.len(), 1);
    let resp = api
        .create(&json!({"kind": "noop", "payload": {}, "priority": "urgent"}))
        .await;
    assert_eq!(pointers(resp).await, ["/priority"]);
}

/// Marks the task deferred as the worker's claim does.
async fn defer(api: &TestApi, id: &str, reason: &str) {
    api.db
        .admin()
        .await
        .execute(
            "UPDATE tms.tasks SET deferred_reason = $2, run_after = now() + interval '1 minute' \
             WHERE id = $1::text::uuid",
            &[&id, &reason],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn stats_and_the_overview_count_deferred_tasks_per_reason() {
    let api = TestApi::start().await;
    let stats = json(get(&api, "/v1/stats", DEMO_TOKEN).await).await;
    assert_eq!(
        stats["deferred"],
        json!({"tenant_concurrency": 0, "tenant_rate": 0, "kind_concurrency": 0,
               "kind_rate": 0, "host_rate": 0})
    );
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            json(api.create(&noop()).await).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    defer(&api, &ids[0], "tenant_rate").await;
    defer(&api, &ids[1], "tenant_rate").await;
    defer(&api, &ids[2], "host_rate").await;
    let theirs = api
        .post("/v1/tasks", ACME_TOKEN, &noop())
        .send()
        .await
        .unwrap();
    let theirs = json(theirs).await["id"].as_str().unwrap().to_owned();
    defer(&api, &theirs, "kind_concurrency").await;

    let stats = json(get(&api, "/v1/stats", DEMO_TOKEN).await).await;
    assert_eq!(
        stats["deferred"],
        json!({"tenant_concurrency": 0, "tenant_rate": 2, "kind_concurrency": 0,
               "kind_rate": 0, "host_rate": 1}),
        "{stats}"
    );
    let all = json(get(&api, "/v1/stats", OPERATOR_TOKEN).await).await;
    assert_eq!(all["deferred"]["kind_concurrency"], 1, "{all}");
    assert_eq!(all["deferred"]["tenant_rate"], 2);
    let task = json(get(&api, &format!("/v1/tasks/{}", ids[2]), DEMO_TOKEN).await).await;
    assert_eq!(task["deferred_reason"], "host_rate");

    let page = api.console_page(DEMO_TOKEN, "/console").await;
    assert!(page.contains("Deferred by flow control"), "{page}");
    assert!(
        page.contains("<code>tenant_rate</code></th><td>over the tenant's rate</td><td class=\"num\">2</td>")
            || page.contains("<code>tenant_rate</code></th><td>over the tenant&#39;s rate</td><td class=\"num\">2</td>")
            || page.contains("<code>tenant_rate</code></th><td>over the tenant&#x27;s rate</td><td class=\"num\">2</td>"),
        "{page}"
    );
    assert!(page.contains("<code>host_rate</code>"), "{page}");
    assert!(
        !page.contains("<code>kind_concurrency</code>"),
        "acme's is not demo's"
    );
    assert!(
        page.contains(
            "<span class=\"value\">3</span> <span class=\"label\">tasks deferred by a limit</span>"
        ),
        "{page}"
    );
    let page = api
        .console_page(DEMO_TOKEN, &format!("/console/tasks/{}", ids[2]))
        .await;
    assert!(page.contains("<dt>Priority</dt><dd>normal</dd>"), "{page}");
    assert!(
        page.contains(
            "<dt>Deferred</dt><dd>over the rate of calls to its webhook&#39;s host (host_rate)"
        ) || page.contains(
            "<dt>Deferred</dt><dd>over the rate of calls to its webhook&#x27;s host (host_rate)"
        ),
        "{page}"
    );
}
