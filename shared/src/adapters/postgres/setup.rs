//! The application's store, built from its configuration once per execution environment.

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

/// The store on a pool for `db`, without connecting yet; the password is read from `secrets`
/// when `db.password_param` names one.
///
/// # Errors
/// [`SetupError`] when the password cannot be read or the pool cannot be set up.
pub async fn open_store(
    db: &DatabaseConfig,
    secrets: &dyn Secrets,
) -> Result<PostgresStore, SetupError> {
    let password = match &db.password_param {
        Some(name) => Some(secrets.get(name).await?),
        None => None,
    };
    let pool = PgSettings::new(db, password.as_ref())?.pool()?;
    Ok(PostgresStore::new(pool))
}
