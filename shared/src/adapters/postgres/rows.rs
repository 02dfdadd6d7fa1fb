//! Reading tasks and events out of rows.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::domain::{
    CorrelationId, DeferReason, ImportId, Priority, ScheduleId, Source, Status, Task, TaskError,
    TaskEvent, TaskId, TaskKind, Tenant, TriggerId,
};
use crate::ports::StoreError;

/// The task columns; [`task_at`] reads them by their position in this list.
pub(crate) const TASK_COLUMNS: [&str; 26] = [
    "id",
    "tenant",
    "kind",
    "payload",
    "status",
    "attempts",
    "max_attempts",
    "run_after",
    "lease_until",
    "idempotency_key",
    "correlation_id",
    "source",
    "import_id",
    "import_line",
    "schedule_id",
    "fire_time",
    "trigger_id",
    "event_id",
    "priority",
    "deferred_reason",
    "result",
    "last_error",
    "enqueued_at",
    "created_at",
    "updated_at",
    "version",
];

/// `id, tenant, ...` optionally prefixed by a table alias.
pub(crate) fn task_columns(alias: Option<&str>) -> String {
    TASK_COLUMNS
        .iter()
        .map(|c| match alias {
            Some(a) => format!("{a}.{c}"),
            None => (*c).to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns a task's source fills besides `source` itself (the others are null).
#[derive(Debug, Default)]
pub(crate) struct SourceColumns<'a> {
    pub import_id: Option<Uuid>,
    pub import_line: Option<i64>,
    pub schedule_id: Option<Uuid>,
    pub fire_time: Option<DateTime<Utc>>,
    pub trigger_id: Option<Uuid>,
    pub event_id: Option<&'a str>,
}

impl<'a> SourceColumns<'a> {
    pub(crate) fn of(source: &'a Source) -> Self {
        match source {
            Source::Api | Source::Queue => Self::default(),
            Source::Import { import_id, line } => Self {
                import_id: Some(*import_id.as_uuid()),
                import_line: i64::try_from(*line).ok(),
                ..Self::default()
            },
            Source::Schedule {
                schedule_id,
                fire_time,
            } => Self {
                schedule_id: Some(*schedule_id.as_uuid()),
                fire_time: Some(*fire_time),
                ..Self::default()
            },
            Source::Event {
                trigger_id,
                event_id,
            } => Self {
                trigger_id: Some(*trigger_id.as_uuid()),
                event_id: Some(event_id),
                ..Self::default()
            },
            Source::Subscription { event_id } => Self {
                event_id: Some(event_id),
                ..Self::default()
            },
        }
    }
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    col: &str,
) -> Result<T, StoreError> {
    row.try_get(col).map_err(|e| corrupt(col, e))
}

/// Where each of [`TASK_COLUMNS`] is in a result: found once per result, not once per value
/// (a lookup by name compares it with every column's name; 20 of them, for each of a claimed
/// batch's 100 rows, cost more than decoding the values).
pub(crate) struct TaskColumns([usize; TASK_COLUMNS.len()]);

impl TaskColumns {
    pub(crate) fn of(row: &Row) -> Result<Self, StoreError> {
        let mut at = [0; TASK_COLUMNS.len()];
        for (slot, name) in at.iter_mut().zip(TASK_COLUMNS) {
            *slot = column(row, name)?;
        }
        Ok(Self(at))
    }

    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        &self,
        row: &'a Row,
        column: usize,
    ) -> Result<T, StoreError> {
        row.try_get(self.0[column])
            .map_err(|e| corrupt(TASK_COLUMNS[column], e))
    }
}

/// Where the column `name` is in `row`'s result.
pub(crate) fn column(row: &Row, name: &str) -> Result<usize, StoreError> {
    row.columns()
        .iter()
        .position(|c| c.name() == name)
        .ok_or_else(|| corrupt(name, "not in the result"))
}

pub(crate) fn status_of(raw: &str) -> Result<Status, StoreError> {
    Status::parse(raw).map_err(|e| corrupt("status", e))
}

fn task_error(value: Option<Value>) -> Result<Option<TaskError>, StoreError> {
    value
        .map(|v| serde_json::from_value(v).map_err(|e| corrupt("error", e)))
        .transpose()
}

fn count(raw: i32, col: &str) -> Result<u32, StoreError> {
    u32::try_from(raw).map_err(|e| corrupt(col, e))
}

pub(crate) fn task_from_row(row: &Row) -> Result<Task, StoreError> {
    task_at(row, &TaskColumns::of(row)?)
}

/// Every row of a result as a task.
pub(crate) fn tasks_from_rows(rows: &[Row]) -> Result<Vec<Task>, StoreError> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let columns = TaskColumns::of(first)?;
    rows.iter().map(|row| task_at(row, &columns)).collect()
}

