//! The submission and scheduler ports of the PostgreSQL store against the real cluster.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use tms::ports::{
    ClaimPolicy, Outcome, RelayRules, SchedulerStore, SubmissionStore, TaskRepository, WorkStore,
};
use tms::{CorrelationId, NewTask, Source, Status, Submission, TaskError, TaskId};
use tms_testkit::tasks::{noop, tenant};
use tms_testkit::TestDb;

const LEASE: Duration = Duration::from_secs(60);

fn queued(tenant_name: &str, payload: serde_json::Value, key: &str) -> NewTask {
    Submission {
        kind: "noop".into(),
        payload,
        idempotency_key: Some(key.into()),
        run_after: None,
        max_attempts: None,
        priority: tms::Priority::default(),
    }
    .validate(
        tenant(tenant_name),
        CorrelationId::generate(),
        Source::Queue,
        &Default::default(),
    )
    .unwrap()
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.admin().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn submit_creates_each_key_once_and_answers_in_input_order() {
    let db = TestDb::new().await;
    let store = db.store();
    let a = queued("demo", json!({"n": 1}), "m-1");
    let a_again = queued("demo", json!({"n": 1}), "m-1");
    let b = queued("demo", json!({"n": 2}), "m-2");
    let other_tenant = queued("acme", json!({"n": 1}), "m-1");
    let got = store
        .submit(&[a.clone(), a_again, b.clone(), other_tenant.clone()])
        .await
        .unwrap();
    let got: Vec<_> = got.into_iter().map(Option::unwrap).collect();
    assert_eq!(got[0].id, a.id);
    assert!(!got[0].replayed);
    assert_eq!(
        got[1].id, a.id,
        "a duplicate in the same batch gets the first task"
    );
    assert!(got[1].replayed && got[1].hash_matches);
    assert_eq!((got[2].id, got[2].replayed), (b.id, false));
    assert_eq!((got[3].id, got[3].replayed), (other_tenant.id, false));
    assert_eq!(count(&db, "SELECT count(*) FROM tms.tasks").await, 3);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM tms.task_events WHERE from_status IS NULL"
        )
        .await,
        3
    );

    let redelivered = store
        .submit(&[
            queued("demo", json!({"n": 2}), "m-2"),
            queued("demo", json!({"n": 9}), "m-1"),
        ])
        .await
        .unwrap();
    let redelivered: Vec<_> = redelivered.into_iter().map(Option::unwrap).collect();
    assert_eq!(redelivered[0].id, b.id);
    assert!(redelivered[0].replayed && redelivered[0].hash_matches);
    assert_eq!(redelivered[1].id, a.id);
    assert!(redelivered[1].replayed && !redelivered[1].hash_matches);
    assert_eq!(count(&db, "SELECT count(*) FROM tms.tasks").await, 3);
    let stored = store
        .get(&tms::Scope::Tenant(tenant("demo").clone()), a.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.status, stored.source),
        (Status::Pending, Source::Queue)
    );
}

/// A task made `failed` by a claim and a recorded retryable failure.
async fn failed_task(store: &tms::adapters::postgres::PostgresStore, enqueue: bool) -> TaskId {
    let task = noop("demo");
    store.create(&task).await.unwrap();
    let claimed = store
        .claim(
            &tms_testkit::tasks::pointers("demo", &[task.id]),
            &ClaimPolicy::lease(LEASE),
        )
        .await
        .unwrap()
        .tasks;
    let recorded = store
        .record(&[Outcome {
            retry_in: Some(Duration::ZERO),
            enqueue,
            ..Outcome::of(
                &claimed[0].task,
                Status::Failed,
                None,
                Some(TaskError::retryable("http_503", "unavailable")),
            )
        }])
        .await
        .unwrap();
    assert_eq!(recorded.ids, [task.id]);
    task.id
}

