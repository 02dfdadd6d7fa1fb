//! Flow control in the worker's claim against the real cluster, each test on a fresh database:
//! the tenants' limits (concurrency, token buckets, webhook hosts), the deferral of what is over
//! one, and the fair share of other tenants' waiting tasks.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tms::ports::{Claim, ClaimPolicy, LimitStore, Outcome, TaskRepository, WorkStore};
use tms::{DeferReason, KeyLimit, Limits, NewTask, Rate, Status, TaskId, TaskKind};
use tms_testkit::tasks::{new_task, noop, pointers, tenant};
use tms_testkit::TestDb;

const LEASE: Duration = Duration::from_secs(60);

async fn created(store: &impl TaskRepository, tasks: Vec<NewTask>) -> Vec<TaskId> {
    let mut ids = Vec::new();
    for task in &tasks {
        ids.push(store.create(task).await.unwrap().task.id);
    }
    ids
}

async fn claim(store: &impl WorkStore, tenant_name: &str, ids: &[TaskId]) -> Claim {
    store
        .claim(&pointers(tenant_name, ids), &ClaimPolicy::lease(LEASE))
        .await
        .unwrap()
}

fn reasons(claim: &Claim) -> Vec<DeferReason> {
    claim.deferred.iter().map(|d| d.reason).collect()
}

fn limits(tenant: KeyLimit) -> Limits {
    Limits {
        tenant,
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_concurrency_limit_defers_what_is_over_it_without_charging_an_attempt() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .set_limits(
            &tenant("demo"),
            &limits(KeyLimit {
                max_running: Some(2),
                rate: None,
            }),
        )
        .await
        .unwrap();
    let ids = created(&store, (0..5).map(|_| noop("demo")).collect()).await;
    let first = claim(&store, "demo", &ids).await;
    assert_eq!(first.tasks.len(), 2, "two may run at once");
    assert_eq!(reasons(&first), [DeferReason::TenantConcurrency; 3]);
    for d in &first.deferred {
        let task = store
            .get(&tms::Scope::All, d.task.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (task.status, task.attempts),
            (Status::Pending, 0),
            "not failed, no attempt"
        );
        assert_eq!(task.deferred_reason, Some(DeferReason::TenantConcurrency));
        assert!(task.run_after > Utc::now(), "it comes back later");
        assert!(d.dispatch().is_some(), "its delayed message is due soon");
        assert!(
            task.enqueued_at.is_some(),
            "the outbox marker covers that message"
        );
    }
    let usage = store.limits(&tenant("demo")).await.unwrap().usage;
    assert_eq!(usage[0].1.running, Some(2));

    // One ends: its slot is free again, and a deferred task takes it once due.
    let done = &first.tasks[0].task;
    store
        .record(&[Outcome {
            ran: Some(Duration::from_millis(40)),
            ..Outcome::of(done, Status::Succeeded, Some(json!({})), None)
        }])
        .await
        .unwrap();
    let usage = store.limits(&tenant("demo")).await.unwrap().usage;
    assert_eq!(usage[0].1.running, Some(1));
    let admin = db.admin().await;
    admin
        .execute(
            "UPDATE tms.tasks SET run_after = now() WHERE status = 'pending'",
            &[],
        )
        .await
        .unwrap();
    let waiting: Vec<TaskId> = first.deferred.iter().map(|d| d.task.id).collect();
    let second = claim(&store, "demo", &waiting).await;
    assert_eq!(second.tasks.len(), 1);
    assert_eq!(
        second.tasks[0].task.deferred_reason, None,
        "a claim clears the reason"
    );
    assert_eq!(second.tasks[0].task.attempts, 1);
    assert_eq!(reasons(&second), [DeferReason::TenantConcurrency; 2]);
}

#[tokio::test]
async fn a_rate_takes_no_more_tokens_than_there_are_and_spaces_what_it_defers() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .set_limits(
            &tenant("demo"),
            &limits(KeyLimit {
                max_running: None,
                rate: Some(Rate {
                    per_second: 1.0,
                    burst: 3,
                }),
            }),
        )
        .await
        .unwrap();
    let ids = created(&store, (0..6).map(|_| noop("demo")).collect()).await;
    let first = claim(&store, "demo", &ids).await;
    assert_eq!(first.tasks.len(), 3, "the burst");
    assert_eq!(reasons(&first), [DeferReason::TenantRate; 3]);
    let mut delays: Vec<Duration> = first.deferred.iter().map(|d| d.delay).collect();
    delays.sort();
    for (i, delay) in delays.iter().enumerate() {
        let expected = Duration::from_secs(i as u64 + 1);
        assert!(
            delay.abs_diff(expected) < Duration::from_millis(300),
            "deferred task {i} waits for its own token: {delay:?}"
        );
    }
    // The bucket is empty: another claim now takes nothing, whatever the batch.
    let more = created(&store, vec![noop("demo")]).await;
    let again = claim(&store, "demo", &more).await;
    assert!(again.tasks.is_empty());
    assert_eq!(reasons(&again), [DeferReason::TenantRate]);
    assert!(
        again.deferred[0].delay >= Duration::from_millis(3_500),
        "behind the three booked before it: {:?}",
        again.deferred[0].delay
    );
}

