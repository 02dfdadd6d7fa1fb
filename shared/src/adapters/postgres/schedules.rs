//! [`ScheduleStore`] on PostgreSQL: a tenant's schedules, and the `schedules` job's due batch
//! and bookkeeping, each one statement.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use super::error::store_error;
use super::PostgresStore;
use crate::domain::{
    Expression, MissedPolicy, Schedule, ScheduleId, Scope, TaskId, TaskKind, TaskTemplate, Tenant,
    Timezone, Timing,
};
use crate::ports::{
    CreateError, DueCursor, ScheduleRun, ScheduleStore, ScheduleUpdate, StoreError,
};

const COLUMNS: &str = "id, tenant, name, expression, timezone, kind, payload, max_attempts, \
     starts_at, ends_at, missed, catch_up_max, paused, next_run_at, last_fire_at, created_at, \
     updated_at, version";

const INSERT: &str = "INSERT INTO tms.schedules (id, tenant, name, expression, timezone, kind, \
     payload, max_attempts, starts_at, ends_at, missed, catch_up_max, paused, next_run_at, \
     created_at, updated_at, version) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, 1) \
     ON CONFLICT (tenant, name) DO NOTHING";

static GET: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM tms.schedules WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)"
    )
});

/// The definition, if the version is the one read; `next_run_at` only when rescheduled.
static UPDATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE tms.schedules SET name = $4, expression = $5, timezone = $6, kind = $7, \
            payload = $8, max_attempts = $9, starts_at = $10, ends_at = $11, missed = $12, \
            catch_up_max = $13, paused = $14, \
            next_run_at = CASE WHEN $15 THEN $16 ELSE next_run_at END, \
            updated_at = now(), version = version + 1 \
         WHERE id = $1 AND version = $2 AND ($3::text IS NULL OR tenant = $3) \
         RETURNING {COLUMNS}"
    )
});

const DELETE: &str =
    "DELETE FROM tms.schedules WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)";

// NOTE: the row locks end with the statement. What keeps a fire from being created twice is
// its idempotency key; the job's advisory lock keeps two runs from doing the same work, and the
// bookkeeping applies only to the version and next_run_at a run read. Skipping locked rows only
// steps around a schedule being changed at that moment (the next batch or run takes it).
static DUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM tms.schedules \
         WHERE NOT paused AND next_run_at IS NOT NULL AND next_run_at <= $1 \
           AND ($2::timestamptz IS NULL \
                OR (next_run_at >= $2 AND (next_run_at, id) > ($2, $3::uuid))) \
         ORDER BY next_run_at, id \
         LIMIT $4 \
         FOR UPDATE SKIP LOCKED"
    )
});

/// Each run where the schedule is still as the run read it, and the outbox markers of the
/// created tasks, in one statement.
const RECORD: &str = "WITH runs AS (
        SELECT * FROM unnest($1::uuid[], $2::int8[], $3::timestamptz[], $4::timestamptz[],
                             $5::timestamptz[])
            AS r(id, version, due_at, next_run_at, last_fire_at)
     ), recorded AS (
        UPDATE tms.schedules s SET next_run_at = r.next_run_at,
            last_fire_at = greatest(s.last_fire_at, r.last_fire_at)
        FROM runs r
        WHERE s.id = r.id AND s.version = r.version AND s.next_run_at = r.due_at
        RETURNING s.id
     ), marked AS (
        UPDATE tms.tasks SET enqueued_at = now()
        WHERE id = ANY($6::uuid[]) AND status = 'pending' AND enqueued_at IS NULL
        RETURNING id
     )
     SELECT (SELECT count(*) FROM recorded) AS n, (SELECT count(*) FROM marked) AS marked";

