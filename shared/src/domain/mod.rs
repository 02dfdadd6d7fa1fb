//! The task domain: identifiers, kinds, the lifecycle state machine, validation and backoff.
//! Pure Rust: nothing here performs I/O or knows about AWS, Lambda or PostgreSQL.

mod access;
mod backoff;
pub mod email;
mod flow;
mod ids;
mod import;
mod kind;
mod message;
pub mod notification;
mod schedule;
mod status;
mod submission;
pub mod subscription;
mod task;
pub mod trigger;
mod validation;
pub mod webhook;

pub use access::{AccessError, Caller, Role, Scope};
pub use backoff::Backoff;
pub use flow::{
    is_limit_host, webhook_host, DeferReason, KeyLimit, LimitKey, Limits, Priority, Rate,
    BURST_LIMIT, HOSTS_LIMIT, HOST_PATTERN, MAX_RUNNING_LIMIT, RATE_LIMIT,
};
pub use ids::{CorrelationId, ImportId, ScheduleId, SubscriptionId, TaskId, Tenant, TriggerId};
pub use import::{
    import_row_key, Import, ImportCounts, ImportFormat, ImportKey, ImportKeyError, ImportLimits,
    ImportRow, ImportStatus, IMPORTS_PREFIX, REPORTS_PREFIX,
};
pub use kind::TaskKind;
pub use message::{WorkMessage, CORRELATION_ATTRIBUTE, PRIORITY_ATTRIBUTE};
pub use notification::Notification;
pub use schedule::{
    expression_pattern, Expression, MissedPolicy, Patched, Run, Schedule, ScheduleInput,
    SchedulePatch, TaskTemplate, TaskTemplateInput, Timezone, Timing, CATCH_UP_LIMIT,
    EXPRESSION_MAX, PREVIEW_LIMIT, RATE_MAX, SCHEDULE_NAME_MAX, SCHEDULE_NAME_PATTERN, SKIP_GRACE,
};
pub use status::{Lifecycle, LifecycleEvent, Status, TransitionError, ALLOWED_TRANSITIONS};
pub use submission::{
    check_run_after, parse_rfc3339, validate_idempotency_key, NewTask, Source, SourceKind,
    Submission, SubmissionRules, DEFAULT_MAX_ATTEMPTS, IDEMPOTENCY_KEY_MAX,
    IDEMPOTENCY_KEY_PATTERN, MAX_ATTEMPTS_LIMIT, MAX_PAYLOAD_BYTES, RUN_AFTER_EARLIEST,
    RUN_AFTER_LATEST, RUN_AFTER_PATTERN,
};
pub use subscription::{
    Delivery, SigningKeys, SigningSecret, Subscription, SubscriptionFields, SubscriptionPatch,
    WebhookSigning,
};
pub use task::{ErrorClass, Task, TaskError, TaskEvent};
pub use trigger::{DetailMatch, Event, Trigger};
pub use validation::{
    validate_payload, EmailAddress, FieldError, ValidationErrors, WEBHOOK_METHODS,
};
