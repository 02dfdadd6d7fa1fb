//! The task as stored, its events, and the error it records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::flow::{DeferReason, Priority};
use super::ids::{CorrelationId, TaskId, Tenant};
use super::kind::TaskKind;
use super::status::{Lifecycle, Status};
use super::submission::Source;

/// A task as the store holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    pub id: TaskId,
    pub tenant: Tenant,
    pub kind: TaskKind,
    pub payload: Value,
    pub status: Status,
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_after: DateTime<Utc>,
    pub lease_until: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    pub correlation_id: CorrelationId,
    pub source: Source,
    pub priority: Priority,
    /// Why the worker last deferred it (a limit it was over), until a claim takes it.
    pub deferred_reason: Option<DeferReason>,
    pub result: Option<Value>,
    pub last_error: Option<TaskError>,
    pub enqueued_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl Task {
    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle {
            status: self.status,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
        }
    }
}

/// Whether another attempt may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    Retryable,
    Permanent,
}

/// The error an attempt ended with: its class, a short machine-readable code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    pub class: ErrorClass,
    pub code: String,
    pub message: String,
}

impl TaskError {
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Retryable,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }
}

/// One row of a task's transition history. `from` is `None` for the creation event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskEvent {
    pub id: i64,
    pub task_id: TaskId,
    pub from: Option<Status>,
    pub to: Status,
    pub at: DateTime<Utc>,
    pub attempt: u32,
    pub error: Option<TaskError>,
    pub correlation_id: CorrelationId,
}
