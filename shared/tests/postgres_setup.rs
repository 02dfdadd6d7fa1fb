//! Opening the application's store from its configuration, the password read from secrets.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use tms::adapters::postgres::{open_store, SetupError};
use tms::config::{DatabaseConfig, SslMode};
use tms::ports::{Secret, Secrets, SecretsError, TaskRepository};
use tms_testkit::{logins, pg_ca_file, TestDb};

struct Fixed(HashMap<String, String>);

#[async_trait]
impl Secrets for Fixed {
    async fn get(&self, name: &str) -> Result<Secret, SecretsError> {
        self.0
            .get(name)
            .map(Secret::new)
            .ok_or_else(|| SecretsError::NotFound(name.to_owned()))
    }
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
async fn the_password_comes_from_the_named_secret() {
    let db = TestDb::new().await;
    let secrets = Fixed(HashMap::from([(
        "/tms/app".to_owned(),
        logins().app.expose().to_owned(),
    )]));
    let store = open_store(&config(&db, Some("/tms/app")), &secrets)
        .await
        .unwrap();
    store.ping().await.expect("connected as tms_app");

    let missing = open_store(&config(&db, Some("/tms/nope")), &secrets).await;
    assert!(matches!(
        missing,
        Err(SetupError::Password(SecretsError::NotFound(_)))
    ));
    let without = open_store(&config(&db, None), &secrets).await.unwrap();
    assert!(without.ping().await.is_err(), "no password, no connection");
}
