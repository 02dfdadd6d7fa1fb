//! Connection settings (URL, TLS mode, CA) and the pool. The pool is created without
//! connecting: the first query opens the first connection, so a function's init stays fast.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime};
use native_tls::{Certificate, TlsConnector};
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::config::SslMode as PgSslMode;

use crate::config::{redact_url, DatabaseConfig, SslMode};
use crate::ports::Secret;

pub use deadpool_postgres::Pool;

fn parse_url(url: &str) -> Result<tokio_postgres::Config, PgSetupError> {
    tokio_postgres::Config::from_str(url).map_err(|source| PgSetupError::Url {
        url: redact_url(url),
        source,
    })
}

/// The certificates of a PEM CA file; at least one.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<Certificate>, PgSetupError> {
    let display = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| PgSetupError::CaFile {
        path: display.clone(),
        source,
    })?;
    let certs = Certificate::stack_from_pem(&pem).map_err(|source| PgSetupError::CaParse {
        path: display.clone(),
        source,
    })?;
    if certs.is_empty() {
        return Err(PgSetupError::Pool(format!(
            "the CA file {display} holds no certificate"
        )));
    }
    Ok(certs)
}

#[derive(Debug, thiserror::Error)]
pub enum PgSetupError {
    #[error("invalid database URL {url}: {source}")]
    Url {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("cannot read the CA file {path}: {source}")]
    CaFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid CA file {path}: {source}")]
    CaParse {
        path: String,
        #[source]
        source: native_tls::Error,
    },
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] native_tls::Error),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
}

/// Everything needed to open connections: the driver configuration and the TLS connector.
#[derive(Clone)]
pub struct PgSettings {
    config: tokio_postgres::Config,
    tls: MakeTlsConnector,
    pool_size: usize,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("user", &self.config.get_user())
            .field("dbname", &self.config.get_dbname())
            .field("ssl_mode", &self.config.get_ssl_mode())
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl PgSettings {
    /// Checks what can be checked without setting up TLS: the URL parses and the CA file holds
    /// certificates.
    ///
    /// # Errors
    /// [`PgSetupError`] for an unparsable URL or an unreadable or empty CA file.
    pub fn check(db: &DatabaseConfig) -> Result<(), PgSetupError> {
        parse_url(&db.url)?;
        if let (SslMode::VerifyFull, Some(path)) = (db.ssl_mode, &db.ca_file) {
            read_ca_file(path)?;
        }
        Ok(())
    }

    /// Builds the settings; `password` (from SSM) replaces any password in the URL.
    ///
    /// # Errors
    /// [`PgSetupError`] for an unparsable URL, an unreadable CA file or a TLS setup failure.
    pub fn new(db: &DatabaseConfig, password: Option<&Secret>) -> Result<Self, PgSetupError> {
        let mut config = parse_url(&db.url)?;
        if let Some(password) = password {
            config.password(password.expose());
        }
        if config.get_application_name().is_none() {
            config.application_name("tms");
        }
        config.connect_timeout(db.connect_timeout);
        config.keepalives_idle(Duration::from_secs(30));
        let mut tls = TlsConnector::builder();
        match db.ssl_mode {
            SslMode::Disable => {
                config.ssl_mode(PgSslMode::Disable);
            }
            SslMode::Require => {
                config.ssl_mode(PgSslMode::Require);
                tls.danger_accept_invalid_certs(true)
                    .danger_accept_invalid_hostnames(true);
            }
            SslMode::VerifyFull => {
                config.ssl_mode(PgSslMode::Require);
                if let Some(path) = &db.ca_file {
                    let certs = read_ca_file(path)?;
                    // The server's CA is named: only it is trusted.
                    tls.disable_built_in_roots(true);
                    for cert in certs {
                        tls.add_root_certificate(cert);
                    }
                }
            }
        }
        Ok(Self {
            config,
            tls: MakeTlsConnector::new(tls.build()?),
            pool_size: db.pool_size,
        })
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The same settings with `password`.
    pub fn with_password(&self, password: &Secret) -> Self {
        let mut other = self.clone();
        other.config.password(password.expose());
        other
    }

    /// The same server and TLS settings for another user.
    pub fn with_login(&self, user: &str, password: &Secret) -> Self {
        let mut other = self.clone();
        other.config.user(user).password(password.expose());
        other
    }

    /// The same server, user and TLS settings for another database.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut other = self.clone();
        other.config.dbname(dbname);
        other
    }

    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Opens one connection outside the pool (migrations, bootstrap, tests). The connection
    /// task runs until the client is dropped.
    ///
    /// # Errors
    /// The driver's error when the connection cannot be established.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "database connection closed");
            }
        });
        Ok(client)
    }

    /// A pool that checks each connection with a round trip before handing it out, so a
    /// connection the server closed (or a frozen sandbox lost) is replaced, not reported as a
    /// failure of the caller's query.
    ///
    /// # Errors
    /// [`PgSetupError::Pool`] when the pool cannot be built.
    pub fn pool(&self) -> Result<Pool, PgSetupError> {
        let manager = Manager::from_config(
            self.config.clone(),
            self.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(self.config.get_connect_timeout().copied())
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| PgSetupError::Pool(e.to_string()))
    }
}
