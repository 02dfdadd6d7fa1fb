//! [`PostgresStore`]: the task store ports on PostgreSQL. Every statement is prepared once per
//! connection and schema-qualified; transitions apply the target state the domain computed.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{ClientWrapper, Transaction};
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use super::error::store_error;
use super::filter::{Conditions, Param};
use super::notifications::notification_from_row;
use super::pool::Pool;
use super::rows::{
    column, event_from_row, status_of, task_at, task_columns, task_from_row, tasks_from_rows,
    SourceColumns, TaskColumns,
};
use super::setup::Opener;
use crate::domain::{
    CorrelationId, Lifecycle, LifecycleEvent, NewTask, Scope, Status, Task, TaskId, Tenant,
};
use crate::ports::{
    ClaimedTask, CommandOutcome, Created, ListQuery, Outcome, Overview, Recorded, StoreError,
    TaskFilter, TaskRepository, WorkStore,
};

/// The tenant parameter of a statement that takes `NULL` for every tenant.
fn scope_tenant(scope: &Scope) -> Option<&str> {
    scope.tenant().map(Tenant::as_str)
}

/// The task store on a connection pool, given or opened by the first query.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Arc<OnceCell<Pool>>,
    opener: Option<Arc<Opener>>,
}

impl PostgresStore {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool: Arc::new(OnceCell::new_with(Some(pool))),
            opener: None,
        }
    }

    pub(super) fn opened_by(opener: Opener) -> Self {
        Self {
            pool: Arc::new(OnceCell::new()),
            opener: Some(Arc::new(opener)),
        }
    }

    /// The pool, opened now if this is the first query.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the password cannot be read or the pool not built.
    pub async fn pool(&self) -> Result<&Pool, StoreError> {
        self.pool
            .get_or_try_init(|| async {
                let opener = self.opener.as_ref().ok_or_else(|| {
                    StoreError::Unavailable("the store has no pool and cannot open one".into())
                })?;
                opener
                    .open()
                    .await
                    .map_err(|e| StoreError::Unavailable(Box::new(e)))
            })
            .await
    }

    async fn client(&self) -> Result<super::Object, StoreError> {
        Ok(self.pool().await?.get().await?)
    }
}

static INSERT_TASK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH ins AS (
            INSERT INTO tms.tasks (id, tenant, kind, payload, max_attempts, run_after,
                idempotency_key, request_hash, correlation_id, source, import_id, import_line,
                schedule_id, fire_time, trigger_id, event_id)
            VALUES ($1, $2, $3, $4, $5, COALESCE($6, now()), $7, $8, $9, $10, $11, $12, $13, $14,
                $15, $16)
            ON CONFLICT (tenant, idempotency_key) DO NOTHING
            RETURNING {cols}
         ), ev AS (
            INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, correlation_id)
            SELECT id, NULL, status, attempts, correlation_id FROM ins
         )
         SELECT {cols} FROM ins",
        cols = task_columns(None)
    )
});

/// The outbox markers. A marker is advisory (a lost one means a harmless duplicate send), so
/// its statement commits asynchronously: `set_config(..., true)` sets `synchronous_commit` for
/// the statement's own transaction, which ends with the statement. One statement in one round
/// trip, with no `BEGIN`/`SET LOCAL`/`COMMIT`. It is sent unnamed with its parameter's type
/// (Parse, Bind and Execute at once), so PostgreSQL plans it for the table as it is at each
/// write: a prepared statement keeps the generic plan it made first, and one made while the
/// table was nearly empty scans the whole table for ever after.
const MARK_ENQUEUED: &str = "WITH async AS (SELECT set_config('synchronous_commit', 'off', true)) \
     UPDATE tms.tasks SET enqueued_at = now() FROM async WHERE id = ANY($1)";

static SELECT_BY_KEY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, request_hash FROM tms.tasks WHERE tenant = $1 AND idempotency_key = $2",
        task_columns(None)
    )
});

