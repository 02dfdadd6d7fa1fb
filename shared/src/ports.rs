//! Ports: the narrow interfaces the functions depend on. Adapters in [`crate::adapters`]
//! implement them against PostgreSQL, SQS, S3 and SSM; tests implement them in memory.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::{
    CorrelationId, Import, ImportCounts, ImportFormat, ImportId, ImportRow, NewTask, Scope,
    SourceKind, Status, Task, TaskError, TaskEvent, TaskId, TaskKind, Tenant, TransitionError,
    WorkMessage,
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of the task store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the connection broke: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// A row the store read does not fit the domain (a bug or a manual edit).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database refused the content it was given (a value out of range, a constraint, a
    /// limit): sending the same content again fails the same way.
    #[error("the database refused the content: {0}")]
    Refused(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] BoxError),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    pub fn is_refused(&self) -> bool {
        matches!(self, Self::Refused(_))
    }
}

/// The result of an idempotent create.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub task: Task,
    /// The idempotency key already existed: `task` is the earlier task.
    pub replayed: bool,
    /// On a replay: whether the earlier request had the same hash.
    pub hash_matches: bool,
}

/// Which tasks a list, a count or a bulk action covers: every field given narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub status: Option<Status>,
    pub kind: Option<TaskKind>,
    pub source: Option<SourceKind>,
    /// Created at or after this instant.
    pub created_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Created before this instant.
    pub created_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Text the idempotency key or the correlation id contains (case-insensitive).
    pub text: Option<String>,
}

/// A page request for [`TaskRepository::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub filter: TaskFilter,
    /// Only tasks with an id below this one (the last id of the previous page).
    pub before: Option<TaskId>,
    pub limit: u32,
}

/// Tasks that changed state in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteCounts {
    pub minute: chrono::DateTime<chrono::Utc>,
    pub succeeded: u64,
    /// Attempts that failed (to `failed` or `dead`).
    pub failed: u64,
}

/// What the console's overview and `GET /v1/stats` show for a scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overview {
    /// Tasks per status and kind (only the pairs that have any).
    pub counts: Vec<(Status, String, u64)>,
    /// The last hour, a minute at a time, oldest first (only the minutes that have any).
    pub per_minute: Vec<MinuteCounts>,
    /// Created → succeeded of the tasks that succeeded in the last hour, in milliseconds.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    /// How long the most overdue due pending task has waited.
    pub oldest_pending: Option<Duration>,
    /// Tasks waiting because a limit deferred them, per reason (only the reasons that have any).
    pub deferred: Vec<(crate::domain::DeferReason, u64)>,
}

/// The result of an operator or user command on one task.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOutcome {
    Done(Task),
    NotFound,
    Refused { task: Task, reason: TransitionError },
}

/// The tasks as the HTTP API and the console see them: always within a [`Scope`].
#[async_trait]
pub trait TaskRepository: Send + Sync {
    /// Inserts the task and its creation event in one transaction; with an idempotency key
    /// that exists for the tenant, returns the existing task instead.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn create(&self, task: &NewTask) -> Result<Created, StoreError>;

    /// Creates every task in one transaction, each as [`TaskRepository::create`] would.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; nothing is created then.
    async fn create_batch(&self, tasks: &[NewTask]) -> Result<Vec<Created>, StoreError>;

    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn get(&self, scope: &Scope, id: TaskId) -> Result<Option<Task>, StoreError>;

    /// Newest first, at most `query.limit` tasks.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn list(&self, scope: &Scope, query: &ListQuery) -> Result<Vec<Task>, StoreError>;

    /// How many tasks the filter covers.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn count(&self, scope: &Scope, filter: &TaskFilter) -> Result<u64, StoreError>;

    /// The task's transitions, oldest first; `None` when the scope has no such task.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn events(&self, scope: &Scope, id: TaskId)
        -> Result<Option<Vec<TaskEvent>>, StoreError>;

