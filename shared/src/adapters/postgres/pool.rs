//! Connection settings (URL, TLS mode, CA) and the pool. The pool is created without
//! connecting: the first query opens the first connection, so a function's init stays fast.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, QueueMode, RecycleResult};
use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{redact_url, DatabaseConfig, SslMode};
use crate::ports::{Secret, Secrets, SecretsError};

/// The pool of [`PgSettings::pool`].
pub type Pool = managed::Pool<PgManager>;
/// A connection taken from the pool; back in the pool when dropped.
pub type Object = managed::Object<PgManager>;

/// A connection used this recently is handed out again without a round trip to check it (as
/// HikariCP's `aliveBypassWindowMs`); one idle longer, as after a frozen Lambda sandbox thaws,
/// is checked first.
const TRUST_RECENTLY_USED: Duration = Duration::from_millis(500);

fn parse_url(url: &str) -> Result<tokio_postgres::Config, PgSetupError> {
    tokio_postgres::Config::from_str(url).map_err(|source| PgSetupError::Url {
        url: redact_url(url),
        source,
    })
}

/// The certificates of a PEM CA file; at least one.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, PgSetupError> {
    let display = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| PgSetupError::CaFile {
        path: display.clone(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PgSetupError::CaParse {
            path: display.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PgSetupError::CaParse {
            path: display,
            reason: "it holds no certificate".into(),
        });
    }
    Ok(certs)
}

