//! TLS to PostgreSQL: verified with the right CA, refused with the wrong one, and plaintext
//! refused by a server that requires TLS.

use std::process::Command;
use std::time::Duration;

use tms::adapters::postgres::PgSettings;
use tms::config::{DatabaseConfig, SslMode};
use tms::ports::Secret;
use tms_testkit::{pg_ca_file, repo_root};

fn settings(ssl_mode: SslMode, ca_file: Option<std::path::PathBuf>) -> PgSettings {
    let port = std::env::var("TMS_PG_PORT").unwrap_or_else(|_| "55432".into());
    let password = std::fs::read_to_string(repo_root().join(".local/pg/admin.password"))
        .expect("local cluster password (run `make test`)");
    let db = DatabaseConfig {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        ssl_mode,
        ca_file,
        password_param: None,
        pool_size: 1,
        connect_timeout: Duration::from_secs(5),
    };
    PgSettings::new(&db, Some(&Secret::new(password.trim()))).expect("settings")
}

/// A freshly made CA that signed nothing the server presents.
fn other_ca() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tms-wrong-ca-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=Some other CA", "-keyout"])
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.crt"))
        .output()
        .expect("openssl");
    assert!(status.status.success(), "openssl failed: {status:?}");
    dir.join("ca.crt")
}

#[tokio::test]
async fn verify_full_with_the_right_ca_connects_over_tls() {
    let client = settings(SslMode::VerifyFull, Some(pg_ca_file()))
        .connect()
        .await
        .expect("verify-full with the cluster's CA connects");
    let row = client
        .query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>("ssl"), "pg_stat_ssl reports ssl");
    assert!(row.get::<_, String>("version").starts_with("TLS"));
}

#[tokio::test]
async fn verify_full_with_the_wrong_ca_is_refused() {
    let err = settings(SslMode::VerifyFull, Some(other_ca()))
        .connect()
        .await
        .expect_err("a certificate from another CA must be refused");
    let text = format!("{err:?}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

#[tokio::test]
async fn verify_full_without_a_ca_uses_system_roots_and_refuses_the_self_signed_cluster() {
    assert!(settings(SslMode::VerifyFull, None).connect().await.is_err());
}

#[tokio::test]
async fn require_encrypts_without_verifying() {
    let client = settings(SslMode::Require, None)
        .connect()
        .await
        .expect("require connects");
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
}

#[tokio::test]
async fn plaintext_is_refused_when_the_server_requires_tls() {
    let err = settings(SslMode::Disable, None)
        .connect()
        .await
        .expect_err("the server must refuse a connection without TLS");
    let message = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("no encryption"), "{err:?}");
}

#[test]
fn an_unreadable_ca_file_is_a_clear_error() {
    let db = DatabaseConfig {
        url: "postgres://u@127.0.0.1/db".into(),
        ssl_mode: SslMode::VerifyFull,
        ca_file: Some("/nonexistent/ca.pem".into()),
        password_param: None,
        pool_size: 1,
        connect_timeout: Duration::from_secs(1),
    };
    let err = PgSettings::new(&db, None).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}
