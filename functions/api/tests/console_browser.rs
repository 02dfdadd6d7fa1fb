//! The console in a real browser (headless Chromium), used the way a person would: sign in
//! with a token, find tasks, open one, redrive a dead one, bulk-cancel by filter; a viewer sees
//! no actions; another tenant's task is not reachable by its URL; the pages fit a phone and
//! take the keyboard; subscriptions are removed from their page and limits show their usage. Screenshots land in `target/screenshots/` for review.

mod support;

use serde_json::{json, Value};
use support::{json, TestApi, ACME_TOKEN, DEMO_TOKEN, OPERATOR_TOKEN, VIEWER_TOKEN};
use tms::TaskId;
use tms_testkit::browser::Browser;

/// Creates a noop task with an idempotency key for `token`'s tenant; its id.
async fn create(api: &TestApi, token: &str, key: &str) -> TaskId {
    let resp = api
        .post(
            "/v1/tasks",
            token,
            &json!({"kind": "noop", "payload": {"key": key}}),
        )
        .header("Idempotency-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    json(resp).await["id"].as_str().unwrap().parse().unwrap()
}

async fn task(api: &TestApi, id: TaskId) -> Value {
    json(
        api.get(&format!("/v1/tasks/{id}"), OPERATOR_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Signs in with `token` from the sign-in page the console sends a stranger to.
async fn sign_in(browser: &Browser, api: &TestApi, token: &str) {
    browser
        .open(&format!("{}/console", api.url), "#token")
        .await;
    assert!(
        browser.url().await.contains("/console/login"),
        "sent to sign in"
    );
    browser.fill("#token", token).await;
    browser.click("form[action='/console/login'] button").await;
    browser.wait_for("h1").await;
    browser.wait_for_text("Overview").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_finds_tasks_opens_one_and_redrives_a_dead_one() {
    let api = TestApi::start().await;
    let first = create(&api, DEMO_TOKEN, "order-1001").await;
    let second = create(&api, DEMO_TOKEN, "order-1002").await;
    let doomed = create(&api, DEMO_TOKEN, "order-1003").await;
    api.kill("demo", doomed).await;
    let browser = Browser::start(1280, 900).await;

    // A wrong token is refused on the sign-in page.
    browser
        .open(&format!("{}/console/tasks", api.url), "#token")
        .await;
    browser.fill("#token", "not-a-token").await;
    browser.click("form[action='/console/login'] button").await;
    browser.wait_for_text("That token is not known.").await;

    sign_in(&browser, &api, DEMO_TOKEN).await;
    browser.wait_for_text("demo").await;
    let overview = browser.text("main").await;
    assert!(overview.contains("dead"), "{overview}");
    browser.screenshot("console-overview").await;

    // The list shows the tasks created through the API; the text filter finds one.
    browser.click("nav a[href='/console/tasks']").await;
    browser.wait_for("table.tasks").await;
    let list = browser.text("table.tasks").await;
    for id in [first, second, doomed] {
        assert!(list.contains(&id.to_string()[24..]), "{id} listed:\n{list}");
    }
    browser.fill("#f-q", "order-1002").await;
    browser.click(".filters button[type=submit]").await;
    browser.wait_for_url("q=order-1002").await;
    let filtered = browser.text("table.tasks tbody").await;
    assert!(filtered.contains(&second.to_string()[24..]), "{filtered}");
    assert!(!filtered.contains(&first.to_string()[24..]), "{filtered}");
    browser.screenshot("console-tasks").await;

    // A task's page: payload, timeline, correlation id.
    browser.click("table.tasks tbody a.id").await;
    browser.wait_for("ol.timeline").await;
    let page = browser.text("main").await;
    assert!(
        page.contains("order-1002") && page.contains("created, pending"),
        "{page}"
    );
    browser.screenshot("console-task").await;

    // The dead tasks page lists the dead one; its page redrives it.
    browser.click("nav a[href='/console/dead']").await;
    browser.wait_for("table.tasks").await;
    let dead = browser.text("table.tasks tbody").await;
    assert!(dead.contains(&doomed.to_string()[24..]), "{dead}");
    assert!(!dead.contains(&first.to_string()[24..]), "{dead}");
    browser.screenshot("console-dead").await;
    browser.click("table.tasks tbody a.id").await;
    browser.wait_for_text("http_404").await;
    browser.click("form[action$='/redrive'] button").await;
    browser
        .wait_for_text("The task was redriven: it is pending and queued again.")
        .await;
    assert_eq!(task(&api, doomed).await["status"], "pending");
    assert_eq!(task(&api, doomed).await["attempts"], 0);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_bulk_cancels_by_filter_after_a_count_and_a_confirmation() {
    let api = TestApi::start().await;
    let mut batch = Vec::new();
    for n in 0..3 {
        batch.push(create(&api, DEMO_TOKEN, &format!("bulk-{n}")).await);
    }
    let spared = create(&api, DEMO_TOKEN, "keep-1").await;
    let browser = Browser::start(1280, 900).await;
    sign_in(&browser, &api, DEMO_TOKEN).await;

    browser
        .open(&format!("{}/console/tasks?q=bulk-", api.url), "form.bulk")
        .await;
    browser.click("form.bulk button").await;
    browser.wait_for(".confirm-count").await;
    assert_eq!(browser.text(".confirm-count strong").await, "3");
    browser.screenshot("console-bulk-confirm").await;
    for id in &batch {
        assert_eq!(
            task(&api, *id).await["status"],
            "pending",
            "nothing changed before confirming"
        );
    }
    browser
        .click("form[action='/console/bulk/run'] button")
        .await;
    browser.wait_for_text("3 tasks were cancelled.").await;
    for id in &batch {
        assert_eq!(task(&api, *id).await["status"], "cancelled");
    }
    assert_eq!(
        task(&api, spared).await["status"],
        "pending",
        "outside the filter"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_action_and_cannot_act() {
    let api = TestApi::start().await;
    let doomed = create(&api, DEMO_TOKEN, "viewer-1").await;
    api.kill("demo", doomed).await;
    let browser = Browser::start(1280, 900).await;
    sign_in(&browser, &api, VIEWER_TOKEN).await;
    browser.wait_for_text("viewer").await;

    browser
        .open(&format!("{}/console/dead", api.url), "table.tasks")
        .await;
    assert_eq!(
        browser.count("form.bulk").await,
        0,
        "no bulk action for a viewer"
    );
    browser
        .open(
            &format!("{}/console/tasks/{doomed}", api.url),
            "ol.timeline",
        )
        .await;
    assert_eq!(
        browser.count(".task-actions button").await,
        0,
        "no action buttons"
    );
    browser.screenshot("console-viewer-task").await;

    // A forged form post with the viewer's own session is refused too.
    let csrf = browser
        .eval("return document.querySelector('form[action=\"/console/logout\"] input[name=csrf]').value")
        .await;
    let status = browser
        .eval(&format!(
            "return fetch('/console/tasks/{doomed}/redrive', {{method: 'POST', \
             headers: {{'content-type': 'application/x-www-form-urlencoded'}}, \
             body: 'csrf={}'}}).then(r => r.status)",
            csrf.as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 403);
    assert_eq!(task(&api, doomed).await["status"], "dead");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_task_is_not_reachable_by_its_url() {
    let api = TestApi::start().await;
    let theirs = create(&api, DEMO_TOKEN, "private-1").await;
    let browser = Browser::start(1280, 900).await;
    sign_in(&browser, &api, ACME_TOKEN).await;
    browser
        .open(&format!("{}/console/tasks/{theirs}", api.url), "main")
        .await;
    browser.wait_for_text("no such task").await;
    let page = browser.text("main").await;
    assert!(!page.contains("private-1"), "{page}");
    browser
        .open(&format!("{}/console/tasks", api.url), "table.tasks")
        .await;
    assert!(!browser
        .text("main")
        .await
        .contains(&theirs.to_string()[24..]));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_every_tenant_and_can_narrow_to_one() {
    let api = TestApi::start().await;
    let demo = create(&api, DEMO_TOKEN, "op-demo").await;
    let acme = create(&api, ACME_TOKEN, "op-acme").await;
    let browser = Browser::start(1280, 900).await;
    sign_in(&browser, &api, OPERATOR_TOKEN).await;
    browser.wait_for_text("every tenant").await;
    browser
        .open(&format!("{}/console/tasks", api.url), "table.tasks")
        .await;
    let all = browser.text("table.tasks tbody").await;
    assert!(all.contains(&demo.to_string()[24..]) && all.contains(&acme.to_string()[24..]));
    browser.fill("#f-tenant", "acme").await;
    browser.click(".filters button[type=submit]").await;
    browser.wait_for_url("tenant=acme").await;
    let acme_only = browser.text("table.tasks tbody").await;
    assert!(!acme_only.contains(&demo.to_string()[24..]), "{acme_only}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_fit_a_phone_and_take_the_keyboard() {
    let api = TestApi::start().await;
    let id = create(&api, DEMO_TOKEN, "phone-1").await;
    let browser = Browser::start(390, 844).await;
    sign_in(&browser, &api, DEMO_TOKEN).await;
    let width = browser
        .eval("return window.innerWidth")
        .await
        .as_u64()
        .unwrap();
    assert!(width <= 400, "a phone-sized window ({width} px)");
    for (path, name) in [
        ("/console".to_owned(), "console-phone-overview"),
        ("/console/tasks".to_owned(), "console-phone-tasks"),
        (format!("/console/tasks/{id}"), "console-phone-task"),
        ("/console/dead".to_owned(), "console-phone-dead"),
        ("/console/imports".to_owned(), "console-phone-imports"),
        ("/console/triggers".to_owned(), "console-phone-triggers"),
        (
            "/console/subscriptions".to_owned(),
            "console-phone-subscriptions",
        ),
        ("/console/limits".to_owned(), "console-phone-limits"),
    ] {
        browser.open(&format!("{}{path}", api.url), "main").await;
        let overflow = browser
            .eval("return document.documentElement.scrollWidth - window.innerWidth")
            .await
            .as_i64()
            .unwrap();
        assert!(overflow <= 0, "{path} scrolls sideways by {overflow} px");
        browser.screenshot(name).await;
    }

    // The keyboard: the first Tab lands on the skip link, which is then visible; every form
    // field has a label.
    browser
        .open(&format!("{}/console/tasks", api.url), "main")
        .await;
    browser
        .client
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{e004}")
        .await
        .unwrap();
    let focused = browser
        .eval("return [document.activeElement.className, getComputedStyle(document.activeElement).left]")
        .await;
    assert_eq!(focused[0], "skip", "{focused}");
    assert_ne!(focused[1], "-9999px", "the focused skip link is on screen");
    let unlabelled = browser
        .eval(
            "return [...document.querySelectorAll('input:not([type=hidden]), select')]\
             .filter(e => !e.labels || e.labels.length === 0).map(e => e.name)",
        )
        .await;
    assert_eq!(unlabelled, json!([]), "fields without a label");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_the_tenants_triggers_and_a_member_removes_one() {
    let api = TestApi::start().await;
    let registered = api
        .post(
            "/v1/triggers",
            DEMO_TOKEN,
            &json!({"name": "paid orders", "source": "shop.orders", "detail_type": "Order Placed",
                "detail_match": {"pointer": "/status", "equals": "paid"},
                "task": {"kind": "noop", "payload": {"order": {"$event": "/detail/orderId"}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let browser = Browser::start(1280, 900).await;
    sign_in(&browser, &api, DEMO_TOKEN).await;
    browser.click("nav a[href='/console/triggers']").await;
    browser.wait_for_text("paid orders").await;
    let row = browser.text("tbody tr").await;
    assert!(
        row.contains("shop.orders") && row.contains("/status = \"paid\""),
        "{row}"
    );
    browser.screenshot("console-triggers").await;
    browser.click("tbody form button").await;
    browser.wait_for_text("The trigger was removed").await;
    let list = json(api.get("/v1/triggers", DEMO_TOKEN).send().await.unwrap()).await;
    assert_eq!(list["items"], json!([]));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_pauses_resumes_and_removes_a_schedule_and_a_viewer_only_reads() {
    let api = TestApi::start().await;
    let created = api
        .post(
            "/v1/schedules",
            DEMO_TOKEN,
            &json!({"name": "nightly report", "expression": "30 2 * * *",
                "timezone": "Europe/Berlin", "task": {"kind": "noop", "payload": {}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = json(created).await["id"].as_str().unwrap().to_owned();
    let schedule = || async {
        json(
            api.get(&format!("/v1/schedules/{id}"), DEMO_TOKEN)
                .send()
                .await
                .unwrap(),
        )
        .await
    };

    let viewer = Browser::start(1280, 900).await;
    sign_in(&viewer, &api, VIEWER_TOKEN).await;
    viewer.click("nav a[href='/console/schedules']").await;
    viewer.wait_for_text("nightly report").await;
    assert_eq!(
        viewer.count("tbody form").await,
        0,
        "a viewer has no actions"
    );
    viewer.close().await;

    let browser = Browser::start(1280, 900).await;
    sign_in(&browser, &api, DEMO_TOKEN).await;
    browser.click("nav a[href='/console/schedules']").await;
    browser.wait_for_text("nightly report").await;
    let row = browser.text("tbody tr").await;
    for shown in ["30 2 * * *", "Europe/Berlin", "noop", "Active", "never"] {
        assert!(row.contains(shown), "{shown:?} missing from {row}");
    }
    browser.screenshot("console-schedules").await;

    browser
        .click("button[aria-label='Pause schedule nightly report']")
        .await;
    browser.wait_for_text("The schedule was paused").await;
    assert!(browser.text("tbody tr").await.contains("Paused"));
    let paused = schedule().await;
    assert_eq!(
        (&paused["paused"], &paused["next_run_at"]),
        (&json!(true), &Value::Null)
    );

    browser
        .click("button[aria-label='Resume schedule nightly report']")
        .await;
    browser.wait_for_text("The schedule was resumed").await;
    assert!(browser.text("tbody tr").await.contains("Active"));
    let resumed = schedule().await;
    assert_eq!(resumed["paused"], json!(false));
    assert!(resumed["next_run_at"].is_string(), "{resumed}");

    browser
        .click("button[aria-label='Remove schedule nightly report']")
        .await;
    browser.wait_for_text("The schedule was removed").await;
    let list = json(api.get("/v1/schedules", DEMO_TOKEN).send().await.unwrap()).await;
    assert_eq!(list["items"], json!([]));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removes_a_subscription_a_viewer_only_reads_and_limits_show_their_usage() {
    let api = TestApi::start().await;
    let created = api
        .post(
            "/v1/subscriptions",
            DEMO_TOKEN,
            &json!({"url": "https://hooks.partner.example/tms",
                "event_types": ["Task Succeeded", "Task Dead"], "kinds": ["webhook"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created = json(created).await;
    let id = created["subscription"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();

    let viewer = Browser::start(1280, 900).await;
    sign_in(&viewer, &api, VIEWER_TOKEN).await;
    viewer.click("nav a[href='/console/subscriptions']").await;
    viewer
        .wait_for_text("https://hooks.partner.example/tms")
        .await;
    assert_eq!(
        viewer.count("tbody form").await,
        0,
        "a viewer has no actions"
    );
    viewer.click("nav a[href='/console/limits']").await;
    viewer.wait_for_text("No limits").await;
    viewer.close().await;

    let limits = json!({"max_running": 10, "rate": {"per_second": 2.5},
        "kinds": {"webhook": {"max_running": 2}}});
    let set = api
        .put("/v1/limits", DEMO_TOKEN, &limits)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);

    let browser = Browser::start(1280, 900).await;
    sign_in(&browser, &api, DEMO_TOKEN).await;
    browser.click("nav a[href='/console/limits']").await;
    browser.wait_for_text("all tasks").await;
    let rows = browser.text("table.limits tbody").await;
    for shown in [
        "all tasks 10 2.5 a second, burst 3 0 3.00",
        "kind webhook 2 — 0 —",
    ] {
        assert!(rows.contains(shown), "{shown:?} missing from {rows}");
    }
    browser.screenshot("console-limits").await;

    browser.click("nav a[href='/console/subscriptions']").await;
    browser
        .wait_for_text("https://hooks.partner.example/tms")
        .await;
    let row = browser.text("tbody tr").await;
    for shown in ["Task Succeeded, Task Dead", "webhook"] {
        assert!(row.contains(shown), "{shown:?} missing from {row}");
    }
    let html = browser
        .eval("return document.documentElement.outerHTML")
        .await;
    assert!(
        !html.as_str().unwrap().contains(&secret),
        "the signing secret is never shown"
    );
    browser.screenshot("console-subscriptions").await;
    browser
        .click("button[aria-label='Remove subscription to https://hooks.partner.example/tms']")
        .await;
    browser.wait_for_text("The subscription was removed").await;
    let gone = api
        .get(&format!("/v1/subscriptions/{id}"), DEMO_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    browser.close().await;
}