/// The TLS client configuration of `mode`: the named CA only, or the system's roots, or (for
/// `require`) any certificate, still checking that the server holds its key.
fn tls_config(
    mode: SslMode,
    ca_file: Option<&std::path::Path>,
) -> Result<ClientConfig, PgSetupError> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match (mode, ca_file) {
        // Disable never starts TLS; Require accepts any certificate.
        (SslMode::Disable | SslMode::Require, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        (_, Some(path)) => {
            // The server's CA is named: only it is trusted.
            let mut roots = RootCertStore::empty();
            for cert in read_ca_file(path)? {
                roots.add(cert)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (_, None) => {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

/// `sslmode=require`: encryption without verifying who the server is (as libpq's `require`);
/// the handshake's signatures are still checked against the certificate the server sent.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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
    #[error("invalid CA file {path}: {reason}")]
    CaParse { path: String, reason: String },
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
}

/// Everything needed to open connections: the driver configuration and the TLS connector.
#[derive(Clone)]
pub struct PgSettings {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
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
        match db.ssl_mode {
            SslMode::Disable => config.ssl_mode(PgSslMode::Disable),
            SslMode::Require | SslMode::VerifyFull => config.ssl_mode(PgSslMode::Require),
        };
        let tls = tls_config(db.ssl_mode, db.ca_file.as_deref())?;
        Ok(Self {
            config,
            tls: MakeRustlsConnect::new(tls),
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

    /// The same settings, the server planning each prepared statement once per connection
    /// (`plan_cache_mode = force_generic_plan`, set at connection start: no round trip).
    #[must_use]
    pub fn with_generic_plans(mut self) -> Self {
        const GENERIC: &str = "-c plan_cache_mode=force_generic_plan";
        let options = match self.config.get_options() {
            Some(given) if !given.is_empty() => format!("{given} {GENERIC}"),
            _ => GENERIC.to_owned(),
        };
        self.config.options(&options);
        self
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

    /// A pool that replaces a connection the server closed (or a frozen sandbox lost) instead
    /// of reporting a failure of the caller's query: a connection the driver saw closed is
    /// dropped, and one idle for more than [`TRUST_RECENTLY_USED`] is checked with a round trip
    /// before it is handed out.
    ///
    /// # Errors
    /// [`PgSetupError::Pool`] when the pool cannot be built.
    pub fn pool(&self) -> Result<Pool, PgSetupError> {
        self.pool_rereading(None)
    }

    /// [`PgSettings::pool`], reading the password again from `source` when the server refuses
    /// the one it has (the login's secret was rotated since the pool was built).
    ///
    /// # Errors
    /// [`PgSetupError::Pool`] when the pool cannot be built.
    pub fn pool_rereading(&self, source: Option<PasswordSource>) -> Result<Pool, PgSetupError> {
        let manager = PgManager {
            current: std::sync::RwLock::new(Arc::new(Current::new(
                self.config.clone(),
                self.tls.clone(),
            ))),
            reread: source.map(|source| Reread {
                config: self.config.clone(),
                tls: self.tls.clone(),
                source,
            }),
        };
        // Last in, first out: the connection used last is the one handed out next, so a
        // lightly loaded function keeps talking to the same (warm) backend and the others
        // stay idle, instead of every call going round all of them.
        Pool::builder(manager)
            .max_size(self.pool_size)
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(self.config.get_connect_timeout().copied())
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| PgSetupError::Pool(e.to_string()))
    }
}

/// The manager in use and the password it connects with.
struct Current {
    manager: Manager,
    password: Option<Vec<u8>>,
}

impl Current {
    fn new(config: tokio_postgres::Config, tls: MakeRustlsConnect) -> Self {
        let password = config.get_password().map(<[u8]>::to_vec);
        // NOTE: `Verified` checks a connection with an empty query; `Clean` (DISCARD ALL) would
        // also drop the session's advisory locks, which the scheduler's job lock keeps on a
        // pooled connection when the pool holds one (see `scheduler::lock_job`).
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        Self { manager, password }
    }
}

/// Where a pool reads its login's password again: the secret (a bare password, or JSON with a
/// `password`) named by `param`.
#[derive(Clone)]
pub struct PasswordSource {
    pub secrets: Arc<dyn Secrets>,
    pub param: String,
}

impl PasswordSource {
    /// # Errors
    /// [`SecretsError`] when the secret cannot be read or holds no password.
    pub async fn read(&self) -> Result<Secret, SecretsError> {
        let secret = self.secrets.get(&self.param).await?;
        secret
            .login()
            .map(|login| login.password)
            .ok_or_else(|| SecretsError::Unavailable {
                name: self.param.clone(),
                source: "the secret is JSON without a \"password\" string".into(),
            })
    }
}

struct Reread {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    source: PasswordSource,
}

/// deadpool-postgres's manager, checking only connections that were idle for a while (the
/// check is a round trip, and on the API's create path it was one of four per request), and
/// reading the password again when the server refuses it.
pub struct PgManager {
    current: std::sync::RwLock<Arc<Current>>,
    reread: Option<Reread>,
}

impl std::fmt::Debug for PgManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgManager")
            .field("rereads_password", &self.reread.is_some())
            .finish()
    }
}

impl PgManager {
    fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// After a refused password: a manager with the secret's current password, if it changed.
    async fn reread(&self, refused: &Current) -> Option<Arc<Current>> {
        let reread = self.reread.as_ref()?;
        let password = match reread.source.read().await {
            Ok(password) => password,
            Err(e) => {
                tracing::warn!(error = %e, "the database refused the password and the secret cannot be read again");
                return None;
            }
        };
        if refused.password.as_deref() == Some(password.expose().as_bytes()) {
            return None;
        }
        let mut config = reread.config.clone();
        config.password(password.expose());
        let fresh = Arc::new(Current::new(config, reread.tls.clone()));
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh.clone();
        tracing::info!(param = %reread.source.param, "the database password changed (rotated); new connections use the secret's current value");
        Some(fresh)
    }
}

impl managed::Manager for PgManager {
    type Type = ClientWrapper;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<ClientWrapper, tokio_postgres::Error> {
        let current = self.current();
        match current.manager.create().await {
            Err(e) if e.code() == Some(&SqlState::INVALID_PASSWORD) => {
                match self.reread(&current).await {
                    Some(fresh) => fresh.manager.create().await,
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    async fn recycle(
        &self,
        client: &mut ClientWrapper,
        metrics: &Metrics,
    ) -> RecycleResult<tokio_postgres::Error> {
        if !client.is_closed() && metrics.last_used() < TRUST_RECENTLY_USED {
            return Ok(());
        }
        self.current().manager.recycle(client, metrics).await
    }

    fn detach(&self, client: &mut ClientWrapper) {
        self.current().manager.detach(client);
    }
}
