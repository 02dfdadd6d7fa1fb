//! The scheduled jobs against the real database and the emulator's SQS.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use tms::adapters::postgres::PostgresStore;
use tms::adapters::sqs::SqsWorkQueue;
use tms::ports::{
    ClaimPolicy, ImportClaim, ImportSession, ImportStore, NewImport, Outcome, SchedulerStore,
    TaskRepository, WorkStore,
};
use tms::telemetry::metrics::{
    parse_emf, MemorySink, DEAD_TASKS, OLDEST_PENDING_AGE_SECONDS, TASKS_DEAD, TASKS_FAILED,
    TASKS_IN_STATUS,
};
use tms::{
    CorrelationId, ImportFormat, ImportId, ImportStatus, NewTask, Status, TaskError, TaskId,
    WorkMessage, CORRELATION_ATTRIBUTE,
};
use tms_scheduler::{function_handler, Deps, Settings};
use tms_testkit::aws::{sdk_config, TestQueue};
use tms_testkit::tasks::{new_task, noop};
use tms_testkit::TestDb;

struct Fixture {
    db: TestDb,
    store: PostgresStore,
    queue: TestQueue,
    metrics: Arc<MemorySink>,
    deps: Deps,
}

async fn fixture() -> Fixture {
    let db = TestDb::new().await;
    let store = db.store();
    let queue = TestQueue::new(&sdk_config().await, None).await;
    let metrics = Arc::new(MemorySink::default());
    let deps = Deps {
        store: Arc::new(store.clone()),
        work: Arc::new(store.clone()),
        queue: Arc::new(SqsWorkQueue::new(queue.client.clone(), &queue.url)),
        metrics: metrics.clone(),
        schedules: Arc::new(store.clone()),
        submissions: Arc::new(store.clone()),
        events: None,
        notifications: Arc::new(store.clone()),
        settings: Settings {
            backoff: tms::Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(2),
            },
            ..Settings::default()
        },
    };
    Fixture {
        db,
        store,
        queue,
        metrics,
        deps,
    }
}

async fn run(deps: &Deps, job: &str) -> Value {
    function_handler(
        deps,
        LambdaEvent::new(json!({ "job": job }), Context::default()),
    )
    .await
    .unwrap()
}

async fn admin(f: &Fixture, sql: &str, ids: &[TaskId]) {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
    f.db.admin().await.execute(sql, &[&ids]).await.unwrap();
}

/// As if the API's send of these tasks' messages failed a minute ago.
async fn unsent_for_a_minute(f: &Fixture, tasks: &[TaskId]) {
    admin(
        f,
        "UPDATE tms.tasks SET updated_at = now() - interval '1 minute' WHERE id = ANY($1)",
        tasks,
    )
    .await;
}

async fn created(f: &Fixture, n: usize) -> Vec<NewTask> {
    let tasks: Vec<_> = (0..n).map(|_| noop("demo")).collect();
    f.store.create_batch(&tasks).await.unwrap();
    tasks
}

fn ids(tasks: &[NewTask]) -> Vec<TaskId> {
    tasks.iter().map(|t| t.id).collect()
}

