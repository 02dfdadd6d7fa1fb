//! [`LimitStore`] on PostgreSQL: a tenant's flow-control limits, one `tms.flow_limits` row per
//! key, whose state the worker's claim keeps (see `store.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::error::store_error;
use super::PostgresStore;
use crate::domain::{KeyLimit, LimitKey, Limits, Rate, Tenant};
use crate::ports::{LimitStore, LimitUsage, StoreError, StoredLimits};

/// The tenant's limits with their state now (tokens refilled to this instant).
const SELECT: &str = "SELECT key, max_running, rate, burst, running, updated_at,
        least(burst, tokens + rate * extract(epoch FROM now() - refilled_at)) AS tokens_now
     FROM tms.flow_limits WHERE tenant = $1 ORDER BY key";

/// Locks the tenant's rows (claims wait for the change; the change waits for claims in flight).
const LOCK: &str = "SELECT key FROM tms.flow_limits WHERE tenant = $1 ORDER BY key FOR UPDATE";

const DELETE_OTHERS: &str = "DELETE FROM tms.flow_limits WHERE tenant = $1 AND key <> ALL($2)";

/// The new limits. A new rate starts full; a changed one keeps the tokens it has, up to its new
/// burst (booked tokens stay booked). A concurrency limit counts the tasks running now, in this
/// statement, which sees every claim committed before the lock above.
const UPSERT: &str = "INSERT INTO tms.flow_limits AS l
        (tenant, key, max_running, rate, burst, tokens, refilled_at, running, updated_at)
     SELECT $1, i.key, i.max_running, i.rate, i.burst, coalesce(i.burst, 0), now(),
            CASE WHEN i.max_running IS NULL THEN 0 ELSE (
                SELECT count(*) FROM tms.tasks t WHERE t.tenant = $1 AND t.status = 'running'
                   AND (i.key = '*' OR t.kind = substr(i.key, 6)))::int4 END,
            now()
     FROM unnest($2::text[], $3::int4[], $4::float8[], $5::float8[])
         AS i(key, max_running, rate, burst)
     ON CONFLICT (tenant, key) DO UPDATE SET
         max_running = excluded.max_running,
         rate = excluded.rate,
         burst = excluded.burst,
         tokens = CASE WHEN l.rate IS NULL OR excluded.rate IS NULL THEN excluded.tokens
                       ELSE least(l.tokens + l.rate * extract(epoch FROM now() - l.refilled_at),
                                  excluded.burst) END,
         refilled_at = now(),
         running = excluded.running,
         updated_at = now()";

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn stored_from_rows(rows: &[Row]) -> Result<StoredLimits, StoreError> {
    let mut keys = Vec::with_capacity(rows.len());
    let mut usage = Vec::with_capacity(rows.len());
    let mut updated_at: Option<DateTime<Utc>> = None;
    for row in rows {
        let raw: &str = row.try_get("key").map_err(store_error)?;
        let key = LimitKey::parse_key(raw).ok_or_else(|| corrupt("limit key", raw))?;
        let max_running: Option<i32> = row.try_get("max_running").map_err(store_error)?;
        let max_running = max_running
            .map(|n| u32::try_from(n).map_err(|e| corrupt("max_running", e)))
            .transpose()?;
        let rate: Option<f64> = row.try_get("rate").map_err(store_error)?;
        let burst: Option<f64> = row.try_get("burst").map_err(store_error)?;
        let rate = rate.zip(burst).map(|(per_second, burst)| Rate {
            per_second,
            burst: burst as u32,
        });
        let running: i32 = row.try_get("running").map_err(store_error)?;
        let tokens: Option<f64> = row.try_get("tokens_now").map_err(store_error)?;
        let changed: DateTime<Utc> = row.try_get("updated_at").map_err(store_error)?;
        updated_at = updated_at.max(Some(changed));
        usage.push((
            key.clone(),
            LimitUsage {
                running: max_running.map(|_| u32::try_from(running).unwrap_or(0)),
                tokens,
            },
        ));
        keys.push((key, KeyLimit { max_running, rate }));
    }
    Ok(StoredLimits {
        limits: Limits::from_keys(keys),
        usage,
        updated_at,
    })
}

#[async_trait]
impl LimitStore for PostgresStore {
    async fn limits(&self, tenant: &Tenant) -> Result<StoredLimits, StoreError> {
        let client = self.pool().await?.get().await?;
        let stmt = client.prepare_cached(SELECT).await.map_err(store_error)?;
        let rows = client
            .query(&stmt, &[&tenant.as_str()])
            .await
            .map_err(store_error)?;
        stored_from_rows(&rows)
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    async fn set_limits(
        &self,
        tenant: &Tenant,
        limits: &Limits,
    ) -> Result<StoredLimits, StoreError> {
        let keys = limits.keys();
        let names: Vec<String> = keys.iter().map(|(k, _)| k.as_key()).collect();
        let max_running: Vec<Option<i32>> = keys
            .iter()
            .map(|(_, l)| l.max_running.map(|n| n as i32))
            .collect();
        let rates: Vec<Option<f64>> = keys
            .iter()
            .map(|(_, l)| l.rate.map(|r| r.per_second))
            .collect();
        let bursts: Vec<Option<f64>> = keys
            .iter()
            .map(|(_, l)| l.rate.map(|r| f64::from(r.burst)))
            .collect();
        let mut client = self.pool().await?.get().await?;
        let txn = client.transaction().await.map_err(store_error)?;
        txn.execute(LOCK, &[&tenant.as_str()])
            .await
            .map_err(store_error)?;
        txn.execute(DELETE_OTHERS, &[&tenant.as_str(), &names])
            .await
            .map_err(store_error)?;
        if !keys.is_empty() {
            txn.execute(
                UPSERT,
                &[&tenant.as_str(), &names, &max_running, &rates, &bursts],
            )
            .await
            .map_err(store_error)?;
        }
        let rows = txn
            .query(SELECT, &[&tenant.as_str()])
            .await
            .map_err(store_error)?;
        txn.commit().await.map_err(store_error)?;
        stored_from_rows(&rows)
    }
}
