//! The worker against the real database: statements per batch, exactly-once state under
//! duplicate and concurrent delivery, lost responses, expired leases, a database that goes down
//! mid-batch, and queue submissions.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use support::*;
use tms::ports::{ClaimPolicy, TaskRepository, WorkStore};
use tms::telemetry::metrics::MemorySink;
use tms::{NewTask, Status};
use tms_testkit::tasks::{noop, tenant};
use tms_testkit::TestDb;

struct Fixture {
    db: TestDb,
    store: tms::adapters::postgres::PostgresStore,
    queue: Arc<MemoryQueue>,
    scripted: Arc<Scripted>,
    deps: tms_worker::Deps,
}

async fn fixture_with(scripted: Scripted) -> Fixture {
    let db = TestDb::new().await;
    let store = db.store();
    let queue = Arc::new(MemoryQueue::default());
    let scripted = Arc::new(scripted);
    let deps = pg_deps(
        &store,
        queue.clone(),
        registry(scripted.clone()),
        Arc::new(MemorySink::default()),
    );
    Fixture {
        db,
        store,
        queue,
        scripted,
        deps,
    }
}

async fn fixture() -> Fixture {
    fixture_with(Scripted::default()).await
}

async fn created(store: &tms::adapters::postgres::PostgresStore, n: usize) -> Vec<NewTask> {
    let tasks: Vec<_> = (0..n).map(|_| noop("demo")).collect();
    store.create_batch(&tasks).await.unwrap();
    tasks
}

fn records_of(tasks: &[NewTask], prefix: &str) -> Vec<aws_lambda_events::event::sqs::SqsMessage> {
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| work_record(&format!("{prefix}-{i}"), t))
        .collect()
}

