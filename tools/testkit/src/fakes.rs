//! In-memory fakes of the ports, for handler tests. The integration tests use the real
//! adapters; these only let a handler run without services.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;
use tms::ports::{
    CommandOutcome, Created, Dispatch, ListQuery, Overview, QueueError, Secret, Secrets,
    SecretsError, StoreError, TaskFilter, TaskRepository, WorkQueue,
};
use tms::{CorrelationId, LifecycleEvent, NewTask, Scope, Status, Task, TaskEvent, TaskId};

/// Whether `task` passes `filter` (as the real store's conditions would).
fn passes(task: &Task, filter: &TaskFilter) -> bool {
    let text = filter.text.as_deref().map(str::to_lowercase);
    filter.status.is_none_or(|s| s == task.status)
        && filter.kind.is_none_or(|k| k == task.kind)
        && filter.source.is_none_or(|s| s == task.source.kind())
        && filter.created_after.is_none_or(|a| task.created_at >= a)
        && filter.created_before.is_none_or(|b| task.created_at < b)
        && text.is_none_or(|text| {
            task.correlation_id.as_str().to_lowercase().contains(&text)
                || task
                    .idempotency_key
                    .as_deref()
                    .is_some_and(|k| k.to_lowercase().contains(&text))
        })
}

/// Tasks in a vector, idempotent on (tenant, key) like the real store.
#[derive(Default)]
pub struct MemoryRepository {
    tasks: Mutex<Vec<(Task, [u8; 32])>>,
    events: Mutex<Vec<TaskEvent>>,
    /// The ids of every `mark_enqueued` call, one entry per statement.
    marks: Mutex<Vec<Vec<TaskId>>>,
}

impl MemoryRepository {
    /// The ids each `mark_enqueued` statement set, in order.
    pub fn marker_statements(&self) -> Vec<Vec<TaskId>> {
        self.marks.lock().unwrap().clone()
    }

    pub fn tasks(&self) -> Vec<Task> {
        self.tasks
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }

    fn event(&self, task: &Task, from: Option<Status>, correlation_id: &CorrelationId) {
        let mut events = self.events.lock().unwrap();
        let id = events.len() as i64 + 1;
        events.push(TaskEvent {
            id,
            task_id: task.id,
            from,
            to: task.status,
            at: Utc::now(),
            attempt: task.attempts,
            error: None,
            correlation_id: correlation_id.clone(),
        });
    }
}

/// The task a store would insert for `new`: pending, no attempts, due at once unless scheduled.
pub fn from_new(new: &NewTask) -> Task {
    let now = Utc::now();
    Task {
        id: new.id,
        tenant: new.tenant.clone(),
        kind: new.kind,
        payload: new.payload.clone(),
        status: Status::Pending,
        attempts: 0,
        max_attempts: new.max_attempts,
        run_after: new.run_after.unwrap_or(now),
        lease_until: None,
        idempotency_key: new.idempotency_key.clone(),
        correlation_id: new.correlation_id.clone(),
        source: new.source.clone(),
        result: None,
        last_error: None,
        enqueued_at: None,
        created_at: now,
        updated_at: now,
        version: 1,
        priority: new.priority,
        deferred_reason: None,
    }
}

#[async_trait]
impl TaskRepository for MemoryRepository {
    async fn create(&self, new: &NewTask) -> Result<Created, StoreError> {
        let mut tasks = self.tasks.lock().unwrap();
        if let Some(key) = &new.idempotency_key {
            if let Some((t, hash)) = tasks
                .iter()
                .find(|(t, _)| t.tenant == new.tenant && t.idempotency_key.as_ref() == Some(key))
            {
                return Ok(Created {
                    task: t.clone(),
                    replayed: true,
                    hash_matches: *hash == new.request_hash,
                });
            }
        }
        let task = from_new(new);
        tasks.push((task.clone(), new.request_hash));
        drop(tasks);
        self.event(&task, None, &new.correlation_id);
        Ok(Created {
            task,
            replayed: false,
            hash_matches: true,
        })
    }

    async fn create_batch(&self, tasks: &[NewTask]) -> Result<Vec<Created>, StoreError> {
        let mut out = Vec::new();
        for t in tasks {
            out.push(self.create(t).await?);
        }
        Ok(out)
    }

