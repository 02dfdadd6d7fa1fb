//! Request and response bodies, and their OpenAPI schemas.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use tms::domain::webhook::{
    HEADER_NAME_PATTERN, HEADER_VALUE_PATTERN, RESERVED_HEADERS, URL_MAX_LEN, URL_PATTERN,
};
use tms::{
    parse_rfc3339, DeferReason, ErrorClass, Priority, Source, Status, Submission, Task, TaskError,
    TaskEvent, TaskKind, MAX_ATTEMPTS_LIMIT, WEBHOOK_METHODS,
};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use crate::problem::Problem;

/// Deserializes a field that may be absent but, when present, is not null.
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A non-negative whole number, also when written with a zero fraction (`3.0`), as JSON
/// Schema's `integer`.
pub(crate) fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    // The largest float every smaller whole number of which is exact (2^53).
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let number = serde_json::Number::deserialize(d)?;
    number
        .as_u64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=EXACT).contains(f))
                .map(|f| f as u64)
        })
        .ok_or_else(|| serde::de::Error::custom(format!("must be a whole number, got {number}")))
}

/// [`whole_number`] within `u32`, for an optional field.
pub(crate) fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = whole_number(d)?;
    u32::try_from(n)
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("must be a whole number, got {n}")))
}

/// An RFC 3339 date-time, checked strictly (`T` separator, seconds and offset required).
pub(crate) fn rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let raw = String::deserialize(d)?;
    parse_rfc3339(&raw).map(Some).ok_or_else(|| {
        serde::de::Error::custom("must be an RFC 3339 date-time such as 2026-01-31T09:30:00Z")
    })
}

/// `POST /v1/tasks`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    pub kind: String,
    pub payload: Value,
    #[serde(default, deserialize_with = "integer")]
    pub max_attempts: Option<u32>,
    #[serde(default, deserialize_with = "rfc3339")]
    pub run_after: Option<DateTime<Utc>>,
    /// `high` runs on the high-priority work queue, ahead of a backlog of `normal` tasks.
    #[serde(default)]
    pub priority: Priority,
}

impl CreateTaskRequest {
    pub fn into_submission(self, idempotency_key: Option<String>) -> Submission {
        Submission {
            kind: self.kind,
            payload: self.payload,
            idempotency_key,
            run_after: self.run_after,
            max_attempts: self.max_attempts,
            priority: self.priority,
        }
    }
}

/// One task of `POST /v1/tasks/batch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    pub kind: String,
    pub payload: Value,
    #[serde(default, deserialize_with = "integer")]
    pub max_attempts: Option<u32>,
    #[serde(default, deserialize_with = "rfc3339")]
    pub run_after: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "present")]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub priority: Priority,
}

impl BatchItem {
    pub fn into_submission(self) -> Submission {
        Submission {
            kind: self.kind,
            payload: self.payload,
            idempotency_key: self.idempotency_key,
            run_after: self.run_after,
            max_attempts: self.max_attempts,
            priority: self.priority,
        }
    }
}

pub const BATCH_MAX: usize = 100;

/// `POST /v1/tasks/batch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub tasks: Vec<BatchItem>,
}

