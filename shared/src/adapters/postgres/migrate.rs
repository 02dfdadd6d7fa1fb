//! Schema migrations: the SQL files of `migrations/`, embedded at build time and applied with
//! refinery under a PostgreSQL advisory lock, so concurrent runs apply each migration once.
//!
//! Migrations are backward compatible (README, "Migrations"): a release's code runs on the schema
//! of the next release. So a database that a newer release has migrated further than the
//! embedded migrations is accepted (redeploying the previous release works): its extra
//! migrations are reported, and nothing is applied. A history that disagrees with the embedded
//! migrations below their newest version still fails.

use tokio_postgres::Client;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// The advisory lock key held while migrating (`tms.migrate` as a number).
pub const MIGRATION_LOCK: i64 = 0x0074_6d73_5f6d_6967;
/// Where refinery keeps its history.
pub const HISTORY_TABLE: &str = "tms.refinery_schema_history";

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot take the migration lock: {0}")]
    Lock(#[source] tokio_postgres::Error),
    #[error("cannot create schema tms: {0}")]
    Schema(#[source] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error("cannot read the migration history: {0}")]
    History(#[source] tokio_postgres::Error),
    #[error(
        "the database's migration history disagrees with this release: {0} (a migration was \
         edited or removed after it was applied)"
    )]
    Diverged(String),
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Applied now, in order.
    pub applied: Vec<String>,
    /// Applied earlier by a newer release, unknown to this one (left as they are).
    pub ahead: Vec<String>,
}

/// Applies every pending migration and returns the names of those applied now.
///
/// The schema `tms` is created when missing (the bootstrapper normally creates it, owned by
/// `tms_migration`); migrations run as whoever `client` is connected as.
///
/// # Errors
/// [`MigrateError`] when the lock, the schema or a migration fails; a failed migration is
/// rolled back.
pub async fn migrate(client: &mut Client) -> Result<Vec<String>, MigrateError> {
    Ok(migrate_report(client).await?.applied)
}

/// [`migrate`], also reporting the migrations a newer release applied.
///
/// # Errors
/// As [`migrate`], and [`MigrateError::Diverged`] when an applied migration at or below the
/// newest embedded version is not the embedded one.
pub async fn migrate_report(client: &mut Client) -> Result<Migrated, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(MigrateError::Lock)?;
    let result = migrate_locked(client).await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

async fn migrate_locked(client: &mut Client) -> Result<Migrated, MigrateError> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = 'tms'", &[])
        .await
        .map_err(MigrateError::Schema)?
        .is_some();
    if !exists {
        client
            .batch_execute("CREATE SCHEMA tms")
            .await
            .map_err(MigrateError::Schema)?;
    }
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(HISTORY_TABLE);
    let ahead = newer_than_embedded(client, &runner).await?;
    if !ahead.is_empty() {
        // NOTE: refinery refuses a history holding versions it does not know; by the
        // expand/contract rule this release's code works on that schema, so it is left as is.
        for name in &ahead {
            tracing::warn!(migration = %name, "the database holds a migration of a newer release; nothing to apply");
        }
        return Ok(Migrated {
            applied: Vec::new(),
            ahead,
        });
    }
    let report = runner.run_async(client).await?;
    let applied: Vec<String> = report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect();
    for name in &applied {
        tracing::info!(migration = %name, "migration applied");
    }
    Ok(Migrated {
        applied,
        ahead: Vec::new(),
    })
}

/// The applied migrations newer than every embedded one, once every embedded migration is
/// applied as embedded; empty when the database is not ahead of this release.
async fn newer_than_embedded(
    client: &mut Client,
    runner: &refinery::Runner,
) -> Result<Vec<String>, MigrateError> {
    let has_history = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .await
        .map_err(MigrateError::History)?
        .get::<_, bool>(0);
    if !has_history {
        return Ok(Vec::new());
    }
    let applied = runner.get_applied_migrations_async(client).await?;
    let known = runner.get_migrations();
    let newest = known.iter().map(|m| m.version()).max().unwrap_or(0);
    let ahead: Vec<String> = applied
        .iter()
        .filter(|a| a.version() > newest)
        .map(|a| a.to_string())
        .collect();
    if ahead.is_empty() {
        return Ok(ahead);
    }
    for embedded in known {
        match applied.iter().find(|a| a.version() == embedded.version()) {
            Some(a) if a == embedded => {}
            Some(a) => {
                return Err(MigrateError::Diverged(format!(
                    "applied {a} differs from this release's {embedded}"
                )))
            }
            None => {
                return Err(MigrateError::Diverged(format!(
                    "{embedded} was never applied, yet newer migrations were"
                )))
            }
        }
    }
    Ok(ahead)
}

/// A fingerprint of the embedded migrations (names and checksums), to tell schemas apart.
pub fn fingerprint() -> u64 {
    embedded::migrations::runner().get_migrations().iter().fold(
        0xcbf2_9ce4_8422_2325u64,
        |acc, m| {
            (acc ^ m.checksum()).wrapping_mul(0x0100_0000_01b3) ^ u64::from(m.version() as u32)
        },
    )
}

/// The versions and names of the embedded migrations, in order.
pub fn embedded() -> Vec<String> {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect()
}
