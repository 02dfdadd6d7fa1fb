//! The bootstrapper against the real cluster and the emulator's SSM: idempotent, concurrent-safe,
//! least privilege, password rotation, secrets never leaked.

use std::sync::Arc;
use std::time::Duration;

use tms::adapters::postgres::bootstrap::quote_ident;
use tms::adapters::ssm::SsmSecrets;
use tms::config::{DatabaseConfig, SslMode};
use tms::ports::Secret;
use tms_bootstrap::{Bootstrap, Config, DatabaseBootstrap};
use tms_testkit::aws::{put_secret, put_secure_parameter, sdk_config};
use tms_testkit::logs::Captured;
use tms_testkit::{admin_client, pg_ca_file, repo_root, TestDb, TestRoles};

fn admin_password() -> String {
    std::fs::read_to_string(repo_root().join(".local/pg/admin.password"))
        .expect("local cluster (run `make test`)")
        .trim()
        .to_owned()
}

fn port() -> String {
    std::env::var("TMS_PG_PORT").unwrap_or_else(|_| "55432".into())
}

/// Stores the admin secret and the three passwords under a fresh SSM path and builds the
/// function's work as `main` would.
async fn bootstrapper(
    db: &str,
    roles: &TestRoles,
    admin_user: &str,
    admin_param: &str,
) -> (DatabaseBootstrap, String) {
    let aws = sdk_config().await;
    let base = format!("/test/{}", roles.roles.prefix());
    for (name, pw) in [
        ("migrator", &roles.logins.migrator),
        ("app", &roles.logins.app),
        ("dev", &roles.logins.dev),
    ] {
        put_secure_parameter(&aws, &format!("{base}/{name}"), pw.expose()).await;
    }
    let config = Config {
        database: DatabaseConfig {
            url: format!("postgres://{admin_user}@127.0.0.1:{}/{db}", port()),
            ssl_mode: SslMode::VerifyFull,
            ca_file: Some(pg_ca_file()),
            password_param: None,
            pool_size: 1,
            connect_timeout: Duration::from_secs(5),
        },
        admin_secret_param: admin_param.to_owned(),
        migrator_password_param: format!("{base}/migrator"),
        app_password_param: format!("{base}/app"),
        dev_password_param: format!("{base}/dev"),
        roles: roles.roles.clone(),
    };
    let secrets = Arc::new(SsmSecrets::new(aws_sdk_ssm::Client::new(&aws)));
    (DatabaseBootstrap::new(config, secrets), base)
}

async fn admin_param(roles: &TestRoles) -> String {
    let name = format!("/test/{}/admin", roles.roles.prefix());
    put_secure_parameter(&sdk_config().await, &name, &admin_password()).await;
    name
}

/// Roles, memberships, database, schema and default ACLs that concern these roles.
async fn catalog_dump(db: &TestDb, roles: &TestRoles) -> Vec<String> {
    let c = db.admin().await;
    let like = format!("{}\\_%", roles.roles.prefix());
    let queries = [
        "SELECT concat_ws('|', rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, \
         rolreplication, rolbypassrls, rolconnlimit, rolconfig::text) FROM pg_roles WHERE rolname LIKE $1 ORDER BY 1",
        "SELECT concat_ws('|', roleid::regrole, member::regrole, admin_option) FROM pg_auth_members \
         WHERE roleid::regrole::text LIKE $1 OR member::regrole::text LIKE $1 ORDER BY 1",
        "SELECT concat_ws('|', datname, datacl::text) FROM pg_database WHERE datname = current_database() AND $1 <> ''",
        "SELECT concat_ws('|', nspname, nspowner::regrole, nspacl::text) FROM pg_namespace \
         WHERE nspname IN ('tms', 'public') AND $1 <> '' ORDER BY 1",
        "SELECT concat_ws('|', defaclrole::regrole, defaclnamespace::regnamespace, defaclobjtype, defaclacl::text) \
         FROM pg_default_acl WHERE $1 <> '' ORDER BY 1",
        "SELECT concat_ws('|', relname, relowner::regrole, relacl::text) FROM pg_class \
         WHERE relnamespace = 'tms'::regnamespace AND relkind = 'r' AND $1 <> '' ORDER BY 1",
    ];
    let mut dump = Vec::new();
    for q in queries {
        for row in c.query(q, &[&like]).await.unwrap() {
            dump.push(row.get::<_, String>(0));
        }
    }
    dump
}

