//! The overview of a scope (`GET /v1/stats`, the console's first page): six statements sent
//! at once on one connection (pipelined), each on an index but the counts.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::error::store_error;
use super::rows::status_of;
use crate::domain::{DeferReason, Scope};
use crate::ports::{MinuteCounts, Overview, StoreError};

/// Tasks per status and kind: a full count of the scope's tasks (an index scan for a tenant).
const COUNTS: &str = "SELECT status, kind, count(*) FROM tms.tasks \
     WHERE ($1::text IS NULL OR tenant = $1) GROUP BY status, kind ORDER BY status, kind";

/// Successes per minute of the last hour (`tasks_retention` covers succeeded tasks by
/// `updated_at`, which is when they succeeded).
const SUCCEEDED_PER_MINUTE: &str = "SELECT date_trunc('minute', updated_at) AS minute, count(*) \
     FROM tms.tasks WHERE status = 'succeeded' AND updated_at > now() - interval '1 hour' \
     AND ($1::text IS NULL OR tenant = $1) GROUP BY 1";

/// Failed attempts per minute of the last hour (`task_events_failures`).
const FAILED_PER_MINUTE: &str = "SELECT date_trunc('minute', e.at) AS minute, count(*) \
     FROM tms.task_events e JOIN tms.tasks t ON t.id = e.task_id \
     WHERE e.to_status IN ('failed', 'dead') AND e.at > now() - interval '1 hour' \
     AND ($1::text IS NULL OR t.tenant = $1) GROUP BY 1";

/// Created → succeeded of the last hour's successes, in milliseconds.
const LATENCY: &str = "SELECT \
     percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) \
     FROM (SELECT extract(epoch FROM updated_at - created_at) * 1000 AS ms FROM tms.tasks \
           WHERE status = 'succeeded' AND updated_at > now() - interval '1 hour' \
           AND ($1::text IS NULL OR tenant = $1)) AS done";

/// The most overdue due pending task's wait, in milliseconds (`tasks_relay`).
const OLDEST_PENDING: &str = "SELECT (extract(epoch FROM now() - min(run_after)) * 1000)::bigint \
     FROM tms.tasks WHERE status = 'pending' AND run_after <= now() \
     AND ($1::text IS NULL OR tenant = $1)";

/// Tasks a limit deferred, per reason (`tasks_deferred`); not those that ended since.
const DEFERRED: &str = "SELECT deferred_reason, count(*) FROM tms.tasks \
     WHERE deferred_reason IS NOT NULL AND status IN ('pending', 'failed', 'running') \
     AND ($1::text IS NULL OR tenant = $1) GROUP BY 1 ORDER BY 1";

/// # Errors
/// [`StoreError`] when the database fails.
pub(super) async fn read(
    client: &tokio_postgres::Client,
    scope: &Scope,
) -> Result<Overview, StoreError> {
    let tenant = scope.tenant().map(|t| t.as_str());
    let params: [&(dyn ToSql + Sync); 1] = [&tenant];
    let (counts, succeeded, failed, latency, oldest, deferred) = futures::try_join!(
        client.query(COUNTS, &params),
        client.query(SUCCEEDED_PER_MINUTE, &params),
        client.query(FAILED_PER_MINUTE, &params),
        client.query_one(LATENCY, &params),
        client.query_one(OLDEST_PENDING, &params),
        client.query(DEFERRED, &params),
    )
    .map_err(store_error)?;
    let deferred = deferred
        .iter()
        .map(|row| {
            let reason: &str = row.get(0);
            let n: i64 = row.get(1);
            DeferReason::parse(reason)
                .map(|r| (r, u64::try_from(n).unwrap_or(0)))
                .ok_or_else(|| StoreError::Corrupt(format!("deferred_reason: {reason}")))
        })
        .collect::<Result<_, _>>()?;
    let counts = counts
        .iter()
        .map(|row| {
            let n: i64 = row.get(2);
            Ok((
                status_of(row.get(0))?,
                row.get::<_, String>(1),
                u64::try_from(n).unwrap_or(0),
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    let mut minutes: BTreeMap<DateTime<Utc>, MinuteCounts> = BTreeMap::new();
    for (rows, failures) in [(&succeeded, false), (&failed, true)] {
        for row in rows {
            let minute: DateTime<Utc> = row.get(0);
            let n = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
            let counts = minutes.entry(minute).or_insert(MinuteCounts {
                minute,
                succeeded: 0,
                failed: 0,
            });
            if failures {
                counts.failed += n;
            } else {
                counts.succeeded += n;
            }
        }
    }
    let oldest: Option<i64> = oldest.get(0);
    Ok(Overview {
        counts,
        per_minute: minutes.into_values().collect(),
        latency_p50_ms: latency.get(0),
        latency_p95_ms: latency.get(1),
        oldest_pending: oldest.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        deferred,
    })
}