/// Each kind, what it does, and the JSON Schema of its payload.
fn kind_payloads() -> [(&'static str, &'static str, Value); 4] {
    let email = json!({"type": "string", "format": "email", "maxLength": 254});
    let reserved: Vec<String> = RESERVED_HEADERS
        .iter()
        .flat_map(|h| {
            let title: String = h
                .split('-')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("-");
            [h.to_string(), title, h.to_ascii_uppercase()]
        })
        .collect();
    [
        (
            "email",
            "Stores the email as JSON in the data bucket under emails/YYYY/MM/DD/; with deliver, then sends it through Amazon SES from the deployment's identity.",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["sender", "recipient", "subject", "body"],
                "properties": {
                    "sender": email, "recipient": email,
                    "subject": {"type": "string", "minLength": 1, "maxLength": 998},
                    "body": {"type": "string"},
                    "deliver": {
                        "type": "boolean",
                        "description": "Also send the message (plain text) through Amazon SES v2, after storing it; the SES message id joins the result as message_id. Absent: the deployment's default (TMS_EMAIL_DELIVER, false unless set). A deployment without a sending identity (TMS_EMAIL_IDENTITY) fails such a task for good."
                    }
                }
            }),
        ),
        (
            "webhook",
            "Calls the URL (https; private, loopback, link-local and metadata addresses refused) with Idempotency-Key: <task id>.",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["url"],
                "properties": {
                    "url": {"type": "string", "format": "uri", "pattern": URL_PATTERN, "maxLength": URL_MAX_LEN},
                    "method": {"type": "string", "enum": WEBHOOK_METHODS, "default": "POST"},
                    "headers": {
                        "type": "object",
                        "propertyNames": {"pattern": HEADER_NAME_PATTERN, "not": {"enum": reserved}},
                        "additionalProperties": {"type": "string", "pattern": HEADER_VALUE_PATTERN, "maxLength": 8192}
                    },
                    "body": {"description": "Any JSON value, sent as the JSON request body."}
                }
            }),
        ),
        (
            "archive",
            "Stores the payload as JSON in the data bucket under archive/{tenant}/YYYY/MM/DD/{task_id}.json.",
            json!({
                "type": "object",
                "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 255}}
            }),
        ),
        ("noop", "Succeeds at once.", json!({"type": "object"})),
    ]
}

/// The component name of a kind's payload schema: `EmailPayload`, `WebhookPayload`, ...
pub(crate) fn payload_name(kind: &str) -> String {
    let mut chars = kind.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase().to_string());
    format!("{}{}Payload", first.unwrap_or_default(), chars.as_str())
}

/// The payload schemas, by component name. The create and the batch item refer to them: a
/// client generator then makes one model per payload, where inline copies in both bodies made
/// openapi-python-client drop `POST /v1/tasks` for duplicate model names.
pub fn payload_schemas() -> Vec<(String, Value)> {
    kind_payloads()
        .into_iter()
        .map(|(kind, _, payload)| (payload_name(kind), payload))
        .collect()
}

/// The JSON Schema of a submission: one branch per kind, each with its payload rules, so the
/// document states exactly what the validation accepts.
pub fn submission_schema(batch_item: bool) -> Value {
    let branches: Vec<Value> = kind_payloads()
        .into_iter()
        .map(|(kind, description, _)| {
            let mut properties = json!({
                "kind": {"type": "string", "const": kind},
                "payload": {"$ref": format!("#/components/schemas/{}", payload_name(kind))},
                "max_attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS_LIMIT, "default": 5},
                "run_after": {
                    "type": "string", "format": "date-time", "pattern": tms::RUN_AFTER_PATTERN,
                    "description": format!("Not before this instant (RFC 3339), from {} to {}.", tms::RUN_AFTER_EARLIEST, tms::RUN_AFTER_LATEST)
                },
                "priority": {
                    "type": "string", "enum": Priority::ALL.map(|p| p.as_str()), "default": "normal",
                    "description": "high: its work messages travel on the high-priority work queue, ahead of a backlog of normal tasks."
                }
            });
            if batch_item {
                properties["idempotency_key"] = json!({
                    "type": "string", "pattern": tms::IDEMPOTENCY_KEY_PATTERN,
                    "description": "Makes the create idempotent per tenant."
                });
            }
            // Distinct titles: a generator names a branch's model after its title.
            let title = if batch_item {
                format!("{kind} batch item")
            } else {
                format!("{kind} task")
            };
            json!({
                "title": title,
                "description": description,
                "type": "object",
                "additionalProperties": false,
                "required": ["kind", "payload"],
                "properties": properties
            })
        })
        .collect();
    json!({
        "description": "A task to create. Strings must not contain NUL characters; the payload is at most 256 KiB as JSON.",
        "oneOf": branches
    })
}

/// utoipa's schema model has no `const`, `not` or `propertyNames`, so these bodies are
/// registered with a placeholder and their JSON Schema is set by [`crate::openapi::document`].
fn placeholder() -> RefOr<Schema> {
    utoipa::openapi::ObjectBuilder::new().into()
}