fn schedule_from_row(row: &Row) -> Result<Schedule, StoreError> {
    let corrupt = |what: &str, why: &dyn std::fmt::Display| {
        StoreError::Corrupt(format!("schedule {what}: {why}"))
    };
    let get_str =
        |name: &str| -> Result<&str, StoreError> { row.try_get(name).map_err(store_error) };
    let expression =
        Expression::parse(get_str("expression")?).map_err(|e| corrupt("expression", &e))?;
    let timezone = Timezone::parse(get_str("timezone")?).map_err(|e| corrupt("timezone", &e))?;
    let created_at: DateTime<Utc> = row.try_get("created_at").map_err(store_error)?;
    let starts_at = row.try_get("starts_at").map_err(store_error)?;
    let ends_at = row.try_get("ends_at").map_err(store_error)?;
    let catch_up_max: i32 = row.try_get("catch_up_max").map_err(store_error)?;
    let missed = match get_str("missed")? {
        "skip" => MissedPolicy::Skip,
        "catch_up" => MissedPolicy::CatchUp {
            max: u32::try_from(catch_up_max).map_err(|e| corrupt("catch_up_max", &e))?,
        },
        other => return Err(corrupt("missed", &other)),
    };
    let max_attempts: i32 = row.try_get("max_attempts").map_err(store_error)?;
    Ok(Schedule {
        id: ScheduleId::from_uuid(row.try_get("id").map_err(store_error)?),
        tenant: Tenant::parse(get_str("tenant")?).map_err(|e| corrupt("tenant", &e))?,
        name: get_str("name")?.to_owned(),
        timing: Timing::new(expression, timezone, starts_at, ends_at, created_at),
        template: TaskTemplate {
            kind: TaskKind::parse(get_str("kind")?).map_err(|e| corrupt("kind", &e))?,
            payload: row.try_get("payload").map_err(store_error)?,
            max_attempts: u32::try_from(max_attempts).map_err(|e| corrupt("max_attempts", &e))?,
        },
        missed,
        paused: row.try_get("paused").map_err(store_error)?,
        next_run_at: row.try_get("next_run_at").map_err(store_error)?,
        last_fire_at: row.try_get("last_fire_at").map_err(store_error)?,
        created_at,
        updated_at: row.try_get("updated_at").map_err(store_error)?,
        version: row.try_get("version").map_err(store_error)?,
    })
}

fn catch_up_max(missed: MissedPolicy) -> i32 {
    match missed {
        MissedPolicy::Skip => 0,
        MissedPolicy::CatchUp { max } => i32::try_from(max).unwrap_or(i32::MAX),
    }
}

/// The tenant's schedules already have the name.
fn name_taken(err: &tokio_postgres::Error) -> bool {
    err.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some("schedules_name_unique")
    })
}

#[async_trait]
impl ScheduleStore for PostgresStore {
    #[tracing::instrument(skip_all, fields(schedule_id = %s.id, tenant = %s.tenant))]
    async fn create_schedule(&self, s: &Schedule) -> Result<(), CreateError> {
        let client = self.pool().await?.get().await.map_err(StoreError::from)?;
        let t = &s.timing;
        let max_attempts = i32::try_from(s.template.max_attempts).unwrap_or(i32::MAX);
        let params: [&(dyn ToSql + Sync); 15] = [
            s.id.as_uuid(),
            &s.tenant.as_str(),
            &s.name,
            &t.expression.as_str(),
            &t.timezone.name(),
            &s.template.kind.as_str(),
            &s.template.payload,
            &max_attempts,
            &t.starts_at,
            &t.ends_at,
            &s.missed.as_str(),
            &catch_up_max(s.missed),
            &s.paused,
            &s.next_run_at,
            &s.created_at,
        ];
        let stmt = client.prepare_cached(INSERT).await.map_err(store_error)?;
        let inserted = client.execute(&stmt, &params).await.map_err(store_error)?;
        if inserted == 0 {
            Err(CreateError::NameTaken)
        } else {
            Ok(())
        }
    }

    async fn list_schedules(
        &self,
        scope: &Scope,
        before: Option<ScheduleId>,
        limit: u32,
    ) -> Result<Vec<Schedule>, StoreError> {
        self.id_page(
            "tms.schedules",
            COLUMNS,
            scope,
            before.map(|id| *id.as_uuid()),
            limit,
            schedule_from_row,
        )
        .await
    }

    async fn get_schedule(
        &self,
        scope: &Scope,
        id: ScheduleId,
    ) -> Result<Option<Schedule>, StoreError> {
        let client = self.pool().await?.get().await?;
        let stmt = client.prepare_cached(&GET).await.map_err(store_error)?;
        client
            .query_opt(&stmt, &[id.as_uuid(), &scope.tenant().map(Tenant::as_str)])
            .await
            .map_err(store_error)?
            .as_ref()
            .map(schedule_from_row)
            .transpose()
    }