    /// `pending | failed → cancelled`.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn cancel(
        &self,
        scope: &Scope,
        id: TaskId,
        correlation_id: &CorrelationId,
    ) -> Result<CommandOutcome, StoreError>;

    /// `dead → pending`, attempts reset.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn redrive(
        &self,
        scope: &Scope,
        id: TaskId,
        correlation_id: &CorrelationId,
    ) -> Result<CommandOutcome, StoreError>;

    /// Applies `event` (cancel or redrive) to at most `limit` of the tasks the filter covers,
    /// oldest first, in one transaction; tasks the domain refuses the event to are left as they
    /// are, and tasks another transaction holds are skipped. Returns the tasks changed.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; nothing changes then.
    async fn bulk(
        &self,
        scope: &Scope,
        filter: &TaskFilter,
        event: crate::domain::LifecycleEvent,
        limit: u32,
        correlation_id: &CorrelationId,
    ) -> Result<Vec<Task>, StoreError>;

    /// Counts, throughput, latency and the oldest pending task of the scope.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn overview(&self, scope: &Scope) -> Result<Overview, StoreError>;

    /// Sets the outbox marker `enqueued_at` once the work messages were sent. Not durable on
    /// its own: losing it only makes the relay send a duplicate, which is harmless.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn mark_enqueued(&self, ids: &[TaskId]) -> Result<(), StoreError>;

    /// Opens the store's first connection ahead of the first request that needs it (a cold
    /// start runs it while the request is on its way); a store with nothing to open does
    /// nothing.
    ///
    /// # Errors
    /// [`StoreError`] when the connection cannot be opened; the next request tries again.
    async fn connect(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// # Errors
    /// [`StoreError`] when the database does not answer.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// A signed-in console browser: its cookie holds the random id whose SHA-256 is `id_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub id_hash: [u8; 32],
    pub caller: crate::domain::Caller,
    /// Who signed in: a token's hash prefix, or the OIDC subject.
    pub subject: String,
    /// The SHA-256 of the API token the session was made from, checked on each request.
    pub token_hash: Option<[u8; 32]>,
    /// The anti-forgery token every form that changes something sends back.
    pub csrf: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// An OpenID Connect sign-in in flight, until the provider redirects back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    pub state: String,
    /// The PKCE code verifier.
    pub verifier: String,
    pub nonce: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// The console's sessions and sign-ins.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn create_session(&self, session: &ConsoleSession) -> Result<(), StoreError>;

    /// The session, unless it does not exist or has expired.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<ConsoleSession>, StoreError>;

    /// Ends the session (sign-out); nothing when there is none.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn end_session(&self, id_hash: &[u8; 32]) -> Result<(), StoreError>;

    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn begin_login(&self, login: &PendingLogin) -> Result<(), StoreError>;

    /// Removes and returns the sign-in of `state`, unless there is none or it expired: each
    /// state is used once.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn take_login(&self, state: &str) -> Result<Option<PendingLogin>, StoreError>;
}

/// A task a worker claimed: its state after the claim, and the status it was claimed from.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    pub task: Task,
    pub from: Status,
    /// Another tenant's task the claim took besides the batch's own (see [`ClaimPolicy`]): its
    /// own message is still on its way.
    pub stolen: bool,
}

/// How a worker claims a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimPolicy {
    /// How long a claim lasts.
    pub lease: Duration,
    /// The fair claim: besides the batch's own tasks, up to this many due tasks of other
    /// tenants (a few of each, tenants taken in turn) whose messages wait behind a backlog, so
    /// that one tenant's backlog delays only that tenant. 0: none.
    pub fair_share: u32,
    /// How long a task must have been due before another tenant's batch takes it.
    pub fair_share_after: Duration,
}

impl ClaimPolicy {
    /// Only the batch's own tasks.
    pub fn lease(lease: Duration) -> Self {
        Self {
            lease,
            fair_share: 0,
            fair_share_after: Duration::ZERO,
        }
    }
}

/// A task the claim deferred: it was over a limit. Its `run_after` is when the limit is
/// expected to let it run, its `deferred_reason` says which; its outbox marker is set when that
/// is within [`MAX_MESSAGE_DELAY`] (the caller sends the delayed message, clearing the marker
/// if the send fails) and left for the relay otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Deferral {
    pub task: Task,
    pub reason: crate::domain::DeferReason,
    /// From now until it is due.
    pub delay: Duration,
}

impl Deferral {
    /// Its delayed message, unless it is due too late for one.
    pub fn dispatch(&self) -> Option<Dispatch> {
        (self.delay <= MAX_MESSAGE_DELAY).then(|| Dispatch {
            message: WorkMessage {
                task_id: self.task.id,
                tenant: self.task.tenant.clone(),
                correlation_id: self.task.correlation_id.clone(),
            },
            delay: self.delay,
            priority: self.task.priority,
        })
    }
}

/// What a claim took and what it deferred.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claim {
    pub tasks: Vec<ClaimedTask>,
    pub deferred: Vec<Deferral>,
}

