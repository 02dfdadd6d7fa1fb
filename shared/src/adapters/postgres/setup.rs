//! The application's store, built from its configuration once per execution environment.

use std::sync::Arc;

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
/// `db.password_param` names one) and the pool built by the first query, so a function's init
/// makes no network call. A failed read is retried by the next query.
///
/// # Errors
/// [`SetupError::Database`] at once for settings that can never work (URL, CA file, TLS).
pub fn open_store(
    db: &DatabaseConfig,
    secrets: Arc<dyn Secrets>,
) -> Result<PostgresStore, SetupError> {
    let settings = PgSettings::new(db, None)?;
    Ok(match &db.password_param {
        Some(param) => PostgresStore::opened_by(Opener {
            settings,
            secrets,
            param: param.clone(),
        }),
        None => PostgresStore::new(settings.pool()?),
    })
}

/// What the first query needs to open the pool.
pub(super) struct Opener {
    settings: PgSettings,
    secrets: Arc<dyn Secrets>,
    param: String,
}

impl Opener {
    pub(super) async fn open(&self) -> Result<super::Pool, SetupError> {
        let password = self.secrets.get(&self.param).await?;
        Ok(self.settings.with_password(&password).pool()?)
    }
}