/// A CTE `note` recording the lifecycle events of the rows of CTE `source` that ended
/// (`succeeded`, `dead`, `cancelled`; not the deliveries of notifications themselves) in
/// `tms.notifications`, published after commit. `source` has `id`, `tenant`, `kind`, `status`,
/// `correlation_id`, `attempts`, `result` and `error`.
fn notify(source: &str) -> String {
    format!(
        "note AS (
            INSERT INTO tms.notifications (id, tenant, detail_type, detail, subject)
            SELECT n.note_id, n.tenant,
                   CASE n.status WHEN 'succeeded' THEN '{succeeded}'
                                 WHEN 'dead' THEN '{dead}' ELSE '{cancelled}' END,
                   jsonb_strip_nulls(jsonb_build_object(
                       'event_id', n.note_id, 'tenant', n.tenant, 'task_id', n.id,
                       'kind', n.kind, 'status', n.status, 'correlation_id', n.correlation_id,
                       'attempts', n.attempts, 'result', n.result, 'error', n.error)),
                   n.id
            FROM (SELECT gen_random_uuid() AS note_id, s.* FROM {source} s
                  WHERE s.status IN ('succeeded', 'dead', 'cancelled')
                    AND s.kind <> 'notification') n
            RETURNING id, tenant, detail_type, detail, subject, created_at
         )",
        succeeded = crate::domain::notification::TASK_SUCCEEDED,
        dead = crate::domain::notification::TASK_DEAD,
        cancelled = crate::domain::notification::TASK_CANCELLED,
    )
}

/// One task by id, within a tenant (`$2`) or, with `$2` null, every tenant.
static SELECT_ONE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM tms.tasks WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)",
        task_columns(None)
    )
});

static SELECT_ONE_FOR_UPDATE: LazyLock<String> =
    LazyLock::new(|| format!("{} FOR UPDATE", *SELECT_ONE));

const SELECT_EVENTS: &str = "SELECT e.id, e.task_id, e.from_status, e.to_status, e.at, \
     e.attempt, e.error, e.correlation_id \
     FROM tms.task_events e JOIN tms.tasks t ON t.id = e.task_id \
     WHERE t.id = $1 AND ($2::text IS NULL OR t.tenant = $2) ORDER BY e.id";

static APPLY_COMMAND: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH changed AS (
            UPDATE tms.tasks SET status = $3, attempts = $4,
                run_after = CASE WHEN $5 THEN now() ELSE run_after END,
                enqueued_at = CASE WHEN $5 THEN NULL ELSE enqueued_at END,
                version = version + 1, updated_at = now()
            WHERE id = $1 AND version = $2
            RETURNING {cols}, last_error AS error
         ), ev AS (
            INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, correlation_id)
            SELECT id, $6, status, attempts, $7 FROM changed
         ), {note}
         SELECT {cols} FROM changed",
        cols = task_columns(None),
        note = notify("changed"),
    )
});

/// The commands the domain decided for several tasks at once (a bulk cancel or redrive):
/// each row of the arrays is a task, the version it was read at, and its new state.
static APPLY_COMMANDS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH input AS (
            SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::int4[], $5::text[])
                AS i(id, version, status, attempts, from_status)
         ), changed AS (
            UPDATE tms.tasks t SET status = i.status, attempts = i.attempts,
                run_after = CASE WHEN $6 THEN now() ELSE t.run_after END,
                enqueued_at = CASE WHEN $6 THEN NULL ELSE t.enqueued_at END,
                version = t.version + 1, updated_at = now()
            FROM input i
            WHERE t.id = i.id AND t.version = i.version
            RETURNING {tcols}, i.from_status, t.last_error AS error
         ), ev AS (
            INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, correlation_id)
            SELECT id, from_status, status, attempts, $7 FROM changed
         ), {note}
         SELECT {cols} FROM changed ORDER BY id",
        tcols = task_columns(Some("t")),
        cols = task_columns(None),
        note = notify("changed"),
    )
});

static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH candidates AS (
            SELECT t.id, t.status AS from_status
            FROM unnest($1::uuid[], $2::text[]) AS p(id, tenant)
            JOIN tms.tasks t ON t.id = p.id AND t.tenant = p.tenant
            WHERE t.status = ANY($3) AND t.attempts < t.max_attempts
              AND CASE WHEN t.status = 'running' THEN t.lease_until < now()
                       ELSE t.run_after <= now() END
            ORDER BY t.id
            FOR UPDATE OF t
         ), claimed AS (
            UPDATE tms.tasks t SET status = 'running', attempts = t.attempts + 1,
                lease_until = now() + $4::int8 * interval '1 millisecond',
                version = t.version + 1, updated_at = now()
            FROM candidates c WHERE t.id = c.id
            RETURNING {cols}, c.from_status
         ), ev AS (
            INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, correlation_id)
            SELECT id, from_status, status, attempts, correlation_id FROM claimed
         )
         SELECT * FROM claimed",
        cols = task_columns(Some("t"))
    )
});

