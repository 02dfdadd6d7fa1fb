//! The worker's side of flow control against the real database: what a limit defers is
//! acknowledged, comes back through a delayed message on its priority's queue, and is counted
//! per tenant and reason.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use tms::ports::{LimitStore, TaskRepository};
use tms::telemetry::metrics::{parse_emf, MemorySink, TASKS_DEFERRED};
use tms::{KeyLimit, Limits, Status};
use tms_testkit::tasks::{noop, tenant};
use tms_testkit::TestDb;

#[tokio::test]
async fn tasks_over_a_limit_are_deferred_acknowledged_sent_again_later_and_counted() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .set_limits(
            &tenant("demo"),
            &Limits {
                tenant: KeyLimit {
                    max_running: Some(1),
                    rate: None,
                },
                ..Limits::default()
            },
        )
        .await
        .unwrap();
    let tasks: Vec<_> = (0..3).map(|_| noop("demo")).collect();
    store.create_batch(&tasks).await.unwrap();
    let queue = Arc::new(MemoryQueue::default());
    let scripted = Arc::new(Scripted::default());
    let metrics = Arc::new(MemorySink::default());
    let deps = pg_deps(
        &store,
        queue.clone(),
        registry(scripted.clone()),
        metrics.clone(),
    );
    let records = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| work_record(&format!("m-{i}"), t))
        .collect();

    let response = handle(&deps, records).await;
    assert!(
        failed_ids(&response).is_empty(),
        "a deferred task's message is settled: its delayed one replaces it"
    );
    assert_eq!(scripted.total_runs(), 1, "one may run at once");
    let sent = queue.sent.lock().unwrap().clone();
    assert_eq!(
        sent.len(),
        2,
        "a delayed message for each deferred task: {sent:?}"
    );
    for dispatch in &sent {
        assert!(dispatch.delay > Duration::ZERO, "{dispatch:?}");
        let task = store
            .get(&tms::Scope::All, dispatch.message.task_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((task.status, task.attempts), (Status::Pending, 0));
        assert_eq!(
            task.deferred_reason,
            Some(tms::DeferReason::TenantConcurrency)
        );
    }
    // The metric's values, and the line itself for its dimensions.
    let counted: Vec<(serde_json::Value, _)> = metrics
        .lines()
        .iter()
        .map(|l| (serde_json::from_str(l).unwrap(), parse_emf(l).unwrap()))
        .filter(|(_, values)| values.contains_key(TASKS_DEFERRED))
        .collect();
    assert_eq!(counted.len(), 1, "{counted:?}");
    let (line, values) = &counted[0];
    assert_eq!(values[TASKS_DEFERRED].as_f64(), Some(2.0));
    assert_eq!(line["Tenant"], "demo");
    assert_eq!(line["Reason"], "tenant_concurrency");
}