/// What to record for one claimed task. The target status is the domain's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub id: TaskId,
    /// The version the claim returned: a task re-claimed by someone else meanwhile is not
    /// overwritten.
    pub version: i64,
    pub to: Status,
    pub result: Option<Value>,
    pub error: Option<TaskError>,
    /// For `failed`: when to try again, from now.
    pub retry_in: Option<Duration>,
    /// The caller sends the retry message itself right after recording, so the outbox marker
    /// is set in the same statement (and cleared again if that send fails).
    pub enqueue: bool,
    /// The attempt never started (the invocation's time ran out first): the claim is given
    /// back, its attempt not counted, and `to` is the status it was claimed from.
    pub released: bool,
    /// How long the attempt ran, when it ran: the concurrency limits space the tasks they defer
    /// by how long their tasks run.
    pub ran: Option<Duration>,
    /// The lifecycle event of an attempt that ended the task
    /// ([`Notification::task_ended`](crate::domain::Notification::task_ended)), recorded with
    /// the outcome when the outcome is.
    pub event: Option<crate::domain::Notification>,
}

impl Outcome {
    /// The attempt of `task` (as claimed) that moved it `to`, with `result` or `error`, and the
    /// lifecycle event when that ends the task: nothing to retry, release or send.
    pub fn of(task: &Task, to: Status, result: Option<Value>, error: Option<TaskError>) -> Self {
        Self {
            id: task.id,
            version: task.version,
            to,
            event: crate::domain::Notification::task_ended(
                task,
                to,
                result.as_ref(),
                error.as_ref(),
            ),
            result,
            error,
            retry_in: None,
            enqueue: false,
            released: false,
            ran: None,
        }
    }
}

/// What [`WorkStore::record`] recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    /// The tasks whose outcome was recorded.
    pub ids: Vec<TaskId>,
    /// The lifecycle events of those that ended, recorded with them: publish them after
    /// commit ([`EventPublisher`]), then forget them ([`NotificationStore::published`]).
    pub events: Vec<crate::domain::Notification>,
}

/// The tasks as workers see them: by id, whatever the tenant.
#[async_trait]
pub trait WorkStore: Send + Sync {
    /// Claims every claimable task among `pointers` (each a task id and the tenant its work
    /// message names; a task of another tenant is not claimed) in one statement: due `pending`
    /// or `failed` tasks, and `running` tasks whose lease expired, all with attempts left; with
    /// [`ClaimPolicy::fair_share`], a few other tenants' due tasks too. The tenants' limits
    /// (concurrency, token buckets, webhook hosts) are applied in the same statement: a task
    /// over one is not claimed but deferred (its state says why and until when; no attempt is
    /// charged), and a token is never taken that is not there.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; nothing is claimed or deferred then.
    async fn claim(
        &self,
        pointers: &[(TaskId, Tenant)],
        policy: &ClaimPolicy,
    ) -> Result<Claim, StoreError>;

    /// Records every outcome, with its event, in one statement. Returns the ids recorded; an
    /// outcome whose task moved on meanwhile (another claim) is not.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; nothing is recorded then.
    async fn record(&self, outcomes: &[Outcome]) -> Result<Recorded, StoreError>;

    /// Clears the outbox marker of tasks whose message could not be sent, so the relay sends it.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn clear_enqueued(&self, ids: &[TaskId]) -> Result<(), StoreError>;
}

/// A tenant's flow-control limits as stored, with their state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredLimits {
    pub limits: crate::domain::Limits,
    /// Per limited key: its tasks running now and, for a rate, the tokens there are now
    /// (below zero while deferred tasks have booked the coming ones).
    pub usage: Vec<(crate::domain::LimitKey, LimitUsage)>,
    /// The last change; `None` when the tenant has never set limits.
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The state of one limited key.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimitUsage {
    pub running: Option<u32>,
    pub tokens: Option<f64>,
}

/// The tenants' flow-control limits.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn limits(&self, tenant: &Tenant) -> Result<StoredLimits, StoreError>;

    /// Replaces the tenant's limits with `limits` (a key left out has no limit from now), in
    /// one transaction. A rate keeps the tokens it has (up to its new burst); a new one starts
    /// full. Concurrency limits count the tasks running now.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; nothing changes then.
    async fn set_limits(
        &self,
        tenant: &Tenant,
        limits: &crate::domain::Limits,
    ) -> Result<StoredLimits, StoreError>;
}

/// An object version to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImport {
    pub id: ImportId,
    pub tenant: Tenant,
    pub bucket: String,
    pub key: String,
    /// The object's version id, or its ETag in an unversioned bucket.
    pub version: String,
    pub format: ImportFormat,
    pub compressed: bool,
    pub correlation_id: CorrelationId,
}

/// What [`ImportStore::begin`] found.
pub enum ImportClaim {
    /// This run owns the import until it finishes the session.
    Started {
        import: Import,
        session: Box<dyn ImportSession>,
    },
    /// An earlier delivery of the same notification completed it.
    AlreadyCompleted(Import),
    /// Another run is importing the same object version right now.
    Busy(Import),
}

