//! Database bootstrap: roles, least privilege, the schema, then the migrations as the migrator.
//!
//! Three NOLOGIN groups hold the privileges and three LOGIN users inherit them:
//! `<p>_migration` ∋ `<p>_migrator` (owns schema `tms` and its objects), `<p>_application` ∋
//! `<p>_app` (DML on the tables), `<p>_readonly` ∋ `<p>_dev` (SELECT). The prefix `<p>` is `tms`
//! unless configured: roles are cluster-wide, so two deployments sharing a cluster need their own.
//!
//! Every step is idempotent and the whole admin part runs under an advisory lock, so repeated and
//! concurrent runs succeed and leave the catalogs identical.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::migrate::{self, MigrateError, Migrated, HISTORY_TABLE};
use super::pool::PgSettings;
use crate::ports::Secret;

/// The advisory lock key held by the admin part of a bootstrap (`tms.boot` as a number).
pub const BOOTSTRAP_LOCK: i64 = 0x746d_732e_626f_6f74;
pub const SCHEMA: &str = "tms";

/// The role names for one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    prefix: String,
}

impl Default for Roles {
    fn default() -> Self {
        Self {
            prefix: "tms".into(),
        }
    }
}

impl Roles {
    /// # Errors
    /// When the prefix is not 1–40 characters of `[a-z0-9_]` starting with a letter.
    pub fn with_prefix(prefix: &str) -> Result<Self, String> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 40
            && prefix.as_bytes()[0].is_ascii_lowercase()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(format!(
                "role prefix {prefix:?} must be 1-40 characters of a-z, 0-9 or _, starting with a letter"
            ))
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn migration(&self) -> String {
        format!("{}_migration", self.prefix)
    }
    pub fn application(&self) -> String {
        format!("{}_application", self.prefix)
    }
    pub fn readonly(&self) -> String {
        format!("{}_readonly", self.prefix)
    }
    pub fn migrator(&self) -> String {
        format!("{}_migrator", self.prefix)
    }
    pub fn app(&self) -> String {
        format!("{}_app", self.prefix)
    }
    pub fn dev(&self) -> String {
        format!("{}_dev", self.prefix)
    }

    /// Whether `user` is one of the three login users.
    pub fn is_login(&self, user: &str) -> bool {
        [self.migrator(), self.app(), self.dev()]
            .iter()
            .any(|u| u == user)
    }

    /// (group, login user) pairs.
    pub fn pairs(&self) -> [(String, String); 3] {
        [
            (self.migration(), self.migrator()),
            (self.application(), self.app()),
            (self.readonly(), self.dev()),
        ]
    }
}

