//! Executors: what running a task of each kind means. The registry maps every [`TaskKind`] to
//! its [`Executor`], so a new kind is one implementation and one registration.

mod breaker;
mod notification;
mod storage;
mod webhook;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use tms::ports::{ObjectStore, Signing};
use tms::{Task, TaskError, TaskKind};

pub use breaker::{BreakerSettings, CircuitBreaker};
pub use notification::NotificationExecutor;
pub use storage::{archive_key, email_key, ArchiveExecutor, EmailDelivery, EmailExecutor};
pub use webhook::{AddressRefused, Lookup, SystemLookup, WebhookExecutor};

/// Runs one attempt of a task.
#[async_trait]
pub trait Executor: Send + Sync {
    /// The task's result on success.
    ///
    /// # Errors
    /// A [`TaskError`] whose class says whether another attempt may succeed.
    async fn execute(&self, task: &Task) -> Result<Value, TaskError>;

    /// Runs one attempt with what the batch looked up, in one statement, for the calls that
    /// are signed: the tenants' webhook signing keys and the deliveries' subscriptions. An
    /// executor that signs nothing runs [`Executor::execute`].
    ///
    /// # Errors
    /// As [`Executor::execute`].
    async fn execute_signed(&self, task: &Task, signing: &Signing) -> Result<Value, TaskError> {
        let _ = signing;
        self.execute(task).await
    }
}

/// `noop`: succeeds at once, for load and smoke tests.
pub struct NoopExecutor;

#[async_trait]
impl Executor for NoopExecutor {
    async fn execute(&self, _task: &Task) -> Result<Value, TaskError> {
        Ok(json!({}))
    }
}

/// The executor of every kind.
#[derive(Clone, Default)]
pub struct Registry {
    executors: HashMap<TaskKind, Arc<dyn Executor>>,
}

impl Registry {
    /// The built-in executors: `email` and `archive` write to `objects`, `webhook` calls out,
    /// and `notification` delivers through the same calls (breaker and client shared).
    pub fn builtin(objects: Arc<dyn ObjectStore>, webhook: WebhookExecutor) -> Self {
        let webhook = Arc::new(webhook);
        Self::default()
            .with(
                TaskKind::Email,
                Arc::new(EmailExecutor::new(objects.clone())),
            )
            .with(TaskKind::Archive, Arc::new(ArchiveExecutor::new(objects)))
            .with(
                TaskKind::Notification,
                Arc::new(NotificationExecutor::new(webhook.clone())),
            )
            .with(TaskKind::Webhook, webhook)
            .with(TaskKind::Noop, Arc::new(NoopExecutor))
    }

    /// Registers (or replaces) the executor of `kind`.
    pub fn with(mut self, kind: TaskKind, executor: Arc<dyn Executor>) -> Self {
        self.executors.insert(kind, executor);
        self
    }

    pub fn get(&self, kind: TaskKind) -> Option<&Arc<dyn Executor>> {
        self.executors.get(&kind)
    }
}

/// A payload that does not parse as its kind requires: it was validated at creation, so only
/// a manual edit or a bug leads here, and another attempt cannot help.
fn invalid_payload(e: impl std::fmt::Display) -> TaskError {
    TaskError::permanent("invalid_payload", e.to_string())
}