/// How an import ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    pub counts: ImportCounts,
    pub report_key: Option<String>,
    pub errors_key: Option<String>,
    /// Why the file could not be imported; `None` for a completed import.
    pub error: Option<String>,
}

/// A task an import created: what its work message needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatedTask {
    pub id: TaskId,
    pub run_after: chrono::DateTime<chrono::Utc>,
    /// Which work queue its message goes to.
    pub priority: crate::domain::Priority,
}

/// One run of an import: its rows are loaded in one transaction, so an unreadable file
/// creates nothing, and the run holds the import's lock until it ends.
#[async_trait]
pub trait ImportSession: Send {
    /// Loads one chunk of valid rows and creates the tasks whose idempotency key the tenant
    /// does not have yet. The chunk arrives as a stream of batches, loaded while it arrives:
    /// a chunk (tens of thousands of rows) is never held in memory at once, only its batches.
    /// Returns the tasks created.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails, [`StoreError::Refused`] when it refuses a row
    /// (a value out of its range); the whole import is then rolled back.
    async fn load_chunk(
        &mut self,
        rows: futures::stream::BoxStream<'_, Vec<ImportRow>>,
    ) -> Result<Vec<CreatedTask>, StoreError>;

    /// Commits the rows (when `outcome.error` is `None`; otherwise rolls them back) and
    /// records the outcome.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn finish(self: Box<Self>, outcome: &ImportOutcome) -> Result<Import, StoreError>;
}

/// Import bookkeeping.
#[async_trait]
pub trait ImportStore: Send + Sync {
    /// Records the import (once per object version) and claims it for this run.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn begin(&self, new: &NewImport) -> Result<ImportClaim, StoreError>;

    /// The tenant's imports, newest first.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn list_imports(
        &self,
        scope: &Scope,
        before: Option<ImportId>,
        limit: u32,
    ) -> Result<Vec<Import>, StoreError>;

    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn get_import(&self, scope: &Scope, id: ImportId) -> Result<Option<Import>, StoreError>;
}

/// One work message to send, visible after `delay` (at most 15 minutes), on the work queue of
/// its task's priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub message: WorkMessage,
    pub delay: Duration,
    pub priority: crate::domain::Priority,
}

/// The longest delay SQS accepts; a task due later is sent by the relay when it comes closer.
pub const MAX_MESSAGE_DELAY: Duration = Duration::from_secs(900);

impl Dispatch {
    /// The message for a task due at `run_after`, delayed until then; `None` when that is
    /// further away than [`MAX_MESSAGE_DELAY`].
    pub fn when_due(
        message: WorkMessage,
        run_after: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Self> {
        let delay = (run_after - now).to_std().unwrap_or_default();
        (delay <= MAX_MESSAGE_DELAY).then_some(Self {
            message,
            delay,
            priority: crate::domain::Priority::Normal,
        })
    }

    /// The same message, on the work queue of `priority`.
    #[must_use]
    pub fn with_priority(mut self, priority: crate::domain::Priority) -> Self {
        self.priority = priority;
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(#[source] BoxError),
}

/// The work queue.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Sends the messages (in batches as the queue allows) and returns the ids of the tasks
    /// whose message was accepted; the others are left to the relay.
    ///
    /// # Errors
    /// [`QueueError`] when nothing could be sent.
    async fn send(&self, dispatches: &[Dispatch]) -> Result<Vec<TaskId>, QueueError>;

    /// Moves a message that can never be processed to the dead-letter queue, with `reason` as
    /// a message attribute.
    ///
    /// # Errors
    /// [`QueueError`] when the dead-letter queue cannot be reached.
    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError>;

    /// About how many messages wait to be received (visible, not in flight or delayed) on the
    /// work queues (normal and high priority), when the queues can tell; `None` when not.
    ///
    /// # Errors
    /// [`QueueError`] when the queue cannot be reached.
    async fn waiting(&self) -> Result<Option<u64>, QueueError> {
        Ok(None)
    }
}

/// The outcome of one submission through [`SubmissionStore::submit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    pub id: TaskId,
    /// The idempotency key already existed: `id` is the earlier task.
    pub replayed: bool,
    /// On a replay: whether the earlier submission had the same request hash.
    pub hash_matches: bool,
}

/// Task submissions arriving on the work queue.
#[async_trait]
pub trait SubmissionStore: Send + Sync {
    /// Creates the tasks with their creation events in one statement, idempotently on
    /// (tenant, idempotency key). Results are in input order; `None` where the key belongs to a
    /// task another transaction committed after this statement began (try again later).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; nothing is created then.
    async fn submit(&self, tasks: &[NewTask]) -> Result<Vec<Option<Submitted>>, StoreError>;
}

/// When the relay (re)sends a work message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayRules {
    /// A `pending` task without a message is sent once it is this old (the API sends its own
    /// message right after the insert; this leaves it the time to do so).
    pub unsent_after: Duration,
    /// Tasks due within this horizon are sent, delayed until due (the SQS delay limit).
    pub horizon: Duration,
    /// A message counts as in flight until this long after it became visible; after that it is
    /// presumed lost (dead-lettered after repeated infrastructure failures) and sent again.
    pub in_flight_for: Duration,
    /// Whether messages presumed lost are sent again at all. The relay turns this off while the
    /// queue holds a backlog: a message older than `in_flight_for` may simply be waiting behind
    /// it, and sending the backlog again would double it.
    pub resend_presumed_lost: bool,
}