/// The passwords of the three login users.
#[derive(Debug, Clone)]
pub struct Logins {
    pub migrator: Secret,
    pub app: Secret,
    pub dev: Secret,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BootstrapReport {
    pub database: String,
    pub roles_created: Vec<String>,
    pub migrations_applied: Vec<String>,
    /// Migrations a newer release applied, which this one does not know (see [`migrate`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub migrations_ahead: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot connect as {user}: {source}")]
    Connect {
        user: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{step} failed: {source}")]
    Step {
        step: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error("the connection settings name no database")]
    NoDatabase,
    #[error("{0} is not one of the login users the bootstrapper manages")]
    NotALogin(String),
}

impl BootstrapError {
    /// Conflicts with a concurrent bootstrap of another database on the same cluster (roles are
    /// shared): worth another try.
    fn is_transient(&self) -> bool {
        let BootstrapError::Step { source, .. } = self else {
            return false;
        };
        let Some(db) = source.as_db_error() else {
            return false;
        };
        [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::UNIQUE_VIOLATION,
            SqlState::DUPLICATE_OBJECT,
        ]
        .contains(db.code())
            || db.message().contains("concurrently")
    }
}

/// The password as a SCRAM verifier.
// NOTE: passwords go over the wire as verifiers computed here, so the plaintext never reaches
// the server's logs or statistics.
fn verifier(password: &Secret) -> String {
    postgres_protocol::password::scram_sha_256(password.expose().as_bytes())
}

/// Sets the password of `user`, one of the login users of `roles` (a rotation's `setSecret`),
/// connected as `admin`.
///
/// # Errors
/// [`BootstrapError::NotALogin`] for any other user; [`BootstrapError::Connect`] or
/// [`BootstrapError::Step`] when the database fails.
pub async fn set_password(
    admin: &PgSettings,
    roles: &Roles,
    user: &str,
    password: &Secret,
) -> Result<(), BootstrapError> {
    if !roles.is_login(user) {
        return Err(BootstrapError::NotALogin(user.to_owned()));
    }
    let client = admin
        .connect()
        .await
        .map_err(|source| BootstrapError::Connect {
            user: admin.config().get_user().unwrap_or("?").to_owned(),
            source,
        })?;
    client
        .batch_execute(&format!(
            "ALTER ROLE {} PASSWORD '{}'",
            quote_ident(user),
            verifier(password)
        ))
        .await
        .map_err(step("set password"))
}

/// Logs in as `user` with `password` and runs a query (a rotation's `testSecret`).
///
/// # Errors
/// [`BootstrapError::Connect`] when the login is refused, [`BootstrapError::Step`] when the
/// query fails.
pub async fn check_login(
    server: &PgSettings,
    user: &str,
    password: &Secret,
) -> Result<(), BootstrapError> {
    let client = server
        .with_login(user, password)
        .connect()
        .await
        .map_err(|source| BootstrapError::Connect {
            user: user.to_owned(),
            source,
        })?;
    client
        .batch_execute("SELECT 1")
        .await
        .map_err(step("query as the login"))
}

/// Double-quotes an identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn step(step: &'static str) -> impl Fn(tokio_postgres::Error) -> BootstrapError {
    move |source| BootstrapError::Step { step, source }
}

/// Runs the whole bootstrap: the admin part as `admin` (a superuser or a role with CREATEROLE
/// that owns the database, such as the RDS master user), then the migrations as the migrator.
///
/// # Errors
/// [`BootstrapError`] naming the step that failed; passwords never appear in it.
pub async fn bootstrap(
    admin: &PgSettings,
    roles: &Roles,
    logins: &Logins,
) -> Result<BootstrapReport, BootstrapError> {
    let database = admin
        .config()
        .get_dbname()
        .ok_or(BootstrapError::NoDatabase)?
        .to_owned();
    let admin_user = admin.config().get_user().unwrap_or("?").to_owned();
    let mut attempt = 0;
    let roles_created = loop {
        attempt += 1;
        let mut client = admin
            .connect()
            .await
            .map_err(|source| BootstrapError::Connect {
                user: admin_user.clone(),
                source,
            })?;
        match admin_part(&mut client, &database, roles, logins).await {
            Err(e) if attempt < 5 && e.is_transient() => {
                tracing::warn!(attempt, error = %e, "bootstrap conflicted with a concurrent one; retrying");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            other => break other?,
        }
    };
    let migrator = admin.with_login(&roles.migrator(), &logins.migrator);
    let mut client = migrator
        .connect()
        .await
        .map_err(|source| BootstrapError::Connect {
            user: roles.migrator(),
            source,
        })?;
    let migrated = migrator_part(&mut client, roles).await?;
    Ok(BootstrapReport {
        database,
        roles_created,
        migrations_applied: migrated.applied,
        migrations_ahead: migrated.ahead,
    })
}

/// Roles, memberships, passwords, database and schema privileges.
async fn admin_part(
    client: &mut Client,
    database: &str,
    roles: &Roles,
    logins: &Logins,
) -> Result<Vec<String>, BootstrapError> {
    let txn = client.transaction().await.map_err(step("begin"))?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&BOOTSTRAP_LOCK])
        .await
        .map_err(step("bootstrap lock"))?;
    let mut created = Vec::new();
    let passwords = [&logins.migrator, &logins.app, &logins.dev];
    for ((group, user), password) in roles.pairs().into_iter().zip(passwords) {
        for (role, login) in [(&group, false), (&user, true)] {
            let exists = txn
                .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[role])
                .await
                .map_err(step("look up role"))?
                .is_some();
            if !exists {
                let attrs = if login { "LOGIN" } else { "NOLOGIN" };
                txn.batch_execute(&format!("CREATE ROLE {} {attrs}", quote_ident(role)))
                    .await
                    .map_err(step("create role"))?;
                created.push(role.clone());
            }
        }
        let verifier = verifier(password);
        txn.batch_execute(&format!(
            "ALTER ROLE {u} LOGIN PASSWORD '{verifier}'; \
             ALTER ROLE {g} NOLOGIN; \
             GRANT {g} TO {u}; \
             ALTER ROLE {u} SET search_path = {SCHEMA}",
            u = quote_ident(&user),
            g = quote_ident(&group),
        ))
        .await
        .map_err(step("configure login role"))?;
    }
    let is_superuser: bool = txn
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(step("inspect admin"))?
        .get(0);
    if !is_superuser {
        // A non-superuser admin (the RDS master) must belong to the owner role to create the
        // schema on its behalf.
        txn.batch_execute(&format!(
            "GRANT {} TO CURRENT_USER",
            quote_ident(&roles.migration())
        ))
        .await
        .map_err(step("admin membership"))?;
    }
    let db = quote_ident(database);
    let (mig, app, ro) = (
        quote_ident(&roles.migration()),
        quote_ident(&roles.application()),
        quote_ident(&roles.readonly()),
    );
    txn.batch_execute(&format!(
        "REVOKE ALL ON DATABASE {db} FROM PUBLIC; \
         GRANT CONNECT ON DATABASE {db} TO {mig}, {app}, {ro}; \
         GRANT TEMPORARY ON DATABASE {db} TO {app}; \
         REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
         CREATE SCHEMA IF NOT EXISTS {SCHEMA} AUTHORIZATION {mig}; \
         ALTER SCHEMA {SCHEMA} OWNER TO {mig}; \
         REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC; \
         GRANT USAGE ON SCHEMA {SCHEMA} TO {app}, {ro}"
    ))
    .await
    .map_err(step("database and schema privileges"))?;
    txn.commit().await.map_err(step("commit"))?;
    Ok(created)
}

