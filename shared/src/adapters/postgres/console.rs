//! The console's sessions and OpenID Connect sign-ins on PostgreSQL.

use async_trait::async_trait;

use super::error::store_error;
use super::store::PostgresStore;
use crate::domain::{Caller, Role, Tenant};
use crate::ports::{ConsoleSession, ConsoleStore, PendingLogin, StoreError};

const INSERT_SESSION: &str = "INSERT INTO tms.console_sessions \
     (id_hash, tenant, role, subject, token_hash, csrf, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

const SELECT_SESSION: &str = "SELECT tenant, role, subject, token_hash, csrf, expires_at \
     FROM tms.console_sessions WHERE id_hash = $1 AND expires_at > now()";

const DELETE_SESSION: &str = "DELETE FROM tms.console_sessions WHERE id_hash = $1";

const INSERT_LOGIN: &str =
    "INSERT INTO tms.console_logins (state, verifier, nonce, expires_at) VALUES ($1, $2, $3, $4)";

const TAKE_LOGIN: &str = "DELETE FROM tms.console_logins WHERE state = $1 \
     RETURNING verifier, nonce, expires_at, expires_at > now()";

fn digest(bytes: Option<Vec<u8>>) -> Result<Option<[u8; 32]>, StoreError> {
    bytes
        .map(|b| {
            b.try_into()
                .map_err(|_| StoreError::Corrupt("a session hash is not 32 bytes".into()))
        })
        .transpose()
}

#[async_trait]
impl ConsoleStore for PostgresStore {
    async fn create_session(&self, session: &ConsoleSession) -> Result<(), StoreError> {
        let client = self.pool().await?.get().await?;
        client
            .execute(
                INSERT_SESSION,
                &[
                    &session.id_hash.as_slice(),
                    &session.caller.tenant.as_str(),
                    &session.caller.role.as_str(),
                    &session.subject,
                    &session.token_hash.as_ref().map(<[u8; 32]>::as_slice),
                    &session.csrf,
                    &session.expires_at,
                ],
            )
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<ConsoleSession>, StoreError> {
        let client = self.pool().await?.get().await?;
        let Some(row) = client
            .query_opt(SELECT_SESSION, &[&id_hash.as_slice()])
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let tenant = Tenant::parse(row.get::<_, &str>(0))
            .map_err(|e| StoreError::Corrupt(format!("session tenant: {}", e.message)))?;
        let role = Role::parse(row.get::<_, &str>(1)).map_err(StoreError::Corrupt)?;
        Ok(Some(ConsoleSession {
            id_hash: *id_hash,
            caller: Caller { tenant, role },
            subject: row.get(2),
            token_hash: digest(row.get(3))?,
            csrf: row.get(4),
            expires_at: row.get(5),
        }))
    }

    async fn end_session(&self, id_hash: &[u8; 32]) -> Result<(), StoreError> {
        let client = self.pool().await?.get().await?;
        client
            .execute(DELETE_SESSION, &[&id_hash.as_slice()])
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn begin_login(&self, login: &PendingLogin) -> Result<(), StoreError> {
        let client = self.pool().await?.get().await?;
        client
            .execute(
                INSERT_LOGIN,
                &[
                    &login.state,
                    &login.verifier,
                    &login.nonce,
                    &login.expires_at,
                ],
            )
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn take_login(&self, state: &str) -> Result<Option<PendingLogin>, StoreError> {
        let client = self.pool().await?.get().await?;
        let row = client
            .query_opt(TAKE_LOGIN, &[&state])
            .await
            .map_err(store_error)?;
        Ok(row.filter(|r| r.get::<_, bool>(3)).map(|r| PendingLogin {
            state: state.to_owned(),
            verifier: r.get(0),
            nonce: r.get(1),
            expires_at: r.get(2),
        }))
    }
}