impl PartialSchema for CreateTaskRequest {
    fn schema() -> RefOr<Schema> {
        placeholder()
    }
}

impl ToSchema for CreateTaskRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CreateTask")
    }
}

impl PartialSchema for BatchItem {
    fn schema() -> RefOr<Schema> {
        placeholder()
    }
}

impl ToSchema for BatchItem {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("BatchTask")
    }
}

pub fn batch_schema() -> Value {
    json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["tasks"],
            "properties": {
                "tasks": {
                    "type": "array", "minItems": 1, "maxItems": BATCH_MAX,
                "items": {"$ref": "#/components/schemas/BatchTask"}
            }
        }
    })
}

impl PartialSchema for BatchRequest {
    fn schema() -> RefOr<Schema> {
        placeholder()
    }
}

impl ToSchema for BatchRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("BatchCreate")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Status)]
pub enum StatusView {
    Pending,
    Running,
    Succeeded,
    Failed,
    Dead,
    Cancelled,
}

impl From<StatusView> for Status {
    fn from(s: StatusView) -> Self {
        match s {
            StatusView::Pending => Self::Pending,
            StatusView::Running => Self::Running,
            StatusView::Succeeded => Self::Succeeded,
            StatusView::Failed => Self::Failed,
            StatusView::Dead => Self::Dead,
            StatusView::Cancelled => Self::Cancelled,
        }
    }
}

impl From<Status> for StatusView {
    fn from(s: Status) -> Self {
        match s {
            Status::Pending => Self::Pending,
            Status::Running => Self::Running,
            Status::Succeeded => Self::Succeeded,
            Status::Failed => Self::Failed,
            Status::Dead => Self::Dead,
            Status::Cancelled => Self::Cancelled,
        }
    }
}

/// Every kind a task may have (`notification`: a subscription's delivery, created by TMS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Kind)]
pub enum KindView {
    Email,
    Webhook,
    Archive,
    Noop,
    Notification,
}

impl From<KindView> for TaskKind {
    fn from(k: KindView) -> Self {
        match k {
            KindView::Email => Self::Email,
            KindView::Webhook => Self::Webhook,
            KindView::Archive => Self::Archive,
            KindView::Noop => Self::Noop,
            KindView::Notification => Self::Notification,
        }
    }
}

impl From<TaskKind> for KindView {
    fn from(k: TaskKind) -> Self {
        match k {
            TaskKind::Email => Self::Email,
            TaskKind::Webhook => Self::Webhook,
            TaskKind::Archive => Self::Archive,
            TaskKind::Noop => Self::Noop,
            TaskKind::Notification => Self::Notification,
        }
    }
}

/// The kinds clients create tasks of (in templates of triggers and schedules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = NewTaskKind)]
pub enum NewKindView {
    Email,
    Webhook,
    Archive,
    Noop,
}

impl From<NewKindView> for TaskKind {
    fn from(k: NewKindView) -> Self {
        match k {
            NewKindView::Email => Self::Email,
            NewKindView::Webhook => Self::Webhook,
            NewKindView::Archive => Self::Archive,
            NewKindView::Noop => Self::Noop,
        }
    }
}

impl NewKindView {
    /// The kind of a template, which is never `notification`.
    pub fn of(kind: TaskKind) -> Option<Self> {
        match kind {
            TaskKind::Email => Some(Self::Email),
            TaskKind::Webhook => Some(Self::Webhook),
            TaskKind::Archive => Some(Self::Archive),
            TaskKind::Noop => Some(Self::Noop),
            TaskKind::Notification => None,
        }
    }
}

/// Where a task came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
#[schema(as = Source)]
pub enum SourceView {
    Api,
    Import {
        import_id: Uuid,
        line: u64,
    },
    Queue,
    Schedule {
        schedule_id: Uuid,
        fire_time: DateTime<Utc>,
    },
    Event {
        trigger_id: Uuid,
        event_id: String,
    },
    /// A delivery of lifecycle event `event_id` (its subscription is in the payload).
    Subscription {
        event_id: String,
    },
}