/// Records the outcomes of a batch. A task is still the claimant's when its version is the one
/// the claim left and it holds a lease (`lease_until IS NOT NULL`, which the table's CHECK makes
/// the same as `status = 'running'`). Not written as `status = 'running'`: that is the predicate
/// of the partial index `tasks_leases`, and when the statistics say few tasks are running (taken
/// before a burst of work) the planner read every running task through it and joined the batch
/// to them row by row, a cost that grew with the tasks other workers held. Said through the
/// lease, the tasks can only be looked up by id. A released claim (never started) gets its
/// attempt back and keeps its outbox marker: its own message comes back to run it.
static RECORD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::jsonb[], $5::jsonb[],
                             $6::int8[], $7::bool[], $8::bool[])
            AS i(id, version, to_status, result, error, retry_ms, enqueue, released)
     ), updated AS (
        UPDATE tms.tasks t SET
            status = i.to_status,
            result = i.result,
            last_error = COALESCE(i.error, t.last_error),
            lease_until = NULL,
            attempts = CASE WHEN i.released THEN t.attempts - 1 ELSE t.attempts END,
            run_after = CASE WHEN i.retry_ms IS NULL THEN t.run_after
                             ELSE now() + i.retry_ms * interval '1 millisecond' END,
            enqueued_at = CASE WHEN i.enqueue THEN now()
                               WHEN i.released THEN t.enqueued_at
                               WHEN i.to_status = 'failed' THEN NULL
                               ELSE t.enqueued_at END,
            version = t.version + 1,
            updated_at = now()
        FROM input i
        WHERE t.id = i.id AND t.version = i.version AND t.lease_until IS NOT NULL
        RETURNING t.id, t.tenant, t.kind, t.attempts, t.correlation_id, i.to_status AS status,
                  i.result, i.error
     ), ev AS (
        INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, error, correlation_id)
        SELECT id, 'running', status, attempts, error, correlation_id FROM updated
     ), {note}
     SELECT id, NULL::text AS tenant, NULL::text AS detail_type, NULL::jsonb AS detail,
            NULL::uuid AS subject, NULL::timestamptz AS created_at
     FROM updated
     UNION ALL
     SELECT id, tenant, detail_type, detail, subject, created_at FROM note",
        note = notify("updated"),
    )
});

/// Clears the markers of tasks still waiting (pending or failed). The status decides the value,
/// not which rows are read: `status IN ('pending', 'failed')` in the condition is the predicate
/// of the partial index `tasks_relay`, and when the statistics say few tasks are waiting (taken
/// before an import) the planner read every waiting task through it to find these few.
const CLEAR_ENQUEUED: &str = "UPDATE tms.tasks \
     SET enqueued_at = CASE WHEN status IN ('pending', 'failed') THEN NULL ELSE enqueued_at END \
     WHERE id = ANY($1) AND enqueued_at IS NOT NULL";

/// Inserts one task (and its creation event) or finds the one holding its idempotency key.
/// What [`create_in`] needs of a pooled connection or of a transaction on one.
#[async_trait]
trait CachedStatements: Sync {
    async fn prepare_cached(&self, sql: &str) -> Result<Statement, tokio_postgres::Error>;
    async fn query_opt(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error>;
}

#[async_trait]
impl CachedStatements for ClientWrapper {
    async fn prepare_cached(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        ClientWrapper::prepare_cached(self, sql).await
    }
    async fn query_opt(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        tokio_postgres::Client::query_opt(self, statement, params).await
    }
}

#[async_trait]
impl CachedStatements for Transaction<'_> {
    async fn prepare_cached(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        Transaction::prepare_cached(self, sql).await
    }
    async fn query_opt(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        tokio_postgres::Transaction::query_opt(self, statement, params).await
    }
}

