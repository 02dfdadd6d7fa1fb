//! End to end: the local stack in one process (the API over real HTTP, the event-source runner
//! driving the worker, importer and scheduler handlers) against a fresh database and resources
//! of its own in the AWS emulator, walked through the demo's flows; and a load run whose
//! runner, a process of its own, is killed in the middle of it.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{json, Value};
use tms::config::Env;
use tms_local::demo::Demo;
use tms_local::load::{Fault, Faults, Plan, Target};
use tms_local::stack::Names;
use tms_local::{Resources, Stack};
use tms_testkit::{repo_root, TestDb};

struct E2e {
    _db: TestDb,
    res: Resources,
    events: aws_sdk_eventbridge::Client,
    api: String,
    token: String,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    /// The ports of the stack: the API, the emulator and PostgreSQL.
    ports: [u16; 3],
    _stop: tokio::sync::watch::Sender<bool>,
}

/// A fresh database, resources of its own in the emulator, and the API serving them.
struct Served {
    db: TestDb,
    stack: Stack,
    res: Resources,
    aws: aws_config::SdkConfig,
    api: String,
}

async fn serve() -> Served {
    let db = TestDb::new().await;
    let mut stack = Stack::from_env(&repo_root()).expect("local stack settings");
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    stack.names = Names::with_prefix(&prefix, &db.name);
    let aws = stack.sdk_config().await;
    let res = stack.provision(&aws).await.expect("provision the emulator");
    let vars = stack.function_env(&res);
    let env = Env::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let api_config = tms_api::Config::from_env(&env).expect("API configuration");
    let app = tms_api::build_router(&api_config, &aws)
        .await
        .expect("the API");
    let addr = tms_testkit::http::serve(app).await;
    Served {
        db,
        stack,
        res,
        aws,
        api: format!("http://{addr}"),
    }
}

async fn start() -> E2e {
    let Served {
        db,
        stack,
        res,
        aws,
        api,
    } = serve().await;
    let runner = tms_local::runner(&stack, &res).await.expect("the runner");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(runner.run(stopped));
    E2e {
        _db: db,
        res,
        api,
        token: stack.tokens[0].1.clone(),
        events: aws_sdk_eventbridge::Client::new(&aws),
        sqs: aws_sdk_sqs::Client::new(&aws),
        s3: tms::adapters::s3::client(&aws),
        ports: [stack.api_port, stack.aws_port, stack.pg_port],
        _stop: stop,
    }
}

/// `tms-local runner` as `tms-local dev` runs it, in a process of its own.
struct ChildRunner {
    env: Vec<(String, String)>,
    child: tokio::sync::Mutex<tokio::process::Child>,
}

impl ChildRunner {
    fn spawn(env: &[(String, String)]) -> tokio::process::Child {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tms-local"))
            .arg("runner")
            .envs(env.iter().cloned())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start tms-local runner")
    }
}

#[async_trait::async_trait]
impl Faults for ChildRunner {
    async fn inject(&self, fault: Fault) -> anyhow::Result<String> {
        match fault {
            Fault::KillRunner => {
                let mut child = self.child.lock().await;
                let pid = child.id();
                child.kill().await?;
                *child = Self::spawn(&self.env);
                Ok(format!("killed runner {pid:?}; started {:?}", child.id()))
            }
            Fault::RestartDatabase => {
                anyhow::bail!("the tests share one PostgreSQL: it is not restarted under them")
            }
        }
    }
}

impl E2e {
    fn demo(&self) -> Demo {
        Demo {
            api: self.api.clone(),
            token: self.token.clone(),
            http: tms_local::http_client(),
            timeout: Duration::from_secs(90),
            events: self.events.clone(),
            event_bus: self.res.event_bus.clone(),
        }
    }

