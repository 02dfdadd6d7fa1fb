//! [`PostgresStore`]: the task store ports on PostgreSQL. Every statement is prepared once per
//! connection and schema-qualified; transitions apply the target state the domain computed.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{ClientWrapper, Transaction};
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use super::error::store_error;
use super::filter::{Conditions, Param};
use super::pool::Pool;
use super::rows::{
    column, event_from_row, status_of, task_at, task_columns, task_from_row, tasks_from_rows,
    SourceColumns, TaskColumns,
};
use super::setup::Opener;
use crate::domain::{
    CorrelationId, DeferReason, Lifecycle, LifecycleEvent, NewTask, Notification, Scope, Status,
    Task, TaskId, Tenant,
};
use crate::ports::{
    Claim, ClaimPolicy, ClaimedTask, CommandOutcome, Created, Deferral, ListQuery, Outcome,
    Overview, Recorded, StoreError, TaskFilter, TaskRepository, WorkStore, MAX_MESSAGE_DELAY,
};

/// The tenant parameter of a statement that takes `NULL` for every tenant.
fn scope_tenant(scope: &Scope) -> Option<&str> {
    scope.tenant().map(Tenant::as_str)
}

/// The task store on a connection pool, given or opened by the first query.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Arc<OnceCell<Pool>>,
    /// Set once the opened pool's first connection is open (a given pool's from the start).
    connected: Arc<OnceCell<()>>,
    opener: Option<Arc<Opener>>,
}

impl PostgresStore {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool: Arc::new(OnceCell::new_with(Some(pool))),
            connected: Arc::new(OnceCell::new_with(Some(()))),
            opener: None,
        }
    }

    pub(super) fn opened_by(opener: Opener) -> Self {
        Self {
            pool: Arc::new(OnceCell::new()),
            connected: Arc::new(OnceCell::new()),
            opener: Some(Arc::new(opener)),
        }
    }

    /// The pool, opened now if this is the first query, with its first connection open: callers
    /// arriving while that connection opens wait for it rather than each opening one of their
    /// own. The password is read once, even while the database cannot be reached.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the password cannot be read or the pool not built;
    /// the pool's error when its first connection cannot be opened (the next query tries again).
    pub async fn pool(&self) -> Result<&Pool, StoreError> {
        let pool = self
            .pool
            .get_or_try_init(|| async {
                let opener = self.opener.as_ref().ok_or_else(|| {
                    StoreError::Unavailable("the store has no pool and cannot open one".into())
                })?;
                opener
                    .open()
                    .await
                    .map_err(|e| StoreError::Unavailable(Box::new(e)))
            })
            .await?;
        self.connected
            .get_or_try_init(|| async { pool.get().await.map(drop) })
            .await?;
        Ok(pool)
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
                schedule_id, fire_time, trigger_id, event_id, priority)
            VALUES ($1, $2, $3, $4, $5, COALESCE($6, now()), $7, $8, $9, $10, $11, $12, $13, $14,
                $15, $16, $17)
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

