//! The batch handler on in-memory ports: the response contract, dead letters, retries, the
//! deadline guard, metrics and logs.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use serde_json::{json, Value};
use support::*;
use tms::telemetry::metrics::{
    parse_emf, MemorySink, BATCH_ITEM_FAILURES, EXECUTOR_DURATION_MS, TASKS_DEAD, TASKS_FAILED,
    TASKS_SUCCEEDED, TASK_LATENCY_MS,
};
use tms::Status;
use tms_testkit::logs::Captured;
use tms_testkit::tasks::{new_task, noop};
use tms_worker::function_handler;

struct Fixture {
    store: Arc<MemoryStore>,
    queue: Arc<MemoryQueue>,
    scripted: Arc<Scripted>,
    metrics: Arc<MemorySink>,
    deps: tms_worker::Deps,
}

fn fixture_on(store: Arc<MemoryStore>, scripted: Scripted) -> Fixture {
    let queue = Arc::new(MemoryQueue::default());
    let scripted = Arc::new(scripted);
    let metrics = Arc::new(MemorySink::default());
    let deps = memory_deps(
        store.clone(),
        queue.clone(),
        registry(scripted.clone()),
        metrics.clone(),
    );
    Fixture {
        store,
        queue,
        scripted,
        metrics,
        deps,
    }
}

fn fixture_with(scripted: Scripted) -> Fixture {
    fixture_on(Arc::new(MemoryStore::default()), scripted)
}

fn fixture() -> Fixture {
    fixture_with(Scripted::default())
}

/// `n` noop tasks in the store and their work messages `m-0`, `m-1`, ...
fn stored_noops(f: &Fixture, n: usize) -> (Vec<tms::NewTask>, Vec<SqsMessage>) {
    let tasks: Vec<_> = (0..n).map(|_| noop("demo")).collect();
    let records = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            f.store.insert(t);
            work_record(&format!("m-{i}"), t)
        })
        .collect();
    (tasks, records)
}

#[tokio::test]
async fn the_response_is_exactly_the_partial_batch_contract() {
    let f = fixture();
    let ok = noop("demo");
    let dead = new_task("demo", "noop", json!({"outcome": "permanent"}), None);
    f.store.insert(&ok);
    f.store.insert(&dead);
    let unknown = noop("demo");
    let records = vec![
        work_record("m-1", &ok),
        work_record("m-2", &dead),
        work_record("m-3", &unknown),
        record("m-4", "not json", None),
    ];
    let response = function_handler(&f.deps, event(records.clone()))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_string(&response).unwrap(),
        r#"{"batchItemFailures":[]}"#,
        "done, dead, unknown and dead-lettered records are all acknowledged"
    );
    assert_eq!(f.store.get(ok.id).status, Status::Succeeded);
    assert_eq!(f.store.get(dead.id).status, Status::Dead);

    f.queue.down.store(true, Ordering::SeqCst);
    let again = function_handler(&f.deps, event(records)).await.unwrap();
    assert_eq!(
        serde_json::to_string(&again).unwrap(),
        r#"{"batchItemFailures":[{"itemIdentifier":"m-4"}]}"#,
        "only the record that could not be moved to the dead-letter queue comes back"
    );
    assert_eq!(f.scripted.total_runs(), 2, "redelivery ran nothing again");
}

#[tokio::test]
async fn with_the_database_down_mid_batch_no_record_is_acknowledged() {
    let store = Arc::new(MemoryStore::default());
    let down = store.clone();
    let f = fixture_on(
        store,
        Scripted::with_hook(move || {
            down.down.store(true, Ordering::SeqCst);
            Box::pin(async {})
        }),
    );
    let (tasks, mut records) = stored_noops(&f, 3);
    records.push(work_record("m-unknown", &noop("demo")));
    records.push(record("m-bad", "{}", None));
    let response = handle(&f.deps, records).await;
    assert_eq!(
        serde_json::to_string(&response).unwrap(),
        r#"{"batchItemFailures":[{"itemIdentifier":"m-0"},{"itemIdentifier":"m-1"},{"itemIdentifier":"m-2"},{"itemIdentifier":"m-unknown"},{"itemIdentifier":"m-bad"}]}"#
    );
    assert!(f.queue.dead_letters.lock().unwrap().is_empty());
    assert!(f.queue.sent.lock().unwrap().is_empty());
    for t in &tasks {
        assert_eq!(
            f.store.get(t.id).status,
            Status::Running,
            "nothing recorded"
        );
    }
}