#[tokio::test]
async fn a_kind_limit_and_a_host_rate_apply_to_their_tasks_only() {
    let db = TestDb::new().await;
    let store = db.store();
    let mut set = Limits::default();
    set.kinds.push((
        TaskKind::Archive,
        KeyLimit {
            max_running: Some(1),
            rate: None,
        },
    ));
    set.hosts.insert(
        "partner.example".into(),
        Rate {
            per_second: 0.5,
            burst: 1,
        },
    );
    store.set_limits(&tenant("demo"), &set).await.unwrap();
    let archive = || {
        new_task(
            "demo",
            "archive",
            json!({"key": "a/b.txt", "content": "x"}),
            None,
        )
    };
    let hook = |host: &str| {
        new_task(
            "demo",
            "webhook",
            json!({"url": format!("https://{host}/hook")}),
            None,
        )
    };
    let ids = created(
        &store,
        vec![
            archive(),
            archive(),
            hook("partner.example"),
            hook("Partner.Example"),
            hook("other.example"),
            noop("demo"),
        ],
    )
    .await;
    let claimed = claim(&store, "demo", &ids).await;
    let taken: HashSet<TaskId> = claimed.tasks.iter().map(|c| c.task.id).collect();
    assert_eq!(claimed.tasks.len(), 4, "{claimed:?}");
    assert!(taken.contains(&ids[4]) && taken.contains(&ids[5]));
    let mut deferred: Vec<_> = claimed
        .deferred
        .iter()
        .map(|d| (d.task.kind, d.reason))
        .collect();
    deferred.sort_by_key(|(k, _)| k.as_str());
    assert_eq!(
        deferred,
        [
            (TaskKind::Archive, DeferReason::KindConcurrency),
            (TaskKind::Webhook, DeferReason::HostRate),
        ],
        "the host is compared in lower case"
    );
}

#[tokio::test]
async fn without_limits_a_claim_takes_the_whole_batch() {
    let db = TestDb::new().await;
    let store = db.store();
    let ids = created(&store, (0..10).map(|_| noop("demo")).collect()).await;
    let claimed = claim(&store, "demo", &ids).await;
    assert_eq!((claimed.tasks.len(), claimed.deferred.len()), (10, 0));
}

#[tokio::test]
async fn a_fair_claim_takes_other_tenants_tasks_waiting_behind_a_backlog() {
    let db = TestDb::new().await;
    let store = db.store();
    let big = created(&store, (0..40).map(|_| noop("big")).collect()).await;
    let small = created(&store, (0..3).map(|_| noop("small")).collect()).await;
    let admin = db.admin().await;
    // Every task has been due for a minute: their messages wait behind the backlog.
    admin
        .execute(
            "UPDATE tms.tasks SET run_after = now() - interval '1 minute'",
            &[],
        )
        .await
        .unwrap();
    let policy = ClaimPolicy {
        lease: LEASE,
        fair_share: 4,
        fair_share_after: Duration::from_secs(5),
    };
    let claimed = store
        .claim(&pointers("big", &big[..10]), &policy)
        .await
        .unwrap();
    let stolen: HashSet<TaskId> = claimed
        .tasks
        .iter()
        .filter(|c| c.stolen)
        .map(|c| c.task.id)
        .collect();
    assert_eq!(
        claimed.tasks.len(),
        13,
        "the batch and the small tenant's three"
    );
    assert_eq!(stolen, small.iter().copied().collect::<HashSet<_>>());
    // Tasks due only a moment ago are not taken: their own messages are about to come.
    let fresh = created(&store, vec![noop("small")]).await;
    let claimed = store
        .claim(&pointers("big", &big[10..12]), &policy)
        .await
        .unwrap();
    assert!(
        claimed.tasks.iter().all(|c| c.task.id != fresh[0]),
        "{claimed:?}"
    );
}
