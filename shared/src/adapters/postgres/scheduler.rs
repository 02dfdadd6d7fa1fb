//! [`SchedulerStore`] on PostgreSQL: job locks, the relay's outbox scan, expired leases,
//! retention and the stats gauges.

use std::sync::LazyLock;
use std::time::Duration;

use super::Object;
use async_trait::async_trait;

use super::error::store_error;
use super::rows::{status_of, task_columns, tasks_from_rows};
use super::PostgresStore;
use crate::domain::{CorrelationId, Priority, Status, Task, TaskId, Tenant, WorkMessage};
use crate::ports::{Dispatch, JobLock, RelayRules, SchedulerStore, StoreError, TaskStats};

/// The first key of every job lock (`tms\0`); the second is the hash of the job's name.
const JOB_LOCK_CLASS: i32 = 0x746d_7300;

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1, hashtext($2))";
const UNLOCK: &str = "SELECT pg_advisory_unlock($1, hashtext($2))";

/// Due (or soon due) tasks whose message was never sent, or was sent so long ago that it is
/// presumed lost. Marking them in the same statement makes a concurrent relay skip them.
const RELAY: &str = "WITH due AS (
        SELECT id FROM tms.tasks
        WHERE status IN ('pending', 'failed')
          AND run_after <= now() + $1::int8 * interval '1 millisecond'
          AND CASE WHEN enqueued_at IS NULL
                   THEN status = 'failed'
                        OR updated_at < now() - $2::int8 * interval '1 millisecond'
                   ELSE $5 AND greatest(enqueued_at, run_after)
                        < now() - $3::int8 * interval '1 millisecond'
              END
        ORDER BY run_after
        LIMIT $4
        FOR UPDATE SKIP LOCKED
     )
     UPDATE tms.tasks t SET enqueued_at = now()
     FROM due WHERE t.id = due.id
     RETURNING t.id, t.tenant, t.correlation_id, t.priority,
        (extract(epoch FROM greatest(t.run_after - now(), interval '0')) * 1000)::int8 AS delay_ms";

static EXPIRED_LEASES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM tms.tasks WHERE status = 'running' AND lease_until < now() \
         ORDER BY lease_until LIMIT $1",
        task_columns(None)
    )
});

/// The status list matches the `tasks_retention` index; the events go in the same statement as
/// their task (migration V2 dropped the foreign key that cascaded them).
/// The console's expired sessions and sign-ins (few: one row per signed-in browser).
const PURGE_CONSOLE: &str = "WITH sessions AS (
        DELETE FROM tms.console_sessions WHERE expires_at <= now() RETURNING 1
     ), logins AS (
        DELETE FROM tms.console_logins WHERE expires_at <= now() RETURNING 1
     )
     SELECT (SELECT count(*) FROM sessions) + (SELECT count(*) FROM logins) AS n";

const PURGE: &str = "WITH doomed AS (
        SELECT id FROM tms.tasks
        WHERE status IN ('succeeded', 'cancelled')
          AND updated_at < now() - $1::int8 * interval '1 millisecond'
        ORDER BY updated_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
     ), gone AS (
        DELETE FROM tms.tasks t USING doomed WHERE t.id = doomed.id RETURNING t.id
     ), events AS (
        DELETE FROM tms.task_events e USING gone WHERE e.task_id = gone.id
     )
     SELECT count(*) AS n FROM gone";

/// Imports left `running` by an importer that stopped (timeout, out of memory): the lock key is
/// the one the importer holds while it runs (`imports::lock_key`, the two halves of the id
/// XORed), taken here for the transaction so a live import is never touched.
/// Imports left running by an importer that stopped: failed, with their lifecycle events (the
/// relay publishes them).
static FAIL_STALE_IMPORTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH stale AS MATERIALIZED (
        SELECT id, replace(id::text, '-', '') AS hex FROM tms.imports
        WHERE status = 'running' AND started_at < now() - $1::int8 * interval '1 millisecond'
        ORDER BY started_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
     ), orphaned AS MATERIALIZED (
        SELECT id FROM stale
        WHERE pg_try_advisory_xact_lock(
            ('x' || left(hex, 16))::bit(64)::int8 # ('x' || right(hex, 16))::bit(64)::int8)
     ), failed AS (
        UPDATE tms.imports i SET status = 'failed', finished_at = now(), updated_at = now(),
            error = 'the importer stopped before the import finished (running for more than '
                || ($1::int8 / 1000) || ' s); the next delivery of its notification starts it again'
        FROM orphaned WHERE i.id = orphaned.id
        RETURNING i.*
     ), {note}
     SELECT count(*) AS n FROM failed",
        note = super::notifications::notify_imports("failed"),
    )
});