#[tokio::test]
async fn relay_picks_unsent_and_lost_messages_only_once() {
    let db = TestDb::new().await;
    let store = db.store();
    let admin = db.admin().await;
    let age = |id: TaskId, sql: &'static str| {
        let admin = &admin;
        async move {
            admin.execute(sql, &[id.as_uuid()]).await.unwrap();
        }
    };
    // pending, API send failed 40 s ago: relayed
    let unsent = noop("demo");
    store.create(&unsent).await.unwrap();
    age(
        unsent.id,
        "UPDATE tms.tasks SET updated_at = now() - interval '40 seconds' WHERE id = $1",
    )
    .await;
    // pending, just created: the API may still be sending
    let fresh = noop("demo");
    store.create(&fresh).await.unwrap();
    // pending and sent: in flight
    let sent = noop("demo");
    store.create(&sent).await.unwrap();
    age(
        sent.id,
        "UPDATE tms.tasks SET updated_at = now() - interval '40 seconds' WHERE id = $1",
    )
    .await;
    store.mark_enqueued(&[sent.id]).await.unwrap();
    // pending, sent an hour ago and still pending: presumed lost
    let lost = noop("demo");
    store.create(&lost).await.unwrap();
    age(
        lost.id,
        "UPDATE tms.tasks SET run_after = now() - interval '1 hour', \
                  updated_at = now() - interval '1 hour', enqueued_at = now() - interval '1 hour' \
                  WHERE id = $1",
    )
    .await;
    // failed, due, retry message never sent: relayed
    let retry_unsent = failed_task(&store, false).await;
    // failed, due, retry message in flight: not relayed
    let retry_in_flight = failed_task(&store, true).await;
    // failed, due in an hour: beyond the SQS delay limit
    let later = failed_task(&store, false).await;
    age(
        later,
        "UPDATE tms.tasks SET run_after = now() + interval '1 hour' WHERE id = $1",
    )
    .await;
    // failed, due in 5 minutes: relayed with a delay
    let soon = failed_task(&store, false).await;
    age(
        soon,
        "UPDATE tms.tasks SET run_after = now() + interval '5 minutes' WHERE id = $1",
    )
    .await;

    let rules = RelayRules::default();
    let batch = store.relay_batch(&rules, 10).await.unwrap();
    let ids: HashSet<TaskId> = batch.iter().map(|d| d.message.task_id).collect();
    assert_eq!(
        ids,
        HashSet::from([unsent.id, lost.id, retry_unsent, soon]),
        "fresh {}, sent {}, in flight {}, later {}",
        fresh.id,
        sent.id,
        retry_in_flight,
        later
    );
    let delay = |id| {
        batch
            .iter()
            .find(|d| d.message.task_id == id)
            .unwrap()
            .delay
    };
    assert_eq!(delay(unsent.id), Duration::ZERO);
    assert!(delay(soon) > Duration::from_secs(200) && delay(soon) <= Duration::from_secs(300));
    let message = &batch
        .iter()
        .find(|d| d.message.task_id == unsent.id)
        .unwrap()
        .message;
    assert_eq!(message.correlation_id, unsent.correlation_id);
    assert_eq!(message.tenant, unsent.tenant);
    assert!(
        store.relay_batch(&rules, 10).await.unwrap().is_empty(),
        "marked: not sent twice"
    );
    store.clear_enqueued(&[unsent.id]).await.unwrap();
    let again = store.relay_batch(&rules, 10).await.unwrap();
    assert_eq!(again.len(), 1, "a cleared marker is relayed again");
    assert_eq!(again[0].message.task_id, unsent.id);
}