    async fn tasks(&self) -> Vec<Value> {
        let page: Value = tms_local::http_client()
            .get(format!("{}/v1/tasks?limit=100", self.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["items"].as_array().cloned().unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_runs_the_import_counts_and_a_dead_webhook_is_redriven() {
    let e2e = start().await;
    let report = e2e.demo().run().await.expect("the demo completes");
    for task in &report.tasks {
        assert_eq!(task.status, "succeeded", "{task:?}");
    }
    let kinds: Vec<(&str, &str)> = report
        .tasks
        .iter()
        .map(|t| (t.label.as_str(), t.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("email", "email"),
            ("webhook", "webhook"),
            ("archive", "archive"),
            ("noop", "noop"),
            ("event", "archive"),
            ("schedule", "archive"),
            ("delivery", "notification"),
        ]
    );
    for fired in &report.tasks[4..6] {
        assert!(
            fired
                .location
                .starts_with(&format!("s3://{}/archive/demo/", e2e.res.bucket)),
            "{fired:?}"
        );
    }
    let schedules: Value = tms_local::http_client()
        .get(format!("{}/v1/schedules", e2e.api))
        .bearer_auth(&e2e.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        schedules["items"],
        json!([]),
        "the demo removes its schedule"
    );
    assert!(report.tasks[0]
        .location
        .starts_with(&format!("s3://{}/emails/", e2e.res.bucket)));
    assert!(report.tasks[2]
        .location
        .starts_with(&format!("s3://{}/archive/demo/", e2e.res.bucket)));
    assert_eq!(report.webhook_before_redrive, "dead");
    assert_eq!(report.webhook_attempts_before_redrive, 2);
    let import = &report.import;
    assert_eq!(
        (
            import.status.as_str(),
            import.total,
            import.accepted,
            import.rejected
        ),
        ("completed", 5, 3, 2)
    );
    let imported: Vec<Value> = e2e
        .tasks()
        .await
        .into_iter()
        .filter(|t| t["source"]["type"] == "import")
        .collect();
    assert_eq!(imported.len(), 3);
    let started = Instant::now();
    loop {
        let statuses: Vec<String> = e2e
            .tasks()
            .await
            .into_iter()
            .filter(|t| t["source"]["type"] == "import")
            .map(|t| t["status"].as_str().unwrap().to_owned())
            .collect();
        if statuses.iter().all(|s| s == "succeeded") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "imported tasks run too: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_cannot_reach_the_stack_itself() {
    // What a tenant tried: PUT a JSON Lines file under another tenant's import prefix through
    // the emulator on loopback, so that the importer would create tasks for that tenant.
    let e2e = start().await;
    let http = tms_local::http_client();
    let [api, aws, pg] = e2e.ports;
    let evil = format!("{}/imports/acme/evil.jsonl", e2e.res.bucket);
    let urls = [
        format!("http://127.0.0.1:{aws}/{evil}"),
        format!("http://localhost:{aws}/{evil}"),
        format!("http://[::1]:{aws}/{evil}"),
        format!("http://127.0.0.1:{pg}/"),
        format!("http://localhost:{api}/v1/tasks"),
    ];
    let mut created = Vec::new();
    for url in &urls {
        let body = json!({"kind": "webhook", "max_attempts": 1, "payload": {
            "url": url, "method": "PUT",
            "body": {"tenant": "acme", "kind": "noop", "payload": {}}
        }});
        let resp = http
            .post(format!("{}/v1/tasks", e2e.api))
            .bearer_auth(&e2e.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            422 => {}
            202 => created.push((url, resp.json::<Value>().await.unwrap()["id"].clone())),
            other => panic!("{url}: {other} {}", resp.text().await.unwrap_or_default()),
        }
    }
    let started = Instant::now();
    for (url, id) in created {
        loop {
            let task: Value = http
                .get(format!("{}/v1/tasks/{}", e2e.api, id.as_str().unwrap()))
                .bearer_auth(&e2e.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if task["status"] == "dead" {
                let code = task["last_error"]["code"].as_str().unwrap_or_default();
                assert!(
                    ["url_refused", "address_refused"].contains(&code),
                    "{url}: {task}"
                );
                break;
            }
            assert_ne!(task["status"], "succeeded", "{url} was reached: {task}");
            assert!(started.elapsed() < Duration::from_secs(60), "{url}: {task}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let listed = e2e
        .s3
        .list_objects_v2()
        .bucket(&e2e.res.bucket)
        .prefix("imports/acme/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(0), "nothing was written for acme");
}

/// SPEC §3 "Flow control": the small tenant's tasks, queued behind the big tenant's backlog
/// of 100,000, are done while most of that backlog still waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_tenants_backlog_does_not_delay_another_tenants_tasks() {
    let Served {
        db,
        stack,
        res,
        aws,
        api,
    } = serve().await;
    let runner = tms_local::runner(&stack, &res).await.expect("the runner");
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(runner.run(stopped));
    let target = Target {
        token: stack.tokens[0].1.clone(),
        stack,
        resources: res,
        api,
        aws,
    };
    let plan = tms_local::fairness::Fairness {
        big: 100_000,
        small: 100,
        drain_big: false,
        wait: Duration::from_secs(600),
    };
    let report = tms_local::fairness::run(&target, &plan).await.unwrap();
    println!("{}", report.render());
    assert_eq!(report.small.succeeded, 100);
    assert!(
        report.big_succeeded_then < 50_000,
        "the small tenant waited for the big one's backlog: {report:?}"
    );
    drop(db);
}

/// SPEC §3 "Flow control": a `high` task created after 20,000 `normal` ones travels on the
/// high-priority queue and runs while that backlog still waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_high_priority_task_runs_ahead_of_a_normal_backlog() {
    let Served {
        db,
        stack,
        res,
        api,
        ..
    } = serve().await;
    let http = tms_local::http_client();
    let token = stack.tokens[0].1.clone();
    // The backlog, queued before any worker runs: 200 batches of 100.
    futures::stream::iter(0..200)
        .map(|b| {
            let http = http.clone();
            let (api, token) = (api.clone(), token.clone());
            async move {
                let tasks: Vec<Value> = (0..100)
                    .map(|n| json!({"kind": "noop", "payload": {"n": b * 100 + n}}))
                    .collect();
                let resp = http
                    .post(format!("{api}/v1/tasks/batch"))
                    .bearer_auth(&token)
                    .json(&json!({ "tasks": tasks }))
                    .send()
                    .await
                    .unwrap();
                assert!(resp.status().is_success(), "{}", resp.status());
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let created: Value = http
        .post(format!("{api}/v1/tasks"))
        .bearer_auth(&token)
        .json(&json!({"kind": "noop", "payload": {"urgent": true}, "priority": "high"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["priority"], "high", "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let runner = tms_local::runner(&stack, &res).await.expect("the runner");
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(runner.run(stopped));
    let admin = db.admin().await;
    let started = Instant::now();
    loop {
        let row = admin
            .query_one(
                "SELECT (SELECT status FROM tms.tasks WHERE id = $1::text::uuid), \
                        (SELECT count(*) FROM tms.tasks WHERE status = 'succeeded' \
                           AND payload->>'n' IS NOT NULL)",
                &[&id],
            )
            .await
            .unwrap();
        let (status, normal_done): (String, i64) = (row.get(0), row.get(1));
        if status == "succeeded" {
            assert!(
                normal_done < 10_000,
                "the high task waited for half the backlog: {normal_done} normal tasks ran first"
            );
            println!(
                "the high task succeeded {:.2} s after the worker started, {normal_done} of \
                 20,000 normal tasks before it",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the high task did not run ({status}, {normal_done} normal tasks done)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queue_submission_creates_and_runs_its_task() {
    let e2e = start().await;
    e2e.sqs
        .send_message()
        .queue_url(&e2e.res.work_queue_url)
        .message_body(json!({"tenant": "demo", "kind": "archive", "payload": {"name": "from-a-queue"}, "idempotency_key": "q-1"}).to_string())
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let tasks = e2e.tasks().await;
        if let Some(t) = tasks.iter().find(|t| t["source"]["type"] == "queue") {
            if t["status"] == "succeeded" {
                assert_eq!(t["idempotency_key"], "q-1");
                assert_eq!(t["payload"]["name"], "from-a-queue");
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the submission ran: {tasks:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_on_the_bus_creates_the_task_of_the_trigger_it_matches() {
    let e2e = start().await;
    let registered = tms_local::http_client()
        .post(format!("{}/v1/triggers", e2e.api))
        .bearer_auth(&e2e.token)
        .json(
            &json!({"name": "orders", "source": "shop.orders", "detail_type": "Order Placed",
            "task": {"kind": "archive", "payload": {"name": {"$event": "/detail/orderId"}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let put = e2e
        .events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .event_bus_name(&e2e.res.event_bus)
                .source("shop.orders")
                .detail_type("Order Placed")
                .detail(r#"{"orderId": "o-77"}"#)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(put.failed_entry_count(), 0);
    let event_id = put.entries()[0].event_id().unwrap().to_owned();
    let started = Instant::now();
    loop {
        let tasks = e2e.tasks().await;
        if let Some(t) = tasks.iter().find(|t| t["source"]["type"] == "event") {
            if t["status"] == "succeeded" {
                assert_eq!(t["payload"], json!({"name": "o-77"}));
                assert_eq!(t["source"]["event_id"], event_id.as_str());
                assert!(t["idempotency_key"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("event:{event_id}:")));
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the event's task ran: {tasks:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_receives_a_signed_task_succeeded_delivery() {
    let e2e = start().await;
    let receiver = tms_testkit::webhooks::Receiver::start().await;
    let http = tms_local::http_client();
    let subscribed = http
        .post(format!("{}/v1/subscriptions", e2e.api))
        .bearer_auth(&e2e.token)
        .json(&json!({"url": receiver.url("/tms"), "event_types": ["Task Succeeded"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(subscribed.status(), 201);
    let subscribed: Value = subscribed.json().await.unwrap();
    let secret = subscribed["secret"].as_str().unwrap().to_owned();
    let created: Value = http
        .post(format!("{}/v1/tasks", e2e.api))
        .bearer_auth(&e2e.token)
        .json(&json!({"kind": "noop", "payload": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task_id = created["id"].as_str().unwrap();
    // The worker publishes the task's end to the bus; the bus's rule brings it back to the work
    // queue, and the worker delivers it to the subscription.
    let received = receiver.wait_for(1, Duration::from_secs(60)).await;
    let delivery = &received[0];
    let body = delivery.json();
    assert_eq!(body["type"], "Task Succeeded");
    assert_eq!(body["data"]["task_id"], task_id);
    assert_eq!(body["data"]["tenant"], created["tenant"]);
    assert_eq!(
        delivery.header("webhook-id"),
        body["data"]["event_id"].as_str(),
        "the event's stable id"
    );
    assert_eq!(
        tms_testkit::webhooks::verify_standard_webhooks(&secret, &received),
        [Ok(())],
        "the reference implementation verifies the signature"
    );
    let started = Instant::now();
    loop {
        let tasks = e2e.tasks().await;
        let delivered = tasks.iter().find(|t| {
            t["kind"] == "notification" && t["payload"]["event"]["data"]["task_id"] == task_id
        });
        if delivered.is_some_and(|t| t["status"] == "succeeded") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the delivery's task succeeded: {delivered:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "the delivery's own success is not published, so nothing loops back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_message_lands_in_the_dead_letter_queue_with_its_reason() {
    let e2e = start().await;
    e2e.sqs
        .send_message()
        .queue_url(&e2e.res.work_queue_url)
        .message_body("this is not a task")
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let got = e2e
            .sqs
            .receive_message()
            .queue_url(&e2e.res.work_dlq_url)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if let Some(m) = got.first() {
            assert_eq!(m.body(), Some("this is not a task"));
            let reason = m.message_attributes().unwrap()[tms::adapters::sqs::REASON_ATTRIBUTE]
                .string_value()
                .unwrap();
            assert!(!reason.is_empty());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the message reached the DLQ"
        );
    }
    let left = e2e
        .sqs
        .receive_message()
        .queue_url(&e2e.res.work_queue_url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(
        left.messages.unwrap_or_default().is_empty(),
        "and left the work queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_killed_mid_run_loses_no_task_and_runs_none_twice() {
    let Served {
        db: _db,
        stack,
        res,
        aws,
        api,
    } = serve().await;
    let mut env = tms_local::runner_env(&stack, &res);
    // The leases the killed runner held run out before its messages come back (the work
    // queue's visibility timeout is 60 s here): the tasks are claimed again at once then.
    env.push(("TMS_LEASE_SECONDS".into(), "15".into()));
    let runner = ChildRunner {
        child: tokio::sync::Mutex::new(ChildRunner::spawn(&env)),
        env,
    };
    let target = Target {
        token: stack.tokens[0].1.clone(),
        resources: res,
        aws,
        api,
        stack,
    };
    let plan = Plan {
        api: 1_500,
        rows: 400,
        queue: 100,
        wait: Duration::from_secs(240),
        faults: vec![(0.1, Fault::KillRunner)],
    };
    let report = tms_local::load::run(&target, plan, &runner)
        .await
        .expect("the load run");
    let shown = report.render();
    assert_eq!(
        (report.faults.len(), report.faults_missed),
        (1, 0),
        "the runner was killed once:\n{shown}"
    );
    assert_eq!(report.created, 2_000, "{shown}");
    assert_eq!(report.statuses.get("succeeded"), Some(&2_000), "{shown}");
    assert_eq!(
        (report.lost, report.duplicate_runs, report.duplicate_objects),
        (0, 0, 0),
        "{shown}"
    );
}