    async fn get(&self, scope: &Scope, id: TaskId) -> Result<Option<Task>, StoreError> {
        Ok(self
            .tasks()
            .into_iter()
            .find(|t| t.id == id && scope.includes(&t.tenant)))
    }

    async fn list(&self, scope: &Scope, q: &ListQuery) -> Result<Vec<Task>, StoreError> {
        let mut tasks: Vec<Task> = self
            .tasks()
            .into_iter()
            .filter(|t| scope.includes(&t.tenant) && passes(t, &q.filter))
            .filter(|t| q.before.is_none_or(|b| t.id < b))
            .collect();
        tasks.sort_by_key(|t| std::cmp::Reverse(t.id));
        tasks.truncate(q.limit as usize);
        Ok(tasks)
    }

    async fn count(&self, scope: &Scope, filter: &TaskFilter) -> Result<u64, StoreError> {
        Ok(self
            .tasks()
            .iter()
            .filter(|t| scope.includes(&t.tenant) && passes(t, filter))
            .count() as u64)
    }

    async fn events(
        &self,
        scope: &Scope,
        id: TaskId,
    ) -> Result<Option<Vec<TaskEvent>>, StoreError> {
        if self.get(scope, id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(
            self.events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.task_id == id)
                .cloned()
                .collect(),
        ))
    }

    async fn cancel(
        &self,
        scope: &Scope,
        id: TaskId,
        c: &CorrelationId,
    ) -> Result<CommandOutcome, StoreError> {
        self.command(scope, id, LifecycleEvent::Cancel, c)
    }

    async fn redrive(
        &self,
        scope: &Scope,
        id: TaskId,
        c: &CorrelationId,
    ) -> Result<CommandOutcome, StoreError> {
        self.command(scope, id, LifecycleEvent::Redrive, c)
    }

    async fn bulk(
        &self,
        scope: &Scope,
        filter: &TaskFilter,
        event: LifecycleEvent,
        limit: u32,
        c: &CorrelationId,
    ) -> Result<Vec<Task>, StoreError> {
        let mut candidates: Vec<Task> = self
            .tasks()
            .into_iter()
            .filter(|t| scope.includes(&t.tenant) && passes(t, filter))
            .filter(|t| event.applies_from().contains(&t.status))
            .collect();
        candidates.sort_by_key(|t| t.id);
        let mut changed = Vec::new();
        for task in candidates.into_iter().take(limit as usize) {
            if let CommandOutcome::Done(task) = self.command(scope, task.id, event, c)? {
                changed.push(task);
            }
        }
        Ok(changed)
    }

    async fn overview(&self, scope: &Scope) -> Result<Overview, StoreError> {
        let mut counts: Vec<(Status, String, u64)> = Vec::new();
        for task in self.tasks().iter().filter(|t| scope.includes(&t.tenant)) {
            match counts
                .iter_mut()
                .find(|(s, k, _)| *s == task.status && k == task.kind.as_str())
            {
                Some(slot) => slot.2 += 1,
                None => counts.push((task.status, task.kind.as_str().to_owned(), 1)),
            }
        }
        Ok(Overview {
            counts,
            ..Overview::default()
        })
    }

    async fn mark_enqueued(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        self.marks.lock().unwrap().push(ids.to_vec());
        for (t, _) in self.tasks.lock().unwrap().iter_mut() {
            if ids.contains(&t.id) {
                t.enqueued_at = Some(Utc::now());
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl MemoryRepository {
    fn command(
        &self,
        scope: &Scope,
        id: TaskId,
        event: LifecycleEvent,
        c: &CorrelationId,
    ) -> Result<CommandOutcome, StoreError> {
        let mut tasks = self.tasks.lock().unwrap();
        let Some((task, _)) = tasks
            .iter_mut()
            .find(|(t, _)| t.id == id && scope.includes(&t.tenant))
        else {
            return Ok(CommandOutcome::NotFound);
        };
        match task.lifecycle().apply(event) {
            Ok(next) => {
                let from = task.status;
                task.status = next.status;
                task.attempts = next.attempts;
                let task = task.clone();
                drop(tasks);
                self.event(&task, Some(from), c);
                Ok(CommandOutcome::Done(task))
            }
            Err(reason) => Ok(CommandOutcome::Refused {
                task: task.clone(),
                reason,
            }),
        }
    }
}

/// Records what was sent and dead-lettered; `down` makes every call fail.
#[derive(Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<Dispatch>>,
    pub dead_letters: Mutex<Vec<(String, String)>>,
    pub down: std::sync::atomic::AtomicBool,
}

impl MemoryQueue {
    fn check(&self) -> Result<(), QueueError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(QueueError::Unavailable("the fake queue is down".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl WorkQueue for MemoryQueue {
    async fn send(&self, dispatches: &[Dispatch]) -> Result<Vec<TaskId>, QueueError> {
        self.check()?;
        self.sent.lock().unwrap().extend_from_slice(dispatches);
        Ok(dispatches.iter().map(|d| d.message.task_id).collect())
    }

    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError> {
        self.check()?;
        self.dead_letters
            .lock()
            .unwrap()
            .push((body.to_owned(), reason.to_owned()));
        Ok(())
    }
}

/// Fixed secrets by name.
#[derive(Default)]
pub struct StaticSecrets(pub HashMap<String, String>);

#[async_trait]
impl Secrets for StaticSecrets {
    async fn get(&self, name: &str) -> Result<Secret, SecretsError> {
        self.0
            .get(name)
            .map(|v| Secret::new(v.clone()))
            .ok_or_else(|| SecretsError::NotFound(name.to_owned()))
    }
}

/// An import store with no imports, for handler tests that do not touch imports.
pub struct NoImports;

#[async_trait]
impl tms::ports::ImportStore for NoImports {
    async fn begin(
        &self,
        _new: &tms::ports::NewImport,
    ) -> Result<tms::ports::ImportClaim, StoreError> {
        Err(StoreError::Unavailable(
            "no import store in this test".into(),
        ))
    }

    async fn list_imports(
        &self,
        _s: &Scope,
        _b: Option<tms::ImportId>,
        _l: u32,
    ) -> Result<Vec<tms::Import>, StoreError> {
        Ok(Vec::new())
    }

    async fn get_import(
        &self,
        _s: &Scope,
        _id: tms::ImportId,
    ) -> Result<Option<tms::Import>, StoreError> {
        Ok(None)
    }
}

/// An object store that stores nothing, for handler tests that do not touch the bucket.
pub struct NoObjects;

#[async_trait]
impl tms::ports::ObjectStore for NoObjects {
    fn bucket(&self) -> &str {
        "no-bucket"
    }

    async fn put(
        &self,
        key: &str,
        _body: Vec<u8>,
        _ct: &str,
    ) -> Result<(), tms::ports::ObjectError> {
        Err(tms::ports::ObjectError::Unavailable(
            format!("no bucket for {key}").into(),
        ))
    }

    async fn put_new(
        &self,
        key: &str,
        body: Vec<u8>,
        ct: &str,
    ) -> Result<bool, tms::ports::ObjectError> {
        self.put(key, body, ct).await.map(|()| true)
    }

    async fn put_file(
        &self,
        key: &str,
        _p: &std::path::Path,
        _ct: &str,
    ) -> Result<(), tms::ports::ObjectError> {
        Err(tms::ports::ObjectError::Unavailable(
            format!("no bucket for {key}").into(),
        ))
    }

    async fn open(
        &self,
        key: &str,
        _v: Option<&str>,
    ) -> Result<tms::ports::ObjectReader, tms::ports::ObjectError> {
        Err(tms::ports::ObjectError::NotFound(key.to_owned()))
    }

    async fn presign_put(
        &self,
        key: &str,
        _length: u64,
        _e: std::time::Duration,
    ) -> Result<String, tms::ports::ObjectError> {
        Ok(format!("https://no-bucket.invalid/{key}"))
    }

    async fn presign_get(
        &self,
        key: &str,
        _e: std::time::Duration,
    ) -> Result<String, tms::ports::ObjectError> {
        Ok(format!("https://no-bucket.invalid/{key}"))
    }
}

/// Console sessions and sign-ins in memory.
#[derive(Default)]
pub struct MemoryConsole {
    sessions: Mutex<Vec<tms::ports::ConsoleSession>>,
    logins: Mutex<Vec<tms::ports::PendingLogin>>,
}

#[async_trait]
impl tms::ports::ConsoleStore for MemoryConsole {
    async fn create_session(&self, s: &tms::ports::ConsoleSession) -> Result<(), StoreError> {
        self.sessions.lock().unwrap().push(s.clone());
        Ok(())
    }

    async fn session(
        &self,
        id_hash: &[u8; 32],
    ) -> Result<Option<tms::ports::ConsoleSession>, StoreError> {
        Ok(self
            .sessions
            .lock()
            .unwrap()
            .iter()
            .find(|s| &s.id_hash == id_hash && s.expires_at > Utc::now())
            .cloned())
    }

    async fn end_session(&self, id_hash: &[u8; 32]) -> Result<(), StoreError> {
        self.sessions
            .lock()
            .unwrap()
            .retain(|s| &s.id_hash != id_hash);
        Ok(())
    }

    async fn begin_login(&self, login: &tms::ports::PendingLogin) -> Result<(), StoreError> {
        self.logins.lock().unwrap().push(login.clone());
        Ok(())
    }

    async fn take_login(
        &self,
        state: &str,
    ) -> Result<Option<tms::ports::PendingLogin>, StoreError> {
        let mut logins = self.logins.lock().unwrap();
        let found = logins.iter().position(|l| l.state == state);
        Ok(found
            .map(|i| logins.remove(i))
            .filter(|l| l.expires_at > Utc::now()))
    }
}

/// A trigger store without triggers, for handler tests that do not touch them.
pub struct NoTriggers;

#[async_trait]
impl tms::ports::TriggerStore for NoTriggers {
    async fn create_trigger(&self, _t: &tms::Trigger) -> Result<(), tms::ports::CreateError> {
        Err(StoreError::Unavailable("no trigger store in this test".into()).into())
    }

    async fn list_triggers(
        &self,
        _s: &Scope,
        _b: Option<tms::TriggerId>,
        _l: u32,
    ) -> Result<Vec<tms::Trigger>, StoreError> {
        Ok(Vec::new())
    }

    async fn get_trigger(
        &self,
        _s: &Scope,
        _id: tms::TriggerId,
    ) -> Result<Option<tms::Trigger>, StoreError> {
        Ok(None)
    }

    async fn delete_trigger(&self, _s: &Scope, _id: tms::TriggerId) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn triggers_for(&self, _p: &[(String, String)]) -> Result<Vec<tms::Trigger>, StoreError> {
        Ok(Vec::new())
    }
}

/// A schedule store without schedules, for handler tests that do not touch them.
pub struct NoSchedules;

#[async_trait]
impl tms::ports::ScheduleStore for NoSchedules {
    async fn create_schedule(&self, _s: &tms::Schedule) -> Result<(), tms::ports::CreateError> {
        Err(StoreError::Unavailable("no schedule store in this test".into()).into())
    }

    async fn list_schedules(
        &self,
        _s: &Scope,
        _b: Option<tms::ScheduleId>,
        _l: u32,
    ) -> Result<Vec<tms::Schedule>, StoreError> {
        Ok(Vec::new())
    }

    async fn get_schedule(
        &self,
        _s: &Scope,
        _id: tms::ScheduleId,
    ) -> Result<Option<tms::Schedule>, StoreError> {
        Ok(None)
    }

    async fn update_schedule(
        &self,
        _s: &Scope,
        _schedule: &tms::Schedule,
        _rescheduled: bool,
    ) -> Result<tms::ports::ScheduleUpdate, tms::ports::CreateError> {
        Ok(tms::ports::ScheduleUpdate::NotFound)
    }

    async fn delete_schedule(&self, _s: &Scope, _id: tms::ScheduleId) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn due_schedules(
        &self,
        _now: chrono::DateTime<Utc>,
        _after: Option<tms::ports::DueCursor>,
        _limit: u32,
    ) -> Result<Vec<tms::Schedule>, StoreError> {
        Ok(Vec::new())
    }

    async fn record_runs(
        &self,
        _runs: &[tms::ports::ScheduleRun],
        _enqueued: &[TaskId],
    ) -> Result<u64, StoreError> {
        Ok(0)
    }
}

/// No lifecycle events kept, for handler tests that publish none.
pub struct NoNotifications;

#[async_trait]
impl tms::ports::NotificationStore for NoNotifications {
    async fn published(&self, _ids: &[uuid::Uuid]) -> Result<(), StoreError> {
        Ok(())
    }

    async fn unpublished_of(
        &self,
        _subjects: &[uuid::Uuid],
    ) -> Result<Vec<tms::Notification>, StoreError> {
        Ok(Vec::new())
    }

    async fn unpublished(
        &self,
        _older_than: std::time::Duration,
        _limit: u32,
    ) -> Result<Vec<tms::Notification>, StoreError> {
        Ok(Vec::new())
    }
}

/// No subscriptions and no signing secrets, for handler tests that do not touch them.
pub struct NoSubscriptions;

#[async_trait]
impl tms::ports::SubscriptionStore for NoSubscriptions {
    async fn create_subscription(&self, _s: &tms::Subscription) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(
            "no subscription store in this test".into(),
        ))
    }

    async fn list_subscriptions(
        &self,
        _s: &Scope,
        _b: Option<tms::SubscriptionId>,
        _l: u32,
    ) -> Result<Vec<tms::Subscription>, StoreError> {
        Ok(Vec::new())
    }

    async fn get_subscription(
        &self,
        _s: &Scope,
        _id: tms::SubscriptionId,
    ) -> Result<Option<tms::Subscription>, StoreError> {
        Ok(None)
    }

    async fn update_subscription(
        &self,
        _s: &Scope,
        _sub: &tms::Subscription,
        _read_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<tms::Subscription>, StoreError> {
        Ok(None)
    }

    async fn rotate_subscription_secret(
        &self,
        _s: &Scope,
        _id: tms::SubscriptionId,
        _secret: &tms::SigningSecret,
        _until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<tms::Subscription>, StoreError> {
        Ok(None)
    }

    async fn delete_subscription(
        &self,
        _s: &Scope,
        _id: tms::SubscriptionId,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn subscriptions_for(
        &self,
        _tenants: &[tms::Tenant],
        _types: &[String],
    ) -> Result<Vec<tms::Subscription>, StoreError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl tms::ports::WebhookSigningStore for NoSubscriptions {
    async fn webhook_signing(
        &self,
        _tenant: &tms::Tenant,
    ) -> Result<Option<tms::WebhookSigning>, StoreError> {
        Ok(None)
    }

    async fn set_webhook_signing(
        &self,
        _tenant: &tms::Tenant,
        _secret: &tms::SigningSecret,
    ) -> Result<tms::WebhookSigning, StoreError> {
        Err(StoreError::Unavailable(
            "no signing store in this test".into(),
        ))
    }

    async fn rotate_webhook_signing(
        &self,
        _tenant: &tms::Tenant,
        _secret: &tms::SigningSecret,
        _until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<tms::WebhookSigning>, StoreError> {
        Ok(None)
    }

    async fn delete_webhook_signing(&self, _tenant: &tms::Tenant) -> Result<bool, StoreError> {
        Ok(false)
    }
}

#[async_trait]
impl tms::ports::SigningLookup for NoSubscriptions {
    async fn signing_for(
        &self,
        _tenants: &[tms::Tenant],
        _subscriptions: &[tms::SubscriptionId],
    ) -> Result<tms::ports::Signing, StoreError> {
        Ok(tms::ports::Signing::default())
    }
}

/// An event bus that keeps what it is given; `down` refuses everything.
#[derive(Default)]
pub struct MemoryBus {
    pub published: Mutex<Vec<tms::Notification>>,
    pub down: std::sync::atomic::AtomicBool,
}

impl MemoryBus {
    pub fn events(&self) -> Vec<tms::Notification> {
        self.published.lock().unwrap().clone()
    }
}

#[async_trait]
impl tms::ports::EventPublisher for MemoryBus {
    async fn publish(
        &self,
        events: &[tms::Notification],
    ) -> Result<Vec<uuid::Uuid>, tms::ports::PublishError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(tms::ports::PublishError("the fake bus is down".into()));
        }
        self.published.lock().unwrap().extend_from_slice(events);
        Ok(events.iter().map(|e| e.id).collect())
    }
}