/// Claims the tasks and records `to` for each.
async fn settle(f: &Fixture, tasks: &[TaskId], to: Status, enqueue: bool) {
    let claimed = f
        .store
        .claim(
            &tms_testkit::tasks::pointers("demo", tasks),
            &ClaimPolicy::lease(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let outcomes: Vec<_> = claimed
        .tasks
        .iter()
        .map(|c| Outcome {
            retry_in: (to == Status::Failed).then_some(Duration::ZERO),
            enqueue,
            ..Outcome::of(
                &c.task,
                to,
                (to == Status::Succeeded).then(|| json!({})),
                (to != Status::Succeeded).then(|| TaskError::retryable("http_503", "x")),
            )
        })
        .collect();
    assert_eq!(
        f.store.record(&outcomes).await.unwrap().ids.len(),
        tasks.len()
    );
}

/// The work messages on the queue, by task.
async fn received(f: &Fixture, at_least: usize) -> Vec<WorkMessage> {
    f.queue
        .drain(&f.queue.url, at_least)
        .await
        .iter()
        .map(|m| {
            let message: WorkMessage = serde_json::from_str(m.body().unwrap()).unwrap();
            let attribute = m.message_attributes().unwrap()[CORRELATION_ATTRIBUTE]
                .string_value()
                .unwrap()
                .to_owned();
            assert_eq!(attribute, message.correlation_id.as_str());
            message
        })
        .collect()
}

#[tokio::test]
async fn the_relay_sends_tasks_whose_send_failed_and_due_retries() {
    let f = fixture().await;
    let unsent = created(&f, 2).await;
    unsent_for_a_minute(&f, &ids(&unsent)).await;
    let fresh = created(&f, 1).await;
    let retry_unsent = created(&f, 1).await;
    settle(&f, &ids(&retry_unsent), Status::Failed, false).await;
    let retry_in_flight = created(&f, 1).await;
    settle(&f, &ids(&retry_in_flight), Status::Failed, true).await;
    let done = created(&f, 1).await;
    settle(&f, &ids(&done), Status::Succeeded, false).await;

    let out = run(&f.deps, "relay").await;
    assert_eq!(
        out,
        json!({"job": "relay", "status": "done", "report": {"sent": 3, "unsent": 0, "events": 0}})
    );
    let got: HashSet<TaskId> = received(&f, 3).await.iter().map(|m| m.task_id).collect();
    let want: HashSet<TaskId> = [ids(&unsent), ids(&retry_unsent)]
        .concat()
        .into_iter()
        .collect();
    assert_eq!(
        got, want,
        "not the fresh {:?}, in-flight {:?} or done {:?} tasks",
        fresh[0].id, retry_in_flight[0].id, done[0].id
    );
    for t in &unsent {
        let task = f
            .store
            .get(&tms::Scope::Tenant(t.tenant.clone()), t.id)
            .await
            .unwrap()
            .unwrap();
        assert!(task.enqueued_at.is_some(), "marked as sent");
    }
    let again = run(&f.deps, "relay").await;
    assert_eq!(again["report"]["sent"], 0, "nothing is sent twice");
}

#[tokio::test]
async fn a_message_is_presumed_lost_only_when_no_backlog_is_waiting() {
    let f = fixture().await;
    let lost = created(&f, 1).await;
    // Sent twenty minutes ago and never run: lost, or waiting behind a backlog.
    admin(
        &f,
        "UPDATE tms.tasks SET enqueued_at = now() - interval '20 minutes', \
         run_after = now() - interval '20 minutes', updated_at = now() - interval '20 minutes' \
         WHERE id = ANY($1)",
        &ids(&lost),
    )
    .await;
    f.queue
        .client
        .send_message()
        .queue_url(&f.queue.url)
        .message_body("a message of the backlog")
        .send()
        .await
        .unwrap();
    let behind = run(&f.deps, "relay").await;
    assert_eq!(
        behind["report"]["sent"], 0,
        "the backlog is not sent again: {behind}"
    );
    assert_eq!(f.queue.drain(&f.queue.url, 1).await.len(), 1);

    let drained = run(&f.deps, "relay").await;
    assert_eq!(
        drained["report"]["sent"], 1,
        "with no backlog it is lost: {drained}"
    );
    let got: Vec<TaskId> = received(&f, 1).await.iter().map(|m| m.task_id).collect();
    assert_eq!(got, ids(&lost));
}

#[tokio::test]
async fn two_relays_at_once_send_each_message_exactly_once() {
    let f = fixture().await;
    let tasks = created(&f, 35).await;
    unsent_for_a_minute(&f, &ids(&tasks)).await;
    let (a, b) = tokio::join!(run(&f.deps, "relay"), run(&f.deps, "relay"));
    let sent: u64 = [&a, &b]
        .iter()
        .filter(|r| r["status"] == "done")
        .map(|r| r["report"]["sent"].as_u64().unwrap())
        .sum();
    assert_eq!(sent, 35, "{a} {b}");
    let messages = received(&f, 35).await;
    let distinct: HashSet<TaskId> = messages.iter().map(|m| m.task_id).collect();
    assert_eq!(messages.len(), 35, "one message per task");
    assert_eq!(distinct, ids(&tasks).into_iter().collect());
}

#[tokio::test]
async fn a_job_whose_lock_is_held_elsewhere_is_skipped() {
    let f = fixture().await;
    let tasks = created(&f, 1).await;
    unsent_for_a_minute(&f, &ids(&tasks)).await;
    let other_run = f.store.lock_job("relay").await.unwrap().unwrap();
    assert_eq!(
        run(&f.deps, "relay").await,
        json!({"job": "relay", "status": "skipped"})
    );
    assert_eq!(
        run(&f.deps, "stats").await["status"],
        "done",
        "other jobs run"
    );
    other_run.release().await.unwrap();
    assert_eq!(run(&f.deps, "relay").await["report"]["sent"], 1);
}

#[tokio::test]
async fn with_one_connection_a_job_runs_beside_its_lock_and_still_excludes_other_runs() {
    let f = fixture().await;
    let one = PostgresStore::new(f.db.app_settings().with_pool_size(1).pool().unwrap());
    let deps = Deps {
        store: Arc::new(one.clone()),
        work: Arc::new(one.clone()),
        queue: Arc::new(SqsWorkQueue::new(f.queue.client.clone(), &f.queue.url)),
        metrics: f.metrics.clone(),
        schedules: Arc::new(one.clone()),
        submissions: Arc::new(one.clone()),
        events: None,
        notifications: Arc::new(one.clone()),
        settings: Settings::default(),
    };
    let tasks = created(&f, 1).await;
    unsent_for_a_minute(&f, &ids(&tasks)).await;
    let elsewhere = f.store.lock_job("relay").await.unwrap().unwrap();
    assert_eq!(run(&deps, "relay").await["status"], "skipped");
    elsewhere.release().await.unwrap();

    // The job's statements use the connection that holds its lock: no wait for a second one
    // (the pool would give up after 10 s).
    let started = std::time::Instant::now();
    assert_eq!(run(&deps, "relay").await["report"]["sent"], 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let held = one.lock_job("reap").await.unwrap().expect("free");
    assert!(
        f.store.lock_job("reap").await.unwrap().is_none(),
        "the lock holds while its connection is back in the pool"
    );
    assert_eq!(
        run(&deps, "stats").await["status"],
        "done",
        "the pool still serves"
    );
    held.release().await.unwrap();
    let other = f.store.lock_job("reap").await.unwrap().expect("released");
    other.release().await.unwrap();

    let dropped = one.lock_job("retention").await.unwrap().expect("free");
    drop(dropped);
    let mut free = None;
    for _ in 0..50 {
        free = f.store.lock_job("retention").await.unwrap();
        if free.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    free.expect("a lock dropped unreleased is released by a task of its own")
        .release()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_reaper_settles_expired_leases_and_leaves_valid_ones() {
    let f = fixture().await;
    let retried = created(&f, 1).await;
    let mut last_attempt = noop("demo");
    last_attempt.max_attempts = 1;
    f.store.create(&last_attempt).await.unwrap();
    let working = created(&f, 1).await;
    f.store
        .claim(
            &tms_testkit::tasks::pointers("demo", &[retried[0].id, last_attempt.id]),
            &ClaimPolicy::lease(Duration::from_millis(1)),
        )
        .await
        .unwrap();
    f.store
        .claim(
            &tms_testkit::tasks::pointers("demo", &ids(&working)),
            &ClaimPolicy::lease(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let out = run(&f.deps, "reap").await;
    assert_eq!(
        out["report"],
        json!({"failed": 1, "dead": 1, "retries_sent": 1, "imports_failed": 0})
    );
    let get = |t: &NewTask| {
        let store = f.store.clone();
        let (tenant, id) = (t.tenant.clone(), t.id);
        async move {
            store
                .get(&tms::Scope::Tenant(tenant.clone()), id)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let failed = get(&retried[0]).await;
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.last_error.unwrap().code, "lease_expired");
    assert!(failed.run_after <= chrono::Utc::now() + chrono::Duration::seconds(2));
    let dead = get(&last_attempt).await;
    assert_eq!(dead.status, Status::Dead);
    assert_eq!(dead.last_error.unwrap().code, "lease_expired");
    assert_eq!(get(&working[0]).await.status, Status::Running);
    let messages = received(&f, 1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].task_id, retried[0].id);
    let events = f
        .store
        .events(
            &tms::Scope::Tenant(last_attempt.tenant.clone()),
            last_attempt.id,
        )
        .await
        .unwrap()
        .unwrap();
    let last = events.last().unwrap();
    assert_eq!((last.from, last.to), (Some(Status::Running), Status::Dead));
    let counts = f
        .metrics
        .lines()
        .iter()
        .map(|l| parse_emf(l).unwrap())
        .find(|v| v.contains_key(TASKS_DEAD))
        .unwrap();
    assert_eq!(
        (&counts[TASKS_FAILED], &counts[TASKS_DEAD]),
        (&json!(1.0), &json!(1.0))
    );
    assert_eq!(
        run(&f.deps, "reap").await["report"],
        json!({"failed": 0, "dead": 0, "retries_sent": 0, "imports_failed": 0})
    );
}

fn new_import(key: &str) -> NewImport {
    NewImport {
        id: ImportId::new(),
        tenant: tms_testkit::tasks::tenant("demo"),
        bucket: "data".into(),
        key: format!("imports/demo/{key}"),
        version: "v1".into(),
        format: ImportFormat::Csv,
        compressed: false,
        correlation_id: CorrelationId::generate(),
    }
}

async fn begin(f: &Fixture, new: &NewImport) -> Box<dyn ImportSession> {
    match f.store.begin(new).await.unwrap() {
        ImportClaim::Started { session, .. } => session,
        ImportClaim::AlreadyCompleted(i) | ImportClaim::Busy(i) => {
            panic!("{} should start, is {:?}", new.key, i.status)
        }
    }
}

#[tokio::test]
async fn the_reaper_fails_imports_whose_importer_stopped_and_leaves_live_ones() {
    let f = fixture().await;
    // An importer that died mid-file (its session, and so its lock, is gone), one still
    // working on an old file, and one that died a moment ago.
    let (stopped, live, recent) = (
        new_import("stopped.csv"),
        new_import("live.csv"),
        new_import("recent.csv"),
    );
    drop(begin(&f, &stopped).await);
    let _working = begin(&f, &live).await;
    drop(begin(&f, &recent).await);
    f.db.admin()
        .await
        .execute(
            "UPDATE tms.imports SET started_at = now() - interval '1 hour' WHERE object_key = ANY($1)",
            &[&vec![stopped.key.clone(), live.key.clone()]],
        )
        .await
        .unwrap();

    let out = run(&f.deps, "reap").await;
    assert_eq!(out["report"]["imports_failed"], 1, "{out}");
    let status = |new: &NewImport| {
        let (store, tenant, key) = (f.store.clone(), new.tenant.clone(), new.key.clone());
        async move {
            store
                .list_imports(&tms::Scope::Tenant(tenant.clone()), None, 10)
                .await
                .unwrap()
                .into_iter()
                .find(|i| i.key == key)
                .unwrap()
        }
    };
    let failed = status(&stopped).await;
    assert_eq!(failed.status, ImportStatus::Failed);
    assert!(failed.finished_at.is_some());
    let reason = failed.error.unwrap_or_default();
    assert!(
        reason.contains("960 s") && reason.contains("importer stopped"),
        "{reason}"
    );
    assert_eq!(
        status(&live).await.status,
        ImportStatus::Running,
        "a live import is left alone"
    );
    assert_eq!(
        status(&recent).await.status,
        ImportStatus::Running,
        "a young import is left alone"
    );
    assert_eq!(run(&f.deps, "reap").await["report"]["imports_failed"], 0);

    // A redelivered notification starts the failed import again.
    drop(begin(&f, &stopped).await);
    assert_eq!(status(&stopped).await.status, ImportStatus::Running);
}

#[tokio::test]
async fn retention_deletes_old_finished_tasks_in_bounded_chunks_and_keeps_the_rest() {
    let mut f = fixture().await;
    f.deps.settings.retention_chunk = 10;
    let old_succeeded = created(&f, 15).await;
    settle(&f, &ids(&old_succeeded), Status::Succeeded, false).await;
    let old_cancelled = created(&f, 10).await;
    for t in &old_cancelled {
        f.store
            .cancel(
                &tms::Scope::Tenant(t.tenant.clone()),
                t.id,
                &CorrelationId::generate(),
            )
            .await
            .unwrap();
    }
    let young = created(&f, 2).await;
    settle(&f, &ids(&young), Status::Succeeded, false).await;
    let old_dead = created(&f, 1).await;
    settle(&f, &ids(&old_dead), Status::Dead, false).await;
    let old_failed = created(&f, 1).await;
    settle(&f, &ids(&old_failed), Status::Failed, false).await;
    let old_pending = created(&f, 1).await;
    let old: Vec<TaskId> = [
        ids(&old_succeeded),
        ids(&old_cancelled),
        ids(&old_dead),
        ids(&old_failed),
        ids(&old_pending),
    ]
    .concat();
    admin(
        &f,
        "UPDATE tms.tasks SET updated_at = now() - interval '31 days' WHERE id = ANY($1)",
        &old,
    )
    .await;

    admin(
        &f,
        "INSERT INTO tms.console_sessions (id_hash, tenant, role, subject, csrf, expires_at) \
         SELECT sha256(id::text::bytea), 'demo', 'member', 'test', repeat('c', 32), \
                now() + CASE WHEN n = 1 THEN interval '-1 minute' ELSE interval '1 hour' END \
         FROM unnest($1::uuid[]) WITH ORDINALITY AS s(id, n)",
        &ids(&young),
    )
    .await;

    let out = run(&f.deps, "retention").await;
    assert_eq!(
        out["report"],
        json!({"deleted": 25, "chunks": 3, "sessions": 1}),
        "10 + 10 + 5 tasks; the expired session of the two"
    );
    let left: HashSet<TaskId> =
        f.db.admin()
            .await
            .query("SELECT id FROM tms.tasks", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| TaskId::from_uuid(r.get(0)))
            .collect();
    let kept: HashSet<TaskId> = [
        ids(&young),
        ids(&old_dead),
        ids(&old_failed),
        ids(&old_pending),
    ]
    .concat()
    .into_iter()
    .collect();
    assert_eq!(left, kept, "younger or not succeeded/cancelled tasks stay");
    let orphans: i64 =
        f.db.admin()
            .await
            .query_one(
                "SELECT count(*) FROM tms.task_events e \
             WHERE NOT EXISTS (SELECT 1 FROM tms.tasks t WHERE t.id = e.task_id)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(orphans, 0, "events went with their tasks");
}

#[tokio::test]
async fn stats_emits_the_gauges_as_emf() {
    let f = fixture().await;
    let pending = created(&f, 3).await;
    admin(
        &f,
        "UPDATE tms.tasks SET run_after = now() - interval '2 minutes' WHERE id = ANY($1)",
        &ids(&pending[..1]),
    )
    .await;
    let dead = created(&f, 2).await;
    settle(&f, &ids(&dead), Status::Dead, false).await;
    let scheduled = new_task("demo", "noop", json!({}), None);
    let mut scheduled = scheduled;
    scheduled.run_after = Some(chrono::Utc::now() + chrono::Duration::hours(1));
    f.store.create(&scheduled).await.unwrap();

    let out = run(&f.deps, "stats").await;
    assert_eq!(out["report"]["by_status"]["pending"], 4);
    assert_eq!(out["report"]["by_status"]["dead"], 2);
    let lines: Vec<(Value, serde_json::Map<String, Value>)> = f
        .metrics
        .lines()
        .iter()
        .map(|l| (serde_json::from_str(l).unwrap(), parse_emf(l).unwrap()))
        .collect();
    let in_status = |status: &str| {
        lines
            .iter()
            .find(|(doc, v)| v.contains_key(TASKS_IN_STATUS) && doc["Status"] == status)
            .map(|(doc, v)| {
                assert_eq!(
                    doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                    json!([["Service", "Status"]])
                );
                v[TASKS_IN_STATUS].as_f64().unwrap()
            })
            .unwrap_or_else(|| panic!("no gauge for {status}"))
    };
    assert_eq!(in_status("pending"), 4.0);
    assert_eq!(in_status("dead"), 2.0);
    assert_eq!(
        in_status("running"),
        0.0,
        "absent statuses are reported as 0"
    );
    let (doc, gauges) = lines
        .iter()
        .find(|(_, v)| v.contains_key(OLDEST_PENDING_AGE_SECONDS))
        .unwrap();
    let age = gauges[OLDEST_PENDING_AGE_SECONDS].as_f64().unwrap();
    assert!(
        (119.0..300.0).contains(&age),
        "{age}: the most overdue, not the scheduled one"
    );
    assert_eq!(gauges[DEAD_TASKS], json!(2.0));
    assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "TMS");
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Metrics"],
        json!([{"Name": OLDEST_PENDING_AGE_SECONDS, "Unit": "Seconds"},
               {"Name": DEAD_TASKS, "Unit": "Count"}])
    );
}

#[tokio::test]
async fn an_input_naming_no_job_fails_the_invocation() {
    let f = fixture().await;
    let err = function_handler(
        &f.deps,
        LambdaEvent::new(json!({"job": "vacuum"}), Context::default()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("names no job"), "{err}");
}

#[tokio::test]
async fn the_relay_publishes_the_lifecycle_events_no_function_could_and_forgets_them() {
    let mut f = fixture().await;
    let bus = Arc::new(tms_testkit::fakes::MemoryBus::default());
    f.deps.events = Some(bus.clone());
    let tasks = created(&f, 3).await;
    // Ended while the bus was unreachable: their events are recorded, not published.
    settle(&f, &ids(&tasks), Status::Succeeded, false).await;
    let recorded: Vec<(uuid::Uuid, Value)> =
        f.db.admin()
            .await
            .query(
                "SELECT id, detail FROM tms.notifications ORDER BY created_at",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(recorded.len(), 3);

    let young = run(&f.deps, "relay").await;
    assert_eq!(
        young["report"]["events"], 0,
        "their own function may still publish them"
    );
    f.db.admin()
        .await
        .execute(
            "UPDATE tms.notifications SET created_at = now() - interval '1 minute'",
            &[],
        )
        .await
        .unwrap();
    let out = run(&f.deps, "relay").await;
    assert_eq!(out["report"]["events"], 3);
    let published = bus.events();
    let mut ids_published: Vec<uuid::Uuid> = published.iter().map(|e| e.id).collect();
    ids_published.sort();
    let mut ids_recorded: Vec<uuid::Uuid> = recorded.iter().map(|(id, _)| *id).collect();
    ids_recorded.sort();
    assert_eq!(
        ids_published, ids_recorded,
        "published with the ids recorded"
    );
    for e in &published {
        assert_eq!(e.detail["event_id"], json!(e.id.to_string()));
        assert_eq!(e.detail_type, "Task Succeeded");
    }
    let again = run(&f.deps, "relay").await;
    assert_eq!(
        again["report"]["events"], 0,
        "published events are forgotten"
    );
    assert_eq!(bus.events().len(), 3);
}

#[tokio::test]
async fn a_task_the_reaper_ends_is_published_as_dead() {
    let mut f = fixture().await;
    let bus = Arc::new(tms_testkit::fakes::MemoryBus::default());
    f.deps.events = Some(bus.clone());
    let mut task = noop("demo");
    task.max_attempts = 1;
    f.store.create(&task).await.unwrap();
    f.store
        .claim(
            &tms_testkit::tasks::pointers("demo", &[task.id]),
            &ClaimPolicy::lease(Duration::from_millis(1)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let out = run(&f.deps, "reap").await;
    assert_eq!(out["report"]["dead"], 1, "{out}");
    let events = bus.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail_type, "Task Dead");
    assert_eq!(events[0].detail["error"]["code"], "lease_expired");
}
