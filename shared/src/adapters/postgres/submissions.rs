//! [`SubmissionStore`] on PostgreSQL: a whole batch of submissions (queue messages, a
//! schedule's fires, the tasks of matched events) in one statement.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::error::store_error;
use super::rows::SourceColumns;
use super::PostgresStore;
use crate::domain::{NewTask, TaskId};
use crate::ports::{StoreError, SubmissionStore, Submitted};

/// Inserts what is new, skips keys that exist, and answers for every input row: its own
/// insert, an insert of an earlier row of the same batch with the same key, or the task that
/// held the key before the statement began.
const SUBMIT: &str = "WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int4[],
                             $6::timestamptz[], $7::text[], $8::bytea[], $9::text[], $10::text[],
                             $11::uuid[], $12::timestamptz[], $13::uuid[], $14::text[],
                             $15::text[])
            WITH ORDINALITY
            AS i(id, tenant, kind, payload, max_attempts, run_after, idempotency_key,
                 request_hash, correlation_id, source, schedule_id, fire_time, trigger_id,
                 event_id, priority, ord)
     ), ins AS (
        INSERT INTO tms.tasks (id, tenant, kind, payload, max_attempts, run_after,
                               idempotency_key, request_hash, correlation_id, source,
                               schedule_id, fire_time, trigger_id, event_id, priority)
        SELECT id, tenant, kind, payload, max_attempts, COALESCE(run_after, now()),
               idempotency_key, request_hash, correlation_id, source, schedule_id, fire_time,
               trigger_id, event_id, priority
        FROM input ORDER BY ord
        ON CONFLICT (tenant, idempotency_key) DO NOTHING
        RETURNING id, tenant, idempotency_key, request_hash, status, attempts, correlation_id
     ), ev AS (
        INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, correlation_id)
        SELECT id, NULL, status, attempts, correlation_id FROM ins
     )
     SELECT COALESCE(ins.id, t.id) AS id,
            COALESCE(ins.id = i.id, false) AS created,
            COALESCE(ins.request_hash, t.request_hash) = i.request_hash AS hash_matches
     FROM input i
     LEFT JOIN ins ON ins.id = i.id
          OR (ins.tenant = i.tenant AND ins.idempotency_key = i.idempotency_key)
     LEFT JOIN tms.tasks t ON ins.id IS NULL
          AND t.tenant = i.tenant AND t.idempotency_key = i.idempotency_key
     ORDER BY i.ord";

#[async_trait]
impl SubmissionStore for PostgresStore {
    #[tracing::instrument(skip_all, fields(count = tasks.len()))]
    async fn submit(&self, tasks: &[NewTask]) -> Result<Vec<Option<Submitted>>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = tasks.iter().map(|t| *t.id.as_uuid()).collect();
        let tenants: Vec<&str> = tasks.iter().map(|t| t.tenant.as_str()).collect();
        let kinds: Vec<&str> = tasks.iter().map(|t| t.kind.as_str()).collect();
        let payloads: Vec<&serde_json::Value> = tasks.iter().map(|t| &t.payload).collect();
        let max_attempts: Vec<i32> = tasks.iter().map(|t| t.max_attempts as i32).collect();
        let run_after: Vec<Option<DateTime<Utc>>> = tasks.iter().map(|t| t.run_after).collect();
        let keys: Vec<Option<&str>> = tasks.iter().map(|t| t.idempotency_key.as_deref()).collect();
        let hashes: Vec<&[u8]> = tasks.iter().map(|t| t.request_hash.as_slice()).collect();
        let correlation: Vec<&str> = tasks.iter().map(|t| t.correlation_id.as_str()).collect();
        let sources: Vec<&str> = tasks.iter().map(|t| t.source.as_str()).collect();
        let columns: Vec<SourceColumns<'_>> =
            tasks.iter().map(|t| SourceColumns::of(&t.source)).collect();
        let schedule_ids: Vec<Option<Uuid>> = columns.iter().map(|c| c.schedule_id).collect();
        let fire_times: Vec<Option<DateTime<Utc>>> = columns.iter().map(|c| c.fire_time).collect();
        let trigger_ids: Vec<Option<Uuid>> = columns.iter().map(|c| c.trigger_id).collect();
        let event_ids: Vec<Option<&str>> = columns.iter().map(|c| c.event_id).collect();
        let priorities: Vec<&str> = tasks.iter().map(|t| t.priority.as_str()).collect();
        let params: [&(dyn ToSql + Sync); 15] = [
            &ids,
            &tenants,
            &kinds,
            &payloads,
            &max_attempts,
            &run_after,
            &keys,
            &hashes,
            &correlation,
            &sources,
            &schedule_ids,
            &fire_times,
            &trigger_ids,
            &event_ids,
            &priorities,
        ];
        let client = self.pool().await?.get().await?;
        let stmt = client.prepare_cached(SUBMIT).await.map_err(store_error)?;
        let rows = client.query(&stmt, &params).await.map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let id: Option<Uuid> = row.try_get("id").map_err(store_error)?;
                let created: bool = row.try_get("created").map_err(store_error)?;
                let hash_matches: Option<bool> =
                    row.try_get("hash_matches").map_err(store_error)?;
                Ok(id.map(|id| Submitted {
                    id: TaskId::from_uuid(id),
                    replayed: !created,
                    hash_matches: hash_matches.unwrap_or(false),
                }))
            })
            .collect()
    }
}