async fn create_in<C: CachedStatements>(client: &C, task: &NewTask) -> Result<Created, StoreError> {
    let insert = client
        .prepare_cached(&INSERT_TASK)
        .await
        .map_err(store_error)?;
    let source = SourceColumns::of(&task.source);
    let max_attempts = task.max_attempts as i32;
    let hash: &[u8] = &task.request_hash;
    let params: [&(dyn ToSql + Sync); 16] = [
        task.id.as_uuid(),
        &task.tenant.as_str(),
        &task.kind.as_str(),
        &task.payload,
        &max_attempts,
        &task.run_after,
        &task.idempotency_key,
        &hash,
        &task.correlation_id.as_str(),
        &task.source.as_str(),
        &source.import_id,
        &source.import_line,
        &source.schedule_id,
        &source.fire_time,
        &source.trigger_id,
        &source.event_id,
    ];
    // A conflicting insert waits for the other transaction, so the follow-up read sees its
    // row; the loop covers the rare case of that row being deleted in between.
    for _ in 0..3 {
        if let Some(row) = client
            .query_opt(&insert, &params)
            .await
            .map_err(store_error)?
        {
            return Ok(Created {
                task: task_from_row(&row)?,
                replayed: false,
                hash_matches: true,
            });
        }
        let select = client
            .prepare_cached(&SELECT_BY_KEY)
            .await
            .map_err(store_error)?;
        let key = task.idempotency_key.as_deref();
        if let Some(row) = client
            .query_opt(&select, &[&task.tenant.as_str(), &key])
            .await
            .map_err(store_error)?
        {
            let stored: Option<&[u8]> = row.try_get("request_hash").map_err(store_error)?;
            return Ok(Created {
                task: task_from_row(&row)?,
                replayed: true,
                hash_matches: stored == Some(hash),
            });
        }
    }
    Err(StoreError::Database(
        "idempotency key conflict could not be resolved".into(),
    ))
}

/// The claim statement mirrors the domain's claim rule; this checks each claimed row against
/// the domain, so a divergence surfaces as an error instead of a silent wrong transition.
fn check_claim(from: Status, claimed: &Task) -> Result<(), StoreError> {
    let before = Lifecycle {
        status: from,
        attempts: claimed.attempts.saturating_sub(1),
        max_attempts: claimed.max_attempts,
    };
    let event = LifecycleEvent::Claim {
        due: true,
        lease_expired: from == Status::Running,
    };
    match before.apply(event) {
        Ok(after) if after == claimed.lifecycle() => Ok(()),
        other => Err(StoreError::Corrupt(format!(
            "claim of task {} does not match the lifecycle: {other:?}",
            claimed.id
        ))),
    }
}

fn ids_of(ids: &[TaskId]) -> Vec<Uuid> {
    ids.iter().map(|id| *id.as_uuid()).collect()
}

#[async_trait]
impl TaskRepository for PostgresStore {
    // No span: nothing logs inside it, and the callers' spans name the tenant (the API's
    // request span also the task), so it was formatting work on every create for no line.
    async fn create(&self, task: &NewTask) -> Result<Created, StoreError> {
        let client = self.client().await?;
        create_in(&*client, task).await
    }

