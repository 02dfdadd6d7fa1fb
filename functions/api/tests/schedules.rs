//! The schedule routes over real HTTP with the real database: create, list, read with a
//! preview, pause, resume, change, delete; validation problems naming the field; names unique
//! per tenant; roles and tenants.

mod support;

use chrono::{DateTime, DurationRound, TimeDelta, Timelike, Utc};
use reqwest::{RequestBuilder, Response};
use serde_json::{json, Value};
use support::{json, problem, TestApi, ACME_TOKEN, DEMO_TOKEN, OPERATOR_TOKEN, VIEWER_TOKEN};

fn patch(api: &TestApi, path: &str, token: &str, body: &Value) -> RequestBuilder {
    api.http
        .patch(format!("{}{path}", api.url))
        .bearer_auth(token)
        .json(body)
}

fn delete(api: &TestApi, path: &str, token: &str) -> RequestBuilder {
    api.http
        .delete(format!("{}{path}", api.url))
        .bearer_auth(token)
}

async fn send(request: RequestBuilder) -> Response {
    request.send().await.expect("request")
}

fn nightly(name: &str) -> Value {
    json!({
        "name": name,
        "expression": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "task": {"kind": "archive", "payload": {"name": "nightly"}}
    })
}

/// Creates the schedule as `token`'s tenant; its view.
async fn created(api: &TestApi, token: &str, body: &Value) -> Value {
    let resp = send(api.post("/v1/schedules", token, body)).await;
    assert_eq!(resp.status(), 201, "{body}");
    json(resp).await
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str().expect("a date-time").parse().expect("RFC 3339")
}