impl Default for RelayRules {
    fn default() -> Self {
        Self {
            unsent_after: Duration::from_secs(30),
            horizon: Duration::from_secs(900),
            in_flight_for: Duration::from_secs(600),
            resend_presumed_lost: true,
        }
    }
}

/// Counts for the `stats` gauges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskStats {
    /// Every status, with zero for the absent ones.
    pub by_status: Vec<(Status, u64)>,
    /// How long the most overdue `pending` task has been due, if any is.
    pub oldest_pending: Option<Duration>,
}

/// A job's advisory lock: held until released, or until its connection closes.
#[async_trait]
pub trait JobLock: Send {
    /// # Errors
    /// [`StoreError`] when the unlock fails; the connection is closed then, which releases it.
    async fn release(self: Box<Self>) -> Result<(), StoreError>;
}

/// What the scheduled jobs (relay, reap, retention, stats) need from the store.
#[async_trait]
pub trait SchedulerStore: Send + Sync {
    /// Takes the advisory lock of the job named `job`; `None` when another run holds it.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn lock_job(&self, job: &str) -> Result<Option<Box<dyn JobLock>>, StoreError>;

    /// Selects up to `limit` tasks whose work message is missing by `rules` (skipping rows
    /// other transactions hold), sets their outbox marker and returns their messages, each
    /// delayed until the task is due. The caller sends them and clears the marker of those
    /// it could not send ([`WorkStore::clear_enqueued`]).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; nothing is marked then.
    async fn relay_batch(
        &self,
        rules: &RelayRules,
        limit: u32,
    ) -> Result<Vec<Dispatch>, StoreError>;

    /// Counts again the running tasks of every concurrency limit (claims and outcomes keep the
    /// counts, but a worker of the previous release or a manual change does not), with the
    /// limits locked so no claim moves them meanwhile; returns how many counts were wrong.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; nothing changes then.
    async fn recount_running(&self) -> Result<u64, StoreError>;

    /// Up to `limit` `running` tasks whose lease expired, longest expired first.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn expired_leases(&self, limit: u32) -> Result<Vec<Task>, StoreError>;

    /// Marks `failed` up to `limit` imports `running` for longer than `older_than` whose importer
    /// is gone (nobody holds the import's lock); returns how many. A later delivery of the
    /// import's notification starts it again.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; nothing is marked then.
    async fn fail_stale_imports(&self, older_than: Duration, limit: u32)
        -> Result<u64, StoreError>;

    /// Deletes up to `limit` `succeeded` or `cancelled` tasks (and their events) last updated
    /// more than `older_than` ago; returns how many.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; nothing is deleted then.
    async fn purge_finished(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError>;

    /// Deletes the console's expired sessions and sign-ins; returns how many.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn purge_console(&self) -> Result<u64, StoreError>;

    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn stats(&self) -> Result<TaskStats, StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object {0} not found")]
    NotFound(String),
    #[error("object store unavailable: {0}")]
    Unavailable(#[source] BoxError),
}

/// An object being read, as a byte stream.
pub struct ObjectReader {
    pub body: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    pub size: Option<u64>,
    /// The version read, in a versioned bucket.
    pub version_id: Option<String>,
    /// The ETag of what is read, without its quotes.
    pub e_tag: Option<String>,
}

impl ObjectReader {
    /// What names the content read: its version id, else its ETag.
    pub fn identity(&self) -> Option<&str> {
        self.version_id
            .as_deref()
            .filter(|v| !v.is_empty() && *v != "null")
            .or(self.e_tag.as_deref().filter(|t| !t.is_empty()))
    }
}

/// The data bucket.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    fn bucket(&self) -> &str;

    /// # Errors
    /// [`ObjectError`] when the object could not be stored.
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), ObjectError>;

