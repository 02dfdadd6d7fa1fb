//! Lifecycle events: what TMS publishes to the deployment's event bus when a task ends
//! (`succeeded`, `dead`, `cancelled`) or an import does (`completed`, `failed`). The detail
//! names the tenant and the subject, never a task's payload; `event_id` is the event's stable
//! id, the same however often it is published.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::ids::Tenant;

/// The `source` of every lifecycle event.
pub const EVENT_SOURCE: &str = "tms";

pub const TASK_SUCCEEDED: &str = "Task Succeeded";
pub const TASK_DEAD: &str = "Task Dead";
pub const TASK_CANCELLED: &str = "Task Cancelled";
pub const IMPORT_COMPLETED: &str = "Import Completed";
pub const IMPORT_FAILED: &str = "Import Failed";

/// Every lifecycle event's detail-type.
pub const EVENT_TYPES: [&str; 5] = [
    TASK_SUCCEEDED,
    TASK_DEAD,
    TASK_CANCELLED,
    IMPORT_COMPLETED,
    IMPORT_FAILED,
];

/// One lifecycle event, recorded with its transition and published after commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The stable id (also `detail.event_id`).
    pub id: Uuid,
    pub tenant: Tenant,
    pub detail_type: String,
    /// What the event says: tenant, task or import id, kind, status, correlation id, attempts,
    /// result or error, counts; `event_id`.
    pub detail: Value,
    /// The task or import it is about.
    pub subject: Uuid,
    pub created_at: DateTime<Utc>,
}
