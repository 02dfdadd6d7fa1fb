//! The PostgreSQL task store against the real cluster, each test on a fresh database.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use tms::ports::{ClaimPolicy, CommandOutcome, ListQuery, Outcome, TaskRepository, WorkStore};
use tms::{CorrelationId, NewTask, Status, TaskError, TaskId, TaskKind};
use tms_testkit::tasks::{new_task, noop, tenant};
use tms_testkit::{statement_blocks, TestDb};

const LEASE: Duration = Duration::from_secs(60);

/// `count` noop tasks of tenant `demo`, created one by one.
async fn created_noops(store: &impl TaskRepository, count: usize) -> Vec<NewTask> {
    let tasks: Vec<_> = (0..count).map(|_| noop("demo")).collect();
    for task in &tasks {
        store.create(task).await.unwrap();
    }
    tasks
}

#[tokio::test]
async fn create_inserts_the_task_and_its_first_event() {
    let db = TestDb::new().await;
    let store = db.store();
    let task = new_task(
        "demo",
        "email",
        json!({"sender": "a@example.com",
        "recipient": "b@example.com", "subject": "Hi 'there'; DROP TABLE x; --", "body": "✓ 😀"}),
        None,
    );
    let created = store.create(&task).await.unwrap();
    assert!(!created.replayed);
    assert_eq!(created.task.id, task.id);
    assert_eq!(created.task.status, Status::Pending);
    assert_eq!(
        created.task.payload, task.payload,
        "strings round-trip byte for byte"
    );
    assert_eq!(created.task.enqueued_at, None);
    let events = store
        .events(&tms::Scope::Tenant(task.tenant.clone()), task.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].from, events[0].to, events[0].attempt),
        (None, Status::Pending, 0)
    );
    assert_eq!(events[0].correlation_id, task.correlation_id);
}

#[tokio::test]
async fn a_replayed_key_returns_the_same_task_and_reports_a_different_body() {
    let db = TestDb::new().await;
    let store = db.store();
    let first = new_task("demo", "noop", json!({"n": 1}), Some("key-1"));
    let created = store.create(&first).await.unwrap();
    let again = new_task("demo", "noop", json!({"n": 1}), Some("key-1"));
    let replay = store.create(&again).await.unwrap();
    assert!(replay.replayed && replay.hash_matches);
    assert_eq!(replay.task.id, created.task.id);
    let other_body = new_task("demo", "noop", json!({"n": 2}), Some("key-1"));
    let conflict = store.create(&other_body).await.unwrap();
    assert!(conflict.replayed && !conflict.hash_matches);
    assert_eq!(conflict.task.id, created.task.id);
    let other_tenant = new_task("acme", "noop", json!({"n": 2}), Some("key-1"));
    assert!(
        !store.create(&other_tenant).await.unwrap().replayed,
        "keys are per tenant"
    );
}