#[tokio::test]
async fn repeated_and_concurrent_runs_succeed_and_change_nothing() {
    let roles = TestRoles::new();
    let db = TestDb::empty().await;
    let (work, _) = bootstrapper(&db.name, &roles, "postgres", &admin_param(&roles).await).await;
    let first = work.run().await.expect("first run");
    assert_eq!(first.roles_created.len(), 6);
    assert_eq!(
        first.migrations_applied.len(),
        tms::adapters::postgres::migrate::embedded().len()
    );
    let reference = catalog_dump(&db, &roles).await;
    assert!(reference.len() > 10, "{reference:?}");
    for run in 2..=3 {
        let report = work
            .run()
            .await
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
        assert!(report.roles_created.is_empty() && report.migrations_applied.is_empty());
        assert_eq!(
            catalog_dump(&db, &roles).await,
            reference,
            "catalogs after run {run}"
        );
    }
    let (a, b) = tokio::join!(work.run(), work.run());
    a.expect("first of two concurrent runs");
    b.expect("second of two concurrent runs");
    assert_eq!(
        catalog_dump(&db, &roles).await,
        reference,
        "catalogs after concurrent runs"
    );
}

#[tokio::test]
async fn concurrent_first_runs_on_an_empty_database_both_succeed() {
    let roles = TestRoles::new();
    let db = TestDb::empty().await;
    let (work, _) = bootstrapper(&db.name, &roles, "postgres", &admin_param(&roles).await).await;
    let (a, b) = tokio::join!(work.run(), work.run());
    let (a, b) = (a.expect("run a"), b.expect("run b"));
    assert_eq!(
        a.roles_created.len() + b.roles_created.len(),
        6,
        "each role created once"
    );
    assert_eq!(
        a.migrations_applied.len() + b.migrations_applied.len(),
        tms::adapters::postgres::migrate::embedded().len(),
        "each migration applied once"
    );
}

#[tokio::test]
async fn a_changed_password_is_applied_and_the_old_one_stops_working() {
    let roles = TestRoles::new();
    let db = TestDb::empty().await;
    let (work, base) = bootstrapper(&db.name, &roles, "postgres", &admin_param(&roles).await).await;
    work.run().await.unwrap();
    let app = roles.roles.app();
    let old = roles.logins.app.clone();
    db.connect_as(&app, &old).await;
    let new = Secret::new(format!("rotated-{}", uuid::Uuid::new_v4()));
    put_secure_parameter(&sdk_config().await, &format!("{base}/app"), new.expose()).await;
    work.run().await.expect("update run");
    let refused = db.admin_settings().with_login(&app, &old).connect().await;
    assert!(refused.is_err(), "the old password no longer logs in");
    db.connect_as(&app, &new).await;
}

#[tokio::test]
async fn the_admin_secret_can_be_a_secrets_manager_secret_read_through_ssm() {
    let roles = TestRoles::new();
    let db = TestDb::empty().await;
    let secret_name = format!("test-{}-master", roles.roles.prefix());
    let json =
        serde_json::json!({"username": "postgres", "password": admin_password()}).to_string();
    let arn = put_secret(&secret_name, &json).await;
    assert!(
        arn.starts_with("arn:") && arn.contains(&secret_name),
        "{arn}"
    );
    // By name, as Parameter Store documents the path, and by ARN, as CloudFormation's GetAtt and
    // Terraform hand the RDS-managed secret out.
    for id in [secret_name.as_str(), arn.as_str()] {
        let param = format!("/aws/reference/secretsmanager/{id}");
        // The URL names another user: the secret's username wins, as for the RDS master secret.
        let (work, _) = bootstrapper(&db.name, &roles, "nobody", &param).await;
        let report = work
            .run()
            .await
            .unwrap_or_else(|e| panic!("bootstrap with the secret referenced as {param}: {e}"));
        assert_eq!(report.database, db.name);
    }
}

#[tokio::test]
async fn passwords_never_appear_in_logs_errors_or_reports() {
    let roles = TestRoles::new();
    let db = TestDb::empty().await;
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (work, _) = bootstrapper(&db.name, &roles, "postgres", &admin_param(&roles).await).await;
    let report = work.run().await.unwrap();
    let wrong = format!("/test/{}/wrong-admin", roles.roles.prefix());
    put_secure_parameter(&sdk_config().await, &wrong, "definitely-not-the-password").await;
    let (bad, _) = bootstrapper(&db.name, &roles, "postgres", &wrong).await;
    let err = bad
        .run()
        .await
        .expect_err("a wrong admin password fails")
        .to_string();
    assert!(
        err.contains("postgres"),
        "the error says who could not log in: {err}"
    );
    let logs = captured.text();
    assert!(
        logs.contains("migration applied"),
        "the capture works: {logs}"
    );
    let report = serde_json::to_string(&report).unwrap();
    for secret in [
        admin_password(),
        "definitely-not-the-password".to_owned(),
        roles.logins.migrator.expose().to_owned(),
        roles.logins.app.expose().to_owned(),
        roles.logins.dev.expose().to_owned(),
    ] {
        for (what, text) in [("logs", &logs), ("error", &err), ("report", &report)] {
            assert!(!text.contains(&secret), "a password appears in the {what}");
        }
    }
    assert!(!logs.contains("SCRAM-SHA-256$"), "not even as a verifier");
}

