//! Test support: the project-local services (`scripts/postgres.sh`, `scripts/aws-emulator.sh`),
//! a fresh database per test cloned from a migrated template, and helpers to build tasks.
//!
//! A missing service is a test failure with a message saying how to start it, never a skip.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use tms::adapters::postgres::bootstrap::{self, Logins, Roles};
use tms::adapters::postgres::{migrate, PgSettings, PostgresStore};
use tms::config::{DatabaseConfig, SslMode};
use tms::ports::Secret;
use uuid::Uuid;

pub mod aws;
pub mod browser;
pub mod fakes;
pub mod http;
pub mod logs;
pub mod runtime_api;
pub mod tasks;
pub mod webhooks;

/// The repository root (this crate lives in `tools/testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn pg_port() -> u16 {
    std::env::var("TMS_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(55432)
}

/// The CA that signed the local cluster's certificate.
pub fn pg_ca_file() -> PathBuf {
    repo_root().join(".local/pg/tls/ca.crt")
}

fn admin_password() -> Secret {
    let path = repo_root().join(".local/pg/admin.password");
    let pw = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "the local PostgreSQL cluster is missing ({} not found): run `make test`, or start it \
             with `scripts/postgres.sh start` before `cargo test`",
            path.display()
        )
    });
    Secret::new(pw.trim())
}

/// The local cluster's superuser, connected to `dbname`, TLS verified against the local CA.
pub fn admin_settings(dbname: &str) -> PgSettings {
    let db = DatabaseConfig {
        url: format!("postgres://postgres@127.0.0.1:{}/{dbname}", pg_port()),
        ssl_mode: SslMode::VerifyFull,
        ca_file: Some(pg_ca_file()),
        password_param: None,
        pool_size: 8,
        connect_timeout: Duration::from_secs(5),
    };
    PgSettings::new(&db, Some(&admin_password())).expect("admin settings")
}

/// The login roles' passwords of the local cluster (`.local/pg/roles.env`).
pub fn logins() -> Logins {
    let path = repo_root().join(".local/pg/roles.env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} not found: run `make test`, or `scripts/postgres.sh start` before `cargo test`",
            path.display()
        )
    });
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(|v| Secret::new(v.trim()))
            .unwrap_or_else(|| panic!("{key} missing from {}", path.display()))
    };
    Logins {
        migrator: get("TMS_MIGRATOR_PASSWORD"),
        app: get("TMS_APP_PASSWORD"),
        dev: get("TMS_DEV_PASSWORD"),
    }
}

pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            tms::telemetry::init_logging();
        }
    });
}

/// Statements `user` has run in the connected database so far, from `pg_stat_statements` (the
/// local cluster preloads it; the extension must exist in the database).
///
/// # Errors
/// When `pg_stat_statements` is not available.
pub async fn statements_run_by(
    admin: &tokio_postgres::Client,
    user: &str,
) -> Result<i64, tokio_postgres::Error> {
    let row = admin
        .query_one(
            "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND userid = $1::text::regrole",
            &[&user],
        )
        .await?;
    Ok(row.get(0))
}

/// Shared buffers touched so far in the connected database by the statements whose text is
/// `LIKE pattern`, from `pg_stat_statements` (which counts a statement's nested work with it).
pub async fn statement_blocks(admin: &tokio_postgres::Client, pattern: &str) -> i64 {
    admin
        .query_one(
            "SELECT coalesce(sum(shared_blks_hit + shared_blks_read), 0)::int8 FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND query LIKE $1",
            &[&pattern],
        )
        .await
        .expect(STATEMENTS_PRELOADED)
        .get(0)
}

const STATEMENTS_PRELOADED: &str =
    "pg_stat_statements: the local cluster must preload it (scripts/postgres.sh does; restart a \
     cluster started before that with `scripts/postgres.sh stop`)";

/// Connects as the superuser or fails the test saying how to start the cluster.
pub async fn admin_client(dbname: &str) -> tokio_postgres::Client {
    admin_settings(dbname).connect().await.unwrap_or_else(|e| {
        panic!(
            "cannot connect to the local PostgreSQL on 127.0.0.1:{} ({e}): run `make test`, or \
             start it with `scripts/postgres.sh start` before `cargo test`",
            pg_port()
        )
    })
}

const TEMPLATE_LOCK: i64 = 0x0074_6d73_5f74_706c;