#[tokio::test]
async fn malformed_messages_are_dead_lettered_with_a_reason_and_acknowledged() {
    let f = fixture();
    let bodies = [
        "not json",
        r#"{"task_id":"x","tenant":"demo","correlation_id":"c"}"#,
        r#"{"tenant":"demo","kind":"fax","payload":{}}"#,
        r#"{"something":"else"}"#,
    ];
    let records = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| record(&format!("m-{i}"), b, None))
        .collect();
    assert!(failed_ids(&handle(&f.deps, records).await).is_empty());
    let letters = f.queue.dead_letters.lock().unwrap().clone();
    assert_eq!(
        letters.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(),
        bodies,
        "the original bodies, untouched"
    );
    let reasons: Vec<&str> = letters.iter().map(|(_, r)| r.as_str()).collect();
    assert!(
        reasons[0].starts_with("the body is not JSON"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].starts_with("invalid work message"),
        "{}",
        reasons[1]
    );
    assert!(reasons[2].contains("/kind"), "{}", reasons[2]);
    assert!(
        reasons[3].starts_with("neither a work message"),
        "{}",
        reasons[3]
    );
    assert!(f.store.all().is_empty());
}

#[tokio::test]
async fn a_retryable_failure_is_retried_after_a_backoff_by_a_delayed_message() {
    let f = fixture();
    let task = new_task("demo", "noop", json!({"outcome": "retryable"}), None);
    f.store.insert(&task);
    assert!(failed_ids(&handle(&f.deps, vec![work_record("m-1", &task)]).await).is_empty());
    let stored = f.store.get(task.id);
    assert_eq!((stored.status, stored.attempts), (Status::Failed, 1));
    assert_eq!(
        stored.last_error.as_ref().map(|e| e.code.as_str()),
        Some("test_retryable")
    );
    assert!(stored.enqueued_at.is_some(), "the outbox marker is set");
    let sent = f.queue.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message.task_id, task.id);
    assert_eq!(sent[0].message.correlation_id, task.correlation_id);
    assert!(
        sent[0].delay <= Duration::from_secs(2),
        "base × 2^0 with full jitter"
    );
    let due_in = stored.run_after - chrono::Utc::now();
    assert!(due_in <= chrono::Duration::seconds(2));
}

#[tokio::test]
async fn a_retry_message_that_cannot_be_sent_is_left_to_the_relay() {
    let f = fixture();
    f.queue.down.store(true, Ordering::SeqCst);
    let task = new_task("demo", "noop", json!({"outcome": "retryable"}), None);
    f.store.insert(&task);
    assert!(failed_ids(&handle(&f.deps, vec![work_record("m-1", &task)]).await).is_empty());
    let stored = f.store.get(task.id);
    assert_eq!(stored.status, Status::Failed);
    assert_eq!(
        stored.enqueued_at, None,
        "the marker is cleared for the relay"
    );
}

#[tokio::test]
async fn permanent_failures_and_exhausted_attempts_end_dead_with_the_error() {
    let f = fixture();
    let permanent = new_task("demo", "noop", json!({"outcome": "permanent"}), None);
    let mut last_try = new_task("demo", "noop", json!({"outcome": "retryable"}), None);
    last_try.max_attempts = 1;
    let panics = new_task("demo", "noop", json!({"outcome": "panic"}), None);
    for t in [&permanent, &last_try, &panics] {
        f.store.insert(t);
    }
    let records = vec![
        work_record("m-1", &permanent),
        work_record("m-2", &last_try),
        work_record("m-3", &panics),
    ];
    assert!(failed_ids(&handle(&f.deps, records).await).is_empty());
    for (task, code) in [
        (&permanent, "test_permanent"),
        (&last_try, "test_retryable"),
        (&panics, "executor_panicked"),
    ] {
        let stored = f.store.get(task.id);
        assert_eq!(stored.status, Status::Dead, "{code}");
        assert_eq!(stored.last_error.unwrap().code, code);
    }
    assert!(
        f.queue.sent.lock().unwrap().is_empty(),
        "no retry for the dead"
    );
    assert!(
        f.queue.dead_letters.lock().unwrap().is_empty(),
        "business failures never reach the SQS dead-letter queue"
    );
}

#[tokio::test]
async fn with_little_time_left_no_task_starts_and_every_record_comes_back() {
    let f = fixture();
    let (tasks, records) = stored_noops(&f, 3);
    let response = function_handler(&f.deps, event_with(records, Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), ["m-0", "m-1", "m-2"]);
    assert_eq!(f.scripted.total_runs(), 0);
    assert!(tasks
        .iter()
        .all(|t| f.store.get(t.id).status == Status::Pending));
    assert_eq!(f.store.calls.load(Ordering::SeqCst), 0, "not even claimed");
}

