//! Schema migrations: the SQL files of `migrations/`, embedded at build time and applied with
//! refinery under a PostgreSQL advisory lock, so concurrent runs apply each migration once.

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

async fn migrate_locked(client: &mut Client) -> Result<Vec<String>, MigrateError> {
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
    let report = runner.run_async(client).await?;
    let applied: Vec<String> = report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect();
    for name in &applied {
        tracing::info!(migration = %name, "migration applied");
    }
    Ok(applied)
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
