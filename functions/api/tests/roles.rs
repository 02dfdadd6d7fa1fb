//! Roles, scopes, the bulk actions, the stats and the list filters over real HTTP against the
//! real database; and the console's session cookie and its anti-forgery checks.

mod support;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use support::{json, problem, TestApi, ACME_TOKEN, DEMO_TOKEN, OPERATOR_TOKEN, VIEWER_TOKEN};
use tms::TaskId;

async fn create(api: &TestApi, token: &str, key: &str, kind: &str) -> TaskId {
    let resp = api
        .post(
            "/v1/tasks",
            token,
            &json!({"kind": kind, "payload": payload(kind)}),
        )
        .header("Idempotency-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    json(resp).await["id"].as_str().unwrap().parse().unwrap()
}

fn payload(kind: &str) -> Value {
    match kind {
        "archive" => json!({"name": "x"}),
        _ => json!({}),
    }
}

async fn ids(api: &TestApi, token: &str, query: &str) -> Vec<String> {
    let page = json(
        api.get(&format!("/v1/tasks?{query}"), token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_viewer_reads_but_may_not_change_anything() {
    let api = TestApi::start().await;
    let id = create(&api, DEMO_TOKEN, "v-1", "noop").await;
    let seen = api
        .get(&format!("/v1/tasks/{id}"), VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(seen.status(), 200);
    for (path, body) in [
        (
            "/v1/tasks".to_owned(),
            json!({"kind": "noop", "payload": {}}),
        ),
        (
            "/v1/tasks/batch".to_owned(),
            json!({"tasks": [{"kind": "noop", "payload": {}}]}),
        ),
        (format!("/v1/tasks/{id}/cancel"), json!({})),
        (format!("/v1/tasks/{id}/redrive"), json!({})),
        ("/v1/tasks/cancel".to_owned(), json!({})),
        ("/v1/tasks/redrive".to_owned(), json!({})),
        (
            "/v1/imports".to_owned(),
            json!({"filename": "a.csv", "size_bytes": 10}),
        ),
    ] {
        let refused = api.post(&path, VIEWER_TOKEN, &body).send().await.unwrap();
        let p = problem(refused, 403).await;
        assert!(
            p["detail"].as_str().unwrap().contains("viewer"),
            "{path}: {p}"
        );
    }
    assert_eq!(
        json(
            api.get(&format!("/v1/tasks/{id}"), DEMO_TOKEN)
                .send()
                .await
                .unwrap()
        )
        .await["status"],
        "pending"
    );
}

#[tokio::test]
async fn an_operator_reads_and_acts_on_every_tenant_and_others_stay_in_theirs() {
    let api = TestApi::start().await;
    let demo = create(&api, DEMO_TOKEN, "o-1", "noop").await.to_string();
    let acme = create(&api, ACME_TOKEN, "o-2", "noop").await.to_string();

    let everyone = ids(&api, OPERATOR_TOKEN, "limit=100").await;
    assert!(everyone.contains(&demo) && everyone.contains(&acme));
    assert_eq!(
        ids(&api, OPERATOR_TOKEN, "tenant=acme").await,
        [acme.as_str()]
    );
    assert_eq!(ids(&api, DEMO_TOKEN, "").await, [demo.as_str()]);
    assert_eq!(ids(&api, DEMO_TOKEN, "tenant=demo").await, [demo.as_str()]);
    problem(
        api.get("/v1/tasks?tenant=acme", DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    problem(
        api.get(&format!("/v1/tasks/{acme}"), DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    let cancelled = api
        .post(
            &format!("/v1/tasks/{acme}/cancel"),
            OPERATOR_TOKEN,
            &json!({}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    let task = json(cancelled).await;
    assert_eq!(
        (task["status"].as_str(), task["tenant"].as_str()),
        (Some("cancelled"), Some("acme"))
    );
}

#[tokio::test]
async fn bulk_actions_count_first_change_at_most_their_limit_and_stay_in_scope() {
    let api = TestApi::start().await;
    let mut mine = Vec::new();
    for n in 0..5 {
        mine.push(create(&api, DEMO_TOKEN, &format!("bulk-{n}"), "noop").await);
    }
    let other_kind = create(&api, DEMO_TOKEN, "bulk-archive", "archive").await;
    let theirs = create(&api, ACME_TOKEN, "bulk-acme", "noop").await;

    let filter = json!({"kind": "noop", "q": "bulk-"});
    let mut dry = filter.clone();
    dry["dry_run"] = json!(true);
    let counted = json(
        api.post("/v1/tasks/cancel", DEMO_TOKEN, &dry)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(counted, json!({"matched": 5, "changed": 0}));
    let mut limited = filter.clone();
    limited["limit"] = json!(2);
    let first = json(
        api.post("/v1/tasks/cancel", DEMO_TOKEN, &limited)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(first["changed"], 2);
    let rest = json(
        api.post("/v1/tasks/cancel", DEMO_TOKEN, &filter)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(rest["changed"], 3, "the rest on the next call");
    let again = json(
        api.post("/v1/tasks/cancel", DEMO_TOKEN, &filter)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        again["changed"], 0,
        "cancelled tasks are not cancelled twice"
    );
    let status = |id: TaskId| {
        let api = &api;
        async move {
            json(
                api.get(&format!("/v1/tasks/{id}"), OPERATOR_TOKEN)
                    .send()
                    .await
                    .unwrap(),
            )
            .await["status"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    for id in &mine {
        assert_eq!(status(*id).await, "cancelled");
    }
    assert_eq!(status(other_kind).await, "pending", "another kind");
    assert_eq!(status(theirs).await, "pending", "another tenant");

    // Redrive takes dead tasks only; the events name the transition.
    api.kill("demo", other_kind).await;
    let redriven = json(
        api.post("/v1/tasks/redrive", DEMO_TOKEN, &json!({"q": "bulk-"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(redriven["changed"], 1);
    assert_eq!(status(other_kind).await, "pending");
    let sent = api.queue.drain(&api.queue.url, 8).await;
    assert!(
        sent.iter()
            .any(|m| m.body().unwrap().contains(&other_kind.to_string())),
        "a redriven task is queued again"
    );
    // Limits are bounded; a member may not name another tenant.
    problem(
        api.post("/v1/tasks/cancel", DEMO_TOKEN, &json!({"limit": 1001}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    problem(
        api.post("/v1/tasks/cancel", DEMO_TOKEN, &json!({"tenant": "acme"}))
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    let across = json(
        api.post(
            "/v1/tasks/cancel",
            OPERATOR_TOKEN,
            &json!({"tenant": "acme", "dry_run": true}),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(across["matched"], 1);
}

#[tokio::test]
async fn lists_filter_by_source_creation_time_and_text() {
    let api = TestApi::start().await;
    let early = create(&api, DEMO_TOKEN, "invoice-77", "noop")
        .await
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let boundary = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let late = create(&api, DEMO_TOKEN, "receipt-12", "noop")
        .await
        .to_string();
    let stamp = boundary.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let encoded: String = url::form_urlencoded::byte_serialize(stamp.as_bytes()).collect();
    assert_eq!(
        ids(&api, DEMO_TOKEN, &format!("created_after={encoded}")).await,
        [late.as_str()]
    );
    assert_eq!(
        ids(&api, DEMO_TOKEN, &format!("created_before={encoded}")).await,
        [early.as_str()]
    );
    assert_eq!(
        ids(&api, DEMO_TOKEN, "q=VOICE").await,
        [early.as_str()],
        "case-insensitive"
    );
    assert_eq!(
        ids(&api, DEMO_TOKEN, "q=%25").await,
        Vec::<String>::new(),
        "% is literal"
    );
    assert_eq!(ids(&api, DEMO_TOKEN, "source=api").await.len(), 2);
    assert!(ids(&api, DEMO_TOKEN, "source=import").await.is_empty());
    let corr = json(
        api.get(&format!("/v1/tasks/{late}"), DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        ids(&api, DEMO_TOKEN, &format!("q={corr}")).await,
        [late.as_str()]
    );
    for bad in ["source=ftp", "created_after=yesterday", "tenant=", "q="] {
        let resp = api
            .get(&format!("/v1/tasks?{bad}"), DEMO_TOKEN)
            .send()
            .await
            .unwrap();
        if bad == "q=" {
            assert_eq!(resp.status(), 200, "an empty q is no filter");
        } else {
            problem(resp, 400).await;
        }
    }
    // A cursor is bound to its filter.
    let page = json(
        api.get("/v1/tasks?limit=1&q=-", DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = ids(&api, DEMO_TOKEN, &format!("limit=1&q=-&cursor={cursor}")).await;
    assert_eq!(next, [early.as_str()]);
    problem(
        api.get(
            &format!("/v1/tasks?limit=1&q=x&cursor={cursor}"),
            DEMO_TOKEN,
        )
        .send()
        .await
        .unwrap(),
        400,
    )
    .await;
}

#[tokio::test]
async fn stats_count_per_status_and_kind_within_the_callers_scope() {
    let api = TestApi::start().await;
    create(&api, DEMO_TOKEN, "s-1", "noop").await;
    let doomed = create(&api, DEMO_TOKEN, "s-2", "archive").await;
    create(&api, ACME_TOKEN, "s-3", "noop").await;
    api.kill("demo", doomed).await;
    let stats = json(api.get("/v1/stats", DEMO_TOKEN).send().await.unwrap()).await;
    assert_eq!(stats["by_status"]["pending"], 1, "{stats}");
    assert_eq!(stats["by_status"]["dead"], 1);
    assert_eq!(stats["dead"], 1);
    assert_eq!(
        stats["counts"],
        json!([
            {"status": "dead", "kind": "archive", "count": 1},
            {"status": "pending", "kind": "noop", "count": 1},
        ])
    );
    let failed: u64 = stats["per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["failed"].as_u64().unwrap())
        .sum();
    assert_eq!(failed, 1, "the dead attempt in this minute");
    assert!(stats["oldest_pending_seconds"].as_f64().unwrap() >= 0.0);
    assert!(
        stats["queue_waiting"].is_u64(),
        "the emulator's queue answers"
    );
    let all = json(api.get("/v1/stats", OPERATOR_TOKEN).send().await.unwrap()).await;
    assert_eq!(all["by_status"]["pending"], 2, "every tenant");
    let acme = json(
        api.get("/v1/stats?tenant=acme", OPERATOR_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(acme["by_status"]["pending"], 1);
    problem(
        api.get("/v1/stats?tenant=acme", DEMO_TOKEN)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
}

/// A client that keeps no cookies and follows no redirects: the test reads them itself.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The `name=value` of a Set-Cookie header named `name`, and the whole header.
fn cookie(resp: &reqwest::Response, name: &str) -> Option<(String, String)> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .find(|h| h.starts_with(&format!("{name}=")))
        .map(|h| (h.split(';').next().unwrap().to_owned(), h.to_owned()))
}

/// Signs in with `token` as a browser would: the sign-in page's cookie and form token first.
async fn sign_in(api: &TestApi, token: &str) -> reqwest::Response {
    let http = raw_client();
    let page = http
        .get(format!("{}/console/login", api.url))
        .send()
        .await
        .unwrap();
    let (login_cookie, _) = cookie(&page, "tms_login").expect("the sign-in form's cookie");
    let form_token = login_cookie.split_once('=').unwrap().1.to_owned();
    http.post(format!("{}/console/login", api.url))
        .header(COOKIE, login_cookie)
        .form(&[
            ("token", token),
            ("csrf", &form_token),
            ("next", "/console/dead"),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_console_session_is_an_httponly_strict_cookie_checked_on_every_request() {
    let api = TestApi::start().await;
    let http = raw_client();

    // Without a session every page sends the browser to sign in, and back afterwards.
    let away = http
        .get(format!("{}/console/tasks?kind=noop", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(away.status(), 303);
    assert_eq!(
        away.headers()[LOCATION],
        "/console/login?next=%2Fconsole%2Ftasks%3Fkind%3Dnoop"
    );

    // A sign-in form posted without its cookie is refused.
    let forged = http
        .post(format!("{}/console/login", api.url))
        .form(&[("token", DEMO_TOKEN), ("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(cookie(&forged, "tms_session").is_none());

    let signed_in = sign_in(&api, DEMO_TOKEN).await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()[LOCATION], "/console/dead");
    let (session, header) = cookie(&signed_in, "tms_session").expect("a session cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=28800",
    ] {
        assert!(header.contains(attribute), "{attribute}: {header}");
    }
    assert!(!header.contains("Secure"), "no TLS on loopback: {header}");
    let page = http
        .get(format!("{}/console/tasks", api.url))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's anti-forgery token")
        .to_owned();

    // An action without the page's anti-forgery token is refused.
    let id = create(&api, DEMO_TOKEN, "c-1", "noop").await;
    let forged = http
        .post(format!("{}/console/tasks/{id}/cancel", api.url))
        .header(COOKIE, &session)
        .form(&[("csrf", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let cancelled = http
        .post(format!("{}/console/tasks/{id}/cancel", api.url))
        .header(COOKIE, &session)
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 303);
    assert_eq!(
        json(
            api.get(&format!("/v1/tasks/{id}"), DEMO_TOKEN)
                .send()
                .await
                .unwrap()
        )
        .await["status"],
        "cancelled"
    );

    // Signing out ends the session: the old cookie signs no one in.
    let out = http
        .post(format!("{}/console/logout", api.url))
        .header(COOKIE, &session)
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(cookie(&out, "tms_session").unwrap().1.contains("Max-Age=0"));
    let after = http
        .get(format!("{}/console/tasks", api.url))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303, "sent to sign in again");
}

#[tokio::test]
async fn a_token_taken_out_of_the_map_ends_its_console_sessions() {
    let api = TestApi::start_with(support::Options {
        token_ttl: Some(std::time::Duration::ZERO),
        ..support::Options::default()
    })
    .await;
    let signed_in = sign_in(&api, ACME_TOKEN).await;
    let (session, _) = cookie(&signed_in, "tms_session").unwrap();
    let http = raw_client();
    let ok = http
        .get(format!("{}/console", api.url))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    api.replace_token_map(&json!({ tms_api::auth::token_hash(DEMO_TOKEN): "demo" }))
        .await;
    let gone = http
        .get(format!("{}/console", api.url))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 303, "the token left the map");
}
