//! [`SubscriptionStore`], [`WebhookSigningStore`] and [`SigningLookup`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::error::store_error;
use super::PostgresStore;
use crate::domain::{
    Scope, SigningKeys, SigningSecret, Subscription, SubscriptionId, TaskKind, Tenant,
    WebhookSigning,
};
use crate::ports::{Signing, SigningLookup, StoreError, SubscriptionStore, WebhookSigningStore};

const COLUMNS: &str = "id, tenant, url, event_types, kinds, secret, previous_secret, \
     previous_until, created_at, updated_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("subscription {what}"))
}

fn keys_from_row(row: &Row) -> Result<SigningKeys, StoreError> {
    let secret = |raw: &str| SigningSecret::parse(raw).map_err(|_| corrupt("secret"));
    Ok(SigningKeys {
        current: secret(row.try_get("secret").map_err(store_error)?)?,
        previous: row
            .try_get::<_, Option<&str>>("previous_secret")
            .map_err(store_error)?
            .map(secret)
            .transpose()?,
        previous_until: row.try_get("previous_until").map_err(store_error)?,
    })
}

fn subscription_from_row(row: &Row) -> Result<Subscription, StoreError> {
    let kinds: Option<Vec<String>> = row.try_get("kinds").map_err(store_error)?;
    Ok(Subscription {
        id: SubscriptionId::from_uuid(row.try_get("id").map_err(store_error)?),
        tenant: Tenant::parse(row.try_get("tenant").map_err(store_error)?)
            .map_err(|_| corrupt("tenant"))?,
        url: row.try_get("url").map_err(store_error)?,
        event_types: row.try_get("event_types").map_err(store_error)?,
        kinds: kinds
            .map(|ks| {
                ks.iter()
                    .map(|k| TaskKind::parse(k).map_err(|_| corrupt("kinds")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?,
        keys: keys_from_row(row)?,
        created_at: row.try_get("created_at").map_err(store_error)?,
        updated_at: row.try_get("updated_at").map_err(store_error)?,
    })
}

fn signing_from_row(row: &Row) -> Result<WebhookSigning, StoreError> {
    Ok(WebhookSigning {
        tenant: Tenant::parse(row.try_get("tenant").map_err(store_error)?)
            .map_err(|_| corrupt("tenant"))?,
        keys: keys_from_row(row)?,
        created_at: row.try_get("created_at").map_err(store_error)?,
        updated_at: row.try_get("updated_at").map_err(store_error)?,
    })
}

fn kinds_of(s: &Subscription) -> Option<Vec<&'static str>> {
    s.kinds
        .as_ref()
        .map(|ks| ks.iter().map(TaskKind::as_str).collect())
}

/// A subscription within a tenant (`$2`) or, with `$2` null, every tenant.
const IN_SCOPE: &str = "id = $1 AND ($2::text IS NULL OR tenant = $2)";

#[async_trait]
impl SubscriptionStore for PostgresStore {
    async fn create_subscription(&self, s: &Subscription) -> Result<(), StoreError> {
        let client = self.pool().await?.get().await?;
        client
            .execute(
                "INSERT INTO tms.subscriptions (id, tenant, url, event_types, kinds, secret, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                &[
                    s.id.as_uuid(),
                    &s.tenant.as_str(),
                    &s.url,
                    &s.event_types,
                    &kinds_of(s),
                    &s.keys.current.expose(),
                    &s.created_at,
                ],
            )
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn list_subscriptions(
        &self,
        scope: &Scope,
        before: Option<SubscriptionId>,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.id_page(
            "tms.subscriptions",
            COLUMNS,
            scope,
            before.map(|id| *id.as_uuid()),
            limit,
            subscription_from_row,
        )
        .await
    }

    async fn get_subscription(
        &self,
        scope: &Scope,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        let client = self.pool().await?.get().await?;
        let sql = format!("SELECT {COLUMNS} FROM tms.subscriptions WHERE {IN_SCOPE}");
        client
            .query_opt(&sql, &[id.as_uuid(), &scope.tenant().map(Tenant::as_str)])
            .await
            .map_err(store_error)?
            .as_ref()
            .map(subscription_from_row)
            .transpose()
    }

    async fn update_subscription(
        &self,
        scope: &Scope,
        s: &Subscription,
        read_at: DateTime<Utc>,
    ) -> Result<Option<Subscription>, StoreError> {
        let client = self.pool().await?.get().await?;
        let sql = format!(
            "UPDATE tms.subscriptions SET url = $3, event_types = $4, kinds = $5, \
             updated_at = greatest($6, updated_at + interval '1 microsecond') \
             WHERE {IN_SCOPE} AND updated_at = $7 RETURNING {COLUMNS}"
        );
        client
            .query_opt(
                &sql,
                &[
                    s.id.as_uuid(),
                    &scope.tenant().map(Tenant::as_str),
                    &s.url,
                    &s.event_types,
                    &kinds_of(s),
                    &s.updated_at,
                    &read_at,
                ],
            )
            .await
            .map_err(store_error)?
            .as_ref()
            .map(subscription_from_row)
            .transpose()
    }

    async fn rotate_subscription_secret(
        &self,
        scope: &Scope,
        id: SubscriptionId,
        secret: &SigningSecret,
        until: DateTime<Utc>,
    ) -> Result<Option<Subscription>, StoreError> {
        let client = self.pool().await?.get().await?;
        let sql = format!(
            "UPDATE tms.subscriptions SET previous_secret = secret, previous_until = $4, \
             secret = $3, updated_at = greatest(now(), updated_at + interval '1 microsecond') \
             WHERE {IN_SCOPE} RETURNING {COLUMNS}"
        );
        client
            .query_opt(
                &sql,
                &[
                    id.as_uuid(),
                    &scope.tenant().map(Tenant::as_str),
                    &secret.expose(),
                    &until,
                ],
            )
            .await
            .map_err(store_error)?
            .as_ref()
            .map(subscription_from_row)
            .transpose()
    }

    async fn delete_subscription(
        &self,
        scope: &Scope,
        id: SubscriptionId,
    ) -> Result<bool, StoreError> {
        let client = self.pool().await?.get().await?;
        let deleted = client
            .execute(
                &format!("DELETE FROM tms.subscriptions WHERE {IN_SCOPE}"),
                &[id.as_uuid(), &scope.tenant().map(Tenant::as_str)],
            )
            .await
            .map_err(store_error)?;
        Ok(deleted > 0)
    }

    async fn subscriptions_for(
        &self,
        tenants: &[Tenant],
        event_types: &[String],
    ) -> Result<Vec<Subscription>, StoreError> {
        if tenants.is_empty() || event_types.is_empty() {
            return Ok(Vec::new());
        }
        let tenants: Vec<&str> = tenants.iter().map(Tenant::as_str).collect();
        let client = self.pool().await?.get().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM tms.subscriptions \
             WHERE tenant = ANY($1) AND event_types && $2::text[] ORDER BY id"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
        client
            .query(&stmt, &[&tenants, &event_types])
            .await
            .map_err(store_error)?
            .iter()
            .map(subscription_from_row)
            .collect()
    }
}

const SIGNING_COLUMNS: &str =
    "tenant, secret, previous_secret, previous_until, created_at, updated_at";

#[async_trait]
impl WebhookSigningStore for PostgresStore {
    async fn webhook_signing(&self, tenant: &Tenant) -> Result<Option<WebhookSigning>, StoreError> {
        let client = self.pool().await?.get().await?;
        client
            .query_opt(
                &format!("SELECT {SIGNING_COLUMNS} FROM tms.webhook_signing WHERE tenant = $1"),
                &[&tenant.as_str()],
            )
            .await
            .map_err(store_error)?
            .as_ref()
            .map(signing_from_row)
            .transpose()
    }

    async fn set_webhook_signing(
        &self,
        tenant: &Tenant,
        secret: &SigningSecret,
    ) -> Result<WebhookSigning, StoreError> {
        let client = self.pool().await?.get().await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO tms.webhook_signing (tenant, secret) VALUES ($1, $2) \
                     ON CONFLICT (tenant) DO UPDATE SET secret = excluded.secret, \
                         previous_secret = NULL, previous_until = NULL, updated_at = now() \
                     RETURNING {SIGNING_COLUMNS}"
                ),
                &[&tenant.as_str(), &secret.expose()],
            )
            .await
            .map_err(store_error)?;
        signing_from_row(&row)
    }

    async fn rotate_webhook_signing(
        &self,
        tenant: &Tenant,
        secret: &SigningSecret,
        until: DateTime<Utc>,
    ) -> Result<Option<WebhookSigning>, StoreError> {
        let client = self.pool().await?.get().await?;
        client
            .query_opt(
                &format!(
                    "UPDATE tms.webhook_signing SET previous_secret = secret, \
                     previous_until = $3, secret = $2, updated_at = now() \
                     WHERE tenant = $1 RETURNING {SIGNING_COLUMNS}"
                ),
                &[&tenant.as_str(), &secret.expose(), &until],
            )
            .await
            .map_err(store_error)?
            .as_ref()
            .map(signing_from_row)
            .transpose()
    }

    async fn delete_webhook_signing(&self, tenant: &Tenant) -> Result<bool, StoreError> {
        let client = self.pool().await?.get().await?;
        let deleted = client
            .execute(
                "DELETE FROM tms.webhook_signing WHERE tenant = $1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(store_error)?;
        Ok(deleted > 0)
    }
}

/// The tenants' webhook keys (`id` null) and the subscriptions, one row each.
const SIGNING_FOR: &str = "SELECT NULL::uuid AS id, tenant, NULL::text AS url, \
         NULL::text[] AS event_types, NULL::text[] AS kinds, secret, previous_secret, \
         previous_until, created_at, updated_at \
     FROM tms.webhook_signing WHERE tenant = ANY($1) \
     UNION ALL \
     SELECT id, tenant, url, event_types, kinds, secret, previous_secret, previous_until, \
         created_at, updated_at \
     FROM tms.subscriptions WHERE id = ANY($2)";

#[async_trait]
impl SigningLookup for PostgresStore {
    #[tracing::instrument(skip_all, fields(tenants = tenants.len(), subscriptions = subscriptions.len()))]
    async fn signing_for(
        &self,
        tenants: &[Tenant],
        subscriptions: &[SubscriptionId],
    ) -> Result<Signing, StoreError> {
        if tenants.is_empty() && subscriptions.is_empty() {
            return Ok(Signing::default());
        }
        let tenants: Vec<&str> = tenants.iter().map(Tenant::as_str).collect();
        let ids: Vec<Uuid> = subscriptions.iter().map(|id| *id.as_uuid()).collect();
        let client = self.pool().await?.get().await?;
        let stmt = client
            .prepare_cached(SIGNING_FOR)
            .await
            .map_err(store_error)?;
        let mut signing = Signing::default();
        for row in client
            .query(&stmt, &[&tenants, &ids])
            .await
            .map_err(store_error)?
        {
            if row
                .try_get::<_, Option<Uuid>>("id")
                .map_err(store_error)?
                .is_some()
            {
                let s = subscription_from_row(&row)?;
                signing.subscriptions.insert(s.id, s);
            } else {
                let w = signing_from_row(&row)?;
                signing.webhooks.insert(w.tenant, w.keys);
            }
        }
        Ok(signing)
    }
}
