//! Opening the application's store from its configuration, the password read from secrets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tms::adapters::postgres::{open_store, open_store_planning, Planning};
use tms::config::{DatabaseConfig, SslMode};
use tms::ports::{Secret, Secrets, SecretsError, TaskRepository};
use tms_testkit::{logins, pg_ca_file, TestDb};

/// Fixed secrets that count the reads.
#[derive(Default)]
struct Fixed {
    values: HashMap<String, String>,
    reads: AtomicUsize,
}

#[async_trait]
impl Secrets for Fixed {
    async fn get(&self, name: &str) -> Result<Secret, SecretsError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.values
            .get(name)
            .map(Secret::new)
            .ok_or_else(|| SecretsError::NotFound(name.to_owned()))
    }
}

/// Secrets holding the application login's password at `/tms/app`.
fn app_password() -> Arc<Fixed> {
    Arc::new(Fixed {
        values: HashMap::from([("/tms/app".to_owned(), logins().app.expose().to_owned())]),
        ..Fixed::default()
    })
}

fn config(db: &TestDb, password_param: Option<&str>) -> DatabaseConfig {
    let port = std::env::var("TMS_PG_PORT").unwrap_or_else(|_| "55432".into());
    DatabaseConfig {
        url: format!("postgres://tms_app@127.0.0.1:{port}/{}", db.name),
        ssl_mode: SslMode::VerifyFull,
        ca_file: Some(pg_ca_file()),
        password_param: password_param.map(str::to_owned),
        pool_size: 2,
        connect_timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn the_password_is_read_from_the_named_secret_by_the_first_query_only() {
    let db = TestDb::new().await;
    let secrets = app_password();
    let store = open_store(&config(&db, Some("/tms/app")), secrets.clone()).unwrap();
    assert_eq!(
        secrets.reads.load(Ordering::SeqCst),
        0,
        "opening the store reads nothing (a function's init makes no network call)"
    );
    store.ping().await.expect("connected as tms_app");
    store.ping().await.expect("still connected");
    assert_eq!(secrets.reads.load(Ordering::SeqCst), 1, "read once");
}

#[tokio::test]
async fn connecting_ahead_opens_the_connection_the_first_query_then_uses() {
    let db = TestDb::new().await;
    let secrets = app_password();
    let store = open_store(&config(&db, Some("/tms/app")), secrets.clone()).unwrap();
    store.connect().await.expect("connected ahead");
    let pool = store.pool().await.expect("opened");
    assert_eq!(
        (pool.status().size, pool.status().available),
        (1, 1),
        "one connection open and idle before any query"
    );
    store.ping().await.expect("the first query");
    assert_eq!(
        pool.status().size,
        1,
        "the first query used that connection"
    );
    assert_eq!(secrets.reads.load(Ordering::SeqCst), 1, "read once");
}

#[tokio::test]
async fn a_store_planning_once_asks_the_server_for_generic_plans_and_the_default_does_not() {
    let db = TestDb::new().await;
    let secrets = app_password();
    let config = config(&db, Some("/tms/app"));
    for (planning, expected) in [
        (Planning::Once, "force_generic_plan"),
        (Planning::PerExecution, "auto"),
    ] {
        let store = open_store_planning(&config, secrets.clone(), planning).unwrap();
        let client = store.pool().await.unwrap().get().await.unwrap();
        let mode: String = client
            .query_one("SHOW plan_cache_mode", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(mode, expected, "{planning:?}");
    }
}

#[tokio::test]
async fn while_the_database_cannot_be_reached_the_password_is_read_once() {
    let db = TestDb::new().await;
    let secrets = app_password();
    let mut unreachable = config(&db, Some("/tms/app"));
    // A port nothing listens on: each connection is refused at once.
    unreachable.url = format!("postgres://tms_app@127.0.0.1:1/{}", db.name);
    let store = open_store(&unreachable, secrets.clone()).unwrap();
    assert!(store.ping().await.is_err());
    assert!(store.ping().await.is_err());
    assert_eq!(
        secrets.reads.load(Ordering::SeqCst),
        1,
        "the pool is kept; only its first connection is tried again"
    );
}

#[tokio::test]
async fn a_missing_password_fails_each_query_by_name_until_it_exists() {
    let db = TestDb::new().await;
    let secrets = Arc::new(Fixed::default());
    let store = open_store(&config(&db, Some("/tms/nope")), secrets.clone()).unwrap();
    for attempt in 1..=2 {
        let err = store.ping().await.expect_err("no password, no connection");
        assert!(err.is_unavailable(), "{err}");
        assert!(err.to_string().contains("/tms/nope"), "{err}");
        assert_eq!(secrets.reads.load(Ordering::SeqCst), attempt, "read again");
    }

    let without = open_store(&config(&db, None), secrets.clone()).unwrap();
    assert!(without.ping().await.is_err(), "no password, no connection");
}

#[tokio::test]
async fn settings_that_can_never_work_fail_at_open() {
    let db = TestDb::new().await;
    let mut bad = config(&db, Some("/tms/app"));
    bad.ca_file = Some("/nonexistent/ca.crt".into());
    let Err(err) = open_store(&bad, Arc::new(Fixed::default())) else {
        panic!("an unreadable CA file is refused at open");
    };
    assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
}

/// Secrets whose values a test changes, as a rotation does.
#[derive(Default)]
struct Rotating {
    values: std::sync::Mutex<HashMap<String, String>>,
    reads: AtomicUsize,
}

#[async_trait]
impl Secrets for Rotating {
    async fn get(&self, name: &str) -> Result<Secret, SecretsError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.values
            .lock()
            .unwrap()
            .get(name)
            .map(Secret::new)
            .ok_or_else(|| SecretsError::NotFound(name.to_owned()))
    }
}

#[tokio::test]
async fn after_a_rotation_new_connections_read_the_secret_again() {
    let db = TestDb::new().await;
    let user = format!(
        "tt_rot_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let admin = db.admin().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {user} LOGIN PASSWORD 'first-{user}'; GRANT tms_application TO {user}"
        ))
        .await
        .unwrap();
    let json = |pw: &str| serde_json::json!({"username": user, "password": pw}).to_string();
    let secrets = Arc::new(Rotating::default());
    secrets
        .values
        .lock()
        .unwrap()
        .insert("/tms/rotated".into(), json(&format!("first-{user}")));
    let mut cfg = config(&db, Some("/tms/rotated"));
    cfg.url = cfg.url.replace("tms_app@", &format!("{user}@"));
    cfg.pool_size = 1;
    let store = open_store(&cfg, secrets.clone()).unwrap();
    store
        .ping()
        .await
        .expect("the JSON secret's password logs in");

    // The rotation: the role's password changes, then the secret's current value.
    admin
        .batch_execute(&format!("ALTER ROLE {user} PASSWORD 'second-{user}'"))
        .await
        .unwrap();
    secrets
        .values
        .lock()
        .unwrap()
        .insert("/tms/rotated".into(), json(&format!("second-{user}")));
    store
        .ping()
        .await
        .expect("the open connection is unaffected");
    assert_eq!(secrets.reads.load(Ordering::SeqCst), 1);

    // A new connection (the server closed the old one) is refused the old password, and the
    // pool reads the secret again instead of failing until the sandbox is recycled.
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&user],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut answered = store.ping().await;
    if answered.is_err() {
        // The closed connection may be handed out once before the driver notices.
        answered = store.ping().await;
    }
    answered.expect("a new connection with the rotated password");
    assert_eq!(secrets.reads.load(Ordering::SeqCst), 2, "read once more");

    drop(store);
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{user}'; \
             DROP ROLE {user}"
        ))
        .await
        .ok();
}
