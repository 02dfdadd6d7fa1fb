//! Lifecycle events: what TMS publishes to the deployment's event bus when a task ends
//! (`succeeded`, `dead`, `cancelled`) or an import does (`completed`, `failed`). The detail
//! names the tenant and the subject, never a task's payload; `event_id` is the event's stable
//! id, the same however often it is published.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::ids::Tenant;
use super::kind::TaskKind;
use super::status::Status;
use super::task::{Task, TaskError};
use super::trigger::Event;

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

impl Notification {
    /// The lifecycle event of `task` ending `to` (`succeeded`, `dead` or `cancelled`) with
    /// `result` or `error`, under a new stable id; `None` for any other status and for the
    /// deliveries of notifications themselves. The detail has no payload; a field the task
    /// lacks (a result, an error) is left out.
    pub fn task_ended(
        task: &Task,
        to: Status,
        result: Option<&Value>,
        error: Option<&TaskError>,
    ) -> Option<Self> {
        let detail_type = match to {
            Status::Succeeded => TASK_SUCCEEDED,
            Status::Dead => TASK_DEAD,
            Status::Cancelled => TASK_CANCELLED,
            _ => return None,
        };
        if task.kind == TaskKind::Notification {
            return None;
        }
        let id = Uuid::new_v4();
        let mut detail = Map::new();
        detail.insert("event_id".into(), json!(id));
        detail.insert("tenant".into(), json!(task.tenant.as_str()));
        detail.insert("task_id".into(), json!(task.id));
        detail.insert("kind".into(), json!(task.kind.as_str()));
        detail.insert("status".into(), json!(to.as_str()));
        detail.insert("correlation_id".into(), json!(task.correlation_id.as_str()));
        detail.insert("attempts".into(), json!(task.attempts));
        if let Some(result) = result.filter(|r| !r.is_null()) {
            detail.insert("result".into(), result.clone());
        }
        if let Some(error) = error {
            detail.insert("error".into(), json!(error));
        }
        Some(Self {
            id,
            tenant: task.tenant.clone(),
            detail_type: detail_type.to_owned(),
            detail: Value::Object(detail),
            subject: *task.id.as_uuid(),
            created_at: Utc::now(),
        })
    }

    /// The lifecycle event an EventBridge event of source [`EVENT_SOURCE`] carries: its stable
    /// id, tenant and subject are read from the detail (the envelope's own id changes each time
    /// the event is published).
    ///
    /// # Errors
    /// What the event lacks to be one of TMS's lifecycle events.
    pub fn from_event(event: &Event) -> Result<Self, String> {
        let invalid = |what: &str| format!("invalid lifecycle event: {what}");
        if !EVENT_TYPES.contains(&event.detail_type.as_str()) {
            return Err(invalid(&format!(
                "detail-type {:?} is not one of TMS's",
                event.detail_type
            )));
        }
        let uuid_at = |key: &str| {
            event.detail[key]
                .as_str()
                .and_then(|raw| Uuid::parse_str(raw).ok())
        };
        let id = uuid_at("event_id").ok_or_else(|| invalid("detail.event_id is not a UUID"))?;
        let tenant = event.detail["tenant"]
            .as_str()
            .and_then(|t| Tenant::parse(t).ok())
            .ok_or_else(|| invalid("detail.tenant is not a tenant"))?;
        let subject = uuid_at("task_id")
            .or_else(|| uuid_at("import_id"))
            .ok_or_else(|| invalid("detail names no task_id or import_id"))?;
        Ok(Self {
            id,
            tenant,
            detail_type: event.detail_type.clone(),
            detail: event.detail.clone(),
            subject,
            created_at: event.time.unwrap_or_else(Utc::now),
        })
    }

    /// The event as a webhook subscription receives it: the Standard Webhooks payload
    /// `{"type", "timestamp", "data"}`, `data` being the detail.
    pub fn webhook_body(&self) -> Value {
        json!({
            "type": self.detail_type,
            "timestamp": self.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": self.detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(detail: Value) -> Event {
        Event::parse(&json!({
            "version": "0", "id": "envelope-1", "detail-type": TASK_SUCCEEDED, "source": "tms",
            "account": "111122223333", "time": "2026-12-06T10:00:00Z", "region": "us-east-1",
            "resources": [], "detail": detail
        }))
        .unwrap()
        .unwrap()
    }

    #[test]
    fn a_lifecycle_event_is_read_from_its_detail() {
        let id = Uuid::now_v7();
        let task = Uuid::now_v7();
        let n = Notification::from_event(&event(json!({
            "event_id": id, "tenant": "acme", "task_id": task, "kind": "noop", "status": "succeeded"
        })))
        .unwrap();
        assert_eq!((n.id, n.subject, n.tenant.as_str()), (id, task, "acme"));
        assert_eq!(
            n.webhook_body(),
            json!({"type": "Task Succeeded", "timestamp": "2026-12-06T10:00:00.000Z",
                   "data": n.detail})
        );
    }

    #[test]
    fn an_event_without_its_stable_id_tenant_or_subject_is_refused() {
        let task = Uuid::now_v7();
        for (detail, why) in [
            (json!({"tenant": "acme", "task_id": task}), "event_id"),
            (
                json!({"event_id": Uuid::now_v7(), "task_id": task}),
                "tenant",
            ),
            (
                json!({"event_id": Uuid::now_v7(), "tenant": "a/b", "task_id": task}),
                "tenant",
            ),
            (
                json!({"event_id": Uuid::now_v7(), "tenant": "acme"}),
                "task_id",
            ),
        ] {
            let e = Notification::from_event(&event(detail)).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let mut other = event(json!({}));
        other.detail_type = "Task Started".into();
        assert!(Notification::from_event(&other)
            .unwrap_err()
            .contains("detail-type"));
    }
}