#[tokio::test]
async fn concurrent_relay_batches_never_share_a_task() {
    let db = TestDb::new().await;
    let store = db.store();
    let tasks: Vec<_> = (0..60).map(|_| noop("demo")).collect();
    store.create_batch(&tasks).await.unwrap();
    db.admin()
        .await
        .execute(
            "UPDATE tms.tasks SET updated_at = now() - interval '1 minute'",
            &[],
        )
        .await
        .unwrap();
    let rules = RelayRules::default();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let batch = store.relay_batch(&rules, 10).await.unwrap();
                    if batch.is_empty() {
                        return ids;
                    }
                    ids.extend(batch.into_iter().map(|d| d.message.task_id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for run in runs {
        all.extend(run.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 60, "every task relayed");
    assert_eq!(distinct.len(), 60, "none twice");
}

#[tokio::test]
async fn a_job_lock_is_held_until_released_or_its_connection_closes() {
    let db = TestDb::new().await;
    let store = db.store();
    let relay = store.lock_job("relay").await.unwrap().expect("free");
    assert!(store.lock_job("relay").await.unwrap().is_none(), "held");
    let reap = store
        .lock_job("reap")
        .await
        .unwrap()
        .expect("another job's lock is free");
    relay.release().await.unwrap();
    let relay = store.lock_job("relay").await.unwrap().expect("released");
    drop(relay);
    let mut reacquired = None;
    for _ in 0..100 {
        reacquired = store.lock_job("relay").await.unwrap();
        if reacquired.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reacquired.is_some(),
        "dropping the guard closes its connection"
    );
    reap.release().await.unwrap();
}

#[tokio::test]
async fn expired_leases_purge_and_stats_see_the_right_rows() {
    let db = TestDb::new().await;
    let store = db.store();
    let admin = db.admin().await;
    let tasks: Vec<_> = (0..6).map(|_| noop("demo")).collect();
    store.create_batch(&tasks).await.unwrap();
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    // 0: running with an expired lease, 1: running, 2: succeeded long ago, 3: succeeded
    // recently, 4: dead long ago, 5: pending and overdue by an hour.
    store
        .claim(
            &tms_testkit::tasks::pointers("demo", &ids[0..1]),
            &ClaimPolicy::lease(Duration::from_millis(1)),
        )
        .await
        .unwrap();
    let claimed = store
        .claim(
            &tms_testkit::tasks::pointers("demo", &ids[1..5]),
            &ClaimPolicy::lease(LEASE),
        )
        .await
        .unwrap()
        .tasks;
    let done = |id, to| {
        Outcome::of(
            &claimed.iter().find(|c| c.task.id == id).unwrap().task,
            to,
            (to == Status::Succeeded).then(|| json!({})),
            (to == Status::Dead).then(|| TaskError::permanent("boom", "x")),
        )
    };
    store
        .record(&[
            done(ids[2], Status::Succeeded),
            done(ids[3], Status::Succeeded),
            done(ids[4], Status::Dead),
        ])
        .await
        .unwrap();
    admin
        .execute(
            "UPDATE tms.tasks SET updated_at = now() - interval '40 days' WHERE id = ANY($1)",
            &[&vec![*ids[2].as_uuid(), *ids[4].as_uuid()]],
        )
        .await
        .unwrap();
    admin
        .execute(
            "UPDATE tms.tasks SET run_after = now() - interval '1 hour' WHERE id = $1",
            &[ids[5].as_uuid()],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;

    let expired = store.expired_leases(10).await.unwrap();
    assert_eq!(expired.iter().map(|t| t.id).collect::<Vec<_>>(), [ids[0]]);

    let stats = store.stats().await.unwrap();
    let n = |s| stats.by_status.iter().find(|(st, _)| *st == s).unwrap().1;
    assert_eq!(
        (
            n(Status::Pending),
            n(Status::Running),
            n(Status::Succeeded),
            n(Status::Dead)
        ),
        (1, 2, 2, 1)
    );
    assert_eq!((n(Status::Failed), n(Status::Cancelled)), (0, 0));
    let oldest = stats.oldest_pending.unwrap();
    assert!(oldest >= Duration::from_secs(3599) && oldest < Duration::from_secs(3700));

    let thirty_days = Duration::from_secs(30 * 86_400);
    assert_eq!(store.purge_finished(thirty_days, 10).await.unwrap(), 1);
    assert_eq!(store.purge_finished(thirty_days, 10).await.unwrap(), 0);
    let left: Vec<uuid::Uuid> = admin
        .query("SELECT id FROM tms.tasks ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !left.contains(ids[2].as_uuid()),
        "old succeeded task deleted"
    );
    assert_eq!(
        left.len(),
        5,
        "younger and non-terminal tasks kept, dead too"
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM tms.task_events WHERE task_id = '{}'",
                ids[2]
            )
        )
        .await,
        0,
        "its events went with it"
    );
}