fn path(schedule: &Value) -> String {
    format!("/v1/schedules/{}", schedule["id"].as_str().unwrap())
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
async fn create_read_preview_pause_resume_change_and_delete() {
    let api = TestApi::start().await;
    let s = created(&api, DEMO_TOKEN, &nightly("nightly")).await;
    assert_eq!(s["tenant"], "demo");
    assert_eq!(s["expression"], "30 2 * * *");
    assert_eq!(s["timezone"], "Europe/Berlin");
    assert_eq!(
        s["task"],
        json!({"kind": "archive", "payload": {"name": "nightly"}, "max_attempts": 5})
    );
    assert_eq!(s["missed"], json!({"policy": "skip"}));
    assert_eq!(
        (s["paused"].clone(), s["version"].clone()),
        (json!(false), json!(1))
    );
    assert_eq!(s["starts_at"], Value::Null);
    assert_eq!(s["last_fire_at"], Value::Null);
    assert!(s.get("next_runs").is_none());
    let next = at(&s["next_run_at"]);
    assert!(next > Utc::now() && next < Utc::now() + TimeDelta::days(1));

    let list = json(send(api.get("/v1/schedules", DEMO_TOKEN)).await).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0], s);
    assert_eq!(list["next_cursor"], Value::Null);
    assert_eq!(json(send(api.get(&path(&s), DEMO_TOKEN)).await).await, s);

    // The next five runs, a day apart at 02:30 in Berlin (00:30 or 01:30 UTC; 03:00 local on
    // the day the clocks go forward).
    let previewed = json(send(api.get(&format!("{}?preview=5", path(&s)), DEMO_TOKEN)).await).await;
    let runs: Vec<DateTime<Utc>> = previewed["next_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(at)
        .collect();
    assert_eq!(runs.len(), 5);
    assert_eq!(runs[0], next);
    for pair in runs.windows(2) {
        assert!(pair[1] - pair[0] >= TimeDelta::hours(23), "{runs:?}");
    }
    for run in &runs {
        let hm = (run.hour(), run.minute());
        assert!([(0, 30), (1, 30), (1, 0)].contains(&hm), "{run}");
    }
    for bad in ["0", "51", "x", ""] {
        problem(
            send(api.get(&format!("{}?preview={bad}", path(&s)), DEMO_TOKEN)).await,
            400,
        )
        .await;
    }

    let paused =
        json(send(patch(&api, &path(&s), DEMO_TOKEN, &json!({"paused": true}))).await).await;
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["next_run_at"], Value::Null, "no run while paused");
    assert_eq!(paused["version"], 2);
    let would_be = json(send(api.get(&format!("{}?preview=1", path(&s)), DEMO_TOKEN)).await).await;
    assert_eq!(would_be["next_runs"].as_array().unwrap().len(), 1);

    let resumed = json(
        send(patch(
            &api,
            &path(&s),
            DEMO_TOKEN,
            &json!({"paused": false}),
        ))
        .await,
    )
    .await;
    assert_eq!(resumed["paused"], false);
    assert_eq!(at(&resumed["next_run_at"]), next);

    // A change of timing runs from the next fire after now; a stale version is refused.
    let starts = (Utc::now() + TimeDelta::hours(2))
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap();
    let rate = json!({
        "expression": "rate(15 minutes)",
        "starts_at": starts.to_rfc3339(),
        "missed": {"policy": "catch_up", "max": 4},
        "task": {"kind": "noop", "payload": {}, "max_attempts": 2},
        "name": "every quarter",
        "version": 3
    });
    let changed = json(send(patch(&api, &path(&s), DEMO_TOKEN, &rate)).await).await;
    assert_eq!(changed["version"], 4);
    assert_eq!(changed["name"], "every quarter");
    assert_eq!(changed["missed"], json!({"policy": "catch_up", "max": 4}));
    assert_eq!(changed["task"]["max_attempts"], 2);
    assert_eq!(at(&changed["next_run_at"]), starts);
    let runs = json(send(api.get(&format!("{}?preview=3", path(&s)), DEMO_TOKEN)).await).await;
    let runs: Vec<DateTime<Utc>> = runs["next_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(at)
        .collect();
    assert_eq!(runs, [0, 15, 30].map(|m| starts + TimeDelta::minutes(m)));
    let stale = problem(
        send(patch(
            &api,
            &path(&s),
            DEMO_TOKEN,
            &json!({"paused": true, "version": 3}),
        ))
        .await,
        409,
    )
    .await;
    assert_eq!(stale["type"], "urn:tms:problem:version-conflict");
    let cleared = json(
        send(patch(
            &api,
            &path(&s),
            DEMO_TOKEN,
            &json!({"starts_at": null}),
        ))
        .await,
    )
    .await;
    assert_eq!(cleared["starts_at"], Value::Null);

    let gone = send(delete(&api, &path(&s), DEMO_TOKEN)).await;
    assert_eq!(gone.status(), 204);
    problem(send(api.get(&path(&s), DEMO_TOKEN)).await, 404).await;
    problem(send(delete(&api, &path(&s), DEMO_TOKEN)).await, 404).await;
    problem(
        send(patch(&api, &path(&s), DEMO_TOKEN, &json!({"paused": true}))).await,
        404,
    )
    .await;
}