/// The concurrency limits, locked in key order (as the worker's claim locks them), so that no
/// claim or outcome moves their counts while they are counted again.
const LOCK_CONCURRENCY_LIMITS: &str = "SELECT tenant, key FROM tms.flow_limits \
     WHERE max_running IS NOT NULL ORDER BY tenant, key FOR UPDATE";

/// The running tasks of each concurrency limit, counted (on `tasks_tenant_status_newest`) in a
/// statement of its own after the lock, so it sees every claim committed before it.
const RECOUNT_RUNNING: &str = "WITH counted AS (
        SELECT l.tenant, l.key, (SELECT count(*) FROM tms.tasks t
            WHERE t.tenant = l.tenant AND t.status = 'running'
              AND (l.key = '*' OR t.kind = substr(l.key, 6)))::int4 AS n
        FROM tms.flow_limits l WHERE l.max_running IS NOT NULL
     )
     UPDATE tms.flow_limits l SET running = c.n
     FROM counted c WHERE l.tenant = c.tenant AND l.key = c.key AND l.running <> c.n";

const COUNT_BY_STATUS: &str = "SELECT status, count(*) AS n FROM tms.tasks GROUP BY status";

const OLDEST_PENDING: &str = "SELECT (extract(epoch FROM now() - min(run_after)) * 1000)::int8 \
     FROM tms.tasks WHERE status = 'pending' AND run_after <= now()";

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Holds the pooled connection that owns the session lock. Dropped without
/// [`JobLock::release`], it closes that connection instead of returning it to the pool, so the
/// server releases the lock.
struct PgJobLock {
    client: Option<Object>,
    job: String,
}

#[async_trait]
impl JobLock for PgJobLock {
    async fn release(mut self: Box<Self>) -> Result<(), StoreError> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        match client
            .execute(UNLOCK, &[&JOB_LOCK_CLASS, &self.job.as_str()])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                drop(Object::take(client));
                Err(store_error(e))
            }
        }
    }
}

impl Drop for PgJobLock {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

/// The lock of a pool of one connection: the lock stays with that connection's session while
/// the connection goes back to the pool, where the job's own statements take it in turn (a
/// scheduler invocation runs one job at a time). Should the connection be replaced meanwhile,
/// its session, and so the lock, ended with it.
struct SharedJobLock {
    store: PostgresStore,
    job: Option<String>,
}

impl SharedJobLock {
    async fn unlock(store: &PostgresStore, job: &str) -> Result<(), StoreError> {
        let client = store.pool().await?.get().await?;
        let held: bool = client
            .query_one(UNLOCK, &[&JOB_LOCK_CLASS, &job])
            .await
            .map_err(|e| {
                drop(Object::take(client));
                store_error(e)
            })?
            .get(0);
        if !held {
            tracing::info!(
                job,
                "the job lock's connection was replaced during the run; the lock ended with it"
            );
        }
        Ok(())
    }
}

#[async_trait]
impl JobLock for SharedJobLock {
    async fn release(mut self: Box<Self>) -> Result<(), StoreError> {
        match self.job.take() {
            Some(job) => Self::unlock(&self.store, &job).await,
            None => Ok(()),
        }
    }
}

impl Drop for SharedJobLock {
    fn drop(&mut self) {
        // Dropped unreleased (a panic, a cancelled run): unlocked from a task of its own.
        if let (Some(job), Ok(runtime)) = (self.job.take(), tokio::runtime::Handle::try_current()) {
            let store = self.store.clone();
            runtime.spawn(async move {
                if let Err(e) = Self::unlock(&store, &job).await {
                    tracing::warn!(job, error = %e, "job lock not released");
                }
            });
        }
    }
}

impl PostgresStore {
    /// Runs `sql` (parameters: an age in milliseconds and a row limit) and returns its `n`.
    async fn count_of(
        &self,
        sql: &str,
        older_than: Duration,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let client = self.pool().await?.get().await?;
        let stmt = client.prepare_cached(sql).await.map_err(store_error)?;
        let row = client
            .query_one(&stmt, &[&millis(older_than), &i64::from(limit)])
            .await
            .map_err(store_error)?;
        let n: i64 = row.try_get("n").map_err(store_error)?;
        u64::try_from(n).map_err(|e| StoreError::Corrupt(format!("row count: {e}")))
    }
}

#[async_trait]
impl SchedulerStore for PostgresStore {
    async fn lock_job(&self, job: &str) -> Result<Option<Box<dyn JobLock>>, StoreError> {
        let pool = self.pool().await?;
        let client = pool.get().await?;
        let locked: bool = client
            .query_one(TRY_LOCK, &[&JOB_LOCK_CLASS, &job])
            .await
            .map_err(store_error)?
            .get(0);
        if !locked {
            return Ok(None);
        }
        // NOTE: with one connection (TMS_DATABASE_POOL_SIZE=1, as deployed) the job's
        // statements need the connection the lock is on; with more, the lock keeps its own.
        if pool.status().max_size > 1 {
            return Ok(Some(Box::new(PgJobLock {
                client: Some(client),
                job: job.to_owned(),
            })));
        }
        drop(client);
        Ok(Some(Box::new(SharedJobLock {
            store: self.clone(),
            job: Some(job.to_owned()),
        })))
    }