/// The task in `row`, whose columns are where `c` says.
pub(crate) fn task_at(row: &Row, c: &TaskColumns) -> Result<Task, StoreError> {
    // The positions in TASK_COLUMNS, in its order.
    let [
        id, tenant, kind, payload, status, attempts, max_attempts, run_after, lease_until,
        idempotency_key, correlation_id, source, import_id, import_line, schedule_id, fire_time,
        trigger_id, event_id, priority, deferred_reason, result, last_error, enqueued_at,
        created_at, updated_at, version,
    ]: [usize; TASK_COLUMNS.len()] = std::array::from_fn(|i| i);
    let source = match c.get::<&str>(row, source)? {
        "api" => Source::Api,
        "queue" => Source::Queue,
        "import" => Source::Import {
            import_id: ImportId::from_uuid(c.get::<Uuid>(row, import_id)?),
            line: u64::try_from(c.get::<i64>(row, import_line)?)
                .map_err(|e| corrupt("import_line", e))?,
        },
        "schedule" => Source::Schedule {
            schedule_id: ScheduleId::from_uuid(c.get::<Uuid>(row, schedule_id)?),
            fire_time: c.get(row, fire_time)?,
        },
        "event" => Source::Event {
            trigger_id: TriggerId::from_uuid(c.get::<Uuid>(row, trigger_id)?),
            event_id: c.get(row, event_id)?,
        },
        "subscription" => Source::Subscription {
            event_id: c.get(row, event_id)?,
        },
        other => return Err(corrupt("source", other)),
    };
    Ok(Task {
        id: TaskId::from_uuid(c.get(row, id)?),
        tenant: Tenant::parse(c.get(row, tenant)?).map_err(|e| corrupt("tenant", e))?,
        kind: TaskKind::parse(c.get(row, kind)?).map_err(|e| corrupt("kind", e))?,
        payload: c.get(row, payload)?,
        status: status_of(c.get(row, status)?)?,
        attempts: count(c.get(row, attempts)?, "attempts")?,
        max_attempts: count(c.get(row, max_attempts)?, "max_attempts")?,
        run_after: c.get(row, run_after)?,
        lease_until: c.get(row, lease_until)?,
        idempotency_key: c.get(row, idempotency_key)?,
        correlation_id: CorrelationId::parse(c.get(row, correlation_id)?)
            .map_err(|e| corrupt("correlation_id", e))?,
        source,
        priority: Priority::parse(c.get(row, priority)?).map_err(|e| corrupt("priority", e))?,
        deferred_reason: c
            .get::<Option<&str>>(row, deferred_reason)?
            .map(|r| DeferReason::parse(r).ok_or_else(|| corrupt("deferred_reason", r)))
            .transpose()?,
        result: c.get(row, result)?,
        last_error: task_error(c.get(row, last_error)?)?,
        enqueued_at: c.get::<Option<DateTime<Utc>>>(row, enqueued_at)?,
        created_at: c.get(row, created_at)?,
        updated_at: c.get(row, updated_at)?,
        version: c.get(row, version)?,
    })
}

pub(crate) fn event_from_row(row: &Row) -> Result<TaskEvent, StoreError> {
    Ok(TaskEvent {
        id: get(row, "id")?,
        task_id: TaskId::from_uuid(get(row, "task_id")?),
        from: get::<Option<&str>>(row, "from_status")?
            .map(status_of)
            .transpose()?,
        to: status_of(get(row, "to_status")?)?,
        at: get(row, "at")?,
        attempt: count(get(row, "attempt")?, "attempt")?,
        error: task_error(get(row, "error")?)?,
        correlation_id: CorrelationId::parse(get(row, "correlation_id")?)
            .map_err(|e| corrupt("correlation_id", e))?,
    })
}