#[tokio::test]
async fn validation_problems_name_the_field() {
    let api = TestApi::start().await;
    let with = |field: &str, value: Value| {
        let mut body = nightly("invalid");
        body[field] = value;
        body
    };
    let cases = [
        (with("expression", json!("61 * * * *")), "/expression"),
        (with("expression", json!("0 0 30 2 *")), "/expression"),
        (with("expression", json!("*/0 * * * *")), "/expression"),
        (with("expression", json!("rate(0 minutes)")), "/expression"),
        (with("expression", json!("rate(5 weeks)")), "/expression"),
        (with("timezone", json!("Mars/Olympus_Mons")), "/timezone"),
        (with("name", json!("")), "/name"),
        (
            with("task", json!({"kind": "fax", "payload": {}})),
            "/task/kind",
        ),
        (
            with(
                "task",
                json!({"kind": "email", "payload": {"sender": "a@example.com", "recipient": "b@example.com", "subject": "s"}}),
            ),
            "/task/payload/body",
        ),
        (
            with(
                "task",
                json!({"kind": "noop", "payload": {}, "max_attempts": 21}),
            ),
            "/task/max_attempts",
        ),
        (with("missed", json!({"policy": "catch_up"})), "/missed/max"),
        (
            with("missed", json!({"policy": "catch_up", "max": 1001})),
            "/missed/max",
        ),
        (
            with("missed", json!({"policy": "sometimes"})),
            "/missed/policy",
        ),
        (with("starts_at", json!("tomorrow")), "/starts_at"),
        (with("color", json!("blue")), "/color"),
    ];
    for (body, pointer) in cases {
        let got = pointers(send(api.post("/v1/schedules", DEMO_TOKEN, &body)).await).await;
        assert_eq!(got, [pointer], "{body}");
    }
    let mut backwards = nightly("backwards");
    backwards["starts_at"] = json!("2031-01-01T00:00:00Z");
    backwards["ends_at"] = json!("2030-01-01T00:00:00Z");
    assert_eq!(
        pointers(send(api.post("/v1/schedules", DEMO_TOKEN, &backwards)).await).await,
        ["/ends_at"]
    );
    let mut everything = nightly("");
    everything["expression"] = json!("* * * *");
    everything["timezone"] = json!("Nowhere");
    everything["task"] = json!({"kind": "fax", "payload": {}});
    assert_eq!(
        pointers(send(api.post("/v1/schedules", DEMO_TOKEN, &everything)).await).await,
        ["/name", "/task/kind", "/expression", "/timezone"]
    );
    for missing in ["name", "expression", "timezone", "task"] {
        let mut body = nightly("missing");
        body.as_object_mut().unwrap().remove(missing);
        let got = pointers(send(api.post("/v1/schedules", DEMO_TOKEN, &body)).await).await;
        assert_eq!(got, [format!("/{missing}")]);
    }

    let s = created(&api, DEMO_TOKEN, &nightly("valid")).await;
    for (change, pointer) in [
        (json!({"timezone": "Europe/Nowhere"}), "/timezone"),
        (json!({"expression": "* * * * MON-SUNDAY"}), "/expression"),
        (
            json!({"ends_at": "2000-01-01T00:00:00Z", "starts_at": "2001-01-01T00:00:00Z"}),
            "/ends_at",
        ),
        (json!({"name": null}), "/name"),
        (json!({"version": 0}), "/version"),
    ] {
        let got = pointers(send(patch(&api, &path(&s), DEMO_TOKEN, &change)).await).await;
        assert_eq!(got, [pointer], "{change}");
    }
    let unchanged = json(send(api.get(&path(&s), DEMO_TOKEN)).await).await;
    assert_eq!(unchanged["version"], 1, "a refused change changes nothing");
}

#[tokio::test]
async fn a_name_is_unique_within_a_tenant() {
    let api = TestApi::start().await;
    let first = created(&api, DEMO_TOKEN, &nightly("reports")).await;
    let twice = problem(
        send(api.post("/v1/schedules", DEMO_TOKEN, &nightly("reports"))).await,
        409,
    )
    .await;
    assert_eq!(twice["type"], "urn:tms:problem:name-taken");
    created(&api, ACME_TOKEN, &nightly("reports")).await;
    let other = created(&api, DEMO_TOKEN, &nightly("backups")).await;
    let renamed = problem(
        send(patch(
            &api,
            &path(&other),
            DEMO_TOKEN,
            &json!({"name": "reports"}),
        ))
        .await,
        409,
    )
    .await;
    assert_eq!(renamed["type"], "urn:tms:problem:name-taken");
    let free = send(delete(&api, &path(&first), DEMO_TOKEN)).await;
    assert_eq!(free.status(), 204);
    let now_free = json(
        send(patch(
            &api,
            &path(&other),
            DEMO_TOKEN,
            &json!({"name": "reports"}),
        ))
        .await,
    )
    .await;
    assert_eq!(now_free["name"], "reports");
}

