//! [`TriggerStore`] on PostgreSQL.

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio_postgres::Row;

use super::error::store_error;
use super::PostgresStore;
use crate::domain::{DetailMatch, Scope, Tenant, Trigger, TriggerId};
use crate::ports::{CreateError, StoreError, TriggerStore};

const COLUMNS: &str = "id, tenant, name, event_source, detail_type, detail_match, kind, payload, \
     max_attempts, created_at";

fn trigger_from_row(row: &Row) -> Result<Trigger, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("trigger {what}"));
    let detail_match: Option<Value> = row.try_get("detail_match").map_err(store_error)?;
    Ok(Trigger {
        id: TriggerId::from_uuid(row.try_get("id").map_err(store_error)?),
        tenant: Tenant::parse(row.try_get("tenant").map_err(store_error)?)
            .map_err(|_| corrupt("tenant"))?,
        name: row.try_get("name").map_err(store_error)?,
        event_source: row.try_get("event_source").map_err(store_error)?,
        detail_type: row.try_get("detail_type").map_err(store_error)?,
        detail_match: detail_match
            .map(|m| {
                Ok::<_, StoreError>(DetailMatch {
                    pointer: m["pointer"]
                        .as_str()
                        .ok_or_else(|| corrupt("detail_match"))?
                        .to_owned(),
                    equals: m["equals"].clone(),
                })
            })
            .transpose()?,
        kind: row.try_get("kind").map_err(store_error)?,
        payload: row.try_get("payload").map_err(store_error)?,
        max_attempts: u32::try_from(row.try_get::<_, i32>("max_attempts").map_err(store_error)?)
            .map_err(|_| corrupt("max_attempts"))?,
        created_at: row.try_get("created_at").map_err(store_error)?,
    })
}

#[async_trait]
impl TriggerStore for PostgresStore {
    async fn create_trigger(&self, t: &Trigger) -> Result<(), CreateError> {
        let client = self.pool().await?.get().await.map_err(StoreError::from)?;
        let detail_match = t
            .detail_match
            .as_ref()
            .map(|m| json!({"pointer": m.pointer, "equals": m.equals}));
        let inserted = client
            .execute(
                "INSERT INTO tms.triggers (id, tenant, name, event_source, detail_type, \
                 detail_match, kind, payload, max_attempts, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (tenant, name) DO NOTHING",
                &[
                    t.id.as_uuid(),
                    &t.tenant.as_str(),
                    &t.name,
                    &t.event_source,
                    &t.detail_type,
                    &detail_match,
                    &t.kind,
                    &t.payload,
                    &(t.max_attempts as i32),
                    &t.created_at,
                ],
            )
            .await
            .map_err(store_error)?;
        if inserted == 0 {
            Err(CreateError::NameTaken)
        } else {
            Ok(())
        }
    }

    async fn list_triggers(
        &self,
        scope: &Scope,
        before: Option<TriggerId>,
        limit: u32,
    ) -> Result<Vec<Trigger>, StoreError> {
        self.id_page(
            "tms.triggers",
            COLUMNS,
            scope,
            before.map(|id| *id.as_uuid()),
            limit,
            trigger_from_row,
        )
        .await
    }

    async fn get_trigger(
        &self,
        scope: &Scope,
        id: TriggerId,
    ) -> Result<Option<Trigger>, StoreError> {
        let client = self.pool().await?.get().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM tms.triggers WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)"
        );
        client
            .query_opt(&sql, &[id.as_uuid(), &scope.tenant().map(Tenant::as_str)])
            .await
            .map_err(store_error)?
            .as_ref()
            .map(trigger_from_row)
            .transpose()
    }

    async fn delete_trigger(&self, scope: &Scope, id: TriggerId) -> Result<bool, StoreError> {
        let client = self.pool().await?.get().await?;
        let deleted = client
            .execute(
                "DELETE FROM tms.triggers WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)",
                &[id.as_uuid(), &scope.tenant().map(Tenant::as_str)],
            )
            .await
            .map_err(store_error)?;
        Ok(deleted > 0)
    }

    async fn triggers_for(&self, pairs: &[(String, String)]) -> Result<Vec<Trigger>, StoreError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let (sources, types): (Vec<&str>, Vec<&str>) =
            pairs.iter().map(|(s, t)| (s.as_str(), t.as_str())).unzip();
        let client = self.pool().await?.get().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM tms.triggers \
             WHERE (event_source, detail_type) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
             ORDER BY id"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
        client
            .query(&stmt, &[&sources, &types])
            .await
            .map_err(store_error)?
            .iter()
            .map(trigger_from_row)
            .collect()
    }
}