    #[tracing::instrument(skip_all, fields(count = tasks.len()))]
    async fn create_batch(&self, tasks: &[NewTask]) -> Result<Vec<Created>, StoreError> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(store_error)?;
        let mut created = Vec::with_capacity(tasks.len());
        for task in tasks {
            created.push(create_in(&txn, task).await?);
        }
        txn.commit().await.map_err(store_error)?;
        Ok(created)
    }

    async fn get(&self, scope: &Scope, id: TaskId) -> Result<Option<Task>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&SELECT_ONE)
            .await
            .map_err(store_error)?;
        client
            .query_opt(&stmt, &[id.as_uuid(), &scope_tenant(scope)])
            .await
            .map_err(store_error)?
            .as_ref()
            .map(task_from_row)
            .transpose()
    }

    async fn list(&self, scope: &Scope, query: &ListQuery) -> Result<Vec<Task>, StoreError> {
        let mut conditions = Conditions::tasks(scope, &query.filter, "");
        if let Some(before) = query.before {
            conditions.push("id < $", Param::Uuid(*before.as_uuid()));
        }
        let limit = conditions.param(Param::Int(i64::from(query.limit)));
        let sql = format!(
            "SELECT {} FROM tms.tasks{} ORDER BY id DESC LIMIT ${limit}",
            task_columns(None),
            conditions.where_clause()
        );
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
        let rows = client
            .query(&stmt, &conditions.params())
            .await
            .map_err(store_error)?;
        tasks_from_rows(&rows)
    }

    async fn count(&self, scope: &Scope, filter: &TaskFilter) -> Result<u64, StoreError> {
        let conditions = Conditions::tasks(scope, filter, "");
        let sql = format!(
            "SELECT count(*) FROM tms.tasks{}",
            conditions.where_clause()
        );
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
        let n: i64 = client
            .query_one(&stmt, &conditions.params())
            .await
            .map_err(store_error)?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn events(
        &self,
        scope: &Scope,
        id: TaskId,
    ) -> Result<Option<Vec<crate::domain::TaskEvent>>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(SELECT_EVENTS)
            .await
            .map_err(store_error)?;
        let rows = client
            .query(&stmt, &[id.as_uuid(), &scope_tenant(scope)])
            .await
            .map_err(store_error)?;
        if rows.is_empty() {
            drop(client);
            return Ok(self.get(scope, id).await?.map(|_| Vec::new()));
        }
        rows.iter()
            .map(event_from_row)
            .collect::<Result<_, _>>()
            .map(Some)
    }

    async fn cancel(
        &self,
        scope: &Scope,
        id: TaskId,
        correlation_id: &CorrelationId,
    ) -> Result<CommandOutcome, StoreError> {
        self.apply_command(scope, id, LifecycleEvent::Cancel, correlation_id)
            .await
    }

    async fn redrive(
        &self,
        scope: &Scope,
        id: TaskId,
        correlation_id: &CorrelationId,
    ) -> Result<CommandOutcome, StoreError> {
        self.apply_command(scope, id, LifecycleEvent::Redrive, correlation_id)
            .await
    }

    #[tracing::instrument(skip_all, fields(event = event.name(), limit))]
    async fn bulk(
        &self,
        scope: &Scope,
        filter: &TaskFilter,
        event: LifecycleEvent,
        limit: u32,
        correlation_id: &CorrelationId,
    ) -> Result<Vec<Task>, StoreError> {
        let mut conditions = Conditions::tasks(scope, filter, "");
        conditions.statuses("", &event.applies_from());
        let limit = conditions.param(Param::Int(i64::from(limit)));
        let select = format!(
            "SELECT {} FROM tms.tasks{} ORDER BY id LIMIT ${limit} FOR UPDATE SKIP LOCKED",
            task_columns(None),
            conditions.where_clause()
        );
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(store_error)?;
        let stmt = txn.prepare_cached(&select).await.map_err(store_error)?;
        let rows = txn
            .query(&stmt, &conditions.params())
            .await
            .map_err(store_error)?;
        let mut ids = Vec::new();
        let mut versions = Vec::new();
        let mut statuses = Vec::new();
        let mut attempts = Vec::new();
        let mut from = Vec::new();
        for task in tasks_from_rows(&rows)? {
            let Ok(next) = task.lifecycle().apply(event) else {
                continue;
            };
            ids.push(*task.id.as_uuid());
            versions.push(task.version);
            statuses.push(next.status.as_str());
            attempts.push(next.attempts as i32);
            from.push(task.status.as_str());
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let reset = event == LifecycleEvent::Redrive;
        let stmt = txn
            .prepare_cached(&APPLY_COMMANDS)
            .await
            .map_err(store_error)?;
        let rows = txn
            .query(
                &stmt,
                &[
                    &ids,
                    &versions,
                    &statuses,
                    &attempts,
                    &from,
                    &reset,
                    &correlation_id.as_str(),
                ],
            )
            .await
            .map_err(store_error)?;
        let changed = tasks_from_rows(&rows)?;
        txn.commit().await.map_err(store_error)?;
        Ok(changed)
    }

    async fn overview(&self, scope: &Scope) -> Result<Overview, StoreError> {
        super::overview::read(&*self.client().await?, scope).await
    }

    async fn mark_enqueued(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        client
            .execute_typed(MARK_ENQUEUED, &[(&ids_of(ids), Type::UUID_ARRAY)])
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(store_error)?;
        Ok(())
    }
}