/// The worker's claim: the batch's claimable tasks (`pointed`) and, with a fair share
/// (`$5` > 0), a few due tasks of other tenants (`stolen`), judged against the tenants' limits
/// in the same statement.
///
/// - Fair share: the tenants with waiting tasks are found one index descent each
///   (`tasks_waiting_by_tenant`), up to 32 from a random point (`$7`) on, wrapping round; the
///   batch's own tenants are left out. Of each, its tasks due for `$6` ms at least (whose
///   messages wait behind a backlog), oldest first, rows other claims hold skipped: the batch's
///   messages run another tenant's tasks too, and their own messages find them done.
/// - Limits: the rows of every key the candidates fall under (`*`, `kind:<kind>`,
///   `host:<webhook host>`) are locked in key order. Candidates are ranked per key (high
///   priority first, then the batch's own, then oldest); one that needs a slot or a token past
///   what its key has is over it. A task the limit deferred for its rate booked its token: it
///   comes back without needing another from that key.
/// - A candidate over no limit is claimed; one of the batch's own over a limit is deferred
///   (concurrency before rate, the tenant's limits before its kind's before its host's): its
///   `run_after` becomes when the limit is expected to let it run (for a rate, when the tokens
///   booked before it have flowed in; for concurrency, the key's next slot, spaced by how long
///   its tasks have run of late divided by its limit), and that booking is written to the
///   key. A stolen one over a limit is left as it is.
///
/// NOTE: a candidate is ranked on each of its keys whether or not another key stops it, so a
/// slot or token can stay unused for a moment in a batch that meets several limits at once:
/// never more than a limit allows, sometimes less.
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH RECURSIVE pointed AS (
            SELECT t.id, t.tenant, t.kind, t.status AS from_status, t.priority, t.deferred_reason,
                   t.payload, false AS stolen
            FROM unnest($1::uuid[], $2::text[]) AS p(id, tenant)
            JOIN tms.tasks t ON t.id = p.id AND t.tenant = p.tenant
            WHERE t.status = ANY($3) AND t.attempts < t.max_attempts
              AND CASE WHEN t.status = 'running' THEN t.lease_until < now()
                       ELSE t.run_after <= now() END
            ORDER BY t.id
            FOR UPDATE OF t
         ), ring(tenant, n) AS (
            SELECT (SELECT min(w.tenant) FROM tms.tasks w
                    WHERE w.status IN ('pending', 'failed') AND w.tenant >= $7::text), 1
            WHERE $5::int8 > 0
            UNION ALL
            SELECT (SELECT min(w.tenant) FROM tms.tasks w
                    WHERE w.status IN ('pending', 'failed') AND w.tenant > r.tenant), r.n + 1
            FROM ring r WHERE r.tenant IS NOT NULL AND r.n < 32
         ), wrapped(tenant, n) AS (
            SELECT (SELECT min(w.tenant) FROM tms.tasks w WHERE w.status IN ('pending', 'failed')), 1
            WHERE $5::int8 > 0
            UNION ALL
            SELECT (SELECT min(w.tenant) FROM tms.tasks w
                    WHERE w.status IN ('pending', 'failed') AND w.tenant > r.tenant), r.n + 1
            FROM wrapped r WHERE r.tenant < $7::text AND r.n < 32
         ), others AS (
            SELECT tenant FROM (SELECT tenant FROM ring UNION SELECT tenant FROM wrapped) o
            WHERE tenant IS NOT NULL AND tenant <> ALL($2)
            ORDER BY tenant < $7::text, tenant
            LIMIT 32
         ), stolen AS (
            SELECT s.* FROM others o CROSS JOIN LATERAL (
                SELECT t.id, t.tenant, t.kind, t.status AS from_status, t.priority,
                       t.deferred_reason, t.payload, true AS stolen
                FROM tms.tasks t
                WHERE t.tenant = o.tenant AND t.status IN ('pending', 'failed')
                  AND t.run_after <= now() - $6::int8 * interval '1 millisecond'
                  AND t.attempts < t.max_attempts
                ORDER BY t.run_after
                LIMIT (SELECT greatest(1, ceil($5::int8::float8 / count(*)))::int8 FROM others)
                FOR UPDATE OF t SKIP LOCKED
            ) s
            LIMIT $5::int8
         ), candidates AS (
            SELECT c.*,
                   CASE WHEN c.kind = 'webhook' THEN lower(substring(c.payload->>'url'
                        FROM '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?(\\[[^]/?#]*\\]|[^:/?#]*)'))
                   END AS host,
                   row_number() OVER (ORDER BY c.priority = 'high' DESC, c.stolen, c.id) AS ord
            FROM (SELECT * FROM pointed UNION ALL SELECT * FROM stolen) c
         ), keyed AS (
            SELECT c.id, c.tenant, c.ord, c.from_status, c.deferred_reason, k.key, k.level
            FROM candidates c
            CROSS JOIN LATERAL (VALUES ('*', 1), ('kind:' || c.kind, 2), ('host:' || c.host, 3))
                AS k(key, level)
            WHERE k.key IS NOT NULL
         ), locked AS (
            SELECT l.tenant, l.key, l.max_running, l.rate, l.burst, l.tokens, l.refilled_at,
                   l.running, l.slot_at, l.run_ms
            FROM tms.flow_limits l
            WHERE (l.tenant, l.key) IN (SELECT tenant, key FROM keyed)
            ORDER BY l.tenant, l.key
            FOR UPDATE
         ), limits AS (
            SELECT l.*,
                   least(l.burst, l.tokens + l.rate * extract(epoch FROM now() - l.refilled_at))
                       AS avail
            FROM locked l
         ), pairs AS (
            SELECT k.*, l.max_running, l.rate, l.avail, l.running,
                   l.max_running IS NOT NULL AND k.from_status <> 'running' AS needs_slot,
                   l.rate IS NOT NULL AND k.deferred_reason IS DISTINCT FROM
                       (CASE k.level WHEN 1 THEN 'tenant_rate' WHEN 2 THEN 'kind_rate'
                                     ELSE 'host_rate' END) AS needs_token
            FROM keyed k JOIN limits l ON l.tenant = k.tenant AND l.key = k.key
         ), judged AS (
            SELECT p.*,
                   CASE WHEN p.needs_slot
                             AND sum(p.needs_slot::int) OVER w > greatest(p.max_running - p.running, 0)
                        THEN CASE p.level WHEN 1 THEN 'tenant_concurrency' ELSE 'kind_concurrency' END
                        WHEN p.needs_token AND sum(p.needs_token::int) OVER w > floor(p.avail)
                        THEN CASE p.level WHEN 1 THEN 'tenant_rate' WHEN 2 THEN 'kind_rate'
                                          ELSE 'host_rate' END
                   END AS over
            FROM pairs p
            WINDOW w AS (PARTITION BY p.tenant, p.key ORDER BY p.ord)
         ), decided AS (
            SELECT c.id, c.ord, c.from_status, c.stolen,
                   (SELECT j.over FROM judged j WHERE j.id = c.id AND j.over IS NOT NULL
                    ORDER BY j.level, j.over LIKE '%rate' LIMIT 1) AS reason
            FROM candidates c
         ), booked AS (
            SELECT d.id, d.reason, j.tenant, j.key,
                   row_number() OVER (PARTITION BY j.tenant, j.key ORDER BY d.ord) AS n
            FROM decided d JOIN judged j ON j.id = d.id AND j.over = d.reason
            WHERE NOT d.stolen
         ), per_key AS (
            SELECT l.tenant, l.key, l.avail,
                   count(*) FILTER (WHERE p.needs_token AND d.reason IS NULL) AS took_tokens,
                   count(*) FILTER (WHERE p.needs_slot AND d.reason IS NULL) AS took_slots,
                   count(b.id) FILTER (WHERE b.reason LIKE '%rate') AS booked_tokens,
                   count(b.id) FILTER (WHERE b.reason LIKE '%concurrency') AS booked_slots,
                   max(l.rate) AS rate,
                   greatest(coalesce(l.slot_at, now()), now()) AS slot_base,
                   coalesce(l.run_ms, 1000) / coalesce(l.max_running, 1) AS spacing_ms
            FROM limits l
            JOIN pairs p ON p.tenant = l.tenant AND p.key = l.key
            JOIN decided d ON d.id = p.id
            LEFT JOIN booked b ON b.id = p.id AND b.tenant = l.tenant AND b.key = l.key
            GROUP BY l.tenant, l.key, l.avail, l.slot_at, l.run_ms, l.max_running
         ), due AS (
            SELECT b.id, b.reason,
                   CASE WHEN b.reason LIKE '%rate'
                        THEN now() + greatest(1, (b.n - (k.avail - k.took_tokens)) / k.rate)
                                     * interval '1 second'
                        ELSE greatest(k.slot_base + b.n * k.spacing_ms * interval '1 millisecond',
                                      now() + interval '1 second')
                   END AS at
            FROM booked b JOIN per_key k ON k.tenant = b.tenant AND k.key = b.key
         ), spent AS (
            UPDATE tms.flow_limits l SET
                tokens = CASE WHEN l.rate IS NULL THEN l.tokens
                              ELSE k.avail - k.took_tokens - k.booked_tokens END,
                refilled_at = CASE WHEN l.rate IS NULL THEN l.refilled_at ELSE now() END,
                running = l.running + k.took_slots,
                slot_at = CASE WHEN k.booked_slots > 0
                               THEN k.slot_base + k.booked_slots * k.spacing_ms
                                                  * interval '1 millisecond'
                               ELSE l.slot_at END
            FROM per_key k
            WHERE l.tenant = k.tenant AND l.key = k.key
              AND k.took_tokens + k.took_slots + k.booked_tokens + k.booked_slots > 0
         ), claimed AS (
            UPDATE tms.tasks t SET status = 'running', attempts = t.attempts + 1,
                lease_until = now() + $4::int8 * interval '1 millisecond', deferred_reason = NULL,
                version = t.version + 1, updated_at = now()
            FROM decided d WHERE t.id = d.id AND d.reason IS NULL
            RETURNING {cols}, d.from_status, d.stolen
         ), deferred AS (
            UPDATE tms.tasks t SET run_after = u.at, deferred_reason = u.reason,
                enqueued_at = CASE WHEN u.at <= now() + interval '{horizon} seconds' THEN now() END,
                version = t.version + 1, updated_at = now()
            FROM due u WHERE t.id = u.id
            RETURNING {cols}, u.reason,
                ceil(extract(epoch FROM u.at - now()) * 1000)::int8 AS delay_ms
         ), ev AS (
            INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, correlation_id)
            SELECT id, from_status, status, attempts, correlation_id FROM claimed
         )
         SELECT *, NULL::text AS reason, NULL::int8 AS delay_ms FROM claimed
         UNION ALL
         SELECT {plain}, NULL::text, false, reason, delay_ms FROM deferred",
        cols = task_columns(Some("t")),
        plain = task_columns(None),
        horizon = MAX_MESSAGE_DELAY.as_secs(),
    )
});

