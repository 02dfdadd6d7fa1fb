//! Secrets Manager's four rotation steps, sent to the bootstrapper's handler as Secrets Manager
//! sends them, against the emulator's Secrets Manager and the real cluster: the login user's
//! password changes, the secret's current value follows, a running store keeps working.

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use tms::adapters::postgres::open_store;
use tms::adapters::ssm::SsmSecrets;
use tms::config::{DatabaseConfig, SslMode};
use tms::ports::{Secret, TaskRepository};
use tms_bootstrap::secretsmanager::SecretsManagerRotation;
use tms_bootstrap::{function_handler, Bootstrap, Config, DatabaseBootstrap, Deps, Rotation};
use tms_testkit::aws::{put_secret, put_secure_parameter, sdk_config};
use tms_testkit::{pg_ca_file, repo_root, TestDb, TestRoles};

fn port() -> String {
    std::env::var("TMS_PG_PORT").unwrap_or_else(|_| "55432".into())
}

fn database(db: &str, user: &str, password_param: Option<String>) -> DatabaseConfig {
    DatabaseConfig {
        url: format!("postgres://{user}@127.0.0.1:{}/{db}", port()),
        ssl_mode: SslMode::VerifyFull,
        ca_file: Some(pg_ca_file()),
        password_param,
        pool_size: 1,
        connect_timeout: Duration::from_secs(5),
    }
}

struct Fixture {
    db: TestDb,
    roles: TestRoles,
    deps: Deps,
    secrets: aws_sdk_secretsmanager::Client,
    /// The app user's secret: its name and ARN.
    name: String,
    arn: String,
}

/// A bootstrapped database whose app user's password is a Secrets Manager secret
/// `{"username", "password"}`, as the stacks create it.
async fn fixture() -> Fixture {
    let roles = TestRoles::new();
    let db = TestDb::empty().await;
    let aws = sdk_config().await;
    let base = format!("/test/{}", roles.roles.prefix());
    let admin_pw = std::fs::read_to_string(repo_root().join(".local/pg/admin.password"))
        .expect("local cluster");
    put_secure_parameter(&aws, &format!("{base}/admin"), admin_pw.trim()).await;
    let name = format!("test-{}-app", roles.roles.prefix());
    let arn = put_secret(
        &name,
        &json!({"username": roles.roles.app(), "password": roles.logins.app.expose()}).to_string(),
    )
    .await;
    for (who, pw) in [
        ("migrator", &roles.logins.migrator),
        ("dev", &roles.logins.dev),
    ] {
        put_secure_parameter(&aws, &format!("{base}/{who}"), pw.expose()).await;
    }
    let config = Config {
        database: database(&db.name, "postgres", None),
        admin_secret_param: format!("{base}/admin"),
        migrator_password_param: format!("{base}/migrator"),
        app_password_param: format!("/aws/reference/secretsmanager/{name}"),
        dev_password_param: format!("{base}/dev"),
        roles: roles.roles.clone(),
    };
    let ssm = Arc::new(SsmSecrets::new(aws_sdk_ssm::Client::new(&aws)));
    let bootstrap = Arc::new(DatabaseBootstrap::new(config, ssm));
    bootstrap
        .run()
        .await
        .expect("the bootstrap reads the JSON login secret");
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let deps = Deps {
        bootstrap: bootstrap.clone(),
        rotation: Some(Rotation {
            secrets: Arc::new(SecretsManagerRotation::new(secrets.clone())),
            logins: bootstrap,
        }),
        http: Default::default(),
    };
    Fixture {
        db,
        roles,
        deps,
        secrets,
        name,
        arn,
    }
}

async fn step(f: &Fixture, secret: &str, token: &str, step: &str) -> Result<Value, String> {
    let event = json!({"SecretId": secret, "ClientRequestToken": token, "Step": step});
    function_handler(&f.deps, LambdaEvent::new(event, Context::default()))
        .await
        .map_err(|e| e.to_string())
}

async fn value(f: &Fixture, version: Option<&str>, stage: &str) -> Value {
    let out = f
        .secrets
        .get_secret_value()
        .secret_id(&f.name)
        .set_version_id(version.map(str::to_owned))
        .version_stage(stage)
        .send()
        .await
        .expect("secret value");
    serde_json::from_str(out.secret_string().unwrap()).unwrap()
}