    #[tracing::instrument(skip_all, fields(limit))]
    async fn relay_batch(
        &self,
        rules: &RelayRules,
        limit: u32,
    ) -> Result<Vec<Dispatch>, StoreError> {
        let client = self.pool().await?.get().await?;
        let stmt = client.prepare_cached(RELAY).await.map_err(store_error)?;
        let rows = client
            .query(
                &stmt,
                &[
                    &millis(rules.horizon),
                    &millis(rules.unsent_after),
                    &millis(rules.in_flight_for),
                    &i64::from(limit),
                    &rules.resend_presumed_lost,
                ],
            )
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let corrupt = |what: &str, e: &dyn std::fmt::Display| {
                    StoreError::Corrupt(format!("{what}: {e}"))
                };
                let tenant: &str = row.try_get("tenant").map_err(store_error)?;
                let correlation: &str = row.try_get("correlation_id").map_err(store_error)?;
                let delay_ms: i64 = row.try_get("delay_ms").map_err(store_error)?;
                let priority: &str = row.try_get("priority").map_err(store_error)?;
                Ok(Dispatch {
                    message: WorkMessage {
                        task_id: TaskId::from_uuid(row.try_get("id").map_err(store_error)?),
                        tenant: Tenant::parse(tenant).map_err(|e| corrupt("tenant", &e))?,
                        correlation_id: CorrelationId::parse(correlation)
                            .map_err(|e| corrupt("correlation_id", &e))?,
                    },
                    delay: Duration::from_millis(u64::try_from(delay_ms).unwrap_or(0)),
                    priority: Priority::parse(priority).map_err(|e| corrupt("priority", &e))?,
                })
            })
            .collect()
    }

    async fn recount_running(&self) -> Result<u64, StoreError> {
        let mut client = self.pool().await?.get().await?;
        let txn = client.transaction().await.map_err(store_error)?;
        txn.execute(LOCK_CONCURRENCY_LIMITS, &[])
            .await
            .map_err(store_error)?;
        let fixed = txn
            .execute(RECOUNT_RUNNING, &[])
            .await
            .map_err(store_error)?;
        txn.commit().await.map_err(store_error)?;
        Ok(fixed)
    }

    async fn expired_leases(&self, limit: u32) -> Result<Vec<Task>, StoreError> {
        let client = self.pool().await?.get().await?;
        let stmt = client
            .prepare_cached(&EXPIRED_LEASES)
            .await
            .map_err(store_error)?;
        let rows = client
            .query(&stmt, &[&i64::from(limit)])
            .await
            .map_err(store_error)?;
        tasks_from_rows(&rows)
    }

    #[tracing::instrument(skip_all, fields(limit))]
    async fn fail_stale_imports(
        &self,
        older_than: Duration,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.count_of(&FAIL_STALE_IMPORTS, older_than, limit).await
    }

    async fn purge_finished(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError> {
        self.count_of(PURGE, older_than, limit).await
    }

    async fn purge_console(&self) -> Result<u64, StoreError> {
        let client = self.pool().await?.get().await?;
        let row = client
            .query_one(PURGE_CONSOLE, &[])
            .await
            .map_err(store_error)?;
        let n: i64 = row.try_get("n").map_err(store_error)?;
        u64::try_from(n).map_err(|e| StoreError::Corrupt(format!("row count: {e}")))
    }

    async fn stats(&self) -> Result<TaskStats, StoreError> {
        let client = self.pool().await?.get().await?;
        let mut counts: Vec<(Status, u64)> = Status::ALL.iter().map(|s| (*s, 0)).collect();
        for row in client
            .query(COUNT_BY_STATUS, &[])
            .await
            .map_err(store_error)?
        {
            let status = status_of(row.try_get("status").map_err(store_error)?)?;
            let n: i64 = row.try_get("n").map_err(store_error)?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
                slot.1 = u64::try_from(n).unwrap_or(0);
            }
        }
        let oldest: Option<i64> = client
            .query_one(OLDEST_PENDING, &[])
            .await
            .map_err(store_error)?
            .get(0);
        Ok(TaskStats {
            by_status: counts,
            oldest_pending: oldest.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        })
    }
}
