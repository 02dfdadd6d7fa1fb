//! The application's store, built from its configuration once per execution environment.

use std::sync::Arc;

use super::pool::PasswordSource;
use super::{PgSettings, PgSetupError, PostgresStore};
use crate::config::DatabaseConfig;
use crate::ports::{Secrets, SecretsError};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read the database password: {0}")]
    Password(#[from] SecretsError),
    #[error(transparent)]
    Database(#[from] PgSetupError),
}

/// The store for `db`, opened on first use: the password is read from `secrets` (when
/// `db.password_param` names one; a bare password or JSON with a `password`), the TLS connector
/// set up and the pool built by the first query, so a function's init makes no network call and
/// loads no CA store. A failed read is retried by the next query. When the server later refuses
/// the password (its secret was rotated), the pool reads the secret again.
///
/// # Errors
/// [`SetupError::Database`] at once for settings that can never work (URL, CA file).
pub fn open_store(
    db: &DatabaseConfig,
    secrets: Arc<dyn Secrets>,
) -> Result<PostgresStore, SetupError> {
    PgSettings::check(db)?;
    Ok(PostgresStore::opened_by(Opener {
        db: db.clone(),
        secrets,
    }))
}

/// What the first query needs to open the pool.
pub(super) struct Opener {
    db: DatabaseConfig,
    secrets: Arc<dyn Secrets>,
}

impl Opener {
    pub(super) async fn open(&self) -> Result<super::Pool, SetupError> {
        let source = self.db.password_param.as_ref().map(|param| PasswordSource {
            secrets: self.secrets.clone(),
            param: param.clone(),
        });
        let password = match &source {
            Some(source) => Some(source.read().await?),
            None => None,
        };
        Ok(PgSettings::new(&self.db, password.as_ref())?.pool_rereading(source)?)
    }
}
