//! Test support for the worker: events as SQS delivers them, in-memory fakes of the ports, a
//! scripted executor that counts its runs, and wiring for the real store.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use chrono::Utc;
use futures::future::BoxFuture;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use tms::adapters::postgres::PostgresStore;
use tms::ports::{
    Claim, ClaimPolicy, ClaimedTask, Outcome, StoreError, SubmissionStore, Submitted, WorkStore,
};
use tms::telemetry::metrics::MemorySink;
use tms::{
    LifecycleEvent, NewTask, Status, Task, TaskError, TaskId, TaskKind, Tenant, WorkMessage,
    CORRELATION_ATTRIBUTE,
};
use tms_worker::{function_handler, Deps, Executor, Registry, Settings};

/// A context whose deadline is `remaining` from now.
pub fn context(remaining: Duration) -> Context {
    let mut ctx = Context::default();
    ctx.request_id = "test-request".into();
    ctx.deadline = (std::time::SystemTime::now() + remaining)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    ctx
}

/// The producer every test record is sent by, allowed to submit for every tenant.
pub const PRODUCER: &str = "AIDATESTPRODUCER";

/// A producer map allowing [`PRODUCER`] every tenant.
pub fn producers() -> tms::cache::CachedSecret<tms_worker::ProducerMap> {
    producers_from(&format!(r#"{{"{PRODUCER}": "*"}}"#))
}

/// The producer map `json`.
pub fn producers_from(json: &str) -> tms::cache::CachedSecret<tms_worker::ProducerMap> {
    let secrets =
        tms_testkit::fakes::StaticSecrets([("/test/producers".to_owned(), json.to_owned())].into());
    tms_worker::producer_map(Arc::new(secrets), Some("/test/producers".into()))
}

pub fn record(message_id: &str, body: &str, correlation_id: Option<&str>) -> SqsMessage {
    let mut r = SqsMessage::default();
    r.message_id = Some(message_id.into());
    r.attributes
        .insert(tms_worker::message::SENDER_ID.into(), PRODUCER.into());
    r.receipt_handle = Some(format!("rh-{message_id}"));
    r.body = Some(body.into());
    r.event_source = Some("aws:sqs".into());
    r.event_source_arn = Some("arn:aws:sqs:us-east-1:000000000000:tms-work".into());
    r.aws_region = Some("us-east-1".into());
    if let Some(c) = correlation_id {
        let mut attr = SqsMessageAttribute::default();
        attr.string_value = Some(c.into());
        attr.data_type = Some("String".into());
        r.message_attributes
            .insert(CORRELATION_ATTRIBUTE.into(), attr);
    }
    r
}

/// The work message of a task, as the API sends it.
pub fn work_record(message_id: &str, task: &NewTask) -> SqsMessage {
    let message = WorkMessage {
        task_id: task.id,
        tenant: task.tenant.clone(),
        correlation_id: task.correlation_id.clone(),
    };
    record(
        message_id,
        &serde_json::to_string(&message).unwrap(),
        Some(task.correlation_id.as_str()),
    )
}

pub fn event(records: Vec<SqsMessage>) -> LambdaEvent<SqsEvent> {
    event_with(records, Duration::from_secs(60))
}

pub fn event_with(records: Vec<SqsMessage>, remaining: Duration) -> LambdaEvent<SqsEvent> {
    let mut payload = SqsEvent::default();
    payload.records = records;
    LambdaEvent::new(payload, context(remaining))
}

pub async fn handle(deps: &Deps, records: Vec<SqsMessage>) -> SqsBatchResponse {
    function_handler(deps, event(records)).await.unwrap()
}

pub fn failed_ids(response: &SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// Runs `noop` tasks by their payload: `{"outcome": "retryable" | "permanent" | "panic"}`
/// fails accordingly, anything else succeeds with `{"ran": true}`. Counts runs per task and
/// calls `on_run` (if any) during each run.
#[derive(Default)]
pub struct Scripted {
    runs: Mutex<HashMap<TaskId, u32>>,
    order: Mutex<Vec<TaskId>>,
    on_run: Option<Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>>,
}

impl Scripted {
    /// Calls `hook` during each run, before answering.
    pub fn with_hook(hook: impl Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static) -> Self {
        Self {
            on_run: Some(Box::new(hook)),
            ..Self::default()
        }
    }

    pub fn runs_of(&self, id: TaskId) -> u32 {
        self.runs.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
    pub fn total_runs(&self) -> u32 {
        self.runs.lock().unwrap().values().sum()
    }
    pub fn runs(&self) -> HashMap<TaskId, u32> {
        self.runs.lock().unwrap().clone()
    }
    pub fn order(&self) -> Vec<TaskId> {
        self.order.lock().unwrap().clone()
    }
}

#[async_trait]
impl Executor for Scripted {
    async fn execute(&self, task: &Task) -> Result<Value, TaskError> {
        *self.runs.lock().unwrap().entry(task.id).or_default() += 1;
        self.order.lock().unwrap().push(task.id);
        if let Some(hook) = &self.on_run {
            hook().await;
        }
        match task.payload.get("outcome").and_then(Value::as_str) {
            Some("retryable") => Err(TaskError::retryable("test_retryable", "try again")),
            Some("permanent") => Err(TaskError::permanent("test_permanent", "never")),
            Some("panic") => panic!("scripted panic"),
            _ => Ok(json!({"ran": true})),
        }
    }
}

/// A registry where `noop` runs `scripted`.
pub fn registry(scripted: Arc<Scripted>) -> Registry {
    Registry::default().with(TaskKind::Noop, scripted)
}

pub fn settings() -> Settings {
    Settings {
        backoff: tms::Backoff {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(60),
        },
        ..Settings::default()
    }
}

/// Deps on the real store, with a fake queue and captured metrics.
pub fn pg_deps(
    store: &PostgresStore,
    queue: Arc<MemoryQueue>,
    executors: Registry,
    metrics: Arc<MemorySink>,
) -> Deps {
    Deps {
        work: Arc::new(store.clone()),
        submissions: Arc::new(store.clone()),
        triggers: Arc::new(store.clone()),
        subscriptions: Arc::new(store.clone()),
        signing: Arc::new(store.clone()),
        events: None,
        notifications: Arc::new(store.clone()),
        queue,
        producers: producers(),
        executors,
        metrics,
        settings: settings(),
    }
}

/// Deps on the in-memory store.
pub fn memory_deps(
    store: Arc<MemoryStore>,
    queue: Arc<MemoryQueue>,
    executors: Registry,
    metrics: Arc<MemorySink>,
) -> Deps {
    Deps {
        work: store.clone(),
        submissions: store,
        triggers: Arc::new(tms_testkit::fakes::NoTriggers),
        subscriptions: Arc::new(tms_testkit::fakes::NoSubscriptions),
        signing: Arc::new(tms_testkit::fakes::NoSubscriptions),
        events: None,
        notifications: Arc::new(tms_testkit::fakes::NoNotifications),
        queue,
        producers: producers(),
        executors,
        metrics,
        settings: settings(),
    }
}

pub use tms_testkit::fakes::MemoryQueue;

/// The work and submission ports in memory, the lifecycle decided by the domain as the real
/// store's SQL does. `down` makes every call fail as an unreachable database would.
#[derive(Default)]
pub struct MemoryStore {
    tasks: Mutex<HashMap<TaskId, (Task, [u8; 32])>>,
    pub down: AtomicBool,
    pub calls: AtomicUsize,
}

impl MemoryStore {
    pub fn insert(&self, new: &NewTask) -> Task {
        let task = tms_testkit::fakes::from_new(new);
        self.tasks
            .lock()
            .unwrap()
            .insert(task.id, (task.clone(), new.request_hash));
        task
    }

    pub fn get(&self, id: TaskId) -> Task {
        self.tasks.lock().unwrap()[&id].0.clone()
    }

    pub fn all(&self) -> Vec<Task> {
        self.tasks
            .lock()
            .unwrap()
            .values()
            .map(|(t, _)| t.clone())
            .collect()
    }

    fn call(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("the fake database is down".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl WorkStore for MemoryStore {
    async fn claim(
        &self,
        pointers: &[(TaskId, Tenant)],
        policy: &ClaimPolicy,
    ) -> Result<Claim, StoreError> {
        if pointers.is_empty() {
            return Ok(Claim::default());
        }
        self.call()?;
        let now = Utc::now();
        let mut tasks = self.tasks.lock().unwrap();
        let mut claimed = Vec::new();
        for (id, tenant) in pointers {
            let Some((task, _)) = tasks.get_mut(id).filter(|(t, _)| t.tenant == *tenant) else {
                continue;
            };
            let event = LifecycleEvent::Claim {
                due: task.run_after <= now,
                lease_expired: task.lease_until.is_some_and(|l| l < now),
            };
            if let Ok(next) = task.lifecycle().apply(event) {
                let from = task.status;
                task.status = next.status;
                task.attempts = next.attempts;
                task.lease_until = Some(now + policy.lease);
                task.version += 1;
                claimed.push(ClaimedTask {
                    task: task.clone(),
                    from,
                    stolen: false,
                });
            }
        }
        Ok(Claim {
            tasks: claimed,
            deferred: Vec::new(),
        })
    }

    async fn record(&self, outcomes: &[Outcome]) -> Result<tms::ports::Recorded, StoreError> {
        if outcomes.is_empty() {
            return Ok(tms::ports::Recorded::default());
        }
        self.call()?;
        let now = Utc::now();
        let mut tasks = self.tasks.lock().unwrap();
        let (mut recorded, mut events) = (Vec::new(), Vec::new());
        for o in outcomes {
            let Some((task, _)) = tasks.get_mut(&o.id) else {
                continue;
            };
            if task.version != o.version || task.status != Status::Running {
                continue;
            }
            task.status = o.to;
            if o.released {
                task.attempts -= 1;
            }
            task.result = o.result.clone();
            task.last_error = o.error.clone().or(task.last_error.take());
            task.lease_until = None;
            if let Some(d) = o.retry_in {
                task.run_after = now + d;
            }
            if o.enqueue {
                task.enqueued_at = Some(now);
            } else if o.to == Status::Failed && !o.released {
                task.enqueued_at = None;
            }
            task.version += 1;
            recorded.push(o.id);
            events.extend(o.event.clone());
        }
        Ok(tms::ports::Recorded {
            ids: recorded,
            events,
        })
    }

    async fn clear_enqueued(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        self.call()?;
        for id in ids {
            if let Some((task, _)) = self.tasks.lock().unwrap().get_mut(id) {
                if matches!(task.status, Status::Pending | Status::Failed) {
                    task.enqueued_at = None;
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SubmissionStore for MemoryStore {
    async fn submit(&self, tasks: &[NewTask]) -> Result<Vec<Option<Submitted>>, StoreError> {
        self.call()?;
        let mut out = Vec::new();
        for new in tasks {
            let existing = self.tasks.lock().unwrap().values().find_map(|(t, hash)| {
                (t.tenant == new.tenant && t.idempotency_key == new.idempotency_key)
                    .then_some((t.id, *hash))
            });
            out.push(Some(match existing {
                Some((id, hash)) => Submitted {
                    id,
                    replayed: true,
                    hash_matches: hash == new.request_hash,
                },
                None => Submitted {
                    id: self.insert(new).id,
                    replayed: false,
                    hash_matches: true,
                },
            }));
        }
        Ok(out)
    }
}