    #[tracing::instrument(skip_all, fields(schedule_id = %s.id, tenant = %s.tenant))]
    async fn update_schedule(
        &self,
        scope: &Scope,
        s: &Schedule,
        rescheduled: bool,
    ) -> Result<ScheduleUpdate, CreateError> {
        let updated = {
            let client = self.pool().await?.get().await.map_err(StoreError::from)?;
            let t = &s.timing;
            let max_attempts = i32::try_from(s.template.max_attempts).unwrap_or(i32::MAX);
            let tenant = scope.tenant().map(Tenant::as_str);
            let params: [&(dyn ToSql + Sync); 16] = [
                s.id.as_uuid(),
                &s.version,
                &tenant,
                &s.name,
                &t.expression.as_str(),
                &t.timezone.name(),
                &s.template.kind.as_str(),
                &s.template.payload,
                &max_attempts,
                &t.starts_at,
                &t.ends_at,
                &s.missed.as_str(),
                &catch_up_max(s.missed),
                &s.paused,
                &rescheduled,
                &s.next_run_at,
            ];
            let stmt = client.prepare_cached(&UPDATE).await.map_err(store_error)?;
            match client.query_opt(&stmt, &params).await {
                Ok(row) => row,
                Err(e) if name_taken(&e) => return Err(CreateError::NameTaken),
                Err(e) => return Err(store_error(e).into()),
            }
        };
        match updated {
            Some(row) => Ok(ScheduleUpdate::Updated(schedule_from_row(&row)?)),
            None => Ok(match self.get_schedule(scope, s.id).await? {
                Some(current) => ScheduleUpdate::Conflict(current),
                None => ScheduleUpdate::NotFound,
            }),
        }
    }

    async fn delete_schedule(&self, scope: &Scope, id: ScheduleId) -> Result<bool, StoreError> {
        let client = self.pool().await?.get().await?;
        let deleted = client
            .execute(DELETE, &[id.as_uuid(), &scope.tenant().map(Tenant::as_str)])
            .await
            .map_err(store_error)?;
        Ok(deleted > 0)
    }

    #[tracing::instrument(skip_all, fields(limit))]
    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: u32,
    ) -> Result<Vec<Schedule>, StoreError> {
        let client = self.pool().await?.get().await?;
        let (after_at, after_id): (Option<DateTime<Utc>>, Option<Uuid>) = match after {
            Some((at, id)) => (Some(at), Some(*id.as_uuid())),
            None => (None, None),
        };
        let stmt = client.prepare_cached(&DUE).await.map_err(store_error)?;
        client
            .query(&stmt, &[&now, &after_at, &after_id, &i64::from(limit)])
            .await
            .map_err(store_error)?
            .iter()
            .map(schedule_from_row)
            .collect()
    }

    #[tracing::instrument(skip_all, fields(runs = runs.len(), enqueued = enqueued.len()))]
    async fn record_runs(
        &self,
        runs: &[ScheduleRun],
        enqueued: &[TaskId],
    ) -> Result<u64, StoreError> {
        if runs.is_empty() && enqueued.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = runs.iter().map(|r| *r.id.as_uuid()).collect();
        let versions: Vec<i64> = runs.iter().map(|r| r.version).collect();
        let due: Vec<DateTime<Utc>> = runs.iter().map(|r| r.due_at).collect();
        let next: Vec<Option<DateTime<Utc>>> = runs.iter().map(|r| r.next_run_at).collect();
        let last: Vec<Option<DateTime<Utc>>> = runs.iter().map(|r| r.last_fire_at).collect();
        let tasks: Vec<Uuid> = enqueued.iter().map(|id| *id.as_uuid()).collect();
        let client = self.pool().await?.get().await?;
        let stmt = client.prepare_cached(RECORD).await.map_err(store_error)?;
        let row = client
            .query_one(&stmt, &[&ids, &versions, &due, &next, &last, &tasks])
            .await
            .map_err(store_error)?;
        let n: i64 = row.try_get("n").map_err(store_error)?;
        u64::try_from(n).map_err(|e| StoreError::Corrupt(format!("row count: {e}")))
    }
}