    /// Stores the object unless one already has `key` (a conditional write: `If-None-Match: *`).
    /// Returns whether it was written; a side effect keyed by its task is done once this way.
    ///
    /// # Errors
    /// [`ObjectError`] when the object could not be stored.
    async fn put_new(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<bool, ObjectError>;

    /// Stores the file at `path`, streamed from disk.
    ///
    /// # Errors
    /// [`ObjectError`] when the object could not be stored.
    async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        content_type: &str,
    ) -> Result<(), ObjectError>;

    /// Opens an object (a given version, when set) for streaming.
    ///
    /// # Errors
    /// [`ObjectError::NotFound`] or [`ObjectError::Unavailable`].
    async fn open(&self, key: &str, version: Option<&str>) -> Result<ObjectReader, ObjectError>;

    /// A URL that lets its holder PUT exactly `content_length` bytes to `key` until it expires
    /// (the length is signed: a body of any other size is refused by S3).
    ///
    /// # Errors
    /// [`ObjectError::Unavailable`] when the URL cannot be signed.
    async fn presign_put(
        &self,
        key: &str,
        content_length: u64,
        expires_in: Duration,
    ) -> Result<String, ObjectError>;

    /// A URL that lets its holder GET `key` until it expires (the console's links to import
    /// reports).
    ///
    /// # Errors
    /// [`ObjectError::Unavailable`] when the URL cannot be signed.
    async fn presign_get(&self, key: &str, expires_in: Duration) -> Result<String, ObjectError>;
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The service is sending more slowly than asked (throttling, a sending quota): the same
    /// message may go later.
    #[error("email throttled ({code}): {message}")]
    Throttled { code: String, message: String },
    /// The service failed or did not answer in time: the same message may go later.
    #[error("email service unavailable ({code}): {message}")]
    Unavailable { code: String, message: String },
    /// The service refused the message (an address, the identity, the account): sending it
    /// again is refused alike.
    #[error("email rejected ({code}): {message}")]
    Rejected { code: String, message: String },
}

/// Sends email from the deployment's verified identity.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends one message; the service's id of it.
    ///
    /// # Errors
    /// [`MailError`], whose variant says whether sending it again may succeed.
    async fn send(&self, email: &crate::domain::email::OutgoingEmail) -> Result<String, MailError>;
}

/// A secret value that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A database login held in a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub username: Option<String>,
    pub password: Secret,
}

impl Secret {
    /// The login this secret holds: a bare password, or JSON `{"username"?, "password"}` (the
    /// shape of the RDS-managed master secret and of the secrets RDS Proxy reads); `None` for
    /// JSON without a string `password`.
    pub fn login(&self) -> Option<Login> {
        let raw = self.0.trim();
        if !raw.starts_with('{') {
            return Some(Login {
                username: None,
                password: Secret::new(raw),
            });
        }
        let v: Value = serde_json::from_str(raw).ok()?;
        Some(Login {
            username: v.get("username").and_then(Value::as_str).map(str::to_owned),
            password: Secret::new(v.get("password")?.as_str()?),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret {0} not found")]
    NotFound(String),
    #[error("secret {name} could not be read: {source}")]
    Unavailable {
        name: String,
        #[source]
        source: BoxError,
    },
}

/// Reads secrets (SSM `SecureString` parameters, decrypted).
#[async_trait]
pub trait Secrets: Send + Sync {
    /// # Errors
    /// [`SecretsError`] when the secret is missing or the service fails.
    async fn get(&self, name: &str) -> Result<Secret, SecretsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_login_is_a_bare_password_or_json_with_a_password() {
        let plain = Secret::new("plain\n").login().unwrap();
        assert_eq!((plain.username, plain.password.expose()), (None, "plain"));
        let json = Secret::new(r#"{"username":"tms_app","password":"s3cret","engine":"postgres"}"#)
            .login()
            .unwrap();
        assert_eq!(json.username.as_deref(), Some("tms_app"));
        assert_eq!(json.password.expose(), "s3cret");
        for bad in [r#"{"username":"a"}"#, r#"{"password":1}"#, "{not json"] {
            assert_eq!(Secret::new(bad).login(), None, "{bad}");
        }
        assert!(!format!("{json:?}").contains("s3cret"));
    }
}

/// Why a trigger (or a schedule) could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The tenant already has one of that name.
    #[error("the name is taken")]
    NameTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A tenant's event triggers, and the match of an event against every tenant's.
#[async_trait]
pub trait TriggerStore: Send + Sync {
    /// # Errors
    /// [`CreateError::NameTaken`] when the tenant has a trigger of that name.
    async fn create_trigger(&self, trigger: &crate::domain::Trigger) -> Result<(), CreateError>;

    /// Newest first, at most `limit`, before `before`.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn list_triggers(
        &self,
        scope: &Scope,
        before: Option<crate::domain::TriggerId>,
        limit: u32,
    ) -> Result<Vec<crate::domain::Trigger>, StoreError>;

    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn get_trigger(
        &self,
        scope: &Scope,
        id: crate::domain::TriggerId,
    ) -> Result<Option<crate::domain::Trigger>, StoreError>;

    /// Whether there was such a trigger to delete.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn delete_trigger(
        &self,
        scope: &Scope,
        id: crate::domain::TriggerId,
    ) -> Result<bool, StoreError>;

    /// Every tenant's triggers on any of the (source, detail-type) pairs, in one statement.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn triggers_for(
        &self,
        pairs: &[(String, String)],
    ) -> Result<Vec<crate::domain::Trigger>, StoreError>;
}

/// What became of a schedule's update.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleUpdate {
    /// The schedule as stored now.
    Updated(crate::domain::Schedule),
    /// The scope has no such schedule.
    NotFound,
    /// Another change came first: the schedule as it is now.
    Conflict(crate::domain::Schedule),
}