impl From<&Source> for SourceView {
    fn from(s: &Source) -> Self {
        match s {
            Source::Api => Self::Api,
            Source::Queue => Self::Queue,
            Source::Import { import_id, line } => Self::Import {
                import_id: *import_id.as_uuid(),
                line: *line,
            },
            Source::Schedule {
                schedule_id,
                fire_time,
            } => Self::Schedule {
                schedule_id: *schedule_id.as_uuid(),
                fire_time: *fire_time,
            },
            Source::Event {
                trigger_id,
                event_id,
            } => Self::Event {
                trigger_id: *trigger_id.as_uuid(),
                event_id: event_id.clone(),
            },
            Source::Subscription { event_id } => Self::Subscription {
                event_id: event_id.clone(),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClassView {
    Retryable,
    Permanent,
}

/// Which work queue a task's messages travel on: `high` tasks have their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Priority)]
pub enum PriorityView {
    Normal,
    High,
}

impl From<Priority> for PriorityView {
    fn from(p: Priority) -> Self {
        match p {
            Priority::Normal => Self::Normal,
            Priority::High => Self::High,
        }
    }
}

/// The limit a deferred task was over: the tenant's tasks running at once or its rate, those
/// of the task's kind, or the rate of calls to its webhook's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DeferReason)]
pub enum DeferReasonView {
    TenantConcurrency,
    TenantRate,
    KindConcurrency,
    KindRate,
    HostRate,
}

impl From<DeferReason> for DeferReasonView {
    fn from(r: DeferReason) -> Self {
        match r {
            DeferReason::TenantConcurrency => Self::TenantConcurrency,
            DeferReason::TenantRate => Self::TenantRate,
            DeferReason::KindConcurrency => Self::KindConcurrency,
            DeferReason::KindRate => Self::KindRate,
            DeferReason::HostRate => Self::HostRate,
        }
    }
}

/// The error an attempt ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = TaskError)]
pub struct ErrorView {
    pub class: ErrorClassView,
    pub code: String,
    pub message: String,
}

impl From<&TaskError> for ErrorView {
    fn from(e: &TaskError) -> Self {
        Self {
            class: match e.class {
                ErrorClass::Retryable => ErrorClassView::Retryable,
                ErrorClass::Permanent => ErrorClassView::Permanent,
            },
            code: e.code.clone(),
            message: e.message.clone(),
        }
    }
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = Task)]
pub struct TaskView {
    pub id: Uuid,
    /// The tenant that owns it.
    pub tenant: String,
    pub kind: KindView,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub status: StatusView,
    pub attempts: u32,
    pub max_attempts: u32,
    /// Not before this instant (RFC 3339, UTC).
    pub run_after: String,
    pub lease_until: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    pub correlation_id: String,
    pub source: SourceView,
    pub priority: PriorityView,
    /// Why flow control last deferred it (a limit it was over), until a claim takes it; its
    /// `run_after` is when the limit should let it run.
    pub deferred_reason: Option<DeferReasonView>,
    /// The executor's result, once succeeded.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub last_error: Option<ErrorView>,
    /// When its work message was last sent.
    pub enqueued_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Task> for TaskView {
    fn from(t: &Task) -> Self {
        Self {
            id: *t.id.as_uuid(),
            tenant: t.tenant.to_string(),
            kind: t.kind.into(),
            payload: t.payload.clone(),
            status: t.status.into(),
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            run_after: t
                .run_after
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            lease_until: t.lease_until,
            idempotency_key: t.idempotency_key.clone(),
            correlation_id: t.correlation_id.to_string(),
            source: (&t.source).into(),
            priority: t.priority.into(),
            deferred_reason: t.deferred_reason.map(Into::into),
            result: t.result.clone(),
            last_error: t.last_error.as_ref().map(Into::into),
            enqueued_at: t.enqueued_at,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// One page of tasks, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskPage {
    pub items: Vec<TaskView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One transition of a task.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = TaskEvent)]
pub struct EventView {
    pub id: i64,
    pub task_id: Uuid,
    /// Null for the creation event.
    pub from: Option<StatusView>,
    pub to: StatusView,
    pub at: DateTime<Utc>,
    pub attempt: u32,
    pub error: Option<ErrorView>,
    pub correlation_id: String,
}

impl From<&TaskEvent> for EventView {
    fn from(e: &TaskEvent) -> Self {
        Self {
            id: e.id,
            task_id: *e.task_id.as_uuid(),
            from: e.from.map(Into::into),
            to: e.to.into(),
            at: e.at,
            attempt: e.attempt,
            error: e.error.as_ref().map(Into::into),
            correlation_id: e.correlation_id.to_string(),
        }
    }
}

/// A task's transitions, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventList {
    pub items: Vec<EventView>,
}

/// The outcome of one task of a batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResult {
    /// Position in the request's `tasks`.
    pub index: usize,
    /// 202 created, 200 replayed (same idempotency key and body), 409 key reused with another body.
    pub status: u16,
    pub task: Option<TaskView>,
    pub error: Option<Problem>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchResult>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_rfc3339() {
        for ok in [
            "2026-01-31T09:30:00Z",
            "2026-01-31t09:30:00.123456z",
            "0001-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59-23:59",
        ] {
            assert!(parse_rfc3339(ok).is_some(), "{ok}");
        }
        for bad in [
            "2026-01-31 09:30:00Z",
            "2026-01-31T09:30Z",
            "2026-01-31T09:30:00",
            "2026-13-01T00:00:00Z",
            "2026-01-31T09:30:00.Z",
            "2026-01-31T09:30:00+0100",
            "tomorrow",
            "",
        ] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn max_attempts_is_a_json_schema_integer() {
        let parse = |v: &str| {
            serde_json::from_str::<CreateTaskRequest>(&format!(
                r#"{{"kind":"noop","payload":{{}},"max_attempts":{v}}}"#
            ))
        };
        assert_eq!(parse("3").unwrap().max_attempts, Some(3));
        assert_eq!(parse("3.0").unwrap().max_attempts, Some(3));
        for bad in ["3.5", "-1", "\"3\"", "1e20", "true"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn null_is_not_an_absent_optional_field() {
        let r: Result<CreateTaskRequest, _> =
            serde_json::from_str(r#"{"kind":"noop","payload":{},"max_attempts":null}"#);
        assert!(r.is_err());
        let r: CreateTaskRequest = serde_json::from_str(r#"{"kind":"noop","payload":{}}"#).unwrap();
        assert_eq!(r.max_attempts, None);
    }

    #[test]
    fn the_submission_schema_has_one_branch_per_kind() {
        let schema = submission_schema(true);
        let kinds: Vec<&str> = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["properties"]["kind"]["const"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["email", "webhook", "archive", "noop"]);
        assert!(schema["oneOf"][0]["properties"]["idempotency_key"].is_object());
        assert!(submission_schema(false)["oneOf"][0]["properties"]["idempotency_key"].is_null());
        assert_eq!(
            schema["oneOf"][1]["properties"]["payload"]["$ref"],
            "#/components/schemas/WebhookPayload"
        );
        let names: Vec<String> = payload_schemas().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "EmailPayload",
                "WebhookPayload",
                "ArchivePayload",
                "NoopPayload"
            ]
        );
    }

    #[test]
    fn the_email_payload_schema_says_deliver_is_an_optional_boolean() {
        let (_, email) = payload_schemas().swap_remove(0);
        assert_eq!(email["properties"]["deliver"]["type"], "boolean");
        assert!(!email["required"]
            .as_array()
            .unwrap()
            .contains(&json!("deliver")));
    }
}

/// `POST /v1/tasks/cancel` and `POST /v1/tasks/redrive`: which tasks, how many at most, and
/// whether only to count them.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// Operators: only this tenant's tasks (every tenant's without it). Others: their own.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub tenant: Option<String>,
    /// Only tasks in this status. Cancel applies to `pending` and `failed` tasks, redrive to
    /// `dead` ones: a filter on another status covers no task.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub status: Option<StatusView>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub kind: Option<KindView>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub source: Option<SourceKindView>,
    /// Created at or after this instant (RFC 3339).
    #[serde(default, deserialize_with = "rfc3339")]
    #[schema(nullable = false, value_type = Option<String>, format = DateTime)]
    pub created_after: Option<DateTime<Utc>>,
    /// Created before this instant (RFC 3339).
    #[serde(default, deserialize_with = "rfc3339")]
    #[schema(nullable = false, value_type = Option<String>, format = DateTime)]
    pub created_before: Option<DateTime<Utc>>,
    /// Text the idempotency key or the correlation id contains.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, max_length = 256)]
    pub q: Option<String>,
    /// At most this many tasks change (the oldest first); call again for more.
    #[serde(default, deserialize_with = "integer")]
    #[schema(nullable = false, minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<u32>,
    /// Count the tasks the action would change, and change none.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a bulk action changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BulkResponse {
    /// With `dry_run`: how many tasks the action applies to now (all of them, beyond `limit`).
    pub matched: Option<u64>,
    /// How many tasks changed (0 with `dry_run`).
    pub changed: u64,
}

/// Where tasks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = SourceKind)]
pub enum SourceKindView {
    Api,
    Import,
    Queue,
    Schedule,
    Event,
    Subscription,
}

impl From<SourceKindView> for tms::SourceKind {
    fn from(s: SourceKindView) -> Self {
        match s {
            SourceKindView::Api => Self::Api,
            SourceKindView::Import => Self::Import,
            SourceKindView::Queue => Self::Queue,
            SourceKindView::Schedule => Self::Schedule,
            SourceKindView::Event => Self::Event,
            SourceKindView::Subscription => Self::Subscription,
        }
    }
}

/// Tasks of one status and kind.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CountView {
    pub status: StatusView,
    pub kind: String,
    pub count: u64,
}

/// One minute of the last hour.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MinuteView {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    pub succeeded: u64,
    /// Attempts that failed (retried or dead).
    pub failed: u64,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsView {
    /// Tasks per status and kind (pairs without tasks left out).
    pub counts: Vec<CountView>,
    /// Tasks per status, every status.
    #[schema(value_type = Object)]
    pub by_status: serde_json::Map<String, Value>,
    /// Successes and failed attempts per minute over the last hour, oldest first (minutes
    /// without any left out).
    pub per_minute: Vec<MinuteView>,
    /// Created → succeeded, of the tasks that succeeded in the last hour.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    /// How long the most overdue due pending task has waited.
    pub oldest_pending_seconds: Option<f64>,
    pub dead: u64,
    /// Tasks waiting because flow control deferred them, per limit they were over.
    pub deferred: DeferredView,
    /// About how many work messages wait in the work queues (normal and high priority), when
    /// the API may read them.
    pub queue_waiting: Option<u64>,
}

/// Tasks waiting (pending, failed or being claimed) because a limit deferred them, per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeferredView {
    /// Over the tenant's limit of tasks running at once.
    pub tenant_concurrency: u64,
    /// Over the tenant's rate.
    pub tenant_rate: u64,
    /// Over the limit of tasks of their kind running at once.
    pub kind_concurrency: u64,
    /// Over the rate of their kind.
    pub kind_rate: u64,
    /// Over the rate of calls to their webhook's host.
    pub host_rate: u64,
}

impl DeferredView {
    pub fn of(counts: &[(DeferReason, u64)]) -> Self {
        let mut view = Self::default();
        for (reason, n) in counts {
            *view.count_mut(*reason) += n;
        }
        view
    }

    fn count_mut(&mut self, reason: DeferReason) -> &mut u64 {
        match reason {
            DeferReason::TenantConcurrency => &mut self.tenant_concurrency,
            DeferReason::TenantRate => &mut self.tenant_rate,
            DeferReason::KindConcurrency => &mut self.kind_concurrency,
            DeferReason::KindRate => &mut self.kind_rate,
            DeferReason::HostRate => &mut self.host_rate,
        }
    }

    /// Each reason with its count, in [`DeferReason::ALL`]'s order.
    pub fn counts(&self) -> Vec<(DeferReason, u64)> {
        let mut view = *self;
        DeferReason::ALL
            .into_iter()
            .map(|r| (r, *view.count_mut(r)))
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.counts().iter().map(|(_, n)| n).sum()
    }
}
