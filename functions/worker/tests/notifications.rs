//! Lifecycle events from the worker against the real database: a task's end is recorded with
//! its outcome (one statement), published after commit without the payload, and forgotten once
//! the bus took it; when the bus is down the event stays for the relay.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use support::*;
use tms::notification::{TASK_DEAD, TASK_SUCCEEDED};
use tms::ports::{NotificationStore, TaskRepository};
use tms::telemetry::metrics::MemorySink;
use tms_testkit::fakes::MemoryBus;
use tms_testkit::tasks::new_task;
use tms_testkit::TestDb;

struct Fixture {
    db: TestDb,
    store: tms::adapters::postgres::PostgresStore,
    bus: Arc<MemoryBus>,
    deps: tms_worker::Deps,
}

async fn fixture() -> Fixture {
    let db = TestDb::new().await;
    let store = db.store();
    let bus = Arc::new(MemoryBus::default());
    let mut deps = pg_deps(
        &store,
        Arc::new(MemoryQueue::default()),
        registry(Arc::new(Scripted::default())),
        Arc::new(MemorySink::default()),
    );
    deps.events = Some(bus.clone());
    Fixture {
        db,
        store,
        bus,
        deps,
    }
}

async fn kept(f: &Fixture) -> i64 {
    f.db.admin()
        .await
        .query_one("SELECT count(*) FROM tms.notifications", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_task_that_ends_is_published_without_its_payload_and_forgotten() {
    let f = fixture().await;
    let ok = new_task("demo", "noop", json!({"secret": "payload-4711"}), None);
    let doomed = new_task("demo", "noop", json!({"outcome": "permanent"}), None);
    let retried = new_task("demo", "noop", json!({"outcome": "retryable"}), None);
    for t in [&ok, &doomed, &retried] {
        f.store.create(t).await.unwrap();
    }
    let response = handle(
        &f.deps,
        vec![
            work_record("m-1", &ok),
            work_record("m-2", &doomed),
            work_record("m-3", &retried),
        ],
    )
    .await;
    assert!(failed_ids(&response).is_empty());
    let events = f.bus.events();
    assert_eq!(
        events.len(),
        2,
        "succeeded and dead; a retry is no end: {events:?}"
    );
    let succeeded = events
        .iter()
        .find(|e| e.detail_type == TASK_SUCCEEDED)
        .unwrap();
    assert_eq!(succeeded.subject, *ok.id.as_uuid());
    let detail = &succeeded.detail;
    assert_eq!(detail["event_id"], json!(succeeded.id.to_string()));
    assert_eq!(detail["tenant"], "demo");
    assert_eq!(detail["task_id"], json!(ok.id.to_string()));
    assert_eq!(detail["kind"], "noop");
    assert_eq!(detail["status"], "succeeded");
    assert_eq!(detail["attempts"], 1);
    assert_eq!(detail["correlation_id"], json!(ok.correlation_id.as_str()));
    assert!(detail.get("result").is_some());
    assert!(
        !detail.to_string().contains("payload-4711") && detail.get("payload").is_none(),
        "never the payload: {detail}"
    );
    let dead = events.iter().find(|e| e.detail_type == TASK_DEAD).unwrap();
    assert_eq!(dead.detail["error"]["class"], "permanent");
    assert_eq!(kept(&f).await, 0, "published events are forgotten");
}

#[tokio::test]
async fn when_the_bus_is_down_the_event_stays_for_the_relay() {
    let f = fixture().await;
    f.bus.down.store(true, Ordering::SeqCst);
    let ok = new_task("demo", "noop", json!({}), None);
    f.store.create(&ok).await.unwrap();
    let response = handle(&f.deps, vec![work_record("m-1", &ok)]).await;
    assert!(
        failed_ids(&response).is_empty(),
        "the task's outcome stands"
    );
    assert_eq!(kept(&f).await, 1);
    let waiting = f.store.unpublished_of(&[*ok.id.as_uuid()]).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].detail_type, TASK_SUCCEEDED);
    assert_eq!(
        waiting[0].detail["event_id"],
        json!(waiting[0].id.to_string()),
        "the id it will be published with, however often"
    );
}

/// The worker builds its events' details itself; a cancel's are built by its statement. A
/// consumer reads both alike: the same fields, a task's lacking ones left out.
#[tokio::test]
async fn a_worker_s_event_names_the_fields_a_cancel_s_event_names() {
    let f = fixture().await;
    f.bus.down.store(true, Ordering::SeqCst);
    let ran = new_task("demo", "noop", json!({}), None);
    let cancelled = new_task("demo", "noop", json!({}), None);
    for t in [&ran, &cancelled] {
        f.store.create(t).await.unwrap();
    }
    handle(&f.deps, vec![work_record("m-1", &ran)]).await;
    f.store
        .cancel(
            &tms::Scope::Tenant(cancelled.tenant.clone()),
            cancelled.id,
            &cancelled.correlation_id,
        )
        .await
        .unwrap();
    let stored = f
        .store
        .unpublished_of(&[*ran.id.as_uuid(), *cancelled.id.as_uuid()])
        .await
        .unwrap();
    let detail = |subject: tms::TaskId| {
        &stored
            .iter()
            .find(|e| e.subject == *subject.as_uuid())
            .expect("an event recorded for each")
            .detail
    };
    let fields = |subject| {
        let mut keys: Vec<&String> = detail(subject).as_object().unwrap().keys().collect();
        keys.sort();
        keys
    };
    assert_eq!(
        fields(ran.id),
        [
            "attempts",
            "correlation_id",
            "event_id",
            "kind",
            "result",
            "status",
            "task_id",
            "tenant"
        ]
    );
    let mut without_result = fields(ran.id);
    without_result.retain(|k| *k != "result");
    assert_eq!(
        fields(cancelled.id),
        without_result,
        "a cancelled task has no result"
    );
    assert_eq!(
        (&detail(ran.id)["status"], &detail(ran.id)["attempts"]),
        (&json!("succeeded"), &json!(1))
    );
    assert_eq!(
        (
            &detail(cancelled.id)["status"],
            &detail(cancelled.id)["attempts"]
        ),
        (&json!("cancelled"), &json!(0))
    );
}
