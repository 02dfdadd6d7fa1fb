//! EventBridge events on the work queue against the real database: the tenants' triggers that
//! match create one task each (once per event, whatever the deliveries), only for the tenants
//! the event's account may submit for, and run in the same invocation; events nothing takes are
//! acknowledged and counted.

mod support;

use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};
use support::*;
use tms::ports::{TaskFilter, TaskRepository, TriggerStore};
use tms::telemetry::metrics::{parse_emf, MemorySink, EVENTS_UNMATCHED};
use tms::{DetailMatch, Scope, SourceKind, Status, Tenant, Trigger, TriggerId};
use tms_testkit::TestDb;

const ACCOUNT: &str = "111122223333";

fn order_event(id: &str, status: &str) -> Value {
    json!({
        "version": "0", "id": id, "detail-type": "Order Placed", "source": "shop.orders",
        "account": ACCOUNT, "time": "2026-12-06T10:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {"orderId": format!("o-{id}"), "status": status}
    })
}

fn trigger(tenant: &str, name: &str, detail_match: Option<DetailMatch>) -> Trigger {
    Trigger {
        id: TriggerId::new(),
        tenant: Tenant::parse(tenant).unwrap(),
        name: name.into(),
        event_source: "shop.orders".into(),
        detail_type: "Order Placed".into(),
        detail_match,
        kind: "noop".into(),
        payload: json!({"order": {"$event": "/detail/orderId"}, "status": {"$event": "/detail/status"}}),
        max_attempts: 3,
        created_at: Utc::now(),
    }
}

struct Fixture {
    _db: TestDb,
    store: tms::adapters::postgres::PostgresStore,
    queue: Arc<MemoryQueue>,
    scripted: Arc<Scripted>,
    metrics: Arc<MemorySink>,
    deps: tms_worker::Deps,
}

async fn fixture(producers: &str) -> Fixture {
    let db = TestDb::new().await;
    let store = db.store();
    let scripted = Arc::new(Scripted::default());
    let metrics = Arc::new(MemorySink::default());
    let queue = Arc::new(MemoryQueue::default());
    let mut deps = pg_deps(
        &store,
        queue.clone(),
        registry(scripted.clone()),
        metrics.clone(),
    );
    deps.producers = producers_from(producers);
    Fixture {
        _db: db,
        store,
        queue,
        scripted,
        metrics,
        deps,
    }
}

async fn tasks_of(store: &tms::adapters::postgres::PostgresStore, tenant: &str) -> Vec<tms::Task> {
    store
        .list(
            &Scope::Tenant(Tenant::parse(tenant).unwrap()),
            &tms::ports::ListQuery {
                filter: TaskFilter {
                    source: Some(SourceKind::Event),
                    ..TaskFilter::default()
                },
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

fn unmatched(metrics: &MemorySink) -> f64 {
    metrics
        .lines()
        .iter()
        .filter_map(|l| parse_emf(l).ok())
        .filter_map(|m| m.get(EVENTS_UNMATCHED).and_then(Value::as_f64))
        .sum()
}

#[tokio::test]
async fn a_matching_event_creates_one_task_per_trigger_once_and_runs_it() {
    let f = fixture(&format!(
        r#"{{"{ACCOUNT}": ["acme", "globex"], "{PRODUCER}": "*"}}"#
    ))
    .await;
    let paid = Some(DetailMatch {
        pointer: "/status".into(),
        equals: json!("paid"),
    });
    let acme = trigger("acme", "paid orders", paid.clone());
    let globex = trigger("globex", "every order", None);
    let stranger = trigger("initech", "not allowed", None);
    for t in [&acme, &globex, &stranger] {
        f.store.create_trigger(t).await.unwrap();
    }

    let body = order_event("e-1", "paid").to_string();
    let response = handle(&f.deps, vec![record("m-1", &body, None)]).await;
    assert!(failed_ids(&response).is_empty());
    let created = tasks_of(&f.store, "acme").await;
    assert_eq!(created.len(), 1);
    let task = &created[0];
    assert_eq!(task.payload, json!({"order": "o-e-1", "status": "paid"}));
    assert_eq!(
        task.idempotency_key.as_deref(),
        Some(format!("event:e-1:{}", acme.id).as_str())
    );
    assert_eq!(
        task.source,
        tms::Source::Event {
            trigger_id: acme.id,
            event_id: "e-1".into()
        }
    );
    assert_eq!(task.status, Status::Succeeded, "run in the same invocation");
    assert_eq!(tasks_of(&f.store, "globex").await.len(), 1);
    assert!(
        tasks_of(&f.store, "initech").await.is_empty(),
        "the account may not create initech's tasks"
    );

    // The same event again (a redelivery, a second message): nothing more is created or run.
    let runs = f.scripted.total_runs();
    let response = handle(
        &f.deps,
        vec![record("m-2", &body, None), record("m-3", &body, None)],
    )
    .await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(tasks_of(&f.store, "acme").await.len(), 1);
    assert_eq!(tasks_of(&f.store, "globex").await.len(), 1);
    assert_eq!(f.scripted.total_runs(), runs, "nothing runs twice");

    // Not paid: the acme trigger's detail match leaves it out; globex takes every order.
    let refunded = order_event("e-2", "refunded").to_string();
    handle(&f.deps, vec![record("m-4", &refunded, None)]).await;
    assert_eq!(tasks_of(&f.store, "acme").await.len(), 1);
    assert_eq!(tasks_of(&f.store, "globex").await.len(), 2);
    assert_eq!(unmatched(&f.metrics), 0.0);
}

#[tokio::test]
async fn an_event_no_trigger_takes_is_acknowledged_and_counted() {
    let f = fixture(&format!(r#"{{"{ACCOUNT}": "*", "{PRODUCER}": "*"}}"#)).await;
    f.store
        .create_trigger(&trigger("acme", "orders", None))
        .await
        .unwrap();
    let mut other = order_event("e-9", "paid");
    other["detail-type"] = json!("Order Shipped");
    let broken = r#"{"source": "shop.orders", "detail-type": "Order Placed"}"#;
    let response = handle(
        &f.deps,
        vec![
            record("m-1", &other.to_string(), None),
            record("m-2", broken, None),
        ],
    )
    .await;
    assert!(
        failed_ids(&response).is_empty(),
        "acknowledged, not retried"
    );
    assert!(tasks_of(&f.store, "acme").await.is_empty());
    assert_eq!(unmatched(&f.metrics), 1.0);
    let dead_letters = f.queue.dead_letters.lock().unwrap().clone();
    assert_eq!(dead_letters.len(), 1, "the event without an id or account");
    assert!(
        dead_letters[0].1.starts_with("invalid EventBridge event"),
        "{dead_letters:?}"
    );
    let template_gap = {
        let mut t = trigger("acme", "needs a field", None);
        t.payload = json!({"x": {"$event": "/detail/missing"}});
        t
    };
    f.store.create_trigger(&template_gap).await.unwrap();
    handle(
        &f.deps,
        vec![record(
            "m-3",
            &order_event("e-10", "paid").to_string(),
            None,
        )],
    )
    .await;
    let acme = tasks_of(&f.store, "acme").await;
    assert_eq!(
        acme.len(),
        1,
        "the trigger without the gap still creates its task"
    );
}