async fn logs_in(f: &Fixture, password: &str) -> bool {
    f.db.admin_settings()
        .with_login(&f.roles.roles.app(), &Secret::new(password))
        .connect()
        .await
        .is_ok()
}

#[tokio::test]
async fn the_four_steps_rotate_the_password_and_a_running_store_follows() {
    let f = fixture().await;
    let old = f.roles.logins.app.expose().to_owned();
    // A function's store reads the same secret through SSM, as deployed.
    let aws = sdk_config().await;
    let store = open_store(
        &database(
            &f.db.name,
            &f.roles.roles.app(),
            Some(format!("/aws/reference/secretsmanager/{}", f.arn)),
        ),
        Arc::new(SsmSecrets::new(aws_sdk_ssm::Client::new(&aws))),
    )
    .unwrap();
    store
        .ping()
        .await
        .expect("the store logs in before the rotation");

    let token = uuid::Uuid::new_v4().to_string();
    step(&f, &f.arn, &token, "createSecret").await.unwrap();
    let pending = value(&f, Some(&token), "AWSPENDING").await;
    let new = pending["password"].as_str().unwrap().to_owned();
    assert_eq!(pending["username"], f.roles.roles.app().as_str());
    assert_eq!(new.len(), 32);
    assert_ne!(new, old);
    let again = step(&f, &f.arn, &token, "createSecret").await.unwrap();
    assert_eq!(
        again["already_done"], true,
        "a retried createSecret keeps its password"
    );
    assert_eq!(
        value(&f, Some(&token), "AWSPENDING").await["password"],
        new.as_str()
    );
    assert!(
        logs_in(&f, &old).await,
        "nothing changed in the database yet"
    );

    step(&f, &f.arn, &token, "setSecret").await.unwrap();
    assert!(logs_in(&f, &new).await, "the new password logs in");
    assert!(!logs_in(&f, &old).await, "the old one no longer does");
    step(&f, &f.arn, &token, "setSecret")
        .await
        .expect("setSecret again");

    step(&f, &f.arn, &token, "testSecret").await.unwrap();
    assert_eq!(
        value(&f, None, "AWSCURRENT").await["password"],
        old.as_str()
    );

    step(&f, &f.arn, &token, "finishSecret").await.unwrap();
    assert_eq!(
        value(&f, None, "AWSCURRENT").await["password"],
        new.as_str()
    );
    let done = step(&f, &f.arn, &token, "finishSecret").await.unwrap();
    assert_eq!(done["already_done"], true);

    // The store's connection is closed (as after an idle timeout or a failover): its next
    // connection is refused the old password and reads the secret again.
    f.db.admin()
        .await
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&f.roles.roles.app()],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    if store.ping().await.is_err() {
        store.ping().await.expect("the store follows the rotation");
    }
    store
        .create(&tms_testkit::tasks::noop("demo"))
        .await
        .expect("and writes");

    // The next deploy's bootstrap reads the rotated secret and changes nothing.
    f.deps
        .bootstrap
        .run()
        .await
        .expect("bootstrap after rotation");
    assert!(logs_in(&f, &new).await);
}

#[tokio::test]
async fn a_step_for_a_token_not_pending_or_a_user_not_created_is_refused() {
    let f = fixture().await;
    let stray = uuid::Uuid::new_v4().to_string();
    for s in ["setSecret", "testSecret", "finishSecret"] {
        let err = step(&f, &f.arn, &stray, s).await.expect_err(s);
        assert!(err.contains("not pending"), "{s}: {err}");
    }
    let other = format!("test-{}-admin", f.roles.roles.prefix());
    let admin_arn = put_secret(
        &other,
        &json!({"username": "postgres", "password": "x"}).to_string(),
    )
    .await;
    let err = step(&f, &admin_arn, &stray, "createSecret")
        .await
        .expect_err("the admin's secret is not the bootstrapper's to rotate");
    assert!(err.contains("not one of the login users"), "{err}");
    let plain = put_secret(
        &format!("test-{}-plain", f.roles.roles.prefix()),
        "just-a-password",
    )
    .await;
    let err = step(&f, &plain, &stray, "createSecret")
        .await
        .expect_err("a bare password names no user");
    assert!(err.contains("expected JSON"), "{err}");
    assert!(
        logs_in(&f, f.roles.logins.app.expose()).await,
        "nothing changed"
    );
}