#[tokio::test]
async fn twenty_concurrent_creates_with_one_key_make_exactly_one_task() {
    let db = TestDb::new().await;
    let store = db.store();
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let task = new_task("demo", "noop", json!({"same": true}), Some("race"));
            tokio::spawn(async move { store.create(&task).await.unwrap() })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for a in attempts {
        let created = a.await.unwrap();
        ids.insert(created.task.id);
        fresh += usize::from(!created.replayed);
        assert!(created.hash_matches);
    }
    assert_eq!(ids.len(), 1, "every create returned the same task");
    assert_eq!(fresh, 1, "exactly one create inserted");
    let count: i64 = db
        .admin()
        .await
        .query_one("SELECT count(*) FROM tms.tasks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn batch_create_is_one_transaction_with_per_item_results() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .create(&new_task("demo", "noop", json!({}), Some("old")))
        .await
        .unwrap();
    let batch = vec![
        noop("demo"),
        new_task("demo", "noop", json!({}), Some("old")),
        new_task("demo", "noop", json!({"x": 1}), Some("old")),
    ];
    let results = store.create_batch(&batch).await.unwrap();
    assert_eq!(results.len(), 3);
    assert!(!results[0].replayed);
    assert!(results[1].replayed && results[1].hash_matches);
    assert!(results[2].replayed && !results[2].hash_matches);
}

#[tokio::test]
async fn reads_are_scoped_by_tenant() {
    let db = TestDb::new().await;
    let store = db.store();
    let task = noop("demo");
    store.create(&task).await.unwrap();
    let other = tms::Scope::Tenant(tenant("acme"));
    assert!(store
        .get(&tms::Scope::Tenant(task.tenant.clone()), task.id)
        .await
        .unwrap()
        .is_some());
    assert!(store.get(&other, task.id).await.unwrap().is_none());
    assert!(store.events(&other, task.id).await.unwrap().is_none());
    let c = CorrelationId::generate();
    assert_eq!(
        store.cancel(&other, task.id, &c).await.unwrap(),
        CommandOutcome::NotFound
    );
    assert_eq!(
        store.redrive(&other, task.id, &c).await.unwrap(),
        CommandOutcome::NotFound
    );
    let q = ListQuery {
        limit: 10,
        ..Default::default()
    };
    assert!(store.list(&other, &q).await.unwrap().is_empty());
    assert!(store
        .get(&tms::Scope::Tenant(task.tenant.clone()), TaskId::new())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn list_is_newest_first_with_keyset_pages_and_filters() {
    let db = TestDb::new().await;
    let store = db.store();
    let mut ids = Vec::new();
    for i in 0..25 {
        let kind = if i % 2 == 0 { "noop" } else { "archive" };
        let task = new_task("demo", kind, json!({"i": i}), None);
        ids.push(task.id);
        store.create(&task).await.unwrap();
    }
    store.create(&noop("acme")).await.unwrap();
    ids.reverse();
    let t = tenant("demo");
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list(
                &tms::Scope::Tenant(t.clone()),
                &ListQuery {
                    before,
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        before = page.last().map(|t| t.id);
        seen.extend(page.into_iter().map(|t| t.id));
    }
    assert_eq!(
        seen, ids,
        "all of the tenant's tasks, newest first, no gaps or repeats"
    );
    let archives = store
        .list(
            &tms::Scope::Tenant(t.clone()),
            &ListQuery {
                filter: tms::ports::TaskFilter {
                    kind: Some(TaskKind::Archive),
                    ..Default::default()
                },
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(archives.len(), 12);
    assert!(archives.iter().all(|t| t.kind == TaskKind::Archive));
    let running = store
        .list(
            &tms::Scope::Tenant(t.clone()),
            &ListQuery {
                filter: tms::ports::TaskFilter {
                    status: Some(Status::Running),
                    ..Default::default()
                },
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(running.is_empty());
}

#[tokio::test]
async fn claim_takes_only_claimable_tasks_and_records_the_transition() {
    let db = TestDb::new().await;
    let store = db.store();
    let due = noop("demo");
    let cancelled = noop("demo");
    let mut later = noop("demo");
    later.run_after = Some(chrono::Utc::now() + chrono::Duration::hours(1));
    for t in [&due, &cancelled, &later] {
        store.create(t).await.unwrap();
    }
    store
        .cancel(
            &tms::Scope::Tenant(cancelled.tenant.clone()),
            cancelled.id,
            &CorrelationId::generate(),
        )
        .await
        .unwrap();
    let unknown = TaskId::new();
    let claimed = store
        .claim(
            &tms_testkit::tasks::pointers("demo", &[due.id, cancelled.id, later.id, unknown]),
            &ClaimPolicy::lease(LEASE),
        )
        .await
        .unwrap()
        .tasks;
    assert_eq!(claimed.len(), 1);
    let c = &claimed[0];
    assert_eq!(
        (c.task.id, c.from, c.task.status, c.task.attempts),
        (due.id, Status::Pending, Status::Running, 1)
    );
    assert!(c.task.lease_until.is_some());
    assert!(
        store
            .claim(
                &tms_testkit::tasks::pointers("demo", &[due.id]),
                &ClaimPolicy::lease(LEASE)
            )
            .await
            .unwrap()
            .tasks
            .is_empty(),
        "a leased task is not claimable"
    );
    let events = store
        .events(&tms::Scope::Tenant(due.tenant.clone()), due.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        events.last().map(|e| (e.from, e.to, e.attempt)),
        Some((Some(Status::Pending), Status::Running, 1))
    );
}

#[tokio::test]
async fn an_expired_lease_is_claimed_again_with_another_attempt() {
    let db = TestDb::new().await;
    let store = db.store();
    let task = noop("demo");
    store.create(&task).await.unwrap();
    let first = store
        .claim(
            &tms_testkit::tasks::pointers("demo", &[task.id]),
            &ClaimPolicy::lease(Duration::from_millis(1)),
        )
        .await
        .unwrap()
        .tasks;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = store
        .claim(
            &tms_testkit::tasks::pointers("demo", &[task.id]),
            &ClaimPolicy::lease(LEASE),
        )
        .await
        .unwrap()
        .tasks;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].from, Status::Running);
    assert_eq!(again[0].task.attempts, 2);
    // The first claimant's outcome no longer applies: its version is stale.
    let stale = Outcome::of(&first[0].task, Status::Succeeded, Some(json!({})), None);
    assert!(store.record(&[stale]).await.unwrap().ids.is_empty());
}

#[tokio::test]
async fn record_writes_every_outcome_and_its_event_in_one_statement() {
    let db = TestDb::new().await;
    let store = db.store();
    let tasks = created_noops(&store, 3).await;
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    let claimed = store
        .claim(
            &tms_testkit::tasks::pointers("demo", &ids),
            &ClaimPolicy::lease(LEASE),
        )
        .await
        .unwrap()
        .tasks;
    let task = |id: TaskId| &claimed.iter().find(|c| c.task.id == id).unwrap().task;
    let outcomes = vec![
        Outcome::of(
            task(ids[0]),
            Status::Succeeded,
            Some(json!({"ok": true})),
            None,
        ),
        Outcome {
            retry_in: Some(Duration::from_secs(30)),
            enqueue: true,
            ..Outcome::of(
                task(ids[1]),
                Status::Failed,
                None,
                Some(TaskError::retryable("http_503", "unavailable")),
            )
        },
        Outcome::of(
            task(ids[2]),
            Status::Dead,
            None,
            Some(TaskError::permanent("http_404", "not found")),
        ),
    ];
    let mut recorded = store.record(&outcomes).await.unwrap().ids;
    recorded.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(recorded, want);
    let t = tenant("demo");
    let ok = store
        .get(&tms::Scope::Tenant(t.clone()), ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ok.status, ok.result.clone(), ok.lease_until),
        (Status::Succeeded, Some(json!({"ok": true})), None)
    );
    let failed = store
        .get(&tms::Scope::Tenant(t.clone()), ids[1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert!(failed.run_after > chrono::Utc::now() + chrono::Duration::seconds(20));
    assert!(failed.enqueued_at.is_some());
    assert_eq!(
        failed.last_error.as_ref().map(|e| e.code.as_str()),
        Some("http_503")
    );
    let dead = store
        .get(&tms::Scope::Tenant(t.clone()), ids[2])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.status, Status::Dead);
    let events = store
        .events(&tms::Scope::Tenant(t.clone()), ids[2])
        .await
        .unwrap()
        .unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (last.from, last.to, last.attempt),
        (Some(Status::Running), Status::Dead, 1)
    );
    assert_eq!(
        last.error.as_ref().map(|e| e.code.as_str()),
        Some("http_404")
    );
    assert!(
        store.record(&outcomes).await.unwrap().ids.is_empty(),
        "recording twice changes nothing"
    );
    store.clear_enqueued(&[ids[1]]).await.unwrap();
    assert_eq!(
        store
            .get(&tms::Scope::Tenant(t.clone()), ids[1])
            .await
            .unwrap()
            .unwrap()
            .enqueued_at,
        None
    );
}

/// Claims `ids` and records each as succeeded; returns the buffers the record statement touched.
async fn claim_and_record(
    store: &tms::adapters::postgres::PostgresStore,
    admin: &tokio_postgres::Client,
    ids: &[TaskId],
) -> i64 {
    let claimed = store
        .claim(
            &tms_testkit::tasks::pointers("demo", ids),
            &ClaimPolicy::lease(LEASE),
        )
        .await
        .unwrap()
        .tasks;
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .map(|c| Outcome::of(&c.task, Status::Succeeded, Some(json!({})), None))
        .collect();
    let before = statement_blocks(admin, RECORD_STATEMENT).await;
    let recorded = store.record(&outcomes).await.unwrap().ids;
    assert_eq!(recorded.len(), ids.len(), "every claimed task is recorded");
    statement_blocks(admin, RECORD_STATEMENT).await - before
}

const RECORD_STATEMENT: &str = "%UPDATE tms.tasks t SET%FROM input i%";
const CLEAR_STATEMENT: &str = "UPDATE tms.tasks SET enqueued_at =%";

/// The tasks as a quiet spell leaves them: `count` finished ones, analyzed, so the statistics
/// say no task is waiting or running; autovacuum then stays off for the table, so they keep
/// saying so whatever the test changes. Returns the ids in order.
async fn finished_tasks_analyzed(admin: &tokio_postgres::Client, count: usize) -> Vec<TaskId> {
    admin
        .batch_execute(&format!(
            "INSERT INTO tms.tasks (id, tenant, kind, payload, correlation_id, source, status, \
                 attempts, result, run_after) \
             SELECT gen_random_uuid(), 'demo', 'noop', '{{}}', 'c', 'api', 'succeeded', 1, '{{}}', \
                 now() - interval '1 minute' \
             FROM generate_series(1, {count}); \
             ANALYZE tms.tasks; \
             ALTER TABLE tms.tasks SET (autovacuum_enabled = false)"
        ))
        .await
        .unwrap();
    admin
        .query("SELECT id FROM tms.tasks ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| TaskId::from_uuid(row.get(0)))
        .collect()
}

/// Makes finished tasks pending again, as new work would be (the statistics do not see it).
async fn make_pending(admin: &tokio_postgres::Client, ids: &[TaskId]) {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
    admin
        .execute(
            "UPDATE tms.tasks SET status = 'pending', attempts = 0, result = NULL WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap();
}

/// The worst case is statistics taken while no task was running (a fresh table, or a burst of
/// work after a quiet night): the record statement once joined its batch to every running task
/// read through the partial index of leases, so a batch cost grew with the tasks other workers
/// held (40 ms for 100 outcomes with 400 running, against 4 ms looked up by id).
#[tokio::test]
async fn recording_a_batch_costs_the_same_however_many_other_tasks_are_running() {
    const OTHERS: usize = 20_000;
    const BATCH: usize = 10;
    let db = TestDb::new().await;
    db.track_statements().await;
    let admin = db.admin().await;
    let ids = finished_tasks_analyzed(&admin, OTHERS + 10 * BATCH).await;
    make_pending(&admin, &ids).await;
    let (batches, others) = ids.split_at(10 * BATCH);
    // One connection, so every batch runs the same prepared statement, past the first
    // executions that PostgreSQL plans for their own parameters.
    let pool = db.app_settings().with_pool_size(1).pool().expect("pool");
    let store = tms::adapters::postgres::PostgresStore::new(pool);
    let mut few_running = 0;
    for batch in batches[..9 * BATCH].chunks(BATCH) {
        few_running = claim_and_record(&store, &admin, batch).await;
    }
    assert_eq!(
        store
            .claim(
                &tms_testkit::tasks::pointers("demo", others),
                &ClaimPolicy::lease(LEASE)
            )
            .await
            .unwrap()
            .tasks
            .len(),
        OTHERS,
        "the other tasks are running"
    );
    let many_running = claim_and_record(&store, &admin, &batches[9 * BATCH..]).await;
    assert!(
        few_running > 0,
        "pg_stat_statements saw the record statement"
    );
    assert!(
        many_running <= few_running * 2,
        "recording {BATCH} outcomes touched {few_running} buffers with none other running and \
         {many_running} with {OTHERS} running: the statement reads the running tasks"
    );
}

/// The same trap for the markers of unsent retries: a status in the statement's condition let
/// the planner read every waiting task through the relay's partial index when the statistics
/// said few were waiting (a million-row import waits there until autovacuum analyzes again).
#[tokio::test]
async fn clearing_markers_costs_the_same_however_many_tasks_are_waiting() {
    const OTHERS: usize = 20_000;
    let db = TestDb::new().await;
    db.track_statements().await;
    let admin = db.admin().await;
    let ids = finished_tasks_analyzed(&admin, OTHERS + 2).await;
    let (subject, finished, others) = (ids[0], ids[1], &ids[2..]);
    make_pending(&admin, &[subject]).await;
    let pool = db.app_settings().with_pool_size(1).pool().expect("pool");
    let store = tms::adapters::postgres::PostgresStore::new(pool);
    let clear = || async {
        store.mark_enqueued(&[subject, finished]).await.unwrap();
        let before = statement_blocks(&admin, CLEAR_STATEMENT).await;
        store.clear_enqueued(&[subject, finished]).await.unwrap();
        statement_blocks(&admin, CLEAR_STATEMENT).await - before
    };
    // Past the first executions of the prepared statement, which are planned for their own
    // parameters.
    let mut few_waiting = 0;
    for _ in 0..8 {
        few_waiting = clear().await;
    }
    make_pending(&admin, others).await;
    let many_waiting = clear().await;

    let t = tms::Scope::Tenant(tenant("demo"));
    let get = |id| store.get(&t, id);
    assert_eq!(
        get(subject).await.unwrap().unwrap().enqueued_at,
        None,
        "the pending task's marker is cleared"
    );
    assert!(
        get(finished).await.unwrap().unwrap().enqueued_at.is_some(),
        "a finished task keeps its marker"
    );
    assert!(few_waiting > 0, "pg_stat_statements saw the statement");
    assert!(
        many_waiting <= few_waiting * 2,
        "clearing two markers touched {few_waiting} buffers with one task waiting and \
         {many_waiting} with {} waiting: the statement reads the waiting tasks",
        OTHERS + 1
    );
}

#[tokio::test]
async fn cancel_and_redrive_follow_the_lifecycle() {
    let db = TestDb::new().await;
    let store = db.store();
    let c = CorrelationId::generate();
    let task = noop("demo");
    store.create(&task).await.unwrap();
    let CommandOutcome::Done(cancelled) = store
        .cancel(&tms::Scope::Tenant(task.tenant.clone()), task.id, &c)
        .await
        .unwrap()
    else {
        panic!("a pending task can be cancelled")
    };
    assert_eq!(cancelled.status, Status::Cancelled);
    match store
        .cancel(&tms::Scope::Tenant(task.tenant.clone()), task.id, &c)
        .await
        .unwrap()
    {
        CommandOutcome::Refused { task, reason } => {
            assert_eq!(task.status, Status::Cancelled);
            assert_eq!(reason.to_string(), "cannot cancel a cancelled task");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store
            .redrive(&tms::Scope::Tenant(task.tenant.clone()), task.id, &c)
            .await
            .unwrap(),
        CommandOutcome::Refused { .. }
    ));

    let doomed = noop("demo");
    store.create(&doomed).await.unwrap();
    let claimed = store
        .claim(
            &tms_testkit::tasks::pointers("demo", &[doomed.id]),
            &ClaimPolicy::lease(LEASE),
        )
        .await
        .unwrap()
        .tasks;
    store
        .record(&[Outcome::of(
            &claimed[0].task,
            Status::Dead,
            None,
            Some(TaskError::permanent("boom", "x")),
        )])
        .await
        .unwrap();
    let CommandOutcome::Done(redriven) = store
        .redrive(&tms::Scope::Tenant(doomed.tenant.clone()), doomed.id, &c)
        .await
        .unwrap()
    else {
        panic!("a dead task can be redriven")
    };
    assert_eq!(
        (redriven.status, redriven.attempts, redriven.enqueued_at),
        (Status::Pending, 0, None)
    );
    let events = store
        .events(&tms::Scope::Tenant(doomed.tenant.clone()), doomed.id)
        .await
        .unwrap()
        .unwrap();
    let path: Vec<_> = events.iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(
        path,
        [
            (None, Status::Pending),
            (Some(Status::Pending), Status::Running),
            (Some(Status::Running), Status::Dead),
            (Some(Status::Dead), Status::Pending),
        ]
    );
    assert_eq!(events.last().unwrap().correlation_id, c);
    assert_eq!(
        store
            .claim(
                &tms_testkit::tasks::pointers("demo", &[doomed.id]),
                &ClaimPolicy::lease(LEASE)
            )
            .await
            .unwrap()
            .tasks
            .len(),
        1,
        "a redriven task runs again"
    );
}

#[tokio::test]
async fn mark_enqueued_sets_the_outbox_marker() {
    let db = TestDb::new().await;
    let store = db.store();
    let (a, b) = (noop("demo"), noop("demo"));
    store.create(&a).await.unwrap();
    store.create(&b).await.unwrap();
    store.mark_enqueued(&[a.id]).await.unwrap();
    store.mark_enqueued(&[]).await.unwrap();
    let t = tenant("demo");
    assert!(store
        .get(&tms::Scope::Tenant(t.clone()), a.id)
        .await
        .unwrap()
        .unwrap()
        .enqueued_at
        .is_some());
    assert!(store
        .get(&tms::Scope::Tenant(t.clone()), b.id)
        .await
        .unwrap()
        .unwrap()
        .enqueued_at
        .is_none());
}

/// The marker commits asynchronously inside its own statement: one statement, and the pooled
/// connection it ran on still commits durably afterwards (a setting that outlived the marker
/// would make the next create's commit asynchronous too).
#[tokio::test]
async fn mark_enqueued_is_one_statement_and_leaves_commits_durable() {
    let db = TestDb::new().await;
    db.track_statements().await;
    let pool = db.app_settings().with_pool_size(1).pool().expect("pool");
    let store = tms::adapters::postgres::PostgresStore::new(pool.clone());
    let tasks = created_noops(&store, 3).await;
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    // Durable for this session whatever the cluster's default (the tests' cluster runs with
    // `synchronous_commit = off`).
    pool.get()
        .await
        .expect("the pool's one connection")
        .batch_execute("SET synchronous_commit = on")
        .await
        .unwrap();

    let before = db.app_statements().await;
    store.mark_enqueued(&ids).await.unwrap();
    assert_eq!(
        db.app_statements().await - before,
        1,
        "the markers of three tasks are one statement"
    );
    let t = tenant("demo");
    for id in ids {
        let task = store
            .get(&tms::Scope::Tenant(t.clone()), id)
            .await
            .unwrap()
            .unwrap();
        assert!(task.enqueued_at.is_some(), "task {id} is marked");
    }
    let client = pool.get().await.expect("the pool's one connection");
    let setting: String = client
        .query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        setting, "on",
        "the connection commits durably after a marker"
    );
}

/// The outbox marker is a HOT update: every marked row stays on its page (`enqueued_at` is in
/// no index, so a version on the same page needs no index entry). On pages packed full by the
/// inserts each marked version moved to another page and added five index entries.
#[tokio::test]
async fn marking_a_page_of_new_tasks_keeps_every_row_on_its_page() {
    let db = TestDb::new().await;
    let store = db.store();
    let tasks = created_noops(&store, 300).await;
    let admin = db.admin().await;
    let pages = || async {
        admin
            .query(
                "SELECT id, (ctid::text::point)[0]::int AS page FROM tms.tasks ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, uuid::Uuid>(0), r.get::<_, i32>(1)))
            .collect::<Vec<_>>()
    };
    let before = pages().await;
    assert_eq!(before.len(), 300);
    let distinct: HashSet<i32> = before.iter().map(|(_, p)| *p).collect();
    assert!(
        distinct.len() > 2,
        "the tasks fill several pages: {distinct:?}"
    );

    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    store.mark_enqueued(&ids).await.unwrap();
    let after = pages().await;
    let moved: Vec<_> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(b, a)| format!("{} {} -> {}", b.0, b.1, a.1))
        .collect();
    assert!(
        moved.is_empty(),
        "{} of 300 marked rows moved to another page, e.g. {:?}",
        moved.len(),
        moved.first()
    );
    let marked: i64 = admin
        .query_one("SELECT count(enqueued_at) FROM tms.tasks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(marked, 300);
}