/// Default privileges, migrations and grants, as the migrator acting as the owner group.
async fn migrator_part(client: &mut Client, roles: &Roles) -> Result<Migrated, BootstrapError> {
    let (mig, app, ro) = (
        quote_ident(&roles.migration()),
        quote_ident(&roles.application()),
        quote_ident(&roles.readonly()),
    );
    client
        .batch_execute(&format!(
            "SET ROLE {mig}; \
             ALTER DEFAULT PRIVILEGES FOR ROLE {mig} IN SCHEMA {SCHEMA} \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}; \
             ALTER DEFAULT PRIVILEGES FOR ROLE {mig} IN SCHEMA {SCHEMA} \
                 GRANT SELECT ON TABLES TO {ro}"
        ))
        .await
        .map_err(step("default privileges"))?;
    let migrated = migrate::migrate_report(client).await?;
    // Objects that existed before the default privileges, and the migration history, which the
    // application may read but never write.
    client
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {SCHEMA} TO {app}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO {ro}; \
             REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {HISTORY_TABLE} FROM {app}; \
             RESET ROLE"
        ))
        .await
        .map_err(step("table privileges"))?;
    Ok(migrated)
}

/// The database-level part alone, for a database cloned from a bootstrapped template
/// (`CREATE DATABASE ... TEMPLATE` copies the schema but not the database's own privileges).
///
/// # Errors
/// [`BootstrapError::Step`] when a statement fails.
pub async fn grant_database(
    admin: &Client,
    database: &str,
    roles: &Roles,
) -> Result<(), BootstrapError> {
    let db = quote_ident(database);
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {db} FROM PUBLIC; \
             GRANT CONNECT ON DATABASE {db} TO {}, {}, {}; \
             GRANT TEMPORARY ON DATABASE {db} TO {}",
            quote_ident(&roles.migration()),
            quote_ident(&roles.application()),
            quote_ident(&roles.readonly()),
            quote_ident(&roles.application()),
        ))
        .await
        .map_err(step("database privileges"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_follow_the_prefix() {
        let r = Roles::default();
        assert_eq!(
            [
                r.migration(),
                r.application(),
                r.readonly(),
                r.migrator(),
                r.app(),
                r.dev()
            ],
            [
                "tms_migration",
                "tms_application",
                "tms_readonly",
                "tms_migrator",
                "tms_app",
                "tms_dev"
            ]
        );
        assert_eq!(Roles::with_prefix("stage2").unwrap().app(), "stage2_app");
        for user in ["tms_migrator", "tms_app", "tms_dev"] {
            assert!(r.is_login(user), "{user}");
        }
        for other in ["tms_application", "postgres", "tms_admin", "stage2_app"] {
            assert!(!r.is_login(other), "{other}");
        }
        for bad in ["", "1x", "X", "a-b", "a\"b", &"a".repeat(41)] {
            assert!(Roles::with_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("tms"), "\"tms\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