/// Records the outcomes of a batch. A task is still the claimant's when its version is the one
/// the claim left and it holds a lease (`lease_until IS NOT NULL`, which the table's CHECK makes
/// the same as `status = 'running'`). Not written as `status = 'running'`: that is the predicate
/// of the partial index `tasks_leases`, and when the statistics say few tasks are running (taken
/// before a burst of work) the planner read every running task through it and joined the batch
/// to them row by row, a cost that grew with the tasks other workers held. Said through the
/// lease, the tasks can only be looked up by id. A released claim (never started) gets its
/// attempt back and keeps its outbox marker: its own message comes back to run it. Each
/// recorded task frees its slot under its tenant's and its kind's concurrency limits, whose
/// average run time takes the batch's in. The lifecycle events the outcomes carry, already
/// built (`Notification::task_ended`), are recorded with the tasks that are: building their
/// details and ids here instead (`jsonb_build_object`, `gen_random_uuid`) took about 1 ms of a
/// batch of 100, a fifth of the statement.
const RECORD: &str = "WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::jsonb[], $5::jsonb[],
                             $6::int8[], $7::bool[], $8::bool[], $9::float8[], $10::uuid[],
                             $11::text[], $12::jsonb[], $13::timestamptz[])
            AS i(id, version, to_status, result, error, retry_ms, enqueue, released, ran_ms,
                 note_id, note_type, note_detail, note_at)
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
                  i.error, i.ran_ms, i.note_id, i.note_type, i.note_detail, i.note_at
     ), ev AS (
        INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, error, correlation_id)
        SELECT id, 'running', status, attempts, error, correlation_id FROM updated
     ), freed AS (
        UPDATE tms.flow_limits l SET running = greatest(l.running - f.n, 0),
            run_ms = CASE WHEN f.ms IS NULL THEN l.run_ms
                          ELSE coalesce(l.run_ms * 0.8 + f.ms * 0.2, f.ms) END
        FROM (SELECT u.tenant, k.key, count(*) AS n, avg(u.ran_ms) AS ms
              FROM updated u CROSS JOIN LATERAL (VALUES ('*'), ('kind:' || u.kind)) AS k(key)
              GROUP BY u.tenant, k.key) f
        WHERE l.tenant = f.tenant AND l.key = f.key AND l.max_running IS NOT NULL
     ), note AS (
        INSERT INTO tms.notifications (id, tenant, detail_type, detail, subject, created_at)
        SELECT note_id, tenant, note_type, note_detail, id, note_at FROM updated
        WHERE note_id IS NOT NULL
     )
     SELECT id FROM updated";

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
    let params: [&(dyn ToSql + Sync); 17] = [
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
        &task.priority.as_str(),
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

/// Where the fair claim starts its round of the tenants with waiting tasks: a random first
/// character of a tenant name, so no tenant is always first.
fn ring_start() -> String {
    use rand::RngExt as _;
    const FIRST: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let i = rand::rng().random_range(0..FIRST.len());
    char::from(FIRST[i]).to_string()
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

    async fn connect(&self) -> Result<(), StoreError> {
        self.pool().await.map(drop)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(store_error)?;
        Ok(())
    }
}

impl PostgresStore {
    /// One page of a table listed newest first by id (imports, schedules, triggers,
    /// subscriptions): `columns` of the rows of `scope` before `before`, at most `limit`, each
    /// read by `from_row`. One statement per scope, so a tenant's page keeps its `(tenant, id)`
    /// index.
    pub(super) async fn id_page<T>(
        &self,
        table: &str,
        columns: &str,
        scope: &Scope,
        before: Option<Uuid>,
        limit: u32,
        from_row: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let client = self.pool().await?.get().await?;
        let tenant = scope.tenant().map(Tenant::as_str);
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE {} AND ($2::uuid IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3",
            if tenant.is_some() {
                "tenant = $1"
            } else {
                "$1::text IS NULL"
            }
        );
        let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
        client
            .query(&stmt, &[&tenant, &before, &i64::from(limit)])
            .await
            .map_err(store_error)?
            .iter()
            .map(from_row)
            .collect()
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
        policy: &ClaimPolicy,
    ) -> Result<Claim, StoreError> {
        if pointers.is_empty() {
            return Ok(Claim::default());
        }
        let ids: Vec<Uuid> = pointers.iter().map(|(id, _)| *id.as_uuid()).collect();
        let tenants: Vec<&str> = pointers.iter().map(|(_, t)| t.as_str()).collect();
        let claimable: Vec<&str> = Status::sources_of(Status::Running)
            .iter()
            .map(Status::as_str)
            .collect();
        let lease_ms = policy.lease.as_millis() as i64;
        let fair_share = i64::from(policy.fair_share);
        let fair_share_after_ms = policy.fair_share_after.as_millis() as i64;
        let ring_start = ring_start();
        let client = self.client().await?;
        let stmt = client.prepare_cached(&CLAIM).await.map_err(store_error)?;
        let rows = client
            .query(
                &stmt,
                &[
                    &ids,
                    &tenants,
                    &claimable,
                    &lease_ms,
                    &fair_share,
                    &fair_share_after_ms,
                    &ring_start,
                ],
            )
            .await
            .map_err(store_error)?;
        let Some(first) = rows.first() else {
            return Ok(Claim::default());
        };
        let columns = TaskColumns::of(first)?;
        let [from_status, stolen, reason, delay_ms] =
            ["from_status", "stolen", "reason", "delay_ms"].map(|c| column(first, c));
        let (from_status, stolen, reason, delay_ms) = (from_status?, stolen?, reason?, delay_ms?);
        let mut claim = Claim::default();
        for row in &rows {
            let task = task_at(row, &columns)?;
            let deferred: Option<&str> = row.try_get(reason).map_err(store_error)?;
            if let Some(raw) = deferred {
                let reason = DeferReason::parse(raw)
                    .ok_or_else(|| StoreError::Corrupt(format!("deferred_reason: {raw}")))?;
                let delay: i64 = row.try_get(delay_ms).map_err(store_error)?;
                claim.deferred.push(Deferral {
                    task,
                    reason,
                    delay: Duration::from_millis(u64::try_from(delay).unwrap_or(0)),
                });
                continue;
            }
            let from = status_of(row.try_get(from_status).map_err(store_error)?)?;
            check_claim(from, &task)?;
            claim.tasks.push(ClaimedTask {
                task,
                from,
                stolen: row.try_get(stolen).map_err(store_error)?,
            });
        }
        Ok(claim)
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
        let ran_ms: Vec<Option<f64>> = outcomes
            .iter()
            .map(|o| o.ran.map(|d| d.as_secs_f64() * 1000.0))
            .collect();
        let events: Vec<Option<&Notification>> =
            outcomes.iter().map(|o| o.event.as_ref()).collect();
        let note_ids: Vec<Option<Uuid>> = events.iter().map(|e| e.map(|e| e.id)).collect();
        let note_types: Vec<Option<&str>> = events
            .iter()
            .map(|e| e.map(|e| e.detail_type.as_str()))
            .collect();
        let note_details: Vec<Option<&Value>> =
            events.iter().map(|e| e.map(|e| &e.detail)).collect();
        let note_at: Vec<Option<DateTime<Utc>>> =
            events.iter().map(|e| e.map(|e| e.created_at)).collect();
        let client = self.client().await?;
        let stmt = client.prepare_cached(RECORD).await.map_err(store_error)?;
        let rows = client
            .query(
                &stmt,
                &[
                    &ids,
                    &versions,
                    &to,
                    &results,
                    &errors,
                    &retry_ms,
                    &enqueue,
                    &released,
                    &ran_ms,
                    &note_ids,
                    &note_types,
                    &note_details,
                    &note_at,
                ],
            )
            .await
            .map_err(store_error)?;
        let ids = rows
            .iter()
            .map(|row| row.try_get("id").map(TaskId::from_uuid))
            .collect::<Result<HashSet<TaskId>, _>>()
            .map_err(store_error)?;
        Ok(Recorded {
            events: outcomes
                .iter()
                .filter(|o| ids.contains(&o.id))
                .filter_map(|o| o.event.clone())
                .collect(),
            ids: outcomes
                .iter()
                .map(|o| o.id)
                .filter(|id| ids.contains(id))
                .collect(),
        })
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