#[tokio::test]
async fn tasks_not_started_before_the_margin_are_reported_and_the_rest_recorded() {
    // One at a time; the first run lasts until less than the stop margin is left.
    let margin = Duration::from_secs(3);
    let budget = Duration::from_secs(6);
    let started = tokio::time::Instant::now();
    let f = {
        let mut f = fixture_with(Scripted::with_hook(move || {
            Box::pin(tokio::time::sleep_until(
                started + budget - margin + Duration::from_millis(100),
            ))
        }));
        f.deps.settings.concurrency = 1;
        f.deps.settings.stop_margin = margin;
        f
    };
    let (tasks, records) = stored_noops(&f, 3);
    let response = function_handler(&f.deps, event_with(records, budget))
        .await
        .unwrap();
    let ran = f.scripted.order();
    assert_eq!(ran.len(), 1, "only the first task started");
    let first = tasks.iter().position(|t| t.id == ran[0]).unwrap();
    assert_eq!(f.store.get(ran[0]).status, Status::Succeeded);
    let mut want: Vec<String> = (0..3)
        .filter(|i| *i != first)
        .map(|i| format!("m-{i}"))
        .collect();
    want.sort();
    let mut got = failed_ids(&response);
    got.sort();
    assert_eq!(got, want, "the untouched records come back");
}

#[tokio::test]
async fn metrics_are_valid_emf_with_the_batch_counts() {
    let f = fixture();
    let ok = noop("demo");
    let failing = new_task("demo", "noop", json!({"outcome": "retryable"}), None);
    let dead = new_task("demo", "noop", json!({"outcome": "permanent"}), None);
    for t in [&ok, &failing, &dead] {
        f.store.insert(t);
    }
    let records = vec![
        work_record("m-1", &ok),
        work_record("m-2", &failing),
        work_record("m-3", &dead),
    ];
    handle(&f.deps, records).await;
    let lines = f.metrics.lines();
    let parsed: Vec<(Value, serde_json::Map<String, Value>)> = lines
        .iter()
        .map(|l| {
            let values = parse_emf(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (serde_json::from_str(l).unwrap(), values)
        })
        .collect();
    for (doc, _) in &parsed {
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "TMS");
        assert_eq!(doc["Service"], "tms");
        assert!(doc["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    }
    let summary: Vec<_> = parsed
        .iter()
        .filter(|(_, v)| v.contains_key(BATCH_ITEM_FAILURES))
        .collect();
    assert_eq!(summary.len(), 1, "one summary line per batch");
    let (doc, values) = summary[0];
    assert_eq!(
        (
            &values[TASKS_SUCCEEDED],
            &values[TASKS_FAILED],
            &values[TASKS_DEAD],
            &values[BATCH_ITEM_FAILURES]
        ),
        (&json!(1.0), &json!(1.0), &json!(1.0), &json!(0.0))
    );
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Service"]])
    );
    let durations: Vec<_> = parsed
        .iter()
        .filter(|(_, v)| v.contains_key(EXECUTOR_DURATION_MS))
        .collect();
    assert_eq!(durations.len(), 1, "one line for the batch's noop attempts");
    let (doc, values) = durations[0];
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Service", "Kind"]])
    );
    assert_eq!(doc["Kind"], "noop");
    assert_eq!(
        values[EXECUTOR_DURATION_MS].as_array().map(Vec::len),
        Some(3),
        "one executor duration per attempt"
    );
    let latencies: Vec<_> = parsed
        .iter()
        .filter(|(_, v)| v.contains_key(TASK_LATENCY_MS))
        .collect();
    assert_eq!(latencies.len(), 1);
    assert_eq!(
        latencies[0].1[TASK_LATENCY_MS].as_array().map(Vec::len),
        Some(1),
        "latency of the succeeded task only"
    );
}

/// A field of the line's event or of any span it is in.
fn field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["fields"].get(name).or_else(|| {
        line["spans"]
            .as_array()?
            .iter()
            .find_map(|span| span.get(name))
    })
}

#[tokio::test]
async fn every_log_line_about_a_task_carries_its_id_and_correlation_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_current_span(false)
        .with_span_list(true)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let f = fixture();
    let secret = "payload-secret-4711";
    let ok = new_task("demo", "noop", json!({"secret": secret}), None);
    let failing = new_task("demo", "noop", json!({"outcome": "retryable"}), None);
    f.store.insert(&ok);
    f.store.insert(&failing);
    let unknown = noop("demo");
    handle(
        &f.deps,
        vec![
            work_record("m-1", &ok),
            work_record("m-2", &failing),
            work_record("m-3", &unknown),
        ],
    )
    .await;

    let text = captured.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let about_tasks: Vec<&Value> = lines
        .iter()
        .filter(|l| field(l, "task_id").is_some())
        .collect();
    for line in &about_tasks {
        assert!(
            field(line, "correlation_id").is_some() && field(line, "tenant").is_some(),
            "{line}"
        );
    }
    for task in [ok.id, failing.id, unknown.id] {
        let mentions = about_tasks
            .iter()
            .filter(|l| field(l, "task_id") == Some(&json!(task.to_string())))
            .count();
        assert!(mentions >= 1, "no line about {task}:\n{text}");
    }
    let recorded: Vec<_> = about_tasks
        .iter()
        .filter(|l| l["fields"]["message"] == "task attempt recorded")
        .collect();
    assert_eq!(recorded.len(), 2, "{text}");
    assert!(!text.contains(secret), "payloads never reach the log");
}