/// The bookkeeping of one due schedule after a run of the `schedules` job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRun {
    pub id: crate::domain::ScheduleId,
    /// The version the run read: a schedule changed since keeps what the change decided.
    pub version: i64,
    /// The `next_run_at` the run read: a run that recorded first wins.
    pub due_at: chrono::DateTime<chrono::Utc>,
    /// `None` once the schedule's window ended.
    pub next_run_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The latest fire the run created, if any.
    pub last_fire_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Where a run of the `schedules` job stands among the due schedules: the `next_run_at` and id
/// of the last schedule it took.
pub type DueCursor = (chrono::DateTime<chrono::Utc>, crate::domain::ScheduleId);

/// A tenant's schedules, and the due schedules of every tenant for the `schedules` job. Each
/// method is one statement.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// # Errors
    /// [`CreateError::NameTaken`] when the tenant has a schedule of that name.
    async fn create_schedule(&self, schedule: &crate::domain::Schedule) -> Result<(), CreateError>;

    /// Newest first, at most `limit`, before `before`.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn list_schedules(
        &self,
        scope: &Scope,
        before: Option<crate::domain::ScheduleId>,
        limit: u32,
    ) -> Result<Vec<crate::domain::Schedule>, StoreError>;

    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn get_schedule(
        &self,
        scope: &Scope,
        id: crate::domain::ScheduleId,
    ) -> Result<Option<crate::domain::Schedule>, StoreError>;

    /// Writes the definition of `schedule` (name, timing, template, policy, paused) if the
    /// stored version is still `schedule.version`, and increments the version. Its
    /// `next_run_at` is written only when `rescheduled`; otherwise the stored one (which the
    /// `schedules` job may have moved on meanwhile) stands.
    ///
    /// # Errors
    /// [`CreateError::NameTaken`] when the tenant has another schedule of the new name.
    async fn update_schedule(
        &self,
        scope: &Scope,
        schedule: &crate::domain::Schedule,
        rescheduled: bool,
    ) -> Result<ScheduleUpdate, CreateError>;

    /// Whether there was such a schedule to delete. Tasks it created stay.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn delete_schedule(
        &self,
        scope: &Scope,
        id: crate::domain::ScheduleId,
    ) -> Result<bool, StoreError>;

    /// Up to `limit` schedules, not paused, due at `now` (`next_run_at` at or before it), the
    /// most overdue first, after `after` (the last one a run took), skipping rows another
    /// transaction holds.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn due_schedules(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        after: Option<DueCursor>,
        limit: u32,
    ) -> Result<Vec<crate::domain::Schedule>, StoreError>;

    /// Records the runs (each where the schedule's version and `next_run_at` are still those
    /// the run read) and sets the outbox marker of the pending tasks `enqueued`, whose work
    /// messages the caller sends next (clearing the marker of those not sent, as after
    /// [`SchedulerStore::relay_batch`]). Returns how many runs were recorded.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; nothing is recorded then.
    async fn record_runs(
        &self,
        runs: &[ScheduleRun],
        enqueued: &[TaskId],
    ) -> Result<u64, StoreError>;
}

/// Why events could not be published.
#[derive(Debug, thiserror::Error)]
#[error("the event bus is unavailable: {0}")]
pub struct PublishError(#[source] pub BoxError);

/// The deployment's event bus.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes the lifecycle events (source `tms`, their detail-type and detail); the ids of
    /// those the bus accepted. An event published twice is the same event (its stable id).
    ///
    /// # Errors
    /// [`PublishError`] when the bus cannot be reached at all.
    async fn publish(
        &self,
        events: &[crate::domain::Notification],
    ) -> Result<Vec<uuid::Uuid>, PublishError>;
}

