//! [`NotificationStore`] on PostgreSQL: the lifecycle events recorded with their transitions and
//! not yet published.

use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::Row;
use uuid::Uuid;

use super::error::store_error;
use super::PostgresStore;
use crate::domain::{Notification, Tenant};
use crate::ports::{NotificationStore, StoreError};

const COLUMNS: &str = "id, tenant, detail_type, detail, subject, created_at";

/// A lifecycle event out of a row with [`COLUMNS`].
pub(crate) fn notification_from_row(row: &Row) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: row.try_get("id").map_err(store_error)?,
        tenant: Tenant::parse(row.try_get("tenant").map_err(store_error)?)
            .map_err(|e| StoreError::Corrupt(format!("notification tenant: {}", e.message)))?,
        detail_type: row.try_get("detail_type").map_err(store_error)?,
        detail: row.try_get("detail").map_err(store_error)?,
        subject: row.try_get("subject").map_err(store_error)?,
        created_at: row.try_get("created_at").map_err(store_error)?,
    })
}

/// A CTE `note` recording the lifecycle event of each import of CTE `source` (the imports
/// table's columns) that ended: `completed` or `failed`.
pub(crate) fn notify_imports(source: &str) -> String {
    format!(
        "note AS (
            INSERT INTO tms.notifications (id, tenant, detail_type, detail, subject)
            SELECT n.note_id, n.tenant,
                   CASE n.status WHEN 'completed' THEN '{completed}' ELSE '{failed}' END,
                   jsonb_strip_nulls(jsonb_build_object(
                       'event_id', n.note_id, 'tenant', n.tenant, 'import_id', n.id,
                       'bucket', n.bucket, 'key', n.object_key, 'status', n.status,
                       'correlation_id', n.correlation_id, 'rows_total', n.rows_total,
                       'rows_accepted', n.rows_accepted, 'rows_rejected', n.rows_rejected,
                       'rows_created', n.rows_created, 'error', n.error)),
                   n.id
            FROM (SELECT gen_random_uuid() AS note_id, s.* FROM {source} s
                  WHERE s.status IN ('completed', 'failed')) n
         )",
        completed = crate::domain::notification::IMPORT_COMPLETED,
        failed = crate::domain::notification::IMPORT_FAILED,
    )
}

/// Forgetting a published event need not be durable at once: lost, the relay publishes the
/// event again, which its stable id makes harmless.
const PUBLISHED: &str = "WITH async AS (SELECT set_config('synchronous_commit', 'off', true)) \
     DELETE FROM tms.notifications USING async WHERE id = ANY($1)";

#[async_trait]
impl NotificationStore for PostgresStore {
    async fn published(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let client = self.pool().await?.get().await?;
        let stmt = client
            .prepare_cached(PUBLISHED)
            .await
            .map_err(store_error)?;
        client
            .execute(&stmt, &[&ids])
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn unpublished_of(&self, subjects: &[Uuid]) -> Result<Vec<Notification>, StoreError> {
        if subjects.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.pool().await?.get().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM tms.notifications WHERE subject = ANY($1) ORDER BY created_at"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
        client
            .query(&stmt, &[&subjects])
            .await
            .map_err(store_error)?
            .iter()
            .map(notification_from_row)
            .collect()
    }

    async fn unpublished(
        &self,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        let client = self.pool().await?.get().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM tms.notifications \
             WHERE created_at < now() - $1::int8 * interval '1 millisecond' \
             ORDER BY created_at LIMIT $2"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
        let millis = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        client
            .query(&stmt, &[&millis, &i64::from(limit)])
            .await
            .map_err(store_error)?
            .iter()
            .map(notification_from_row)
            .collect()
    }
}