impl PostgresStore {
    /// Locks the task, lets the domain decide whether `event` applies, and writes the state
    /// the domain returned together with its event.
    async fn apply_command(
        &self,
        scope: &Scope,
        id: TaskId,
        event: LifecycleEvent,
        correlation_id: &CorrelationId,
    ) -> Result<CommandOutcome, StoreError> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(store_error)?;
        let select = txn
            .prepare_cached(&SELECT_ONE_FOR_UPDATE)
            .await
            .map_err(store_error)?;
        let Some(row) = txn
            .query_opt(&select, &[id.as_uuid(), &scope_tenant(scope)])
            .await
            .map_err(store_error)?
        else {
            return Ok(CommandOutcome::NotFound);
        };
        let task = task_from_row(&row)?;
        let next = match task.lifecycle().apply(event) {
            Ok(next) => next,
            Err(reason) => return Ok(CommandOutcome::Refused { task, reason }),
        };
        let reset = event == LifecycleEvent::Redrive;
        let update = txn
            .prepare_cached(&APPLY_COMMAND)
            .await
            .map_err(store_error)?;
        let row = txn
            .query_one(
                &update,
                &[
                    id.as_uuid(),
                    &task.version,
                    &next.status.as_str(),
                    &(next.attempts as i32),
                    &reset,
                    &task.status.as_str(),
                    &correlation_id.as_str(),
                ],
            )
            .await
            .map_err(store_error)?;
        let updated = task_from_row(&row)?;
        txn.commit().await.map_err(store_error)?;
        Ok(CommandOutcome::Done(updated))
    }
}

#[async_trait]
impl WorkStore for PostgresStore {
    #[tracing::instrument(skip_all, fields(count = pointers.len()))]
    async fn claim(
        &self,
        pointers: &[(TaskId, Tenant)],
        lease: Duration,
    ) -> Result<Vec<ClaimedTask>, StoreError> {
        if pointers.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = pointers.iter().map(|(id, _)| *id.as_uuid()).collect();
        let tenants: Vec<&str> = pointers.iter().map(|(_, t)| t.as_str()).collect();
        let claimable: Vec<&str> = Status::sources_of(Status::Running)
            .iter()
            .map(Status::as_str)
            .collect();
        let lease_ms = lease.as_millis() as i64;
        let client = self.client().await?;
        let stmt = client.prepare_cached(&CLAIM).await.map_err(store_error)?;
        let rows = client
            .query(&stmt, &[&ids, &tenants, &claimable, &lease_ms])
            .await
            .map_err(store_error)?;
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let columns = TaskColumns::of(first)?;
        let from_status = column(first, "from_status")?;
        rows.iter()
            .map(|row| {
                let from = status_of(row.try_get(from_status).map_err(store_error)?)?;
                let task = task_at(row, &columns)?;
                check_claim(from, &task)?;
                Ok(ClaimedTask { task, from })
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(count = outcomes.len()))]
    async fn record(&self, outcomes: &[Outcome]) -> Result<Recorded, StoreError> {
        if outcomes.is_empty() {
            return Ok(Recorded::default());
        }
        let ids: Vec<Uuid> = outcomes.iter().map(|o| *o.id.as_uuid()).collect();
        let versions: Vec<i64> = outcomes.iter().map(|o| o.version).collect();
        let to: Vec<&str> = outcomes.iter().map(|o| o.to.as_str()).collect();
        let results: Vec<Option<&Value>> = outcomes.iter().map(|o| o.result.as_ref()).collect();
        let errors: Vec<Option<Value>> = outcomes
            .iter()
            .map(|o| {
                o.error
                    .as_ref()
                    .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
            })
            .collect();
        let retry_ms: Vec<Option<i64>> = outcomes
            .iter()
            .map(|o| o.retry_in.map(|d| d.as_millis() as i64))
            .collect();
        let enqueue: Vec<bool> = outcomes.iter().map(|o| o.enqueue).collect();
        let released: Vec<bool> = outcomes.iter().map(|o| o.released).collect();
        let client = self.client().await?;
        let stmt = client.prepare_cached(&RECORD).await.map_err(store_error)?;
        let rows = client
            .query(
                &stmt,
                &[
                    &ids, &versions, &to, &results, &errors, &retry_ms, &enqueue, &released,
                ],
            )
            .await
            .map_err(store_error)?;
        let mut recorded = Recorded::default();
        for row in &rows {
            match row
                .try_get::<_, Option<String>>("detail_type")
                .map_err(store_error)?
            {
                None => recorded
                    .ids
                    .push(TaskId::from_uuid(row.try_get("id").map_err(store_error)?)),
                Some(_) => recorded.events.push(notification_from_row(row)?),
            }
        }
        Ok(recorded)
    }

    async fn clear_enqueued(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(CLEAR_ENQUEUED)
            .await
            .map_err(store_error)?;
        client
            .execute(&stmt, &[&ids_of(ids)])
            .await
            .map_err(store_error)?;
        Ok(())
    }
}