async fn statuses(db: &TestDb) -> Vec<(String, i64)> {
    db.admin()
        .await
        .query(
            "SELECT status, count(*) FROM tms.tasks GROUP BY status ORDER BY status",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn statements_per_batch_do_not_grow_with_the_batch() {
    let f = fixture().await;
    f.db.track_statements().await;
    let mut counts = Vec::new();
    for n in [1, 10, 100] {
        let tasks = created(&f.store, n).await;
        let before = f.db.app_statements().await;
        let response = handle(&f.deps, records_of(&tasks, &format!("w{n}"))).await;
        let work = f.db.app_statements().await - before;
        assert!(failed_ids(&response).is_empty());

        let submissions: Vec<_> = (0..n)
            .map(|i| {
                record(
                    &format!("s{n}-{i}"),
                    r#"{"tenant":"demo","kind":"noop","payload":{}}"#,
                    None,
                )
            })
            .collect();
        let before = f.db.app_statements().await;
        let response = handle(&f.deps, submissions).await;
        let submitted = f.db.app_statements().await - before;
        assert!(failed_ids(&response).is_empty());
        eprintln!("batch of {n}: {work} statements for work messages, {submitted} for submissions");
        counts.push((work, submitted));
    }
    assert_eq!(
        counts,
        [(2, 3); 3],
        "claim + record, and one insert for submissions"
    );
    assert_eq!(
        statuses(&f.db).await,
        [("succeeded".to_owned(), 222)],
        "every task of every batch ran"
    );
    assert_eq!(f.scripted.total_runs(), 222);
}

#[tokio::test]
async fn a_thousand_messages_delivered_twice_concurrently_run_each_task_once() {
    let f = fixture().await;
    let tasks = created(&f.store, 1000).await;
    let batches: Vec<Vec<_>> = records_of(&tasks, "m")
        .chunks(10)
        .map(<[_]>::to_vec)
        .collect();
    let mut reversed = batches.clone();
    reversed.reverse();
    let deliver = |batches: Vec<Vec<_>>| {
        let deps = &f.deps;
        async move {
            futures::stream::iter(batches)
                .map(|batch| handle(deps, batch))
                .buffer_unordered(4)
                .map(|response| failed_ids(&response))
                .concat()
                .await
        }
    };
    let (first, second) = tokio::join!(deliver(batches), deliver(reversed));
    assert!(
        first.is_empty() && second.is_empty(),
        "every record acknowledged"
    );
    let runs = f.scripted.runs();
    assert_eq!(runs.len(), 1000, "no task lost");
    assert!(runs.values().all(|n| *n == 1), "no task ran twice");
    assert_eq!(statuses(&f.db).await, [("succeeded".to_owned(), 1000)]);
    let events: i64 =
        f.db.admin()
            .await
            .query_one("SELECT count(*) FROM tms.task_events", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(events, 3000, "created, claimed and succeeded: once each");
}

#[tokio::test]
async fn a_redelivery_after_a_lost_response_acknowledges_without_running_again() {
    let f = fixture().await;
    let tasks = created(&f.store, 3).await;
    let batch = records_of(&tasks, "m");
    // The outcome is committed; the response never reaches SQS (the sandbox froze or died).
    drop(handle(&f.deps, batch.clone()).await);
    let redelivered = handle(&f.deps, batch).await;
    assert_eq!(
        serde_json::to_string(&redelivered).unwrap(),
        r#"{"batchItemFailures":[]}"#
    );
    assert_eq!(f.scripted.total_runs(), 3);
    for t in &tasks {
        let task = f
            .store
            .get(&tms::Scope::Tenant(t.tenant.clone()), t.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((task.status, task.attempts), (Status::Succeeded, 1));
    }
}

#[tokio::test]
async fn a_running_task_whose_lease_expired_is_claimed_again_and_runs_once() {
    let f = fixture().await;
    let tasks = created(&f.store, 1).await;
    let task = &tasks[0];
    // A worker claimed it and crashed: its lease runs out.
    f.store
        .claim(
            &tms_testkit::tasks::pointers("demo", &[task.id]),
            &ClaimPolicy::lease(Duration::from_millis(1)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let response = handle(&f.deps, records_of(&tasks, "m")).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(f.scripted.runs_of(task.id), 1);
    let stored = f
        .store
        .get(&tms::Scope::Tenant(task.tenant.clone()), task.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.status, stored.attempts), (Status::Succeeded, 2));
    let path: Vec<_> = f
        .store
        .events(&tms::Scope::Tenant(task.tenant.clone()), task.id)
        .await
        .unwrap()
        .unwrap()
        .iter()
        .map(|e| (e.from, e.to))
        .collect();
    assert_eq!(
        path,
        [
            (None, Status::Pending),
            (Some(Status::Pending), Status::Running),
            (Some(Status::Running), Status::Running),
            (Some(Status::Running), Status::Succeeded),
        ]
    );
    let again = handle(&f.deps, records_of(&tasks, "m")).await;
    assert!(failed_ids(&again).is_empty());
    assert_eq!(
        f.scripted.runs_of(task.id),
        1,
        "a leased or done task is not run again"
    );
}

#[tokio::test]
async fn with_the_database_down_mid_batch_every_record_is_reported() {
    let db_name = Arc::new(std::sync::OnceLock::<String>::new());
    let name = db_name.clone();
    let taken_down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = fixture_with(Scripted::with_hook(move || {
        let name = name.get().cloned().expect("database name");
        let first = !taken_down.swap(true, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if !first {
                return;
            }
            let admin = tms_testkit::admin_client("postgres").await;
            admin
                .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                .await
                .unwrap();
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND usename = 'tms_app'",
                    &[&name],
                )
                .await
                .unwrap();
        })
    }))
    .await;
    db_name.set(f.db.name.clone()).unwrap();
    let tasks = created(&f.store, 3).await;
    let mut batch = records_of(&tasks, "m");
    batch.push(work_record("m-unknown", &noop("demo")));
    batch.push(record("m-bad", "not json", None));
    let response = handle(&f.deps, batch).await;
    assert_eq!(
        failed_ids(&response),
        ["m-0", "m-1", "m-2", "m-unknown", "m-bad"],
        "none acknowledged"
    );
    assert_eq!(
        f.scripted.total_runs(),
        3,
        "the tasks ran before the database went down"
    );
    assert!(f.queue.dead_letters.lock().unwrap().is_empty());

    tms_testkit::admin_client("postgres")
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            f.db.name
        ))
        .await
        .unwrap();
    for t in &tasks {
        let task = f
            .store
            .get(&tms::Scope::Tenant(t.tenant.clone()), t.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            task.status,
            Status::Running,
            "claimed, outcome not recorded"
        );
    }
}

#[tokio::test]
async fn queue_submissions_are_created_and_run_in_the_same_invocation_once() {
    let f = fixture().await;
    let existing = created(&f.store, 1).await;
    let batch = vec![
        record(
            "sub-1",
            r#"{"tenant":"acme","kind":"noop","payload":{"n":1}}"#,
            Some("corr-sub-1"),
        ),
        record(
            "sub-2",
            r#"{"tenant":"acme","kind":"noop","payload":{"n":2},"idempotency_key":"order-42"}"#,
            None,
        ),
        work_record("work-1", &existing[0]),
    ];
    let response = handle(&f.deps, batch.clone()).await;
    assert!(failed_ids(&response).is_empty());
    let acme = tenant("acme");
    let list = f
        .store
        .list(
            &tms::Scope::Tenant(acme.clone()),
            &tms::ports::ListQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(list.len(), 2);
    for task in &list {
        assert_eq!(task.status, Status::Succeeded);
        assert_eq!(task.source, tms::Source::Queue);
        assert_eq!(f.scripted.runs_of(task.id), 1);
    }
    let keys: HashSet<_> = list
        .iter()
        .map(|t| t.idempotency_key.clone().unwrap())
        .collect();
    assert_eq!(
        keys,
        HashSet::from(["sub-1".to_owned(), "order-42".to_owned()])
    );
    let by_message_id = list
        .iter()
        .find(|t| t.idempotency_key.as_deref() == Some("sub-1"));
    assert_eq!(by_message_id.unwrap().correlation_id.as_str(), "corr-sub-1");

    let redelivered = handle(&f.deps, batch).await;
    assert!(failed_ids(&redelivered).is_empty());
    assert_eq!(f.scripted.total_runs(), 3, "nothing created or run twice");

    let reused_key = record(
        "sub-3",
        r#"{"tenant":"acme","kind":"noop","payload":{"n":3},"idempotency_key":"order-42"}"#,
        None,
    );
    let response = handle(&f.deps, vec![reused_key]).await;
    assert!(failed_ids(&response).is_empty());
    let letters = f.queue.dead_letters.lock().unwrap().clone();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].1.contains("order-42"), "{}", letters[0].1);
    assert_eq!(f.scripted.total_runs(), 3);

    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let scheduled = record(
        "sub-4",
        &json!({"tenant": "acme", "kind": "noop", "payload": {}, "run_after": later}).to_string(),
        None,
    );
    assert!(failed_ids(&handle(&f.deps, vec![scheduled]).await).is_empty());
    assert_eq!(
        statuses(&f.db).await,
        [("pending".to_owned(), 1), ("succeeded".to_owned(), 3)],
        "a submission due later is stored and waits for its time"
    );
}