#[tokio::test]
async fn works_as_a_non_superuser_database_owner_like_the_rds_master() {
    let roles = TestRoles::new();
    let master = format!("{}_master", roles.roles.prefix());
    let master_pw = format!("m-{}", uuid::Uuid::new_v4().simple());
    let postgres = admin_client("postgres").await;
    postgres
        .batch_execute(&format!(
            "CREATE ROLE {} LOGIN CREATEROLE PASSWORD '{master_pw}'",
            quote_ident(&master)
        ))
        .await
        .unwrap();
    {
        let db = TestDb::empty().await;
        postgres
            .batch_execute(&format!(
                "ALTER DATABASE {} OWNER TO {}",
                db.name,
                quote_ident(&master)
            ))
            .await
            .unwrap();
        let name = format!("/test/{}/master", roles.roles.prefix());
        put_secure_parameter(&sdk_config().await, &name, &master_pw).await;
        let (work, _) = bootstrapper(&db.name, &roles, &master, &name).await;
        work.run()
            .await
            .expect("bootstrap as a CREATEROLE database owner");
        work.run().await.expect("and again");
        let app = db.connect_as(&roles.roles.app(), &roles.logins.app).await;
        app.batch_execute(
            "INSERT INTO tasks (id, tenant, kind, payload, correlation_id, source) \
             VALUES (gen_random_uuid(), 'demo', 'noop', '{}', 'c', 'api')",
        )
        .await
        .expect("the application user writes through its pinned search_path");
    }
    let revoke = postgres
        .batch_execute(&format!(
            "REVOKE {} FROM {m}; DROP ROLE IF EXISTS {m}",
            quote_ident(&roles.roles.migration()),
            m = quote_ident(&master)
        ))
        .await;
    drop(revoke);
}

/// Applies, as a newer release's bootstrap would, an expand migration this release does not
/// know: a nullable column, a new table, and its row in the history.
async fn migrate_as_a_newer_release(db: &TestDb, roles: &TestRoles) -> String {
    let next = tms::adapters::postgres::migrate::embedded().len() + 1;
    let migrator = db
        .connect_as(&roles.roles.migrator(), &roles.logins.migrator)
        .await;
    migrator
        .batch_execute(&format!(
            "SET ROLE {mig}; \
             ALTER TABLE tms.tasks ADD COLUMN from_next_release text; \
             CREATE TABLE tms.from_next_release (id bigint PRIMARY KEY); \
             INSERT INTO tms.refinery_schema_history (version, name, applied_on, checksum) \
             VALUES ({next}, 'from_a_newer_release', \
                     to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '42')",
            mig = quote_ident(&roles.roles.migration())
        ))
        .await
        .expect("the newer release's migration");
    format!("V{next}__from_a_newer_release")
}

#[tokio::test]
async fn the_previous_release_redeploys_onto_a_database_a_newer_release_migrated() {
    let roles = TestRoles::new();
    let db = TestDb::empty().await;
    let (work, _) = bootstrapper(&db.name, &roles, "postgres", &admin_param(&roles).await).await;
    work.run().await.expect("first deploy");
    let newer = migrate_as_a_newer_release(&db, &roles).await;

    let report = work
        .run()
        .await
        .expect("redeploying this (older) release succeeds on the newer schema");
    assert!(report.migrations_applied.is_empty(), "{report:?}");
    assert_eq!(report.migrations_ahead, std::slice::from_ref(&newer));
    let answer = tms_bootstrap::report_json(&report);
    assert_eq!(answer["report"]["migrations_ahead"][0], newer.as_str());

    // This release's code works on that schema: the application user creates and reads a task.
    let app = db
        .admin_settings()
        .with_login(&roles.roles.app(), &roles.logins.app)
        .with_pool_size(1)
        .pool()
        .unwrap();
    let store = tms::adapters::postgres::PostgresStore::new(app);
    let task = tms_testkit::tasks::noop("demo");
    tms::ports::TaskRepository::create(&store, &task)
        .await
        .expect("create on the newer schema");
    let tables = db
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'tms' \
             AND table_name = 'from_next_release'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(
        tables, 1,
        "the newer release's objects are left as they are"
    );
}

#[tokio::test]
async fn a_history_that_disagrees_below_the_newest_embedded_migration_still_fails() {
    let roles = TestRoles::new();
    let db = TestDb::empty().await;
    let (work, _) = bootstrapper(&db.name, &roles, "postgres", &admin_param(&roles).await).await;
    work.run().await.expect("first deploy");
    migrate_as_a_newer_release(&db, &roles).await;
    db.admin()
        .await
        .batch_execute("UPDATE tms.refinery_schema_history SET checksum = '1' WHERE version = 1")
        .await
        .unwrap();
    let err = work
        .run()
        .await
        .expect_err("an edited V1 is refused")
        .to_string();
    assert!(err.contains("disagrees") && err.contains("V1__"), "{err}");
}