/// The lifecycle events recorded and not yet published.
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Forgets the events the bus accepted.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails (the relay then publishes them again).
    async fn published(&self, ids: &[uuid::Uuid]) -> Result<(), StoreError>;

    /// The unpublished events about these tasks or imports (the API's and the importer's own,
    /// after their response or their commit).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn unpublished_of(
        &self,
        subjects: &[uuid::Uuid],
    ) -> Result<Vec<crate::domain::Notification>, StoreError>;

    /// The relay's: up to `limit` events recorded more than `older_than` ago and not published,
    /// oldest first.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn unpublished(
        &self,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<crate::domain::Notification>, StoreError>;
}

/// A tenant's webhook subscriptions, and the subscriptions of a batch's lifecycle events.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn create_subscription(
        &self,
        subscription: &crate::domain::Subscription,
    ) -> Result<(), StoreError>;

    /// Newest first, at most `limit`, before `before`.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn list_subscriptions(
        &self,
        scope: &Scope,
        before: Option<crate::domain::SubscriptionId>,
        limit: u32,
    ) -> Result<Vec<crate::domain::Subscription>, StoreError>;

    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn get_subscription(
        &self,
        scope: &Scope,
        id: crate::domain::SubscriptionId,
    ) -> Result<Option<crate::domain::Subscription>, StoreError>;

    /// Writes the URL, event types and kinds of `subscription` if it is still as it was read
    /// (its stored `updated_at` is `read_at`); `None` when it is gone or changed meanwhile.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn update_subscription(
        &self,
        scope: &Scope,
        subscription: &crate::domain::Subscription,
        read_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::domain::Subscription>, StoreError>;

    /// Makes `secret` the current secret; the current one signs on until `until` (one
    /// replaced before stops), in one statement, so concurrent rotations lose no secret they
    /// returned. `None` when the scope has no such subscription.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn rotate_subscription_secret(
        &self,
        scope: &Scope,
        id: crate::domain::SubscriptionId,
        secret: &crate::domain::SigningSecret,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::domain::Subscription>, StoreError>;

    /// Whether there was such a subscription to delete. Its deliveries stay (and end dead at
    /// their next attempt).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn delete_subscription(
        &self,
        scope: &Scope,
        id: crate::domain::SubscriptionId,
    ) -> Result<bool, StoreError>;

    /// The subscriptions of these tenants to any of these event types, in one statement.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn subscriptions_for(
        &self,
        tenants: &[Tenant],
        event_types: &[String],
    ) -> Result<Vec<crate::domain::Subscription>, StoreError>;
}

/// The secrets that sign tenants' `webhook` tasks.
#[async_trait]
pub trait WebhookSigningStore: Send + Sync {
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn webhook_signing(
        &self,
        tenant: &Tenant,
    ) -> Result<Option<crate::domain::WebhookSigning>, StoreError>;

    /// Makes `secret` the tenant's only secret, at once (replacing any, without an overlap).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn set_webhook_signing(
        &self,
        tenant: &Tenant,
        secret: &crate::domain::SigningSecret,
    ) -> Result<crate::domain::WebhookSigning, StoreError>;

    /// As [`SubscriptionStore::rotate_subscription_secret`]; `None` when the tenant has no
    /// secret.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn rotate_webhook_signing(
        &self,
        tenant: &Tenant,
        secret: &crate::domain::SigningSecret,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::domain::WebhookSigning>, StoreError>;

    /// Whether the tenant had a secret to delete; its webhook tasks are sent unsigned from now.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn delete_webhook_signing(&self, tenant: &Tenant) -> Result<bool, StoreError>;
}

/// What a batch's signed calls need, looked up in one statement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signing {
    /// The keys of the tenants whose `webhook` tasks are signed.
    pub webhooks: std::collections::HashMap<Tenant, crate::domain::SigningKeys>,
    /// The subscriptions the batch's deliveries go to (a deleted one is missing).
    pub subscriptions:
        std::collections::HashMap<crate::domain::SubscriptionId, crate::domain::Subscription>,
}

/// The worker's view of signing secrets and subscriptions.
#[async_trait]
pub trait SigningLookup: Send + Sync {
    /// The signing keys of `tenants`' webhook tasks and the subscriptions `subscriptions`, in
    /// one statement.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn signing_for(
        &self,
        tenants: &[Tenant],
        subscriptions: &[crate::domain::SubscriptionId],
    ) -> Result<Signing, StoreError>;
}