#[tokio::test]
async fn a_task_claimed_but_not_started_is_released_and_runs_on_redelivery() {
    // One at a time; the first run lasts until less than the stop margin is left, so the
    // second task is claimed with the batch but never starts.
    let margin = Duration::from_secs(2);
    let budget = Duration::from_secs(4);
    let mut f = fixture_with(Scripted::with_hook(move || {
        Box::pin(tokio::time::sleep(
            budget - margin + Duration::from_millis(200),
        ))
    }))
    .await;
    f.deps.settings.concurrency = 1;
    f.deps.settings.stop_margin = margin;
    let mut tasks = created(&f.store, 1).await;
    let mut once = noop("demo");
    once.max_attempts = 1;
    f.store.create(&once).await.unwrap();
    tasks.push(once.clone());
    let records = records_of(&tasks, "m");

    let response = tms_worker::function_handler(&f.deps, event_with(records.clone(), budget))
        .await
        .unwrap();
    assert_eq!(f.scripted.total_runs(), 1, "only the first task started");
    assert_eq!(failed_ids(&response), ["m-1"]);
    let released = f
        .store
        .get(&tms::Scope::Tenant(once.tenant.clone()), once.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (released.status, released.attempts, released.lease_until),
        (Status::Pending, 0, None),
        "claimable again, the attempt not counted"
    );

    let again = handle(&f.deps, vec![records[1].clone()]).await;
    assert!(failed_ids(&again).is_empty());
    let done = f
        .store
        .get(&tms::Scope::Tenant(once.tenant.clone()), once.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.status, done.attempts), (Status::Succeeded, 1));
    assert_eq!(f.scripted.runs_of(once.id), 1);
    let events = f
        .store
        .events(&tms::Scope::Tenant(once.tenant.clone()), once.id)
        .await
        .unwrap()
        .unwrap();
    let path: Vec<_> = events.iter().map(|e| e.to).collect();
    assert_eq!(
        path,
        [
            Status::Pending,
            Status::Running,
            Status::Pending,
            Status::Running,
            Status::Succeeded
        ]
    );
}

#[tokio::test]
async fn a_claim_is_scoped_by_the_pointers_tenant() {
    let f = fixture().await;
    let acme = noop("acme");
    f.store.create(&acme).await.unwrap();
    // A pointer naming the task's id under another tenant claims nothing and runs nothing.
    let mut forged = work_record("forged", &acme);
    forged.body =
        Some(json!({"task_id": acme.id, "tenant": "demo", "correlation_id": "c-1"}).to_string());
    assert!(failed_ids(&handle(&f.deps, vec![forged]).await).is_empty());
    assert_eq!(f.scripted.total_runs(), 0);
    let untouched = f
        .store
        .get(&tms::Scope::Tenant(acme.tenant.clone()), acme.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((untouched.status, untouched.attempts), (Status::Pending, 0));
    let claimed = f
        .store
        .claim(
            &tms_testkit::tasks::pointers("demo", &[acme.id]),
            &ClaimPolicy::lease(Duration::from_secs(60)),
        )
        .await
        .unwrap()
        .tasks;
    assert!(claimed.is_empty());
    assert!(failed_ids(&handle(&f.deps, vec![work_record("real", &acme)]).await).is_empty());
    assert_eq!(f.scripted.runs_of(acme.id), 1);
}