#[tokio::test]
async fn viewers_read_schedules_and_change_none() {
    let api = TestApi::start().await;
    let s = created(&api, DEMO_TOKEN, &nightly("nightly")).await;
    let list = json(send(api.get("/v1/schedules", VIEWER_TOKEN)).await).await;
    assert_eq!(list["items"][0]["id"], s["id"]);
    let one = send(api.get(&format!("{}?preview=2", path(&s)), VIEWER_TOKEN)).await;
    assert_eq!(one.status(), 200);
    for resp in [
        send(api.post("/v1/schedules", VIEWER_TOKEN, &nightly("mine"))).await,
        send(patch(
            &api,
            &path(&s),
            VIEWER_TOKEN,
            &json!({"paused": true}),
        ))
        .await,
        send(delete(&api, &path(&s), VIEWER_TOKEN)).await,
    ] {
        problem(resp, 403).await;
    }
    let after = json(send(api.get(&path(&s), DEMO_TOKEN)).await).await;
    assert_eq!(after, s);
}

#[tokio::test]
async fn another_tenants_schedule_is_404_and_operators_see_every_tenant() {
    let api = TestApi::start().await;
    let demo = created(&api, DEMO_TOKEN, &nightly("demo's")).await;
    let acme = created(&api, ACME_TOKEN, &nightly("acme's")).await;
    for resp in [
        send(api.get(&path(&demo), ACME_TOKEN)).await,
        send(patch(
            &api,
            &path(&demo),
            ACME_TOKEN,
            &json!({"paused": true}),
        ))
        .await,
        send(delete(&api, &path(&demo), ACME_TOKEN)).await,
    ] {
        problem(resp, 404).await;
    }
    let acme_list = json(send(api.get("/v1/schedules", ACME_TOKEN)).await).await;
    let ids: Vec<&Value> = acme_list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["id"])
        .collect();
    assert_eq!(ids, [&acme["id"]]);
    problem(
        send(api.get("/v1/schedules?tenant=demo", ACME_TOKEN)).await,
        403,
    )
    .await;

    let all = json(send(api.get("/v1/schedules", OPERATOR_TOKEN)).await).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let only_demo = json(send(api.get("/v1/schedules?tenant=demo", OPERATOR_TOKEN)).await).await;
    assert_eq!(only_demo["items"].as_array().unwrap().len(), 1);
    assert_eq!(only_demo["items"][0]["id"], demo["id"]);
    let paused = json(
        send(patch(
            &api,
            &path(&demo),
            OPERATOR_TOKEN,
            &json!({"paused": true}),
        ))
        .await,
    )
    .await;
    assert_eq!(
        (paused["paused"].clone(), paused["tenant"].clone()),
        (json!(true), json!("demo"))
    );
}

#[tokio::test]
async fn lists_page_newest_first_with_cursors_of_their_scope() {
    let api = TestApi::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(created(&api, DEMO_TOKEN, &nightly(&format!("s{i}"))).await["id"].clone());
    }
    ids.reverse();
    let first = json(send(api.get("/v1/schedules?limit=2", DEMO_TOKEN)).await).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let mut seen: Vec<Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    let rest = json(
        send(api.get(
            &format!("/v1/schedules?limit=10&cursor={cursor}"),
            DEMO_TOKEN,
        ))
        .await,
    )
    .await;
    assert_eq!(rest["next_cursor"], Value::Null);
    seen.extend(
        rest["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].clone()),
    );
    assert_eq!(seen, ids);
    problem(
        send(api.get(&format!("/v1/schedules?cursor={cursor}"), ACME_TOKEN)).await,
        400,
    )
    .await;
    problem(
        send(api.get("/v1/schedules?limit=0", DEMO_TOKEN)).await,
        400,
    )
    .await;
}