/// The bootstrap's SQL is part of what a template holds.
fn template_fingerprint() -> u64 {
    let source = include_str!("../../../shared/src/adapters/postgres/bootstrap.rs");
    source.bytes().fold(migrate::fingerprint(), |acc, b| {
        (acc ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Creates (once per schema fingerprint, across test processes) a database bootstrapped with
/// the default roles and every migration, to clone fresh test databases from.
async fn template() -> String {
    let name = format!("tms_tpl_{:016x}", template_fingerprint());
    let admin = admin_client("postgres").await;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("template lock");
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("look up template")
        .is_some();
    if !exists {
        let building = format!("{name}_building");
        for sql in [
            format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            format!("CREATE DATABASE {building}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .expect("create template database");
        }
        bootstrap::bootstrap(&admin_settings(&building), &Roles::default(), &logins())
            .await
            .expect("bootstrap the template database");
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {building} RENAME TO {name}; ALTER DATABASE {name} IS_TEMPLATE true"
            ))
            .await
            .expect("publish template");
    }
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("template unlock");
    name
}

/// A database of its own for one test, migrated, dropped when the value is dropped (unless
/// `TMS_TEST_KEEP_DB=1`).
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn new() -> Self {
        init_logging();
        let template = template().await;
        let name = format!("t_{}", Uuid::new_v4().simple());
        let admin = admin_client("postgres").await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .expect("create test database");
        bootstrap::grant_database(&admin, &name, &Roles::default())
            .await
            .expect("grant the test database");
        Self { name }
    }

    /// An empty database without the schema, for migration tests.
    pub async fn empty() -> Self {
        init_logging();
        let name = format!("t_{}", Uuid::new_v4().simple());
        admin_client("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        Self { name }
    }

    pub fn admin_settings(&self) -> PgSettings {
        admin_settings(&self.name)
    }

    pub async fn admin(&self) -> tokio_postgres::Client {
        admin_client(&self.name).await
    }

    /// The settings the functions use: the application user `tms_app`, never the admin.
    pub fn app_settings(&self) -> PgSettings {
        self.admin_settings()
            .with_login(&Roles::default().app(), &logins().app)
    }

    /// A login of the default roles (`tms_migrator`, `tms_app` or `tms_dev`).
    pub async fn connect_as(&self, user: &str, password: &Secret) -> tokio_postgres::Client {
        self.admin_settings()
            .with_login(user, password)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect as {user}: {e}"))
    }

    /// Makes `pg_stat_statements` readable in this database.
    pub async fn track_statements(&self) {
        self.admin()
            .await
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .expect(STATEMENTS_PRELOADED);
    }

    /// Statements the application user ran in this database so far (after
    /// [`TestDb::track_statements`]).
    pub async fn app_statements(&self) -> i64 {
        statements_run_by(&self.admin().await, &Roles::default().app())
            .await
            .expect(STATEMENTS_PRELOADED)
    }

    pub fn store(&self) -> PostgresStore {
        PostgresStore::new(self.app_settings().pool().expect("pool"))
    }
}

/// Login roles with a prefix of their own (roles are cluster-wide), dropped with their
/// privileges when the value is dropped. Declare it before the [`TestDb`] it is used in, so the
/// database is dropped first.
pub struct TestRoles {
    pub roles: Roles,
    pub logins: Logins,
}

impl TestRoles {
    pub fn new() -> Self {
        let prefix = format!("tt{}", &Uuid::new_v4().simple().to_string()[..12]);
        let pw = |who: &str| Secret::new(format!("{who}-{}", Uuid::new_v4().simple()));
        Self {
            roles: Roles::with_prefix(&prefix).expect("valid prefix"),
            logins: Logins {
                migrator: pw("migrator"),
                app: pw("app"),
                dev: pw("dev"),
            },
        }
    }
}

impl Default for TestRoles {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs clean-up statements as the superuser, best effort, from `Drop`: on a thread with its own
/// runtime, since a drop inside the test's runtime must not block it.
fn clean_up(statements: Vec<String>) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            if let Ok(client) = admin_settings("postgres").connect().await {
                for sql in statements {
                    let _ = client.batch_execute(&sql).await;
                }
            }
        });
    })
    .join();
}

impl Drop for TestRoles {
    fn drop(&mut self) {
        clean_up(
            self.roles
                .pairs()
                .into_iter()
                .flat_map(|(g, u)| [u, g])
                .map(|name| format!("DROP ROLE IF EXISTS \"{name}\""))
                .collect(),
        );
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var("TMS_TEST_KEEP_DB").as_deref() == Ok("1") {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        clean_up(vec![format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )]);
    }
}
