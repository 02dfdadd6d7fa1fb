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
    open_store_planning(db, secrets, Planning::PerExecution)
}

/// How the store's connections plan their prepared statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planning {
    /// PostgreSQL's default: a plan for each execution's values, until a generic plan looks as
    /// cheap. Statements with optional filters (`$2 IS NULL OR tenant = $2`) need it.
    PerExecution,
    /// One generic plan per statement and connection (`plan_cache_mode = force_generic_plan`),
    /// made again when the statistics of its tables change. For a function whose statements
    /// are large and keyed by id, like the worker's claim: planning it for every batch took
    /// 1.6 ms of the 3 ms it then ran (BENCHMARKS.md).
    Once,
}

/// [`open_store`] with the connections planning as `planning` says.
///
/// # Errors
/// As [`open_store`].
pub fn open_store_planning(
    db: &DatabaseConfig,
    secrets: Arc<dyn Secrets>,
    planning: Planning,
) -> Result<PostgresStore, SetupError> {
    PgSettings::check(db)?;
    Ok(PostgresStore::opened_by(Opener {
        db: db.clone(),
        secrets,
        planning,
    }))
}

/// What the first query needs to open the pool.
pub(super) struct Opener {
    db: DatabaseConfig,
    secrets: Arc<dyn Secrets>,
    planning: Planning,
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
        let mut settings = PgSettings::new(&self.db, password.as_ref())?;
        if self.planning == Planning::Once {
            settings = settings.with_generic_plans();
        }
        Ok(settings.pool_rereading(source)?)
    }
}
